//! The middle of aitier: the `Provider` trait every model backend implements
//! (the local llama.cpp engine, upstream endpoints, routers over both), the
//! API front-ends that decode wire requests into validated
//! `GenerateRequest`s (or `EmbedRequest`s) and encode a provider's answers back, the per-request
//! context, the typed event stream, the model registry, the domain errors
//! and the wall clock.
//!
//! It knows the OpenAI wire types, to decode and encode them; it knows
//! nothing of HTTP, llama.cpp or databases.

pub mod affinity;
pub mod clock;
pub mod embed;
pub mod error;
pub mod event;
pub mod frontend;
pub mod provider;
pub mod registry;
pub mod request;
pub mod secret;

pub use embed::{EmbedInput, EmbedRequest, Embeddings};
pub use error::CoreError;
pub use event::{EventStream, FinishReason, GenEvent, TokenLogprob};
pub use provider::{
    EngineHistograms, ModelInfo, Prepared, Provider, ProviderStats, RequestCtx, RequestSize,
    TokenPiece,
};
pub use registry::ModelRegistry;
pub use request::{
    Constrained, Constraint, GenerateRequest, Message, PromptInput, Role, SamplingParams, ToolCall,
    ToolChoice, ToolDef, Tools,
};
pub use secret::Secret;
