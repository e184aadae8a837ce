//! The Redis limiter against a real Redis (the one the test setup starts):
//! the same buckets as the in-memory limiter, shared by two limiters as two
//! replicas would share them, concurrency places that come back when their
//! replica is gone, and a Redis that cannot be reached.
use std::time::Duration;

use aitier_tenancy::limiter::{Demand, Limiter};
use aitier_tenancy::testing::redis_limits;
use aitier_tenancy::{BucketKey, Meter, RedisLimiter, RedisLimits, Scope};

fn bucket(meter: Meter, name: &str) -> BucketKey {
    BucketKey::new(meter, Scope::Key(name.into()))
}

fn rpm(name: &str, per_minute: u64, cost: u64) -> Demand {
    Demand {
        bucket: bucket(Meter::Requests, name),
        per_minute,
        cost,
    }
}

#[tokio::test]
async fn a_minute_of_burst_shared_by_two_replicas_then_refusals() {
    let Some(cfg) = redis_limits() else { return };
    let (a, b) = (
        RedisLimiter::start(&cfg).expect("a"),
        RedisLimiter::start(&cfg).expect("b"),
    );
    // Ten a minute, asked for alternately through each replica.
    let mut admitted = 0;
    for i in 0..16 {
        let l = if i % 2 == 0 { &a } else { &b };
        if l.check(&[rpm("k", 10, 1)]).await.expect("redis").is_ok() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 10);
    let d = a
        .check(&[rpm("k", 10, 1)])
        .await
        .expect("redis")
        .expect_err("spent");
    // One request's interval (6 s) away, give or take the test's own time.
    assert!(
        d.retry_after > Duration::from_secs(5) && d.retry_after <= Duration::from_secs(6),
        "{d:?}"
    );
    assert!(!d.never);
    let s = b
        .peek(&bucket(Meter::Requests, "k"), 10)
        .await
        .expect("redis");
    assert_eq!((s.limit, s.remaining), (10, 0));
    assert!(s.reset > Duration::from_secs(59), "{s:?}");
}

#[tokio::test]
async fn all_or_nothing_refunds_and_oversized_costs() {
    let Some(cfg) = redis_limits() else { return };
    let l = RedisLimiter::start(&cfg).expect("limiter");
    assert!(l.check(&[rpm("key", 1, 1)]).await.expect("redis").is_ok());
    let d = l
        .check(&[rpm("tenant", 10, 1), rpm("key", 1, 1)])
        .await
        .expect("redis")
        .expect_err("the key is spent");
    assert_eq!(d.bucket, bucket(Meter::Requests, "key"));
    let tenant = l
        .peek(&bucket(Meter::Requests, "tenant"), 10)
        .await
        .expect("redis");
    assert_eq!(tenant.remaining, 10, "the tenant was not charged");

    let tokens = bucket(Meter::Tokens, "t");
    let charge = Demand {
        bucket: tokens.clone(),
        per_minute: 1000,
        cost: 800,
    };
    assert!(l.check(&[charge]).await.expect("redis").is_ok());
    assert_eq!(l.peek(&tokens, 1000).await.expect("redis").remaining, 200);
    l.adjust(&tokens, 1000, -700).await.expect("redis");
    assert_eq!(l.peek(&tokens, 1000).await.expect("redis").remaining, 900);
    let too_big = Demand {
        bucket: tokens,
        per_minute: 1000,
        cost: 1001,
    };
    assert!(
        l.check(&[too_big])
            .await
            .expect("redis")
            .expect_err("never")
            .never
    );
}

#[tokio::test]
async fn concurrency_places_are_shared_renewed_and_expire_with_their_replica() {
    let Some(mut cfg) = redis_limits() else {
        return;
    };
    cfg.lease = Duration::from_millis(900);
    let place = bucket(Meter::Concurrency, "c");
    let a = RedisLimiter::start(&cfg).expect("a");
    let b = RedisLimiter::start(&cfg).expect("b");
    let held = a.acquire(&place, 2).await.expect("redis").expect("first");
    assert!(b.acquire(&place, 2).await.expect("redis").is_some());
    assert!(a.acquire(&place, 2).await.expect("redis").is_none());
    // Renewed while its replica lives: still held after three lifetimes.
    tokio::time::sleep(Duration::from_millis(2700)).await;
    assert!(b.acquire(&place, 2).await.expect("redis").is_none());
    a.release(&place, held).await.expect("redis");
    let again = b
        .acquire(&place, 2)
        .await
        .expect("redis")
        .expect("given back");
    // Replica b dies holding two places: they expire within a lifetime.
    drop(again);
    drop(b);
    assert!(a.acquire(&place, 2).await.expect("redis").is_none());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(a.acquire(&place, 2).await.expect("redis").is_some());
    assert!(a.acquire(&place, 2).await.expect("redis").is_some());
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_soon_not_a_wait() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let l = RedisLimiter::start(&RedisLimits::new(&format!("redis://127.0.0.1:{port}")))
        .expect("starts while Redis is away");
    let started = std::time::Instant::now();
    let err = l.check(&[rpm("k", 10, 1)]).await.expect_err("no Redis");
    assert!(err.to_string().contains("redis"), "{err}");
    assert!(
        l.acquire(&bucket(Meter::Concurrency, "c"), 1)
            .await
            .is_err(),
        "no place without Redis"
    );
    // Bounded by the configured timeout, not by TCP's.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn one_call_takes_places_and_the_rate_or_nothing_and_one_settles() {
    use aitier_tenancy::limiter::Entry;
    let Some(cfg) = redis_limits() else { return };
    let (a, b) = (
        RedisLimiter::start(&cfg).expect("a"),
        RedisLimiter::start(&cfg).expect("b"),
    );
    let key_place = bucket(Meter::Concurrency, "key");
    let tenant_place = bucket(Meter::Concurrency, "tenant");
    let places = [(key_place.clone(), 3), (tenant_place.clone(), 1)];
    let entry = a.enter(&places, &[rpm("r", 3, 1)]).await.expect("redis");
    let Entry::Admitted(leases) = entry else {
        panic!("{entry:?}")
    };
    assert_eq!(leases.len(), 2);
    // The tenant's one place is taken, by the other replica's request.
    assert_eq!(
        b.enter(&places, &[rpm("r", 3, 1)]).await.expect("redis"),
        Entry::Full(tenant_place.clone(), 1)
    );
    // Nothing was taken by that refusal: of the key's three places, only
    // the first entry's is held, so two more can be taken, not three.
    let mut extra = vec![];
    for _ in 0..2 {
        let lease = a
            .acquire(&key_place, 3)
            .await
            .expect("redis")
            .expect("free");
        extra.push((key_place.clone(), lease));
    }
    assert!(a.acquire(&key_place, 3).await.expect("redis").is_none());
    a.settle(extra, vec![]).await.expect("redis");
    // Given back in one call, the places serve the other replica.
    let held = [key_place.clone(), tenant_place.clone()];
    a.settle(held.iter().cloned().zip(leases).collect(), vec![])
        .await
        .expect("redis");
    let Entry::Admitted(leases) = b.enter(&places, &[rpm("r", 3, 1)]).await.expect("redis") else {
        panic!("the places were given back")
    };
    b.settle(held.iter().cloned().zip(leases).collect(), vec![])
        .await
        .expect("redis");
    // The rate is spent (3 a minute): a denied entry keeps no place.
    let solo = [(tenant_place.clone(), 1)];
    assert!(matches!(
        a.enter(&solo, &[rpm("r", 3, 1)]).await.expect("redis"),
        Entry::Admitted(_)
    ));
    let denied = b
        .enter(&[(key_place.clone(), 3)], &[rpm("r", 3, 1)])
        .await
        .expect("redis");
    assert!(matches!(denied, Entry::Denied(_)), "{denied:?}");
    for _ in 0..3 {
        assert!(b.acquire(&key_place, 3).await.expect("redis").is_some());
    }
    // One settlement corrects token buckets too.
    let tokens = bucket(Meter::Tokens, "t");
    let charge = Demand {
        bucket: tokens.clone(),
        per_minute: 1000,
        cost: 800,
    };
    assert!(a.check(&[charge]).await.expect("redis").is_ok());
    b.settle(vec![], vec![(tokens.clone(), 1000, -700)])
        .await
        .expect("redis");
    assert_eq!(a.peek(&tokens, 1000).await.expect("redis").remaining, 900);
}
