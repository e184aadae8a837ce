use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::state::AppState;

/// The process is up and answering.
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Every configured model is loaded and can take requests, and the
/// service is not draining.
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.drain.draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining"})),
        );
    }
    let failures = state.registry.failures();
    if !failures.is_empty() {
        let failed: Vec<Value> = failures
            .into_iter()
            .map(|(m, why)| json!({"model": m, "error": why}))
            .collect();
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "failed", "failed": failed})),
        );
    }
    if state.registry.all_ready() {
        (
            StatusCode::OK,
            Json(json!({"status": "ready", "models": state.registry.names()})),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "loading"})),
        )
    }
}
