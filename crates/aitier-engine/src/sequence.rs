//! What the engine thread keeps per request, per choice waiting for a
//! slot, per running sequence, and per slot of the KV cache.
use std::time::Instant;

use llguidance::toktrie::SimpleVob;
use llguidance::Matcher;
use tokio::sync::mpsc;

use aitier_core::{GenEvent, SamplingParams, TokenLogprob};

use crate::sampler::Sampler;
use crate::textout::{StopMatcher, Utf8Buffer};

pub(crate) struct Request {
    pub(crate) events: mpsc::UnboundedSender<GenEvent>,
    pub(crate) unfinished: u32,
    pub(crate) prompt_tokens: u32,
    pub(crate) completion_tokens: u32,
    pub(crate) cached_tokens: u32,
    pub(crate) logprobs: Option<u32>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) n: u32,
    /// Per prompt: whether its first choice has prefilled it, so the other
    /// choices can share its cells instead of prefilling again.
    pub(crate) prefilled: Vec<bool>,
}

/// A choice waiting for a slot.
pub(crate) struct Pending {
    pub(crate) req: u64,
    pub(crate) tenant: String,
    pub(crate) index: u32,
    /// Which prompt of the request; choices of one prompt share its cells.
    pub(crate) prompt_idx: usize,
    pub(crate) prompt: Vec<u32>,
    pub(crate) max_new: u32,
    pub(crate) stop: Vec<String>,
    pub(crate) sampling: SamplingParams,
    pub(crate) matcher: Option<Matcher>,
    pub(crate) submitted: Instant,
    pub(crate) span: tracing::Span,
    /// Held, never read: the span closes when the last choice holding it
    /// has a slot (or is dropped).
    #[allow(dead_code)]
    pub(crate) queue_span: tracing::Span,
}

pub(crate) struct Seq {
    pub(crate) req: u64,
    pub(crate) tenant: String,
    pub(crate) index: u32,
    pub(crate) prompt_idx: usize,
    pub(crate) prompt_len: usize,
    pub(crate) slot: i32,
    /// Prompt then completion.
    pub(crate) tokens: Vec<u32>,
    /// How many of `tokens` are in the KV cache.
    pub(crate) n_past: usize,
    pub(crate) generated: u32,
    pub(crate) max_new: u32,
    pub(crate) sampler: Sampler,
    pub(crate) utf8: Utf8Buffer,
    pub(crate) stop: StopMatcher,
    pub(crate) logprobs: Vec<TokenLogprob>,
    /// Tokens generated since the last delta sent.
    pub(crate) unsent: u32,
    /// Where this sequence's logits sit in the batch just decoded.
    pub(crate) logits_at: Option<i32>,
    /// No step has evaluated any of its tokens yet.
    pub(crate) fresh: bool,
    /// The grammar this sequence's output follows, and its mask for the
    /// token the current step samples.
    pub(crate) matcher: Option<Matcher>,
    pub(crate) mask: Option<SimpleVob>,
    /// The request's span, and this sequence's phase under it: `prefill`
    /// until its first token, then `decode`; closed when it ends.
    pub(crate) span: tracing::Span,
    pub(crate) phase: tracing::Span,
}

/// What one sequence id holds in the KV cache while no sequence runs on it.
#[derive(Default)]
pub(crate) struct SlotCache {
    pub(crate) busy: bool,
    /// Tokens at positions 0.. (only meaningful while idle).
    pub(crate) tokens: Vec<u32>,
    pub(crate) last_used: u64,
}

pub(crate) fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
