//! The local llama.cpp providers: loads a GGUF file, renders chat templates
//! from its metadata, tokenises, and runs generation on one dedicated engine
//! thread per model (see `worker`); embedding models batch their inputs on
//! an engine thread of their own (see `embed_worker`). This is the only crate that touches
//! llama.cpp; the rest of aitier sees it through `aitier_core::Provider`.

mod config;
mod embed_input;
mod embed_worker;
mod embedder;
mod engine_thread;
mod fair;
mod gbnf;
mod grammar;
mod job;
mod local;
mod plan;
mod sampler;
mod schema;
mod segments;
mod sequence;
mod template;
mod textout;
mod tokens;
mod toolcall;
mod worker;

pub use config::{EngineConfig, Task};
pub use embedder::EmbeddingModel;
pub use engine_thread::EngineError;
pub use local::LocalModel;
pub use template::{ChatTemplate, TemplateError};
