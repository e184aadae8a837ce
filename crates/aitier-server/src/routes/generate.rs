//! The generation endpoints (`/v1/chat/completions`, `/v1/completions`,
//! `/v1/messages`): one handler, generic over the API front-end, and one
//! documented route per front-end.
use axum::extract::{MatchedPath, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use aitier_core::frontend::chat::Chat;
use aitier_core::frontend::completions::Completions;
use aitier_core::frontend::messages::Messages;
use aitier_core::frontend::{collect, Frontend};
use aitier_protocol::chat::{ChatCompletion, ChatCompletionChunk, ChatCompletionRequest};
use aitier_protocol::completions::{Completion, CompletionRequest};
use aitier_protocol::messages::{Message, MessagesRequest, StreamEvent};
use aitier_tenancy::Principal;

use crate::affinity::{self, AffinityHeader};
use crate::error::ApiError;
use crate::extract::OpenAiJson;
use crate::generation::{self, Caller};
use crate::request_id::RequestId;
use crate::state::AppState;

async fn create<F: Frontend>(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Extension(principal): Extension<Principal>,
    path: MatchedPath,
    key: AffinityHeader,
    OpenAiJson(req): OpenAiJson<F::Request>,
) -> Result<Response, ApiError> {
    let caller = Caller {
        principal: &principal,
        request_id: &rid.id,
        traceparent: rid.traceparent.as_deref(),
        user: None,
        endpoint: path.as_str(),
    };
    let begun = generation::begin_api::<F>(&state, caller, key.into_inner(), req).await?;
    if !begun.stream {
        let answer = collect(begun.events, begun.choices).await?;
        return Ok(affinity::mark(
            Json(begun.encoder.respond(answer)).into_response(),
            &begun.affinity,
        ));
    }
    let resp = crate::sse::respond(begun.events, begun.encoder, state.keep_alive, &state.drain);
    Ok(affinity::mark(resp, &begun.affinity))
}

/// Creates a chat completion; with `stream: true`, server-sent
/// `chat.completion.chunk` events ending in `data: [DONE]`.
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    operation_id = "createChatCompletion",
    tag = "chat",
    request_body(content = ChatCompletionRequest, example = json!({
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 8
    })),
    responses((status = 200, description = "The completion, or its stream of chunks", content(
        (ChatCompletion = "application/json"),
        (ChatCompletionChunk = "text/event-stream"),
    ))),
)]
pub async fn chat(
    state: State<AppState>,
    rid: Extension<RequestId>,
    principal: Extension<Principal>,
    path: MatchedPath,
    key: AffinityHeader,
    body: OpenAiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    create::<Chat>(state, rid, principal, path, key, body).await
}

/// Creates a legacy text completion; streams `text_completion` chunks with
/// `stream: true`.
#[utoipa::path(
    post,
    path = "/v1/completions",
    operation_id = "createCompletion",
    tag = "completions",
    request_body(content = CompletionRequest, example = json!({
        "model": "smollm2-135m-instruct",
        "prompt": "Once upon a time",
        "max_tokens": 8
    })),
    responses((status = 200, description = "The completion, or its stream of chunks", content(
        (Completion = "application/json"),
        (Completion = "text/event-stream"),
    ))),
)]
pub async fn completions(
    state: State<AppState>,
    rid: Extension<RequestId>,
    principal: Extension<Principal>,
    path: MatchedPath,
    key: AffinityHeader,
    body: OpenAiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    create::<Completions>(state, rid, principal, path, key, body).await
}

/// Anthropic's Messages API; with `stream: true`, Anthropic's named events.
/// Errors on this route have Anthropic's error shape.
#[utoipa::path(
    post,
    path = "/v1/messages",
    operation_id = "createMessage",
    tag = "messages",
    request_body(content = MessagesRequest, example = json!({
        "model": "smollm2-135m-instruct",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "Say hello."}]
    })),
    responses((status = 200, description = "The message, or its stream of events", content(
        (Message = "application/json"),
        (StreamEvent = "text/event-stream"),
    ))),
)]
pub async fn messages(
    state: State<AppState>,
    rid: Extension<RequestId>,
    principal: Extension<Principal>,
    path: MatchedPath,
    key: AffinityHeader,
    body: OpenAiJson<MessagesRequest>,
) -> Result<Response, ApiError> {
    create::<Messages>(state, rid, principal, path, key, body).await
}
