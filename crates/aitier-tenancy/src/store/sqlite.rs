//! What only SQLite needs: its URL made a file the ledger can live in, and
//! its writer connections checked before each write.
use std::str::FromStr;

use sqlx::Executor;

use super::StoreError;

/// Whether a SQLite connection may be used for a write: a write that
/// failed with the disk full can leave SQLite inside a transaction that
/// sqlx no longer knows of (its rollback failed), and every later write on
/// that connection would then "succeed" and never be committed. Such a
/// connection is closed instead of used.
pub(super) async fn outside_transaction(
    conn: &mut sqlx::AnyConnection,
) -> Result<bool, sqlx::Error> {
    if let Err(e) = conn.execute("BEGIN").await {
        tracing::warn!(error = %e, "a SQLite connection was left inside a transaction; replacing it");
        return Ok(false);
    }
    conn.execute("ROLLBACK").await?;
    Ok(true)
}

/// `sqlite://path`, `sqlite:path` or a bare path; created when missing.
pub(super) fn sqlite_url(url: &str) -> Result<String, StoreError> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::Invalid(
            "an in-memory SQLite database would lose the ledger: give a file path".into(),
        ));
    }
    if let Some(dir) = std::path::Path::new(path).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Db(format!("creating data directory {}: {e}", dir.display()))
            })?;
        }
    }
    // Validates the path the way the driver will read it.
    sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
        .map_err(|e| StoreError::Invalid(format!("database path {path}: {e}")))?;
    Ok(format!("sqlite://{path}?mode=rwc"))
}
