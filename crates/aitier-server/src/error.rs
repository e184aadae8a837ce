//! The one place where errors become HTTP statuses and OpenAI error bodies:
//! every domain, tenancy, store and extractor error has its `From` here,
//! and the server's own refusals are named constructors.
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use aitier_core::CoreError;
use aitier_protocol::{ErrorBody, ErrorDetail};
use aitier_tenancy::{AuthError, StoreError};

pub(crate) const INVALID: &str = "invalid_request_error";
const SERVER: &str = "server_error";

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorDetail,
    pub retry_after_ms: Option<u64>,
    /// Sends `x-should-retry: false`: the SDKs retry every 429 otherwise.
    pub no_retry: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorDetail {
                message: message.into(),
                kind: kind.into(),
                param: None,
                code: None,
            },
            retry_after_ms: None,
            no_retry: false,
        }
    }

    pub fn code(mut self, code: &str) -> Self {
        self.body.code = Some(code.into());
        self
    }

    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.body.param = Some(param.into());
        self
    }

    fn retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after_ms = after.map(|d| d.as_millis() as u64);
        self
    }

    fn no_retry(mut self, no_retry: bool) -> Self {
        self.no_retry = no_retry;
        self
    }

    pub fn invalid(param: Option<String>, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, INVALID, message);
        e.body.param = param;
        e
    }

    pub fn not_found_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            INVALID,
            "Unknown request URL. Please check the URL and method.",
        )
        .code("unknown_url")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            INVALID,
            "This method is not allowed on this URL.",
        )
        .code("method_not_allowed")
    }

    pub fn request_timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, INVALID, message).code("request_timeout")
    }

    pub fn body_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, INVALID, message).code("request_too_large")
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, INVALID, message).code("invalid_api_key")
    }

    pub fn forbidden(param: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_error", message)
            .code("forbidden")
            .param(param)
    }

    pub fn model_not_allowed(model: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            format!("This API key may not use the model `{model}`."),
        )
        .code("model_not_allowed")
        .param("model")
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            SERVER,
            "The server had an error while processing your request.",
        )
    }

    /// The drain timeout came before the request finished; another
    /// replica can take it.
    pub fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            SERVER,
            "The server is shutting down; retry the request.",
        )
        .code("shutting_down")
    }

    /// An upstream's own refusal, relayed as it came.
    fn relayed(status: u16, error: ErrorDetail) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            body: error,
            retry_after_ms: None,
            no_retry: false,
        }
    }

    /// The body alone, for a mid-stream SSE error event.
    pub fn to_body(&self) -> ErrorBody {
        ErrorBody {
            error: self.body.clone(),
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        let unavailable =
            |message: String| Self::new(StatusCode::SERVICE_UNAVAILABLE, SERVER, message);
        let limited =
            |message: String| Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message);
        match e {
            CoreError::InvalidRequest { message, param } => ApiError::invalid(param, message),
            CoreError::ContextLengthExceeded { message } => {
                ApiError::invalid(Some("messages".into()), message).code("context_length_exceeded")
            }
            CoreError::Refused { status, error } => ApiError::relayed(status, error),
            e @ CoreError::ModelNotFound { .. } => {
                Self::new(StatusCode::NOT_FOUND, INVALID, e.to_string())
                    .code("model_not_found")
                    .param("model")
            }
            e @ CoreError::ModelNotReady { .. } => unavailable(e.to_string())
                .code("model_loading")
                .param("model"),
            e @ CoreError::ModelUnloaded { .. } => unavailable(e.to_string())
                .code("model_unloaded")
                .param("model"),
            CoreError::Overloaded {
                message,
                retry_after,
            } => limited(message)
                .code("queue_full")
                .retry_after(Some(retry_after)),
            CoreError::RateLimited {
                message,
                retry_after,
                never,
            } => limited(message)
                .code("rate_limit_exceeded")
                .retry_after(Some(retry_after))
                .no_retry(never),
            CoreError::QuotaExceeded { message } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "insufficient_quota", message)
                    .code("insufficient_quota")
                    .no_retry(true)
            }
            CoreError::Unavailable { message } => unavailable(message).code("limits_unavailable"),
            CoreError::Upstream {
                message,
                retryable: true,
                retry_after,
            } => unavailable(message)
                .code("upstream_unavailable")
                .retry_after(retry_after),
            CoreError::Upstream { message, .. } => {
                Self::new(StatusCode::BAD_GATEWAY, SERVER, message).code("upstream_error")
            }
            e @ CoreError::Timeout { .. } => unavailable(e.to_string()).code("queue_timeout"),
            CoreError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                ApiError::internal()
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Store(inner) => {
                tracing::error!(error = %inner, "key store failed");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    SERVER,
                    "API keys cannot be checked right now.",
                )
                .code("auth_unavailable")
            }
            other => ApiError::unauthorized(other.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => {
                Self::new(StatusCode::NOT_FOUND, INVALID, format!("{what} not found"))
                    .code("not_found")
            }
            StoreError::Conflict(m) => Self::new(StatusCode::CONFLICT, INVALID, m).code("conflict"),
            StoreError::Invalid(m) => ApiError::invalid(None, m),
            StoreError::Db(detail) => {
                tracing::error!(%detail, "tenancy store failed");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    SERVER,
                    "The tenancy database is unavailable.",
                )
                .code("store_unavailable")
            }
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::invalid(None, e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, message = %self.body.message, "request failed");
        } else {
            tracing::debug!(status = %self.status, message = %self.body.message, "request rejected");
        }
        let mut resp = (self.status, Json(self.to_body())).into_response();
        if self.no_retry {
            resp.headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
        }
        if let Some(ms) = self.retry_after_ms {
            let h = resp.headers_mut();
            let secs = ms.div_ceil(1000).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                h.insert("retry-after", v);
            }
            if let Ok(v) = HeaderValue::from_str(&ms.to_string()) {
                h.insert("retry-after-ms", v);
            }
        }
        resp
    }
}
