use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;

use aitier_core::validate;
use aitier_protocol::chat::{
    AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest,
    ChunkChoice, Delta, CHAT_COMPLETION, CHAT_COMPLETION_CHUNK,
};
use aitier_tenancy::Principal;

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::OpenAiJson;
use crate::request_id::RequestId;
use crate::respond::{
    chat_logprobs, collect, new_id, sse_data, sse_response, sse_stream, unix_now, StreamItem,
};
use crate::start::{self, Caller};

pub async fn create(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Extension(principal): Extension<Principal>,
    OpenAiJson(req): OpenAiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let (gen, delivery) = validate::chat(&req)?;
    let choices = gen.choices();
    let want_logprobs = gen.logprobs.is_some();
    tracing::Span::current().record("model", req.model.as_str());
    let caller = Caller {
        principal: &principal,
        request_id: &rid.0,
        user: req.user.as_deref(),
    };
    let events = start::generate(&state, caller, &req.model, gen).await?;
    let id = new_id("chatcmpl");
    let created = unix_now();
    let model = req.model;
    let fingerprint = Some(crate::FINGERPRINT.to_string());
    if !delivery.stream {
        let (collected, usage) = collect(events, choices).await?;
        let body = ChatCompletion {
            id,
            object: CHAT_COMPLETION,
            created,
            model,
            system_fingerprint: fingerprint,
            choices: collected
                .into_iter()
                .enumerate()
                .map(|(i, c)| ChatChoice {
                    index: i as u32,
                    message: AssistantMessage {
                        role: "assistant",
                        content: c.text,
                        refusal: None,
                    },
                    logprobs: want_logprobs.then(|| chat_logprobs(c.logprobs)),
                    finish_reason: c.finish_reason.map(Into::into),
                })
                .collect(),
            usage,
        };
        return Ok(Json(body).into_response());
    }
    let chunk = move |choices: Vec<ChunkChoice>| ChatCompletionChunk {
        id: id.clone(),
        object: CHAT_COMPLETION_CHUNK,
        created,
        model: model.clone(),
        system_fingerprint: fingerprint.clone(),
        choices,
        usage: None,
    };
    let opening: Vec<_> = (0..choices as u32)
        .map(|index| {
            sse_data(&chunk(vec![ChunkChoice {
                index,
                delta: Delta {
                    role: Some("assistant"),
                    content: Some(String::new()),
                },
                logprobs: None,
                finish_reason: None,
            }]))
        })
        .collect();
    let rest = sse_stream(events, delivery.include_usage, move |item| {
        sse_data(&match item {
            StreamItem::Delta {
                index,
                text,
                logprobs,
            } => chunk(vec![ChunkChoice {
                index,
                delta: Delta {
                    role: None,
                    content: Some(text),
                },
                logprobs: want_logprobs.then(|| chat_logprobs(logprobs)),
                finish_reason: None,
            }]),
            StreamItem::Finished { index, reason } => chunk(vec![ChunkChoice {
                index,
                delta: Delta::default(),
                logprobs: None,
                finish_reason: Some(reason.as_str().into()),
            }]),
            StreamItem::Usage(usage) => ChatCompletionChunk {
                usage: Some(usage),
                ..chunk(vec![])
            },
        })
    });
    let body = futures::stream::iter(opening).chain(rest);
    Ok(sse_response(body))
}
