//! Helpers for test suites that run against both databases: a fresh SQLite
//! file or a fresh PostgreSQL database on the throwaway server that
//! `scripts/pg-temp.sh` starts (its URL in `AITIER_TEST_POSTGRES_URL`), and
//! the throwaway Redis of `scripts/redis-temp.sh` (`AITIER_TEST_REDIS_URL`).
use sqlx::{Connection, Executor, PgConnection};

pub const POSTGRES_ENV: &str = "AITIER_TEST_POSTGRES_URL";

/// A new SQLite database URL in a fresh temporary directory.
pub fn sqlite_url() -> String {
    let dir = std::env::temp_dir().join(format!("aitier-test-{}", uuid::Uuid::new_v4().simple()));
    format!("sqlite://{}", dir.join("aitier.db").display())
}

/// A new, empty PostgreSQL database, or `None` (said loudly on stderr) when
/// no test server is available.
pub async fn postgres_url() -> Option<String> {
    let Ok(admin) = std::env::var(POSTGRES_ENV) else {
        eprintln!(
            "\n!!! SKIPPED: PostgreSQL tests need {POSTGRES_ENV} (scripts/test.sh starts a server) !!!\n"
        );
        return None;
    };
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = match PgConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) => panic!("{POSTGRES_ENV} is set but PostgreSQL is unreachable: {e}"),
    };
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap_or_else(|e| panic!("creating test database: {e}"));
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    Some(format!("{base}/{name}"))
}

/// The database URLs a suite should run against: SQLite always, PostgreSQL
/// when available.
pub async fn database_urls() -> Vec<(&'static str, String)> {
    let mut out = vec![("sqlite", sqlite_url())];
    if let Some(pg) = postgres_url().await {
        out.push(("postgres", pg));
    }
    out
}

pub const REDIS_ENV: &str = "AITIER_TEST_REDIS_URL";

/// The throwaway Redis `scripts/redis-temp.sh` started, with a key prefix
/// of the test's own; `None` (said loudly on stderr) when there is none.
pub fn redis_limits() -> Option<crate::RedisLimits> {
    let Ok(url) = std::env::var(REDIS_ENV) else {
        eprintln!(
            "\n!!! SKIPPED: Redis tests need {REDIS_ENV} (scripts/test.sh starts a server) !!!\n"
        );
        return None;
    };
    let mut limits = crate::RedisLimits::new(&url);
    limits.prefix = format!("test-{}:", uuid::Uuid::new_v4().simple());
    Some(limits)
}
