//! Budget counters and their holds: a request's hold is taken against
//! every counter in one statement (or against none), kept as a leased row
//! until its ledger row settles it, and given back by any replica once its
//! lease has run out; a hold given back that way is never given back twice.
use std::collections::{BTreeMap, HashSet};

use sqlx::Row;

use super::rows::i;
use super::sql::{SqlStore, INSERT_CHUNK};
use super::{Reservation, StoreError, UsageRecord};
use crate::scope::Scope;

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

impl SqlStore {
    pub(super) async fn hold_budgets(
        &self,
        holds: &[Reservation],
        expires_at: i64,
    ) -> Result<Option<Scope>, StoreError> {
        if let Some(h) = holds.iter().find(|h| h.limit == 0) {
            return Ok(Some(h.scope.clone()));
        }
        if holds.is_empty() {
            return Ok(None);
        }
        // One statement for every counter: a counter takes the hold only
        // while it is under its limit, so however many requests race here
        // the overshoot is at most one hold.
        let mut sql = String::from(
            "INSERT INTO budget_usage (scope, period, used, reserved, budget_limit) VALUES ",
        );
        for k in 0..holds.len() {
            let b = k * 4;
            if k > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, 0, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4
            ));
        }
        sql.push_str(
            " ON CONFLICT (scope, period) DO UPDATE SET \
             reserved = budget_usage.reserved + excluded.reserved, budget_limit = excluded.budget_limit \
             WHERE budget_usage.used + budget_usage.reserved < excluded.budget_limit RETURNING scope",
        );
        let mut q = sqlx::query(&sql);
        for h in holds {
            q = q
                .bind(h.scope.to_string())
                .bind(&h.period)
                .bind(i(Some(h.tokens)))
                .bind(i(Some(h.limit)));
        }
        let mut tx = self.writer().await?.begin().await?;
        let held: Vec<String> = q
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>("scope"))
            .collect::<Result<_, _>>()?;
        if let Some(spent) = holds.iter().find(|h| !held.contains(&h.scope.to_string())) {
            // What the other counters took goes with the transaction.
            tx.rollback().await?;
            return Ok(Some(spent.scope.clone()));
        }
        for h in holds {
            sqlx::query(
                "INSERT INTO budget_holds (id, scope, period, tokens, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&h.hold)
            .bind(h.scope.to_string())
            .bind(&h.period)
            .bind(i(Some(h.tokens)))
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(None)
    }

    pub(super) async fn give_back(&self, holds: &[Reservation]) -> Result<(), StoreError> {
        if holds.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer().await?.begin().await?;
        for h in holds {
            // A hold its expiry gave back already is not given back twice.
            let still = sqlx::query(
                "DELETE FROM budget_holds WHERE id = $1 AND scope = $2 RETURNING tokens",
            )
            .bind(&h.hold)
            .bind(h.scope.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            if still.is_none() {
                continue;
            }
            sqlx::query(
                "UPDATE budget_usage SET reserved = reserved - $3 WHERE scope = $1 AND period = $2",
            )
            .bind(h.scope.to_string())
            .bind(&h.period)
            .bind(i(Some(h.tokens)))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn renew(&self, ids: &[String], expires_at: i64) -> Result<(), StoreError> {
        for chunk in ids.chunks(INSERT_CHUNK) {
            let list: Vec<String> = (2..chunk.len() + 2).map(|n| format!("${n}")).collect();
            let sql = format!(
                "UPDATE budget_holds SET expires_at = $1 WHERE id IN ({})",
                list.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(expires_at);
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(self.writer().await?).await?;
        }
        Ok(())
    }

    pub(super) async fn expire(&self, now: i64) -> Result<u64, StoreError> {
        let mut tx = self.writer().await?.begin().await?;
        let gone = sqlx::query(
            "DELETE FROM budget_holds WHERE expires_at < $1 RETURNING scope, period, tokens",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut back: BTreeMap<(String, String), i64> = BTreeMap::new();
        for row in &gone {
            let key = (row.try_get("scope")?, row.try_get("period")?);
            *back.entry(key).or_default() += row.try_get::<i64, _>("tokens")?;
        }
        for ((scope, period), tokens) in back {
            sqlx::query(
                "UPDATE budget_usage SET reserved = reserved - $3 WHERE scope = $1 AND period = $2",
            )
            .bind(scope)
            .bind(period)
            .bind(tokens)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(gone.len() as u64)
    }

    /// Settles the budget counters of rows just written, in their
    /// transaction.
    pub(super) async fn settle_budgets(
        &self,
        tx: &mut Tx<'_>,
        written: &[&UsageRecord],
    ) -> Result<(), StoreError> {
        let still_held = take_holds(tx, written).await?;
        // Each counter is settled once per batch, last, so that its row lock
        // (PostgreSQL) is held for as short a time as possible. A hold that
        // its expiry gave back meanwhile is not taken off again.
        let mut settle: BTreeMap<(&Scope, &str), (i64, i64)> = BTreeMap::new();
        for r in written.iter() {
            let used = i(Some(r.prompt_tokens + r.completion_tokens)).unwrap_or(0);
            for h in &r.reservations {
                let e = settle.entry((&h.scope, h.period.as_str())).or_default();
                e.0 += used;
                if still_held.contains(&(h.hold.clone(), h.scope.to_string())) {
                    e.1 += i(Some(h.tokens)).unwrap_or(0);
                }
            }
        }
        for ((scope, period), (used, held)) in settle {
            sqlx::query(
                "UPDATE budget_usage SET used = used + $3, reserved = reserved - $4 \
                 WHERE scope = $1 AND period = $2",
            )
            .bind(scope.to_string())
            .bind(period)
            .bind(used)
            .bind(held)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}

/// Deletes the holds of these rows, returning those that were still there
/// (hold id, scope): the others were given back by their expiry.
async fn take_holds(
    tx: &mut Tx<'_>,
    rows: &[&UsageRecord],
) -> Result<HashSet<(String, String)>, StoreError> {
    let mut ids: Vec<&str> = rows
        .iter()
        .flat_map(|r| r.reservations.iter().map(|h| h.hold.as_str()))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut still = HashSet::new();
    for chunk in ids.chunks(INSERT_CHUNK) {
        let list: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
        let sql = format!(
            "DELETE FROM budget_holds WHERE id IN ({}) RETURNING id, scope",
            list.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut **tx).await? {
            still.insert((row.try_get("id")?, row.try_get("scope")?));
        }
    }
    Ok(still)
}
