//! llama.cpp-style `/tokenize` and `/detokenize`, with the model's own
//! tokenizer (a local model's, or an upstream's through its own routes).
use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};

use aitier_core::{CoreError, Provider};
use aitier_protocol::tokenize::{
    DetokenizeRequest, DetokenizeResponse, TokenOut, TokenizeRequest, TokenizeResponse,
};
use aitier_tenancy::Principal;

use crate::error::ApiError;
use crate::extract::OpenAiJson;
use crate::generation::resolve_for;
use crate::state::AppState;

/// The named model, or the first served one.
fn provider(
    state: &AppState,
    principal: &Principal,
    model: Option<&str>,
) -> Result<Arc<dyn Provider>, ApiError> {
    let name = match model {
        Some(m) => m.to_string(),
        None => state.registry.first().ok_or_else(|| {
            ApiError::from(CoreError::ModelNotFound {
                model: String::new(),
            })
        })?,
    };
    resolve_for(state, principal, &name)
}

/// The prompt's tokens under the model's tokenizer (llama.cpp's route);
/// `with_pieces` adds each token's text.
#[utoipa::path(
    post,
    path = "/tokenize",
    operation_id = "tokenize",
    tag = "tokens",
    request_body(content = TokenizeRequest, example = json!({
        "model": "smollm2-135m-instruct",
        "content": "Hello world"
    })),
    responses((status = 200, description = "The tokens", body = TokenizeResponse)),
)]
pub async fn tokenize(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    OpenAiJson(req): OpenAiJson<TokenizeRequest>,
) -> Result<Json<TokenizeResponse>, ApiError> {
    let p = provider(&state, &principal, req.model.as_deref())?;
    let pieces = p
        .tokenize(req.content, req.add_special, req.parse_special)
        .await?;
    let tokens = pieces
        .into_iter()
        .map(|t| {
            if req.with_pieces {
                TokenOut::WithPiece {
                    id: t.id,
                    piece: t.piece,
                }
            } else {
                TokenOut::Id(t.id)
            }
        })
        .collect();
    Ok(Json(TokenizeResponse { tokens }))
}

/// The text of a list of token ids.
#[utoipa::path(
    post,
    path = "/detokenize",
    operation_id = "detokenize",
    tag = "tokens",
    request_body(content = DetokenizeRequest, example = json!({
        "model": "smollm2-135m-instruct",
        "tokens": [19556, 905]
    })),
    responses((status = 200, description = "The text", body = DetokenizeResponse)),
)]
pub async fn detokenize(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    OpenAiJson(req): OpenAiJson<DetokenizeRequest>,
) -> Result<Json<DetokenizeResponse>, ApiError> {
    let p = provider(&state, &principal, req.model.as_deref())?;
    let content = p.detokenize(req.tokens).await?;
    Ok(Json(DetokenizeResponse { content }))
}
