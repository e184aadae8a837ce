//! The fastest possible OpenAI-compatible upstream, for measuring what a
//! gateway adds: a static, pre-built response (JSON, or SSE when the request
//! asks for a stream), answered in microseconds.
//!
//! `cargo run --release --example stub_upstream -- PORT`
use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

const JSON: &str = r#"{"id":"chatcmpl-stub","object":"chat.completion","created":1764000000,"model":"stub","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the stub upstream."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":6,"total_tokens":18}}"#;

const SSE: &str = concat!(
    r#"data: {"id":"chatcmpl-stub","object":"chat.completion.chunk","created":1764000000,"model":"stub","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-stub","object":"chat.completion.chunk","created":1764000000,"model":"stub","choices":[{"index":0,"delta":{"content":"Hello from the stub upstream."},"finish_reason":null}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-stub","object":"chat.completion.chunk","created":1764000000,"model":"stub","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-stub","object":"chat.completion.chunk","created":1764000000,"model":"stub","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":6,"total_tokens":18}}"#,
    "\n\n",
    "data: [DONE]\n\n",
);

async fn complete(body: Bytes) -> Response {
    let streaming = body.windows(13).any(|w| w == b"\"stream\":true")
        || body.windows(14).any(|w| w == b"\"stream\": true");
    if streaming {
        ([(header::CONTENT_TYPE, "text/event-stream")], SSE).into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], JSON).into_response()
    }
}

async fn models() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"object":"list","data":[{"id":"stub","object":"model","created":0,"owned_by":"stub"}]}"#,
    )
        .into_response()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(9100);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .route("/v1/models", get(models));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("stub upstream on http://127.0.0.1:{port}/v1");
        axum::serve(listener, app).await?;
        Ok(())
    })
}
