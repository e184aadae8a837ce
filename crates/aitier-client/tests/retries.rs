//! The HTTP transport's retries against a real HTTP server that fails on
//! demand (the tier cannot be made to answer 503 or drop a connection at
//! will): what is retried, how often, and what the tier's `x-should-retry`
//! and `retry-after-ms` change.
use std::future::IntoFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use aitier_client::{Client, Error, HttpOptions};

/// One scripted answer: a status and its headers.
type Answer = (u16, Vec<(&'static str, &'static str)>);

/// What the server answers, in order; the last one again once they run out.
#[derive(Clone)]
struct Script {
    answers: Arc<Mutex<Vec<Answer>>>,
    hits: Arc<AtomicUsize>,
}

async fn models(State(s): State<Script>) -> Response {
    let n = s.hits.fetch_add(1, Ordering::SeqCst);
    let (status, headers) = {
        let answers = s.answers.lock().unwrap_or_else(|p| p.into_inner());
        answers[n.min(answers.len() - 1)].clone()
    };
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.insert(k, v.parse().expect("header value"));
    }
    let status = StatusCode::from_u16(status).expect("status");
    if status.is_success() {
        return (h, Json(json!({"object": "list", "data": []}))).into_response();
    }
    let body = json!({"error": {"message": "scripted", "type": "server_error", "param": null, "code": "scripted"}});
    (status, h, Json(body)).into_response()
}

/// A server answering `/v1/models` as scripted, and a client of it.
async fn scripted(
    answers: Vec<(u16, Vec<(&'static str, &'static str)>)>,
) -> (Client, Arc<AtomicUsize>) {
    let script = Script {
        answers: Arc::new(Mutex::new(answers)),
        hits: Arc::new(AtomicUsize::new(0)),
    };
    let hits = script.hits.clone();
    let app = Router::new()
        .route("/v1/models", get(models))
        .with_state(script);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}/v1", listener.local_addr().expect("addr"));
    tokio::spawn(axum::serve(listener, app).into_future());
    let options = HttpOptions {
        max_retries: 2,
        ..HttpOptions::default()
    };
    let client = Client::http_with(&base, None, options).expect("client");
    (client, hits)
}

/// Asked to wait 1 ms, so that the retries take no time.
const SOON: (&str, &str) = ("retry-after-ms", "1");

#[tokio::test]
async fn a_failure_a_retry_can_help_is_retried_until_it_passes() {
    let (client, hits) = scripted(vec![(503, vec![SOON]), (429, vec![SOON]), (200, vec![])]).await;
    client.models().await.expect("passes on the third attempt");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn retries_stop_after_max_retries_with_the_last_error() {
    let (client, hits) = scripted(vec![(500, vec![SOON])]).await;
    let e = client.models().await.expect_err("always fails");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        3,
        "one attempt and two retries"
    );
    match e {
        Error::Api {
            status,
            error,
            retry_after,
        } => {
            assert_eq!(status, 500);
            assert_eq!(error.code.as_deref(), Some("scripted"));
            assert_eq!(retry_after, Some(Duration::from_millis(1)));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_tier_says_whether_to_retry() {
    // A 429 the tier says is final (a spent budget) is not retried...
    let (client, hits) = scripted(vec![
        (429, vec![("x-should-retry", "false")]),
        (200, vec![]),
    ])
    .await;
    let e = client.models().await.expect_err("not retried");
    assert_eq!((e.status(), hits.load(Ordering::SeqCst)), (Some(429), 1));
    // ...and a 400 it says is worth another try is.
    let (client, hits) = scripted(vec![
        (400, vec![("x-should-retry", "true"), SOON]),
        (200, vec![]),
    ])
    .await;
    client.models().await.expect("retried");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // A plain 400 is the client's mistake: never retried.
    let (client, hits) = scripted(vec![(400, vec![]), (200, vec![])]).await;
    assert_eq!(
        client.models().await.expect_err("final").status(),
        Some(400)
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_tier_that_cannot_be_reached_is_a_connection_error() {
    // A port nothing listens on: bound, then closed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let options = HttpOptions {
        max_retries: 1,
        ..HttpOptions::default()
    };
    let client = Client::http_with(&format!("http://{addr}/v1"), None, options).expect("client");
    match client.models().await {
        Err(Error::Connection(_)) => {}
        other => panic!("{other:?}"),
    }
}
