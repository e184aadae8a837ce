//! `/v1/messages`: Anthropic's Messages API over the same request and event
//! stream as chat. Content blocks become the neutral messages (`tool_use`
//! an assistant's calls, `tool_result` tool turns); the encoder writes the
//! message object, or Anthropic's event sequence.
mod stream;

use aitier_protocol::messages::{
    Block, Content, ErrorDetail, Message as WireMessage, MessagesRequest, StreamEvent, Usage,
};
use aitier_protocol::sse::Payload;
use aitier_protocol::tools::JsonSchemaFormat;
use aitier_protocol::{ErrorBody, Sampling, Stop};

use super::params::{self, check_max_tokens, MAX_STOP};
use super::tools::{check_def, format_constraint, select, unsupported_tool, Asked};
use super::{Answer, Decoded, Delivery, Frontend};
use crate::error::CoreError;
use crate::event::{FinishReason, GenEvent};
use crate::request::{Constrained, GenerateRequest, Message, PromptInput, Role, ToolCall, Tools};

/// The Messages front-end; an encoder for one message.
#[derive(Debug, Clone)]
pub struct Messages {
    id: String,
    model: String,
    /// The request's stop sequences, which `stop_sequence` reports.
    stops: Vec<String>,
    stream: stream::State,
}

fn block_text(at: &str, content: &Content) -> Result<String, CoreError> {
    match content {
        Content::Text(t) => Ok(t.clone()),
        Content::Blocks(blocks) => {
            let mut out = String::new();
            for (j, b) in blocks.iter().enumerate() {
                match (b.kind.as_str(), &b.text) {
                    ("text", Some(t)) => out.push_str(t),
                    ("text", None) => {
                        return Err(CoreError::invalid(
                            format!("{at}[{j}].text"),
                            "a text block needs `text`",
                        ))
                    }
                    (other, _) => return Err(unsupported_block(&format!("{at}[{j}].type"), other)),
                }
            }
            Ok(out)
        }
    }
}

fn unsupported_block(at: &str, kind: &str) -> CoreError {
    CoreError::invalid(
        at,
        format!("content block type '{kind}' is not supported here; use 'text', 'tool_use' or 'tool_result'"),
    )
}

/// One message's blocks: a user turn's tool results become tool turns
/// (before its text), an assistant's `tool_use` blocks its calls.
fn push_message(
    out: &mut Vec<Message>,
    i: usize,
    role: Role,
    content: &Content,
) -> Result<(), CoreError> {
    let Content::Blocks(blocks) = content else {
        out.push(Message::new(role, block_text("", content)?));
        return Ok(());
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let at = format!("messages[{i}].content[{j}]");
        match (b.kind.as_str(), role) {
            ("text", _) => text.push_str(b.text.as_deref().unwrap_or_default()),
            ("tool_use", Role::Assistant) => calls.push(ToolCall {
                id: b.id.clone().unwrap_or_default(),
                name: b.name.clone().unwrap_or_default(),
                arguments: b
                    .input
                    .clone()
                    .unwrap_or_else(|| serde_json::json!({}))
                    .to_string(),
            }),
            ("tool_result", Role::User) => {
                let id = b.tool_use_id.clone().ok_or_else(|| {
                    CoreError::invalid(
                        format!("{at}.tool_use_id"),
                        "a tool_result needs `tool_use_id`",
                    )
                })?;
                let result = match &b.content {
                    Some(c) => block_text(&format!("{at}.content"), c)?,
                    None => String::new(),
                };
                out.push(Message {
                    tool_call_id: Some(id),
                    ..Message::new(Role::Tool, result)
                });
            }
            // The model's own reasoning; a model that wrote none ignores it.
            ("thinking" | "redacted_thinking", Role::Assistant) => {}
            (kind @ ("tool_use" | "tool_result"), _) => {
                return Err(CoreError::invalid(
                    format!("{at}.type"),
                    format!(
                        "a '{kind}' block cannot be in a '{}' message",
                        role.as_str()
                    ),
                ))
            }
            (other, _) => return Err(unsupported_block(&format!("{at}.type"), other)),
        }
    }
    if !text.is_empty() || !calls.is_empty() {
        out.push(Message {
            tool_calls: calls,
            ..Message::new(role, text)
        });
    }
    Ok(())
}

fn conversation(req: &MessagesRequest) -> Result<Vec<Message>, CoreError> {
    if req.messages.is_empty() {
        return Err(CoreError::invalid(
            "messages",
            "`messages` must contain at least one message",
        ));
    }
    let mut out = Vec::new();
    if let Some(system) = &req.system {
        out.push(Message::new(Role::System, block_text("system", system)?));
    }
    for (i, m) in req.messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(CoreError::invalid(
                    format!("messages[{i}].role"),
                    format!("Invalid role '{other}': expected 'user' or 'assistant' (the system prompt goes in `system`)"),
                ))
            }
        };
        push_message(&mut out, i, role, &m.content)?;
    }
    Ok(out)
}

fn tools(req: &MessagesRequest) -> Result<Option<Tools>, CoreError> {
    let mut defs = Vec::new();
    for (i, t) in req.tools.iter().flatten().enumerate() {
        match t.kind.as_deref() {
            None | Some("custom") => {}
            Some(other) => return Err(unsupported_tool(&format!("tools[{i}].type"), other)),
        }
        defs.push(check_def(
            (&format!("tools[{i}].name"), &t.name),
            t.description.clone(),
            (&format!("tools[{i}].input_schema"), t.input_schema.as_ref()),
            None,
        )?);
    }
    let choice = req.tool_choice.as_ref();
    let asked = match choice.map(|c| (c.kind.as_str(), c.name.as_deref())) {
        None => Asked::Unset,
        Some(("auto", _)) => Asked::Auto,
        Some(("any", _)) => Asked::Required,
        Some(("none", _)) => Asked::None,
        Some(("tool", Some(name))) => Asked::Function(name),
        Some(("tool", None)) => {
            return Err(CoreError::invalid(
                "tool_choice.name",
                "a tool_choice of type 'tool' needs `name`",
            ))
        }
        Some((other, _)) => {
            return Err(CoreError::invalid(
                "tool_choice.type",
                format!(
                    "Invalid tool_choice type '{other}': expected 'auto', 'any', 'tool' or 'none'"
                ),
            ))
        }
    };
    let parallel = choice
        .and_then(|c| c.disable_parallel_tool_use)
        .map(|disable| !disable);
    select(
        defs,
        asked,
        parallel,
        |i| format!("tools[{i}].name"),
        ("tool_choice", "tool_choice.name"),
    )
}

/// `output_config.format`: Anthropic's structured outputs (a JSON schema).
fn constraint(req: &MessagesRequest) -> Result<Option<Constrained>, CoreError> {
    let Some(f) = req.output_config.as_ref().and_then(|c| c.format.as_ref()) else {
        return Ok(None);
    };
    if f.kind != "json_schema" {
        return Err(CoreError::invalid(
            "output_config.format.type",
            format!(
                "Invalid output format type '{}': expected 'json_schema'",
                f.kind
            ),
        ));
    }
    let schema = JsonSchemaFormat {
        name: "output".into(),
        description: None,
        schema: f.schema.clone(),
        strict: Some(true),
    };
    let rule = format_constraint(
        ("output_config.format", &f.kind),
        "output_config.format",
        Some(&schema),
    )?;
    Ok(rule.map(|rule| Constrained {
        rule,
        param: "output_config.format",
    }))
}

/// The common request; `max_tokens` is required to generate, not to count.
pub fn request(
    req: &MessagesRequest,
    generating: bool,
) -> Result<(GenerateRequest, Delivery), CoreError> {
    let max_tokens = match req.max_tokens {
        Some(m) => Some(check_max_tokens("max_tokens", m)?),
        None if generating => {
            return Err(CoreError::invalid("max_tokens", "Field required"));
        }
        None => None,
    };
    if let Some(t) = req.temperature.filter(|t| !(0.0..=1.0).contains(t)) {
        return Err(CoreError::invalid(
            "temperature",
            format!("`temperature` must be between 0 and 1, got {t}"),
        ));
    }
    let stops = req.stop_sequences.clone().unwrap_or_default();
    if stops.len() > MAX_STOP {
        return Err(CoreError::invalid(
            "stop_sequences",
            format!("this server takes at most {MAX_STOP} stop sequences"),
        ));
    }
    if req
        .thinking
        .as_ref()
        .is_some_and(|t| t.get("type").and_then(|v| v.as_str()) != Some("disabled"))
    {
        return Err(CoreError::invalid(
            "thinking",
            "extended thinking is not supported by this model",
        ));
    }
    let sampling = Sampling {
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        stream: req.stream,
        stop: (!stops.is_empty()).then_some(Stop::Many(stops)),
        ..Sampling::default()
    };
    let (mut request, delivery) = params::build(
        &sampling,
        PromptInput::Chat(conversation(req)?),
        max_tokens,
        None,
    )?;
    request.tools = tools(req)?;
    request.constraint = constraint(req)?;
    Ok((request, delivery))
}

/// Anthropic's words for why a message ended.
fn stop_reason(reason: Option<FinishReason>, stops: &[String]) -> (Option<String>, Option<String>) {
    let (reason, sequence) = match reason {
        None => return (None, None),
        Some(FinishReason::Stop) => ("end_turn", None),
        Some(FinishReason::StopSequence(i)) => ("stop_sequence", stops.get(i as usize).cloned()),
        Some(FinishReason::Length) => ("max_tokens", None),
        Some(FinishReason::ToolCalls) => ("tool_use", None),
    };
    (Some(reason.into()), sequence)
}

impl Messages {
    fn message(
        &self,
        content: Vec<Block>,
        reason: Option<FinishReason>,
        usage: Usage,
    ) -> WireMessage {
        let (stop_reason, stop_sequence) = stop_reason(reason, &self.stops);
        WireMessage {
            id: self.id.clone(),
            kind: "message".into(),
            role: "assistant".into(),
            model: self.model.clone(),
            content,
            stop_reason,
            stop_sequence,
            usage,
        }
    }
}

impl Frontend for Messages {
    type Request = MessagesRequest;
    type Response = WireMessage;
    type Chunk = StreamEvent;

    fn decode(req: MessagesRequest) -> Result<Decoded<Self>, CoreError> {
        let (request, delivery) = request(&req, true)?;
        let encoder = Messages {
            id: format!("msg_{}", uuid::Uuid::new_v4().simple()),
            model: req.model.clone(),
            stops: request.stop.clone(),
            stream: stream::State::default(),
        };
        Ok(Decoded {
            request,
            delivery,
            model: req.model,
            user: req.metadata.and_then(|m| m.user_id),
            encoder,
        })
    }

    fn respond(self, answer: Answer) -> WireMessage {
        let choice = answer.choices.into_iter().next().unwrap_or_default();
        let mut content = Vec::new();
        if !choice.text.is_empty() {
            content.push(Block::text(choice.text));
        }
        for c in &choice.tool_calls {
            content.push(Block::tool_use(
                c.id.clone(),
                c.name.clone(),
                c.arguments_json(),
            ));
        }
        self.message(content, choice.finish_reason, answer.usage.into())
    }

    fn encode(&mut self, event: GenEvent) -> Vec<Payload<StreamEvent>> {
        stream::encode(self, event)
    }

    fn encode_error(&mut self, error: ErrorBody) -> Vec<Payload<StreamEvent>> {
        vec![Payload::Chunk(StreamEvent::Error {
            error: ErrorDetail::from_openai(None, &error.error),
        })]
    }

    fn event_name(chunk: &StreamEvent) -> Option<&'static str> {
        Some(chunk.name())
    }
}

#[cfg(test)]
mod tests;
