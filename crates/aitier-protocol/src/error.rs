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
