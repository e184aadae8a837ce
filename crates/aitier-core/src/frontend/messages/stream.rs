//! Anthropic's event sequence: `message_start`, each content block started,
//! filled (`text_delta`, `input_json_delta`) and stopped, then
//! `message_delta` with the stop reason and usage, and `message_stop`.
use aitier_protocol::messages::{Block, BlockDelta, StopDelta, StreamEvent, Usage};
use aitier_protocol::sse::Payload;
use aitier_protocol::tools::ToolCallDelta;

use super::{stop_reason, Messages};
use crate::event::{FinishReason, GenEvent};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Open {
    #[default]
    Nothing,
    Text,
    ToolUse,
}

#[derive(Debug, Clone, Default)]
pub struct State {
    /// Blocks started so far; the open one is the last.
    blocks: usize,
    open: Open,
    reason: Option<FinishReason>,
}

type Out = Vec<Payload<StreamEvent>>;

fn close(m: &mut Messages, out: &mut Out) {
    if m.stream.open != Open::Nothing {
        m.stream.open = Open::Nothing;
        out.push(Payload::Chunk(StreamEvent::ContentBlockStop {
            index: m.stream.blocks - 1,
        }));
    }
}

fn start(m: &mut Messages, out: &mut Out, open: Open, block: Block) {
    close(m, out);
    m.stream.open = open;
    m.stream.blocks += 1;
    out.push(Payload::Chunk(StreamEvent::ContentBlockStart {
        index: m.stream.blocks - 1,
        content_block: block,
    }));
}

fn delta(m: &Messages, out: &mut Out, delta: BlockDelta) {
    out.push(Payload::Chunk(StreamEvent::ContentBlockDelta {
        index: m.stream.blocks - 1,
        delta,
    }));
}

fn call_piece(m: &mut Messages, out: &mut Out, d: ToolCallDelta) {
    let f = d.function.unwrap_or_default();
    if let Some(id) = d.id {
        let name = f.name.clone().unwrap_or_default();
        start(
            m,
            out,
            Open::ToolUse,
            Block::tool_use(id, name, serde_json::json!({})),
        );
    }
    if let Some(args) = f.arguments.filter(|a| !a.is_empty()) {
        if m.stream.open == Open::ToolUse {
            delta(m, out, BlockDelta::InputJsonDelta { partial_json: args });
        }
    }
}

pub fn encode(m: &mut Messages, event: GenEvent) -> Out {
    let mut out = Vec::new();
    match event {
        GenEvent::Started { prompt_tokens, .. } => {
            let usage = Usage {
                input_tokens: prompt_tokens,
                ..Usage::default()
            };
            let message = m.message(Vec::new(), None, usage);
            out.push(Payload::Chunk(StreamEvent::MessageStart { message }));
        }
        GenEvent::Delta { text, .. } if !text.is_empty() => {
            if m.stream.open != Open::Text {
                start(m, &mut out, Open::Text, Block::text(""));
            }
            delta(m, &mut out, BlockDelta::TextDelta { text });
        }
        GenEvent::Delta { .. } => {}
        GenEvent::ToolCall { delta, .. } => call_piece(m, &mut out, delta),
        GenEvent::Finished { reason, .. } => {
            m.stream.reason = Some(reason);
            close(m, &mut out);
        }
        GenEvent::Done { usage, .. } => {
            let (stop_reason, stop_sequence) = stop_reason(m.stream.reason, &m.stops);
            out.push(Payload::Chunk(StreamEvent::MessageDelta {
                delta: StopDelta {
                    stop_reason,
                    stop_sequence,
                },
                usage: usage.into(),
            }));
            out.push(Payload::Chunk(StreamEvent::MessageStop));
        }
        GenEvent::Error(_) => {}
    }
    out
}
