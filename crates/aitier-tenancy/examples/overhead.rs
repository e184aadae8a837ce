//! What tenancy adds to one request, measured on a real database: key
//! lookup and check, the request-rate and concurrency limits, and the
//! token-rate and budget admission (one reserving transaction). The ledger
//! row is written off the request path and not timed.
//!
//! `cargo run --release --example overhead -p aitier-tenancy -- [DATABASE_URL] [N]`
use std::sync::Arc;
use std::time::{Duration, Instant};

use aitier_core::{GenEvent, RequestSize};
use aitier_protocol::Usage;
use aitier_tenancy::limits::BudgetPeriod;
use aitier_tenancy::testing::sqlite_url;
use aitier_tenancy::{Limits, MemoryLimiter, SqlStore, Store, Tenancy, TenancyConfig};

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(sqlite_url);
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let store: Arc<dyn Store> = Arc::new(SqlStore::open(&url).await?);
    let backend = store.backend();
    let tenancy = Tenancy::new(
        store.clone(),
        Arc::new(MemoryLimiter::default()),
        TenancyConfig::default(),
    );
    let limits = Limits {
        rpm: Some(1_000_000),
        tpm: Some(1_000_000_000),
        max_concurrent: Some(1000),
        budget_tokens: Some(1_000_000_000),
        budget_period: Some(BudgetPeriod::Month),
        ..Default::default()
    };
    let name = format!("bench-{}", uuid::Uuid::new_v4().simple());
    store.create_tenant(&name, &limits).await?;
    let (_, key) = store.create_key(&name, None, &limits).await?;
    let size = RequestSize {
        prompt_tokens: 40,
        choices: 1,
        max_tokens: Some(128),
        completion_cap: 128,
    };
    let mut auth_only = Vec::with_capacity(n);
    let mut full = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let t0 = Instant::now();
        let principal = tenancy.authenticate(Some(&key)).await?;
        let t1 = Instant::now();
        let ticket = tenancy
            .begin(&principal, &name, "m", &format!("r{i}"))
            .await?;
        ticket.hooks().admit(size).await?;
        let t2 = Instant::now();
        ticket.observe(&GenEvent::Done {
            usage: Usage::new(40, 128, 0),
        });
        drop(ticket);
        // The first tenth warms connections and caches.
        if i >= n / 10 {
            auth_only.push(t1 - t0);
            full.push(t2 - t0);
        }
        // Let the ledger write as it would between requests.
        if i % 64 == 0 {
            tenancy.ledger().flush().await;
        }
    }
    tenancy.ledger().flush().await;
    auth_only.sort();
    full.sort();
    println!(
        "{backend}: n={n} auth p50 {:.0} us p99 {:.0} us | auth+limits+budget p50 {:.0} us p99 {:.0} us",
        pct(&auth_only, 0.5),
        pct(&auth_only, 0.99),
        pct(&full, 0.5),
        pct(&full, 0.99)
    );
    Ok(())
}
