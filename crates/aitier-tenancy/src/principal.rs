//! Who a request runs as, and the limits that apply to it.
use std::sync::Arc;

use crate::limiter::Demand;
use crate::limits::Limits;
use crate::scope::{BucketKey, Meter, Scope};
use crate::store::KeyAuth;

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
    pub(crate) fn limit_sets(&self) -> Vec<(Scope, &Limits)> {
        match self {
            Principal::Key(k) => vec![
                (Scope::Key(k.key.id.clone()), &k.key.limits),
                (Scope::Tenant(k.tenant.id.clone()), &k.tenant.limits),
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

    /// One charge of `cost` per `meter` bucket the key or its tenant limits.
    pub(crate) fn demands(
        &self,
        meter: Meter,
        limit: fn(&Limits) -> Option<u64>,
        cost: u64,
    ) -> Vec<Demand> {
        self.limit_sets()
            .into_iter()
            .filter_map(|(scope, l)| {
                limit(l).map(|per_minute| Demand {
                    bucket: BucketKey::new(meter, scope),
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
