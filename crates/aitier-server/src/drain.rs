//! Graceful drain. On SIGTERM or SIGINT the service goes through three
//! phases: draining (`/ready` answers 503 at once, so a load balancer stops
//! sending, while new connections are still accepted for the grace), closed
//! (the listener is gone: new connections are refused, requests in flight
//! run on), and, if they outlast the drain timeout, cut (streams end with
//! their API's error event, waiting handlers answer 503). A second signal
//! exits at once.
use std::future::Future;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
#[cfg(unix)]
use tokio::signal::unix::{self, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::config::DrainTimes;
use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Serving,
    Draining,
    Closed,
    Cut,
}

/// The service's phase, shared by the listener, `/ready` and every
/// request in flight.
#[derive(Clone)]
pub struct Drain {
    phase: Arc<watch::Sender<Phase>>,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            phase: Arc::new(watch::Sender::new(Phase::Serving)),
        }
    }
}

impl Drain {
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    pub fn draining(&self) -> bool {
        self.phase() >= Phase::Draining
    }

    /// Phases only move forward.
    pub fn enter(&self, to: Phase) {
        self.phase.send_if_modified(|p| {
            let later = to > *p;
            if later {
                *p = to;
            }
            later
        });
    }

    /// Resolves once the service has reached `phase`.
    pub fn reached(&self, phase: Phase) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.phase.subscribe();
        async move {
            // The sender lives as long as any `Drain`; if it is gone, so is
            // everything that could wait on it.
            let _ = rx.wait_for(|p| *p >= phase).await;
        }
    }

    /// Moves through the phases on the first of `signals`; `on_second`
    /// runs on the next one.
    pub async fn on_signals(
        self,
        mut signals: Signals,
        times: DrainTimes,
        on_second: impl FnOnce() + Send + 'static,
    ) {
        if signals.0.recv().await.is_none() {
            return;
        }
        self.enter(Phase::Draining);
        tracing::info!(
            grace_ms = times.grace.as_millis() as u64,
            timeout_ms = times.timeout.as_millis() as u64,
            "draining: /ready answers 503; new connections are accepted until the grace ends, \
             requests in flight run until the timeout (a second signal stops at once)"
        );
        tokio::spawn(async move {
            if signals.0.recv().await.is_some() {
                on_second();
            }
        });
        tokio::time::sleep(times.grace).await;
        self.enter(Phase::Closed);
        tracing::info!("drain grace over: no new connections");
        tokio::time::sleep(times.timeout.saturating_sub(times.grace)).await;
        if self.phase() < Phase::Cut {
            tracing::warn!("drain timeout: ending the requests still running");
            self.enter(Phase::Cut);
        }
    }
}

/// A handler still working when the drain timeout comes answers 503.
/// Streams end by themselves (see `sse`), with their API's error event.
pub async fn layer(State(drain): State<Drain>, req: Request, next: Next) -> Response {
    tokio::select! {
        resp = next.run(req) => resp,
        () = drain.reached(Phase::Cut) => ApiError::shutting_down().into_response(),
    }
}

/// SIGTERM and SIGINT as they arrive. Taken over from the default
/// handlers (which end the process) when this is made, so that a signal
/// sent the moment the service starts is a drain too.
pub struct Signals(mpsc::UnboundedReceiver<()>);

impl Signals {
    /// Needs the runtime.
    pub fn listen() -> std::io::Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        #[cfg(unix)]
        for kind in [SignalKind::terminate(), SignalKind::interrupt()] {
            let mut s = unix::signal(kind)?;
            let tx = tx.clone();
            tokio::spawn(async move { while s.recv().await.is_some() && tx.send(()).is_ok() {} });
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() && tx.send(()).is_ok() {}
        });
        Ok(Self(rx))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn phases_only_move_forward_and_wake_waiters() {
        let drain = Drain::default();
        let closed = tokio::spawn(drain.reached(Phase::Closed));
        drain.enter(Phase::Draining);
        assert!(drain.draining());
        assert!(!closed.is_finished());
        drain.enter(Phase::Cut);
        drain.enter(Phase::Draining);
        assert_eq!(drain.phase(), Phase::Cut);
        tokio::time::timeout(Duration::from_secs(5), closed)
            .await
            .expect("a later phase wakes those waiting for an earlier one")
            .expect("join");
    }
}
