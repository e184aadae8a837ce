//! Token sampling over one sequence's logits: logit bias, OpenAI presence and
//! frequency penalties, llama.cpp's repeat penalty, then greedy or
//! temperature / top-k / top-p / min-p sampling from a seeded generator.
//! Logprobs are reported from the model's raw distribution, as vLLM does.
use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use aitier_core::SamplingParams;
use llguidance::toktrie::SimpleVob;

/// How many recent tokens the repeat penalty looks at (llama.cpp's default).
const REPEAT_WINDOW: usize = 64;
/// Candidates sorted before falling back to a full sort for top-p.
const NUCLEUS_GUESS: usize = 256;

pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// Occurrences of each generated token, for the OpenAI penalties.
    counts: HashMap<u32, u32>,
    scratch: Vec<f32>,
    order: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub token: u32,
    /// Raw log-probability of `token`; NaN when not requested.
    pub logprob: f32,
    /// The best raw alternatives, best first.
    pub top: Vec<(u32, f32)>,
}

impl Sampler {
    /// `stream` separates the choices of one request so `n > 1` with a seed
    /// gives different but reproducible choices.
    pub fn new(params: SamplingParams, stream: u64) -> Self {
        let rng = match params.seed {
            Some(seed) => {
                StdRng::seed_from_u64(seed.wrapping_add(stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            }
            None => StdRng::from_rng(&mut rand::rng()),
        };
        Self {
            params,
            rng,
            counts: HashMap::new(),
            scratch: Vec::new(),
            order: Vec::new(),
        }
    }

    /// Picks the next token. `recent` is the sequence so far (prompt and
    /// completion); `logprobs` asks for the chosen token's logprob and that
    /// many alternatives; `allowed`, a grammar's mask, bans every token it
    /// does not allow (it must allow one).
    pub fn sample(
        &mut self,
        raw: &[f32],
        recent: &[u32],
        logprobs: Option<u32>,
        allowed: Option<&SimpleVob>,
    ) -> Sampled {
        let l = &mut self.scratch;
        l.clear();
        l.extend_from_slice(raw);
        for &(id, bias) in &self.params.logit_bias {
            if let Some(x) = l.get_mut(id as usize) {
                *x += bias;
            }
        }
        let p = &self.params;
        if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
            for (&tok, &c) in &self.counts {
                if let Some(x) = l.get_mut(tok as usize) {
                    *x -= p.presence_penalty + p.frequency_penalty * c as f32;
                }
            }
        }
        if p.repeat_penalty != 1.0 {
            let start = recent.len().saturating_sub(REPEAT_WINDOW);
            let mut seen: Vec<u32> = recent[start..].to_vec();
            seen.sort_unstable();
            seen.dedup();
            for tok in seen {
                if let Some(x) = l.get_mut(tok as usize) {
                    *x = if *x > 0.0 {
                        *x / p.repeat_penalty
                    } else {
                        *x * p.repeat_penalty
                    };
                }
            }
        }
        if let Some(mask) = allowed {
            // Tokens past the vocabulary a mask knows are banned too.
            let known = mask.len().min(l.len());
            mask.iter_unset_entries(|i| {
                if i < known {
                    l[i] = f32::NEG_INFINITY;
                }
            });
            l[known..].fill(f32::NEG_INFINITY);
        }
        let token = if p.temperature <= 0.0 {
            argmax(l)
        } else {
            self.sample_tempered()
        };
        *self.counts.entry(token).or_insert(0) += 1;
        match logprobs {
            None => Sampled {
                token,
                logprob: f32::NAN,
                top: Vec::new(),
            },
            Some(k) => {
                let lse = log_sum_exp(raw);
                let top = top_k_indices(raw, k as usize, &mut self.order)
                    .into_iter()
                    .map(|t| (t, raw[t as usize] - lse))
                    .collect();
                Sampled {
                    token,
                    logprob: raw
                        .get(token as usize)
                        .map_or(f32::NEG_INFINITY, |x| x - lse),
                    top,
                }
            }
        }
    }

    fn sample_tempered(&mut self) -> u32 {
        let p = &self.params;
        let l = &mut self.scratch;
        let inv_t = 1.0 / p.temperature;
        let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        // Unnormalised probabilities in place.
        for x in l.iter_mut() {
            *x = ((*x - max) * inv_t).exp();
        }
        let needs_order = p.top_k > 0 || p.top_p < 1.0;
        if !needs_order {
            if p.min_p > 0.0 {
                // The max element has weight 1 after the shift above.
                let floor = p.min_p;
                for x in l.iter_mut() {
                    if *x < floor {
                        *x = 0.0;
                    }
                }
            }
            return pick(l, None, &mut self.rng);
        }
        let order = &mut self.order;
        order.clear();
        order.extend(0..l.len() as u32);
        let keep = if p.top_k > 0 {
            (p.top_k as usize).min(l.len())
        } else {
            l.len()
        };
        let by_weight = |a: &u32, b: &u32| l[*b as usize].total_cmp(&l[*a as usize]);
        let guess = keep.min(NUCLEUS_GUESS);
        if guess < order.len() {
            order.select_nth_unstable_by(guess, by_weight);
        }
        order[..guess].sort_unstable_by(by_weight);
        let total: f32 = if keep == guess {
            order[..keep].iter().map(|&i| l[i as usize]).sum()
        } else {
            l.iter().sum()
        };
        let cut = if p.top_p < 1.0 {
            nucleus(l, order, keep, guess, p.top_p * total)
        } else {
            guess
        };
        let cut = cut.max(1);
        if p.min_p > 0.0 {
            let floor = p.min_p * l[order[0] as usize];
            for &tok in &order[..cut] {
                if l[tok as usize] < floor {
                    l[tok as usize] = 0.0;
                }
            }
        }
        pick(l, Some(&order[..cut]), &mut self.rng)
    }
}

/// How many of the best tokens (`order`, its first `guess` sorted by
/// weight) reach `target` weight together, looking no further than `keep`.
fn nucleus(l: &[f32], order: &mut [u32], keep: usize, guess: usize, target: f32) -> usize {
    let by_weight = |a: &u32, b: &u32| l[*b as usize].total_cmp(&l[*a as usize]);
    let mut acc = 0.0;
    for (i, &tok) in order[..guess].iter().enumerate() {
        acc += l[tok as usize];
        if acc >= target {
            return i + 1;
        }
    }
    // The nucleus is wider than the guess: sort what top-k keeps.
    if keep < order.len() {
        order.select_nth_unstable_by(keep, by_weight);
    }
    order[..keep].sort_unstable_by(by_weight);
    let mut acc = 0.0;
    order[..keep]
        .iter()
        .position(|&tok| {
            acc += l[tok as usize];
            acc >= target
        })
        .map_or(keep, |i| i + 1)
}

fn pick(weights: &[f32], among: Option<&[u32]>, rng: &mut StdRng) -> u32 {
    let total: f32 = match among {
        Some(ids) => ids.iter().map(|&i| weights[i as usize]).sum(),
        None => weights.iter().sum(),
    };
    let mut r = rng.random::<f32>() * total;
    let mut last = 0;
    let mut visit = |i: u32| -> Option<u32> {
        let w = weights[i as usize];
        if w > 0.0 {
            last = i;
            r -= w;
            if r <= 0.0 {
                return Some(i);
            }
        }
        None
    };
    match among {
        Some(ids) => {
            for &i in ids {
                if let Some(t) = visit(i) {
                    return t;
                }
            }
        }
        None => {
            for i in 0..weights.len() as u32 {
                if let Some(t) = visit(i) {
                    return t;
                }
            }
        }
    }
    // Rounding left a sliver of r: the last candidate with weight takes it.
    last
}

fn argmax(l: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in l.iter().enumerate() {
        if x > l[best] {
            best = i;
        }
    }
    best as u32
}

fn log_sum_exp(l: &[f32]) -> f32 {
    let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = l.iter().map(|x| (x - max).exp()).sum();
    max + sum.ln()
}

fn top_k_indices(l: &[f32], k: usize, order: &mut Vec<u32>) -> Vec<u32> {
    if k == 0 {
        return Vec::new();
    }
    order.clear();
    order.extend(0..l.len() as u32);
    let by = |a: &u32, b: &u32| l[*b as usize].total_cmp(&l[*a as usize]);
    let k = k.min(order.len());
    if k < order.len() {
        order.select_nth_unstable_by(k, by);
    }
    order[..k].sort_unstable_by(by);
    order[..k].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            ..SamplingParams::default()
        }
    }

    #[test]
    fn greedy_takes_the_argmax() {
        let mut s = Sampler::new(params(0.0), 0);
        assert_eq!(s.sample(&[0.1, 3.0, 2.0], &[], None, None).token, 1);
    }

    #[test]
    fn logit_bias_can_ban_the_argmax() {
        let mut p = params(0.0);
        p.logit_bias = vec![(1, -100.0)];
        let mut s = Sampler::new(p, 0);
        assert_eq!(s.sample(&[0.1, 3.0, 2.0], &[], None, None).token, 2);
    }

    #[test]
    fn frequency_penalty_grows_with_repeats() {
        let mut p = params(0.0);
        p.frequency_penalty = 2.0;
        let mut s = Sampler::new(p, 0);
        let logits = [0.0, 3.0, 2.5];
        assert_eq!(s.sample(&logits, &[], None, None).token, 1);
        // Token 1 now carries a 2.0 penalty: 3.0 - 2.0 < 2.5.
        assert_eq!(s.sample(&logits, &[], None, None).token, 2);
    }

    #[test]
    fn same_seed_same_tokens_and_choices_differ() {
        let logits: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 97) as f32 / 10.0).collect();
        let mut p = params(1.0);
        p.seed = Some(42);
        let run = |stream| {
            let mut s = Sampler::new(p.clone(), stream);
            (0..32)
                .map(|_| s.sample(&logits, &[], None, None).token)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(0), run(0));
        assert_ne!(run(0), run(1));
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut p = params(1.5);
        p.top_k = 1;
        p.seed = Some(7);
        let mut s = Sampler::new(p, 0);
        for _ in 0..20 {
            assert_eq!(s.sample(&[1.0, 1.2, 0.9, 1.1], &[], None, None).token, 1);
        }
    }

    #[test]
    fn small_top_p_keeps_only_the_head() {
        let mut p = params(1.0);
        p.top_p = 0.5;
        p.seed = Some(3);
        let mut s = Sampler::new(p, 0);
        let mut logits = vec![0.0f32; 600];
        logits[10] = 10.0;
        for _ in 0..20 {
            assert_eq!(s.sample(&logits, &[], None, None).token, 10);
        }
    }

    #[test]
    fn logprobs_are_normalised_and_sorted() {
        let mut s = Sampler::new(params(0.0), 0);
        let out = s.sample(&[0.0, 1.0, 2.0], &[], Some(3), None);
        let total: f32 = out.top.iter().map(|(_, lp)| lp.exp()).sum();
        assert!((total - 1.0).abs() < 1e-5);
        assert_eq!(
            out.top.iter().map(|t| t.0).collect::<Vec<_>>(),
            vec![2, 1, 0]
        );
        assert!((out.logprob - out.top[0].1).abs() < 1e-6);
    }
}
