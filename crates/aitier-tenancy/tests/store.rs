//! The store and the limits against real databases: SQLite always,
//! PostgreSQL when the test setup started one.
use std::sync::Arc;
use std::time::Duration;

use aitier_core::RequestSize;
use aitier_protocol::Usage;
use aitier_tenancy::limits::BudgetPeriod;
use aitier_tenancy::testing::database_urls;
use aitier_tenancy::{
    AuthError, GroupBy, Limits, MemoryLimiter, Principal, Scope, SqlStore, Store, StoredResponse,
    Tenancy, TenancyConfig, TenantPatch, UsageQuery,
};

/// `tokens` completion tokens streamed to the client.
fn delta(tokens: u32) -> aitier_core::GenEvent {
    aitier_core::GenEvent::Delta {
        index: 0,
        text: "x".repeat(tokens as usize),
        logprobs: vec![],
        tokens,
    }
}

/// A ledger row of a chat completion that went well, now.
fn record(row_id: &str, tenant_id: &str) -> aitier_tenancy::UsageRecord {
    aitier_tenancy::UsageRecord {
        row_id: row_id.into(),
        ts: aitier_core::clock::now_ms(),
        request_id: format!("req_{row_id}"),
        tenant_id: tenant_id.into(),
        key_id: None,
        model: "m".into(),
        provider: "m".into(),
        endpoint: "/v1/chat/completions".into(),
        prompt_tokens: 10,
        cached_tokens: 0,
        completion_tokens: 1,
        ttft_ms: Some(1),
        duration_ms: 2,
        status: aitier_tenancy::Outcome::Ok,
        finish_reason: None,
        estimated: false,
        reservations: vec![],
    }
}

/// A tenant with a budget of 1,000 tokens a day: its id, and its
/// counter's scope and period now.
async fn daily_budget(store: &SqlStore, name: &str) -> (String, Scope, String) {
    let limits = Limits {
        budget_tokens: Some(1_000),
        budget_period: Some(BudgetPeriod::Day),
        ..Default::default()
    };
    let tenant = store.create_tenant(name, &limits).await.expect("tenant");
    let period = BudgetPeriod::Day.window(aitier_core::clock::now_ms()).0;
    (tenant.id.clone(), Scope::Tenant(tenant.id), period)
}

fn reservation(
    hold: &str,
    scope: &Scope,
    period: &str,
    tokens: u64,
) -> aitier_tenancy::store::Reservation {
    aitier_tenancy::store::Reservation {
        hold: hold.into(),
        scope: scope.clone(),
        period: period.into(),
        tokens,
        limit: 1_000,
    }
}

async fn tenancy(url: &str) -> Arc<Tenancy> {
    let store: Arc<dyn Store> = Arc::new(SqlStore::open(url).await.expect("open store"));
    Tenancy::new(
        store,
        Arc::new(MemoryLimiter::default()),
        TenancyConfig::default(),
    )
}

#[tokio::test]
async fn key_lifecycle() {
    for (backend, url) in database_urls().await {
        let t = tenancy(&url).await;
        // No key yet: open mode.
        assert!(
            matches!(t.authenticate(None).await, Ok(Principal::Open)),
            "{backend}"
        );
        let acme = t
            .store()
            .create_tenant("acme", &Limits::default())
            .await
            .expect("tenant");
        let (key, full) = t
            .store()
            .create_key("acme", Some("ci"), &Limits::default())
            .await
            .expect("key");
        assert!(full.starts_with("sk-aitier-") && full.contains(&key.id));
        // Made behind the service's back, as the command line does.
        t.key_created();
        match t.authenticate(Some(&full)).await {
            Ok(Principal::Key(k)) => assert_eq!(k.tenant.id, acme.id, "{backend}"),
            other => panic!("{backend}: {other:?}"),
        }
        // A key now exists: no key, or a wrong secret, is refused.
        assert!(matches!(
            t.authenticate(None).await,
            Err(AuthError::Missing)
        ));
        let wrong = format!("{}{}", &full[..full.len() - 4], "zzzz");
        assert!(matches!(
            t.authenticate(Some(&wrong)).await,
            Err(AuthError::Invalid)
        ));
        // Revocation takes effect on the next lookup.
        let revoked = t.store().revoke_key(&key.id).await.expect("revoke");
        assert!(revoked.revoked_at.is_some());
        assert!(matches!(
            t.authenticate(Some(&full)).await,
            Err(AuthError::Revoked)
        ));
        // Disabling the tenant shuts out its other keys.
        let (_, second) = t
            .store()
            .create_key(&acme.id, None, &Limits::default())
            .await
            .expect("key");
        assert!(t.authenticate(Some(&second)).await.is_ok());
        let patch = TenantPatch {
            disabled: Some(true),
            ..Default::default()
        };
        t.store()
            .update_tenant("acme", &patch)
            .await
            .expect("disable");
        assert!(matches!(
            t.authenticate(Some(&second)).await,
            Err(AuthError::TenantDisabled)
        ));
        assert_eq!(
            t.store().list_keys(Some("acme")).await.expect("list").len(),
            2
        );
        assert!(t
            .store()
            .create_tenant("acme", &Limits::default())
            .await
            .is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nearly_spent_budget_is_overspent_by_at_most_one_reservation() {
    for (backend, url) in database_urls().await {
        let t = tenancy(&url).await;
        let budget = 1_000;
        let limits = Limits {
            budget_tokens: Some(budget),
            budget_period: Some(BudgetPeriod::Day),
            ..Default::default()
        };
        t.store().create_tenant("b", &limits).await.expect("tenant");
        let (_, full) = t
            .store()
            .create_key("b", None, &Limits::default())
            .await
            .expect("key");
        let principal = t.authenticate(Some(&full)).await.expect("auth");
        // Each request reserves 50 + 50 = 100 tokens and uses 60.
        let size = RequestSize {
            prompt_tokens: 50,
            choices: 1,
            max_tokens: Some(50),
            completion_cap: 50,
        };
        let mut tasks = Vec::new();
        for i in 0..100 {
            let t = t.clone();
            let principal = principal.clone();
            tasks.push(tokio::spawn(async move {
                let mut ticket = t
                    .begin(
                        &principal,
                        "b",
                        "m",
                        &format!("r{i}"),
                        "/v1/chat/completions",
                    )
                    .await
                    .expect("no rate limits here");
                match ticket.admit(size).await {
                    Ok(()) => {
                        ticket.observe(&delta(10));
                        ticket.observe(&aitier_core::GenEvent::done(Usage::new(50, 10, 0)));
                        true
                    }
                    Err(e) => {
                        ticket.failed(&e);
                        false
                    }
                }
            }));
        }
        let mut admitted = 0;
        for task in tasks {
            admitted += u64::from(task.await.expect("task"));
        }
        t.ledger().flush().await;
        let q = UsageQuery {
            group_by: vec![GroupBy::Tenant],
            ..Default::default()
        };
        let rows = t.store().usage(&q).await.expect("usage");
        let ok_tokens = admitted * 60;
        let total: u64 = rows.iter().map(|r| r.total_tokens).sum();
        assert_eq!(
            total, ok_tokens,
            "{backend}: billed tokens match the ledger"
        );
        // Admission needs something left, so at most one request's hold overshoots.
        assert!(
            ok_tokens <= budget + 100,
            "{backend}: {admitted} admitted used {ok_tokens} of {budget}"
        );
        assert!(
            admitted >= budget / 100,
            "{backend}: only {admitted} admitted"
        );
        let tenant = t.store().get_tenant("b").await.expect("tenant");
        let period = BudgetPeriod::Day.window(aitier_core::clock::now_ms()).0;
        let (used, reserved) = t
            .store()
            .budget_state(&Scope::Tenant(tenant.id.clone()), &period)
            .await
            .expect("state");
        assert_eq!((used, reserved), (ok_tokens, 0), "{backend}");
        // Holds exceeded uses; once settled, requests run again until the
        // budget is spent, then get a quota error.
        let mut spent = None;
        for i in 0..20 {
            let mut ticket = t
                .begin(
                    &principal,
                    "b",
                    "m",
                    &format!("s{i}"),
                    "/v1/chat/completions",
                )
                .await
                .expect("begin");
            match ticket.admit(size).await {
                Ok(()) => {
                    ticket.observe(&aitier_core::GenEvent::done(Usage::new(50, 10, 0)));
                    drop(ticket);
                    t.ledger().flush().await;
                }
                Err(e) => {
                    spent = Some(e);
                    break;
                }
            }
        }
        t.ledger().flush().await;
        let (used, _) = t
            .store()
            .budget_state(&Scope::Tenant(tenant.id.clone()), &period)
            .await
            .expect("state");
        assert!(
            matches!(spent, Some(aitier_core::CoreError::QuotaExceeded { .. })),
            "{backend}: {spent:?}"
        );
        assert!(
            used >= budget && used <= budget + 100,
            "{backend}: used {used}"
        );
    }
}

#[tokio::test]
async fn usage_groups_by_day_and_model() {
    for (backend, url) in database_urls().await {
        let t = tenancy(&url).await;
        t.store()
            .create_tenant("u", &Limits::default())
            .await
            .expect("tenant");
        let (_, full) = t
            .store()
            .create_key("u", None, &Limits::default())
            .await
            .expect("key");
        let p = t.authenticate(Some(&full)).await.expect("auth");
        let endpoints = ["/v1/chat/completions", "/v1/messages", "/v1/responses"];
        for (i, model) in ["a", "b", "a"].iter().enumerate() {
            let mut ticket = t
                .begin(&p, "u", model, &format!("r{i}"), endpoints[i])
                .await
                .expect("begin");
            ticket.observe(&aitier_core::GenEvent::done(Usage::new(3, 4, 1)));
        }
        // Dropped mid-stream after 2 tokens: billed for them.
        let mut ticket = t
            .begin(&p, "u", "a", "gone", "/v1/chat/completions")
            .await
            .expect("begin");
        ticket.observe(&aitier_core::GenEvent::started(5));
        ticket.observe(&delta(2));
        drop(ticket);
        t.ledger().flush().await;
        let rows = t
            .store()
            .usage(&UsageQuery {
                group_by: vec![GroupBy::Model, GroupBy::Day],
                ..Default::default()
            })
            .await
            .expect("usage");
        assert_eq!(rows.len(), 2, "{backend}: {rows:?}");
        let a = &rows[0];
        assert_eq!(a.model.as_deref(), Some("a"));
        assert_eq!(
            (a.requests, a.prompt_tokens, a.completion_tokens),
            (3, 11, 10)
        );
        assert_eq!(a.cached_tokens, 2);
        assert_eq!(
            a.day.as_deref(),
            Some(aitier_core::clock::date_of(aitier_core::clock::now_ms()).as_str())
        );
        let by_endpoint = t
            .store()
            .usage(&UsageQuery {
                group_by: vec![GroupBy::Endpoint],
                ..Default::default()
            })
            .await
            .expect("usage");
        let counts: Vec<_> = by_endpoint
            .iter()
            .map(|r| (r.endpoint.as_deref().unwrap_or_default(), r.requests))
            .collect();
        assert_eq!(
            counts,
            [
                ("/v1/chat/completions", 2),
                ("/v1/messages", 1),
                ("/v1/responses", 1)
            ],
            "{backend}"
        );
    }
}

#[tokio::test]
async fn a_stored_response_is_its_owners_alone() {
    for (backend, url) in database_urls().await {
        let t = tenancy(&url).await;
        let r = StoredResponse {
            id: format!("resp_{backend}"),
            owner: "t_a".into(),
            created_at: 1,
            model: "m".into(),
            body: r#"{"id":"x"}"#.into(),
            input_items: "[]".into(),
        };
        t.store().save_response(&r).await.expect("save");
        let get = |owner: &'static str| {
            let t = t.clone();
            let id = r.id.clone();
            async move { t.store().get_response(&id, owner).await.expect("get") }
        };
        assert_eq!(get("t_a").await.as_ref(), Some(&r), "{backend}");
        assert_eq!(
            get("t_b").await,
            None,
            "{backend}: another tenant reads nothing"
        );
        assert!(
            !t.store()
                .delete_response(&r.id, "t_b")
                .await
                .expect("delete"),
            "{backend}: another tenant deletes nothing"
        );
        assert!(get("t_a").await.is_some(), "{backend}");
        assert!(t
            .store()
            .delete_response(&r.id, "t_a")
            .await
            .expect("delete"));
        assert_eq!(get("t_a").await, None, "{backend}");
        assert!(
            t.store().save_response(&r).await.is_ok(),
            "{backend}: the id is free again"
        );
    }
}

#[tokio::test]
async fn an_unreadable_models_column_fails_closed() {
    for (backend, url) in database_urls().await {
        let t = tenancy(&url).await;
        t.store()
            .create_tenant("c", &Limits::default())
            .await
            .expect("tenant");
        let (key, full) = t
            .store()
            .create_key("c", None, &Limits::default())
            .await
            .expect("key");
        assert!(t.authenticate(Some(&full)).await.is_ok(), "{backend}");
        // Written behind the store's back, as a bad migration or hand edit would.
        let raw = sqlx::AnyPool::connect(&url).await.expect("raw connection");
        sqlx::query("UPDATE api_keys SET models = $1 WHERE id = $2")
            .bind("not a list")
            .bind(&key.id)
            .execute(&raw)
            .await
            .expect("corrupt");
        // Never "every model": the key is refused until the row is fixed.
        assert!(
            matches!(t.authenticate(Some(&full)).await, Err(AuthError::Store(_))),
            "{backend}"
        );
        assert!(t.store().list_keys(Some("c")).await.is_err(), "{backend}");
    }
}

/// Holds the usage table so that ledger writes wait; released on `free`.
struct TableLock(sqlx::pool::PoolConnection<sqlx::Any>);

impl TableLock {
    async fn take(url: &str, backend: &str) -> Self {
        let pool = sqlx::AnyPool::connect(url).await.expect("raw connection");
        let mut conn = pool.acquire().await.expect("connection");
        let lock = if backend == "postgres" {
            "BEGIN; LOCK TABLE usage_records IN EXCLUSIVE MODE"
        } else {
            "BEGIN EXCLUSIVE"
        };
        sqlx::raw_sql(lock).execute(&mut *conn).await.expect("lock");
        TableLock(conn)
    }

    async fn free(mut self) {
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut *self.0)
            .await
            .expect("unlock");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_ledger_refuses_new_requests_and_loses_no_row() {
    for (backend, url) in database_urls().await {
        let store: Arc<dyn Store> = Arc::new(SqlStore::open(&url).await.expect("open store"));
        let config = TenancyConfig {
            ledger_capacity: 3,
            ..TenancyConfig::default()
        };
        let t = Tenancy::new(store, Arc::new(MemoryLimiter::default()), config);
        let lock = TableLock::take(&url, backend).await;
        for i in 0..3 {
            let mut ticket = t
                .begin(
                    &Principal::Open,
                    "l",
                    "m",
                    &format!("r{i}"),
                    "/v1/chat/completions",
                )
                .await
                .expect("room in the ledger");
            ticket.observe(&aitier_core::GenEvent::done(Usage::new(2, 3, 0)));
        }
        // The writer is at the locked table: nothing can be flushed...
        let flush = tokio::time::timeout(Duration::from_secs(1), t.ledger().flush()).await;
        assert!(flush.is_err(), "{backend}: written through the lock");
        // ...and three rows waiting for the database refuse a fourth request.
        let refused = t
            .begin(&Principal::Open, "l", "m", "r3", "/v1/chat/completions")
            .await
            .err();
        assert!(
            matches!(refused, Some(aitier_core::CoreError::Unavailable { .. })),
            "{backend}: {refused:?}"
        );
        lock.free().await;
        t.ledger().flush().await;
        let rows = t
            .store()
            .usage(&UsageQuery {
                group_by: vec![GroupBy::Status],
                ..Default::default()
            })
            .await
            .expect("usage");
        assert_eq!(rows.len(), 1, "{backend}: {rows:?}");
        assert_eq!(
            (rows[0].requests, rows[0].total_tokens),
            (3, 15),
            "{backend}"
        );
        // Written, so there is room again.
        assert!(t
            .begin(&Principal::Open, "l", "m", "r4", "/v1/chat/completions")
            .await
            .is_ok());
    }
}

#[tokio::test]
async fn a_batch_written_again_adds_no_row_and_settles_nothing_twice() {
    for (backend, url) in database_urls().await {
        let store = SqlStore::open(&url).await.expect("open store");
        let (tenant, scope, period) = daily_budget(&store, "again").await;
        let hold = |id: &str| reservation(id, &scope, &period, 100);
        let later = aitier_core::clock::now_ms() + 60_000;
        for id in ["a", "b"] {
            assert_eq!(
                store.reserve(&[hold(id)], later).await.expect("reserve"),
                None
            );
        }
        let row = |row_id: &str, completion| aitier_tenancy::UsageRecord {
            completion_tokens: completion,
            reservations: vec![hold(row_id)],
            ..record(row_id, &tenant)
        };
        let first = [row("a", 20)];
        store.record(&first).await.expect("write");
        // The first row again (its commit's answer lost), with one new row.
        store
            .record(&[row("a", 20), row("b", 30)])
            .await
            .expect("write again");
        let rows = store
            .usage(&UsageQuery {
                group_by: vec![GroupBy::Tenant],
                ..Default::default()
            })
            .await
            .expect("usage");
        assert_eq!(rows.len(), 1, "{backend}");
        assert_eq!(
            (rows[0].requests, rows[0].total_tokens),
            (2, 30 + 40),
            "{backend}"
        );
        assert_eq!(
            store.budget_state(&scope, &period).await.expect("state"),
            (70, 0),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn usage_by_hour_carries_each_groups_latency_percentiles() {
    for (backend, url) in database_urls().await {
        let store = SqlStore::open(&url).await.expect("open store");
        let tenant = store
            .create_tenant("hours", &Limits::default())
            .await
            .expect("tenant");
        // 2026-12-04T09:30 and 10:15 UTC.
        let nine = 1_796_376_600_000;
        let ten = nine + 45 * 60_000;
        let row =
            |n: usize, ts: i64, ttft: Option<u64>, ms: u64, status| aitier_tenancy::UsageRecord {
                ts,
                ttft_ms: ttft,
                duration_ms: ms,
                status,
                ..record(&format!("{backend}-{n}"), &tenant.id)
            };
        use aitier_tenancy::Outcome::{Cancelled, Ok, RateLimited};
        // Nine o'clock: 100 answers taking 1..=100 ms (first tokens at a
        // tenth of that), one cancelled after its first token, one refused.
        let mut rows: Vec<_> = (1..=100)
            .map(|i| row(i, nine, Some(i as u64 / 10), i as u64, Ok))
            .collect();
        rows.push(row(101, nine, Some(500), 9_000, Cancelled));
        rows.push(row(102, nine, None, 0, RateLimited));
        // Ten o'clock: one refusal alone.
        rows.push(row(103, ten, None, 0, RateLimited));
        store.record(&rows).await.expect("write");
        let q = UsageQuery {
            group_by: vec![GroupBy::Hour],
            tenant: Some(tenant.id.clone()),
            latency: true,
            ..Default::default()
        };
        let got = store.usage(&q).await.expect("usage");
        let hours: Vec<_> = got
            .iter()
            .map(|r| (r.hour.as_deref().unwrap_or_default(), r.requests))
            .collect();
        assert_eq!(
            hours,
            [("2026-12-04T09", 102), ("2026-12-04T10", 1)],
            "{backend}"
        );
        let l = got[0].latency.clone().expect("asked for");
        // Latency over the 100 ok rows only; TTFT over the 101 that have one.
        assert_eq!(
            (l.latency_ms_p50, l.latency_ms_p90, l.latency_ms_p99),
            (Some(50), Some(90), Some(99)),
            "{backend}"
        );
        assert_eq!(
            (l.ttft_ms_p50, l.ttft_ms_p99),
            (Some(5), Some(10)),
            "{backend}"
        );
        let empty = got[1].latency.clone().expect("asked for");
        assert_eq!((empty.ttft_ms_p50, empty.latency_ms_p99), (None, None));
        let plain = store
            .usage(&UsageQuery {
                latency: false,
                ..q
            })
            .await
            .expect("usage");
        assert!(plain.iter().all(|r| r.latency.is_none()), "{backend}");
    }
}

#[tokio::test]
async fn a_hold_whose_lease_ran_out_is_given_back_once() {
    for (backend, url) in database_urls().await {
        let store = SqlStore::open(&url).await.expect("open store");
        let (tenant, scope, period) = daily_budget(&store, "leased").await;
        let now = aitier_core::clock::now_ms();
        let hold = |id: &str, tokens| reservation(id, &scope, &period, tokens);
        let state = || store.budget_state(&scope, &period);
        // A running request's hold, renewed; a dead replica's, not.
        let alive = hold("alive", 300);
        let dead = hold("dead", 700);
        assert_eq!(
            store
                .reserve(std::slice::from_ref(&alive), now + 50)
                .await
                .expect("reserve"),
            None
        );
        assert_eq!(
            store
                .reserve(std::slice::from_ref(&dead), now + 50)
                .await
                .expect("reserve"),
            None
        );
        assert_eq!(state().await.expect("state"), (0, 1_000), "{backend}");
        // Spent while both are held.
        let refused = store
            .reserve(&[hold("refused", 10)], now + 50)
            .await
            .expect("reserve");
        assert_eq!(refused, Some(scope.clone()), "{backend}");
        store
            .renew_holds(&["alive".to_string()], now + 60_000)
            .await
            .expect("renew");
        assert_eq!(
            store.expire_holds(now + 100).await.expect("expire"),
            1,
            "{backend}"
        );
        assert_eq!(state().await.expect("state"), (0, 300), "{backend}");
        assert_eq!(
            store.expire_holds(now + 100).await.expect("expire"),
            0,
            "{backend}"
        );
        // The dead request's row comes after all (its replica was only
        // slow): it bills what it used and gives nothing back twice.
        let late = aitier_tenancy::UsageRecord {
            completion_tokens: 90,
            reservations: vec![dead],
            ..record(&format!("{backend}-late"), &tenant)
        };
        store.record(&[late]).await.expect("write");
        assert_eq!(state().await.expect("state"), (100, 300), "{backend}");
        // Released twice (a retried release): taken off once.
        store
            .release(std::slice::from_ref(&alive))
            .await
            .expect("release");
        store.release(&[alive]).await.expect("release");
        assert_eq!(state().await.expect("state"), (100, 0), "{backend}");
    }
}
