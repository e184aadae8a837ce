//! Request and token rate limits as GCRA buckets (a per-minute limit with a
//! burst of one minute's worth), plus concurrency counters. The trait lets a
//! shared store (Redis) replace the in-process one when several replicas
//! must share limits; every check is all-or-nothing across the buckets it
//! names, so a tenant bucket is never charged for a request its key bucket
//! refuses.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::scope::BucketKey;

pub(crate) const WINDOW_MS: f64 = 60_000.0;

/// One bucket charged by a check.
#[derive(Debug, Clone, PartialEq)]
pub struct Demand {
    pub bucket: BucketKey,
    pub per_minute: u64,
    pub cost: u64,
}

/// Where a bucket stands, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub limit: u64,
    pub remaining: u64,
    /// Until the bucket is full again.
    pub reset: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Denied {
    pub bucket: BucketKey,
    pub retry_after: Duration,
    /// The cost is more than the bucket ever holds: retrying cannot help.
    pub never: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("limit store unavailable: {0}")]
pub struct LimiterError(pub String);

/// One concurrency place taken, to give back by name: a shared limiter
/// lets places expire when their replica is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease(pub String);

/// What a request may start with: its concurrency places and its request
/// rate, all of them or none.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// The places taken, in the order asked for.
    Admitted(Vec<Lease>),
    /// This place's bucket has all of its `max` taken.
    Full(BucketKey, u64),
    Denied(Denied),
}

/// A concurrency place to take: its bucket and how many there are.
pub type Place = (BucketKey, u64);

#[async_trait::async_trait]
pub trait Limiter: Send + Sync {
    /// Charges every demand, or none of them.
    async fn check(&self, demands: &[Demand]) -> Result<Result<(), Denied>, LimiterError>;
    /// Corrects an earlier charge once the real cost is known (negative:
    /// refund). Never refuses.
    async fn adjust(
        &self,
        bucket: &BucketKey,
        per_minute: u64,
        delta: i64,
    ) -> Result<(), LimiterError>;
    async fn peek(&self, bucket: &BucketKey, per_minute: u64) -> Result<Snapshot, LimiterError>;
    /// Takes one of `max` concurrent places; `None` when all are taken.
    async fn acquire(&self, bucket: &BucketKey, max: u64) -> Result<Option<Lease>, LimiterError>;
    async fn release(&self, bucket: &BucketKey, lease: Lease) -> Result<(), LimiterError>;

    /// A place in each of `places`, and the request-rate `demands`, all or
    /// none. A shared limiter does it in one call.
    async fn enter(&self, places: &[Place], demands: &[Demand]) -> Result<Entry, LimiterError> {
        let mut taken: Vec<(BucketKey, Lease)> = Vec::with_capacity(places.len());
        let mut refusal = None;
        for (bucket, max) in places {
            match self.acquire(bucket, *max).await {
                Ok(Some(lease)) => taken.push((bucket.clone(), lease)),
                Ok(None) => {
                    refusal = Some(Ok(Entry::Full(bucket.clone(), *max)));
                    break;
                }
                Err(e) => {
                    refusal = Some(Err(e));
                    break;
                }
            }
        }
        let refusal = match refusal {
            Some(r) => Some(r),
            None => match self.check(demands).await {
                Ok(Ok(())) => None,
                Ok(Err(d)) => Some(Ok(Entry::Denied(d))),
                Err(e) => Some(Err(e)),
            },
        };
        match refusal {
            None => Ok(Entry::Admitted(taken.into_iter().map(|(_, l)| l).collect())),
            Some(r) => {
                self.settle(taken, Vec::new()).await?;
                r
            }
        }
    }

    /// Gives back places and corrects token buckets (bucket, per minute,
    /// delta) once a request has ended. A shared limiter does it in one call.
    async fn settle(
        &self,
        places: Vec<(BucketKey, Lease)>,
        adjustments: Vec<(BucketKey, u64, i64)>,
    ) -> Result<(), LimiterError> {
        for (bucket, lease) in places {
            self.release(&bucket, lease).await?;
        }
        for (bucket, per_minute, delta) in adjustments {
            self.adjust(&bucket, per_minute, delta).await?;
        }
        Ok(())
    }
}

/// Limits held in this process.
pub struct MemoryLimiter {
    epoch: Instant,
    /// Theoretical arrival time per bucket, in ms since `epoch`.
    tat: Mutex<HashMap<BucketKey, f64>>,
    running: Mutex<HashMap<BucketKey, u64>>,
}

impl Default for MemoryLimiter {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            tat: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
        }
    }
}

pub(crate) fn interval(per_minute: u64) -> f64 {
    WINDOW_MS / per_minute.max(1) as f64
}

pub(crate) fn snapshot(tat: f64, now: f64, per_minute: u64) -> Snapshot {
    let used = (tat - now).max(0.0);
    let remaining = ((WINDOW_MS - used) / interval(per_minute)).floor().max(0.0) as u64;
    Snapshot {
        limit: per_minute,
        remaining: remaining.min(per_minute),
        reset: Duration::from_millis(used.ceil() as u64),
    }
}

impl MemoryLimiter {
    fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64() * 1000.0
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        // A panic while holding the lock leaves plain numbers behind: still usable.
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn check_at(&self, demands: &[Demand], now: f64) -> Result<(), Denied> {
        let mut tat = Self::lock(&self.tat);
        let mut next = Vec::with_capacity(demands.len());
        let mut denied: Option<Denied> = None;
        for d in demands {
            let t = interval(d.per_minute);
            let start = tat.get(&d.bucket).copied().unwrap_or(now).max(now);
            let new = start + d.cost as f64 * t;
            if new - now > WINDOW_MS {
                let never = d.cost > d.per_minute;
                let wait = Duration::from_millis((new - WINDOW_MS - now).ceil().max(1.0) as u64);
                if denied.as_ref().is_none_or(|x| x.retry_after < wait) {
                    denied = Some(Denied {
                        bucket: d.bucket.clone(),
                        retry_after: wait,
                        never,
                    });
                }
            }
            next.push(new);
        }
        if let Some(d) = denied {
            return Err(d);
        }
        for (d, new) in demands.iter().zip(next) {
            tat.insert(d.bucket.clone(), new);
        }
        Ok(())
    }

    pub fn adjust_at(&self, bucket: &BucketKey, per_minute: u64, delta: i64, now: f64) {
        let mut tat = Self::lock(&self.tat);
        let cur = tat.get(bucket).copied().unwrap_or(now).max(now);
        let moved = (cur + delta as f64 * interval(per_minute)).max(now);
        tat.insert(bucket.clone(), moved);
    }

    pub fn peek_at(&self, bucket: &BucketKey, per_minute: u64, now: f64) -> Snapshot {
        let tat = Self::lock(&self.tat);
        snapshot(tat.get(bucket).copied().unwrap_or(now), now, per_minute)
    }
}

#[async_trait::async_trait]
impl Limiter for MemoryLimiter {
    async fn check(&self, demands: &[Demand]) -> Result<Result<(), Denied>, LimiterError> {
        Ok(self.check_at(demands, self.now()))
    }

    async fn adjust(
        &self,
        bucket: &BucketKey,
        per_minute: u64,
        delta: i64,
    ) -> Result<(), LimiterError> {
        self.adjust_at(bucket, per_minute, delta, self.now());
        Ok(())
    }

    async fn peek(&self, bucket: &BucketKey, per_minute: u64) -> Result<Snapshot, LimiterError> {
        Ok(self.peek_at(bucket, per_minute, self.now()))
    }

    async fn acquire(&self, bucket: &BucketKey, max: u64) -> Result<Option<Lease>, LimiterError> {
        let mut running = Self::lock(&self.running);
        let n = running.entry(bucket.clone()).or_insert(0);
        if *n >= max {
            return Ok(None);
        }
        *n += 1;
        // Places here end with the process: they need no name.
        Ok(Some(Lease(String::new())))
    }

    async fn release(&self, bucket: &BucketKey, _lease: Lease) -> Result<(), LimiterError> {
        let mut running = Self::lock(&self.running);
        if let Some(n) = running.get_mut(bucket) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                running.remove(bucket);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::{Meter, Scope};

    fn b(name: &str) -> BucketKey {
        BucketKey::new(Meter::Requests, Scope::Key(name.into()))
    }

    fn demand(bucket: &str, per_minute: u64, cost: u64) -> Demand {
        Demand {
            bucket: b(bucket),
            per_minute,
            cost,
        }
    }

    #[test]
    fn a_minute_of_burst_then_one_per_interval() {
        let l = MemoryLimiter::default();
        for _ in 0..3 {
            assert!(l.check_at(&[demand("k", 3, 1)], 0.0).is_ok());
        }
        let d = l.check_at(&[demand("k", 3, 1)], 0.0).expect_err("4th");
        assert_eq!(d.retry_after, Duration::from_millis(20_000));
        assert!(!d.never);
        let s = l.peek_at(&b("k"), 3, 0.0);
        assert_eq!((s.limit, s.remaining), (3, 0));
        assert_eq!(s.reset, Duration::from_secs(60));
        // One interval later exactly one more fits.
        assert!(l.check_at(&[demand("k", 3, 1)], 20_000.0).is_ok());
        assert!(l.check_at(&[demand("k", 3, 1)], 20_000.0).is_err());
    }

    #[test]
    fn all_or_nothing_across_buckets() {
        let l = MemoryLimiter::default();
        assert!(l.check_at(&[demand("key", 1, 1)], 0.0).is_ok());
        let d = l
            .check_at(&[demand("tenant", 10, 1), demand("key", 1, 1)], 0.0)
            .expect_err("key is spent");
        assert_eq!(d.bucket, b("key"));
        assert_eq!(l.peek_at(&b("tenant"), 10, 0.0).remaining, 10);
    }

    #[test]
    fn refunds_and_oversized_costs() {
        let l = MemoryLimiter::default();
        assert!(l.check_at(&[demand("t", 1000, 800)], 0.0).is_ok());
        assert_eq!(l.peek_at(&b("t"), 1000, 0.0).remaining, 200);
        l.adjust_at(&b("t"), 1000, -700, 0.0);
        assert_eq!(l.peek_at(&b("t"), 1000, 0.0).remaining, 900);
        let d = l
            .check_at(&[demand("t", 1000, 1001)], 0.0)
            .expect_err("too big");
        assert!(d.never);
    }

    #[tokio::test]
    async fn entry_takes_every_place_and_the_rate_or_nothing() {
        let l = MemoryLimiter::default();
        let places = [
            (
                BucketKey::new(Meter::Concurrency, Scope::Key("k".into())),
                5,
            ),
            (
                BucketKey::new(Meter::Concurrency, Scope::Tenant("t".into())),
                1,
            ),
        ];
        let first = l
            .enter(&places, &[demand("k", 2, 1)])
            .await
            .expect("memory");
        assert!(
            matches!(&first, Entry::Admitted(leases) if leases.len() == 2),
            "{first:?}"
        );
        // The tenant's one place is taken: the key's is not kept either.
        let full = l
            .enter(&places, &[demand("k", 2, 1)])
            .await
            .expect("memory");
        assert_eq!(full, Entry::Full(places[1].0.clone(), 1));
        let Entry::Admitted(leases) = first else {
            return;
        };
        let back = places.iter().map(|(b, _)| b.clone()).zip(leases).collect();
        l.settle(back, vec![]).await.expect("memory");
        assert!(matches!(
            l.enter(&places, &[demand("k", 2, 1)])
                .await
                .expect("memory"),
            Entry::Admitted(_)
        ));
        // The rate is spent (2 a minute): the places taken are given back.
        let denied = l
            .enter(&places, &[demand("k", 2, 1)])
            .await
            .expect("memory");
        assert!(
            matches!(denied, Entry::Full(..) | Entry::Denied(_)),
            "{denied:?}"
        );
        let solo = [places[0].clone()];
        let denied = l.enter(&solo, &[demand("k", 2, 1)]).await.expect("memory");
        assert!(matches!(denied, Entry::Denied(_)), "{denied:?}");
        // One of the key's five places is held (the third entry's): four are left.
        for _ in 0..4 {
            assert!(l.acquire(&places[0].0, 5).await.expect("memory").is_some());
        }
        assert!(l.acquire(&places[0].0, 5).await.expect("memory").is_none());
    }

    #[tokio::test]
    async fn concurrency_places_are_returned() {
        let l = MemoryLimiter::default();
        let first = l.acquire(&b("c"), 2).await.ok().flatten().expect("one");
        assert!(l.acquire(&b("c"), 2).await.ok().flatten().is_some());
        assert!(l.acquire(&b("c"), 2).await.ok().flatten().is_none());
        l.release(&b("c"), first).await.ok();
        assert!(l.acquire(&b("c"), 2).await.ok().flatten().is_some());
    }
}
