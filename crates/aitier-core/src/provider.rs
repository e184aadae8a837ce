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
}

impl RequestCtx {
    pub fn anonymous(request_id: impl Into<String>) -> Self {
        Self {
            request_id: request_id.into(),
            tenant: "anonymous".into(),
            weight: 1,
            deadline: None,
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
