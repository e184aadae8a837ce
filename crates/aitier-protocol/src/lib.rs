//! OpenAI wire types: the JSON bodies aitier reads and writes, the error body
//! and SSE framing helpers. Pure data: no I/O, no async runtime, no engine.
//! Validation of field *values* lives in `aitier-core`; this crate only says
//! what shape a body has.

pub mod chat;
pub mod completions;
pub mod error;
pub mod models;
pub mod tokenize;
pub mod usage;

pub use error::{ErrorBody, ErrorDetail};
pub use usage::{PromptTokensDetails, Usage};

/// The final SSE event of every OpenAI stream.
pub const SSE_DONE: &str = "[DONE]";
