//! The middle of aitier: the `Provider` trait every model backend implements
//! (the local llama.cpp engine, later upstream endpoints), validated requests
//! (`GenerateRequest`), the per-request context, the typed event stream a
//! provider returns, the model registry and the domain errors.
//!
//! It knows the OpenAI wire types only to validate them into domain types; it
//! knows nothing of HTTP, llama.cpp or databases.

pub mod calendar;
pub mod error;
pub mod event;
pub mod provider;
pub mod registry;
pub mod request;
pub mod secret;
pub mod validate;

pub use error::CoreError;
pub use event::{EventStream, FinishReason, GenEvent, TokenLogprob};
pub use provider::{
    ModelInfo, Provider, ProviderStats, RequestCtx, RequestHooks, RequestSize, TokenPiece,
};
pub use registry::ModelRegistry;
pub use request::{GenerateRequest, Message, PromptInput, Role, SamplingParams};
pub use secret::Secret;
