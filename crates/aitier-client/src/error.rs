//! What a call can fail with, the same whichever transport carried it.
use std::time::Duration;

use aitier_protocol::ErrorDetail;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The tier refused or failed the request: the HTTP status it has (or
    /// would have had over HTTP) and its OpenAI error body.
    #[error("{status} {}: {}", error.kind, error.message)]
    Api {
        status: u16,
        error: ErrorDetail,
        /// How long the tier asked to be left alone before a retry.
        retry_after: Option<Duration>,
    },
    /// A stream failed after it started; the chunks before it stand.
    #[error("the stream failed: {}", error.message)]
    Stream { error: ErrorDetail },
    /// The tier could not be reached, or the connection broke.
    #[error("cannot reach the tier: {0}")]
    Connection(String),
    #[error("the tier did not answer within {0:?}")]
    Timeout(Duration),
    /// An answer not of the shape the API has.
    #[error("unexpected answer: {0}")]
    Decode(String),
}

impl Error {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The error body's `code` (`model_not_found`, `rate_limit_exceeded`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { error, .. } | Error::Stream { error } => error.code.as_deref(),
            _ => None,
        }
    }
}
