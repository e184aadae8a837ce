//! Tool calling for models whose chat template knows no tools (SmolLM2,
//! Gemma 3), in a generic format, as llama.cpp's server does: the tool
//! schemas go in a system message, earlier calls and results are written
//! into the conversation as JSON, and the output is constrained to one JSON
//! envelope, either `{"response": "..."}` or
//! `{"tool_calls": [{"name": ..., "arguments": {...}}]}`, so it always
//! parses. `Envelope` reads that output back as text and calls while it
//! streams.
use aitier_core::{
    Constraint, EventStream, FinishReason, GenEvent, Message, Role, ToolChoice, Tools,
};
use aitier_protocol::tools::{FunctionCallDelta, ToolCallDelta};
use futures::StreamExt;

use crate::gbnf::literal;
use crate::schema::with_layout;

const REPLY_OPEN: &str = "{\"response\": \"";
const CALLS_OPEN: &str = "{\"tool_calls\": [";
const CALL_OPEN: &str = "{\"name\": \"";
const ARGS_OPEN: &str = "\", \"arguments\": ";

/// The Lark grammar of the envelope `tools` allows.
pub fn grammar(tools: &Tools) -> Constraint {
    let offered: Vec<_> = match &tools.choice {
        ToolChoice::Function(name) => tools.defs.iter().filter(|d| &d.name == name).collect(),
        _ => tools.defs.iter().collect(),
    };
    let mut rules = Vec::new();
    let calls: Vec<String> = offered
        .iter()
        .enumerate()
        .map(|(i, d)| {
            rules.push(format!(
                "call_{i}: {} %json {} \"}}\"",
                literal(&format!("{CALL_OPEN}{}{ARGS_OPEN}", d.name)),
                with_layout(&d.parameters)
            ));
            format!("call_{i}")
        })
        .collect();
    rules.push(format!("call: {}", calls.join(" | ")));
    let several = tools.parallel && !matches!(tools.choice, ToolChoice::Function(_));
    rules.push(format!(
        "calls: {} call{} \"]}}\"",
        literal(CALLS_OPEN),
        if several { " (\", \" call)*" } else { "" }
    ));
    rules.push(format!(
        "reply: {} %json {{\"type\": \"string\"}} \"}}\"",
        literal(&REPLY_OPEN[..REPLY_OPEN.len() - 1])
    ));
    let start = match tools.choice {
        ToolChoice::Auto => "start: reply | calls",
        _ => "start: calls",
    };
    Constraint::Lark(format!("{start}\n{}\n", rules.join("\n")))
}

fn instructions(tools: &Tools) -> String {
    let defs: Vec<serde_json::Value> = tools
        .defs
        .iter()
        .map(|d| {
            let mut f = serde_json::json!({"name": d.name, "parameters": d.parameters});
            if let Some(desc) = &d.description {
                f["description"] = serde_json::Value::String(desc.clone());
            }
            f
        })
        .collect();
    let how = match &tools.choice {
        ToolChoice::Auto => "Answer with one JSON object: {\"tool_calls\": [{\"name\": <tool name>, \"arguments\": <arguments object>}]} to call tools, or {\"response\": <your reply>} to answer directly.".to_string(),
        ToolChoice::Required => "Call at least one tool. Answer with one JSON object: {\"tool_calls\": [{\"name\": <tool name>, \"arguments\": <arguments object>}]}.".to_string(),
        ToolChoice::Function(name) => format!("Call the tool '{name}'. Answer with one JSON object: {{\"tool_calls\": [{{\"name\": \"{name}\", \"arguments\": <arguments object>}}]}}."),
    };
    format!(
        "You can call these tools:\n{}\n{how}",
        serde_json::Value::Array(defs)
    )
}

/// The conversation with the tools described and earlier calls written as
/// the generic format's JSON. Tool results stay `tool` turns where the
/// template takes them (`tool_role`), and become user turns where it
/// insists on alternating roles.
pub fn conversation(messages: &[Message], tools: Option<&Tools>, tool_role: bool) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(messages.len() + 1);
    let mut names = std::collections::HashMap::new();
    for m in messages {
        match m.role {
            Role::Assistant if !m.tool_calls.is_empty() => {
                let calls: Vec<_> = m
                    .tool_calls
                    .iter()
                    .map(|c| {
                        names.insert(c.id.clone(), c.name.clone());
                        serde_json::json!({"name": c.name, "arguments": c.arguments_json()})
                    })
                    .collect();
                let envelope = serde_json::json!({"tool_calls": calls});
                out.push(Message::new(Role::Assistant, envelope.to_string()));
            }
            Role::Tool if tool_role => out.push(Message {
                tool_calls: Vec::new(),
                ..m.clone()
            }),
            Role::Tool => {
                let id = m.tool_call_id.clone().unwrap_or_default();
                let mut result = serde_json::json!({"tool_call_id": id, "content": m.content});
                if let Some(name) = names.get(&id) {
                    result["name"] = serde_json::Value::String(name.clone());
                }
                let line = serde_json::json!({"tool_response": result}).to_string();
                match out.last_mut() {
                    Some(prev) if prev.role == Role::User && prev.tool_call_id.is_some() => {
                        prev.content.push('\n');
                        prev.content.push_str(&line);
                    }
                    _ => out.push(Message {
                        tool_call_id: Some(id),
                        ..Message::new(Role::User, line)
                    }),
                }
            }
            // A user turn right after results joins them, for templates
            // that insist on alternating roles.
            Role::User if !tool_role && out.last().is_some_and(|p| p.tool_call_id.is_some()) => {
                if let Some(prev) = out.last_mut() {
                    prev.content.push_str("\n\n");
                    prev.content.push_str(&m.content);
                }
            }
            _ => out.push(Message {
                tool_calls: Vec::new(),
                tool_call_id: None,
                ..m.clone()
            }),
        }
    }
    if let Some(tools) = tools {
        let text = instructions(tools);
        match out.first_mut() {
            Some(first) if first.role == Role::System => {
                first.content = format!("{text}\n\n{}", first.content);
            }
            _ => out.insert(0, Message::new(Role::System, text)),
        }
    }
    out
}

/// What the output so far says, read again from the start at each piece:
/// outputs are short, and re-reading keeps this free of partial states.
#[derive(Debug, Default, PartialEq)]
struct View {
    /// Not (yet) known to be a call envelope: the reply so far.
    reply: String,
    /// Calls whose name is complete: name and arguments so far.
    calls: Vec<(String, String)>,
}

/// The longest prefix of a JSON string body that decodes, decoded: an
/// escape cut by the end of what has streamed waits for the rest.
fn partial_string(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some(at) = rest.find(['"', '\\']) else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if rest.starts_with('"') {
            return out;
        }
        let len = match rest.as_bytes().get(1) {
            None => return out,
            // A high surrogate needs its low half too.
            Some(b'u') if high_surrogate(rest) => 12,
            Some(b'u') => 6,
            Some(_) => 2,
        };
        let Some(escape) = rest.get(..len) else {
            return out;
        };
        match serde_json::from_str::<String>(&format!("\"{escape}\"")) {
            Ok(s) => out.push_str(&s),
            Err(_) => return out,
        }
        rest = &rest[len..];
    }
}

/// Whether `escape` (starting `\u`) is a high surrogate, `\uD800`-`\uDBFF`.
fn high_surrogate(escape: &str) -> bool {
    escape
        .get(2..3)
        .is_some_and(|d| d.eq_ignore_ascii_case("d"))
        && escape.get(3..4).is_some_and(|c| "89abAB".contains(c))
}

/// Where the JSON value starting at `text` ends (exclusive), if it has: an
/// object or array at its closing bracket, a string at its closing quote,
/// a number or literal at the delimiter after it.
fn value_end(text: &str) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, b) in text.bytes().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' if depth == 0 => return Some(i + 1),
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' | b',' if depth == 0 => return (i > 0).then_some(i),
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

fn read(text: &str) -> View {
    if let Some(body) = text.strip_prefix(REPLY_OPEN) {
        return View {
            reply: partial_string(body),
            calls: Vec::new(),
        };
    }
    let Some(mut rest) = text.strip_prefix(CALLS_OPEN) else {
        let undecided = REPLY_OPEN.starts_with(text) || CALLS_OPEN.starts_with(text);
        return View {
            reply: if undecided {
                String::new()
            } else {
                text.to_string()
            },
            calls: Vec::new(),
        };
    };
    let mut calls = Vec::new();
    while let Some(after) = rest.strip_prefix(CALL_OPEN) {
        let Some(name_end) = after.find(ARGS_OPEN) else {
            break;
        };
        let args = &after[name_end + ARGS_OPEN.len()..];
        let end = value_end(args);
        calls.push((
            after[..name_end].to_string(),
            args[..end.unwrap_or(args.len())].to_string(),
        ));
        let Some(end) = end else {
            break;
        };
        rest = args[end..].trim_start_matches('}');
        rest = rest.strip_prefix(", ").unwrap_or(rest);
    }
    View {
        reply: String::new(),
        calls,
    }
}

/// The provider's events with each choice's envelope read back: reply text
/// as deltas, calls as `ToolCall` pieces with fresh ids, and `tool_calls` as
/// the finish reason of a choice that called.
pub fn read_calls(events: EventStream, choices: usize) -> EventStream {
    let mut state: Vec<(Envelope, u32)> = (0..choices).map(|_| Default::default()).collect();
    events
        .flat_map(move |ev| futures::stream::iter(translate(&mut state, ev)))
        .boxed()
}

fn translate(state: &mut [(Envelope, u32)], ev: GenEvent) -> Vec<GenEvent> {
    match ev {
        GenEvent::Delta {
            index,
            text,
            mut logprobs,
            tokens,
        } => {
            let Some((env, unsent)) = state.get_mut(index as usize) else {
                return vec![];
            };
            *unsent += tokens;
            env.push(&text)
                .into_iter()
                .map(|piece| {
                    // Tokens ride on the first event they produced, so a
                    // client that leaves mid-call is billed for them.
                    let tokens = std::mem::take(unsent);
                    match piece {
                        Piece::Text(text) => GenEvent::Delta {
                            index,
                            text,
                            logprobs: std::mem::take(&mut logprobs),
                            tokens,
                        },
                        Piece::Call(call) => GenEvent::ToolCall {
                            index,
                            delta: call_delta(call),
                            tokens,
                        },
                    }
                })
                .collect()
        }
        GenEvent::Finished { index, reason } => {
            let Some((env, unsent)) = state.get_mut(index as usize) else {
                return vec![];
            };
            let mut out = Vec::new();
            if *unsent > 0 {
                out.push(GenEvent::Delta {
                    index,
                    text: String::new(),
                    logprobs: Vec::new(),
                    tokens: std::mem::take(unsent),
                });
            }
            let reason = match reason {
                FinishReason::Stop | FinishReason::StopSequence(_) if env.made_calls() => {
                    FinishReason::ToolCalls
                }
                other => other,
            };
            out.push(GenEvent::Finished { index, reason });
            out
        }
        other => vec![other],
    }
}

/// A call's piece in OpenAI's streamed shape; its start gets a fresh id.
fn call_delta(piece: CallPiece) -> ToolCallDelta {
    let (index, id, name, arguments) = match piece {
        CallPiece::Start { index, name } => {
            let id = uuid::Uuid::new_v4().simple().to_string();
            (
                index,
                Some(format!("call_{}", &id[..24])),
                Some(name),
                String::new(),
            )
        }
        CallPiece::Arguments { index, fragment } => (index, None, None, fragment),
    };
    ToolCallDelta {
        index,
        kind: id.as_ref().map(|_| "function".to_string()),
        id,
        function: Some(FunctionCallDelta {
            name,
            arguments: Some(arguments),
        }),
    }
}

/// A piece of a choice's output as the client sees it.
#[derive(Debug, PartialEq)]
pub enum Piece {
    Text(String),
    Call(CallPiece),
}

#[derive(Debug, PartialEq)]
pub enum CallPiece {
    /// Call `index` begins.
    Start {
        index: u32,
        name: String,
    },
    Arguments {
        index: u32,
        fragment: String,
    },
}

/// Follows one choice's envelope as its text streams.
#[derive(Debug, Default)]
pub struct Envelope {
    text: String,
    shown: View,
}

impl Envelope {
    pub fn push(&mut self, delta: &str) -> Vec<Piece> {
        self.text.push_str(delta);
        let now = read(&self.text);
        let mut out = Vec::new();
        if now.reply.len() > self.shown.reply.len() && now.reply.starts_with(&self.shown.reply) {
            out.push(Piece::Text(now.reply[self.shown.reply.len()..].to_string()));
        }
        for (i, (name, args)) in now.calls.iter().enumerate() {
            let index = i as u32;
            let had = match self.shown.calls.get(i) {
                Some((_, a)) => a.len(),
                None => {
                    out.push(Piece::Call(CallPiece::Start {
                        index,
                        name: name.clone(),
                    }));
                    0
                }
            };
            if args.len() > had {
                out.push(Piece::Call(CallPiece::Arguments {
                    index,
                    fragment: args[had..].to_string(),
                }));
            }
        }
        self.shown = now;
        out
    }

    pub fn made_calls(&self) -> bool {
        !self.shown.calls.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aitier_core::{ToolCall, ToolDef};

    fn weather() -> Tools {
        Tools {
            defs: vec![ToolDef {
                name: "get_weather".into(),
                description: Some("Weather in a city".into()),
                parameters: serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
                strict: None,
            }],
            choice: ToolChoice::Auto,
            parallel: true,
        }
    }

    fn stream(text: &str, step: usize) -> Vec<Piece> {
        let mut env = Envelope::default();
        let chars: Vec<char> = text.chars().collect();
        chars
            .chunks(step)
            .flat_map(|c| env.push(&c.iter().collect::<String>()))
            .collect()
    }

    #[test]
    fn calls_stream_as_a_start_then_argument_fragments() {
        let text = "{\"tool_calls\": [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris \\\"}\"}}, {\"name\": \"f\", \"arguments\": {}}]}";
        for step in [1, 3, 200] {
            let pieces = stream(text, step);
            let mut args = vec![String::new(), String::new()];
            let mut names = Vec::new();
            for p in pieces {
                match p {
                    Piece::Call(CallPiece::Start { name, .. }) => names.push(name),
                    Piece::Call(CallPiece::Arguments { index, fragment }) => {
                        args[index as usize].push_str(&fragment)
                    }
                    Piece::Text(t) => panic!("unexpected text {t}"),
                }
            }
            assert_eq!(names, vec!["get_weather", "f"], "step {step}");
            assert_eq!(
                args,
                vec!["{\"city\": \"Paris \\\"}\"}", "{}"],
                "step {step}"
            );
        }
    }

    #[test]
    fn a_value_ends_where_its_kind_does() {
        assert_eq!(value_end("{\"a\": [1, \"]\"]}, x"), Some(15));
        assert_eq!(value_end("\"a}\\\"\"}]}"), Some(6));
        assert_eq!(value_end("-2.5}]}"), Some(4));
        assert_eq!(value_end("{\"a\": 1"), None);
        assert_eq!(value_end("12"), None);
    }

    #[test]
    fn a_reply_streams_as_decoded_text() {
        let text = "{\"response\": \"Hi \\\"you\\\"\\n\\u00e9\\ud83d\\ude00!\"}";
        for step in [1, 2, 5, 100] {
            let joined: String = stream(text, step)
                .into_iter()
                .map(|p| match p {
                    Piece::Text(t) => t,
                    other => panic!("unexpected {other:?}"),
                })
                .collect();
            assert_eq!(joined, "Hi \"you\"\né😀!", "step {step}");
        }
    }

    proptest::proptest! {
        /// Whatever streams in, in whatever pieces, reading never panics;
        /// an envelope of calls reads back the same however it is cut.
        #[test]
        fn any_text_reads_and_calls_survive_any_cuts(
            noise in ".{0,40}",
            calls in proptest::collection::vec(("[a-z_]{1,12}", ".{0,20}"), 1..4),
            cuts in proptest::collection::vec(0usize..200, 0..8),
        ) {
            let mut env = Envelope::default();
            env.push(&noise);
            let body: Vec<String> = calls
                .iter()
                .map(|(name, arg)| format!("{CALL_OPEN}{name}{ARGS_OPEN}{}}}", serde_json::json!({"a": arg})))
                .collect();
            let text = format!("{CALLS_OPEN}{}]}}", body.join(", "));
            let chars: Vec<char> = text.chars().collect();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (chars.len() + 1)).collect();
            cuts.sort_unstable();
            let (mut env, mut at, mut pieces) = (Envelope::default(), 0, Vec::new());
            for cut in cuts.into_iter().chain([chars.len()]) {
                pieces.extend(env.push(&chars[at..cut.max(at)].iter().collect::<String>()));
                at = cut.max(at);
            }
            let mut got: Vec<(String, String)> = Vec::new();
            for p in pieces {
                match p {
                    Piece::Call(CallPiece::Start { name, .. }) => got.push((name, String::new())),
                    Piece::Call(CallPiece::Arguments { index, fragment }) => got[index as usize].1.push_str(&fragment),
                    Piece::Text(t) => proptest::prop_assert!(false, "text {t:?}"),
                }
            }
            let want: Vec<(String, String)> = calls
                .iter()
                .map(|(name, arg)| (name.clone(), serde_json::json!({"a": arg}).to_string()))
                .collect();
            proptest::prop_assert_eq!(got, want);
        }

        #[test]
        fn a_reply_reads_back_whole_however_cut(reply in ".{0,60}", cut in 0usize..80) {
            let text = format!("{{\"response\": {}}}", serde_json::Value::String(reply.clone()));
            let cut = (0..=cut.min(text.len())).rev().find(|&c| text.is_char_boundary(c)).unwrap_or(0);
            let mut env = Envelope::default();
            let mut shown = String::new();
            for part in [&text[..cut], &text[cut..]] {
                for p in env.push(part) {
                    if let Piece::Text(t) = p {
                        shown.push_str(&t);
                    }
                }
            }
            proptest::prop_assert_eq!(shown, reply);
        }
    }

    #[test]
    fn results_become_user_turns_and_the_tools_a_system_message() {
        let messages = vec![
            Message::new(Role::User, "weather?"),
            Message {
                tool_calls: vec![ToolCall {
                    id: "call_1".into(),
                    name: "get_weather".into(),
                    arguments: "{\"city\":\"Paris\"}".into(),
                }],
                ..Message::new(Role::Assistant, "")
            },
            Message {
                tool_call_id: Some("call_1".into()),
                ..Message::new(Role::Tool, "sunny")
            },
        ];
        assert_eq!(conversation(&messages, None, true)[2].role, Role::Tool);
        let out = conversation(&messages, Some(&weather()), false);
        assert_eq!(out[0].role, Role::System);
        assert!(out[0].content.contains("get_weather"));
        let call = serde_json::json!({"name": "get_weather", "arguments": {"city": "Paris"}});
        assert_eq!(
            out[2].content,
            serde_json::json!({"tool_calls": [call]}).to_string()
        );
        assert_eq!(out[3].role, Role::User);
        assert!(out[3].content.contains("\"name\":\"get_weather\""));
        assert!(out[3].content.contains("sunny"));
    }
}
