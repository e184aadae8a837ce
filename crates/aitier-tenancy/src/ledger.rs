//! The usage ledger's writer: rows are queued without waiting and written
//! in batches by one task, each batch in one transaction with the budget
//! settlements of its rows. `flush` waits until everything queued before it
//! is written; the server calls it after draining, so a graceful shutdown
//! loses nothing.
//!
//! The ledger is bounded: a request takes a slot for its row before it
//! runs, and the slot comes back once the row is in the database. When the
//! database falls behind and every slot is taken, new requests are refused
//! (by the caller) instead of queueing rows in memory without end; rows of
//! requests already running always have their place.
//!
//! A process killed without a graceful stop loses the rows still queued.
//! In sync mode a row's writer is told when it is in the database, so the
//! server can hold the end of the answer until then: a client that got a
//! whole answer always has its row.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::store::{Store, UsageRecord};

const BATCH: usize = 512;
const LINGER: Duration = Duration::from_millis(20);
const RETRY_KEPT: Duration = Duration::from_secs(1);

/// Slots when nothing else is configured: rows in flight plus rows waiting.
pub const DEFAULT_CAPACITY: usize = 10_000;

enum Cmd {
    Row(
        Box<UsageRecord>,
        OwnedSemaphorePermit,
        Option<oneshot::Sender<()>>,
    ),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::UnboundedSender<Cmd>,
    room: Arc<Semaphore>,
    capacity: usize,
    counts: Arc<Counts>,
    sync: bool,
}

/// Resolves once a row is in the database (or was refused and logged).
pub struct Written(oneshot::Receiver<()>);

impl Written {
    pub async fn wait(self) {
        // An error means the writer dropped the row's sender: it is done
        // with the row either way.
        let _ = self.0.await;
    }
}

/// Rows written, rows the database refused and the writer dropped, and
/// writes that failed (their rows kept and retried).
#[derive(Debug, Default)]
pub struct Counts {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub failed_writes: AtomicU64,
}

/// A place reserved for one row.
pub struct LedgerSlot {
    tx: mpsc::UnboundedSender<Cmd>,
    permit: OwnedSemaphorePermit,
    sync: bool,
}

impl LedgerSlot {
    /// Queues the row; in sync mode, with a way to wait until it is written.
    pub fn record(self, row: UsageRecord) -> Option<Written> {
        let (done, written) = if self.sync {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(Written(rx)))
        } else {
            (None, None)
        };
        if let Err(e) = self.tx.send(Cmd::Row(Box::new(row), self.permit, done)) {
            // Only after the writer is gone, i.e. the runtime is shutting down.
            if let Cmd::Row(row, ..) = e.0 {
                tracing::error!(row = ?row, "usage row after the ledger stopped");
            }
        }
        written
    }
}

impl Ledger {
    /// Starts the writer on the current runtime, with room for `capacity`
    /// rows between a request's start and its row's write; in `sync` mode
    /// each row can be waited for.
    pub fn start(store: Arc<dyn Store>, capacity: usize, sync: bool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let counts = Arc::new(Counts::default());
        tokio::spawn(write_loop(store, rx, counts.clone(), sync));
        let capacity = capacity.max(1);
        Self {
            tx,
            room: Arc::new(Semaphore::new(capacity)),
            capacity,
            counts,
            sync,
        }
    }

    /// A slot for one row, or `None` while every slot is taken.
    pub fn slot(&self) -> Option<LedgerSlot> {
        let permit = self.room.clone().try_acquire_owned().ok()?;
        Some(LedgerSlot {
            tx: self.tx.clone(),
            permit,
            sync: self.sync,
        })
    }

    /// Rows of running requests plus rows waiting to be written.
    pub fn pending(&self) -> usize {
        self.capacity - self.room.available_permits()
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Returns once every row recorded before this call is in the store.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn write_loop(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    counts: Arc<Counts>,
    sync: bool,
) {
    let mut rows: Vec<UsageRecord> = Vec::new();
    // One per row in `rows`: its slot is free again once it is written.
    let mut slots: Vec<OwnedSemaphorePermit> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    // Sync mode: whom to tell when a row (by id) is written.
    let mut writers: Vec<(String, oneshot::Sender<()>)> = Vec::new();
    loop {
        let mut next = if rows.is_empty() {
            match rx.recv().await {
                Some(cmd) => Some(cmd),
                None => break,
            }
        } else {
            // A row kept back by a failing database is tried again even
            // when nothing new comes.
            match tokio::time::timeout(RETRY_KEPT, rx.recv()).await {
                Ok(Some(cmd)) => Some(cmd),
                Ok(None) => break,
                Err(_) => None,
            }
        };
        for round in 0..2 {
            while let Some(cmd) = next.take() {
                match cmd {
                    Cmd::Row(r, slot, done) => {
                        if let Some(done) = done {
                            writers.push((r.row_id.clone(), done));
                        }
                        rows.push(*r);
                        slots.push(slot);
                    }
                    Cmd::Flush(done) => waiting.push(done),
                }
                if rows.len() < BATCH {
                    next = rx.try_recv().ok();
                }
            }
            // A short linger gathers the rows of concurrent requests into one
            // transaction, so writes take the database's lock less often.
            // In sync mode answers wait for their rows: no lingering then
            // (rows still gather while a write is under way).
            if round == 0 && !sync && waiting.is_empty() && rows.len() < BATCH {
                tokio::time::sleep(LINGER).await;
                next = rx.try_recv().ok();
            }
        }
        write(store.as_ref(), &mut rows, &counts).await;
        slots.truncate(rows.len());
        // Dropping a sender tells its waiter the row is done with.
        writers.retain(|(id, _)| rows.iter().any(|r| &r.row_id == id));
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
async fn write(store: &dyn Store, rows: &mut Vec<UsageRecord>, counts: &Counts) {
    let mut delay = Duration::from_millis(50);
    let mut failures = 0;
    while !rows.is_empty() {
        match store.record(rows).await {
            Ok(()) => {
                counts
                    .written
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                rows.clear();
            }
            Err(e) => {
                failures += 1;
                counts.failed_writes.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, pending = rows.len(), "writing usage rows failed; retrying");
                if failures >= 3 && rows.len() > 1 {
                    let mut kept = Vec::new();
                    for row in rows.drain(..) {
                        match store.record(std::slice::from_ref(&row)).await {
                            Ok(()) => {
                                counts.written.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => kept.push((row, e)),
                        }
                    }
                    // All failing alike means the database is down: keep them.
                    if kept.len() > 1 {
                        rows.extend(kept.into_iter().map(|(r, _)| r));
                    } else if let Some((row, e)) = kept.pop() {
                        counts.dropped.fetch_add(1, Ordering::Relaxed);
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
