use axum::extract::{Path, State};
use axum::{Extension, Json};

use aitier_core::CoreError;
use aitier_protocol::models::{Model, ModelList};
use aitier_tenancy::Principal;

use crate::error::ApiError;
use crate::generation::check_allowed;
use crate::state::AppState;

/// Only the models the caller's key may use.
#[utoipa::path(
    get,
    path = "/v1/models",
    operation_id = "listModels",
    tag = "models",
    responses((status = 200, description = "The models this key may use", body = ModelList)),
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Json<ModelList> {
    Json(visible(&state, &principal))
}

/// The served models `principal` may use.
pub fn visible(state: &AppState, principal: &Principal) -> ModelList {
    ModelList::new(
        state
            .registry
            .names()
            .into_iter()
            .filter(|n| principal.allows_model(n))
            .map(|n| Model::new(n, state.started_at))
            .collect(),
    )
}

/// One model, if it is served and this key may use it.
#[utoipa::path(
    get,
    path = "/v1/models/{id}",
    operation_id = "retrieveModel",
    tag = "models",
    params(("id" = String, Path, description = "The model's name (it may hold slashes)")),
    responses((status = 200, description = "The model", body = Model)),
)]
pub async fn get(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Model>, ApiError> {
    if !state.registry.names().contains(&id) {
        return Err(CoreError::ModelNotFound { model: id }.into());
    }
    check_allowed(&principal, &id)?;
    Ok(Json(Model::new(id, state.started_at)))
}
