//! The engine thread: owns the llama.cpp context of one model and runs every
//! admitted sequence in one shared batch per decode step. Requests arrive as
//! `Job`s over a bounded channel; events go back over each request's own
//! channel, whose closing (client gone) cancels the request at the next step.
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::SeqState;
use tokio::sync::mpsc;

use aitier_core::{CoreError, FinishReason, GenEvent, TokenLogprob};
use aitier_protocol::Usage;

use crate::fair::FairQueue;
use crate::grammar;
use crate::job::{Counters, Job, WorkerConfig};
use crate::plan::{plan_step, Demand, Limits, StepPlan};
use crate::preempt::{pick_paused, Candidate, Holdings};
use crate::sampler::Sampler;
use crate::sequence::{Pending, Request, Seq, SlotCache, Waiting};
use crate::step_cost::{StepCostModel, StepShape};
use crate::textout::{StopMatcher, StopOutcome, Utf8Buffer};
use llguidance::Matcher;

mod slots;

pub(crate) struct Worker<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    cfg: WorkerConfig,
    requests: HashMap<u64, Request>,
    next_req: u64,
    waiting: FairQueue<Waiting<SeqState>>,
    running: Vec<Seq>,
    slots: Vec<SlotCache>,
    /// Bumped on every use of a slot, for LRU.
    clock: u64,
    last_step_short_only: bool,
    /// Decode steps run so far; each sequence notes the last one it was in.
    steps: u64,
    /// What steps cost here, which sizes shared steps.
    step_cost: StepCostModel,
    counters: Arc<Counters>,
}

impl<'m> Worker<'m> {
    pub fn new(
        model: &'m LlamaModel,
        ctx: LlamaContext<'m>,
        cfg: WorkerConfig,
        counters: Arc<Counters>,
    ) -> Self {
        let slots = (0..cfg.slots).map(|_| SlotCache::default()).collect();
        Self {
            model,
            ctx,
            waiting: FairQueue::new(u64::from(cfg.batch_size)),
            cfg,
            requests: HashMap::new(),
            next_req: 0,
            running: Vec::new(),
            slots,
            clock: 0,
            last_step_short_only: false,
            steps: 0,
            step_cost: StepCostModel::default(),
            counters,
        }
    }

    /// Runs until every sender of `jobs` is gone and all work has drained.
    pub fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut batch = LlamaBatch::new(self.cfg.batch_size as usize, self.cfg.slots as i32);
        loop {
            if self.running.is_empty() && self.waiting.is_empty() {
                // The last step's ends are told before sleeping, or the
                // gauges would show them running until the next request.
                self.publish();
                match jobs.blocking_recv() {
                    Some(job) => self.accept(job),
                    None => return,
                }
            }
            while let Ok(job) = jobs.try_recv() {
                self.accept(job);
            }
            self.drop_cancelled();
            self.expire_waiting();
            self.admit();
            self.publish();
            if self.running.is_empty() {
                continue;
            }
            self.step(&mut batch);
        }
    }

    /// The gauges the metrics read.
    fn publish(&self) {
        self.counters
            .running
            .store(self.running.len() as u64, Ordering::Relaxed);
        self.counters
            .waiting
            .store(self.waiting.len() as u64, Ordering::Relaxed);
        self.counters
            .kv_cells_used
            .store(self.cells_used(), Ordering::Relaxed);
    }

    /// Cells holding tokens: running sequences' positions, and the
    /// prefixes idle slots keep.
    fn cells_used(&self) -> u64 {
        let running: usize = self.running.iter().map(|s| s.n_past).sum();
        let idle: usize = self
            .slots
            .iter()
            .filter(|s| !s.busy)
            .map(|s| s.tokens.len())
            .sum();
        (running + idle) as u64
    }

    fn accept(&mut self, job: Job) {
        let id = self.next_req;
        self.next_req += 1;
        let prompt_tokens = job.prompts.iter().map(|p| p.len() as u32).sum();
        self.counters
            .prompt_tokens
            .fetch_add(u64::from(prompt_tokens), Ordering::Relaxed);
        let choices = job.prompts.len() as u32 * job.n;
        tracing::trace!(req = id, tenant = %job.tenant, prompt_tokens, choices, "accepted");
        for (p, prompt) in job.prompts.iter().enumerate() {
            for j in 0..job.n {
                let cost = prompt.len() as u64 + u64::from(job.max_new[p]);
                self.waiting.push(
                    &job.tenant,
                    job.weight,
                    Waiting::New(Box::new(Pending {
                        req: id,
                        tenant: job.tenant.clone(),
                        weight: job.weight,
                        index: p as u32 * job.n + j,
                        prompt_idx: p,
                        prompt: prompt.clone(),
                        max_new: job.max_new[p],
                        stop: job.stop.clone(),
                        sampling: job.sampling.clone(),
                        matcher: job.matcher.clone(),
                        submitted: job.submitted,
                        span: job.span.clone(),
                        queue_span: job.queue_span.clone(),
                    })),
                    cost,
                );
            }
        }
        self.requests.insert(
            id,
            Request {
                events: job.events,
                unfinished: choices,
                prompt_tokens,
                completion_tokens: 0,
                cached_tokens: 0,
                logprobs: job.logprobs,
                deadline: job.deadline,
                n: job.n,
                prefilled: vec![false; job.prompts.len()],
            },
        );
    }

    fn drop_cancelled(&mut self) {
        let gone: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| r.events.is_closed())
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            tracing::debug!(req = id, "client gone; cancelling");
            self.counters.cancelled.fetch_add(1, Ordering::Relaxed);
            self.remove_request(id);
        }
    }

    fn expire_waiting(&mut self) {
        let now = Instant::now();
        // A paused sequence has started: its deadline has passed its test.
        let mut expired: Vec<u64> = self
            .waiting
            .iter()
            .filter_map(|w| match w {
                Waiting::New(p) => Some(p.req),
                Waiting::Paused(_) => None,
            })
            .filter(|req| {
                self.requests
                    .get(req)
                    .and_then(|r| r.deadline)
                    .is_some_and(|d| d <= now)
            })
            .collect();
        expired.sort_unstable();
        expired.dedup();
        for id in expired {
            if let Some(r) = self.requests.get(&id) {
                let _ = r.events.send(GenEvent::Error(CoreError::Timeout {
                    message: "the request waited in the queue past its deadline".into(),
                }));
            }
            self.remove_request(id);
        }
    }

    /// Forgets a request and frees the KV cells of its running choices.
    fn remove_request(&mut self, id: u64) {
        if self.requests.remove(&id).is_some() {
            self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        self.waiting.retain(|w| w.req() != id);
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].req == id {
                let seq = self.running.swap_remove(i);
                self.release(seq);
            } else {
                i += 1;
            }
        }
    }

    /// Fills free slots from the queue in fair order; with none free, a
    /// tenant over its share of the slots hands one to a waiting tenant
    /// (see `preempt`).
    fn admit(&mut self) {
        loop {
            let requests = &self.requests;
            // A request's further choices wait until its first one has
            // prefilled the prompt, then share those cells.
            let ready = |w: &Waiting<SeqState>| match w {
                Waiting::New(p) => requests
                    .get(&p.req)
                    .is_some_and(|r| p.index.is_multiple_of(r.n) || r.prefilled[p.prompt_idx]),
                Waiting::Paused(_) => true,
            };
            let next = if self.slots.iter().any(|s| !s.busy) {
                self.waiting.pop_where(ready)
            } else {
                let held =
                    Holdings::new(self.running.iter().map(|s| (s.tenant.as_str(), s.weight)));
                let Some(w) = self
                    .waiting
                    .pop_where(|w| ready(w) && held.lender_for(w.tenant(), w.weight()).is_some())
                else {
                    break;
                };
                let lender = held.lender_for(w.tenant(), w.weight());
                let candidates: Vec<Candidate> = self
                    .running
                    .iter()
                    .map(|s| Candidate {
                        tenant: &s.tenant,
                        computed: s.n_past,
                        req: s.req,
                    })
                    .collect();
                if let Some(i) = lender.and_then(|l| pick_paused(&candidates, l)) {
                    self.pause(i);
                }
                Some(w)
            };
            let handed_back = match next {
                Some(Waiting::New(p)) => self.start(p).err().map(Waiting::New),
                Some(Waiting::Paused(p)) => self.resume(p).err().map(Waiting::Paused),
                None => break,
            };
            if let Some(w) = handed_back {
                // No slot after all (one was free, or was just freed, so
                // this should not happen): it keeps its place at the head of
                // its tenant's queue, already charged.
                let (tenant, weight) = (w.tenant().to_string(), w.weight());
                self.waiting.push_front(&tenant, weight, w, 0);
                break;
            }
        }
    }

    /// Gives a waiting choice a slot, or hands it back when none is free.
    fn start(&mut self, p: Box<Pending>) -> Result<(), Box<Pending>> {
        let Some((slot, cached)) = self.place(&p.prompt, true) else {
            return Err(p);
        };
        let p = *p;
        if let Some(r) = self.requests.get_mut(&p.req) {
            if p.index.is_multiple_of(r.n) {
                r.cached_tokens += cached as u32;
            }
        }
        self.counters
            .histograms
            .queue_wait_seconds
            .observe(p.submitted.elapsed().as_secs_f64());
        let stream = u64::from(p.index);
        let phase = tracing::info_span!(
            parent: &p.span,
            "prefill",
            prompt_tokens = p.prompt.len() as i64,
            cached_tokens = cached as i64
        );
        self.running.push(Seq {
            req: p.req,
            tenant: p.tenant,
            weight: p.weight,
            index: p.index,
            prompt_idx: p.prompt_idx,
            prompt_len: p.prompt.len(),
            slot: slot as i32,
            tokens: p.prompt,
            n_past: cached,
            generated: 0,
            max_new: p.max_new,
            sampler: Sampler::new(p.sampling, stream),
            utf8: Utf8Buffer::default(),
            stop: StopMatcher::new(p.stop),
            logprobs: Vec::new(),
            unsent: 0,
            logits_at: None,
            fresh: true,
            last_step: 0,
            matcher: p.matcher,
            mask: None,
            phase,
            span: p.span,
        });
        Ok(())
    }

    /// One decode: every decoding sequence contributes its newest token, then
    /// prompts fill what is left of the batch in chunks; then every sequence
    /// whose logits came out samples its next token.
    fn step(&mut self, batch: &mut LlamaBatch) {
        batch.clear();
        let plan = self.plan();
        self.last_step_short_only = plan.short_only;
        let Some(shape) = self.fill(batch, &plan.take) else {
            return;
        };
        // The masks for the tokens this step samples depend only on the
        // tokens already sampled: compute them while llama.cpp decodes.
        let mut pending: Vec<(usize, Matcher)> = self
            .running
            .iter_mut()
            .enumerate()
            .filter(|(_, s)| s.logits_at.is_some())
            .filter_map(|(i, s)| s.matcher.take().map(|m| (i, m)))
            .collect();
        let counters = self.counters.clone();
        let (decoded, masks) =
            grammar::masks_beside(&mut pending, &counters, || self.decode(batch, &plan, shape));
        let mut failed = Vec::new();
        for ((i, matcher), mask) in pending.into_iter().zip(masks) {
            let Some(seq) = self.running.get_mut(i) else {
                continue;
            };
            match mask {
                Ok(mask) => seq.mask = Some(mask),
                Err(e) => failed.push((seq.req, e)),
            }
            seq.matcher = Some(matcher);
        }
        for (req, why) in failed {
            self.fail_request(req, format!("constrained decoding failed: {why}"));
        }
        if decoded {
            self.sample_all();
        }
    }

    fn fail_request(&mut self, id: u64, why: String) {
        tracing::error!(req = id, %why, "request failed in the engine");
        if let Some(r) = self.requests.get(&id) {
            let _ = r.events.send(GenEvent::Error(CoreError::Internal(why)));
        }
        self.remove_request(id);
    }

    fn plan(&self) -> StepPlan {
        let demands: Vec<Demand> = self
            .running
            .iter()
            .map(|s| Demand {
                tenant: &s.tenant,
                left: s.tokens.len() - s.n_past,
                depth: s.n_past,
                fresh: s.fresh,
                slot: s.slot,
                last_step: s.last_step,
            })
            .collect();
        let limits = Limits {
            batch_size: self.cfg.batch_size as usize,
            prefill_chunk: self.cfg.prefill_chunk as usize,
            step_tokens: self.cfg.step_tokens as usize,
            cell_cost: self.step_cost.cell_cost(),
        };
        plan_step(&demands, self.last_step_short_only, &limits)
    }

    /// Puts `take` tokens of each planned sequence into the batch and
    /// returns the step's shape; None when the batch overflowed (a planning
    /// bug).
    fn fill(&mut self, batch: &mut LlamaBatch, plan: &[(usize, usize)]) -> Option<StepShape> {
        self.steps += 1;
        let mut shape = StepShape::default();
        for &(i, take) in plan {
            let seq = &mut self.running[i];
            shape += if seq.tokens.len() - seq.n_past == 1 {
                StepShape::decode(seq.n_past)
            } else {
                StepShape::chunk(seq.n_past, take)
            };
            seq.fresh = false;
            seq.last_step = self.steps;
            let done_after = seq.n_past + take == seq.tokens.len();
            for k in 0..take {
                let pos = seq.n_past + k;
                let logits = done_after && k + 1 == take;
                let tok = LlamaToken(seq.tokens[pos] as i32);
                if batch.add(tok, pos as i32, &[seq.slot], logits).is_err() {
                    tracing::error!("batch overflow; this is a bug");
                    return None;
                }
            }
            seq.logits_at = done_after.then(|| batch.n_tokens() - 1);
            if seq.n_past + take >= seq.prompt_len {
                if let Some(r) = self.requests.get_mut(&seq.req) {
                    r.prefilled[seq.prompt_idx] = true;
                }
            }
            let in_prompt = seq.prompt_len.saturating_sub(seq.n_past).min(take);
            self.counters
                .prompt_computed
                .fetch_add(in_prompt as u64, Ordering::Relaxed);
            seq.n_past += take;
        }
        Some(shape)
    }

    /// Runs the batch and learns from its cost; false when llama.cpp
    /// failed, after failing every running request.
    fn decode(&mut self, batch: &mut LlamaBatch, plan: &StepPlan, shape: StepShape) -> bool {
        let started = Instant::now();
        let decoded = self.ctx.decode(batch);
        let secs = started.elapsed().as_secs_f64();
        let ms = secs * 1e3;
        let tokens = batch.n_tokens();
        let h = &self.counters.histograms;
        h.step_seconds.observe(secs);
        h.step_tokens.observe(f64::from(tokens));
        tracing::trace!(
            tokens,
            sequences = self.running.len(),
            decode_cells = shape.decode_cells,
            prompt_cells = shape.prompt_cells,
            short_only = plan.short_only,
            ms,
            "decode step"
        );
        let Err(e) = decoded else {
            self.step_cost.observe(shape, ms);
            return true;
        };
        tracing::error!(error = %e, "llama_decode failed");
        let failed: Vec<u64> = self.running.iter().map(|s| s.req).collect();
        let slots: Vec<usize> = self.running.iter().map(|s| s.slot as usize).collect();
        for id in failed {
            self.fail_request(id, format!("decode failed: {e}"));
        }
        // What this batch would have written is unknown: cache nothing.
        for slot in slots {
            self.clear_slot(slot, 0);
        }
        false
    }

    fn sample_all(&mut self) {
        let mut finished = Vec::new();
        for i in 0..self.running.len() {
            let Some(at) = self.running[i].logits_at.take() else {
                continue;
            };
            if let Some(reason) = self.sample_one(i, at) {
                finished.push((i, reason));
            }
        }
        // Highest index first so swap_remove keeps the others valid.
        finished.sort_by_key(|f| std::cmp::Reverse(f.0));
        for (i, reason) in finished {
            let seq = self.running.swap_remove(i);
            self.finish(seq, reason);
        }
    }

    fn sample_one(&mut self, i: usize, at: i32) -> Option<FinishReason> {
        let vocab = self.model.vocab();
        let seq = &mut self.running[i];
        let want = self.requests.get(&seq.req).and_then(|r| r.logprobs);
        let logits = self.ctx.get_logits_ith(at);
        let mask = seq.mask.take();
        let s = seq.sampler.sample(logits, &seq.tokens, want, mask.as_ref());
        let token = LlamaToken(s.token as i32);
        let grammar_done = match seq.matcher.as_mut() {
            None => false,
            Some(m) => match m.consume_token(s.token) {
                Ok(()) => m.is_stopped(),
                Err(e) => {
                    // The mask allowed it, so this is llguidance's failure.
                    tracing::error!(error = %e, "grammar refused a token its mask allowed");
                    true
                }
            },
        };
        seq.generated += 1;
        if seq.generated == 1 {
            seq.phase = tracing::info_span!(parent: &seq.span, "decode");
        }
        self.counters
            .generated_tokens
            .fetch_add(1, Ordering::Relaxed);
        if let Some(r) = self.requests.get_mut(&seq.req) {
            r.completion_tokens += 1;
        }
        seq.unsent += 1;
        if vocab.is_eog(token) {
            return Some(FinishReason::Stop);
        }
        seq.tokens.push(s.token);
        let bytes = vocab.token_to_piece(token, false, None);
        if want.is_some() {
            let piece = |t: u32| vocab.token_to_piece(LlamaToken(t as i32), true, None);
            seq.logprobs.push(TokenLogprob {
                token: String::from_utf8_lossy(&bytes).into_owned(),
                bytes: bytes.clone(),
                logprob: s.logprob,
                top: s
                    .top
                    .iter()
                    .map(|&(t, lp)| {
                        let b = piece(t);
                        (String::from_utf8_lossy(&b).into_owned(), b, lp)
                    })
                    .collect(),
            });
        }
        let text = seq.utf8.push(&bytes);
        let (out, stopped) = match seq.stop.push(&text) {
            StopOutcome::Continue(t) => (t, None),
            StopOutcome::Stopped(t, i) => (t, Some(i)),
        };
        if !out.is_empty() || (!seq.logprobs.is_empty() && stopped.is_none()) {
            let logprobs = std::mem::take(&mut seq.logprobs);
            if let Some(r) = self.requests.get(&seq.req) {
                let _ = r.events.send(GenEvent::Delta {
                    index: seq.index,
                    text: out,
                    logprobs,
                    tokens: std::mem::take(&mut seq.unsent),
                });
            }
        }
        if let Some(i) = stopped {
            // At most MAX_STOP (4) sequences: the index fits.
            return Some(FinishReason::StopSequence(i as u8));
        }
        if grammar_done {
            return Some(FinishReason::Stop);
        }
        let full = seq.tokens.len() >= self.cfg.ctx_per_slot as usize;
        (seq.generated >= seq.max_new || full).then_some(FinishReason::Length)
    }

    fn finish(&mut self, mut seq: Seq, reason: FinishReason) {
        let (req, index) = (seq.req, seq.index);
        let Some(r) = self.requests.get_mut(&req) else {
            self.release(seq);
            return;
        };
        let mut tail = String::new();
        if reason == FinishReason::Length {
            tail = seq.utf8.flush();
            tail.push_str(&seq.stop.flush());
        }
        if !tail.is_empty() || !seq.logprobs.is_empty() {
            let _ = r.events.send(GenEvent::Delta {
                index,
                text: tail,
                logprobs: std::mem::take(&mut seq.logprobs),
                tokens: std::mem::take(&mut seq.unsent),
            });
        }
        let _ = r.events.send(GenEvent::Finished { index, reason });
        r.unfinished -= 1;
        let done = r.unfinished == 0;
        if done {
            let usage = Usage::new(r.prompt_tokens, r.completion_tokens, r.cached_tokens);
            let _ = r.events.send(GenEvent::done(usage));
        }
        self.release(seq);
        if done {
            self.requests.remove(&req);
            self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.counters.finished.fetch_add(1, Ordering::Relaxed);
        }
    }
}
