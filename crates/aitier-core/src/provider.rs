use std::any::Any;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::embed::{EmbedRequest, Embeddings};
use crate::error::CoreError;
use crate::event::EventStream;
use crate::request::GenerateRequest;

/// Who is asking and under what terms; carried from the HTTP edge to the
/// provider. Nothing here lets a provider reach back into the tier: limits
/// and metering happen around it, from its answers.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub request_id: String,
    /// The tenant the scheduler shares capacity by.
    pub tenant: String,
    pub weight: u32,
    /// A request still queued at this instant fails with `Timeout`.
    pub deadline: Option<Instant>,
    /// The W3C `traceparent` an upstream call carries, so that its spans
    /// join the request's trace.
    pub traceparent: Option<String>,
}

impl RequestCtx {
    pub fn anonymous(request_id: impl Into<String>) -> Self {
        Self {
            request_id: request_id.into(),
            tenant: "anonymous".into(),
            weight: 1,
            deadline: None,
            traceparent: None,
        }
    }
}

/// The size of a request, known once the provider has prepared it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestSize {
    pub prompt_tokens: u32,
    pub choices: u32,
    /// `max_tokens` as the client sent it.
    pub max_tokens: Option<u32>,
    /// The most completion tokens all choices together can produce here.
    pub completion_cap: u32,
}

/// A request a provider has rendered, tokenized and checked, ready to run.
/// `size` is what the tier admits it by; the provider keeps whatever it
/// computed on the way (token ids) in `state`, so `run` need not repeat it.
#[derive(Clone)]
pub struct Prepared<R = GenerateRequest> {
    pub request: R,
    pub size: RequestSize,
    state: Option<Arc<dyn Any + Send + Sync>>,
}

impl<R: std::fmt::Debug> std::fmt::Debug for Prepared<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("request", &self.request)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl<R> Prepared<R> {
    pub fn new(request: R, size: RequestSize) -> Self {
        Self {
            request,
            size,
            state: None,
        }
    }

    pub fn with_state<T: Any + Send + Sync>(mut self, state: T) -> Self {
        self.state = Some(Arc::new(state));
        self
    }

    /// The state a provider of this type left, if this one prepared it.
    pub fn state<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.state.as_deref().and_then(|s| s.downcast_ref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Tokens one sequence may hold: prompt plus completion.
    pub context_length: u32,
    /// Answers chat and completions.
    pub generates: bool,
    /// Answers embeddings.
    pub embeds: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPiece {
    pub id: u32,
    pub piece: String,
}

/// Counters a provider keeps about its own work, for the metrics.
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
    /// Token masks computed for constrained sequences, and the time spent
    /// on them (beside the decode they overlap).
    pub grammar_masks: u64,
    pub grammar_mask_micros: u64,
    /// KV cache cells holding tokens (of running sequences, and prefixes
    /// idle slots keep), and all there are.
    pub kv_cells_used: u64,
    pub kv_cells_total: u64,
    /// Sequences paused to hand their slot to another tenant.
    pub preempted: u64,
}

/// Several providers' counters as one (a router's deployments, the tier's models).
impl std::iter::Sum for ProviderStats {
    fn sum<I: Iterator<Item = Self>>(all: I) -> Self {
        all.fold(Self::default(), |s, p| Self {
            prompt_tokens: s.prompt_tokens + p.prompt_tokens,
            prompt_computed: s.prompt_computed + p.prompt_computed,
            generated_tokens: s.generated_tokens + p.generated_tokens,
            requests_finished: s.requests_finished + p.requests_finished,
            requests_cancelled: s.requests_cancelled + p.requests_cancelled,
            running: s.running + p.running,
            waiting: s.waiting + p.waiting,
            grammar_masks: s.grammar_masks + p.grammar_masks,
            grammar_mask_micros: s.grammar_mask_micros + p.grammar_mask_micros,
            kv_cells_used: s.kv_cells_used + p.kv_cells_used,
            kv_cells_total: s.kv_cells_total + p.kv_cells_total,
            preempted: s.preempted + p.preempted,
        })
    }
}

/// A model backend, in two steps so that the tier can admit a request
/// between them: `prepare` renders and tokenizes (validating what only the
/// backend can, such as the prompt against its context) and says how big
/// the request is; `run` starts it and returns the event stream. Errors
/// after the stream started arrive as `GenEvent::Error`. Embedding models
/// take the same two steps as `prepare_embed` and `embed`.
pub trait Provider: Send + Sync {
    fn info(&self) -> ModelInfo;
    fn prepare(&self, req: GenerateRequest) -> BoxFuture<'_, Result<Prepared, CoreError>>;
    fn run(
        &self,
        prepared: Prepared,
        ctx: RequestCtx,
    ) -> BoxFuture<'_, Result<EventStream, CoreError>>;
    /// `parse_special`: control-token spellings in `text` become those
    /// tokens (as llama.cpp's `/tokenize` does by default).
    fn tokenize(
        &self,
        text: String,
        add_special: bool,
        parse_special: bool,
    ) -> BoxFuture<'_, Result<Vec<TokenPiece>, CoreError>>;
    fn detokenize(&self, tokens: Vec<u32>) -> BoxFuture<'_, Result<String, CoreError>>;
    /// Tokenizes an embedding request and checks each input against the
    /// model, as `prepare` does for generation. Only for providers whose
    /// `info().embeds` is true.
    fn prepare_embed(
        &self,
        _req: EmbedRequest,
    ) -> BoxFuture<'_, Result<Prepared<EmbedRequest>, CoreError>> {
        Box::pin(async { Err(CoreError::invalid("model", "this model does not embed")) })
    }
    fn embed(
        &self,
        _prepared: Prepared<EmbedRequest>,
        _ctx: RequestCtx,
    ) -> BoxFuture<'_, Result<Embeddings, CoreError>> {
        Box::pin(async { Err(CoreError::invalid("model", "this model does not embed")) })
    }
    fn stats(&self) -> ProviderStats {
        ProviderStats::default()
    }
    /// Distributions a local engine measures itself; none for an upstream.
    fn histograms(&self) -> Option<EngineHistograms> {
        None
    }
}

/// What an engine measures per step and per queued sequence, kept as
/// Prometheus histograms (shared handles: the engine observes, a scrape
/// reads).
#[derive(Debug, Clone)]
pub struct EngineHistograms {
    /// From a sequence's arrival at the engine until it has a slot.
    pub queue_wait_seconds: Histogram,
    /// Tokens in each decode call (decoding sequences plus prefill chunks).
    pub step_tokens: Histogram,
    /// Wall time of each decode call.
    pub step_seconds: Histogram,
}

impl Default for EngineHistograms {
    fn default() -> Self {
        Self {
            queue_wait_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 18)),
            step_tokens: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            step_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
        }
    }
}
