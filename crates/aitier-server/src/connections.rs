//! Serving HTTP/1.1 connections, with the time limits `axum::serve` does
//! not set: a client has `read_timeout` to send a request's headers
//! (hyper's header timer, which needs a timer `axum::serve` never gives it:
//! headers trickled a byte at a time held a connection for ever), and as
//! long again to send its body (`body_deadline`), and a client that stops
//! reading the answer fails its connection after `write_timeout`
//! (`WriteTimeout`). Closing is graceful, as `axum::serve` does it: stop
//! accepting, let each connection finish.
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::Listener;
use axum::Router;
use futures::StreamExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt;

use crate::error::ApiError;
use crate::write_timeout::WriteTimeout;

/// How long a client may take to send, and to take what it is sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientTimeouts {
    /// For a request's headers, then as long again for its body.
    pub read: Duration,
    /// For taking any byte of the answer while the server has some to send.
    pub write: Duration,
}

/// Serves `app` on `listener` until `closed`, then waits for the
/// connections' requests in flight to end.
pub async fn serve<L: Listener>(
    mut listener: L,
    app: Router,
    timeouts: ClientTimeouts,
    closed: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(timeouts.read);
    let graceful = GracefulShutdown::new();
    tokio::pin!(closed);
    loop {
        let (io, _) = tokio::select! {
            conn = listener.accept() => conn,
            () = &mut closed => break,
        };
        let service = app
            .clone()
            .map_request(|req: Request<Incoming>| req.map(Body::new));
        let conn = http.serve_connection(
            TokioIo::new(WriteTimeout::new(io, timeouts.write)),
            TowerToHyperService::new(service),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
    // The port closes here: new connections are refused.
    drop(listener);
    graceful.shutdown().await;
}

/// A request whose body has not all arrived `read_timeout` after its
/// headers is answered 408 and its connection closed.
pub async fn body_deadline(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let expired = Arc::new(AtomicBool::new(false));
    let flag = expired.clone();
    let (parts, body) = req.into_parts();
    let timed = futures::stream::unfold(Some(body.into_data_stream()), move |body| {
        let flag = flag.clone();
        async move {
            let mut body = body?;
            match tokio::time::timeout_at(deadline, body.next()).await {
                Ok(Some(chunk)) => Some((chunk, Some(body))),
                Ok(None) => None,
                Err(_) => {
                    flag.store(true, Ordering::Relaxed);
                    let e = axum::Error::new("the request body did not arrive in time");
                    Some((Err(e), None))
                }
            }
        }
    });
    let resp = next
        .run(Request::from_parts(parts, Body::from_stream(timed)))
        .await;
    if !expired.load(Ordering::Relaxed) {
        return resp;
    }
    let mut resp = ApiError::request_timeout(format!(
        "The request body did not arrive within {} s of its headers.",
        timeout.as_secs_f64()
    ))
    .into_response();
    // What is left of the body would be misread as the next request.
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}
