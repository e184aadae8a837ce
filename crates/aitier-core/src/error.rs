use std::time::Duration;

use aitier_protocol::ErrorDetail;

/// Everything a request can fail with, in domain terms. The server maps each
/// variant to exactly one HTTP status and OpenAI error body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoreError {
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    #[error("{message}")]
    ContextLengthExceeded { message: String },
    #[error("The model `{model}` does not exist")]
    ModelNotFound { model: String },
    #[error("The model `{model}` is still loading")]
    ModelNotReady { model: String },
    /// An operator unloaded it; it serves again once loaded.
    #[error("The model `{model}` is unloaded")]
    ModelUnloaded { model: String },
    #[error("{message}")]
    Overloaded {
        message: String,
        retry_after: Duration,
    },
    /// A tenant's rate or concurrency limit; retrying later can succeed
    /// unless `never`.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Duration,
        never: bool,
    },
    /// A spent token budget: retrying before the period ends cannot help.
    #[error("{message}")]
    QuotaExceeded { message: String },
    /// A dependency the request cannot safely run without (the limit store).
    #[error("{message}")]
    Unavailable { message: String },
    /// An upstream deployment failed before streaming anything. The
    /// message names the deployment, never its address or credentials.
    #[error("{message}")]
    Upstream {
        message: String,
        /// Another attempt (or deployment) may succeed.
        retryable: bool,
        retry_after: Option<Duration>,
    },
    /// An upstream refused the request itself (a 400, 413 or 422): its
    /// status and OpenAI error relayed as they came, so a client of a relay
    /// sees the same `code` and `param` as a client of the upstream.
    #[error("{}", error.message)]
    Refused { status: u16, error: ErrorDetail },
    #[error("the request timed out: {message}")]
    Timeout { message: String },
    /// Details go to the log; clients see a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CoreError {
    /// Whether the model or deployment could not take the request now, so
    /// that another one (a retry, a fallback) may; with how long this one
    /// asked to be left alone, if it said.
    pub fn unavailable(&self) -> Option<Option<Duration>> {
        match self {
            CoreError::Upstream {
                retryable: true,
                retry_after,
                ..
            } => Some(*retry_after),
            CoreError::Overloaded { retry_after, .. } => Some(Some(*retry_after)),
            CoreError::ModelNotReady { .. } | CoreError::ModelUnloaded { .. } => Some(None),
            _ => None,
        }
    }

    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        CoreError::InvalidRequest {
            message: message.into(),
            param: Some(param.into()),
        }
    }
}
