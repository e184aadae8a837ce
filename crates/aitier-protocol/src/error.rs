use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::de::string_or_none;

/// `{"error": {...}}`, the body of every non-2xx response and of a mid-stream
/// SSE error event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default, deserialize_with = "string_or_none")]
    pub param: Option<String>,
    #[serde(default, deserialize_with = "string_or_none")]
    pub code: Option<String>,
}

/// How long a refused request asks to be waited for before a retry, from
/// its `retry-after-ms` header (OpenAI's, in milliseconds; it wins) or
/// `retry-after` (seconds). Whatever the values say (NaN, 1e309, negative),
/// the wait is between 0 and an hour.
pub fn retry_after(retry_after_ms: Option<&str>, retry_after: Option<&str>) -> Option<Duration> {
    let secs = match retry_after_ms.and_then(|v| v.trim().parse::<f64>().ok()) {
        Some(ms) => ms / 1000.0,
        None => retry_after?.trim().parse::<f64>().ok()?,
    };
    Duration::try_from_secs_f64(secs.clamp(0.0, 3600.0)).ok()
}
