//! The Responses event sequence: `response.created` and `.in_progress`,
//! then each output item opened, filled and closed (a message's text part,
//! or a function call's arguments), then `response.completed` (or
//! `.incomplete` / `.failed`), every event numbered.
use aitier_protocol::responses::{
    Event, Item, Part, ResponseError, StreamEvent, FUNCTION_CALL, MESSAGE,
};
use aitier_protocol::sse::Payload;
use aitier_protocol::ErrorBody;

use super::Responses;
use crate::event::{FinishReason, GenEvent};
use crate::request::ToolCall;

/// The item being written.
#[derive(Debug, Clone, Default)]
enum Open {
    #[default]
    Nothing,
    Text(String),
    Call(ToolCall),
}

#[derive(Debug, Clone, Default)]
pub struct State {
    sequence: u64,
    open: Open,
    output: Vec<Item>,
    reason: Option<FinishReason>,
}

type Out = Vec<Payload<StreamEvent>>;

fn emit(r: &mut Responses, out: &mut Out, event: Event) {
    out.push(Payload::Chunk(StreamEvent {
        event,
        sequence_number: r.stream.sequence,
    }));
    r.stream.sequence += 1;
}

/// Closes the open item; `status` is its end (`incomplete` when cut short).
fn close(r: &mut Responses, out: &mut Out, status: &str) {
    let index = r.stream.output.len();
    match std::mem::take(&mut r.stream.open) {
        Open::Nothing => {}
        Open::Text(text) => {
            let item_id = r.item_id(MESSAGE, index);
            let part = Part::output_text(text.clone());
            emit(
                r,
                out,
                Event::TextDone {
                    item_id: item_id.clone(),
                    output_index: index,
                    content_index: 0,
                    text: text.clone(),
                    logprobs: Vec::new(),
                },
            );
            emit(
                r,
                out,
                Event::PartDone {
                    item_id,
                    output_index: index,
                    content_index: 0,
                    part,
                },
            );
            let item = r.message(index, text, status);
            r.stream.output.push(item.clone());
            emit(
                r,
                out,
                Event::ItemDone {
                    output_index: index,
                    item,
                },
            );
        }
        Open::Call(call) => {
            emit(
                r,
                out,
                Event::ArgumentsDone {
                    item_id: r.item_id(FUNCTION_CALL, index),
                    output_index: index,
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                },
            );
            let item = r.call(index, &call, "completed");
            r.stream.output.push(item.clone());
            emit(
                r,
                out,
                Event::ItemDone {
                    output_index: index,
                    item,
                },
            );
        }
    }
}

fn text(r: &mut Responses, out: &mut Out, delta: String) {
    if matches!(r.stream.open, Open::Call(_)) {
        close(r, out, "completed");
    }
    let index = r.stream.output.len();
    let item_id = r.item_id(MESSAGE, index);
    if matches!(r.stream.open, Open::Nothing) {
        r.stream.open = Open::Text(String::new());
        let item = Item {
            content: Some(aitier_protocol::responses::ItemContent::Parts(Vec::new())),
            ..r.message(index, String::new(), "in_progress")
        };
        emit(
            r,
            out,
            Event::ItemAdded {
                output_index: index,
                item,
            },
        );
        emit(
            r,
            out,
            Event::PartAdded {
                item_id: item_id.clone(),
                output_index: index,
                content_index: 0,
                part: Part::output_text(""),
            },
        );
    }
    if let Open::Text(t) = &mut r.stream.open {
        t.push_str(&delta);
    }
    emit(
        r,
        out,
        Event::TextDelta {
            item_id,
            output_index: index,
            content_index: 0,
            delta,
            logprobs: Vec::new(),
        },
    );
}

fn call_piece(r: &mut Responses, out: &mut Out, delta: aitier_protocol::tools::ToolCallDelta) {
    let f = delta.function.unwrap_or_default();
    if let Some(id) = delta.id {
        close(r, out, "completed");
        let call = ToolCall {
            id,
            name: f.name.clone().unwrap_or_default(),
            arguments: String::new(),
        };
        let index = r.stream.output.len();
        let item = Item {
            arguments: Some(String::new()),
            ..r.call(index, &call, "in_progress")
        };
        r.stream.open = Open::Call(call);
        emit(
            r,
            out,
            Event::ItemAdded {
                output_index: index,
                item,
            },
        );
    }
    let Some(args) = f.arguments.filter(|a| !a.is_empty()) else {
        return;
    };
    let index = r.stream.output.len();
    if let Open::Call(c) = &mut r.stream.open {
        c.arguments.push_str(&args);
        let item_id = r.item_id(FUNCTION_CALL, index);
        emit(
            r,
            out,
            Event::ArgumentsDelta {
                item_id,
                output_index: index,
                delta: args,
            },
        );
    }
}

pub fn encode(r: &mut Responses, event: GenEvent) -> Out {
    let mut out = Vec::new();
    match event {
        GenEvent::Started { .. } => {
            let response = r.base.clone();
            emit(r, &mut out, Event::Created { response });
            let response = r.base.clone();
            emit(r, &mut out, Event::InProgress { response });
        }
        GenEvent::Delta { text: t, .. } if !t.is_empty() => text(r, &mut out, t),
        GenEvent::Delta { .. } => {}
        GenEvent::ToolCall { delta, .. } => call_piece(r, &mut out, delta),
        GenEvent::Finished { reason, .. } => {
            r.stream.reason = Some(reason);
            // A response always says something: an empty message when the
            // model ended at once.
            if r.stream.output.is_empty() && matches!(r.stream.open, Open::Nothing) {
                text(r, &mut out, String::new());
            }
            let status = if reason == FinishReason::Length {
                "incomplete"
            } else {
                "completed"
            };
            close(r, &mut out, status);
        }
        GenEvent::Done { usage, .. } => {
            let output = std::mem::take(&mut r.stream.output);
            let response = r.finished(output, r.stream.reason, usage);
            let event = if response.status == "incomplete" {
                Event::Incomplete { response }
            } else {
                Event::Completed { response }
            };
            emit(r, &mut out, event);
        }
        GenEvent::Error(_) => {}
    }
    out
}

/// An `error` event, then the response as `failed`.
pub fn failed(r: &mut Responses, error: ErrorBody) -> Out {
    let mut out = Vec::new();
    let e = error.error;
    emit(
        r,
        &mut out,
        Event::Error {
            code: e.code.clone(),
            message: e.message.clone(),
            param: e.param.clone(),
        },
    );
    let response = aitier_protocol::responses::ResponseObject {
        status: "failed".into(),
        error: Some(ResponseError {
            code: e.code.unwrap_or_else(|| "server_error".into()),
            message: e.message,
        }),
        output: std::mem::take(&mut r.stream.output),
        ..r.base.clone()
    };
    emit(r, &mut out, Event::Failed { response });
    out
}
