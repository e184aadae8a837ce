//! One request's passage through the limits: the places and tokens it holds,
//! what it used, and the ledger row it leaves when it ends, however it ends
//! (finished, failed, refused, or dropped because the client went away).
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use aitier_core::{CoreError, GenEvent, RequestHooks, RequestSize};
use aitier_protocol::Usage;

use crate::clock::now_ms;
use crate::service::{limiter_down, scope_kind, store_down, Principal, Tenancy};
use crate::store::{Reservation, StoreError, UsageRecord};

pub struct Ticket {
    inner: Arc<Inner>,
}

struct Inner {
    tenancy: Arc<Tenancy>,
    principal: Principal,
    tenant_label: String,
    model: String,
    request_id: String,
    started: Instant,
    ts: i64,
    generated: AtomicU32,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    provider: Option<String>,
    /// Concurrency places taken.
    places: Vec<String>,
    /// Token buckets charged at admission: (bucket, per minute, tokens).
    tpm: Vec<(String, u64, u64)>,
    holds: Vec<Reservation>,
    prompt_tokens: u32,
    first_token: Option<Duration>,
    finish_reason: Option<&'static str>,
    admitted: bool,
    estimated: bool,
    done: bool,
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The ledger's word for how a failed request ended.
fn status_of(e: &CoreError) -> &'static str {
    match e {
        CoreError::RateLimited { .. } => "rate_limited",
        CoreError::QuotaExceeded { .. } => "quota_exceeded",
        CoreError::Timeout { .. } => "timeout",
        CoreError::Upstream { .. } => "upstream_error",
        CoreError::Overloaded { .. } => "overloaded",
        CoreError::InvalidRequest { .. } | CoreError::ContextLengthExceeded { .. } => "invalid",
        _ => "error",
    }
}

impl Ticket {
    pub(crate) fn new(
        tenancy: Arc<Tenancy>,
        principal: Principal,
        tenant_label: &str,
        model: &str,
        request_id: &str,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                tenancy,
                principal,
                tenant_label: tenant_label.to_string(),
                model: model.to_string(),
                request_id: request_id.to_string(),
                started: Instant::now(),
                ts: now_ms(),
                generated: AtomicU32::new(0),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// For the request's context: the provider admits and meters through it.
    pub fn hooks(&self) -> Arc<dyn RequestHooks> {
        self.inner.clone()
    }

    /// The deployment that served the request (defaults to the model).
    pub fn set_provider(&self, provider: &str) {
        self.inner.state().provider = Some(provider.to_string());
    }

    pub(crate) fn holds_place(&self, bucket: String) {
        self.inner.state().places.push(bucket);
    }

    pub(crate) fn refused(&self, status: &str) {
        self.inner.finish(status, None);
    }

    /// Follows the provider's events; the final one writes the row.
    pub fn observe(&self, ev: &GenEvent) {
        match ev {
            GenEvent::Started { prompt_tokens } => {
                self.inner.state().prompt_tokens = *prompt_tokens
            }
            GenEvent::Delta { .. } => {
                let mut s = self.inner.state();
                if s.first_token.is_none() {
                    s.first_token = Some(self.inner.started.elapsed());
                }
            }
            GenEvent::Finished { reason, .. } => {
                let mut s = self.inner.state();
                // With several choices, one cut short makes the request's reason `length`.
                if s.finish_reason != Some("length") {
                    s.finish_reason = Some(reason.as_str());
                }
            }
            GenEvent::Done { usage } => self.inner.finish("ok", Some(usage)),
            GenEvent::Error(e) => self.inner.finish(status_of(e), None),
        }
    }

    /// The provider refused or failed before streaming.
    pub fn failed(&self, e: &CoreError) {
        self.inner.finish(status_of(e), None);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // Not finished: the client went away. Bill what was generated.
        self.inner.finish("cancelled", None);
    }
}

impl Inner {
    fn finish(&self, status: &str, usage: Option<&Usage>) {
        let mut s = self.state();
        if s.done {
            return;
        }
        s.done = true;
        let generated = self.generated.load(Ordering::Relaxed);
        let (prompt, cached, completion) = match usage {
            Some(u) => (
                u.prompt_tokens,
                u.prompt_tokens_details.cached_tokens,
                u.completion_tokens,
            ),
            // Ended early: billed for what it generated, and for its prompt
            // only if that was evaluated (a token came of it).
            None if generated > 0 => (s.prompt_tokens, 0, generated),
            None => (0, 0, 0),
        };
        let used = u64::from(prompt) + u64::from(completion);
        let tenancy = self.tenancy.clone();
        let places = std::mem::take(&mut s.places);
        let tpm = std::mem::take(&mut s.tpm);
        if !places.is_empty() || !tpm.is_empty() {
            let limiter = tenancy.limiter.clone();
            let settle = async move {
                for bucket in places {
                    if let Err(e) = limiter.release(&bucket).await {
                        tracing::warn!(error = %e, "releasing a concurrency place failed");
                    }
                }
                for (bucket, per_minute, reserved) in tpm {
                    let delta = used as i64 - reserved as i64;
                    if let Err(e) = limiter.adjust(&bucket, per_minute, delta).await {
                        tracing::warn!(error = %e, "settling a token bucket failed");
                    }
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    h.spawn(settle);
                }
                Err(_) => tracing::warn!("no runtime to settle limits on"),
            }
        }
        let row = UsageRecord {
            ts: self.ts,
            request_id: self.request_id.clone(),
            tenant_id: self
                .principal
                .tenant_id()
                .unwrap_or(&self.tenant_label)
                .to_string(),
            key_id: self.principal.key_id().map(str::to_string),
            model: self.model.clone(),
            provider: s.provider.clone().unwrap_or_else(|| self.model.clone()),
            prompt_tokens: u64::from(prompt),
            cached_tokens: u64::from(cached),
            completion_tokens: u64::from(completion),
            ttft_ms: s.first_token.map(|d| d.as_millis() as u64),
            duration_ms: self.started.elapsed().as_millis() as u64,
            status: status.to_string(),
            finish_reason: if status == "ok" {
                s.finish_reason.map(str::to_string)
            } else {
                None
            },
            estimated: s.estimated,
            reservations: std::mem::take(&mut s.holds),
        };
        drop(s);
        self.tenancy.ledger.record(row);
    }

    async fn admit_inner(&self, size: RequestSize) -> Result<(), CoreError> {
        if std::mem::replace(&mut self.state().admitted, true) {
            return Ok(());
        }
        let per_choice = size
            .max_tokens
            .unwrap_or(self.tenancy.config.default_completion_reserve);
        let completion = (u64::from(per_choice) * u64::from(size.choices.max(1)))
            .min(u64::from(size.completion_cap));
        let reserve = u64::from(size.prompt_tokens) + completion;
        self.state().prompt_tokens = size.prompt_tokens;
        let demands = self.principal.demands("tpm", |l| l.tpm, reserve);
        let limiter = &self.tenancy.limiter;
        if !demands.is_empty() {
            if let Err(d) = limiter.check(&demands).await.map_err(limiter_down)? {
                let scope = d.bucket.trim_start_matches("tpm:");
                let message = if d.never {
                    format!(
                        "Request too large: it may use {reserve} tokens but this {} allows fewer per minute. Lower max_tokens or the prompt.",
                        scope_kind(scope)
                    )
                } else {
                    format!(
                        "Rate limit reached for tokens per minute on this {}. Retry after {}.",
                        scope_kind(scope),
                        crate::clock::openai_duration(d.retry_after)
                    )
                };
                return Err(CoreError::RateLimited {
                    message,
                    retry_after: d.retry_after,
                    never: d.never,
                });
            }
            self.state().tpm = demands
                .iter()
                .map(|d| (d.bucket.clone(), d.per_minute, reserve))
                .collect();
        }
        let now = now_ms();
        let holds: Vec<Reservation> = self
            .principal
            .limit_sets()
            .iter()
            .filter_map(|(scope, l)| {
                l.budget().map(|(limit, period)| Reservation {
                    scope: scope.clone(),
                    period: period.window(now).0,
                    tokens: reserve,
                    limit,
                })
            })
            .collect();
        if !holds.is_empty() {
            match self.hold(holds.clone()).await.map_err(store_down)? {
                Some(scope) => {
                    return Err(CoreError::QuotaExceeded {
                        message: format!(
                            "This {}'s token budget for the current period is spent.",
                            scope_kind(&scope)
                        ),
                    })
                }
                None => self.state().holds = holds,
            }
        }
        Ok(())
    }
}

impl Inner {
    /// Reserves in a task of its own: if this request is dropped while the
    /// database works (the client left), the task gives the holds back
    /// instead of leaving them counted until the period ends.
    async fn hold(&self, holds: Vec<Reservation>) -> Result<Option<String>, StoreError> {
        let store = self.tenancy.store.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let result = store.reserve(&holds).await;
            let held = matches!(result, Ok(None));
            if tx.send(result).is_err() && held {
                if let Err(e) = store.release(&holds).await {
                    tracing::error!(error = %e, "releasing the budget holds of a dropped request failed");
                }
            }
        });
        rx.await
            .map_err(|_| StoreError::Db("the budget reservation task failed".into()))?
    }
}

impl RequestHooks for Inner {
    fn admit(&self, size: RequestSize) -> BoxFuture<'_, Result<(), CoreError>> {
        Box::pin(self.admit_inner(size))
    }

    fn generated(&self, tokens: u32) {
        self.generated.fetch_add(tokens, Ordering::Relaxed);
    }

    fn served_by(&self, deployment: &str) {
        self.state().provider = Some(deployment.to_string());
    }

    fn usage_estimated(&self) {
        self.state().estimated = true;
    }
}
