//! What tenancy adds to one request, measured on a real database: key
//! lookup and check, the request-rate and concurrency limits, and the
//! token-rate and budget admission (one reserving transaction). The ledger
//! row is written off the request path and not timed. The rate and
//! concurrency limits are held in the process, or with `redis` in the Redis
//! at AITIER_TEST_REDIS_URL, as several replicas would share them.
//!
//! `cargo run --release --example overhead -p aitier-tenancy -- [sqlite|postgres|URL] [N] [memory|redis]`
use std::sync::Arc;
use std::time::{Duration, Instant};

use aitier_core::{GenEvent, RequestSize};
use aitier_protocol::Usage;
use aitier_tenancy::limits::BudgetPeriod;
use aitier_tenancy::testing::{postgres_url, redis_limits, sqlite_url};
use aitier_tenancy::{
    Limiter, Limits, MemoryLimiter, RedisLimiter, SqlStore, Store, Tenancy, TenancyConfig,
};

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    // `sqlite` (default) or `postgres` make a fresh database; the latter on
    // the server in AITIER_TEST_POSTGRES_URL.
    let url = match args.next().as_deref() {
        None | Some("sqlite") => sqlite_url(),
        Some("postgres") => postgres_url()
            .await
            .ok_or("AITIER_TEST_POSTGRES_URL is not set")?,
        Some(url) => url.to_string(),
    };
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let (limiter, limits_in): (Arc<dyn Limiter>, &str) = match args.next().as_deref() {
        None | Some("memory") => (Arc::new(MemoryLimiter::default()), "limits in memory"),
        Some("redis") => {
            let cfg = redis_limits().ok_or("AITIER_TEST_REDIS_URL is not set")?;
            (RedisLimiter::start(&cfg)?, "limits in Redis")
        }
        Some(other) => return Err(format!("unknown limiter `{other}`").into()),
    };
    let store: Arc<dyn Store> = Arc::new(SqlStore::open(&url).await?);
    let backend = store.backend();
    let tenancy = Tenancy::new(store.clone(), limiter, TenancyConfig::default());
    let limits = Limits {
        rpm: Some(1_000_000),
        tpm: Some(1_000_000_000),
        max_concurrent: Some(1000),
        budget_tokens: Some(1_000_000_000),
        budget_period: Some(BudgetPeriod::Month),
        ..Default::default()
    };
    let none = Limits::default();
    let size = RequestSize {
        prompt_tokens: 40,
        choices: 1,
        max_tokens: Some(128),
        completion_cap: 128,
    };
    println!("{backend}, {limits_in}, {n} requests, microseconds per request (p50 / p99):");
    for (label, tenant_limits, key_limits) in [
        ("key check only (no limits set)", &none, &none),
        ("tenant: rpm, tpm, concurrency, budget", &limits, &none),
        ("tenant and key: all limits, two budgets", &limits, &limits),
    ] {
        let name = format!("bench-{}", uuid::Uuid::new_v4().simple());
        store.create_tenant(&name, tenant_limits).await?;
        let (_, key) = store.create_key(&name, None, key_limits).await?;
        let mut took = Vec::with_capacity(n);
        for i in 0..n + n / 10 {
            let t0 = Instant::now();
            let principal = tenancy.authenticate(Some(&key)).await?;
            let mut ticket = tenancy
                .begin(
                    &principal,
                    &name,
                    "m",
                    &format!("r{i}"),
                    "/v1/chat/completions",
                )
                .await?;
            ticket.admit(size).await?;
            let t1 = Instant::now();
            ticket.observe(&GenEvent::done(Usage::new(40, 128, 0)));
            drop(ticket);
            // The first tenth warms connections and caches.
            if i >= n / 10 {
                took.push(t1 - t0);
            }
            // Let the ledger write as it would between requests.
            if i % 64 == 0 {
                tenancy.ledger().flush().await;
            }
        }
        tenancy.ledger().flush().await;
        took.sort();
        println!(
            "  {label:<42} {:>6.0} / {:>6.0}",
            pct(&took, 0.5),
            pct(&took, 0.99)
        );
    }
    Ok(())
}
