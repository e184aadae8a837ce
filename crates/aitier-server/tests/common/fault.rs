//! A small real HTTP server that plays an OpenAI-compatible upstream and
//! misbehaves on cue: errors with retry-after, stalls, broken or endless
//! streams. It counts requests and notices when a client hangs up.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub enum Act {
    /// A normal stream of these pieces, with usage.
    Stream(Vec<&'static str>),
    /// A status with an OpenAI error body and, maybe, `retry-after` seconds.
    Fail(u16, Option<u64>),
    /// Never answers.
    Stall,
    /// Sends these pieces, then breaks the connection.
    Reset(Vec<&'static str>),
    /// Sends these pieces, then nothing more, keeping the connection open.
    StallMidway(Vec<&'static str>),
    /// Sends a chunk that is not JSON.
    Malformed,
    /// A piece every 50 ms, forever.
    Endless,
    /// Ignores `stream` and answers with one JSON completion of this text.
    Json(&'static str),
}

#[derive(Default)]
pub struct Script {
    queue: Mutex<VecDeque<Act>>,
    default: Mutex<Option<Act>>,
    pub hits: AtomicU32,
    /// Responses whose body the client dropped before it ended.
    pub hung_up: AtomicU32,
    /// The `x-aitier-affinity` header of each request, in order.
    pub affinity: Mutex<Vec<String>>,
}

impl Script {
    pub fn then(&self, act: Act) {
        self.queue.lock().expect("lock").push_back(act);
    }

    pub fn always(&self, act: Act) {
        *self.default.lock().expect("lock") = Some(act);
    }

    fn next(&self) -> Act {
        self.queue
            .lock()
            .expect("lock")
            .pop_front()
            .or_else(|| self.default.lock().expect("lock").clone())
            .unwrap_or(Act::Stream(vec!["ok"]))
    }

    pub fn hits(&self) -> u32 {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn affinity(&self) -> Vec<String> {
        self.affinity.lock().expect("lock").clone()
    }
}

pub struct FaultServer {
    pub base: String,
    pub script: Arc<Script>,
    _runtime: tokio::runtime::Runtime,
}

/// Counts the body as hung up unless it was read to the end.
struct Watch {
    script: Arc<Script>,
    finished: bool,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.finished {
            self.script.hung_up.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The fault server's `system_fingerprint`, which a relay passes on.
pub const FINGERPRINT: &str = "fp_fault";

fn chunk(model: &str, text: &str, finish: Option<&str>) -> Bytes {
    let v = json!({
        "id": "chatcmpl-fault", "object": "chat.completion.chunk", "created": 0, "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
    });
    Bytes::from(format!("data: {v}\n\n"))
}

async fn complete(
    State(script): State<Arc<Script>>,
    headers: axum::http::HeaderMap,
    Json(req): Json<Value>,
) -> Response {
    script.hits.fetch_add(1, Ordering::SeqCst);
    let key = headers
        .get("x-aitier-affinity")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    script.affinity.lock().expect("lock").push(key.to_string());
    let model = req["model"].as_str().unwrap_or("fault").to_string();
    let act = script.next();
    let sse = |body: Body| {
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(body)
            .expect("response")
    };
    match act {
        Act::Fail(code, retry_after) => {
            let mut r = (
                StatusCode::from_u16(code).expect("status"),
                Json(
                    json!({"error": {"message": format!("fault {code}"), "type": "server_error"}}),
                ),
            )
                .into_response();
            if let Some(s) = retry_after {
                r.headers_mut()
                    .insert("retry-after", s.to_string().parse().expect("header"));
            }
            r
        }
        Act::Stall => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Act::Stream(pieces) => {
            let mut out: Vec<Bytes> = pieces.iter().map(|p| chunk(&model, p, None)).collect();
            out.push(chunk(&model, "", Some("stop")));
            let usage = json!({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [],
                "usage": {"prompt_tokens": 7, "completion_tokens": pieces.len(), "total_tokens": 7 + pieces.len()}});
            out.push(Bytes::from(format!("data: {usage}\n\n")));
            out.push(Bytes::from_static(b"data: [DONE]\n\n"));
            let mut watch = Watch {
                script: script.clone(),
                finished: false,
            };
            let n = out.len();
            let body = futures::stream::iter(out.into_iter().enumerate()).map(move |(i, b)| {
                // The whole guard moves in with the body, not just its flag.
                let w = &mut watch;
                if i + 1 == n {
                    w.finished = true;
                }
                Ok::<_, Infallible>(b)
            });
            sse(Body::from_stream(body))
        }
        Act::Reset(pieces) => {
            let mut items: Vec<Result<Bytes, std::io::Error>> =
                pieces.iter().map(|p| Ok(chunk(&model, p, None))).collect();
            items.push(Err(std::io::Error::other("reset by the fault server")));
            let body = futures::stream::iter(items).then(|item| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                item
            });
            sse(Body::from_stream(body))
        }
        Act::StallMidway(pieces) => {
            let sent: Vec<Result<Bytes, Infallible>> =
                pieces.iter().map(|p| Ok(chunk(&model, p, None))).collect();
            let body = futures::stream::iter(sent).chain(futures::stream::pending());
            sse(Body::from_stream(body))
        }
        Act::Malformed => sse(Body::from("data: {this is not json\n\n")),
        Act::Json(text) => Json(json!({
            "id": "chatcmpl-fault", "object": "chat.completion", "created": 0, "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
        }))
        .into_response(),
        Act::Endless => {
            let watch = Watch {
                script: script.clone(),
                finished: false,
            };
            let body = futures::stream::unfold((watch, model), |(w, model)| async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((Ok::<_, Infallible>(chunk(&model, "la ", None)), (w, model)))
            });
            sse(Body::from_stream(body))
        }
    }
}

async fn models() -> Json<Value> {
    Json(
        json!({"object": "list", "data": [{"id": "fault", "object": "model", "created": 0, "owned_by": "fault"}]}),
    )
}

impl FaultServer {
    pub fn start() -> FaultServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let script = Arc::new(Script::default());
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .route("/v1/completions", post(complete))
            .route("/v1/models", get(models))
            .with_state(script.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultServer {
            base: format!("http://{addr}/v1"),
            script,
            _runtime: runtime,
        }
    }
}
