//! The store on SQLite or PostgreSQL through sqlx's `Any` driver. Queries
//! are written once in the dialect both accept (`$n` parameters, BIGINT
//! columns, `ON CONFLICT`); only the migrations differ.
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor, Row};

use super::rows::{
    bind_limits, i, key_from, latency_sample, latency_sql, limits_from, tenant_from, usage_row,
    usage_sql, Bind,
};
use super::sqlite::{outside_transaction, sqlite_url};
use super::{
    ApiKey, KeyAuth, Latencies, Reservation, Store, StoreError, StoredResponse, Tenant,
    TenantPatch, Timing, UsageQuery, UsageRecord, UsageRow,
};
use crate::keys;
use crate::limits::Limits;
use crate::scope::Scope;
use aitier_core::clock::now_ms;

/// Ledger rows per INSERT: 16 parameters each, well under both databases' limits.
pub(super) const INSERT_CHUNK: usize = 100;

/// How long a query waits for a connection. sqlx keeps trying to connect
/// until then (it takes a refused connection for a database starting up),
/// so this is also how long a request waits before it is told the
/// database is down.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

pub struct SqlStore {
    pool: AnyPool,
    /// Writes go through here. On SQLite it is one connection, so writers
    /// queue in this process instead of sleeping in SQLite's busy handler
    /// (1 ms and up per retry); on PostgreSQL it is the same pool.
    writer: AnyPool,
    postgres: bool,
    /// Set once the migrations have run: the first query that reaches the
    /// database runs them, so the service can start while it is down.
    migrated: tokio::sync::OnceCell<()>,
}

const TENANT_COLS: &str =
    "id, name, disabled, created_at, models, rpm, tpm, max_concurrent, budget_tokens, budget_period, weight";
const KEY_COLS: &str = "k.id, k.tenant_id, k.name, k.created_at, k.revoked_at, k.models, k.rpm, k.tpm, k.max_concurrent, k.budget_tokens, k.budget_period, k.weight";

/// Hides the password of a database URL, for logs and errors: in the
/// user info and in a `password=` parameter.
pub fn redact_url(url: &str) -> String {
    let url = match url.split_once('?') {
        Some((base, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_string(),
                })
                .collect();
            format!("{base}?{}", params.join("&"))
        }
        None => url.to_string(),
    };
    let url = url.as_str();
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Tenants are found by id or by name, so a name must never look like an id.
fn check_name(name: &str) -> Result<(), StoreError> {
    if name.trim().is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(StoreError::Invalid(
            "a tenant name must be 1 to 200 printable characters".into(),
        ));
    }
    if name.starts_with("tn_") {
        return Err(StoreError::Invalid(
            "a tenant name may not start with `tn_` (that is how ids look)".into(),
        ));
    }
    Ok(())
}

fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}

impl SqlStore {
    /// Opens (creating a SQLite file if needed) and migrates.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = Self::lazy(url)?;
        store.ready().await?;
        Ok(store)
    }

    /// A store that connects and migrates on first use, and again after
    /// each failure: while the database is down every call fails with
    /// `StoreError::Db`, and the first after it returns succeeds.
    pub fn lazy(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let url = if postgres {
            url.to_string()
        } else {
            sqlite_url(url)?
        };
        let pool = |max: u32, writes: bool| {
            let mut opts = AnyPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(ACQUIRE_TIMEOUT);
            if !postgres && writes {
                opts = opts.before_acquire(|conn, _| Box::pin(outside_transaction(conn)));
            }
            if !postgres {
                opts = opts.after_connect(|conn, _| {
                    Box::pin(async move {
                        // WAL and NORMAL sync: a commit costs a write, not an fsync.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        Ok(())
                    })
                });
            }
            opts.connect_lazy(&url)
                .map_err(|e| StoreError::Invalid(format!("database {}: {e}", redact_url(&url))))
        };
        let reader = pool(if postgres { 16 } else { 8 }, postgres)?;
        let writer = if postgres {
            reader.clone()
        } else {
            pool(1, true)?
        };
        Ok(Self {
            pool: reader,
            writer,
            postgres,
            migrated: tokio::sync::OnceCell::new(),
        })
    }

    /// Migrates once the database answers.
    pub async fn ready(&self) -> Result<(), StoreError> {
        let migrator = if self.postgres {
            &POSTGRES_MIGRATIONS
        } else {
            &SQLITE_MIGRATIONS
        };
        self.migrated
            .get_or_try_init(|| async {
                migrator
                    .run(&self.writer)
                    .await
                    .map_err(|e| StoreError::Db(format!("migrating: {e}")))
            })
            .await?;
        Ok(())
    }

    async fn pool(&self) -> Result<&AnyPool, StoreError> {
        self.ready().await?;
        Ok(&self.pool)
    }

    pub(super) async fn writer(&self) -> Result<&AnyPool, StoreError> {
        self.ready().await?;
        Ok(&self.writer)
    }

    async fn fetch(
        &self,
        (sql, binds): (String, Vec<Bind>),
    ) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = match b {
                Bind::Text(s) => query.bind(s),
                Bind::Int(n) => query.bind(n),
            };
        }
        Ok(query.fetch_all(self.pool().await?).await?)
    }

    /// Each group's percentiles, from its rows' timings: read here rather
    /// than in SQL, which SQLite and PostgreSQL do not share a way to.
    async fn add_latencies(&self, q: &UsageQuery, out: &mut [UsageRow]) -> Result<(), StoreError> {
        let mut by_group: HashMap<Vec<String>, Vec<Timing>> = HashMap::new();
        for row in self.fetch(latency_sql(q)).await? {
            let (group, sample) = latency_sample(&row, &q.group_by)?;
            by_group.entry(group).or_default().push(sample);
        }
        for r in out {
            let group: Vec<String> = q
                .group_by
                .iter()
                .map(|&g| r.group(g).unwrap_or_default().to_string())
                .collect();
            let samples = by_group.remove(&group).unwrap_or_default();
            r.latency = Some(Latencies::of(samples));
        }
        Ok(())
    }

    async fn fetch_tenant(&self, id_or_name: &str) -> Result<Option<Tenant>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TENANT_COLS} FROM tenants WHERE id = $1 OR name = $1"
        ))
        .bind(id_or_name)
        .fetch_optional(self.pool().await?)
        .await?;
        Ok(row.as_ref().map(tenant_from).transpose()?)
    }
}

fn unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.is_unique_violation() || d.message().to_lowercase().contains("unique")
        }
        _ => false,
    }
}

#[async_trait::async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        if self.postgres {
            "postgres"
        } else {
            "sqlite"
        }
    }

    async fn create_tenant(&self, name: &str, limits: &Limits) -> Result<Tenant, StoreError> {
        limits.validate().map_err(StoreError::Invalid)?;
        check_name(name)?;
        let t = Tenant {
            id: new_id("tn"),
            name: name.to_string(),
            disabled: false,
            created_at: now_ms(),
            limits: limits.clone(),
        };
        let sql = format!(
            "INSERT INTO tenants ({TENANT_COLS}) VALUES ($1, $2, 0, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        let q = sqlx::query(&sql)
            .bind(&t.id)
            .bind(&t.name)
            .bind(t.created_at);
        let res = bind_limits(q, limits).execute(self.writer().await?).await;
        match res {
            Ok(_) => Ok(t),
            Err(e) if unique_violation(&e) => Err(StoreError::Conflict(format!(
                "a tenant named `{name}` already exists"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TENANT_COLS} FROM tenants ORDER BY created_at, id"
        ))
        .fetch_all(self.pool().await?)
        .await?;
        Ok(rows.iter().map(tenant_from).collect::<Result<_, _>>()?)
    }

    async fn get_tenant(&self, id_or_name: &str) -> Result<Tenant, StoreError> {
        self.fetch_tenant(id_or_name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("tenant `{id_or_name}`")))
    }

    async fn update_tenant(
        &self,
        id_or_name: &str,
        patch: &TenantPatch,
    ) -> Result<Tenant, StoreError> {
        let mut t = self.get_tenant(id_or_name).await?;
        if let Some(name) = &patch.name {
            check_name(name)?;
        }
        patch.apply(&mut t);
        t.limits.validate().map_err(StoreError::Invalid)?;
        let q = sqlx::query(
            "UPDATE tenants SET name = $2, disabled = $3, models = $4, rpm = $5, tpm = $6, \
             max_concurrent = $7, budget_tokens = $8, budget_period = $9, weight = $10 WHERE id = $1",
        )
        .bind(&t.id)
        .bind(&t.name)
        .bind(i64::from(t.disabled));
        let res = bind_limits(q, &t.limits)
            .execute(self.writer().await?)
            .await;
        match res {
            Ok(_) => Ok(t),
            Err(e) if unique_violation(&e) => Err(StoreError::Conflict(format!(
                "a tenant named `{}` already exists",
                t.name
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn create_key(
        &self,
        tenant: &str,
        name: Option<&str>,
        limits: &Limits,
    ) -> Result<(ApiKey, String), StoreError> {
        limits.validate().map_err(StoreError::Invalid)?;
        let t = self.get_tenant(tenant).await?;
        let minted = keys::mint();
        let key = ApiKey {
            id: minted.id.clone(),
            tenant_id: t.id,
            name: name.map(str::to_string),
            created_at: now_ms(),
            revoked_at: None,
            limits: limits.clone(),
        };
        let q = sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, name, secret_hash, created_at, models, rpm, tpm, \
             max_concurrent, budget_tokens, budget_period, weight) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&key.id)
        .bind(&key.tenant_id)
        .bind(key.name.clone())
        .bind(&minted.secret_hash)
        .bind(key.created_at);
        bind_limits(q, limits).execute(self.writer().await?).await?;
        Ok((key, minted.full))
    }

    async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>, StoreError> {
        let rows = match tenant {
            Some(t) => {
                let t = self.get_tenant(t).await?;
                sqlx::query(&format!(
                    "SELECT {KEY_COLS} FROM api_keys k WHERE k.tenant_id = $1 ORDER BY k.created_at, k.id"
                ))
                .bind(t.id)
                .fetch_all(self.pool().await?)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {KEY_COLS} FROM api_keys k ORDER BY k.created_at, k.id"
                ))
                .fetch_all(self.pool().await?)
                .await?
            }
        };
        Ok(rows.iter().map(key_from).collect::<Result<_, _>>()?)
    }

    async fn revoke_key(&self, id: &str) -> Result<ApiKey, StoreError> {
        sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .bind(now_ms())
            .execute(self.writer().await?)
            .await?;
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLS} FROM api_keys k WHERE k.id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool().await?)
        .await?;
        row.as_ref()
            .map(key_from)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("key `{id}`")))
    }

    async fn find_key(&self, id: &str) -> Result<Option<KeyAuth>, StoreError> {
        let row = sqlx::query(
            "SELECT k.id, k.tenant_id, k.name, k.secret_hash, k.created_at, k.revoked_at, \
             k.models, k.rpm, k.tpm, k.max_concurrent, k.budget_tokens, k.budget_period, k.weight, \
             t.id AS t_id, t.name AS t_name, t.disabled AS t_disabled, t.created_at AS t_created_at, \
             t.models AS t_models, t.rpm AS t_rpm, t.tpm AS t_tpm, t.max_concurrent AS t_max_concurrent, \
             t.budget_tokens AS t_budget_tokens, t.budget_period AS t_budget_period, t.weight AS t_weight \
             FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool().await?)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let tenant = Tenant {
            id: row.try_get("t_id")?,
            name: row.try_get("t_name")?,
            disabled: row.try_get::<i64, _>("t_disabled")? != 0,
            created_at: row.try_get("t_created_at")?,
            limits: limits_from(&row, "t_")?,
        };
        Ok(Some(KeyAuth {
            key: key_from(&row)?,
            secret_hash: row.try_get("secret_hash")?,
            tenant,
        }))
    }

    async fn has_keys(&self) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM api_keys")
            .fetch_one(self.pool().await?)
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    async fn reserve(
        &self,
        holds: &[Reservation],
        expires_at: i64,
    ) -> Result<Option<Scope>, StoreError> {
        self.hold_budgets(holds, expires_at).await
    }

    async fn release(&self, holds: &[Reservation]) -> Result<(), StoreError> {
        self.give_back(holds).await
    }

    async fn renew_holds(&self, ids: &[String], expires_at: i64) -> Result<(), StoreError> {
        self.renew(ids, expires_at).await
    }

    async fn expire_holds(&self, now: i64) -> Result<u64, StoreError> {
        self.expire(now).await
    }

    async fn record(&self, rows: &[UsageRecord]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer().await?.begin().await?;
        // A batch is retried when its commit's answer was lost, so a row
        // already written is skipped (by its id), and settles nothing again.
        let mut inserted = HashSet::new();
        for chunk in rows.chunks(INSERT_CHUNK) {
            let mut sql = String::from(
                "INSERT INTO usage_records (ts, request_id, tenant_id, key_id, model, provider, \
                 prompt_tokens, cached_tokens, completion_tokens, ttft_ms, duration_ms, status, \
                 finish_reason, estimated, endpoint, row_id) VALUES ",
            );
            for k in 0..chunk.len() {
                if k > 0 {
                    sql.push_str(", ");
                }
                let b = k * 16;
                let params: Vec<String> = (1..=16).map(|j| format!("${}", b + j)).collect();
                sql.push_str(&format!("({})", params.join(", ")));
            }
            sql.push_str(" ON CONFLICT (row_id) DO NOTHING RETURNING row_id");
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(r.ts)
                    .bind(&r.request_id)
                    .bind(&r.tenant_id)
                    .bind(r.key_id.clone())
                    .bind(&r.model)
                    .bind(&r.provider)
                    .bind(i(Some(r.prompt_tokens)))
                    .bind(i(Some(r.cached_tokens)))
                    .bind(i(Some(r.completion_tokens)))
                    .bind(i(r.ttft_ms))
                    .bind(i(Some(r.duration_ms)))
                    .bind(r.status.as_str())
                    .bind(r.finish_reason.map(|f| f.as_str()))
                    .bind(i64::from(r.estimated))
                    .bind(&r.endpoint)
                    .bind(&r.row_id);
            }
            for row in q.fetch_all(&mut *tx).await? {
                inserted.insert(row.try_get::<String, _>(0)?);
            }
        }
        let written: Vec<&UsageRecord> = rows
            .iter()
            .filter(|r| inserted.contains(&r.row_id))
            .collect();
        self.settle_budgets(&mut tx, &written).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn usage(&self, q: &UsageQuery) -> Result<Vec<UsageRow>, StoreError> {
        let rows = self.fetch(usage_sql(q)).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            if let Some(r) = usage_row(&row, &q.group_by)? {
                out.push(r);
            }
        }
        if q.latency {
            self.add_latencies(q, &mut out).await?;
        }
        Ok(out)
    }

    async fn budget_state(&self, scope: &Scope, period: &str) -> Result<(u64, u64), StoreError> {
        let row =
            sqlx::query("SELECT used, reserved FROM budget_usage WHERE scope = $1 AND period = $2")
                .bind(scope.to_string())
                .bind(period)
                .fetch_optional(self.pool().await?)
                .await?;
        Ok(match row {
            Some(r) => (
                r.try_get::<i64, _>("used")?.max(0) as u64,
                r.try_get::<i64, _>("reserved")?.max(0) as u64,
            ),
            None => (0, 0),
        })
    }

    async fn save_response(&self, r: &StoredResponse) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO responses (id, owner, created_at, model, body, input_items) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&r.id)
        .bind(&r.owner)
        .bind(r.created_at)
        .bind(&r.model)
        .bind(&r.body)
        .bind(&r.input_items)
        .execute(self.writer().await?)
        .await?;
        Ok(())
    }

    async fn get_response(
        &self,
        id: &str,
        owner: &str,
    ) -> Result<Option<StoredResponse>, StoreError> {
        let row = sqlx::query(
            "SELECT id, owner, created_at, model, body, input_items FROM responses \
             WHERE id = $1 AND owner = $2",
        )
        .bind(id)
        .bind(owner)
        .fetch_optional(self.pool().await?)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(StoredResponse {
            id: row.try_get("id")?,
            owner: row.try_get("owner")?,
            created_at: row.try_get("created_at")?,
            model: row.try_get("model")?,
            body: row.try_get("body")?,
            input_items: row.try_get("input_items")?,
        }))
    }

    async fn delete_response(&self, id: &str, owner: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM responses WHERE id = $1 AND owner = $2")
            .bind(id)
            .bind(owner)
            .execute(self.writer().await?)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/aitier"),
            "postgres://app:***@db:5432/aitier"
        );
        assert_eq!(
            redact_url("sqlite://data/aitier.db"),
            "sqlite://data/aitier.db"
        );
    }
}
