//! What keeping chat contents as text costs per request: `prepare` (render
//! and tokenize) of one chat, with contents kept as text (the default)
//! against the same model trusting contents (`special_tokens_in_content`,
//! one rendering, one tokenize call), measured in the same run.
//!
//! `cargo run --example prepare_cost -p aitier-engine -- [REPEATS]` (the
//! dev profile builds the engine and llama.cpp optimised)
use std::time::Instant;

use aitier_core::{GenerateRequest, Message, PromptInput, Provider, Role};
use aitier_engine::{EngineConfig, LocalModel};

fn chat() -> GenerateRequest {
    let message = Message::new;
    GenerateRequest {
        max_tokens: Some(1),
        ..GenerateRequest::new(PromptInput::Chat(vec![
            message(Role::System, "You are terse.".into()),
            message(
                Role::User,
                "The quick brown fox jumps over the lazy dog. ".repeat(40),
            ),
        ]))
    }
}

/// Microseconds per `prepare` of `req`, over `repeats` calls.
async fn time(model: &LocalModel, req: &GenerateRequest, repeats: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..repeats {
        let _ = model.prepare(req.clone()).await;
    }
    start.elapsed().as_secs_f64() * 1e6 / repeats as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repeats: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(500);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/SmolLM2-135M-Instruct.Q4_1.gguf"
    );
    let load = |trusted| {
        let mut cfg = EngineConfig::new(path);
        cfg.slots = 1;
        cfg.special_tokens_in_content = trusted;
        LocalModel::load(&cfg)
    };
    let (text, trusted) = (load(false)?, load(true)?);
    let req = chat();
    let tokens = text.prepare(req.clone()).await?.size.prompt_tokens;
    assert_eq!(
        tokens,
        trusted.prepare(req.clone()).await?.size.prompt_tokens
    );
    // Alternating rounds, so that the machine's drift hits both alike.
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        a.push(time(&text, &req, repeats).await);
        b.push(time(&trusted, &req, repeats).await);
    }
    let (a, b) = (median(a), median(b));
    println!("{tokens} prompt tokens; median of 7 rounds of {repeats}:");
    println!("  contents as text  {a:>6.0} us per prepare");
    println!("  contents trusted  {b:>6.0} us per prepare");
    println!("  ratio (as text / trusted): {:.2}", a / b);
    Ok(())
}
