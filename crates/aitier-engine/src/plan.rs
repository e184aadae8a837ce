//! Which tokens of which running sequences go into the next decode step,
//! and how many prompt tokens a shared step may take. Kept apart from the
//! engine thread so the policy can be tested without a model.

use std::time::Duration;

/// Fewest prompt tokens a shared step prefills, whatever the step target.
pub(crate) const MIN_PREFILL: usize = 4;

/// What the planner needs to know of one running sequence.
pub(crate) struct Demand<'a> {
    pub tenant: &'a str,
    /// Tokens not yet in the KV cache: 1 while decoding, more while its
    /// prompt is being prefilled.
    pub left: usize,
    /// No step has evaluated any of its tokens yet.
    pub fresh: bool,
    /// Its sequence id, which orders the batch.
    pub slot: i32,
}

pub(crate) struct Limits {
    pub batch_size: usize,
    pub prefill_chunk: usize,
}

pub(crate) struct StepPlan {
    /// Whether this step serves new short prompts alone.
    pub short_only: bool,
    /// Whether other work shares the engine with the prompts (the measured
    /// step cost of such steps sizes their chunks).
    pub shared: bool,
    /// (index into the demands, tokens to evaluate), by sequence id.
    pub take: Vec<(usize, usize)>,
}

/// Plans one step. `shared_budget(decoding)` is how many prompt tokens a
/// shared step may take beside `decoding` streams.
pub(crate) fn plan_step(
    seqs: &[Demand],
    last_short_only: bool,
    limits: &Limits,
    shared_budget: impl FnOnce(usize) -> usize,
) -> StepPlan {
    let decoding = seqs.iter().filter(|s| s.left == 1).count();
    // When the engine is shared (streams decoding, or several sequences
    // admitted), prompts get a small share of each step: no stream's next
    // token, and no newcomer's first token, waits behind a long prefill.
    // A lone prompt gets the whole batch.
    let shared = decoding > 0 || seqs.len() > 1;
    // A new prompt that fits in one chunk gets a step without the decoders:
    // its first token then waits for its own prefill only, not for every
    // running stream's next token too. Never twice in a row, so arrivals
    // cannot starve the decoders. Only for a tenant with nothing decoding
    // yet: one tenant's own arrivals keep sharing steps with its streams, as
    // throughput wants. Never the tail of a long prompt, which would make a
    // long step of its own.
    let newcomer = |s: &Demand| {
        s.fresh
            && s.left > 1
            && s.left <= limits.prefill_chunk
            && !seqs.iter().any(|o| o.tenant == s.tenant && o.left == 1)
    };
    let short_only = shared && !last_short_only && seqs.iter().any(newcomer);
    // A newcomer's own step takes its whole prompt (at most one chunk).
    let mut prefill_budget = if !shared {
        limits.batch_size
    } else if short_only {
        limits.prefill_chunk
    } else {
        shared_budget(decoding)
    };
    let mut room = limits.batch_size;
    // Decoding sequences first; then prompts, shortest remaining first so a
    // short request is not stuck behind a long one.
    let mut order: Vec<usize> = (0..seqs.len()).collect();
    order.sort_by_key(|&i| seqs[i].left);
    let mut take = Vec::with_capacity(order.len());
    for i in order {
        let s = &seqs[i];
        let n = if short_only && !newcomer(s) {
            0
        } else if s.left == 1 {
            room.min(1)
        } else {
            s.left.min(room).min(prefill_budget)
        };
        if n == 0 {
            continue;
        }
        room -= n;
        if s.left > 1 {
            prefill_budget -= n;
        }
        take.push((i, n));
    }
    // Laid out by sequence id: llama.cpp splits a batch into one micro-batch
    // per run of consecutive ids when each slot has its own KV stream.
    take.sort_by_key(|&(i, _)| seqs[i].slot);
    StepPlan {
        short_only,
        shared,
        take,
    }
}

/// Prompt tokens a shared step may take: what fits in the step target beside
/// the decoding streams at the measured cost per token, but at least
/// `MIN_PREFILL`, so prompts progress however many streams decode, and at
/// most `cap`.
pub(crate) fn shared_prefill_budget(
    target: Option<Duration>,
    ms_per_token: Option<f64>,
    decoding: usize,
    cap: usize,
) -> usize {
    let (Some(target), Some(per_token)) = (target, ms_per_token) else {
        return cap;
    };
    let fits = (target.as_secs_f64() * 1e3 / per_token) as usize;
    fits.saturating_sub(decoding)
        .clamp(MIN_PREFILL.min(cap), cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        batch_size: 512,
        prefill_chunk: 64,
    };

    fn seq(tenant: &str, left: usize, fresh: bool, slot: i32) -> Demand<'_> {
        Demand {
            tenant,
            left,
            fresh,
            slot,
        }
    }

    #[test]
    fn streams_decode_and_prompts_share_the_budget_shortest_first() {
        let seqs = [
            seq("a", 1, false, 0),
            seq("a", 300, false, 1),
            seq("a", 1, false, 2),
            seq("a", 40, false, 3),
        ];
        let p = plan_step(&seqs, false, &LIMITS, |decoding| {
            assert_eq!(decoding, 2);
            50
        });
        assert!(p.shared && !p.short_only);
        assert_eq!(p.take, vec![(0, 1), (1, 10), (2, 1), (3, 40)]);
    }

    #[test]
    fn a_lone_prompt_gets_the_whole_batch() {
        let p = plan_step(&[seq("a", 2000, true, 0)], false, &LIMITS, |_| 8);
        assert!(!p.shared);
        assert_eq!(p.take, vec![(0, 512)]);
    }

    #[test]
    fn another_tenants_short_prompt_gets_a_step_of_its_own_once() {
        let seqs = [
            seq("a", 1, false, 0),
            seq("a", 900, false, 1),
            seq("b", 12, true, 2),
        ];
        let p = plan_step(&seqs, false, &LIMITS, |_| 4);
        assert!(p.short_only);
        // Its whole prompt, not the shared step's 4-token budget.
        assert_eq!(p.take, vec![(2, 12)]);
        // Not twice in a row: the next step serves everyone again.
        let p = plan_step(&seqs, true, &LIMITS, |_| 4);
        assert!(!p.short_only);
        assert_eq!(p.take, vec![(0, 1), (2, 4)]);
    }

    #[test]
    fn the_tail_of_a_long_prompt_is_not_a_newcomer() {
        // Tenant a has nothing decoding, and its prompt has 30 tokens left
        // after earlier chunks: it shares the step like any prefill.
        let seqs = [seq("a", 30, false, 0), seq("b", 1, false, 1)];
        let p = plan_step(&seqs, false, &LIMITS, |_| 8);
        assert!(!p.short_only);
        assert_eq!(p.take, vec![(0, 8), (1, 1)]);
    }

    #[test]
    fn a_tenants_own_arrival_shares_the_step_with_its_streams() {
        let seqs = [seq("a", 1, false, 0), seq("a", 12, true, 1)];
        let p = plan_step(&seqs, false, &LIMITS, |_| 8);
        assert!(!p.short_only);
        assert_eq!(p.take, vec![(0, 1), (1, 8)]);
    }

    #[test]
    fn the_batch_is_laid_out_by_sequence_id() {
        let seqs = [
            seq("a", 5, false, 7),
            seq("a", 1, false, 3),
            seq("a", 1, false, 5),
        ];
        let p = plan_step(&seqs, false, &LIMITS, |_| 64);
        let slots: Vec<i32> = p.take.iter().map(|&(i, _)| seqs[i].slot).collect();
        assert_eq!(slots, vec![3, 5, 7]);
    }

    #[test]
    fn prompt_chunks_fill_what_the_step_target_leaves() {
        let target = Some(Duration::from_millis(50));
        // 2 ms a token: 25 fit, 5 go to decoding streams.
        assert_eq!(shared_prefill_budget(target, Some(2.0), 5, 64), 20);
        // Cheap tokens: the cap still bounds a chunk.
        assert_eq!(shared_prefill_budget(target, Some(0.1), 5, 64), 64);
        // Decoding alone overruns the target: prompts still progress.
        assert_eq!(
            shared_prefill_budget(target, Some(4.0), 16, 64),
            MIN_PREFILL
        );
        assert_eq!(shared_prefill_budget(target, Some(4.0), 16, 4), 4);
        // Off, or nothing measured yet: the configured chunk.
        assert_eq!(shared_prefill_budget(None, Some(2.0), 5, 64), 64);
        assert_eq!(shared_prefill_budget(target, None, 5, 64), 64);
    }
}
