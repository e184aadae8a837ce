//! API front-ends: each wire API as a pair of pure functions. `decode`
//! turns its request into the common `GenerateRequest` (rejecting what
//! aitier cannot honour with a 400 that names the parameter); the encoder it
//! returns turns a provider's events into that API's response body or
//! stream chunks. No HTTP here: the server frames what these produce, and an
//! in-process caller can use them as they are.
pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod logprobs;
pub mod messages;
pub mod params;
pub mod responses;
pub mod tools;

use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use aitier_protocol::sse::Payload;
use aitier_protocol::{ErrorBody, Usage};

use crate::error::CoreError;
use crate::event::{EventStream, FinishReason, GenEvent, TokenLogprob};
use crate::request::{GenerateRequest, ToolCall};

pub use params::Delivery;

/// Reported as `system_fingerprint` when no upstream sent its own.
pub const FINGERPRINT: &str = concat!("aitier-", env!("CARGO_PKG_VERSION"));

/// A decoded request and the encoder for its answer.
#[derive(Debug)]
pub struct Decoded<E> {
    pub request: GenerateRequest,
    pub delivery: Delivery,
    pub model: String,
    /// The request's `user` field: the tenant in open mode.
    pub user: Option<String>,
    pub encoder: E,
}

/// One wire API. The implementing type is the encoder: it carries what
/// the encoding needs from the request (ids, whether logprobs were asked).
pub trait Frontend: Sized + Send + 'static {
    type Request: DeserializeOwned + Send + 'static;
    type Response: Serialize + Send;
    type Chunk: Serialize + Send;

    fn decode(req: Self::Request) -> Result<Decoded<Self>, CoreError>;
    /// The whole answer as one body.
    fn respond(self, answer: Answer) -> Self::Response;
    /// What one event becomes in the stream: chunks, then `Done` after the
    /// last. `GenEvent::Error` is for the caller to frame, as an error body
    /// is the same for every API.
    fn encode(&mut self, event: GenEvent) -> Vec<Payload<Self::Chunk>>;
    /// A failure after the stream started, as this API reports it; the
    /// stream ends after it. OpenAI's chat and completions send the error
    /// body as it is.
    fn encode_error(&mut self, error: ErrorBody) -> Vec<Payload<Self::Chunk>> {
        vec![Payload::Error(error)]
    }
    /// The SSE event name of a chunk, for APIs that name their events.
    fn event_name(_chunk: &Self::Chunk) -> Option<&'static str> {
        None
    }
}

/// What every response and chunk of one request shares.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub fingerprint: String,
}

impl ResponseMeta {
    pub fn new(id_prefix: &str, model: &str) -> Self {
        Self {
            id: format!("{id_prefix}-{}", uuid::Uuid::new_v4().simple()),
            created: crate::clock::unix_secs(),
            model: model.to_string(),
            fingerprint: FINGERPRINT.to_string(),
        }
    }

    /// An upstream's fingerprint wins over ours.
    fn started(&mut self, fingerprint: Option<String>) {
        if let Some(f) = fingerprint {
            self.fingerprint = f;
        }
    }
}

/// A stream's end: the usage chunk when the client asked for it, then
/// `[DONE]`.
fn closing<C>(include_usage: bool, usage_chunk: impl FnOnce() -> C) -> Vec<Payload<C>> {
    let usage = include_usage.then(|| Payload::Chunk(usage_chunk()));
    usage.into_iter().chain([Payload::Done]).collect()
}

/// One choice gathered from the stream.
#[derive(Debug, Default)]
pub struct Collected {
    pub text: String,
    pub logprobs: Vec<TokenLogprob>,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: Option<FinishReason>,
}

/// A whole answer, gathered from its events.
#[derive(Debug, Default)]
pub struct Answer {
    pub choices: Vec<Collected>,
    pub usage: Usage,
    pub fingerprint: Option<String>,
}

/// Gathers an answer from events as they pass.
#[derive(Debug)]
pub struct Collector {
    answer: Answer,
}

impl Collector {
    pub fn new(choices: usize) -> Self {
        Self {
            answer: Answer {
                choices: (0..choices).map(|_| Collected::default()).collect(),
                ..Answer::default()
            },
        }
    }

    /// Takes one event; the whole answer (or the error) once the stream
    /// has ended with it.
    pub fn observe(&mut self, ev: &GenEvent) -> Option<Result<Answer, CoreError>> {
        let out = &mut self.answer;
        match ev {
            GenEvent::Started { fingerprint, .. } => out.fingerprint = fingerprint.clone(),
            GenEvent::Delta {
                index,
                text,
                logprobs,
                ..
            } => {
                if let Some(c) = out.choices.get_mut(*index as usize) {
                    c.text.push_str(text);
                    c.logprobs.extend(logprobs.iter().cloned());
                }
            }
            GenEvent::ToolCall { index, delta, .. } => {
                if let Some(c) = out.choices.get_mut(*index as usize) {
                    tools::assemble(&mut c.tool_calls, delta.clone());
                }
            }
            GenEvent::Finished { index, reason } => {
                if let Some(c) = out.choices.get_mut(*index as usize) {
                    c.finish_reason = Some(*reason);
                }
            }
            GenEvent::Done { usage, .. } => {
                out.usage = *usage;
                return Some(Ok(std::mem::take(out)));
            }
            GenEvent::Error(e) => return Some(Err(e.clone())),
        }
        None
    }
}

/// Drains the stream into per-choice results and the usage.
pub async fn collect(mut events: EventStream, choices: usize) -> Result<Answer, CoreError> {
    let mut collector = Collector::new(choices);
    while let Some(ev) = events.next().await {
        if let Some(done) = collector.observe(&ev) {
            return done;
        }
    }
    Err(CoreError::Internal(
        "the provider ended the stream without finishing".into(),
    ))
}
