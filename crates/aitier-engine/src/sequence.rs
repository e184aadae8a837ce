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
    pub(crate) weight: u32,
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
    pub(crate) weight: u32,
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
    /// The last step that evaluated any of its tokens.
    pub(crate) last_step: u64,
    /// The grammar this sequence's output follows, and its mask for the
    /// token the current step samples.
    pub(crate) matcher: Option<Matcher>,
    pub(crate) mask: Option<SimpleVob>,
    /// The request's span, and this sequence's phase under it: `prefill`
    /// until its first token, then `decode`; closed when it ends.
    pub(crate) span: tracing::Span,
    pub(crate) phase: tracing::Span,
}

/// A running sequence that gave its slot to another tenant, with its cells
/// (`C`: llama.cpp's copy of them) when they were kept aside.
pub(crate) struct Paused<C> {
    pub(crate) seq: Box<Seq>,
    pub(crate) cells: Option<C>,
}

/// What waits for a slot: a choice not started yet, or one paused.
pub(crate) enum Waiting<C> {
    New(Box<Pending>),
    Paused(Paused<C>),
}

impl<C> Waiting<C> {
    pub(crate) fn req(&self) -> u64 {
        match self {
            Self::New(p) => p.req,
            Self::Paused(p) => p.seq.req,
        }
    }

    pub(crate) fn tenant(&self) -> &str {
        match self {
            Self::New(p) => &p.tenant,
            Self::Paused(p) => &p.seq.tenant,
        }
    }

    pub(crate) fn weight(&self) -> u32 {
        match self {
            Self::New(p) => p.weight,
            Self::Paused(p) => p.seq.weight,
        }
    }

    /// Cells kept aside for it, outside the KV cache.
    pub(crate) fn cells_aside(&self) -> u64 {
        match self {
            Self::Paused(Paused {
                seq,
                cells: Some(_),
            }) => seq.n_past as u64,
            _ => 0,
        }
    }
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

/// The idle slot a new prompt takes. A slot whose cache the prompt mostly
/// continues (at least half of what it holds: the same conversation, or the
/// same system prompt with another question) is extended in place. Any
/// other prompt takes an empty slot, else the least recently used one, so
/// that a few shared chat-template tokens never cost another prompt's whole
/// cache; what it shares with any cache is copied into its slot after.
pub(crate) fn choose_slot(slots: &[SlotCache], prompt: &[u32], usable: usize) -> Option<usize> {
    let idle = || slots.iter().enumerate().filter(|(_, s)| !s.busy);
    // Ties go to the lowest id: dense ids mean fewer micro-batches.
    let (best, shared) = idle()
        .map(|(i, s)| (i, common_prefix(&s.tokens, prompt).min(usable)))
        .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))?;
    if shared > 0 && 2 * shared >= slots[best].tokens.len() {
        return Some(best);
    }
    idle()
        .min_by_key(|(i, s)| (!s.tokens.is_empty(), s.last_used, *i))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(tokens: &[u32], last_used: u64, busy: bool) -> SlotCache {
        SlotCache {
            busy,
            tokens: tokens.to_vec(),
            last_used,
        }
    }

    /// A chat's tokens: a 4-token template opening, then its own text.
    fn chat(own: u32, len: u32) -> Vec<u32> {
        let mut t = vec![1, 2, 3, 4];
        t.extend((0..len).map(|k| own * 1000 + k));
        t
    }

    #[test]
    fn a_prompt_that_continues_a_cache_extends_it_in_place() {
        let a = chat(1, 100);
        let slots = [
            slot(&chat(2, 100), 1, false),
            slot(&a, 2, false),
            slot(&[], 0, false),
        ];
        let mut next = a[..90].to_vec();
        next.extend([7, 8, 9]);
        assert_eq!(choose_slot(&slots, &next, next.len() - 1), Some(1));
    }

    #[test]
    fn shared_template_tokens_do_not_evict_another_prompts_cache() {
        // Only the template opening is shared: the empty slot is taken, not
        // slot 0 with 104 cached tokens of another prompt.
        let slots = [slot(&chat(1, 100), 1, false), slot(&[], 0, false)];
        let p = chat(3, 100);
        assert_eq!(choose_slot(&slots, &p, p.len() - 1), Some(1));
        // With no empty slot, the least recently used one.
        let slots = [
            slot(&chat(1, 100), 5, false),
            slot(&chat(2, 100), 3, false),
            slot(&chat(4, 100), 1, true),
        ];
        assert_eq!(choose_slot(&slots, &p, p.len() - 1), Some(1));
    }

    #[test]
    fn busy_slots_are_never_chosen_and_ties_take_the_lowest_id() {
        let p = chat(3, 10);
        assert_eq!(choose_slot(&[slot(&[], 0, true)], &p, 10), None);
        let slots = [slot(&[], 0, true), slot(&[], 0, false), slot(&[], 0, false)];
        assert_eq!(choose_slot(&slots, &p, 10), Some(1));
    }
}
