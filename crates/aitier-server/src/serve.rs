//! Starting and stopping the service.
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use tokio::net::TcpListener;

use crate::catalog::Catalog;
use crate::config::{ServeArgs, ServeConfig};
use crate::connections::{self, ClientTimeouts};
use crate::drain::{Phase, Signals};
use crate::tier::{open_tenancy, Tier};
use crate::tls::{self, TlsListener};
use tokio_rustls::TlsAcceptor;

/// How long past the drain timeout the service waits for cut requests'
/// connections to close.
const CUT_WAIT: Duration = Duration::from_secs(5);

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
    let tenancy = open_tenancy(&cfg, false).await?;
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
    let tier = Tier::assemble(cfg.clone(), args, tenancy.clone())?;
    let state = tier.state().clone();
    #[cfg(unix)]
    tokio::spawn(reload_on_hangup(state.catalog.clone(), hangups));
    tracing::info!(%addr, models = ?state.registry.names(), "listening; loading models");
    if let Some(l) = metrics_listener {
        // Scraped until the process ends, through the drain.
        tokio::spawn(axum::serve(l, state.metrics.router()).into_future());
    }
    let drain = state.drain.clone();
    let ledger = tenancy.ledger().clone();
    tokio::spawn(drain.clone().on_signals(signals, cfg.drain, move || {
        tracing::error!(
            unwritten_usage_rows = ledger.pending(),
            "second signal: exiting now, without waiting for requests or the ledger"
        );
        std::process::exit(130);
    }));
    let app = tier.router();
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
