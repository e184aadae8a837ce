//! Upstream models: any OpenAI-compatible endpoint (vLLM, Ollama,
//! llama.cpp's server, OpenAI, another aitier) as a provider, and the router
//! that spreads a model over several deployments with retries, circuit
//! breakers and health checks. It knows nothing of llama.cpp, HTTP serving
//! or tenancy: the tier admits and meters around it, from its events.

pub mod balance;
pub mod breaker;
pub mod embed_wire;
mod meter;
pub mod router;
pub mod upstream;
pub mod wire;

pub use balance::Balance;
pub use breaker::{Breaker, BreakerState};
pub use router::{Deployment, RetryPolicy, Router};
pub use upstream::{Upstream, UpstreamConfig};
