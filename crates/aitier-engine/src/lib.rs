//! The local llama.cpp provider: loads a GGUF file, renders chat templates
//! from its metadata, tokenises, and runs generation on one dedicated engine
//! thread per model (see `worker`). This is the only crate that touches
//! llama.cpp; the rest of aitier sees it through `aitier_core::Provider`.

mod config;
mod fair;
mod gbnf;
mod grammar;
mod job;
mod local;
mod plan;
mod sampler;
mod schema;
mod segments;
mod template;
mod textout;
mod tokens;
mod toolcall;
mod worker;

pub use config::EngineConfig;
pub use local::{EngineError, LocalModel};
pub use template::{ChatTemplate, TemplateError};
