//! Persistent tenancy state behind one trait: tenants, keys, budget
//! counters and the usage ledger. `SqlStore` implements it for SQLite and
//! PostgreSQL with the same schema and queries.
mod budgets;
mod rows;
mod sql;
mod sqlite;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use aitier_core::{CoreError, FinishReason};

use crate::limits::Limits;
use crate::scope::Scope;

pub use sql::{redact_url, SqlStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Db(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub disabled: bool,
    /// Unix milliseconds.
    pub created_at: i64,
    #[serde(flatten)]
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    /// The public id: the part of the key between `sk-aitier-` and the secret.
    pub id: String,
    pub tenant_id: String,
    pub name: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    #[serde(flatten)]
    pub limits: Limits,
}

/// A key row joined with its tenant, for authentication.
#[derive(Debug, Clone)]
pub struct KeyAuth {
    pub key: ApiKey,
    pub secret_hash: String,
    pub tenant: Tenant,
}

/// A change to a tenant: `None` leaves a field alone; for the limits,
/// `Some(None)` removes the limit.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub disabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>)]
    pub rpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>)]
    pub tpm: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>)]
    pub max_concurrent: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>)]
    pub budget_tokens: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<crate::limits::BudgetPeriod>)]
    pub budget_period: Option<Option<crate::limits::BudgetPeriod>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub weight: Option<Option<u32>>,
}

/// Tells a JSON `null` (clear it) from an absent field (leave it).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl TenantPatch {
    pub fn apply(&self, t: &mut Tenant) {
        if let Some(n) = &self.name {
            t.name = n.clone();
        }
        if let Some(d) = self.disabled {
            t.disabled = d;
        }
        let l = &mut t.limits;
        if let Some(v) = &self.models {
            l.models = v.clone();
        }
        if let Some(v) = self.rpm {
            l.rpm = v;
        }
        if let Some(v) = self.tpm {
            l.tpm = v;
        }
        if let Some(v) = self.max_concurrent {
            l.max_concurrent = v;
        }
        if let Some(v) = self.budget_tokens {
            l.budget_tokens = v;
        }
        if let Some(v) = self.budget_period {
            l.budget_period = v;
        }
        if let Some(v) = self.weight {
            l.weight = v;
        }
    }
}

/// Tokens held against one budget counter until the request ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The request's holds share this id (their lease's).
    pub hold: String,
    pub scope: Scope,
    /// The budget period label the tokens were held in.
    pub period: String,
    pub tokens: u64,
    pub limit: u64,
}

/// How a request ended, as the ledger's `status` column says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The client went away first.
    Cancelled,
    RateLimited,
    QuotaExceeded,
    Timeout,
    UpstreamError,
    Overloaded,
    Invalid,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Cancelled => "cancelled",
            Outcome::RateLimited => "rate_limited",
            Outcome::QuotaExceeded => "quota_exceeded",
            Outcome::Timeout => "timeout",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Overloaded => "overloaded",
            Outcome::Invalid => "invalid",
            Outcome::Error => "error",
        }
    }

    /// How a request that failed with `e` ended.
    pub fn of(e: &CoreError) -> Self {
        match e {
            CoreError::RateLimited { .. } => Outcome::RateLimited,
            CoreError::QuotaExceeded { .. } => Outcome::QuotaExceeded,
            CoreError::Timeout { .. } => Outcome::Timeout,
            CoreError::Upstream { .. } => Outcome::UpstreamError,
            CoreError::Overloaded { .. } => Outcome::Overloaded,
            CoreError::InvalidRequest { .. }
            | CoreError::ContextLengthExceeded { .. }
            | CoreError::Refused { .. } => Outcome::Invalid,
            _ => Outcome::Error,
        }
    }
}

/// One ledger row: what a request used and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    /// Unique, so that writing the row again adds nothing.
    pub row_id: String,
    pub ts: i64,
    pub request_id: String,
    pub tenant_id: String,
    pub key_id: Option<String>,
    pub model: String,
    pub provider: String,
    /// The API path it came in on (`/v1/chat/completions`, `/v1/messages`, ...).
    pub endpoint: String,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub completion_tokens: u64,
    pub ttft_ms: Option<u64>,
    pub duration_ms: u64,
    pub status: Outcome,
    /// Set when `status` is `Ok`.
    pub finish_reason: Option<FinishReason>,
    /// Token counts are an estimate (an upstream that reported none).
    pub estimated: bool,
    /// Budget holds to settle with this row's real usage.
    pub reservations: Vec<Reservation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Tenant,
    Key,
    Model,
    Day,
    /// A UTC hour, `2026-12-04T17`.
    Hour,
    Status,
    Provider,
    Endpoint,
}

impl GroupBy {
    pub const ALL: [GroupBy; 8] = [
        GroupBy::Tenant,
        GroupBy::Key,
        GroupBy::Model,
        GroupBy::Provider,
        GroupBy::Endpoint,
        GroupBy::Day,
        GroupBy::Hour,
        GroupBy::Status,
    ];

    /// The word a query names it by.
    pub fn name(self) -> &'static str {
        match self {
            GroupBy::Tenant => "tenant",
            GroupBy::Key => "key",
            GroupBy::Model => "model",
            GroupBy::Day => "day",
            GroupBy::Hour => "hour",
            GroupBy::Status => "status",
            GroupBy::Provider => "provider",
            GroupBy::Endpoint => "endpoint",
        }
    }

    /// Its column in a usage report (JSON field, CSV header).
    pub fn column(self) -> &'static str {
        match self {
            GroupBy::Tenant => "tenant_id",
            GroupBy::Key => "key_id",
            other => other.name(),
        }
    }

    pub fn parse_list(text: &str) -> Result<Vec<GroupBy>, String> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let g = Self::ALL
                .into_iter()
                .find(|g| g.name() == part)
                .ok_or_else(|| {
                    format!(
                        "cannot group by `{part}`: use tenant, key, model, provider, endpoint, day, hour or status"
                    )
                })?;
            if !out.contains(&g) {
                out.push(g);
            }
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Default)]
pub struct UsageQuery {
    pub group_by: Vec<GroupBy>,
    pub tenant: Option<String>,
    pub key: Option<String>,
    pub model: Option<String>,
    /// Unix ms, inclusive.
    pub from: Option<i64>,
    /// Unix ms, exclusive.
    pub to: Option<i64>,
    /// Add each group's time-to-first-token and latency percentiles.
    pub latency: bool,
}

/// Usage summed over one group; the grouping columns not asked for are `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct UsageRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hour: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Only when the query asked for them.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latencies>,
}

/// Percentiles (nearest rank) of a group's rows, in milliseconds: time to
/// first token over the rows that have one (generations, cancelled ones
/// included), latency over the rows that finished `ok`. `None` where the
/// group has no such row.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Latencies {
    pub ttft_ms_p50: Option<u64>,
    pub ttft_ms_p90: Option<u64>,
    pub ttft_ms_p99: Option<u64>,
    pub latency_ms_p50: Option<u64>,
    pub latency_ms_p90: Option<u64>,
    pub latency_ms_p99: Option<u64>,
}

/// One ledger row's timings.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub ttft_ms: Option<u64>,
    pub duration_ms: u64,
    /// It finished `ok`.
    pub ok: bool,
}

impl Latencies {
    pub fn of(rows: impl IntoIterator<Item = Timing>) -> Self {
        let (mut ttft, mut latency) = (Vec::new(), Vec::new());
        for r in rows {
            ttft.extend(r.ttft_ms);
            if r.ok {
                latency.push(r.duration_ms);
            }
        }
        ttft.sort_unstable();
        latency.sort_unstable();
        Self {
            ttft_ms_p50: percentile(&ttft, 50),
            ttft_ms_p90: percentile(&ttft, 90),
            ttft_ms_p99: percentile(&ttft, 99),
            latency_ms_p50: percentile(&latency, 50),
            latency_ms_p90: percentile(&latency, 90),
            latency_ms_p99: percentile(&latency, 99),
        }
    }
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: usize) -> Option<u64> {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

impl UsageRow {
    /// The value of one grouping column.
    pub fn group(&self, g: GroupBy) -> Option<&str> {
        match g {
            GroupBy::Tenant => &self.tenant_id,
            GroupBy::Key => &self.key_id,
            GroupBy::Model => &self.model,
            GroupBy::Day => &self.day,
            GroupBy::Hour => &self.hour,
            GroupBy::Status => &self.status,
            GroupBy::Provider => &self.provider,
            GroupBy::Endpoint => &self.endpoint,
        }
        .as_deref()
    }

    pub fn group_mut(&mut self, g: GroupBy) -> &mut Option<String> {
        match g {
            GroupBy::Tenant => &mut self.tenant_id,
            GroupBy::Key => &mut self.key_id,
            GroupBy::Model => &mut self.model,
            GroupBy::Day => &mut self.day,
            GroupBy::Hour => &mut self.hour,
            GroupBy::Status => &mut self.status,
            GroupBy::Provider => &mut self.provider,
            GroupBy::Endpoint => &mut self.endpoint,
        }
    }
}

/// A stored Responses API response, owned by one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub id: String,
    /// The tenant id; empty for a server running open.
    pub owner: String,
    pub created_at: i64,
    pub model: String,
    /// The response object, as JSON text.
    pub body: String,
    /// The input items it was given, as a JSON array.
    pub input_items: String,
}

#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// `postgres` or `sqlite`, for logs.
    fn backend(&self) -> &'static str;
    async fn create_tenant(&self, name: &str, limits: &Limits) -> Result<Tenant, StoreError>;
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    /// By id or by name.
    async fn get_tenant(&self, id_or_name: &str) -> Result<Tenant, StoreError>;
    async fn update_tenant(
        &self,
        id_or_name: &str,
        patch: &TenantPatch,
    ) -> Result<Tenant, StoreError>;
    /// Returns the key row and the full key text, which is not kept.
    async fn create_key(
        &self,
        tenant: &str,
        name: Option<&str>,
        limits: &Limits,
    ) -> Result<(ApiKey, String), StoreError>;
    async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>, StoreError>;
    async fn revoke_key(&self, id: &str) -> Result<ApiKey, StoreError>;
    async fn find_key(&self, id: &str) -> Result<Option<KeyAuth>, StoreError>;
    /// Whether any key was ever created (revoked ones count): a service
    /// that once had keys never falls back to running open.
    async fn has_keys(&self) -> Result<bool, StoreError>;
    /// Holds tokens against every counter, or against none: returns the
    /// scope of the first budget that is already spent. The holds last
    /// until `expires_at` (Unix ms) unless renewed.
    async fn reserve(
        &self,
        holds: &[Reservation],
        expires_at: i64,
    ) -> Result<Option<Scope>, StoreError>;
    /// Gives back holds that no request will settle (those not already
    /// given back by their expiry).
    async fn release(&self, holds: &[Reservation]) -> Result<(), StoreError>;
    /// Pushes the expiry of these holds (by hold id) to `expires_at`.
    async fn renew_holds(&self, ids: &[String], expires_at: i64) -> Result<(), StoreError>;
    /// Gives back every hold whose lease ran out before `now` (its
    /// replica died); returns how many.
    async fn expire_holds(&self, now: i64) -> Result<u64, StoreError>;
    /// Writes ledger rows and settles their budget holds, atomically.
    async fn record(&self, rows: &[UsageRecord]) -> Result<(), StoreError>;
    async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, StoreError>;
    /// What a budget counter has used and holds now.
    async fn budget_state(&self, scope: &Scope, period: &str) -> Result<(u64, u64), StoreError>;
    async fn save_response(&self, r: &StoredResponse) -> Result<(), StoreError>;
    /// Only the owner's: another tenant's response is not found.
    async fn get_response(
        &self,
        id: &str,
        owner: &str,
    ) -> Result<Option<StoredResponse>, StoreError>;
    /// Whether the owner had it.
    async fn delete_response(&self, id: &str, owner: &str) -> Result<bool, StoreError>;
}
