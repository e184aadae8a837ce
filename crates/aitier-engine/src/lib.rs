//! The local llama.cpp providers: loads a GGUF file, renders chat templates
//! from its metadata, tokenises, and runs generation on one dedicated engine
//! thread per model (see `worker`); embedding models batch their inputs on
//! an engine thread of their own (see `embed_worker`). This is the only crate that touches
//! llama.cpp; the rest of aitier sees it through `aitier_core::Provider`.

// Without the engine, much of what it uses goes unused.
#![cfg_attr(not(feature = "llama"), allow(dead_code, unused_imports))]

mod config;
#[cfg(feature = "llama")]
mod embed_input;
#[cfg(feature = "llama")]
mod embed_worker;
#[cfg(feature = "llama")]
mod embedder;
#[cfg(feature = "llama")]
mod engine_thread;
mod fair;
#[doc(hidden)]
pub mod fuzzing;
mod gbnf;
#[cfg(feature = "llama")]
mod grammar;
mod job;
#[cfg(feature = "llama")]
mod local;
mod plan;
mod preempt;
mod sampler;
mod schema;
mod segments;
mod sequence;
mod step_cost;
mod template;
mod textout;
#[cfg(feature = "llama")]
mod tokens;
mod toolcall;
#[cfg(feature = "llama")]
mod worker;

pub use config::{EngineConfig, FlashAttn, KvType, Task};

/// Whether this build has a GPU backend (the `cuda` feature) to offload
/// `gpu_layers` to.
pub const GPU_BUILD: bool = cfg!(feature = "cuda");
#[cfg(feature = "llama")]
pub use embedder::EmbeddingModel;
#[cfg(feature = "llama")]
pub use engine_thread::EngineError;
#[cfg(feature = "llama")]
pub use local::LocalModel;
pub use template::{ChatTemplate, TemplateError};
