//! Starting and stopping the service.
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aitier_core::ModelRegistry;
use aitier_tenancy::store::redact_url;
use aitier_tenancy::{
    Limiter, MemoryLimiter, RedisLimiter, RedisLimits, SqlStore, Store, Tenancy, TenancyConfig,
};
use axum::serve::ListenerExt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use tokio::net::TcpListener;

use crate::app::router;
use crate::catalog::Catalog;
use crate::config::{ServeArgs, ServeConfig};
use crate::connections::{self, ClientTimeouts};
use crate::console::session::Sessions;
use crate::deployments::Routers;
use crate::drain::{Drain, Phase, Signals};
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::tls::{self, TlsListener};
use tokio_rustls::TlsAcceptor;

/// How long past the drain timeout the service waits for cut requests'
/// connections to close.
const CUT_WAIT: Duration = Duration::from_secs(5);

/// Opens the tenancy database and decides whether the service may run
/// without keys: only on loopback, or when told `--allow-open`.
async fn tenancy(cfg: &ServeConfig) -> anyhow::Result<Arc<Tenancy>> {
    let t = &cfg.tenancy;
    let store = SqlStore::lazy(&t.database_url)?;
    let url = redact_url(&t.database_url);
    let allow_open = cfg.host.is_loopback() || t.allow_open;
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

async fn bind_metrics(addr: Option<SocketAddr>) -> anyhow::Result<Option<TcpListener>> {
    let Some(a) = addr else {
        return Ok(None);
    };
    let listener = TcpListener::bind(a).await.map_err(|e| {
        anyhow::anyhow!("metrics listener on {a}: {e} (set --metrics-addr, or off)")
    })?;
    Ok(Some(listener))
}

/// Serves `cfg`, which came from `args` (read again on reload).
pub async fn run(cfg: ServeConfig, args: ServeArgs) -> anyhow::Result<()> {
    // Before anything else, so that a signal during start-up drains (or
    // reloads) instead of ending the process.
    let signals = Signals::listen()?;
    #[cfg(unix)]
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let tenancy = tenancy(&cfg).await?;
    let registry = Arc::new(ModelRegistry::new());
    let listener = TcpListener::bind(SocketAddr::new(cfg.host, cfg.port)).await?;
    let addr = listener.local_addr()?;
    // A certificate that cannot be read stops the start, before any load.
    let tls = match &cfg.tls {
        Some(files) => Some(tls::acceptor(&files.cert, &files.key)?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let metrics_listener = bind_metrics(cfg.metrics_addr).await?;
    // Tests and scripts read these lines to find port-0 listeners.
    println!("aitier listening on {scheme}://{addr}");
    if let Some(l) = &metrics_listener {
        println!("aitier metrics on http://{}/metrics", l.local_addr()?);
    }
    std::io::stdout().flush()?;
    let routers = Routers::default();
    let catalog = Catalog::start(&cfg, args, registry.clone(), routers.clone())?;
    #[cfg(unix)]
    tokio::spawn(reload_on_hangup(catalog.clone(), hangups));
    tracing::info!(%addr, models = ?registry.names(), "listening; loading models");
    let metrics = Arc::new(Metrics::new(registry.clone(), routers, tenancy.clone()));
    if let Some(l) = metrics_listener {
        // Scraped until the process ends, through the drain.
        tokio::spawn(axum::serve(l, metrics.router()).into_future());
    }
    let drain = Drain::default();
    let state = AppState {
        metrics,
        registry,
        started_at: aitier_core::clock::unix_secs(),
        catalog,
        tenancy: tenancy.clone(),
        admin_token: cfg.tenancy.admin_token.clone(),
        keep_alive: cfg.keep_alive,
        drain: drain.clone(),
        sessions: Sessions::new(cfg.tenancy.admin_token.as_ref()),
        console_secure_cookie: cfg.tls.is_some(),
    };
    let ledger = tenancy.ledger().clone();
    tokio::spawn(drain.clone().on_signals(signals, cfg.drain, move || {
        tracing::error!(
            unwritten_usage_rows = ledger.pending(),
            "second signal: exiting now, without waiting for requests or the ledger"
        );
        std::process::exit(130);
    }));
    let app = router(state, &cfg);
    let serve = serve_api(listener, tls, app, &cfg, drain.reached(Phase::Closed))?;
    // Cut requests end within moments; a connection that still holds on
    // (a client that reads nothing) is not waited for.
    let stragglers = async {
        drain.reached(Phase::Cut).await;
        tokio::time::sleep(CUT_WAIT).await;
    };
    tokio::select! {
        () = serve => {}
        () = stragglers => tracing::warn!("connections still open {CUT_WAIT:?} after the drain timeout; stopping without them"),
    }
    // Every request has ended; their ledger rows are queued. Write them all.
    let flushed = tokio::time::timeout(Duration::from_secs(30), tenancy.ledger().flush()).await;
    if flushed.is_err() {
        tracing::error!("the usage ledger could not be written within 30 s of stopping; its last rows are in the log above");
    }
    tracing::info!("stopped");
    Ok(())
}

type Serving = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The API on `listener`, over TLS when there is an acceptor, with the
/// client timeouts of `cfg`, until `closed`.
fn serve_api(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
    cfg: &ServeConfig,
    closed: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<Serving> {
    let timeouts = ClientTimeouts {
        read: cfg.read_timeout,
        write: cfg.write_timeout,
    };
    // Without TCP_NODELAY, Nagle holds each small SSE chunk until the
    // previous one is acknowledged: ~40 ms added to TTFT.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    Ok(match tls {
        Some(acceptor) => Box::pin(connections::serve(
            TlsListener::new(listener, acceptor)?,
            app,
            timeouts,
            closed,
        )),
        None => Box::pin(connections::serve(listener, app, timeouts, closed)),
    })
}

/// SIGHUP reloads the configuration, as `POST /admin/v1/reload` does.
#[cfg(unix)]
async fn reload_on_hangup(catalog: Arc<Catalog>, mut hangups: tokio::signal::unix::Signal) {
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the configuration");
        // Refusals and results are logged by the reload itself.
        let _ = catalog.reload();
    }
}
