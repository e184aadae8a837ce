//! Which tokens of which running sequences go into the next decode step.
//! Kept apart from the engine thread so the policy can be tested without a
//! model.
//!
//! A shared step is bounded in tokens, not milliseconds: a newcomer waits
//! for at most one step, and a step of `step_tokens` costs about what a
//! prompt of that many tokens costs alone on the same machine, so the
//! newcomer's wait stays the same multiple of its own time on a fast machine
//! and a slow one. Attention over deep contexts counts too: a token's cost
//! is one plus the cells it reads at the learnt cost of a cell (see
//! `step_cost`). Within a step prompts have a floor share (half of it)
//! however many streams decode, so prefill never stalls at a few tokens a
//! step.
//!
//! While one tenant alone has sequences running there is nobody to protect
//! from its long steps: every one of its streams decodes in every step, and
//! its prompts get at least a token per decoding stream. A stream left out
//! only waits, and on the CPU a step's cost per token falls with its size
//! (measured at 16 streams: 7.8 ms a token in steps of all 16, 8.7 in steps
//! of 12 to 15, 11.8 in steps of 8).

use crate::step_cost::{CellCost, StepShape};

/// What the planner needs to know of one running sequence.
pub(crate) struct Demand<'a> {
    pub tenant: &'a str,
    /// Tokens not yet in the KV cache: 1 while decoding, more while its
    /// prompt is being prefilled.
    pub left: usize,
    /// Tokens already in the KV cache, which its next tokens attend over.
    pub depth: usize,
    /// No step has evaluated any of its tokens yet.
    pub fresh: bool,
    /// Its sequence id, which orders the batch.
    pub slot: i32,
    /// The step that last evaluated any of its tokens (0: none yet):
    /// decoders that sat a step out go first in the next.
    pub last_step: u64,
}

pub(crate) struct Limits {
    pub batch_size: usize,
    /// Most prompt tokens a shared step takes, and the longest prompt that
    /// counts as a newcomer's.
    pub prefill_chunk: usize,
    /// What a shared step may cost, in tokens (decoding streams' and
    /// prompts' together); 0: no bound but `prefill_chunk` on the prompts.
    pub step_tokens: usize,
    /// What a KV cell read costs, in tokens.
    pub cell_cost: CellCost,
}

impl Limits {
    /// The cost of a decoding stream's next token, in tokens.
    fn decode_cost(&self, s: &Demand) -> f64 {
        self.cell_cost.of(StepShape::decode(s.depth))
    }

    /// The cost of a chunk of `n` prompt tokens, in tokens.
    fn prompt_cost(&self, s: &Demand, n: usize) -> f64 {
        self.cell_cost.of(StepShape::chunk(s.depth, n))
    }
}

pub(crate) struct StepPlan {
    /// Whether this step serves new short prompts alone.
    pub short_only: bool,
    /// (index into the demands, tokens to evaluate), by sequence id.
    pub take: Vec<(usize, usize)>,
}

/// Plans one step.
pub(crate) fn plan_step(seqs: &[Demand], last_short_only: bool, limits: &Limits) -> StepPlan {
    // When the engine is shared (streams decoding, or several sequences
    // admitted), a step is bounded: no stream's next token, and no
    // newcomer's first token, waits behind a long prefill. A lone prompt
    // gets the whole batch.
    let shared = seqs.len() > 1 || seqs.iter().any(|s| s.left == 1);
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
    let mut take = if !shared {
        vec![(0, seqs[0].left.min(limits.batch_size))]
    } else if short_only {
        // A newcomer's own step takes its whole prompt (at most one chunk).
        let mut room = limits.prefill_chunk.min(limits.batch_size);
        let mut take = Vec::new();
        for i in by_prompt_length(seqs).filter(|&i| newcomer(&seqs[i])) {
            let n = seqs[i].left.min(room);
            if n > 0 {
                take.push((i, n));
                room -= n;
            }
        }
        take
    } else {
        plan_shared(seqs, limits)
    };
    // Laid out by sequence id: llama.cpp splits a batch into one micro-batch
    // per run of consecutive ids when each slot has its own KV stream.
    take.sort_by_key(|&(i, _)| seqs[i].slot);
    StepPlan { short_only, take }
}

/// Prompts, shortest remaining first so a short request is not stuck
/// behind a long one.
fn by_prompt_length<'s>(seqs: &'s [Demand]) -> impl Iterator<Item = usize> + 's {
    let mut order: Vec<usize> = (0..seqs.len()).filter(|&i| seqs[i].left > 1).collect();
    order.sort_by_key(|&i| (seqs[i].left, seqs[i].slot));
    order.into_iter()
}

/// A shared step: prompts take what the decoders leave of `step_tokens`,
/// but at least half of it while any prompt waits (and at least one token,
/// however deep), and at most `prefill_chunk` tokens; the decoders take
/// the rest (at least one), those that waited longest first. A tenant
/// alone: every decoder, and prompts at least a token per decoder.
fn plan_shared(seqs: &[Demand], limits: &Limits) -> Vec<(usize, usize)> {
    let bounded = limits.step_tokens > 0;
    let budget = limits.step_tokens as f64;
    let mut decoders: Vec<usize> = (0..seqs.len()).filter(|&i| seqs[i].left == 1).collect();
    decoders.sort_by_key(|&i| (seqs[i].last_step, seqs[i].slot));
    let decode_total: f64 = decoders.iter().map(|&i| limits.decode_cost(&seqs[i])).sum();
    // One tenant alone has nobody to protect from its own long steps: all
    // its streams decode, and its prompts keep pace with them.
    let alone = seqs.iter().all(|s| s.tenant == seqs[0].tenant);
    let half = (budget / 2.0).ceil();
    let floor = if alone {
        half.max(decoders.len() as f64)
    } else {
        half
    };
    let share = (budget - decode_total).max(floor);
    let mut spent = 0.0;
    let mut room = limits.batch_size;
    let mut chunk = limits.prefill_chunk;
    let mut take = Vec::new();
    for i in by_prompt_length(seqs) {
        let s = &seqs[i];
        let most = s.left.min(chunk).min(room);
        let fits = |n: usize| !bounded || spent + limits.prompt_cost(s, n) <= share;
        // The largest n that fits: cost grows with n.
        let (mut lo, mut hi) = (0, most);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let n = if take.is_empty() {
            lo.max(most.min(1))
        } else {
            lo
        };
        if n == 0 {
            break;
        }
        take.push((i, n));
        spent += limits.prompt_cost(s, n);
        chunk -= n;
        room -= n;
    }
    let mut left = budget - spent;
    for (k, &i) in decoders.iter().enumerate() {
        let cost = limits.decode_cost(&seqs[i]);
        if room == 0 || (bounded && !alone && k > 0 && cost > left) {
            break;
        }
        take.push((i, 1));
        left -= cost;
        room -= 1;
    }
    take
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        batch_size: 512,
        prefill_chunk: 64,
        step_tokens: 0,
        cell_cost: CellCost {
            decode: 0.0,
            prompt: 0.0,
        },
    };

    const BOUNDED: Limits = steps(32);

    /// The unbounded limits with a step of `n` tokens.
    const fn steps(n: usize) -> Limits {
        Limits {
            step_tokens: n,
            ..LIMITS
        }
    }

    fn seq(tenant: &str, left: usize, fresh: bool, slot: i32) -> Demand<'_> {
        Demand {
            tenant,
            left,
            depth: 0,
            fresh,
            slot,
            last_step: 1,
        }
    }

    fn decoders(n: usize) -> Vec<Demand<'static>> {
        (0..n).map(|i| seq("a", 1, false, i as i32)).collect()
    }

    /// (prompt tokens, decoding streams) the plan takes.
    fn split(seqs: &[Demand], p: &StepPlan) -> (usize, usize) {
        let prompts = p.take.iter().filter(|&&(i, _)| seqs[i].left > 1);
        let decoded = p.take.iter().filter(|&&(i, _)| seqs[i].left == 1).count();
        (prompts.map(|&(_, n)| n).sum(), decoded)
    }

    #[test]
    fn streams_decode_and_prompts_share_the_chunk_shortest_first() {
        let seqs = [
            seq("a", 1, false, 0),
            seq("a", 300, false, 1),
            seq("a", 1, false, 2),
            seq("a", 40, false, 3),
        ];
        let p = plan_step(&seqs, false, &LIMITS);
        assert!(!p.short_only);
        assert_eq!(p.take, vec![(0, 1), (1, 24), (2, 1), (3, 40)]);
    }

    #[test]
    fn a_lone_prompt_gets_the_whole_batch() {
        let p = plan_step(&[seq("a", 2000, true, 0)], false, &BOUNDED);
        assert_eq!(p.take, vec![(0, 512)]);
    }

    #[test]
    fn another_tenants_short_prompt_gets_a_step_of_its_own_once() {
        let mut seqs = decoders(20);
        seqs.push(seq("a", 900, false, 20));
        seqs.push(seq("b", 40, true, 21));
        let p = plan_step(&seqs, false, &BOUNDED);
        assert!(p.short_only);
        // Its whole prompt, more than a shared step gives prompts.
        assert_eq!(p.take, vec![(21, 40)]);
        // Not twice in a row: the next step serves everyone again.
        let p = plan_step(&seqs, true, &BOUNDED);
        assert!(!p.short_only);
        assert_eq!(split(&seqs, &p), (16, 16));
    }

    #[test]
    fn the_tail_of_a_long_prompt_is_not_a_newcomer() {
        // Tenant a has nothing decoding, and its prompt has 30 tokens left
        // after earlier chunks: it shares the step like any prefill.
        let seqs = [seq("a", 30, false, 0), seq("b", 1, false, 1)];
        let p = plan_step(&seqs, false, &steps(9));
        assert!(!p.short_only);
        assert_eq!(p.take, vec![(0, 8), (1, 1)]);
    }

    #[test]
    fn a_tenants_own_arrival_shares_the_step_with_its_streams() {
        let seqs = [seq("a", 1, false, 0), seq("a", 12, true, 1)];
        let p = plan_step(&seqs, false, &steps(9));
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
        let p = plan_step(&seqs, false, &BOUNDED);
        let slots: Vec<i32> = p.take.iter().map(|&(i, _)| seqs[i].slot).collect();
        assert_eq!(slots, vec![3, 5, 7]);
    }

    #[test]
    fn prompts_take_what_the_decoders_leave_of_a_step() {
        let mut seqs = decoders(4);
        seqs.push(seq("a", 1500, false, 4));
        seqs.push(seq("a", 1500, false, 5));
        let p = plan_step(&seqs, false, &BOUNDED);
        assert_eq!(split(&seqs, &p), (28, 4));
        // The shortest prompt first; the other waits for the next step.
        seqs[5].left = 20;
        let p = plan_step(&seqs, false, &BOUNDED);
        assert_eq!(p.take[4..], [(4, 8), (5, 20)]);
        // prefill_chunk still bounds the prompts of a step.
        let p = plan_step(&seqs, false, &steps(200));
        assert_eq!(split(&seqs, &p), (64, 4));
    }

    #[test]
    fn prompts_keep_half_of_a_step_however_many_streams_decode() {
        // What starved a busy tenant under a step target in milliseconds:
        // decoding alone overran it, and prompts moved 4 tokens a step.
        let mut seqs = decoders(30);
        seqs.push(seq("b", 1500, false, 30));
        let p = plan_step(&seqs, false, &BOUNDED);
        assert_eq!(split(&seqs, &p), (16, 16));
        let p = plan_step(&seqs, false, &steps(33));
        assert_eq!(split(&seqs, &p), (17, 16));
    }

    #[test]
    fn a_tenant_alone_decodes_every_stream_and_prefills_as_many_tokens() {
        let mut seqs = decoders(30);
        seqs.push(seq("a", 1500, false, 30));
        let p = plan_step(&seqs, false, &BOUNDED);
        assert_eq!(split(&seqs, &p), (30, 30));
        let seqs = decoders(40);
        let p = plan_step(&seqs, false, &BOUNDED);
        assert_eq!(split(&seqs, &p), (0, 40));
    }

    #[test]
    fn with_another_tenant_running_a_step_is_bounded_without_prompts_too() {
        let mut seqs = decoders(40);
        seqs[39].tenant = "b";
        let p = plan_step(&seqs, false, &BOUNDED);
        assert_eq!(split(&seqs, &p), (0, 32));
        // Unbounded: every stream decodes.
        let p = plan_step(&seqs, false, &LIMITS);
        assert_eq!(split(&seqs, &p), (0, 40));
    }

    #[test]
    fn decoders_left_out_of_a_step_go_first_in_the_next() {
        let mut seqs = decoders(30);
        seqs.push(seq("b", 1500, false, 30));
        for s in &mut seqs[..16] {
            s.last_step = 2;
        }
        let p = plan_step(&seqs, false, &BOUNDED);
        let served: Vec<usize> = p.take.iter().map(|&(i, _)| i).collect();
        // The 14 that sat step 2 out, then 2 of the others, then the prompt.
        let mut want: Vec<usize> = (0..2).chain(16..31).collect();
        want.sort_unstable();
        assert_eq!(served, want);
    }

    #[test]
    fn a_step_of_one_token_still_moves_both() {
        let seqs = [seq("a", 1, false, 0), seq("a", 50, false, 1)];
        let p = plan_step(&seqs, false, &steps(1));
        assert_eq!(split(&seqs, &p), (1, 1));
    }

    /// 200 cells read by a decoder, or by a prompt's chunk, cost a token.
    const DEEP: Limits = Limits {
        cell_cost: CellCost {
            decode: 0.005,
            prompt: 0.005,
        },
        ..BOUNDED
    };

    #[test]
    fn deep_decoders_count_the_cells_they_read() {
        let mut seqs = decoders(8);
        for s in &mut seqs {
            s.depth = 1400;
        }
        seqs.push(seq("a", 1500, false, 8));
        // Each decoder costs 8 tokens: the prompt keeps its half (15 tokens
        // and the cells they read); alone, all eight decoders join it.
        let p = plan_step(&seqs, false, &DEEP);
        assert_eq!(split(&seqs, &p), (15, 8));
        // Beside another tenant, two decoders take the other half.
        seqs[8].tenant = "b";
        let p = plan_step(&seqs, false, &DEEP);
        assert_eq!(split(&seqs, &p), (15, 2));
        // Shallow, all eight fit beside a smaller chunk.
        let p = plan_step(&seqs, false, &BOUNDED);
        assert_eq!(split(&seqs, &p), (24, 8));
    }

    #[test]
    fn a_deep_prompts_chunk_shrinks_with_its_depth() {
        let mut seqs = vec![seq("a", 1, false, 0), seq("a", 500, false, 1)];
        seqs[1].depth = 1000;
        // Reading 1,000 cells costs the chunk 5 tokens of the 31 the
        // decoder leaves: 25 tokens fit (30.1).
        let p = plan_step(&seqs, false, &DEEP);
        assert_eq!(p.take, vec![(0, 1), (1, 25)]);
    }

    #[test]
    fn a_prompt_moves_at_least_a_token_however_deep() {
        let mut seqs = decoders(40);
        seqs.push(seq("a", 500, false, 40));
        seqs[40].depth = 1000;
        let limits = Limits {
            cell_cost: CellCost {
                decode: 1.0,
                prompt: 1.0,
            },
            ..BOUNDED
        };
        let p = plan_step(&seqs, false, &limits);
        assert_eq!(split(&seqs, &p), (1, 40));
    }
}
