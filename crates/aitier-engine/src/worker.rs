//! The engine thread: owns the llama.cpp context of one model and runs every
//! admitted sequence in one shared batch per decode step. Requests arrive as
//! `Job`s over a bounded channel; events go back over each request's own
//! channel, whose closing (client gone) cancels the request at the next step.
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc;

use aitier_core::{CoreError, FinishReason, GenEvent, SamplingParams, TokenLogprob};
use aitier_protocol::Usage;

use crate::sampler::Sampler;
use crate::textout::{StopMatcher, StopOutcome, Utf8Buffer};

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
    pub events: mpsc::UnboundedSender<GenEvent>,
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
}

pub(crate) struct WorkerConfig {
    pub slots: u32,
    pub ctx_per_slot: u32,
    pub batch_size: u32,
}

struct Request {
    events: mpsc::UnboundedSender<GenEvent>,
    unfinished: u32,
    prompt_tokens: u32,
    completion_tokens: u32,
    logprobs: Option<u32>,
    deadline: Option<Instant>,
}

/// A choice waiting for a slot.
struct Pending {
    req: u64,
    index: u32,
    prompt: Vec<u32>,
    max_new: u32,
    stop: Vec<String>,
    sampling: SamplingParams,
}

struct Seq {
    req: u64,
    index: u32,
    slot: i32,
    /// Prompt then completion.
    tokens: Vec<u32>,
    /// How many of `tokens` are in the KV cache.
    n_past: usize,
    generated: u32,
    max_new: u32,
    sampler: Sampler,
    utf8: Utf8Buffer,
    stop: StopMatcher,
    logprobs: Vec<TokenLogprob>,
    /// Where this sequence's logits sit in the batch just decoded.
    logits_at: Option<i32>,
}

pub(crate) struct Worker<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    cfg: WorkerConfig,
    requests: HashMap<u64, Request>,
    next_req: u64,
    waiting: VecDeque<Pending>,
    running: Vec<Seq>,
    free_slots: Vec<i32>,
    counters: Arc<Counters>,
}

impl<'m> Worker<'m> {
    pub fn new(
        model: &'m LlamaModel,
        ctx: LlamaContext<'m>,
        cfg: WorkerConfig,
        counters: Arc<Counters>,
    ) -> Self {
        let free_slots = (0..cfg.slots as i32).rev().collect();
        Self {
            model,
            ctx,
            cfg,
            requests: HashMap::new(),
            next_req: 0,
            waiting: VecDeque::new(),
            running: Vec::new(),
            free_slots,
            counters,
        }
    }

    /// Runs until every sender of `jobs` is gone and all work has drained.
    pub fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut batch = LlamaBatch::new(self.cfg.batch_size as usize, self.cfg.slots as i32);
        loop {
            if self.running.is_empty() && self.waiting.is_empty() {
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
            self.counters
                .running
                .store(self.running.len() as u64, Ordering::Relaxed);
            self.counters
                .waiting
                .store(self.waiting.len() as u64, Ordering::Relaxed);
            if self.running.is_empty() {
                continue;
            }
            self.step(&mut batch);
        }
    }

    fn accept(&mut self, job: Job) {
        let id = self.next_req;
        self.next_req += 1;
        let prompt_tokens = job.prompts.iter().map(|p| p.len() as u32).sum();
        self.counters
            .prompt_tokens
            .fetch_add(u64::from(prompt_tokens), Ordering::Relaxed);
        let choices = job.prompts.len() as u32 * job.n;
        for (p, prompt) in job.prompts.iter().enumerate() {
            for j in 0..job.n {
                self.waiting.push_back(Pending {
                    req: id,
                    index: p as u32 * job.n + j,
                    prompt: prompt.clone(),
                    max_new: job.max_new[p],
                    stop: job.stop.clone(),
                    sampling: job.sampling.clone(),
                });
            }
        }
        self.requests.insert(
            id,
            Request {
                events: job.events,
                unfinished: choices,
                prompt_tokens,
                completion_tokens: 0,
                logprobs: job.logprobs,
                deadline: job.deadline,
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
        let expired: Vec<u64> = self
            .waiting
            .iter()
            .filter(|p| {
                self.requests
                    .get(&p.req)
                    .and_then(|r| r.deadline)
                    .is_some_and(|d| d <= now)
            })
            .map(|p| p.req)
            .collect();
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
        self.requests.remove(&id);
        self.waiting.retain(|p| p.req != id);
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].req == id {
                let seq = self.running.swap_remove(i);
                self.free(seq.slot);
            } else {
                i += 1;
            }
        }
    }

    fn free(&mut self, slot: i32) {
        if let Err(e) = self.ctx.clear_kv_cache_seq(Some(slot as u32), None, None) {
            tracing::error!(slot, error = %e, "failed to free KV cells");
        }
        self.free_slots.push(slot);
    }

    fn admit(&mut self) {
        while !self.free_slots.is_empty() {
            let Some(p) = self.waiting.pop_front() else {
                break;
            };
            let Some(slot) = self.free_slots.pop() else {
                break;
            };
            let stream = u64::from(p.index);
            self.running.push(Seq {
                req: p.req,
                index: p.index,
                slot,
                tokens: p.prompt,
                n_past: 0,
                generated: 0,
                max_new: p.max_new,
                sampler: Sampler::new(p.sampling, stream),
                utf8: Utf8Buffer::default(),
                stop: StopMatcher::new(p.stop),
                logprobs: Vec::new(),
                logits_at: None,
            });
        }
    }

    /// One decode: every decoding sequence contributes its newest token, then
    /// prompts fill what is left of the batch in chunks.
    fn step(&mut self, batch: &mut LlamaBatch) {
        batch.clear();
        let mut budget = self.cfg.batch_size as usize;
        let mut order: Vec<usize> = (0..self.running.len()).collect();
        // Decoding sequences first so a long prompt never stalls them.
        order.sort_by_key(|&i| self.running[i].tokens.len() - self.running[i].n_past > 1);
        for i in order {
            if budget == 0 {
                break;
            }
            let seq = &mut self.running[i];
            let remaining = seq.tokens.len() - seq.n_past;
            let take = remaining.min(budget);
            let done_after = seq.n_past + take == seq.tokens.len();
            for k in 0..take {
                let pos = seq.n_past + k;
                let logits = done_after && k + 1 == take;
                let tok = LlamaToken(seq.tokens[pos] as i32);
                if batch.add(tok, pos as i32, &[seq.slot], logits).is_err() {
                    tracing::error!("batch overflow; this is a bug");
                    return;
                }
            }
            seq.logits_at = done_after.then(|| batch.n_tokens() - 1);
            seq.n_past += take;
            budget -= take;
        }
        if let Err(e) = self.ctx.decode(batch) {
            tracing::error!(error = %e, "llama_decode failed");
            let failed: Vec<u64> = self.running.iter().map(|s| s.req).collect();
            for id in failed {
                if let Some(r) = self.requests.get(&id) {
                    let _ = r.events.send(GenEvent::Error(CoreError::Internal(format!(
                        "decode failed: {e}"
                    ))));
                }
                self.remove_request(id);
            }
            return;
        }
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
        let s = seq.sampler.sample(logits, &seq.tokens, want);
        let token = LlamaToken(s.token as i32);
        seq.generated += 1;
        self.counters
            .generated_tokens
            .fetch_add(1, Ordering::Relaxed);
        if let Some(r) = self.requests.get_mut(&seq.req) {
            r.completion_tokens += 1;
        }
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
            StopOutcome::Continue(t) => (t, false),
            StopOutcome::Stopped(t) => (t, true),
        };
        if !out.is_empty() || (!seq.logprobs.is_empty() && !stopped) {
            let logprobs = std::mem::take(&mut seq.logprobs);
            if let Some(r) = self.requests.get(&seq.req) {
                let _ = r.events.send(GenEvent::Delta {
                    index: seq.index,
                    text: out,
                    logprobs,
                });
            }
        }
        if stopped {
            return Some(FinishReason::Stop);
        }
        let full = seq.tokens.len() >= self.cfg.ctx_per_slot as usize;
        (seq.generated >= seq.max_new || full).then_some(FinishReason::Length)
    }

    fn finish(&mut self, mut seq: Seq, reason: FinishReason) {
        self.free(seq.slot);
        let Some(r) = self.requests.get_mut(&seq.req) else {
            return;
        };
        let mut tail = String::new();
        if reason == FinishReason::Length {
            tail = seq.utf8.flush();
            tail.push_str(&seq.stop.flush());
        }
        if !tail.is_empty() || !seq.logprobs.is_empty() {
            let _ = r.events.send(GenEvent::Delta {
                index: seq.index,
                text: tail,
                logprobs: std::mem::take(&mut seq.logprobs),
            });
        }
        let _ = r.events.send(GenEvent::Finished {
            index: seq.index,
            reason,
        });
        r.unfinished -= 1;
        if r.unfinished == 0 {
            let usage = Usage::new(r.prompt_tokens, r.completion_tokens, 0);
            let _ = r.events.send(GenEvent::Done { usage });
            self.requests.remove(&seq.req);
            self.counters.finished.fetch_add(1, Ordering::Relaxed);
        }
    }
}
