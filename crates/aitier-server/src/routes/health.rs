use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadyStatus {
    Ready,
    Loading,
    Draining,
    Failed,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    status: ReadyStatus,
    /// The models served, when ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    models: Option<Vec<String>>,
    /// The models that failed to load, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    failed: Option<Vec<LoadFailure>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoadFailure {
    model: String,
    error: String,
}

/// The process is up and answering (the liveness probe).
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "health",
    responses((status = 200, description = "Alive", body = Health)),
)]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Every configured model is loaded and can take requests, and the
/// service is not draining (the readiness probe).
#[utoipa::path(
    get,
    path = "/ready",
    operation_id = "ready",
    tag = "health",
    responses(
        (status = 200, description = "Ready for requests", body = Readiness),
        (status = 503, description = "Loading, draining, or a model failed to load", body = Readiness),
    ),
)]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let answer = |status, models, failed| {
        Json(Readiness {
            status,
            models,
            failed,
        })
    };
    if state.drain.draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            answer(ReadyStatus::Draining, None, None),
        );
    }
    let failures = state.registry.failures();
    if !failures.is_empty() {
        let failed = failures
            .into_iter()
            .map(|(model, error)| LoadFailure { model, error })
            .collect();
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            answer(ReadyStatus::Failed, None, Some(failed)),
        );
    }
    if state.registry.all_ready() {
        let models = state.registry.names();
        (
            StatusCode::OK,
            answer(ReadyStatus::Ready, Some(models), None),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            answer(ReadyStatus::Loading, None, None),
        )
    }
}
