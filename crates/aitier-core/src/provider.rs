use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;

use crate::error::CoreError;
use crate::event::EventStream;
use crate::request::GenerateRequest;

/// Who is asking and under what terms; carried from the HTTP edge to the
/// provider.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub request_id: String,
    /// The tenant the scheduler shares capacity by.
    pub tenant: String,
    pub weight: u32,
    /// A request still queued at this instant fails with `Timeout`.
    pub deadline: Option<Instant>,
    /// The tier's say in the request (limits, budgets, metering); `None`
    /// when nothing is metered.
    pub hooks: Option<Arc<dyn RequestHooks>>,
}

impl std::fmt::Debug for dyn RequestHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestHooks")
    }
}

/// The size of a request, known once the provider has tokenized it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestSize {
    pub prompt_tokens: u32,
    pub choices: u32,
    /// `max_tokens` as the client sent it.
    pub max_tokens: Option<u32>,
    /// The most completion tokens all choices together can produce here.
    pub completion_cap: u32,
}

/// What a provider reports to the tier about a request it runs. `admit` is
/// called once, after tokenizing and before any work; a refusal ends the
/// request with that error. `generated` is called as tokens are produced,
/// so that a request whose client went away is billed for what it used.
pub trait RequestHooks: Send + Sync {
    /// Only the first call counts: a router may try several deployments.
    fn admit(&self, size: RequestSize) -> BoxFuture<'_, Result<(), CoreError>>;
    fn generated(&self, tokens: u32);
    /// The deployment that took the request, when a router chose one.
    fn served_by(&self, _deployment: &str) {}
    /// The usage is an estimate (an upstream that reported none).
    fn usage_estimated(&self) {}
}

impl RequestCtx {
    pub fn anonymous(request_id: impl Into<String>) -> Self {
        Self {
            request_id: request_id.into(),
            tenant: "anonymous".into(),
            weight: 1,
            deadline: None,
            hooks: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Tokens one sequence may hold: prompt plus completion.
    pub context_length: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPiece {
    pub id: u32,
    pub piece: String,
}

/// Counters a provider keeps about its own work, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderStats {
    pub prompt_tokens: u64,
    /// Prompt tokens evaluated rather than served from a prefix cache.
    pub prompt_computed: u64,
    pub generated_tokens: u64,
    pub requests_finished: u64,
    /// Requests dropped because their client went away.
    pub requests_cancelled: u64,
    /// Sequences decoding now.
    pub running: u64,
    /// Sequences waiting for a slot.
    pub waiting: u64,
}

/// A model backend. `generate` validates what only the backend can (prompt
/// length against its context) and returns the event stream; errors after the
/// stream started arrive as `GenEvent::Error`.
pub trait Provider: Send + Sync {
    fn info(&self) -> ModelInfo;
    fn generate(
        &self,
        req: GenerateRequest,
        ctx: RequestCtx,
    ) -> BoxFuture<'_, Result<EventStream, CoreError>>;
    fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<TokenPiece>, CoreError>;
    fn detokenize(&self, tokens: &[u32]) -> Result<String, CoreError>;
    fn stats(&self) -> ProviderStats {
        ProviderStats::default()
    }
}
