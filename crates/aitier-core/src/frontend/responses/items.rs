//! Conversation items of the Responses API turned into the neutral
//! messages, and normalised for storage (ids, typed parts) so that a stored
//! conversation reads back as the API lists it.
use aitier_protocol::responses::{
    Item, ItemContent, Part, FUNCTION_CALL, FUNCTION_CALL_OUTPUT, MESSAGE,
};

use crate::error::CoreError;
use crate::request::{Message, Role, ToolCall};

/// Where an item came from, for the path an error names.
#[derive(Debug, Clone, Copy)]
pub enum Origin {
    /// `input[i]`.
    Input(usize),
    /// The stored conversation `previous_response_id` continues.
    Previous,
}

impl Origin {
    fn at(self, field: &str) -> String {
        match self {
            Origin::Input(i) if field.is_empty() => format!("input[{i}]"),
            Origin::Input(i) => format!("input[{i}].{field}"),
            Origin::Previous => "previous_response_id".into(),
        }
    }
}

fn role(at: Origin, role: Option<&str>) -> Result<Role, CoreError> {
    match role {
        Some("user") => Ok(Role::User),
        Some("system" | "developer") => Ok(Role::System),
        Some("assistant") => Ok(Role::Assistant),
        Some(other) => Err(CoreError::invalid(
            at.at("role"),
            format!("Invalid role '{other}': expected one of 'user', 'system', 'developer', 'assistant'"),
        )),
        None => Err(CoreError::invalid(at.at("role"), "a message needs `role`")),
    }
}

/// The text of a message's content or a call's output.
fn text(at: Origin, field: &str, content: Option<&ItemContent>) -> Result<String, CoreError> {
    match content {
        None => Err(CoreError::invalid(
            at.at(field),
            format!("this item needs `{field}`"),
        )),
        Some(ItemContent::Text(t)) => Ok(t.clone()),
        Some(ItemContent::Parts(parts)) => {
            let mut out = String::new();
            for (j, p) in parts.iter().enumerate() {
                match p.kind.as_str() {
                    "input_text" | "output_text" | "text" => {
                        out.push_str(p.text.as_deref().unwrap_or_default())
                    }
                    "refusal" => out.push_str(p.refusal.as_deref().unwrap_or_default()),
                    other => {
                        return Err(CoreError::invalid(
                            at.at(&format!("{field}[{j}].type")),
                            format!(
                            "content type '{other}' is not supported by this model; only text is"
                        ),
                        ))
                    }
                }
            }
            Ok(out)
        }
    }
}

fn required<'a>(at: Origin, field: &str, v: Option<&'a String>) -> Result<&'a str, CoreError> {
    v.map(String::as_str)
        .ok_or_else(|| CoreError::invalid(at.at(field), format!("this item needs `{field}`")))
}

/// Appends one item to the conversation. Calls join the assistant turn
/// before them, as chat templates expect them.
pub fn push(out: &mut Vec<Message>, at: Origin, item: &Item) -> Result<(), CoreError> {
    match item.kind.as_deref().unwrap_or(MESSAGE) {
        MESSAGE => {
            let role = role(at, item.role.as_deref())?;
            out.push(Message::new(role, text(at, "content", item.content.as_ref())?));
        }
        FUNCTION_CALL => {
            let call = ToolCall {
                id: required(at, "call_id", item.call_id.as_ref())?.to_string(),
                name: required(at, "name", item.name.as_ref())?.to_string(),
                arguments: item.arguments.clone().unwrap_or_else(|| "{}".into()),
            };
            match out.last_mut() {
                Some(m) if m.role == Role::Assistant => m.tool_calls.push(call),
                _ => out.push(Message {
                    tool_calls: vec![call],
                    ..Message::new(Role::Assistant, "")
                }),
            }
        }
        FUNCTION_CALL_OUTPUT => {
            let id = required(at, "call_id", item.call_id.as_ref())?;
            out.push(Message {
                tool_call_id: Some(id.to_string()),
                ..Message::new(Role::Tool, text(at, "output", item.output.as_ref())?)
            });
        }
        // Reasoning is the model's own; a model that wrote none ignores it.
        "reasoning" => {}
        other => {
            return Err(CoreError::invalid(
                at.at("type"),
                format!("input item type '{other}' is not supported; use 'message', 'function_call' or 'function_call_output'"),
            ))
        }
    }
    Ok(())
}

fn fresh_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// An input item as it is stored and listed: typed, with an id and a
/// status, its text in typed parts.
pub fn normalised(item: &Item) -> Item {
    let kind = item.kind.clone().unwrap_or_else(|| MESSAGE.into());
    let prefix = match kind.as_str() {
        MESSAGE => "msg",
        FUNCTION_CALL => "fc",
        FUNCTION_CALL_OUTPUT => "fco",
        _ => "item",
    };
    let content = match &item.content {
        Some(ItemContent::Text(t)) => {
            let part = if item.role.as_deref() == Some("assistant") {
                Part::output_text(t.clone())
            } else {
                Part {
                    kind: "input_text".into(),
                    text: Some(t.clone()),
                    ..Part::default()
                }
            };
            Some(ItemContent::Parts(vec![part]))
        }
        other => other.clone(),
    };
    Item {
        id: Some(item.id.clone().unwrap_or_else(|| fresh_id(prefix))),
        status: Some(item.status.clone().unwrap_or_else(|| "completed".into())),
        kind: Some(kind),
        content,
        ..item.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(v: serde_json::Value) -> Item {
        serde_json::from_value(v).expect("an item")
    }

    #[test]
    fn calls_join_the_assistant_turn_and_outputs_answer_them() {
        let mut out = Vec::new();
        for (i, v) in [
            serde_json::json!({"role": "user", "content": "weather?"}),
            serde_json::json!({"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{\"a\":1}"}),
            serde_json::json!({"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{}"}),
            serde_json::json!({"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "sunny"}]}),
        ]
        .into_iter()
        .enumerate()
        {
            push(&mut out, Origin::Input(i), &item(v)).expect("valid");
        }
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].role, Role::Assistant);
        assert_eq!(out[1].tool_calls.len(), 2);
        assert_eq!(out[2].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(out[2].content, "sunny");
    }

    #[test]
    fn refusals_name_the_item_field() {
        let cases = [
            (
                serde_json::json!({"role": "wizard", "content": "x"}),
                "input[0].role",
            ),
            (
                serde_json::json!({"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}),
                "input[0].content[0].type",
            ),
            (
                serde_json::json!({"type": "function_call_output", "output": "x"}),
                "input[0].call_id",
            ),
            (
                serde_json::json!({"type": "item_reference", "id": "x"}),
                "input[0].type",
            ),
        ];
        for (v, param) in cases {
            match push(&mut Vec::new(), Origin::Input(0), &item(v.clone())) {
                Err(CoreError::InvalidRequest { param: p, .. }) => {
                    assert_eq!(p.as_deref(), Some(param), "{v}")
                }
                other => panic!("{v}: {other:?}"),
            }
        }
    }

    #[test]
    fn normalised_items_are_typed_with_ids() {
        let n = normalised(&item(serde_json::json!({"role": "user", "content": "hi"})));
        assert_eq!(n.kind.as_deref(), Some("message"));
        assert!(n.id.as_deref().is_some_and(|id| id.starts_with("msg_")));
        let Some(ItemContent::Parts(p)) = n.content else {
            panic!("parts")
        };
        assert_eq!(p[0].kind, "input_text");
    }
}
