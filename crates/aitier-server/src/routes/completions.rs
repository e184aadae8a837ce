use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use aitier_core::validate;
use aitier_protocol::completions::{
    Completion, CompletionChoice, CompletionRequest, TEXT_COMPLETION,
};
use aitier_tenancy::Principal;

use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::OpenAiJson;
use crate::request_id::RequestId;
use crate::respond::{
    collect, completion_logprobs, new_id, sse_data, sse_response, sse_stream, unix_now, StreamItem,
};
use crate::start::{self, Caller};

pub async fn create(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Extension(principal): Extension<Principal>,
    OpenAiJson(req): OpenAiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    let (gen, delivery) = validate::completion(&req)?;
    let choices = gen.choices();
    let want_logprobs = gen.logprobs.is_some();
    tracing::Span::current().record("model", req.model.as_str());
    let caller = Caller {
        principal: &principal,
        request_id: &rid.0,
        user: req.user.as_deref(),
    };
    let events = start::generate(&state, caller, &req.model, gen).await?;
    let id = new_id("cmpl");
    let created = unix_now();
    let model = req.model;
    let fingerprint = Some(crate::FINGERPRINT.to_string());
    if !delivery.stream {
        let (collected, usage) = collect(events, choices).await?;
        let body = Completion {
            id,
            object: TEXT_COMPLETION,
            created,
            model,
            system_fingerprint: fingerprint,
            choices: collected
                .into_iter()
                .enumerate()
                .map(|(i, c)| CompletionChoice {
                    index: i as u32,
                    logprobs: want_logprobs.then(|| completion_logprobs(c.logprobs, &mut 0)),
                    text: c.text,
                    finish_reason: c.finish_reason.map(Into::into),
                })
                .collect(),
            usage: Some(usage),
        };
        return Ok(Json(body).into_response());
    }
    let chunk = move |choices: Vec<CompletionChoice>| Completion {
        id: id.clone(),
        object: TEXT_COMPLETION,
        created,
        model: model.clone(),
        system_fingerprint: fingerprint.clone(),
        choices,
        usage: None,
    };
    // Character offset reached by each choice, for `text_offset`.
    let mut offsets = vec![0u32; choices];
    let body = sse_stream(events, delivery.include_usage, move |item| {
        sse_data(&match item {
            StreamItem::Delta {
                index,
                text,
                logprobs,
            } => {
                let logprobs = match offsets.get_mut(index as usize) {
                    Some(off) if want_logprobs => Some(completion_logprobs(logprobs, off)),
                    _ => None,
                };
                chunk(vec![CompletionChoice {
                    index,
                    text,
                    logprobs,
                    finish_reason: None,
                }])
            }
            StreamItem::Finished { index, reason } => chunk(vec![CompletionChoice {
                index,
                text: String::new(),
                logprobs: None,
                finish_reason: Some(reason.as_str().into()),
            }]),
            StreamItem::Usage(usage) => Completion {
                usage: Some(usage),
                ..chunk(vec![])
            },
        })
    });
    Ok(sse_response(body))
}
