//! What the engine's integration tests share: the default model's engine.
#![allow(dead_code)]
use std::path::PathBuf;

use aitier_engine::EngineConfig;

/// The repository's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An engine for the default model with `slots` slots of 1,024 tokens.
pub fn default_model(slots: u32) -> EngineConfig {
    let path = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "{} missing: run `make model`",
        path.display()
    );
    let mut cfg = EngineConfig::new(path);
    cfg.slots = slots;
    cfg.ctx_per_slot = 1024;
    cfg
}

/// An engine for the default embedding model (all-MiniLM-L6-v2).
pub fn embedding_model(matryoshka: bool) -> EngineConfig {
    let path = root().join("models/all-MiniLM-L6-v2.F32.gguf");
    assert!(
        path.is_file(),
        "{} missing: run `make model`",
        path.display()
    );
    EngineConfig::embedding(path, matryoshka)
}
