use axum::extract::{Path, State};
use axum::Json;

use aitier_core::CoreError;
use aitier_protocol::models::{Model, ModelList};

use crate::app::AppState;
use crate::error::ApiError;

pub async fn list(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList::new(
        state
            .registry
            .names()
            .into_iter()
            .map(|n| Model::new(n, state.started_at))
            .collect(),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Model>, ApiError> {
    if state.registry.names().contains(&id) {
        Ok(Json(Model::new(id, state.started_at)))
    } else {
        Err(CoreError::ModelNotFound { model: id }.into())
    }
}
