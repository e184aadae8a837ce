//! Admission, all of it: whether a request may start (concurrency places,
//! requests per minute), whether its size fits (tokens per minute, token
//! budgets), and giving back or settling what it held once it ends. A
//! refused request never holds anything.
use std::sync::Arc;
use std::time::Duration;

use aitier_core::{CoreError, RequestSize};

use crate::headers::openai_duration;
use crate::leases::HoldLeases;
use crate::limiter::{Demand, Entry, Lease, Limiter, LimiterError, Place};
use crate::principal::Principal;
use crate::refusals::{Refusal, Refusals};
use crate::scope::{BucketKey, Meter, Scope};
use crate::store::{Reservation, Store, StoreError};

/// What a request holds against the limits while it runs.
#[derive(Debug, Default)]
pub(crate) struct Holds {
    /// Concurrency places taken.
    pub places: Vec<(BucketKey, Lease)>,
    /// Token buckets charged at admission: (bucket, per minute, tokens).
    pub tokens: Vec<(BucketKey, u64, u64)>,
    /// Budget reservations, settled with the request's ledger row.
    pub budgets: Vec<Reservation>,
}

/// The parts of the tier admission needs: cheap to clone into each ticket.
#[derive(Clone)]
pub(crate) struct Admission {
    pub limiter: Arc<dyn Limiter>,
    pub store: Arc<dyn Store>,
    /// Completion tokens reserved for a request without `max_tokens`.
    pub default_completion_reserve: u32,
    pub refusals: Arc<Refusals>,
    /// Let requests through unchecked while the limiter is down, rather
    /// than refuse them.
    pub fail_open: bool,
    pub leases: Arc<HoldLeases>,
}

fn limiter_down(e: LimiterError) -> (Refusal, CoreError) {
    tracing::error!(error = %e, "rate limit store failed; refusing the request");
    (
        Refusal::Unavailable,
        CoreError::Unavailable {
            message: "Rate limits cannot be checked right now; the request was not run.".into(),
        },
    )
}

fn store_down(e: StoreError) -> (Refusal, CoreError) {
    tracing::error!(error = %e, "tenancy store failed; refusing the request");
    (
        Refusal::Unavailable,
        CoreError::Unavailable {
            message: "Usage limits cannot be checked right now; the request was not run.".into(),
        },
    )
}

impl Admission {
    /// Concurrency places and the request rate, in one call to the
    /// limiter: all of them are taken, or none.
    pub async fn enter(&self, principal: &Principal, holds: &mut Holds) -> Result<(), CoreError> {
        let result = self.try_enter(principal, holds).await;
        self.counted(result)
    }

    async fn try_enter(
        &self,
        principal: &Principal,
        holds: &mut Holds,
    ) -> Result<(), (Refusal, CoreError)> {
        let places: Vec<Place> = principal
            .limit_sets()
            .into_iter()
            .filter_map(|(scope, l)| {
                l.max_concurrent
                    .map(|max| (BucketKey::new(Meter::Concurrency, scope), max))
            })
            .collect();
        let demands = principal.demands(Meter::Requests, |l| l.rpm, 1);
        if places.is_empty() && demands.is_empty() {
            return Ok(());
        }
        let unchecked = Entry::Admitted(places.iter().map(|_| Lease(String::new())).collect());
        let entry = self.limiter.enter(&places, &demands).await;
        match self.or_unchecked(entry, unchecked)? {
            Entry::Admitted(leases) => {
                holds.places = places.into_iter().map(|(b, _)| b).zip(leases).collect();
                Ok(())
            }
            Entry::Full(bucket, max) => Err((
                Refusal::Concurrency,
                CoreError::RateLimited {
                    message: format!(
                        "Too many concurrent requests: at most {max} may run at once for this {}.",
                        bucket.scope.kind()
                    ),
                    retry_after: Duration::from_secs(1),
                    never: false,
                },
            )),
            Entry::Denied(d) => Err((
                Refusal::Rpm,
                CoreError::RateLimited {
                    message: format!(
                        "Rate limit reached for requests per minute on this {}. Retry after {}.",
                        d.bucket.scope.kind(),
                        openai_duration(d.retry_after)
                    ),
                    retry_after: d.retry_after,
                    never: false,
                },
            )),
        }
    }

    /// The limiter's answer; without one, a refusal, or with `fail_open`
    /// the answer that lets the request through (counted, and logged).
    fn or_unchecked<T>(
        &self,
        answer: Result<T, LimiterError>,
        unchecked: T,
    ) -> Result<T, (Refusal, CoreError)> {
        match answer {
            Ok(v) => Ok(v),
            Err(e) if self.fail_open => {
                tracing::error!(error = %e, "rate limit store failed; letting the request through unchecked (fail_open)");
                self.refusals.count_unchecked();
                Ok(unchecked)
            }
            Err(e) => Err(limiter_down(e)),
        }
    }

    /// Counts a refusal by its reason.
    fn counted(&self, result: Result<(), (Refusal, CoreError)>) -> Result<(), CoreError> {
        result.map_err(|(why, e)| {
            self.refusals.count(why);
            e
        })
    }

    /// Tokens per minute and budgets for a request of `size`: the prompt
    /// plus every choice's `max_tokens` (or the default reserve), capped at
    /// what the model can produce.
    pub async fn admit(
        &self,
        principal: &Principal,
        size: RequestSize,
        holds: &mut Holds,
    ) -> Result<(), CoreError> {
        let result = self.try_admit(principal, size, holds).await;
        self.counted(result)
    }

    async fn try_admit(
        &self,
        principal: &Principal,
        size: RequestSize,
        holds: &mut Holds,
    ) -> Result<(), (Refusal, CoreError)> {
        let per_choice = size.max_tokens.unwrap_or(self.default_completion_reserve);
        let completion = (u64::from(per_choice) * u64::from(size.choices.max(1)))
            .min(u64::from(size.completion_cap));
        let reserve = u64::from(size.prompt_tokens) + completion;
        let demands = principal.demands(Meter::Tokens, |l| l.tpm, reserve);
        if !demands.is_empty() {
            self.charge_tokens(&demands, reserve).await?;
            holds.tokens = demands
                .into_iter()
                .map(|d| (d.bucket, d.per_minute, reserve))
                .collect();
        }
        let now = aitier_core::clock::now_ms();
        let hold = uuid::Uuid::new_v4().simple().to_string();
        let budgets: Vec<Reservation> = principal
            .limit_sets()
            .into_iter()
            .filter_map(|(scope, l)| {
                l.budget().map(|(limit, period)| Reservation {
                    hold: hold.clone(),
                    scope,
                    period: period.window(now).0,
                    tokens: reserve,
                    limit,
                })
            })
            .collect();
        if budgets.is_empty() {
            return Ok(());
        }
        if let Some(scope) = self.hold(budgets.clone()).await.map_err(store_down)? {
            return Err((
                Refusal::Budget,
                CoreError::QuotaExceeded {
                    message: format!(
                        "This {}'s token budget for the current period is spent.",
                        scope.kind()
                    ),
                },
            ));
        }
        holds.budgets = budgets;
        Ok(())
    }

    async fn charge_tokens(
        &self,
        demands: &[Demand],
        reserve: u64,
    ) -> Result<(), (Refusal, CoreError)> {
        let checked = self.limiter.check(demands).await;
        let Err(d) = self.or_unchecked(checked, Ok(()))? else {
            return Ok(());
        };
        let kind = d.bucket.scope.kind();
        let message = if d.never {
            format!(
                "Request too large: it may use {reserve} tokens but this {kind} allows fewer per minute. Lower max_tokens or the prompt."
            )
        } else {
            format!(
                "Rate limit reached for tokens per minute on this {kind}. Retry after {}.",
                openai_duration(d.retry_after)
            )
        };
        let why = if d.never {
            Refusal::TooLarge
        } else {
            Refusal::Tpm
        };
        Err((
            why,
            CoreError::RateLimited {
                message,
                retry_after: d.retry_after,
                never: d.never,
            },
        ))
    }

    /// Reserves in a task of its own: if this request is dropped while the
    /// database works (the client left), the task gives the holds back
    /// instead of leaving them counted until the period ends.
    async fn hold(&self, holds: Vec<Reservation>) -> Result<Option<Scope>, StoreError> {
        let store = self.store.clone();
        let leases = self.leases.clone();
        let expires_at = leases.expires_at();
        let id = holds.first().map(|h| h.hold.clone()).unwrap_or_default();
        // Renewed from now on, in case the reservation is slow.
        leases.held(&id);
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let result = store.reserve(&holds, expires_at).await;
            let held = matches!(result, Ok(None));
            if !held {
                leases.ended(&id);
            }
            if tx.send(result).is_err() && held {
                leases.ended(&id);
                if let Err(e) = store.release(&holds).await {
                    tracing::error!(error = %e, "releasing the budget holds of a dropped request failed");
                }
            }
        });
        rx.await
            .map_err(|_| StoreError::Db("the budget reservation task failed".into()))?
    }

    /// Returns concurrency places and corrects token buckets to what the
    /// request used, in one call to the limiter, off the request's path.
    /// Budgets settle with the row.
    pub fn settle(
        &self,
        places: Vec<(BucketKey, Lease)>,
        tokens: Vec<(BucketKey, u64, u64)>,
        used: u64,
    ) {
        if places.is_empty() && tokens.is_empty() {
            return;
        }
        let adjustments = tokens
            .into_iter()
            .map(|(bucket, per_minute, reserved)| {
                (bucket, per_minute, used as i64 - reserved as i64)
            })
            .collect();
        let limiter = self.limiter.clone();
        let settle = async move {
            if let Err(e) = limiter.settle(places, adjustments).await {
                tracing::warn!(error = %e, "returning concurrency places and settling token buckets failed");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(settle);
            }
            Err(_) => tracing::warn!("no runtime to settle limits on"),
        }
    }
}
