//! OpenAI (and Anthropic Messages) wire types, both directions: the JSON bodies aitier reads from
//! clients and writes to them, and the same bodies it writes to and reads
//! from upstreams; the error body; SSE payloads and their parser. Pure data:
//! no I/O, no async runtime, no engine. Validation of field *values* lives
//! in `aitier-core`; this crate only says what shape a body has.

pub mod chat;
pub mod completions;
mod de;
pub mod embeddings;
pub mod error;
pub mod list;
pub mod messages;
pub mod models;
pub mod responses;
pub mod sampling;
pub mod sse;
pub mod tokenize;
pub mod tools;
pub mod usage;

pub use error::{ErrorBody, ErrorDetail};
pub use list::List;
pub use sampling::{Sampling, Stop, StreamOptions};
pub use usage::{PromptTokensDetails, Usage};
