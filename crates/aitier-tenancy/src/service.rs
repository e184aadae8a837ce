//! The tenancy front door the server calls: who is asking (`authenticate`),
//! may they use this model, and may this request start (`begin`, then the
//! ticket's `admit` once the provider knows its size). The ticket follows
//! the request to its end and writes its ledger row.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aitier_core::CoreError;

use crate::clock::openai_duration;
use crate::keys;
use crate::ledger::Ledger;
use crate::limiter::{Demand, Limiter, LimiterError, Snapshot};
use crate::limits::Limits;
use crate::store::{KeyAuth, Store, StoreError};
use crate::ticket::Ticket;

#[derive(Debug, Clone)]
pub struct TenancyConfig {
    /// Whether requests without a valid key may run when no key exists.
    pub allow_open: bool,
    /// Completion tokens reserved for a request without `max_tokens`.
    pub default_completion_reserve: u32,
}

impl Default for TenancyConfig {
    fn default() -> Self {
        Self {
            allow_open: true,
            default_completion_reserve: 1024,
        }
    }
}

/// Who a request runs as.
#[derive(Debug, Clone)]
pub enum Principal {
    Key(Arc<KeyAuth>),
    /// Open mode: no key exists. The tenant is the request's `user` field
    /// or `anonymous`.
    Open,
}

impl Principal {
    pub fn tenant_id(&self) -> Option<&str> {
        match self {
            Principal::Key(k) => Some(&k.tenant.id),
            Principal::Open => None,
        }
    }

    pub fn key_id(&self) -> Option<&str> {
        match self {
            Principal::Key(k) => Some(&k.key.id),
            Principal::Open => None,
        }
    }

    /// The key's limits, then its tenant's.
    pub(crate) fn limit_sets(&self) -> Vec<(String, &Limits)> {
        match self {
            Principal::Key(k) => vec![
                (format!("k:{}", k.key.id), &k.key.limits),
                (format!("t:{}", k.tenant.id), &k.tenant.limits),
            ],
            Principal::Open => vec![],
        }
    }

    pub fn allows_model(&self, model: &str) -> bool {
        match self {
            Principal::Key(k) => {
                k.key.limits.allows_model(model) && k.tenant.limits.allows_model(model)
            }
            Principal::Open => true,
        }
    }

    /// One charge of `cost` per bucket of the kind `prefix` (`rpm`, `tpm`)
    /// that the key or its tenant limits.
    pub(crate) fn demands(
        &self,
        prefix: &str,
        limit: fn(&Limits) -> Option<u64>,
        cost: u64,
    ) -> Vec<Demand> {
        self.limit_sets()
            .into_iter()
            .filter_map(|(scope, l)| {
                limit(l).map(|per_minute| Demand {
                    bucket: format!("{prefix}:{scope}"),
                    per_minute,
                    cost,
                })
            })
            .collect()
    }

    /// Scheduler weight: the key's, else the tenant's.
    pub fn weight(&self) -> Option<u32> {
        match self {
            Principal::Key(k) => k.key.limits.weight.or(k.tenant.limits.weight),
            Principal::Open => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("You didn't provide an API key. Send it as `Authorization: Bearer sk-aitier-...`.")]
    Missing,
    #[error("Incorrect API key provided.")]
    Invalid,
    #[error("This API key has been revoked.")]
    Revoked,
    #[error("This API key's tenant is disabled.")]
    TenantDisabled,
    #[error("the key store is unavailable")]
    Store(#[from] StoreError),
}

pub struct Tenancy {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) limiter: Arc<dyn Limiter>,
    pub(crate) ledger: Ledger,
    pub(crate) config: TenancyConfig,
    /// Set once a key is known to exist. Keys are never deleted (revoked
    /// ones count), so it never goes back.
    keys_exist: AtomicBool,
    /// When "no key exists" was last read: in open mode, requests without
    /// a key would otherwise cost a query each.
    checked_empty_at: Mutex<Option<Instant>>,
}

/// How long "no key exists" is trusted. A key made through this process
/// counts at once; one made by another process within this time.
const NO_KEYS_TTL: Duration = Duration::from_secs(1);

/// One `x-ratelimit-*` triple's worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<Snapshot>,
    pub tokens: Option<Snapshot>,
}

impl RateHeaders {
    /// Header names and values, in OpenAI's formats.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (s, names) in [
            (
                self.requests,
                [
                    "x-ratelimit-limit-requests",
                    "x-ratelimit-remaining-requests",
                    "x-ratelimit-reset-requests",
                ],
            ),
            (
                self.tokens,
                [
                    "x-ratelimit-limit-tokens",
                    "x-ratelimit-remaining-tokens",
                    "x-ratelimit-reset-tokens",
                ],
            ),
        ] {
            if let Some(s) = s {
                out.push((names[0], s.limit.to_string()));
                out.push((names[1], s.remaining.to_string()));
                out.push((names[2], openai_duration(s.reset)));
            }
        }
        out
    }
}

pub(crate) fn limiter_down(e: LimiterError) -> CoreError {
    tracing::error!(error = %e, "rate limit store failed; refusing the request");
    CoreError::Unavailable {
        message: "Rate limits cannot be checked right now; the request was not run.".into(),
    }
}

pub(crate) fn store_down(e: StoreError) -> CoreError {
    tracing::error!(error = %e, "tenancy store failed; refusing the request");
    CoreError::Unavailable {
        message: "Usage limits cannot be checked right now; the request was not run.".into(),
    }
}

impl Tenancy {
    pub fn new(
        store: Arc<dyn Store>,
        limiter: Arc<dyn Limiter>,
        config: TenancyConfig,
    ) -> Arc<Self> {
        let ledger = Ledger::start(store.clone());
        Arc::new(Self {
            store,
            limiter,
            ledger,
            config,
            keys_exist: AtomicBool::new(false),
            checked_empty_at: Mutex::new(None),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Resolves the bearer token. A request without a valid key runs open
    /// only while open mode is allowed and no key was ever created.
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<Principal, AuthError> {
        let parsed = bearer.and_then(keys::parse);
        if let Some((id, secret)) = parsed {
            if let Some(found) = self.store.find_key(id).await? {
                if !keys::verify(secret, &found.secret_hash) {
                    return Err(AuthError::Invalid);
                }
                if found.key.revoked_at.is_some() {
                    return Err(AuthError::Revoked);
                }
                if found.tenant.disabled {
                    return Err(AuthError::TenantDisabled);
                }
                return Ok(Principal::Key(Arc::new(found)));
            }
        }
        if self.config.allow_open && !self.any_key().await? {
            return Ok(Principal::Open);
        }
        Err(if bearer.is_some() {
            AuthError::Invalid
        } else {
            AuthError::Missing
        })
    }

    /// Checks the request rate and concurrency limits and starts metering
    /// a request; the returned ticket must go into the request's context.
    pub async fn begin(
        self: &Arc<Self>,
        principal: &Principal,
        tenant_label: &str,
        model: &str,
        request_id: &str,
    ) -> Result<Ticket, CoreError> {
        let sets = principal.limit_sets();
        let demands = principal.demands("rpm", |l| l.rpm, 1);
        let ticket = Ticket::new(
            self.clone(),
            principal.clone(),
            tenant_label,
            model,
            request_id,
        );
        for (scope, l) in &sets {
            if let Some(max) = l.max_concurrent {
                let bucket = format!("conc:{scope}");
                if !self
                    .limiter
                    .acquire(&bucket, max)
                    .await
                    .map_err(limiter_down)?
                {
                    ticket.refused("rate_limited");
                    return Err(CoreError::RateLimited {
                        message: format!(
                            "Too many concurrent requests: at most {max} may run at once for this {}.",
                            scope_kind(scope)
                        ),
                        retry_after: Duration::from_secs(1),
                        never: false,
                    });
                }
                ticket.holds_place(bucket);
            }
        }
        if !demands.is_empty() {
            if let Err(d) = self.limiter.check(&demands).await.map_err(limiter_down)? {
                ticket.refused("rate_limited");
                return Err(CoreError::RateLimited {
                    message: format!(
                        "Rate limit reached for requests per minute on this {}. Retry after {}.",
                        scope_kind(d.bucket.trim_start_matches("rpm:")),
                        openai_duration(d.retry_after)
                    ),
                    retry_after: d.retry_after,
                    never: false,
                });
            }
        }
        Ok(ticket)
    }

    /// The tighter of the key's and the tenant's buckets, per dimension.
    pub async fn rate_headers(&self, principal: &Principal) -> Result<RateHeaders, LimiterError> {
        let mut out = RateHeaders {
            requests: None,
            tokens: None,
        };
        for (scope, l) in principal.limit_sets() {
            for (prefix, limit, slot) in [
                ("rpm", l.rpm, &mut out.requests),
                ("tpm", l.tpm, &mut out.tokens),
            ] {
                if let Some(limit) = limit {
                    let s = self
                        .limiter
                        .peek(&format!("{prefix}:{scope}"), limit)
                        .await?;
                    if slot.is_none_or(|cur: Snapshot| s.remaining < cur.remaining) {
                        *slot = Some(s);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn any_key(&self) -> Result<bool, StoreError> {
        if self.keys_exist.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let checked = *self
            .checked_empty_at
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if checked.is_some_and(|at| at.elapsed() < NO_KEYS_TTL) {
            return Ok(false);
        }
        let any = self.store.has_keys().await?;
        if any {
            self.keys_exist.store(true, Ordering::Relaxed);
        } else {
            *self
                .checked_empty_at
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        }
        Ok(any)
    }

    /// Call after creating a key through this process: open mode ends at once.
    pub fn key_created(&self) {
        self.keys_exist.store(true, Ordering::Relaxed);
    }
}

pub(crate) fn scope_kind(scope: &str) -> &'static str {
    if scope.starts_with("k:") {
        "API key"
    } else {
        "tenant"
    }
}
