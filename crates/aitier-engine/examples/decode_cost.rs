//! Where a streamed token's time goes: one-token `llama_decode` steps under
//! llama-bench's context settings (one sequence, a small context) and under
//! the engine's (slots × ctx cells, one KV stream per slot, or one unified
//! stream), then the same greedy generation through the engine's own worker
//! (`LocalModel`: sampling, detokenising, events). The difference between
//! the worker's gap between tokens and the bare decode is the engine's own
//! per-token overhead.
//!
//! `cargo run --release --example decode_cost -p aitier-engine -- bare|worker|layouts [TOKENS]`
//! (bench/run-decode-cost.sh runs them all, with llama-bench, in one run)
use std::num::NonZeroU32;
use std::time::Instant;

use futures::StreamExt;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use aitier_core::{
    GenEvent, GenerateRequest, Message, PromptInput, Provider, RequestCtx, Role, SamplingParams,
};
use aitier_engine::{EngineConfig, LocalModel};

const MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../models/SmolLM2-135M-Instruct.Q4_1.gguf"
);
const PROMPT: &str = "Write a long story about a lighthouse keeper and the sea.";

struct Setting {
    name: &'static str,
    n_ctx: u32,
    seqs: u32,
    unified: bool,
    /// llama.cpp's flash attention policy: -1 auto (on for the CPU), 0 off.
    flash_attn: i32,
    /// Tokens already in the context when decoding starts.
    depth: usize,
}

const SETTINGS: [Setting; 6] = [
    Setting {
        name: "llama-bench's: 1 sequence, 512 cells",
        n_ctx: 512,
        seqs: 1,
        unified: true,
        flash_attn: -1,
        depth: 0,
    },
    Setting {
        name: "the engine's: 4 slots x 4,096 cells, a stream each",
        n_ctx: 16384,
        seqs: 4,
        unified: false,
        flash_attn: -1,
        depth: 0,
    },
    Setting {
        name: "the engine's, flash attention off",
        n_ctx: 16384,
        seqs: 4,
        unified: false,
        flash_attn: 0,
        depth: 0,
    },
    Setting {
        name: "the engine's, 1,500 tokens deep",
        n_ctx: 16384,
        seqs: 4,
        unified: false,
        flash_attn: -1,
        depth: 1500,
    },
    Setting {
        name: "the engine's, 1,500 tokens deep, flash attention off",
        n_ctx: 16384,
        seqs: 4,
        unified: false,
        flash_attn: 0,
        depth: 1500,
    },
    Setting {
        name: "4 slots sharing 16,384 cells (unified)",
        n_ctx: 16384,
        seqs: 4,
        unified: true,
        flash_attn: -1,
        depth: 0,
    },
];

fn threads() -> i32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as i32)
}

/// Milliseconds per one-token decode, and per reading the logits and
/// taking their argmax, over `tokens` greedy steps after the prompt.
fn bare_decode(
    backend: &LlamaBackend,
    model: &LlamaModel,
    s: &Setting,
    tokens: usize,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(s.n_ctx))
        .with_n_batch(512)
        .with_n_ubatch(512)
        .with_n_seq_max(s.seqs)
        .with_kv_unified(s.unified)
        .with_flash_attention_policy(s.flash_attn)
        .with_n_threads(threads())
        .with_n_threads_batch(threads());
    let mut ctx = model.new_context(backend, params)?;
    let vocab = model.vocab();
    let mut prompt = vocab.tokenize(PROMPT.as_bytes(), true, false);
    // A long context: the prompt's text again and again.
    while prompt.len() < s.depth {
        let again = prompt[1..].to_vec();
        prompt.extend(again);
    }
    if s.depth > 0 {
        prompt.truncate(s.depth);
    }
    let mut batch = LlamaBatch::new(512, 1);
    for (c, chunk) in prompt.chunks(512).enumerate() {
        batch.clear();
        let last = (c + 1) * 512 >= prompt.len();
        for (k, &t) in chunk.iter().enumerate() {
            let logits = last && k + 1 == chunk.len();
            batch.add(t, (c * 512 + k) as i32, &[0], logits)?;
        }
        ctx.decode(&mut batch)?;
    }
    let (mut decoding, mut reading) = (0.0, 0.0);
    for pos in (prompt.len() as i32..).take(tokens) {
        let t = Instant::now();
        let logits = ctx.get_logits_ith(batch.n_tokens() - 1);
        let mut best = 0;
        for (i, &x) in logits.iter().enumerate() {
            if x > logits[best] && !vocab.is_eog(LlamaToken(i as i32)) {
                best = i;
            }
        }
        reading += t.elapsed().as_secs_f64();
        batch.clear();
        batch.add(LlamaToken(best as i32), pos, &[0], true)?;
        let t = Instant::now();
        ctx.decode(&mut batch)?;
        decoding += t.elapsed().as_secs_f64();
    }
    let per = |s: f64| s * 1e3 / tokens as f64;
    Ok((per(decoding), per(reading)))
}

/// Milliseconds per step of `streams` sequences of `context` tokens each
/// decoding one token: alone, and beside a 64-token prompt chunk of one more
/// sequence (a mixed step), with one KV stream per sequence or one unified.
fn shared_steps(
    backend: &LlamaBackend,
    model: &LlamaModel,
    unified: bool,
    flash_attn: i32,
    streams: i32,
    context: usize,
    steps: usize,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let seqs = streams + 1;
    let params = LlamaContextParams::default()
        // Room for the decoders' steps and for every chunk of the prompt.
        .with_n_ctx(NonZeroU32::new(seqs as u32 * (context + 65 * steps) as u32))
        .with_n_batch(512)
        .with_n_ubatch(512)
        .with_n_seq_max(seqs as u32)
        .with_kv_unified(unified)
        .with_flash_attention_policy(flash_attn)
        .with_n_threads(threads())
        .with_n_threads_batch(threads());
    let mut ctx = model.new_context(backend, params)?;
    let vocab = model.vocab();
    let text = "The lighthouse keeper watched the sea every night. ".repeat(context / 8);
    let mut prompt = vocab.tokenize(text.as_bytes(), true, false);
    prompt.truncate(context);
    let mut batch = LlamaBatch::new(512, seqs);
    for s in 0..streams {
        for chunk in prompt.chunks(512).enumerate() {
            batch.clear();
            let (c, toks) = chunk;
            for (k, &t) in toks.iter().enumerate() {
                batch.add(t, (c * 512 + k) as i32, &[s], false)?;
            }
            ctx.decode(&mut batch)?;
        }
    }
    let token = prompt[prompt.len() / 2];
    let mut time = |with_chunk: bool, from: usize| -> Result<f64, Box<dyn std::error::Error>> {
        let started = Instant::now();
        for step in 0..steps {
            batch.clear();
            for s in 0..streams {
                batch.add(token, (from + step) as i32, &[s], true)?;
            }
            if with_chunk {
                for k in 0..64 {
                    batch.add(token, (step * 64 + k) as i32, &[streams], k == 63)?;
                }
            }
            ctx.decode(&mut batch)?;
        }
        Ok(started.elapsed().as_secs_f64() * 1e3 / steps as f64)
    };
    let alone = time(false, context)?;
    let mixed = time(true, context + steps)?;
    Ok((alone, mixed))
}

/// Milliseconds between streamed tokens through the engine's worker.
async fn worker_gap(
    model: &LocalModel,
    tokens: u32,
    banned: &[u32],
) -> Result<f64, Box<dyn std::error::Error>> {
    let mut req = GenerateRequest::new(PromptInput::Chat(vec![Message::new(Role::User, PROMPT)]));
    req.max_tokens = Some(tokens);
    req.sampling = SamplingParams {
        temperature: 0.0,
        logit_bias: banned.iter().map(|&t| (t, f32::NEG_INFINITY)).collect(),
        ..SamplingParams::default()
    };
    let prepared = model.prepare(req).await?;
    let mut events = model
        .run(prepared, RequestCtx::anonymous("decode-cost"))
        .await?;
    let (mut first, mut last, mut n) = (None, None, 0u32);
    while let Some(ev) = events.next().await {
        if let GenEvent::Delta { tokens, .. } = ev {
            let now = Instant::now();
            first.get_or_insert(now);
            last = Some(now);
            n += tokens;
        }
    }
    let (Some(first), Some(last)) = (first, last) else {
        return Err("no tokens came".into());
    };
    Ok((last - first).as_secs_f64() * 1e3 / f64::from(n.saturating_sub(1).max(1)))
}

/// The end-of-generation tokens, banned so every run decodes `tokens`.
fn end_tokens(model: &LlamaModel) -> Vec<u32> {
    let vocab = model.vocab();
    (0..vocab.n_tokens())
        .filter(|&t| vocab.is_eog(LlamaToken(t)))
        .map(|t| t as u32)
        .collect()
}

/// One measurement per run, printed as `name<TAB>milliseconds` lines:
/// `bare` (each context setting), `worker`, or `layouts`. One process per
/// mode, since the engine keeps its llama.cpp backend for the life of the
/// process; bench/run-decode-cost.sh alternates them.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "bare".into());
    let tokens: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(128);
    if mode == "worker" {
        let banned = {
            let backend = LlamaBackend::init()?;
            let model = LlamaModel::load_from_file(&backend, MODEL, &LlamaModelParams::default())?;
            end_tokens(&model)
        };
        let model = LocalModel::load(&EngineConfig::new(MODEL))?;
        // A first run warms the caches and the prefix cache, as a server's
        // earlier requests would have.
        worker_gap(&model, 8, &banned).await?;
        let gap = worker_gap(&model, tokens as u32, &banned).await?;
        println!("worker\t{gap:.3}");
        return Ok(());
    }
    let backend = LlamaBackend::init()?;
    let model = LlamaModel::load_from_file(&backend, MODEL, &LlamaModelParams::default())?;
    match mode.as_str() {
        "bare" => {
            for s in &SETTINGS {
                let (decode, read) = bare_decode(&backend, &model, s, tokens)?;
                println!("bare {}\t{:.3}\t{read:.3}", s.name, decode + read);
            }
        }
        "layouts" => {
            for (unified, flash_attn) in [(false, -1), (true, -1), (false, 0), (true, 0)] {
                let name = match (unified, flash_attn) {
                    (false, -1) => "a stream per sequence",
                    (true, -1) => "one unified stream",
                    (false, _) => "a stream per sequence, flash attention off",
                    (true, _) => "one unified stream, flash attention off",
                };
                let (alone, mixed) =
                    shared_steps(&backend, &model, unified, flash_attn, 8, 512, 16)?;
                println!("decode step, {name}\t{alone:.2}");
                println!("mixed step, {name}\t{mixed:.2}");
            }
        }
        other => return Err(format!("unknown mode {other}: bare, worker or layouts").into()),
    }
    Ok(())
}
