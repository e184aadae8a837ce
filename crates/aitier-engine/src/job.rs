//! What the async side hands the engine thread, and what the two share.
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use llguidance::Matcher;
use tokio::sync::mpsc;

use aitier_core::{EngineHistograms, GenEvent, SamplingParams};

/// One request as the engine thread sees it: prompts already tokenised and
/// checked against the context.
pub(crate) struct Job {
    pub prompts: Vec<Vec<u32>>,
    pub n: u32,
    /// Per-choice completion limit, already clamped to the context.
    pub max_new: Vec<u32>,
    pub stop: Vec<String>,
    pub logprobs: Option<u32>,
    pub sampling: SamplingParams,
    pub deadline: Option<Instant>,
    /// When the request was handed to the engine, for its queue wait.
    pub submitted: Instant,
    /// The request's span, and its `queue_wait` child, open until every
    /// choice has a slot.
    pub span: tracing::Span,
    pub queue_span: tracing::Span,
    pub tenant: String,
    pub weight: u32,
    pub events: mpsc::UnboundedSender<GenEvent>,
    /// The request's constraint, fresh; each choice runs its own copy.
    pub matcher: Option<Matcher>,
}

/// Shared with the async side for `ProviderStats`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub finished: AtomicU64,
    pub cancelled: AtomicU64,
    pub running: AtomicU64,
    pub waiting: AtomicU64,
    /// Prompt tokens actually evaluated (not served from the prefix cache).
    pub prompt_computed: AtomicU64,
    /// Requests accepted and not yet ended; bounds the queue.
    pub in_flight: AtomicU64,
    pub grammar_masks: AtomicU64,
    pub grammar_mask_micros: AtomicU64,
    pub kv_cells_used: AtomicU64,
    /// Sequences paused to hand their slot to another tenant.
    pub preempted: AtomicU64,
    pub histograms: EngineHistograms,
}

pub(crate) struct WorkerConfig {
    pub slots: u32,
    pub ctx_per_slot: u32,
    pub batch_size: u32,
    /// Most prompt tokens one sequence may prefill per step, so a long
    /// prompt shares the batch instead of filling it.
    pub prefill_chunk: u32,
    /// Most tokens a shared step takes (0: no bound but `prefill_chunk`).
    pub step_tokens: u32,
    /// Cells idle slots may keep as prefix cache before the least recently
    /// used are cleared.
    pub cache_cells: u64,
    /// Cells paused sequences may keep aside in host memory.
    pub swap_cells: u64,
}
