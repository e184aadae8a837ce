//! Anthropic's Messages API beside the generation handler it shares with
//! chat: `count_tokens`, and the layer that gives every error under
//! `/v1/messages` (authentication, body limits and validation included)
//! Anthropic's error shape.
use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use aitier_core::frontend::messages;
use aitier_protocol::messages::{ErrorBody, ErrorDetail, MessagesRequest, TokenCount};
use aitier_tenancy::Principal;

use crate::error::ApiError;
use crate::extract::OpenAiJson;
use crate::generation::resolve_for;
use crate::state::AppState;

pub const PATH: &str = "/v1/messages";

/// The prompt's size as the model counts it (rendered with its chat
/// template and tools); an upstream's is an estimate. Nothing is billed.
#[utoipa::path(
    post,
    path = "/v1/messages/count_tokens",
    operation_id = "countMessageTokens",
    tag = "messages",
    request_body(content = MessagesRequest, example = json!({
        "model": "smollm2-135m-instruct",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "Say hello."}]
    })),
    responses((status = 200, description = "The prompt's size in tokens", body = TokenCount)),
)]
pub async fn count_tokens(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    OpenAiJson(req): OpenAiJson<MessagesRequest>,
) -> Result<Json<TokenCount>, ApiError> {
    let (request, _) = messages::request(&req, false)?;
    let provider = resolve_for(&state, &principal, &req.model)?;
    let prepared = provider.prepare(request).await?;
    Ok(Json(TokenCount {
        input_tokens: prepared.size.prompt_tokens,
    }))
}

/// Error bodies are small; anything bigger is not one of ours.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub async fn errors_layer(req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with(PATH) {
        return next.run(req).await;
    }
    let resp = next.run(req).await;
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if resp.status().is_success() || !json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_ERROR_BODY).await else {
        return ApiError::internal().into_response();
    };
    let converted = serde_json::from_slice::<aitier_protocol::ErrorBody>(&bytes)
        .ok()
        .and_then(|e| {
            serde_json::to_vec(&ErrorBody {
                kind: "error".into(),
                error: ErrorDetail::from_openai(Some(parts.status.as_u16()), &e.error),
            })
            .ok()
        });
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(converted.unwrap_or(bytes.to_vec())))
}
