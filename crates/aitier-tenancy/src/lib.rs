//! Tenancy: tenants and their API keys, rate limits (requests and tokens per
//! minute, concurrency), token budgets per day or month, and the usage
//! ledger. State lives behind the `Store` trait (SQLite or PostgreSQL via
//! sqlx) and the `Limiter` trait (in-process GCRA buckets); admission
//! against both is in `admission`.
//!
//! It does not know HTTP: the server turns its errors into responses and
//! its snapshots into `x-ratelimit-*` headers.

mod admission;
pub mod headers;
pub mod keys;
mod leases;
pub mod ledger;
pub mod limiter;
pub mod limits;
pub mod principal;
pub mod redis_limiter;
pub mod refusals;
pub mod scope;
pub mod service;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod ticket;

pub use headers::RateHeaders;
pub use limiter::{Limiter, MemoryLimiter};
pub use limits::{BudgetPeriod, Limits};
pub use principal::Principal;
pub use redis_limiter::{RedisLimiter, RedisLimits};
pub use scope::{BucketKey, Meter, Scope};
pub use service::{AuthError, Tenancy, TenancyConfig};
pub use store::{
    ApiKey, GroupBy, Latencies, Outcome, SqlStore, Store, StoreError, StoredResponse, Tenant,
    TenantPatch, UsageQuery, UsageRecord, UsageRow,
};
pub use ticket::Ticket;
