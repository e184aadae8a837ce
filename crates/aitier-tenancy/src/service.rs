//! The tenancy front door the server calls: who is asking (`authenticate`),
//! and may this request start (`begin`, then the ticket's `admit` once the
//! provider knows its size). The ticket follows the request to its end and
//! writes its ledger row.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aitier_core::CoreError;

use crate::admission::Admission;
use crate::headers::RateHeaders;
use crate::keys;
use crate::leases::HoldLeases;
use crate::ledger::{Ledger, DEFAULT_CAPACITY};
use crate::limiter::{Limiter, LimiterError, Snapshot};
use crate::principal::Principal;
use crate::refusals::{Refusal, Refusals};
use crate::scope::{BucketKey, Meter};
use crate::store::{Store, StoreError};
use crate::ticket::{Identity, Ticket};

#[derive(Debug, Clone)]
pub struct TenancyConfig {
    /// Whether requests without a valid key may run when no key exists.
    pub allow_open: bool,
    /// Completion tokens reserved for a request without `max_tokens`.
    pub default_completion_reserve: u32,
    /// Requests running plus usage rows not yet written, beyond which new
    /// requests are refused (503 `limits_unavailable`).
    pub ledger_capacity: usize,
    /// Hold the end of each answer until its ledger row is written.
    pub ledger_sync: bool,
    /// While the limiter cannot be reached, let requests through
    /// unchecked instead of refusing them.
    pub limits_fail_open: bool,
    /// How long a budget hold outlives the last renewal by its replica.
    pub hold_lease: Duration,
}

impl Default for TenancyConfig {
    fn default() -> Self {
        Self {
            allow_open: true,
            default_completion_reserve: 1024,
            ledger_capacity: DEFAULT_CAPACITY,
            ledger_sync: false,
            limits_fail_open: false,
            hold_lease: Duration::from_secs(30),
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
    store: Arc<dyn Store>,
    limiter: Arc<dyn Limiter>,
    ledger: Ledger,
    leases: Arc<HoldLeases>,
    config: TenancyConfig,
    refusals: Arc<Refusals>,
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

impl Tenancy {
    pub fn new(
        store: Arc<dyn Store>,
        limiter: Arc<dyn Limiter>,
        config: TenancyConfig,
    ) -> Arc<Self> {
        let ledger = Ledger::start(store.clone(), config.ledger_capacity, config.ledger_sync);
        let leases = HoldLeases::start(store.clone(), config.hold_lease);
        Arc::new(Self {
            store,
            limiter,
            ledger,
            leases,
            config,
            refusals: Arc::default(),
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

    /// Requests the limits refused, by reason.
    pub fn refusals(&self) -> &Refusals {
        &self.refusals
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
    /// a request: the ticket is admitted by size later and follows the
    /// request's events to its end.
    pub async fn begin(
        &self,
        principal: &Principal,
        tenant_label: &str,
        model: &str,
        request_id: &str,
        endpoint: &str,
    ) -> Result<Ticket, CoreError> {
        let Some(slot) = self.ledger.slot() else {
            self.refusals.count(Refusal::LedgerFull);
            tracing::error!(
                pending = self.ledger.pending(),
                "the usage ledger is full (is the database keeping up?); refusing the request"
            );
            return Err(CoreError::Unavailable {
                message: "Usage cannot be recorded right now; the request was not run.".into(),
            });
        };
        let admission = Admission {
            limiter: self.limiter.clone(),
            store: self.store.clone(),
            default_completion_reserve: self.config.default_completion_reserve,
            refusals: self.refusals.clone(),
            fail_open: self.config.limits_fail_open,
            leases: self.leases.clone(),
        };
        let who = Identity {
            principal: principal.clone(),
            tenant_label: tenant_label.to_string(),
            model: model.to_string(),
            request_id: request_id.to_string(),
            endpoint: endpoint.to_string(),
        };
        let mut ticket = Ticket::new(admission, slot, who);
        ticket.enter().await?;
        Ok(ticket)
    }

    /// The tighter of the key's and the tenant's buckets, per dimension.
    pub async fn rate_headers(&self, principal: &Principal) -> Result<RateHeaders, LimiterError> {
        let mut out = RateHeaders {
            requests: None,
            tokens: None,
        };
        for (scope, l) in principal.limit_sets() {
            for (meter, limit, slot) in [
                (Meter::Requests, l.rpm, &mut out.requests),
                (Meter::Tokens, l.tpm, &mut out.tokens),
            ] {
                if let Some(limit) = limit {
                    let bucket = BucketKey::new(meter, scope.clone());
                    let s = self.limiter.peek(&bucket, limit).await?;
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
