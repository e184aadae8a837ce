//! A model served by several deployments (upstreams or local models): pick
//! one, retry another when an attempt fails before anything was streamed,
//! and keep each deployment's circuit breaker and health.
//!
//! Balancing is by prefix affinity (the default) or by least outstanding
//! requests; see `balance`.
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::StreamExt;
use rand::Rng;

use aitier_core::{
    affinity, CoreError, EmbedRequest, Embeddings, EventStream, GenEvent, GenerateRequest,
    ModelInfo, Prepared, Provider, ProviderStats, RequestCtx, TokenPiece,
};

use crate::balance::{self, Balance};
use crate::breaker::{Breaker, BreakerState};
use crate::upstream::Upstream;

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per request, over all deployments.
    pub attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// An upstream asking to wait longer than this is not waited for.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

pub struct Deployment {
    pub name: String,
    pub provider: Arc<dyn Provider>,
    pub weight: u32,
    /// Set for upstreams: what health checks probe.
    pub upstream: Option<Arc<Upstream>>,
    outstanding: AtomicU32,
    breaker: Arc<Breaker>,
    healthy: AtomicBool,
}

impl Deployment {
    pub fn new(
        name: &str,
        provider: Arc<dyn Provider>,
        weight: u32,
        upstream: Option<Arc<Upstream>>,
        breaker: Arc<Breaker>,
    ) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_string(),
            provider,
            weight: weight.max(1),
            upstream,
            outstanding: AtomicU32::new(0),
            breaker,
            healthy: AtomicBool::new(true),
        })
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn outstanding(&self) -> u32 {
        self.outstanding.load(Ordering::Relaxed)
    }
}

/// Holds one in-flight request against a deployment's count.
struct InFlight(Arc<Deployment>);

impl InFlight {
    fn new(d: &Arc<Deployment>) -> Self {
        d.outstanding.fetch_add(1, Ordering::Relaxed);
        Self(d.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct Router {
    deployments: Vec<Arc<Deployment>>,
    retry: RetryPolicy,
    balance: Balance,
}

impl Router {
    pub fn new(
        deployments: Vec<Arc<Deployment>>,
        retry: RetryPolicy,
        balance: Balance,
    ) -> Arc<Self> {
        Arc::new(Self {
            deployments,
            retry,
            balance,
        })
    }

    pub fn deployments(&self) -> &[Arc<Deployment>] {
        &self.deployments
    }

    /// Probes every upstream deployment each `interval` while the router lives.
    pub fn spawn_health_checks(self: &Arc<Self>, interval: Duration) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(router) = weak.upgrade() else { return };
                for d in &router.deployments {
                    if let Some(up) = &d.upstream {
                        let ok = up.probe().await;
                        if ok != d.healthy.swap(ok, Ordering::Relaxed) {
                            tracing::warn!(deployment = %d.name, healthy = ok, "deployment health changed");
                        }
                    }
                }
                drop(router);
                tokio::time::sleep(interval).await;
            }
        });
    }

    /// The deployment for a request with this affinity key, among those
    /// not tried yet and not shut out by their breaker; healthy ones first.
    fn pick(&self, tried: &[usize], affinity: Option<&str>) -> Option<usize> {
        let open: Vec<usize> = (0..self.deployments.len())
            .filter(|i| !tried.contains(i) && self.deployments[*i].breaker.would_allow())
            .collect();
        let healthy: Vec<usize> = open
            .iter()
            .copied()
            .filter(|i| self.deployments[*i].healthy())
            .collect();
        let pool = if healthy.is_empty() { open } else { healthy };
        let loads: Vec<balance::Load> = pool
            .iter()
            .map(|&i| {
                let d = &self.deployments[i];
                balance::Load {
                    name: &d.name,
                    weight: d.weight,
                    outstanding: d.outstanding(),
                }
            })
            .collect();
        let chosen = self.balance.choose(&loads, affinity, &mut rand::rng())?;
        Some(pool[chosen])
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .retry
            .backoff
            .saturating_mul(1 << attempt.min(16))
            .min(self.retry.max_backoff);
        // Full jitter: retries of many clients spread out instead of stampeding.
        cap.mul_f64(rand::rng().random_range(0.0..1.0))
    }

    /// The stream of a deployment that took the request: its `Started`
    /// names the deployment, and the breaker hears how the stream ended,
    /// not just that it started, so one that fails mid-stream trips it.
    fn watch(
        d: &Arc<Deployment>,
        permit: crate::breaker::Permit,
        in_flight: InFlight,
        stream: EventStream,
    ) -> EventStream {
        let name = d.name.clone();
        let mut permit = Some(permit);
        stream
            .map(move |mut ev| {
                let _held = &in_flight;
                match &mut ev {
                    GenEvent::Started { deployment, .. } => {
                        deployment.get_or_insert_with(|| name.clone());
                    }
                    GenEvent::Done { .. } => {
                        if let Some(p) = permit.take() {
                            p.success();
                        }
                    }
                    GenEvent::Error(_) => {
                        if let Some(p) = permit.take() {
                            p.failure();
                        }
                    }
                    _ => {}
                }
                ev
            })
            .boxed()
    }

    /// How long to wait before the next attempt, or `None` to give up.
    fn pause(
        &self,
        attempt: u32,
        tried: &[usize],
        after: Option<Duration>,
        ctx: &RequestCtx,
    ) -> Option<Duration> {
        if attempt + 1 >= self.retry.attempts {
            return None;
        }
        // A deployment not tried yet is tried at once; the same ones again
        // after a backoff, and no sooner than they asked.
        let mut wait = Duration::ZERO;
        if self.pick(tried, None).is_none() {
            wait = self.backoff(attempt);
            if let Some(after) = after {
                if after > self.retry.max_retry_after {
                    return None;
                }
                wait = wait.max(after);
            }
        }
        let past_deadline = ctx.deadline.is_some_and(|dl| Instant::now() + wait >= dl);
        (!past_deadline).then_some(wait)
    }

    /// One attempt on deployment `i`: the request as that deployment
    /// prepares it (the one `prepare` chose already has).
    async fn attempt(
        &self,
        i: usize,
        prepared: &Prepared,
        ctx: &RequestCtx,
    ) -> Result<EventStream, CoreError> {
        let d = &self.deployments[i];
        let own = prepared
            .state::<RouterPrepared>()
            .filter(|s| s.deployment == i)
            .map(|s| s.inner.clone());
        let inner = match own {
            Some(p) => p,
            None => d.provider.prepare(prepared.request.clone()).await?,
        };
        d.provider.run(inner, ctx.clone()).await
    }

    /// Tries deployments until one answers: a deployment not tried yet
    /// at once, the same ones again after a backoff, while the error says
    /// another may succeed. Returns the one that answered, still held.
    async fn route<T, F, Fut>(
        &self,
        ctx: &RequestCtx,
        affinity: Option<&str>,
        mut attempt: F,
    ) -> Result<(Taken, T), CoreError>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = Result<T, CoreError>>,
    {
        let mut tried: Vec<usize> = Vec::new();
        let mut last: Option<CoreError> = None;
        for n in 0..self.retry.attempts.max(1) {
            // Everything tried: start over on the same deployments.
            let pick = self.pick(&tried, affinity).or_else(|| {
                tried.clear();
                self.pick(&tried, affinity)
            });
            let Some(i) = pick else { break };
            let d = &self.deployments[i];
            let Some(permit) = d.breaker.try_acquire() else {
                tried.push(i);
                continue;
            };
            let in_flight = InFlight::new(d);
            let e = match attempt(i).await {
                Ok(answer) => {
                    let taken = Taken {
                        deployment: d.clone(),
                        permit,
                        in_flight,
                    };
                    return Ok((taken, answer));
                }
                Err(e) => e,
            };
            let Some(after) = e.unavailable() else {
                // The request's own fault, not the deployment's.
                drop(permit);
                return Err(e);
            };
            permit.failure();
            tracing::warn!(deployment = %d.name, error = %e, attempt = n, "attempt failed");
            tried.push(i);
            last = Some(e);
            match self.pause(n, &tried, after, ctx) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => break,
            }
        }
        Err(last.unwrap_or_else(|| CoreError::Upstream {
            message: "every deployment of this model is unavailable (circuit open)".into(),
            retryable: true,
            retry_after: Some(Duration::from_secs(1)),
        }))
    }

    async fn generate(
        &self,
        prepared: Prepared,
        ctx: RequestCtx,
    ) -> Result<EventStream, CoreError> {
        let key = affinity::of_request(&prepared.request);
        let (taken, stream) = self
            .route(&ctx, Some(&key), |i| self.attempt(i, &prepared, &ctx))
            .await?;
        Ok(Self::watch(
            &taken.deployment,
            taken.permit,
            taken.in_flight,
            stream,
        ))
    }

    /// One embedding attempt on deployment `i`, prepared by it.
    async fn attempt_embed(
        &self,
        i: usize,
        prepared: &Prepared<EmbedRequest>,
        ctx: &RequestCtx,
    ) -> Result<Embeddings, CoreError> {
        let d = &self.deployments[i];
        let own = prepared
            .state::<RouterPrepared<EmbedRequest>>()
            .filter(|s| s.deployment == i)
            .map(|s| s.inner.clone());
        let inner = match own {
            Some(p) => p,
            None => d.provider.prepare_embed(prepared.request.clone()).await?,
        };
        d.provider.embed(inner, ctx.clone()).await
    }

    async fn embed_routed(
        &self,
        prepared: Prepared<EmbedRequest>,
        ctx: RequestCtx,
    ) -> Result<Embeddings, CoreError> {
        let (taken, mut answer) = self
            .route(&ctx, None, |i| self.attempt_embed(i, &prepared, &ctx))
            .await?;
        taken.permit.success();
        answer
            .deployment
            .get_or_insert_with(|| taken.deployment.name.clone());
        Ok(answer)
    }

    /// The deployment most likely to take a request, to size it by.
    fn likely(&self, affinity: Option<&str>) -> Result<(usize, &Arc<Deployment>), CoreError> {
        let i = self.pick(&[], affinity).unwrap_or(0);
        self.deployments
            .get(i)
            .map(|d| (i, d))
            .ok_or_else(|| CoreError::Internal("a routed model has no deployments".into()))
    }
}

/// The deployment an attempt succeeded on, with its breaker permit and
/// its place in the count of requests in flight.
struct Taken {
    deployment: Arc<Deployment>,
    permit: crate::breaker::Permit,
    in_flight: InFlight,
}

/// What the router's `prepare` chose, kept for `run`.
struct RouterPrepared<R = GenerateRequest> {
    deployment: usize,
    inner: Prepared<R>,
}

impl Provider for Router {
    /// The first deployment's context; what any deployment serves.
    fn info(&self) -> ModelInfo {
        let infos: Vec<ModelInfo> = self.deployments.iter().map(|d| d.provider.info()).collect();
        ModelInfo {
            context_length: infos.first().map_or(0, |i| i.context_length),
            generates: infos.iter().any(|i| i.generates),
            embeds: infos.iter().any(|i| i.embeds),
        }
    }

    /// Sized by the deployment most likely to take the request: the
    /// tier admits by this estimate even if another serves it.
    fn prepare(&self, req: GenerateRequest) -> BoxFuture<'_, Result<Prepared, CoreError>> {
        Box::pin(async move {
            let (i, d) = self.likely(Some(&affinity::of_request(&req)))?;
            let inner = d.provider.prepare(req.clone()).await?;
            let size = inner.size;
            Ok(Prepared::new(req, size).with_state(RouterPrepared {
                deployment: i,
                inner,
            }))
        })
    }

    fn run(
        &self,
        prepared: Prepared,
        ctx: RequestCtx,
    ) -> BoxFuture<'_, Result<EventStream, CoreError>> {
        Box::pin(self.generate(prepared, ctx))
    }

    fn prepare_embed(
        &self,
        req: EmbedRequest,
    ) -> BoxFuture<'_, Result<Prepared<EmbedRequest>, CoreError>> {
        Box::pin(async move {
            let (i, d) = self.likely(None)?;
            let inner = d.provider.prepare_embed(req.clone()).await?;
            let size = inner.size;
            Ok(Prepared::new(req, size).with_state(RouterPrepared {
                deployment: i,
                inner,
            }))
        })
    }

    fn embed(
        &self,
        prepared: Prepared<EmbedRequest>,
        ctx: RequestCtx,
    ) -> BoxFuture<'_, Result<Embeddings, CoreError>> {
        Box::pin(self.embed_routed(prepared, ctx))
    }

    /// The first deployment that can tokenize (a local model, or an
    /// upstream with its own `/tokenize`) does.
    fn tokenize(
        &self,
        text: String,
        add_special: bool,
        parse_special: bool,
    ) -> BoxFuture<'_, Result<Vec<TokenPiece>, CoreError>> {
        Box::pin(async move {
            let mut last = CoreError::invalid("model", "no deployment of this model can tokenize");
            for d in &self.deployments {
                match d
                    .provider
                    .tokenize(text.clone(), add_special, parse_special)
                    .await
                {
                    Ok(t) => return Ok(t),
                    Err(e) => last = e,
                }
            }
            Err(last)
        })
    }

    fn detokenize(&self, tokens: Vec<u32>) -> BoxFuture<'_, Result<String, CoreError>> {
        Box::pin(async move {
            let mut last =
                CoreError::invalid("model", "no deployment of this model can detokenize");
            for d in &self.deployments {
                match d.provider.detokenize(tokens.clone()).await {
                    Ok(t) => return Ok(t),
                    Err(e) => last = e,
                }
            }
            Err(last)
        })
    }

    fn stats(&self) -> ProviderStats {
        self.deployments.iter().map(|d| d.provider.stats()).sum()
    }
}
