//! Embedding throughput of the engine in-process (no HTTP): the reference
//! sentences of tests/fixtures/embeddings, one input per request one after
//! another, and all of them in one request, on the GGUF model given. Prints
//! one JSON line per case, for bench/run-embed-runtimes.sh.
//!
//! `cargo run --release --example embed_throughput -p aitier-engine -- MODEL.gguf [ROUNDS]`
//! `AITIER_BATCH_SIZE` / `AITIER_SLOTS` / `AITIER_THREADS` change the
//! batch's token budget, its inputs and the threads.
use std::time::Instant;

use aitier_core::{EmbedInput, EmbedRequest, Provider, RequestCtx};
use aitier_engine::{EmbeddingModel, EngineConfig};

fn sentences() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/embeddings/all-minilm-l6-v2.json"
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json");
    doc["sentences"]
        .as_array()
        .expect("sentences")
        .iter()
        .map(|s| s["text"].as_str().expect("text").to_string())
        .collect()
}

async fn embed(m: &EmbeddingModel, texts: Vec<String>) -> u32 {
    let prepared = m
        .prepare_embed(EmbedRequest::new(EmbedInput::Texts(texts)))
        .await
        .expect("prepares");
    m.embed(prepared, RequestCtx::anonymous("bench"))
        .await
        .expect("embeds")
        .prompt_tokens
}

fn env_u32(name: &str) -> Option<u32> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: embed_throughput MODEL.gguf [ROUNDS]");
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(5);
    let mut cfg = EngineConfig::embedding(path, false);
    cfg.batch_size = env_u32("AITIER_BATCH_SIZE").unwrap_or(cfg.batch_size);
    cfg.slots = env_u32("AITIER_SLOTS").unwrap_or(cfg.slots);
    cfg.threads = env_u32("AITIER_THREADS").unwrap_or(cfg.threads);
    let m = EmbeddingModel::load(&cfg).expect("loads");
    let texts = sentences();
    embed(&m, texts.clone()).await; // warm-up
    for case in ["single", "batch"] {
        let start = Instant::now();
        let mut tokens = 0u64;
        for _ in 0..rounds {
            if case == "single" {
                for t in &texts {
                    tokens += u64::from(embed(&m, vec![t.clone()]).await);
                }
            } else {
                tokens += u64::from(embed(&m, texts.clone()).await);
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let n = (rounds * texts.len()) as f64;
        println!(
            "{}",
            serde_json::json!({
                "runtime": "llama.cpp",
                "case": case,
                "batch_tokens": cfg.batch_size,
                "embeddings_per_s": n / secs,
                "tokens_per_s": tokens as f64 / secs,
            })
        );
    }
}
