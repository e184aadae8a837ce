//! The app both Rust examples serve: one route of its own, `POST /ask`
//! (`{"question": "..."}` in, `{"answer": "...", "tokens": N}` out),
//! answered by the tier through whichever client it is given. Only how the
//! client is built differs between the embedded tier and the separate one.
use std::net::SocketAddr;

use aitier_client::types::chat::ChatCompletionRequest;
use aitier_client::{Client, Error};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Ask {
    question: String,
}

#[derive(Serialize)]
struct Answer {
    answer: String,
    /// Completion tokens the tier billed for it.
    tokens: u32,
}

pub fn router(client: Client) -> Router {
    Router::new().route("/ask", post(ask)).with_state(client)
}

async fn ask(
    State(client): State<Client>,
    Json(q): Json<Ask>,
) -> Result<Json<Answer>, (StatusCode, String)> {
    let req: ChatCompletionRequest = serde_json::from_value(serde_json::json!({
        "model": std::env::var("ASK_MODEL").unwrap_or_else(|_| "smollm2-135m-instruct".into()),
        "messages": [
            {"role": "system", "content": "Answer in one short sentence."},
            {"role": "user", "content": q.question},
        ],
        "max_tokens": 64,
        // One answer per question: the same question gets the same answer.
        "temperature": 0,
    }))
    .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let answer = client.chat(req).await.map_err(refused)?;
    let tokens = answer.usage.map_or(0, |u| u.completion_tokens);
    let text = answer
        .choices
        .into_iter()
        .next()
        .and_then(|c| c.message.content)
        .unwrap_or_default();
    Ok(Json(Answer {
        answer: text,
        tokens,
    }))
}

/// The tier's refusal, passed on with its status (a 429 stays a 429).
fn refused(e: Error) -> (StatusCode, String) {
    let status = e
        .status()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    (status, e.to_string())
}

/// Serves `app` on `ASK_ADDR` (default 127.0.0.1:3000) until Ctrl-C.
pub async fn serve(app: Router) -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::var("ASK_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".into())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("app listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
