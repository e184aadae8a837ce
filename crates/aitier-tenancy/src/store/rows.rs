//! Between rows and domain types: decoding tenants, keys and usage sums,
//! binding limit columns, and the usage report's query.
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{ApiKey, GroupBy, Tenant, Timing, UsageQuery, UsageRow};
use crate::limits::{BudgetPeriod, Limits};
use aitier_core::clock::{date_of, DAY_MS};

const HOUR_MS: i64 = 3_600_000;

/// The limit columns, named with `prefix` (the tenant's columns in a join).
pub(super) fn limits_from(row: &AnyRow, prefix: &str) -> Result<Limits, sqlx::Error> {
    let col = |name: &str| format!("{prefix}{name}");
    let num = |name: &str| -> Result<Option<u64>, sqlx::Error> {
        Ok(row
            .try_get::<Option<i64>, _>(col(name).as_str())?
            .map(|v| v.max(0) as u64))
    };
    let text = |name: &str| row.try_get::<Option<String>, _>(col(name).as_str());
    Ok(Limits {
        // Unreadable means no model, never every model.
        models: text("models")?
            .map(|m| {
                serde_json::from_str::<Vec<String>>(&m).map_err(|e| {
                    sqlx::Error::Decode(
                        format!("column {prefix}models is not a list of model names: {e}").into(),
                    )
                })
            })
            .transpose()?,
        rpm: num("rpm")?,
        tpm: num("tpm")?,
        max_concurrent: num("max_concurrent")?,
        budget_tokens: num("budget_tokens")?,
        budget_period: text("budget_period")?
            .as_deref()
            .and_then(BudgetPeriod::parse),
        weight: num("weight")?.map(|w| w.min(u32::MAX as u64) as u32),
    })
}

pub(super) fn tenant_from(row: &AnyRow) -> Result<Tenant, sqlx::Error> {
    Ok(Tenant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: row.try_get("created_at")?,
        limits: limits_from(row, "")?,
    })
}

pub(super) fn key_from(row: &AnyRow) -> Result<ApiKey, sqlx::Error> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        limits: limits_from(row, "")?,
    })
}

fn models_json(l: &Limits) -> Option<String> {
    l.models
        .as_ref()
        .map(|m| serde_json::to_string(m).unwrap_or_else(|_| "[]".into()))
}

pub(super) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds the seven limit columns, in the order `TENANT_COLS` lists them.
pub(super) fn bind_limits<'q>(q: AnyQuery<'q>, l: &Limits) -> AnyQuery<'q> {
    q.bind(models_json(l))
        .bind(i(l.rpm))
        .bind(i(l.tpm))
        .bind(i(l.max_concurrent))
        .bind(i(l.budget_tokens))
        .bind(l.budget_period.map(|p| p.as_str().to_string()))
        .bind(l.weight.map(i64::from))
}

pub(super) fn i(v: Option<u64>) -> Option<i64> {
    v.map(|v| v.min(i64::MAX as u64) as i64)
}

pub(super) enum Bind {
    Text(String),
    Int(i64),
}

fn alias(g: GroupBy) -> String {
    format!("g_{}", g.name())
}

/// The expression each grouping reads.
fn group_cols(q: &UsageQuery) -> Vec<&'static str> {
    // Every grouping is a column of the same name, but the day and hour.
    q.group_by
        .iter()
        .map(|g| match g {
            GroupBy::Day => "(ts / 86400000)",
            GroupBy::Hour => "(ts / 3600000)",
            g => g.column(),
        })
        .collect()
}

/// `SELECT` of the groups, then `what`, from the rows the query's filters pass.
fn select_filtered(q: &UsageQuery, what: &str) -> (String, Vec<Bind>) {
    let mut sql = String::from("SELECT ");
    for (g, c) in q.group_by.iter().zip(group_cols(q)) {
        sql.push_str(&format!("{c} AS {}, ", alias(*g)));
    }
    sql.push_str(what);
    sql.push_str(" FROM usage_records WHERE 1 = 1");
    let mut binds = Vec::new();
    for (col, v) in [
        ("tenant_id", &q.tenant),
        ("key_id", &q.key),
        ("model", &q.model),
    ] {
        if let Some(v) = v {
            binds.push(Bind::Text(v.clone()));
            sql.push_str(&format!(" AND {col} = ${}", binds.len()));
        }
    }
    if let Some(from) = q.from {
        binds.push(Bind::Int(from));
        sql.push_str(&format!(" AND ts >= ${}", binds.len()));
    }
    if let Some(to) = q.to {
        binds.push(Bind::Int(to));
        sql.push_str(&format!(" AND ts < ${}", binds.len()));
    }
    (sql, binds)
}

/// The usage report's SQL and its parameters: sums per group, filtered.
pub(super) fn usage_sql(q: &UsageQuery) -> (String, Vec<Bind>) {
    let (mut sql, binds) = select_filtered(
        q,
        "COUNT(*) AS requests, CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS p, \
         CAST(COALESCE(SUM(cached_tokens), 0) AS BIGINT) AS c, \
         CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS o",
    );
    let cols = group_cols(q);
    if !cols.is_empty() {
        let list = cols.join(", ");
        sql.push_str(&format!(" GROUP BY {list} ORDER BY {list}"));
    }
    (sql, binds)
}

/// Each row's groups and timings, for the latency percentiles.
pub(super) fn latency_sql(q: &UsageQuery) -> (String, Vec<Bind>) {
    select_filtered(q, "ttft_ms, duration_ms, status")
}

/// A latency row: its groups' values and its timings.
pub(super) fn latency_sample(
    row: &AnyRow,
    group_by: &[GroupBy],
) -> Result<(Vec<String>, Timing), sqlx::Error> {
    let ms = |v: i64| v.max(0) as u64;
    let timing = Timing {
        ttft_ms: row.try_get::<Option<i64>, _>("ttft_ms")?.map(ms),
        duration_ms: ms(row.try_get::<i64, _>("duration_ms")?),
        ok: row.try_get::<String, _>("status")? == "ok",
    };
    Ok((group_values(row, group_by)?, timing))
}

fn group_values(row: &AnyRow, group_by: &[GroupBy]) -> Result<Vec<String>, sqlx::Error> {
    group_by
        .iter()
        .map(|&g| {
            let name = alias(g);
            Ok(match g {
                GroupBy::Day => date_of(row.try_get::<i64, _>(name.as_str())? * DAY_MS),
                GroupBy::Hour => {
                    let hour = row.try_get::<i64, _>(name.as_str())?;
                    format!("{}T{:02}", date_of(hour * HOUR_MS), hour.rem_euclid(24))
                }
                // A request without a key groups under "".
                _ => row
                    .try_get::<Option<String>, _>(name.as_str())?
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// One group of the usage report; `None` for an empty one.
pub(super) fn usage_row(
    row: &AnyRow,
    group_by: &[GroupBy],
) -> Result<Option<UsageRow>, sqlx::Error> {
    let requests = row.try_get::<i64, _>("requests")?.max(0) as u64;
    if requests == 0 {
        return Ok(None);
    }
    let p = row.try_get::<i64, _>("p")?.max(0) as u64;
    let o = row.try_get::<i64, _>("o")?.max(0) as u64;
    let mut r = UsageRow {
        requests,
        prompt_tokens: p,
        cached_tokens: row.try_get::<i64, _>("c")?.max(0) as u64,
        completion_tokens: o,
        total_tokens: p + o,
        ..Default::default()
    };
    for (&g, v) in group_by.iter().zip(group_values(row, group_by)?) {
        *r.group_mut(g) = Some(v);
    }
    Ok(Some(r))
}
