//! Budget holds are leased: each lasts a lease (30 s) past its last
//! renewal, and this process renews the holds of its running requests
//! every third of that. A replica that dies stops renewing, and any
//! replica (this one included, after a restart) gives its holds back once
//! they have expired, so that a crash never keeps a budget reserved until
//! its period ends.
use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use aitier_core::clock::now_ms;

use crate::store::Store;

pub(crate) struct HoldLeases {
    store: Arc<dyn Store>,
    lease: Duration,
    /// Hold ids of this process's running requests.
    live: Mutex<HashSet<String>>,
}

impl HoldLeases {
    /// Renews and expires holds in the background, when there is a
    /// runtime to do it on (commands that only read have none).
    pub fn start(store: Arc<dyn Store>, lease: Duration) -> Arc<Self> {
        let me = Arc::new(Self {
            store,
            lease,
            live: Mutex::new(HashSet::new()),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(while_alive(
                Arc::downgrade(&me),
                lease / 3,
                |me| async move {
                    me.tick().await;
                },
            ));
        }
        me
    }

    /// When a hold taken now runs out unless renewed.
    pub fn expires_at(&self) -> i64 {
        now_ms() + self.lease.as_millis() as i64
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn held(&self, id: &str) {
        self.live().insert(id.to_string());
    }

    /// The request ended: its row settles the hold from here on.
    pub fn ended(&self, id: &str) {
        self.live().remove(id);
    }

    async fn tick(&self) {
        let live: Vec<String> = self.live().iter().cloned().collect();
        if !live.is_empty() {
            if let Err(e) = self.store.renew_holds(&live, self.expires_at()).await {
                tracing::warn!(error = %e, holds = live.len(), "renewing budget holds failed; they expire unless renewed in time");
            }
        }
        match self.store.expire_holds(now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                holds = n,
                "gave back budget holds whose lease ran out (their replica stopped, or could not renew them)"
            ),
            Err(e) => tracing::debug!(error = %e, "expiring budget holds failed"),
        }
    }
}

/// Runs `work` every `every` (at least 100 ms) for as long as `owner`
/// lives: the renewal loop of every kind of lease this process holds.
pub(crate) async fn while_alive<T, F, Fut>(owner: Weak<T>, every: Duration, work: F)
where
    F: Fn(Arc<T>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(me) = owner.upgrade() else { return };
        work(me).await;
    }
}
