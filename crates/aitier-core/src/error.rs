use std::time::Duration;

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
    #[error("{message}")]
    Overloaded {
        message: String,
        retry_after: Duration,
    },
    #[error("the request timed out: {message}")]
    Timeout { message: String },
    /// Details go to the log; clients see a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CoreError {
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        CoreError::InvalidRequest {
            message: message.into(),
            param: Some(param.into()),
        }
    }
}
