//! The engine thread of an embedding model: owns its llama.cpp context and
//! packs the inputs of every waiting request into batches of at most
//! `budget` tokens and `max_seqs` sequences, taken in weighted fair order
//! over tenants, one forward pass per batch. A request whose caller is
//! gone is dropped before its inputs are computed.
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::{mpsc, oneshot};

use aitier_core::embed::normalize;
use aitier_core::CoreError;

use crate::fair::FairQueue;
use crate::job::Counters;

/// One request as the engine thread sees it: inputs tokenized and each
/// within the model's window.
pub(crate) struct EmbedJob {
    pub inputs: Vec<Vec<u32>>,
    pub tenant: String,
    pub weight: u32,
    pub deadline: Option<Instant>,
    pub reply: oneshot::Sender<Result<Vec<Vec<f32>>, CoreError>>,
}

pub(crate) struct EmbedLimits {
    /// Tokens per batch; at least the longest input allowed.
    pub budget: u32,
    /// Sequences per batch.
    pub max_seqs: u32,
}

/// One input waiting for a batch.
struct Input {
    job: u64,
    index: usize,
    tokens: Vec<u32>,
}

struct Open {
    reply: oneshot::Sender<Result<Vec<Vec<f32>>, CoreError>>,
    vectors: Vec<Vec<f32>>,
    left: usize,
    deadline: Option<Instant>,
}

/// The next batch: inputs in fair order while they fit.
fn pack(queue: &mut FairQueue<Input>, limits: &EmbedLimits) -> Vec<Input> {
    let mut out = Vec::new();
    let mut room = limits.budget as usize;
    while out.len() < limits.max_seqs as usize {
        let Some(input) = queue.pop_where(|i| i.tokens.len() <= room) else {
            break;
        };
        room -= input.tokens.len();
        out.push(input);
    }
    out
}

pub(crate) struct EmbedWorker<'m> {
    ctx: LlamaContext<'m>,
    limits: EmbedLimits,
    queue: FairQueue<Input>,
    jobs: HashMap<u64, Open>,
    next_job: u64,
    counters: Arc<Counters>,
}

impl<'m> EmbedWorker<'m> {
    pub fn new(ctx: LlamaContext<'m>, limits: EmbedLimits, counters: Arc<Counters>) -> Self {
        Self {
            queue: FairQueue::new(u64::from(limits.budget)),
            ctx,
            limits,
            jobs: HashMap::new(),
            next_job: 0,
            counters,
        }
    }

    /// Runs until every sender of `jobs` is gone and all work has drained.
    pub fn run(mut self, mut jobs: mpsc::Receiver<EmbedJob>) {
        let mut batch = LlamaBatch::new(self.limits.budget as usize, 1);
        loop {
            if self.queue.is_empty() {
                match jobs.blocking_recv() {
                    Some(job) => self.accept(job),
                    None => return,
                }
            }
            while let Ok(job) = jobs.try_recv() {
                self.accept(job);
            }
            self.drop_gone();
            let inputs = pack(&mut self.queue, &self.limits);
            self.counters
                .waiting
                .store(self.queue.len() as u64, Ordering::Relaxed);
            if inputs.is_empty() {
                continue;
            }
            self.counters
                .running
                .store(inputs.len() as u64, Ordering::Relaxed);
            let result = self.forward(&mut batch, &inputs);
            self.counters.running.store(0, Ordering::Relaxed);
            match result {
                Ok(vectors) => self.deliver(inputs, vectors),
                Err(why) => self.fail(&inputs, &why),
            }
        }
    }

    fn accept(&mut self, job: EmbedJob) {
        let id = self.next_job;
        self.next_job += 1;
        let tokens: u64 = job.inputs.iter().map(|i| i.len() as u64).sum();
        self.counters
            .prompt_tokens
            .fetch_add(tokens, Ordering::Relaxed);
        let n = job.inputs.len();
        for (index, tokens) in job.inputs.into_iter().enumerate() {
            let cost = tokens.len() as u64;
            self.queue.push(
                &job.tenant,
                job.weight,
                Input {
                    job: id,
                    index,
                    tokens,
                },
                cost,
            );
        }
        self.jobs.insert(
            id,
            Open {
                reply: job.reply,
                vectors: vec![Vec::new(); n],
                left: n,
                deadline: job.deadline,
            },
        );
    }

    /// Forgets requests whose caller left, or whose deadline passed before
    /// any of their inputs was computed.
    fn drop_gone(&mut self) {
        let now = Instant::now();
        let expired = |j: &Open| j.left == j.vectors.len() && j.deadline.is_some_and(|d| d <= now);
        let gone: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.reply.is_closed() || expired(j))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            let Some(job) = self.jobs.remove(&id) else {
                continue;
            };
            self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
            if job.reply.is_closed() {
                self.counters.cancelled.fetch_add(1, Ordering::Relaxed);
            } else {
                let _ = job.reply.send(Err(CoreError::Timeout {
                    message: "the request waited in the queue past its deadline".into(),
                }));
            }
            self.queue.retain(|i| i.job != id);
        }
    }

    /// One forward pass over `inputs`, each its own sequence; their pooled,
    /// normalised vectors in the same order.
    fn forward(
        &mut self,
        batch: &mut LlamaBatch,
        inputs: &[Input],
    ) -> Result<Vec<Vec<f32>>, String> {
        batch.clear();
        for (seq, input) in inputs.iter().enumerate() {
            for (pos, &t) in input.tokens.iter().enumerate() {
                // Pooling reads every token's output.
                batch
                    .add(LlamaToken(t as i32), pos as i32, &[seq as i32], true)
                    .map_err(|e| e.to_string())?;
            }
        }
        // Causal embedding models keep cells between calls; encoders have none.
        self.ctx.clear_kv_cache();
        self.ctx.decode(batch).map_err(|e| e.to_string())?;
        (0..inputs.len())
            .map(|seq| {
                let mut v = self
                    .ctx
                    .embeddings_seq_ith(seq as i32)
                    .map_err(|e| e.to_string())?
                    .to_vec();
                normalize(&mut v);
                Ok(v)
            })
            .collect()
    }

    fn deliver(&mut self, inputs: Vec<Input>, vectors: Vec<Vec<f32>>) {
        for (input, v) in inputs.into_iter().zip(vectors) {
            let Some(job) = self.jobs.get_mut(&input.job) else {
                continue;
            };
            job.vectors[input.index] = v;
            job.left -= 1;
            if job.left > 0 {
                continue;
            }
            if let Some(job) = self.jobs.remove(&input.job) {
                self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
                self.counters.finished.fetch_add(1, Ordering::Relaxed);
                let _ = job.reply.send(Ok(job.vectors));
            }
        }
    }

    /// A failed pass fails every request that had an input in it.
    fn fail(&mut self, inputs: &[Input], why: &str) {
        tracing::error!(error = %why, inputs = inputs.len(), "embedding batch failed");
        for input in inputs {
            if let Some(job) = self.jobs.remove(&input.job) {
                self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
                let _ = job.reply.send(Err(CoreError::Internal(format!(
                    "embedding batch failed: {why}"
                ))));
                self.queue.retain(|i| i.job != input.job);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(q: &mut FairQueue<Input>, tenant: &str, job: u64, lens: &[usize]) {
        for (index, &n) in lens.iter().enumerate() {
            let input = Input {
                job,
                index,
                tokens: vec![1; n],
            };
            q.push(tenant, 1, input, n as u64);
        }
    }

    #[test]
    fn batches_hold_to_the_budget_and_the_sequence_count() {
        let mut q = FairQueue::new(100);
        push(&mut q, "a", 0, &[40, 40, 40, 10, 10]);
        let limits = EmbedLimits {
            budget: 100,
            max_seqs: 3,
        };
        let lens = |b: &[Input]| b.iter().map(|i| i.tokens.len()).collect::<Vec<_>>();
        // The third 40 does not fit beside two; the 10s wait their turn
        // behind it rather than overtake it within the tenant.
        assert_eq!(lens(&pack(&mut q, &limits)), [40, 40]);
        assert_eq!(lens(&pack(&mut q, &limits)), [40, 10, 10]);
        assert!(pack(&mut q, &limits).is_empty());
    }

    #[test]
    fn a_flood_of_inputs_shares_batches_with_a_second_tenant() {
        let mut q = FairQueue::new(64);
        push(&mut q, "flood", 0, &[16; 64]);
        push(&mut q, "quiet", 1, &[16, 16]);
        let limits = EmbedLimits {
            budget: 256,
            max_seqs: 16,
        };
        let first = pack(&mut q, &limits);
        assert_eq!(first.len(), 16);
        let quiet = first.iter().filter(|i| i.job == 1).count();
        assert_eq!(
            quiet, 2,
            "the quiet tenant's inputs ride in the first batch"
        );
    }
}
