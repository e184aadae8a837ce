//! Tenancy: tenants and their API keys, rate limits (requests and tokens per
//! minute, concurrency), token budgets per day or month, and the usage
//! ledger. State lives behind the `Store` trait (SQLite or PostgreSQL via
//! sqlx) and the `Limiter` trait (in-process GCRA buckets).
//!
//! It does not know HTTP: the server turns its errors into responses and
//! its snapshots into `x-ratelimit-*` headers.

pub mod clock;
pub mod keys;
pub mod ledger;
pub mod limiter;
pub mod limits;
pub mod service;
pub mod store;
pub mod testing;
pub mod ticket;

pub use limiter::{Limiter, MemoryLimiter};
pub use limits::{BudgetPeriod, Limits};
pub use service::{AuthError, Principal, RateHeaders, Tenancy, TenancyConfig};
pub use store::{
    ApiKey, GroupBy, SqlStore, Store, StoreError, Tenant, TenantPatch, UsageQuery, UsageRecord,
    UsageRow,
};
pub use ticket::Ticket;
