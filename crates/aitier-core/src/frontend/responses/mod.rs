//! `/v1/responses`: OpenAI's Responses API over the same request and event
//! stream as chat. `decode_with` takes the stored conversation that
//! `previous_response_id` continues (the caller loads it, scoped to its
//! owner); the encoder builds the response object, whole or as the
//! Responses event sequence, and carries what is stored.
mod items;
mod stream;

use aitier_protocol::responses::{
    IncompleteDetails, Input, Item, ItemContent, Part, ResponseObject, ResponseUsage,
    ResponsesRequest, StreamEvent, TextConfig, TextFormat, ToolChoice as WireChoice, FUNCTION_CALL,
    MESSAGE, RESPONSE,
};
use aitier_protocol::sse::Payload;
use aitier_protocol::tools::JsonSchemaFormat;
use aitier_protocol::{ErrorBody, Sampling, Usage};

use super::params::{self, check_max_tokens};
use super::tools::{check_def, format_constraint, select, unsupported_tool, Asked};
use super::{Answer, Decoded, Frontend};
use crate::error::CoreError;
use crate::event::{FinishReason, GenEvent};
use crate::request::{Constrained, GenerateRequest, Message, PromptInput, Role, ToolCall, Tools};

pub use items::Origin;

/// The Responses front-end; an encoder for one response.
#[derive(Debug, Clone)]
pub struct Responses {
    /// The response as it starts: `in_progress`, no output.
    base: ResponseObject,
    /// The whole input the model saw but the instructions: the continued
    /// conversation, then this request's items.
    input: Vec<Item>,
    stream: stream::State,
}

fn tools(req: &ResponsesRequest) -> Result<Option<Tools>, CoreError> {
    let mut defs = Vec::new();
    for (i, t) in req.tools.iter().flatten().enumerate() {
        if t.kind != "function" {
            return Err(unsupported_tool(&format!("tools[{i}].type"), &t.kind));
        }
        defs.push(check_def(
            (
                &format!("tools[{i}].name"),
                t.name.as_deref().unwrap_or_default(),
            ),
            t.description.clone(),
            (&format!("tools[{i}].parameters"), t.parameters.as_ref()),
            t.strict,
        )?);
    }
    let asked = match &req.tool_choice {
        None => Asked::Unset,
        Some(WireChoice::Mode(m)) => Asked::mode(m)?,
        Some(WireChoice::Named { kind, name }) => match (kind.as_str(), name) {
            ("function", Some(n)) => Asked::Function(n),
            ("function", None) => {
                return Err(CoreError::invalid(
                    "tool_choice.name",
                    "a function tool choice needs `name`",
                ))
            }
            (other, _) => {
                return Err(CoreError::invalid(
                    "tool_choice.type",
                    format!("tool_choice type '{other}' is not supported; only 'function' is"),
                ))
            }
        },
    };
    select(
        defs,
        asked,
        req.parallel_tool_calls,
        |i| format!("tools[{i}].name"),
        ("tool_choice", "tool_choice.name"),
    )
}

fn constraint(text: Option<&TextConfig>) -> Result<Option<Constrained>, CoreError> {
    let Some(f) = text.and_then(|t| t.format.as_ref()) else {
        return Ok(None);
    };
    let schema = JsonSchemaFormat {
        name: f.name.clone().unwrap_or_default(),
        description: f.description.clone(),
        schema: f.schema.clone(),
        strict: f.strict,
    };
    let rule = format_constraint(("text.format", &f.kind), "text.format", Some(&schema))?;
    Ok(rule.map(|rule| Constrained {
        rule,
        param: "text.format",
    }))
}

/// What aitier does not do, refused by name rather than ignored.
fn refuse_unsupported(req: &ResponsesRequest) -> Result<(), CoreError> {
    if req.background == Some(true) {
        return Err(CoreError::invalid(
            "background",
            "background responses are not supported; run it in the foreground (stream it to see progress)",
        ));
    }
    match req.truncation.as_deref() {
        None | Some("disabled") => Ok(()),
        Some(other) => Err(CoreError::invalid(
            "truncation",
            format!("truncation '{other}' is not supported; only 'disabled' is (an input over the context is a 400)"),
        )),
    }
}

/// The response as it starts: `in_progress`, with the request's settings.
fn started(req: &ResponsesRequest, request: &GenerateRequest) -> ResponseObject {
    ResponseObject {
        id: format!("resp_{}", uuid::Uuid::new_v4().simple()),
        object: RESPONSE.into(),
        created_at: crate::clock::unix_secs(),
        status: "in_progress".into(),
        instructions: req.instructions.clone(),
        max_output_tokens: req.max_output_tokens,
        model: req.model.clone(),
        parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
        previous_response_id: req.previous_response_id.clone(),
        temperature: Some(request.sampling.temperature),
        top_p: Some(request.sampling.top_p),
        tool_choice: req
            .tool_choice
            .clone()
            .unwrap_or_else(|| WireChoice::Mode("auto".into())),
        tools: req.tools.clone().unwrap_or_default(),
        text: req.text.clone().unwrap_or_else(|| TextConfig {
            format: Some(TextFormat {
                kind: "text".into(),
                name: None,
                description: None,
                schema: None,
                strict: None,
            }),
        }),
        truncation: "disabled".into(),
        metadata: req.metadata.clone().unwrap_or_default(),
        store: req.store.unwrap_or(true),
        user: req.user.clone(),
        ..ResponseObject::default()
    }
}

impl Responses {
    /// `history` is the conversation `previous_response_id` names, as
    /// `conversation` returned it when that response was stored.
    pub fn decode_with(
        req: ResponsesRequest,
        history: Vec<Item>,
    ) -> Result<Decoded<Self>, CoreError> {
        refuse_unsupported(&req)?;
        let new_items = match &req.input {
            Input::Text(t) => vec![Item {
                role: Some("user".into()),
                content: Some(ItemContent::Text(t.clone())),
                ..Item::default()
            }],
            Input::Items(items) => items.clone(),
        };
        if new_items.is_empty() && history.is_empty() {
            return Err(CoreError::invalid(
                "input",
                "`input` must contain at least one item",
            ));
        }
        let mut messages: Vec<Message> = req
            .instructions
            .iter()
            .map(|i| Message::new(Role::System, i.clone()))
            .collect();
        for item in &history {
            items::push(&mut messages, Origin::Previous, item)?;
        }
        for (i, item) in new_items.iter().enumerate() {
            items::push(&mut messages, Origin::Input(i), item)?;
        }
        let max_tokens = req
            .max_output_tokens
            .map(|m| check_max_tokens("max_output_tokens", m))
            .transpose()?;
        let sampling = Sampling {
            temperature: req.temperature,
            top_p: req.top_p,
            stream: req.stream,
            user: req.user.clone(),
            prompt_cache_key: req.prompt_cache_key.clone(),
            ..Sampling::default()
        };
        let (mut request, delivery) =
            params::build(&sampling, PromptInput::Chat(messages), max_tokens, None)?;
        request.tools = tools(&req)?;
        request.constraint = constraint(req.text.as_ref())?;
        let mut input = history;
        input.extend(new_items.iter().map(items::normalised));
        let base = started(&req, &request);
        Ok(Decoded {
            request,
            delivery,
            model: req.model,
            user: req.user,
            encoder: Responses {
                base,
                input,
                stream: stream::State::default(),
            },
        })
    }

    pub fn id(&self) -> &str {
        &self.base.id
    }

    /// Whether the client asked for the response to be kept.
    pub fn store(&self) -> bool {
        self.base.store
    }

    /// The input items as listed and continued from.
    pub fn input(&self) -> &[Item] {
        &self.input
    }

    /// The id of output item `index`: the same whether the response was
    /// streamed or not, so that what a client saw is what is stored.
    fn item_id(&self, kind: &str, index: usize) -> String {
        let prefix = if kind == MESSAGE { "msg" } else { "fc" };
        let hex = self.base.id.trim_start_matches("resp_");
        format!("{prefix}_{hex}{index:02}")
    }

    fn message(&self, index: usize, text: String, status: &str) -> Item {
        Item {
            kind: Some(MESSAGE.into()),
            id: Some(self.item_id(MESSAGE, index)),
            role: Some("assistant".into()),
            status: Some(status.into()),
            content: Some(ItemContent::Parts(vec![Part::output_text(text)])),
            ..Item::default()
        }
    }

    fn call(&self, index: usize, call: &ToolCall, status: &str) -> Item {
        Item {
            kind: Some(FUNCTION_CALL.into()),
            id: Some(self.item_id(FUNCTION_CALL, index)),
            status: Some(status.into()),
            call_id: Some(call.id.clone()),
            name: Some(call.name.clone()),
            arguments: Some(call.arguments.clone()),
            ..Item::default()
        }
    }

    /// The finished response: `incomplete` when it ran out of tokens.
    fn finished(
        &self,
        output: Vec<Item>,
        reason: Option<FinishReason>,
        usage: Usage,
    ) -> ResponseObject {
        let cut = reason == Some(FinishReason::Length);
        ResponseObject {
            status: if cut { "incomplete" } else { "completed" }.into(),
            completed_at: (!cut).then(crate::clock::unix_secs),
            incomplete_details: cut.then(|| IncompleteDetails {
                reason: "max_output_tokens".into(),
            }),
            output,
            usage: Some(ResponseUsage::from(usage)),
            ..self.base.clone()
        }
    }
}

/// The conversation a later response continues from this one: what it
/// was given and what it answered.
pub fn conversation(input: &[Item], output: &[Item]) -> Vec<Item> {
    input.iter().chain(output).cloned().collect()
}

impl Frontend for Responses {
    type Request = ResponsesRequest;
    type Response = ResponseObject;
    type Chunk = StreamEvent;

    fn decode(req: ResponsesRequest) -> Result<Decoded<Self>, CoreError> {
        Self::decode_with(req, Vec::new())
    }

    fn respond(self, answer: Answer) -> ResponseObject {
        let choice = answer.choices.into_iter().next().unwrap_or_default();
        let status = if choice.finish_reason == Some(FinishReason::Length) {
            "incomplete"
        } else {
            "completed"
        };
        let mut output = Vec::new();
        if !choice.text.is_empty() || choice.tool_calls.is_empty() {
            output.push(self.message(0, choice.text, status));
        }
        for call in &choice.tool_calls {
            output.push(self.call(output.len(), call, "completed"));
        }
        self.finished(output, choice.finish_reason, answer.usage)
    }

    fn encode(&mut self, event: GenEvent) -> Vec<Payload<StreamEvent>> {
        stream::encode(self, event)
    }

    fn encode_error(&mut self, error: ErrorBody) -> Vec<Payload<StreamEvent>> {
        stream::failed(self, error)
    }

    fn event_name(chunk: &StreamEvent) -> Option<&'static str> {
        Some(chunk.event.name())
    }
}

#[cfg(test)]
mod tests;
