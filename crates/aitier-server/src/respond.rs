//! Turning a provider's event stream into the OpenAI response: one JSON body
//! (collect) or SSE chunks ending in `[DONE]` (stream).
use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde::Serialize;

use aitier_core::{EventStream, FinishReason, GenEvent, TokenLogprob};
use aitier_protocol::chat::{ChatLogprobs, TopLogprob};
use aitier_protocol::completions::CompletionLogprobs;
use aitier_protocol::{Usage, SSE_DONE};

use crate::error::ApiError;

/// One choice gathered from the stream.
#[derive(Debug, Default)]
pub struct Collected {
    pub text: String,
    pub logprobs: Vec<TokenLogprob>,
    pub finish_reason: Option<&'static str>,
}

/// Drains the stream into per-choice results and the usage.
pub async fn collect(
    mut events: EventStream,
    choices: usize,
) -> Result<(Vec<Collected>, Usage), ApiError> {
    let mut out: Vec<Collected> = (0..choices).map(|_| Collected::default()).collect();
    while let Some(ev) = events.next().await {
        match ev {
            GenEvent::Started { .. } => {}
            GenEvent::Delta {
                index,
                text,
                logprobs,
            } => {
                if let Some(c) = out.get_mut(index as usize) {
                    c.text.push_str(&text);
                    c.logprobs.extend(logprobs);
                }
            }
            GenEvent::Finished { index, reason } => {
                if let Some(c) = out.get_mut(index as usize) {
                    c.finish_reason = Some(reason.as_str());
                }
            }
            GenEvent::Done { usage } => return Ok((out, usage)),
            GenEvent::Error(e) => return Err(e.into()),
        }
    }
    Err(ApiError::from(aitier_core::CoreError::Internal(
        "the provider ended the stream without finishing".into(),
    )))
}

pub fn chat_logprobs(items: Vec<TokenLogprob>) -> ChatLogprobs {
    ChatLogprobs {
        content: items
            .into_iter()
            .map(|t| aitier_protocol::chat::TokenLogprob {
                token: t.token,
                logprob: t.logprob,
                bytes: t.bytes,
                top_logprobs: t
                    .top
                    .into_iter()
                    .map(|(token, bytes, logprob)| TopLogprob {
                        token,
                        logprob,
                        bytes,
                    })
                    .collect(),
            })
            .collect(),
        refusal: None,
    }
}

/// Legacy completions logprobs; `offset` is the character offset the first
/// token starts at within the choice's text.
pub fn completion_logprobs(items: Vec<TokenLogprob>, offset: &mut u32) -> CompletionLogprobs {
    let mut lp = CompletionLogprobs::default();
    for t in items {
        lp.text_offset.push(*offset);
        *offset += t.token.chars().count() as u32;
        lp.top_logprobs.push(
            t.top
                .into_iter()
                .map(|(tok, _, l)| (tok, l))
                .collect::<BTreeMap<_, _>>(),
        );
        lp.tokens.push(t.token);
        lp.token_logprobs.push(t.logprob);
    }
    lp
}

pub fn sse_data<T: Serialize>(value: &T) -> Bytes {
    match serde_json::to_string(value) {
        Ok(json) => Bytes::from(format!("data: {json}\n\n")),
        Err(e) => {
            tracing::error!(error = %e, "failed to encode an SSE chunk");
            Bytes::from_static(b"")
        }
    }
}

pub fn sse_done() -> Bytes {
    Bytes::from(format!("data: {SSE_DONE}\n\n"))
}

/// What a route encodes as one SSE chunk of its own object type.
pub enum StreamItem {
    Delta {
        index: u32,
        text: String,
        logprobs: Vec<TokenLogprob>,
    },
    Finished {
        index: u32,
        reason: FinishReason,
    },
    /// The final chunk with `choices: []`, sent only when asked for.
    Usage(Usage),
}

/// A provider's events as SSE: a chunk per delta and per finished choice,
/// the usage chunk if `include_usage`, then `[DONE]`. An error ends the
/// stream as an error event.
pub fn sse_stream<F>(
    events: EventStream,
    include_usage: bool,
    mut encode: F,
) -> impl Stream<Item = Bytes> + Send + 'static
where
    F: FnMut(StreamItem) -> Bytes + Send + 'static,
{
    events
        .scan(false, move |ended, ev| {
            if *ended {
                return futures::future::ready(None);
            }
            let out = match ev {
                GenEvent::Started { .. } => vec![],
                GenEvent::Delta {
                    index,
                    text,
                    logprobs,
                } => vec![encode(StreamItem::Delta {
                    index,
                    text,
                    logprobs,
                })],
                GenEvent::Finished { index, reason } => {
                    vec![encode(StreamItem::Finished { index, reason })]
                }
                GenEvent::Done { usage } => {
                    *ended = true;
                    let mut out = Vec::new();
                    if include_usage {
                        out.push(encode(StreamItem::Usage(usage)));
                    }
                    out.push(sse_done());
                    out
                }
                GenEvent::Error(e) => {
                    *ended = true;
                    vec![sse_data(&ApiError::from(e).to_body())]
                }
            };
            futures::future::ready(Some(futures::stream::iter(out)))
        })
        .flatten()
}

pub fn sse_response<S>(stream: S) -> Response
where
    S: Stream<Item = Bytes> + Send + 'static,
{
    let body = Body::from_stream(stream.map(Ok::<_, Infallible>));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response()
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}
