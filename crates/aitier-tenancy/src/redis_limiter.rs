//! The limits in Redis, shared by every replica: the same GCRA buckets as
//! the in-memory limiter, each check one Lua script (one round trip, atomic
//! across the buckets it names, on Redis's clock so that the replicas'
//! clocks do not matter), and concurrency places as leases in a sorted set
//! that this replica renews while its requests run. A replica that dies
//! stops renewing, and its places come back when their leases expire.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use crate::leases::while_alive;
use crate::limiter::{
    interval, snapshot, Demand, Denied, Entry, Lease, Limiter, LimiterError, Place, Snapshot,
    WINDOW_MS,
};
use crate::scope::BucketKey;

/// How far ahead of now a bucket is, in ms (0 when full).
const PEEK: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
return string.format('%.3f', math.max(tat - now, 0))
";

/// Pushes the expiry of leases this replica still holds (only those still
/// there: a lease that expired meanwhile is not brought back). KEYS and
/// ARGV[2..] pair each set with a lease; ARGV[1]: the lifetime (ms).
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local life = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + life, ARGV[i + 1])
  redis.call('PEXPIRE', key, life * 2)
end
return 0
";

/// A place in each concurrency set and a charge to each rate bucket, all
/// or none (with no sets, a rate check; with no buckets, places alone).
/// KEYS: the sets, then the buckets. ARGV: the number of sets, the lease
/// (ms), the window (ms), then per set its max and the new lease's id,
/// then per bucket its interval (ms per unit), cost and limit per minute.
/// Returns `{0}` when taken, `{1, i}` when set i is full, and
/// `{2, j, wait_ms, never}` for the bucket j that must be waited for longest.
const ENTER: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local now_ms = math.floor(now)
local sets = tonumber(ARGV[1])
local life = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
for i = 1, sets do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now_ms)
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[2 + 2 * i]) then return {1, i} end
end
local base = 3 + 2 * sets
local news = {}
local worst, wait, never = 0, -1, 0
for j = 1, #KEYS - sets do
  local interval = tonumber(ARGV[base + 3 * j - 2])
  local cost = tonumber(ARGV[base + 3 * j - 1])
  local per_minute = tonumber(ARGV[base + 3 * j])
  local tat = tonumber(redis.call('GET', KEYS[sets + j]) or now)
  if tat < now then tat = now end
  local new = tat + cost * interval
  if new - now > window then
    local w = math.max(math.ceil(new - window - now), 1)
    if w > wait then
      worst, wait = j, w
      never = (cost > per_minute) and 1 or 0
    end
  end
  news[j] = new
end
if worst > 0 then return {2, worst, wait, never} end
for j = 1, #KEYS - sets do
  redis.call('SET', KEYS[sets + j], string.format('%.3f', news[j]), 'PX', math.ceil(news[j] - now) + 1000)
end
for i = 1, sets do
  redis.call('ZADD', KEYS[i], now_ms + life, ARGV[3 + 2 * i])
  redis.call('PEXPIRE', KEYS[i], life * 2)
end
return {0}
";

/// Gives back leases and moves buckets by their delta (never below now),
/// once a request has ended. KEYS: the sets, then the buckets. ARGV: the
/// number of sets, the leases, then per bucket its interval and delta.
const SETTLE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local sets = tonumber(ARGV[1])
for i = 1, sets do
  redis.call('ZREM', KEYS[i], ARGV[1 + i])
end
local base = 1 + sets
for j = 1, #KEYS - sets do
  local key = KEYS[sets + j]
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local moved = math.max(tat + tonumber(ARGV[base + 2 * j]) * tonumber(ARGV[base + 2 * j - 1]), now)
  if moved > now then
    redis.call('SET', key, string.format('%.3f', moved), 'PX', math.ceil(moved - now) + 1000)
  else
    redis.call('DEL', key)
  end
end
return 0
";

/// Settings of the Redis limiter.
#[derive(Debug, Clone)]
pub struct RedisLimits {
    pub url: String,
    /// Prefix of every key, so that several tiers can share one Redis.
    pub prefix: String,
    /// How long a concurrency place outlives its replica's last renewal.
    pub lease: Duration,
    /// How long a call to Redis may take before the check fails.
    pub timeout: Duration,
}

impl RedisLimits {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            prefix: "aitier:".into(),
            lease: Duration::from_secs(30),
            timeout: Duration::from_secs(1),
        }
    }
}

pub struct RedisLimiter {
    conn: ConnectionManager,
    prefix: String,
    lease_ms: u64,
    /// Places this replica holds, by lease id, renewed until released.
    held: Mutex<HashMap<String, String>>,
    peek: Script,
    renew: Script,
    enter: Script,
    settle: Script,
}

fn down(e: redis::RedisError) -> LimiterError {
    LimiterError(format!("redis: {e}"))
}

impl RedisLimiter {
    /// Connects lazily: the service starts while Redis is down, refusing
    /// (or, when so configured, passing) requests until it is back.
    pub fn start(cfg: &RedisLimits) -> Result<Arc<Self>, LimiterError> {
        let client = redis::Client::open(cfg.url.as_str())
            .map_err(|e| LimiterError(format!("redis url: {e}")))?;
        let conn_cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.timeout))
            .set_response_timeout(Some(cfg.timeout))
            .set_number_of_retries(1)
            .set_max_delay(cfg.timeout);
        let conn = ConnectionManager::new_lazy_with_config(client, conn_cfg).map_err(down)?;
        let me = Arc::new(Self {
            conn,
            prefix: cfg.prefix.clone(),
            lease_ms: cfg.lease.as_millis().max(1) as u64,
            held: Mutex::new(HashMap::new()),
            peek: Script::new(PEEK),
            renew: Script::new(RENEW),
            enter: Script::new(ENTER),
            settle: Script::new(SETTLE),
        });
        tokio::spawn(while_alive(
            Arc::downgrade(&me),
            cfg.lease / 3,
            |me| async move {
                if let Err(e) = me.renew().await {
                    tracing::warn!(error = %e, "renewing concurrency leases failed; they expire unless renewed in time");
                }
            },
        ));
        Ok(me)
    }

    fn key(&self, bucket: &BucketKey) -> String {
        format!("{}{bucket}", self.prefix)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn renew(&self) -> Result<(), LimiterError> {
        let held: Vec<(String, String)> = self
            .held()
            .iter()
            .map(|(l, k)| (l.clone(), k.clone()))
            .collect();
        if held.is_empty() {
            return Ok(());
        }
        let mut call = self.renew.prepare_invoke();
        call.arg(self.lease_ms);
        for (lease, key) in &held {
            call.key(key).arg(lease);
        }
        call.invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(drop)
            .map_err(down)
    }
}

#[async_trait::async_trait]
impl Limiter for RedisLimiter {
    async fn check(&self, demands: &[Demand]) -> Result<Result<(), Denied>, LimiterError> {
        match self.enter(&[], demands).await? {
            Entry::Denied(d) => Ok(Err(d)),
            _ => Ok(Ok(())),
        }
    }

    async fn adjust(
        &self,
        bucket: &BucketKey,
        per_minute: u64,
        delta: i64,
    ) -> Result<(), LimiterError> {
        self.settle(Vec::new(), vec![(bucket.clone(), per_minute, delta)])
            .await
    }

    async fn peek(&self, bucket: &BucketKey, per_minute: u64) -> Result<Snapshot, LimiterError> {
        let used: String = self
            .peek
            .key(self.key(bucket))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(down)?;
        let used: f64 = used
            .parse()
            .map_err(|_| LimiterError(format!("redis: `{used}` is not a time")))?;
        // The bucket's time ahead of now, as the memory limiter measures it from 0.
        Ok(snapshot(used, 0.0, per_minute))
    }

    async fn acquire(&self, bucket: &BucketKey, max: u64) -> Result<Option<Lease>, LimiterError> {
        match self.enter(&[(bucket.clone(), max)], &[]).await? {
            Entry::Admitted(mut leases) => Ok(leases.pop()),
            _ => Ok(None),
        }
    }

    async fn enter(&self, places: &[Place], demands: &[Demand]) -> Result<Entry, LimiterError> {
        if places.is_empty() && demands.is_empty() {
            return Ok(Entry::Admitted(Vec::new()));
        }
        let leases: Vec<String> = places
            .iter()
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect();
        let keys: Vec<String> = places.iter().map(|(b, _)| self.key(b)).collect();
        let mut call = self.enter.prepare_invoke();
        call.arg(places.len()).arg(self.lease_ms).arg(WINDOW_MS);
        for ((key, (_, max)), lease) in keys.iter().zip(places).zip(&leases) {
            call.key(key).arg(max).arg(lease);
        }
        for d in demands {
            call.key(self.key(&d.bucket))
                .arg(interval(d.per_minute))
                .arg(d.cost)
                .arg(d.per_minute);
        }
        let answer: Vec<i64> = call
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(down)?;
        let nth = |i: i64| usize::try_from(i - 1).ok();
        match answer.as_slice() {
            [0] => {
                let mut held = self.held();
                for (lease, key) in leases.iter().zip(keys) {
                    held.insert(lease.clone(), key);
                }
                Ok(Entry::Admitted(leases.into_iter().map(Lease).collect()))
            }
            [1, i] => {
                let (bucket, max) = nth(*i)
                    .and_then(|i| places.get(i))
                    .ok_or_else(|| LimiterError(format!("redis: no place {i} was asked for")))?;
                Ok(Entry::Full(bucket.clone(), *max))
            }
            [2, j, wait, never] => {
                let d = nth(*j)
                    .and_then(|j| demands.get(j))
                    .ok_or_else(|| LimiterError(format!("redis: no bucket {j} was checked")))?;
                Ok(Entry::Denied(Denied {
                    bucket: d.bucket.clone(),
                    retry_after: Duration::from_millis((*wait).max(1) as u64),
                    never: *never == 1,
                }))
            }
            other => Err(LimiterError(format!("redis: unexpected answer {other:?}"))),
        }
    }

    async fn settle(
        &self,
        places: Vec<(BucketKey, Lease)>,
        adjustments: Vec<(BucketKey, u64, i64)>,
    ) -> Result<(), LimiterError> {
        if places.is_empty() && adjustments.is_empty() {
            return Ok(());
        }
        let mut call = self.settle.prepare_invoke();
        call.arg(places.len());
        {
            let mut held = self.held();
            for (bucket, lease) in &places {
                held.remove(&lease.0);
                call.key(self.key(bucket)).arg(&lease.0);
            }
        }
        for (bucket, per_minute, delta) in &adjustments {
            call.key(self.key(bucket))
                .arg(interval(*per_minute))
                .arg(delta);
        }
        call.invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(drop)
            .map_err(down)
    }

    async fn release(&self, bucket: &BucketKey, lease: Lease) -> Result<(), LimiterError> {
        self.settle(vec![(bucket.clone(), lease)], Vec::new()).await
    }
}
