//! Anthropic's Messages API (`/v1/messages`): the request, the message
//! object, its stream events and the error body.
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = messages::MessagesRequest)]
pub struct MessagesRequest {
    pub model: String,
    /// Required by Anthropic; optional here so that its absence gets a 400
    /// that names it (and so `count_tokens` can share the type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    pub messages: Vec<InputMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// Structured outputs: `{"format": {"type": "json_schema", "schema": ...}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig>,
    /// Kept so that validation can refuse extended thinking by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = messages::OutputConfig)]
pub struct OutputConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<OutputFormat>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = messages::OutputFormat)]
pub struct OutputFormat {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = messages::Metadata)]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = messages::InputMessage)]
pub struct InputMessage {
    #[schema(pattern = "^(user|assistant)$")]
    pub role: String,
    pub content: Content,
}

/// A string, or content blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = messages::Content)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Blocks(Vec<Block>),
}

/// A content block: `text`, `tool_use` or `tool_result` (other types are
/// kept to be refused by name). Fields of other types are absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = messages::Block)]
pub struct Block {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use_id: Option<String>,
    /// A tool result's content: text, or blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
}

impl Block {
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            kind: "text".into(),
            text: Some(text.into()),
            ..Self::default()
        }
    }

    pub fn tool_use(id: String, name: String, input: serde_json::Value) -> Self {
        Self {
            kind: "tool_use".into(),
            id: Some(id),
            name: Some(name),
            input: Some(input),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = messages::Tool)]
pub struct Tool {
    /// Absent or `custom` for a client tool; Anthropic's server tools
    /// (`web_search_...`, `bash_...`) name a type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<serde_json::Value>,
}

/// `{"type": "auto" | "any" | "tool" | "none", "name": ..., "disable_parallel_tool_use": ...}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = messages::ToolChoice)]
pub struct ToolChoice {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_parallel_tool_use: Option<bool>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = messages::Usage)]
pub struct Usage {
    /// Prompt tokens that were computed (not read from the prefix cache).
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub cache_read_input_tokens: u32,
    pub cache_creation_input_tokens: u32,
}

impl From<crate::Usage> for Usage {
    fn from(u: crate::Usage) -> Self {
        let cached = u.prompt_tokens_details.cached_tokens.min(u.prompt_tokens);
        Self {
            input_tokens: u.prompt_tokens - cached,
            output_tokens: u.completion_tokens,
            cache_read_input_tokens: cached,
            cache_creation_input_tokens: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = messages::Message)]
pub struct Message {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub role: String,
    pub model: String,
    pub content: Vec<Block>,
    pub stop_reason: Option<String>,
    pub stop_sequence: Option<String>,
    pub usage: Usage,
}

/// `POST /v1/messages/count_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = messages::TokenCount)]
pub struct TokenCount {
    pub input_tokens: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = messages::StreamEvent)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    MessageStart { message: Message },
    ContentBlockStart { index: usize, content_block: Block },
    ContentBlockDelta { index: usize, delta: BlockDelta },
    ContentBlockStop { index: usize },
    MessageDelta { delta: StopDelta, usage: Usage },
    MessageStop,
    Error { error: ErrorDetail },
}

impl StreamEvent {
    /// The event's `type`, which is also its SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            StreamEvent::MessageStart { .. } => "message_start",
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
            StreamEvent::Error { .. } => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = messages::BlockDelta)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    TextDelta { text: String },
    InputJsonDelta { partial_json: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = messages::StopDelta)]
pub struct StopDelta {
    pub stop_reason: Option<String>,
    pub stop_sequence: Option<String>,
}

/// Anthropic's error body: `{"type": "error", "error": {"type", "message"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = messages::ErrorBody)]
pub struct ErrorBody {
    #[serde(rename = "type")]
    pub kind: String,
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = messages::ErrorDetail)]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

impl ErrorDetail {
    /// The Anthropic error for an OpenAI-shaped one: by HTTP status where
    /// there is one, by the OpenAI error type mid-stream.
    pub fn from_openai(status: Option<u16>, e: &crate::ErrorDetail) -> Self {
        let kind = match (status, e.kind.as_str()) {
            (Some(400), _) | (None, "invalid_request_error") => "invalid_request_error",
            (Some(401), _) => "authentication_error",
            (Some(403), _) | (None, "permission_error") => "permission_error",
            (Some(404), _) => "not_found_error",
            (Some(413), _) => "request_too_large",
            (Some(429), _) | (None, "rate_limit_error") => "rate_limit_error",
            (Some(503 | 529), _) => "overloaded_error",
            _ => "api_error",
        };
        let message = match &e.param {
            // Anthropic's messages name the field first: "max_tokens: Field required".
            Some(p) if !e.message.contains(p.as_str()) => format!("{p}: {}", e.message),
            _ => e.message.clone(),
        };
        Self {
            kind: kind.into(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_with_their_names() {
        let events = [
            StreamEvent::MessageStop,
            StreamEvent::ContentBlockStop { index: 1 },
            StreamEvent::ContentBlockDelta {
                index: 0,
                delta: BlockDelta::InputJsonDelta {
                    partial_json: "{\"a".into(),
                },
            },
        ];
        for e in events {
            let v = serde_json::to_value(&e).expect("serializes");
            assert_eq!(v["type"], e.name());
        }
        let v = serde_json::to_value(StreamEvent::ContentBlockDelta {
            index: 0,
            delta: BlockDelta::TextDelta { text: "x".into() },
        })
        .expect("serializes");
        assert_eq!(v["delta"]["type"], "text_delta");
    }

    #[test]
    fn cached_prompt_tokens_are_reported_apart() {
        let u = Usage::from(crate::Usage::new(100, 5, 60));
        assert_eq!((u.input_tokens, u.cache_read_input_tokens), (40, 60));
    }

    #[test]
    fn errors_map_by_status_and_name_their_field() {
        let e = crate::ErrorDetail {
            message: "Field required".into(),
            kind: "invalid_request_error".into(),
            param: Some("max_tokens".into()),
            code: None,
        };
        let a = ErrorDetail::from_openai(Some(400), &e);
        assert_eq!(a.kind, "invalid_request_error");
        assert_eq!(a.message, "max_tokens: Field required");
        assert_eq!(
            ErrorDetail::from_openai(Some(401), &e).kind,
            "authentication_error"
        );
        assert_eq!(
            ErrorDetail::from_openai(None, &e).kind,
            "invalid_request_error"
        );
    }
}
