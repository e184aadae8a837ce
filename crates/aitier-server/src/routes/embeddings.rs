//! `/v1/embeddings`.
use axum::extract::{MatchedPath, State};
use axum::{Extension, Json};

use aitier_protocol::embeddings::{EmbeddingRequest, EmbeddingResponse};
use aitier_tenancy::Principal;

use crate::error::ApiError;
use crate::extract::OpenAiJson;
use crate::generation::{self, Caller};
use crate::request_id::RequestId;
use crate::state::AppState;

/// Embeds one input or a batch (strings or token arrays).
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    operation_id = "createEmbedding",
    tag = "embeddings",
    request_body(content = EmbeddingRequest, example = json!({
        "model": "all-minilm-l6-v2",
        "input": ["The food was delicious.", "The waiter was friendly."]
    })),
    responses((status = 200, description = "One vector per input", body = EmbeddingResponse)),
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Extension(principal): Extension<Principal>,
    path: MatchedPath,
    OpenAiJson(req): OpenAiJson<EmbeddingRequest>,
) -> Result<Json<EmbeddingResponse>, ApiError> {
    let caller = Caller {
        principal: &principal,
        request_id: &rid.id,
        traceparent: rid.traceparent.as_deref(),
        user: None,
        endpoint: path.as_str(),
    };
    Ok(Json(generation::embed_api(&state, caller, req).await?))
}
