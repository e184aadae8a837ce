//! Between rows and domain types: decoding tenants, keys and usage sums,
//! binding limit columns, and the usage report's query.
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{ApiKey, GroupBy, Tenant, UsageQuery, UsageRow};
use crate::limits::{BudgetPeriod, Limits};
use aitier_core::clock::{date_of, DAY_MS};

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

/// The usage report's SQL and its parameters: sums per group, filtered.
pub(super) fn usage_sql(q: &UsageQuery) -> (String, Vec<Bind>) {
    // Every grouping is a column of the same name, but the day.
    let cols: Vec<&str> = q
        .group_by
        .iter()
        .map(|g| match g {
            GroupBy::Day => "(ts / 86400000)",
            g => g.column(),
        })
        .collect();
    let mut sql = String::from("SELECT ");
    for (g, c) in q.group_by.iter().zip(&cols) {
        sql.push_str(&format!("{c} AS {}, ", alias(*g)));
    }
    sql.push_str(
        "COUNT(*) AS requests, CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS p, \
         CAST(COALESCE(SUM(cached_tokens), 0) AS BIGINT) AS c, \
         CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS o FROM usage_records WHERE 1 = 1",
    );
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
    if !cols.is_empty() {
        let list = cols.join(", ");
        sql.push_str(&format!(" GROUP BY {list} ORDER BY {list}"));
    }
    (sql, binds)
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
    for &g in group_by {
        let name = alias(g);
        *r.group_mut(g) = Some(match g {
            GroupBy::Day => date_of(row.try_get::<i64, _>(name.as_str())? * DAY_MS),
            // A request without a key groups under "".
            _ => row
                .try_get::<Option<String>, _>(name.as_str())?
                .unwrap_or_default(),
        });
    }
    Ok(Some(r))
}
