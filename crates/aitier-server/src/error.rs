//! The one place where errors become HTTP statuses and OpenAI error bodies.
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use aitier_core::CoreError;
use aitier_protocol::{ErrorBody, ErrorDetail};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorDetail,
    pub retry_after_ms: Option<u64>,
    /// Sends `x-should-retry: false`: the SDKs retry every 429 otherwise.
    pub no_retry: bool,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: &str,
        code: Option<&str>,
        param: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            body: ErrorDetail {
                message: message.into(),
                kind: kind.into(),
                param,
                code: code.map(Into::into),
            },
            retry_after_ms: None,
            no_retry: false,
        }
    }

    pub fn invalid(param: Option<String>, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            param,
            message,
        )
    }

    pub fn not_found_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("unknown_url"),
            None,
            "Unknown request URL. Please check the URL and method.",
        )
    }

    pub fn body_too_large(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            Some("request_too_large"),
            None,
            message,
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            Some("invalid_api_key"),
            None,
            message,
        )
    }

    pub fn model_not_allowed(model: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            Some("model_not_allowed"),
            Some("model".into()),
            format!("This API key may not use the model `{model}`."),
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            None,
            None,
            "The server had an error while processing your request.",
        )
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::InvalidRequest { message, param } => ApiError::invalid(param, message),
            CoreError::ContextLengthExceeded { message } => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("context_length_exceeded"),
                Some("messages".into()),
                message,
            ),
            e @ CoreError::ModelNotFound { .. } => ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("model_not_found"),
                Some("model".into()),
                e.to_string(),
            ),
            e @ CoreError::ModelNotReady { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("model_loading"),
                Some("model".into()),
                e.to_string(),
            ),
            CoreError::Overloaded {
                message,
                retry_after,
            } => ApiError {
                retry_after_ms: Some(retry_after.as_millis() as u64),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    Some("queue_full"),
                    None,
                    message,
                )
            },
            CoreError::RateLimited {
                message,
                retry_after,
                never,
            } => ApiError {
                retry_after_ms: Some(retry_after.as_millis() as u64),
                no_retry: never,
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    Some("rate_limit_exceeded"),
                    None,
                    message,
                )
            },
            CoreError::QuotaExceeded { message } => ApiError {
                no_retry: true,
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "insufficient_quota",
                    Some("insufficient_quota"),
                    None,
                    message,
                )
            },
            CoreError::Unavailable { message } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("limits_unavailable"),
                None,
                message,
            ),
            CoreError::Upstream {
                message,
                retryable: true,
                retry_after,
            } => ApiError {
                retry_after_ms: retry_after.map(|d| d.as_millis() as u64),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    Some("upstream_unavailable"),
                    None,
                    message,
                )
            },
            CoreError::Upstream { message, .. } => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "server_error",
                Some("upstream_error"),
                None,
                message,
            ),
            e @ CoreError::Timeout { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("queue_timeout"),
                None,
                e.to_string(),
            ),
            CoreError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                ApiError::internal()
            }
        }
    }
}

impl From<aitier_tenancy::AuthError> for ApiError {
    fn from(e: aitier_tenancy::AuthError) -> Self {
        match e {
            aitier_tenancy::AuthError::Store(inner) => {
                tracing::error!(error = %inner, "key store failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    Some("auth_unavailable"),
                    None,
                    "API keys cannot be checked right now.",
                )
            }
            other => ApiError::unauthorized(other.to_string()),
        }
    }
}

impl ApiError {
    /// The body alone, for a mid-stream SSE error event.
    pub fn to_body(&self) -> ErrorBody {
        ErrorBody {
            error: self.body.clone(),
        }
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
