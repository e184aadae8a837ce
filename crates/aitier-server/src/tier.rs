//! The tier without a listener: the models, tenancy, scheduling and ledger
//! of one configuration, for an app that embeds them and calls them
//! in-process (`aitier-client`'s in-process transport, the Python
//! binding), and what `serve` puts behind its listener. A call here goes
//! through the same decoding, key checks, limits, admission, fallbacks and
//! ledger as the same request over HTTP; only the framing is missing.
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::stream::BoxStream;
use futures::StreamExt;

use aitier_core::frontend::{collect, Frontend};
use aitier_core::{GenEvent, ModelRegistry};
use aitier_protocol::embeddings::{EmbeddingRequest, EmbeddingResponse};
use aitier_protocol::models::ModelList;
use aitier_protocol::sse::Payload;
use aitier_tenancy::store::redact_url;
use aitier_tenancy::{
    Limiter, MemoryLimiter, Principal, RedisLimiter, RedisLimits, SqlStore, Store, Tenancy,
    TenancyConfig,
};

use crate::catalog::Catalog;
use crate::config::{ServeArgs, ServeConfig};
use crate::console::session::Sessions;
use crate::deployments::Routers;
use crate::drain::Drain;
use crate::error::ApiError;
use crate::generation::{self, Caller};
use crate::metrics::Metrics;
use crate::state::AppState;

/// A stream of an API's chunks, in-process: it ends after the last chunk,
/// or with the error that cut it.
pub type Chunks<C> = BoxStream<'static, Result<C, ApiError>>;

pub struct Tier {
    state: AppState,
    cfg: ServeConfig,
}

/// `aitier serve`'s arguments, to read a configuration as it does.
#[derive(Parser)]
struct Serve {
    #[command(flatten)]
    args: ServeArgs,
}

impl Tier {
    /// The tier of a configuration file, read as `aitier serve --config
    /// PATH` reads it (with the `AITIER_*` environment); its models start
    /// loading (see `ready`). Without a listener there is nobody to expose
    /// to, so a tenancy database without keys serves open, whatever the
    /// file's `host`; with keys, every call needs one.
    pub async fn from_config(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref().as_os_str();
        let args =
            Serve::try_parse_from([std::ffi::OsStr::new("aitier"), "--config".as_ref(), path])?
                .args;
        Self::from_args(args).await
    }

    /// The tier of these arguments, resolved as `aitier serve` resolves
    /// them (file, environment, then the arguments).
    pub async fn from_args(args: ServeArgs) -> anyhow::Result<Self> {
        let cfg = ServeConfig::resolve(&args)?;
        let tenancy = open_tenancy(&cfg, true).await?;
        Self::assemble(cfg, args, tenancy)
    }

    /// Starts loading the models of `cfg` and puts the tier together.
    pub(crate) fn assemble(
        cfg: ServeConfig,
        args: ServeArgs,
        tenancy: Arc<Tenancy>,
    ) -> anyhow::Result<Self> {
        let registry = Arc::new(ModelRegistry::new());
        let routers = Routers::default();
        let catalog = Catalog::start(&cfg, args, registry.clone(), routers.clone())?;
        let metrics = Arc::new(Metrics::new(registry.clone(), routers, tenancy.clone()));
        let state = AppState {
            metrics,
            registry,
            started_at: aitier_core::clock::unix_secs(),
            catalog,
            tenancy,
            admin_token: cfg.tenancy.admin_token.clone(),
            keep_alive: cfg.keep_alive,
            drain: Drain::default(),
            sessions: Sessions::new(cfg.tenancy.admin_token.as_ref()),
            console_secure_cookie: cfg.tls.is_some(),
        };
        Ok(Self { state, cfg })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Waits until every model is loaded; fails as soon as one failed to
    /// load, or after `timeout`.
    pub async fn ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let registry = &self.state.registry;
        loop {
            if let Some((model, why)) = registry.failures().into_iter().next() {
                anyhow::bail!("model `{model}` failed to load: {why}");
            }
            if registry.all_ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                anyhow::bail!("the models were still loading after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The tier's whole HTTP API (what `aitier serve` answers), for an app
    /// that serves it beside its own routes.
    pub fn router(&self) -> axum::Router {
        crate::app::router(self.state.clone(), &self.cfg)
    }

    /// Who holds `key` (none: the open tier's anonymous caller, when no
    /// key exists).
    pub async fn authenticate(&self, key: Option<&str>) -> Result<Principal, ApiError> {
        Ok(self.state.tenancy.authenticate(key).await?)
    }

    /// One whole answer of an API (`endpoint` is its path, which the ledger
    /// row and the metrics carry), whether or not it asked to stream.
    pub async fn generate<F: Frontend>(
        &self,
        principal: &Principal,
        endpoint: &str,
        req: F::Request,
    ) -> Result<F::Response, ApiError> {
        let begun = self.begin::<F>(principal, endpoint, req).await?;
        let answer = collect(begun.events, begun.choices).await?;
        Ok(begun.encoder.respond(answer))
    }

    /// An API's stream of chunks, as its SSE events would carry them
    /// (without the final `[DONE]`).
    pub async fn generate_stream<F: Frontend>(
        &self,
        principal: &Principal,
        endpoint: &str,
        req: F::Request,
    ) -> Result<Chunks<F::Chunk>, ApiError> {
        let begun = self.begin::<F>(principal, endpoint, req).await?;
        let mut encoder = begun.encoder;
        let chunks = begun.events.scan(false, move |ended, ev| {
            if *ended {
                return futures::future::ready(None);
            }
            let out: Vec<Result<F::Chunk, ApiError>> = match ev {
                GenEvent::Error(e) => {
                    *ended = true;
                    vec![Err(e.into())]
                }
                ev => {
                    *ended = matches!(ev, GenEvent::Done { .. });
                    encoder
                        .encode(ev)
                        .into_iter()
                        .filter_map(|p| match p {
                            Payload::Chunk(c) => Some(Ok(c)),
                            Payload::Error(_) | Payload::Done => None,
                        })
                        .collect()
                }
            };
            futures::future::ready(Some(futures::stream::iter(out)))
        });
        Ok(chunks.flatten().boxed())
    }

    pub async fn embed(
        &self,
        principal: &Principal,
        req: EmbeddingRequest,
    ) -> Result<EmbeddingResponse, ApiError> {
        let rid = request_id();
        generation::embed_api(&self.state, caller(principal, &rid, "/v1/embeddings"), req).await
    }

    /// The models `principal` may use.
    pub fn models(&self, principal: &Principal) -> ModelList {
        crate::routes::models::visible(&self.state, principal)
    }

    /// Writes every queued ledger row (within 30 s); for an app about to
    /// exit.
    pub async fn close(&self) {
        let flushed =
            tokio::time::timeout(Duration::from_secs(30), self.state.tenancy.ledger().flush())
                .await;
        if flushed.is_err() {
            tracing::error!("the usage ledger could not be written within 30 s");
        }
    }

    async fn begin<F: Frontend>(
        &self,
        principal: &Principal,
        endpoint: &str,
        req: F::Request,
    ) -> Result<generation::Begun<F>, ApiError> {
        let rid = request_id();
        let caller = caller(principal, &rid, endpoint);
        generation::begin_api::<F>(&self.state, caller, None, req).await
    }
}

fn request_id() -> String {
    format!("req_{}", uuid::Uuid::new_v4().simple())
}

fn caller<'a>(principal: &'a Principal, request_id: &'a str, endpoint: &'a str) -> Caller<'a> {
    Caller {
        principal,
        request_id,
        user: None,
        endpoint,
        traceparent: None,
    }
}

/// Opens the tenancy database and decides whether the tier may run
/// without keys: in-process, or on loopback, or when told `--allow-open`.
pub(crate) async fn open_tenancy(
    cfg: &ServeConfig,
    in_process: bool,
) -> anyhow::Result<Arc<Tenancy>> {
    let t = &cfg.tenancy;
    let store = SqlStore::lazy(&t.database_url)?;
    let url = redact_url(&t.database_url);
    let allow_open = in_process || cfg.host.is_loopback() || t.allow_open;
    let reachable = match store.ready().await {
        Ok(()) => {
            tracing::info!(backend = store.backend(), %url, "tenancy database ready");
            true
        }
        // A shared database may come up after the service: serve, and
        // refuse what needs it until it answers. A SQLite file that cannot
        // be opened will not open by waiting.
        Err(e) if store.backend() == "postgres" => {
            tracing::error!(
                %url, error = %e,
                "the tenancy database is unavailable; serving anyway: requests that need it \
                 get 503 until it answers"
            );
            false
        }
        Err(e) => return Err(e.into()),
    };
    if reachable && !store.has_keys().await? {
        if !allow_open {
            anyhow::bail!(
                "no API key exists and {} is not a loopback address: create a key \
                 (`aitier tenants create NAME`, then `aitier keys create NAME`) or pass --allow-open",
                cfg.host
            );
        }
        tracing::warn!(
            "no API key exists: serving OPEN, without authentication, until one is created"
        );
    }
    let limiter: Arc<dyn Limiter> = match &t.redis_url {
        Some(url) => {
            tracing::info!(redis = %redact_url(url), fail_open = t.limits_fail_open, "rate limits in Redis");
            let mut limits = RedisLimits::new(url);
            limits.lease = t.hold_lease;
            RedisLimiter::start(&limits)?
        }
        None => Arc::new(MemoryLimiter::default()),
    };
    Ok(Tenancy::new(
        Arc::new(store),
        limiter,
        TenancyConfig {
            allow_open,
            default_completion_reserve: t.default_completion_reserve,
            ledger_capacity: t.ledger_queue,
            ledger_sync: t.ledger_sync,
            limits_fail_open: t.limits_fail_open,
            hold_lease: t.hold_lease,
        },
    ))
}
