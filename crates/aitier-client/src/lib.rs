//! One typed client for aitier, over two transports behind the same type:
//!
//! - [`Client::http`]: a separate aitier (or any OpenAI-compatible
//!   server) over HTTP, with pooled connections, timeouts and the OpenAI
//!   SDKs' retries;
//! - [`Client::in_process`]: the tier inside this process
//!   ([`Tier::from_config`] takes the same configuration file as `aitier
//!   serve`): the same validation, keys, limits, scheduler and ledger, with
//!   no socket.
//!
//! Requests and answers are the OpenAI wire types of [`types`]; errors are
//! [`Error`], carrying the OpenAI error body either way, so that an app can
//! move between a shared service and an embedded tier by changing how its
//! `Client` is built.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use aitier_client::{types::chat::ChatCompletionRequest, Client};
//!
//! let client = Client::http("http://127.0.0.1:8080/v1", None)?;
//! let req: ChatCompletionRequest = serde_json::from_value(serde_json::json!({
//!     "model": "smollm2-135m-instruct",
//!     "messages": [{"role": "user", "content": "Say hello."}],
//! }))?;
//! let answer = client.chat(req).await?;
//! println!("{:?}", answer.choices[0].message.content);
//! # Ok(()) }
//! ```
mod error;
mod http;
#[cfg(feature = "in-process")]
mod in_process;

use futures::stream::BoxStream;

pub use aitier_protocol as types;
#[cfg(feature = "in-process")]
pub use aitier_server::tier::Tier;
pub use error::Error;
pub use http::HttpOptions;

use types::chat::{ChatCompletion, ChatCompletionChunk, ChatCompletionRequest};
use types::completions::{Completion, CompletionRequest};
use types::embeddings::{EmbeddingRequest, EmbeddingResponse};
use types::models::ModelList;

/// A stream of an API's chunks: it ends after the last one, or with the
/// error that cut it.
pub type ChunkStream<C> = BoxStream<'static, Result<C, Error>>;

const CHAT: &str = "/chat/completions";
const COMPLETIONS: &str = "/completions";
const EMBEDDINGS: &str = "/embeddings";
const MODELS: &str = "/models";

#[derive(Clone)]
enum Transport {
    Http(http::Http),
    #[cfg(feature = "in-process")]
    InProcess(in_process::InProcess),
}

/// A client of one tier; cheap to clone, and clones share connections.
#[derive(Clone)]
pub struct Client {
    transport: Transport,
}

impl Client {
    /// A tier at `base_url` (up to and including `/v1`, as the OpenAI SDKs
    /// take it), with the default timeouts and retries.
    pub fn http(base_url: &str, api_key: Option<&str>) -> Result<Self, Error> {
        Self::http_with(base_url, api_key, HttpOptions::default())
    }

    pub fn http_with(
        base_url: &str,
        api_key: Option<&str>,
        options: HttpOptions,
    ) -> Result<Self, Error> {
        Ok(Self {
            transport: Transport::Http(http::Http::new(base_url, api_key, options)?),
        })
    }

    /// The tier in this process. Calls are checked against `api_key` as an
    /// HTTP request with that key would be; without a key they are the
    /// open tier's, which only works while its database holds no key.
    #[cfg(feature = "in-process")]
    pub fn in_process(tier: std::sync::Arc<Tier>, api_key: Option<&str>) -> Self {
        Self {
            transport: Transport::InProcess(in_process::InProcess::new(
                tier,
                api_key.map(str::to_string),
            )),
        }
    }

    /// A chat completion, whole (`stream` is ignored).
    pub async fn chat(&self, mut req: ChatCompletionRequest) -> Result<ChatCompletion, Error> {
        req.sampling.stream = None;
        req.sampling.stream_options = None;
        match &self.transport {
            Transport::Http(h) => h.post(CHAT, &req).await,
            #[cfg(feature = "in-process")]
            Transport::InProcess(t) => t.generate::<chat::Chat>(&v1(CHAT), req).await,
        }
    }

    /// A chat completion as it is generated.
    pub async fn chat_stream(
        &self,
        mut req: ChatCompletionRequest,
    ) -> Result<ChunkStream<ChatCompletionChunk>, Error> {
        req.sampling.stream = Some(true);
        match &self.transport {
            Transport::Http(h) => h.post_stream(CHAT, &req).await,
            #[cfg(feature = "in-process")]
            Transport::InProcess(t) => t.generate_stream::<chat::Chat>(&v1(CHAT), req).await,
        }
    }

    /// A legacy text completion, whole (`stream` is ignored).
    pub async fn complete(&self, mut req: CompletionRequest) -> Result<Completion, Error> {
        req.sampling.stream = None;
        req.sampling.stream_options = None;
        match &self.transport {
            Transport::Http(h) => h.post(COMPLETIONS, &req).await,
            #[cfg(feature = "in-process")]
            Transport::InProcess(t) => {
                t.generate::<completions::Completions>(&v1(COMPLETIONS), req)
                    .await
            }
        }
    }

    /// A legacy text completion as it is generated.
    pub async fn complete_stream(
        &self,
        mut req: CompletionRequest,
    ) -> Result<ChunkStream<Completion>, Error> {
        req.sampling.stream = Some(true);
        match &self.transport {
            Transport::Http(h) => h.post_stream(COMPLETIONS, &req).await,
            #[cfg(feature = "in-process")]
            Transport::InProcess(t) => {
                t.generate_stream::<completions::Completions>(&v1(COMPLETIONS), req)
                    .await
            }
        }
    }

    pub async fn embed(&self, req: EmbeddingRequest) -> Result<EmbeddingResponse, Error> {
        match &self.transport {
            Transport::Http(h) => h.post(EMBEDDINGS, &req).await,
            #[cfg(feature = "in-process")]
            Transport::InProcess(t) => t.embed(req).await,
        }
    }

    /// The models this client's key may use.
    pub async fn models(&self) -> Result<ModelList, Error> {
        match &self.transport {
            Transport::Http(h) => h.get(MODELS).await,
            #[cfg(feature = "in-process")]
            Transport::InProcess(t) => t.models().await,
        }
    }
}

#[cfg(feature = "in-process")]
use aitier_core::frontend::{chat, completions};

/// The API path an in-process call is recorded under, as over HTTP.
#[cfg(feature = "in-process")]
fn v1(path: &str) -> String {
    format!("/v1{path}")
}
