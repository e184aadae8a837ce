//! The usage ledger's writer: rows are queued without waiting and written
//! in batches by one task, each batch in one transaction with the budget
//! settlements of its rows. `flush` waits until everything queued before it
//! is written; the server calls it after draining, so a graceful shutdown
//! loses nothing.
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::store::{Store, UsageRecord};

const BATCH: usize = 512;
const LINGER: Duration = Duration::from_millis(20);

enum Cmd {
    Row(Box<UsageRecord>),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::UnboundedSender<Cmd>,
}

impl Ledger {
    /// Starts the writer on the current runtime.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(store, rx));
        Self { tx }
    }

    pub fn record(&self, row: UsageRecord) {
        if let Err(e) = self.tx.send(Cmd::Row(Box::new(row))) {
            // Only after the writer is gone, i.e. the runtime is shutting down.
            if let Cmd::Row(row) = e.0 {
                tracing::error!(row = ?row, "usage row after the ledger stopped");
            }
        }
    }

    /// Returns once every row recorded before this call is in the store.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn write_loop(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    let mut rows: Vec<UsageRecord> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        for round in 0..2 {
            while let Some(cmd) = next.take() {
                match cmd {
                    Cmd::Row(r) => rows.push(*r),
                    Cmd::Flush(done) => waiting.push(done),
                }
                if rows.len() < BATCH {
                    next = rx.try_recv().ok();
                }
            }
            // A short linger gathers the rows of concurrent requests into one
            // transaction, so writes take the database's lock less often.
            if round == 0 && waiting.is_empty() && rows.len() < BATCH {
                tokio::time::sleep(LINGER).await;
                next = rx.try_recv().ok();
            }
        }
        write(store.as_ref(), &mut rows).await;
        if rows.is_empty() {
            for done in waiting.drain(..) {
                let _ = done.send(());
            }
        }
    }
}

/// Writes a batch, retrying while the database is down. A batch that keeps
/// failing while the database answers is written row by row, so that one
/// row it refuses (whatever the reason) cannot hold back every other; that
/// row goes to the log in full instead.
async fn write(store: &dyn Store, rows: &mut Vec<UsageRecord>) {
    let mut delay = Duration::from_millis(50);
    let mut failures = 0;
    while !rows.is_empty() {
        match store.record(rows).await {
            Ok(()) => rows.clear(),
            Err(e) => {
                failures += 1;
                tracing::error!(error = %e, pending = rows.len(), "writing usage rows failed; retrying");
                if failures >= 3 && rows.len() > 1 {
                    let mut kept = Vec::new();
                    for row in rows.drain(..) {
                        if let Err(e) = store.record(std::slice::from_ref(&row)).await {
                            kept.push((row, e));
                        }
                    }
                    // All failing alike means the database is down: keep them.
                    if kept.len() > 1 {
                        rows.extend(kept.into_iter().map(|(r, _)| r));
                    } else if let Some((row, e)) = kept.pop() {
                        tracing::error!(error = %e, row = ?row, "usage row refused by the database; dropped after logging");
                    }
                    continue;
                }
                if failures >= 3 && rows.len() == 1 {
                    // Kept, and tried again beside the next rows, where it
                    // shows whether it alone is refused.
                    return;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
