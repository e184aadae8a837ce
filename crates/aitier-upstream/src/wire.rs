//! The OpenAI wire format on the upstream side, on the protocol crate's
//! types: a validated request back into a request body (always streamed,
//! always asking for usage), and the upstream's chunks, or its whole JSON
//! answer, into provider events.
use serde::Serialize;

use aitier_core::frontend::{logprobs, tools};
use aitier_core::{
    Constraint, CoreError, FinishReason, GenEvent, GenerateRequest, Message, PromptInput,
    TokenLogprob,
};
use aitier_protocol::chat::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatMessage, MessageContent,
};
use aitier_protocol::completions::{Completion, CompletionRequest, Prompt};
use aitier_protocol::sse::Payload;
use aitier_protocol::tools::{
    FunctionCallDelta, Guided, JsonSchemaFormat, ResponseFormat, ToolCallDelta,
};
use aitier_protocol::{Sampling, Stop, StreamOptions, Usage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat/completions",
            Endpoint::Completions => "completions",
        }
    }
}

/// The body sent upstream: chat for a conversation, legacy completions for
/// raw or pre-tokenised prompts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum UpstreamRequest {
    Chat(ChatCompletionRequest),
    Completions(CompletionRequest),
}

impl UpstreamRequest {
    pub fn endpoint(&self) -> Endpoint {
        match self {
            UpstreamRequest::Chat(_) => Endpoint::Chat,
            UpstreamRequest::Completions(_) => Endpoint::Completions,
        }
    }
}

fn sampling(req: &GenerateRequest) -> Sampling {
    let s = &req.sampling;
    // Defaults stay unsaid; the extensions are sent only when set, for the
    // servers that take them (vLLM, llama.cpp, Ollama).
    let unless = |v: f32, default: f32| (v != default).then_some(v);
    Sampling {
        temperature: Some(s.temperature),
        top_p: Some(s.top_p),
        n: (req.n != 1).then_some(req.n),
        stream: Some(true),
        stream_options: Some(StreamOptions {
            include_usage: Some(true),
        }),
        stop: (!req.stop.is_empty()).then(|| Stop::Many(req.stop.clone())),
        max_tokens: req.max_tokens,
        presence_penalty: unless(s.presence_penalty, 0.0),
        frequency_penalty: unless(s.frequency_penalty, 0.0),
        logit_bias: (!s.logit_bias.is_empty()).then(|| {
            s.logit_bias
                .iter()
                .map(|(t, v)| (t.to_string(), *v))
                .collect()
        }),
        seed: s.seed.map(|v| v as i64),
        user: None,
        // Sent as the affinity header instead: not every server takes it.
        prompt_cache_key: None,
        top_k: (s.top_k != 0).then_some(s.top_k as i32),
        min_p: unless(s.min_p, 0.0),
        repeat_penalty: unless(s.repeat_penalty, 1.0),
        guided: guided(req),
    }
}

/// The constraints OpenAI's API has no field for, under the names of the
/// servers that take them: llama.cpp's `grammar` for GBNF, vLLM's
/// `guided_*` for the rest (and for JSON on legacy completions).
fn guided(req: &GenerateRequest) -> Guided {
    let chat = matches!(req.prompt, PromptInput::Chat(_));
    let mut g = Guided::default();
    match req.constraint.as_ref().map(|c| &c.rule) {
        None => {}
        Some(Constraint::JsonObject | Constraint::JsonSchema { .. }) if chat => {}
        Some(Constraint::JsonObject) => g.guided_json = Some(serde_json::json!({"type": "object"})),
        Some(Constraint::JsonSchema { schema, .. }) => g.guided_json = Some(schema.clone()),
        Some(Constraint::Gbnf(t)) => g.grammar = Some(t.clone()),
        Some(Constraint::Lark(t)) => g.guided_grammar = Some(t.clone()),
        Some(Constraint::Regex(r)) => g.guided_regex = Some(r.clone()),
        Some(Constraint::Choice(c)) => g.guided_choice = Some(c.clone()),
    }
    g
}

/// `response_format` for a chat request's JSON constraint.
fn response_format(c: Option<&Constraint>) -> Option<ResponseFormat> {
    match c? {
        Constraint::JsonObject => Some(ResponseFormat {
            kind: "json_object".into(),
            json_schema: None,
        }),
        Constraint::JsonSchema {
            name,
            description,
            schema,
            strict,
        } => Some(ResponseFormat {
            kind: "json_schema".into(),
            json_schema: Some(JsonSchemaFormat {
                name: name.clone(),
                description: description.clone(),
                schema: Some(schema.clone()),
                strict: *strict,
            }),
        }),
        _ => None,
    }
}

fn wire_message(m: &Message) -> ChatMessage {
    let calls_only = m.content.is_empty() && !m.tool_calls.is_empty();
    ChatMessage {
        role: m.role.as_str().to_string(),
        content: (!calls_only).then(|| MessageContent::Text(m.content.clone())),
        name: m.name.clone(),
        tool_calls: (!m.tool_calls.is_empty())
            .then(|| m.tool_calls.iter().map(tools::to_wire).collect()),
        tool_call_id: m.tool_call_id.clone(),
    }
}

/// The upstream body for `req`, sent to `model` (the upstream's own name).
pub fn request_body(req: &GenerateRequest, model: &str) -> UpstreamRequest {
    let legacy = |prompt: Prompt| {
        UpstreamRequest::Completions(CompletionRequest {
            model: model.to_string(),
            prompt,
            sampling: sampling(req),
            logprobs: req.logprobs,
            echo: None,
            suffix: None,
            best_of: None,
        })
    };
    match &req.prompt {
        PromptInput::Chat(messages) => UpstreamRequest::Chat(ChatCompletionRequest {
            model: model.to_string(),
            messages: messages.iter().map(wire_message).collect(),
            sampling: sampling(req),
            logprobs: req.logprobs.map(|_| true),
            top_logprobs: req.logprobs,
            tools: req.tools.as_ref().map(tools::to_wire_tools),
            tool_choice: req.tools.as_ref().map(tools::to_wire_choice),
            parallel_tool_calls: req.tools.as_ref().map(|t| t.parallel),
            response_format: response_format(req.constraint.as_ref().map(|c| &c.rule)),
            ..Default::default()
        }),
        PromptInput::Texts(texts) => legacy(Prompt::Texts(texts.clone())),
        PromptInput::Tokens(tokens) => legacy(Prompt::TokenLists(tokens.clone())),
    }
}

/// A rough token count for text no tokenizer is at hand for: about four
/// characters a token, as OpenAI's own guidance says for English.
pub fn estimate_tokens(text: &str) -> u32 {
    (text.chars().count() as u32).div_ceil(4)
}

pub fn estimate_prompt(req: &GenerateRequest) -> u32 {
    match &req.prompt {
        // A few tokens of template per message.
        PromptInput::Chat(m) => {
            m.iter()
                .map(|m| estimate_tokens(&m.content) + 4)
                .sum::<u32>()
                + 2
        }
        PromptInput::Texts(t) => t.iter().map(|t| estimate_tokens(t)).sum(),
        PromptInput::Tokens(t) => t.iter().map(|t| t.len() as u32).sum(),
    }
}

/// One choice's part of a chunk or answer, whatever its wire shape.
struct Part {
    index: u32,
    text: String,
    logprobs: Vec<TokenLogprob>,
    tool_calls: Vec<ToolCallDelta>,
    finish_reason: Option<String>,
}

/// A chunk or whole answer reduced to what becomes events.
struct Parts {
    fingerprint: Option<String>,
    usage: Option<Usage>,
    choices: Vec<Part>,
}

impl Parts {
    fn new<C>(
        fingerprint: Option<String>,
        usage: Option<Usage>,
        choices: Vec<C>,
        part: fn(C) -> Part,
    ) -> Self {
        Parts {
            fingerprint,
            usage,
            choices: choices.into_iter().map(part).collect(),
        }
    }
}

impl From<ChatCompletionChunk> for Parts {
    fn from(c: ChatCompletionChunk) -> Self {
        Parts::new(c.system_fingerprint, c.usage, c.choices, |ch| Part {
            index: ch.index,
            text: ch.delta.content.unwrap_or_default(),
            logprobs: ch.logprobs.map(logprobs::from_chat).unwrap_or_default(),
            tool_calls: ch.delta.tool_calls.unwrap_or_default(),
            finish_reason: ch.finish_reason,
        })
    }
}

impl From<ChatCompletion> for Parts {
    fn from(c: ChatCompletion) -> Self {
        Parts::new(c.system_fingerprint, c.usage, c.choices, |ch| Part {
            index: ch.index,
            text: ch.message.content.unwrap_or_default(),
            logprobs: ch.logprobs.map(logprobs::from_chat).unwrap_or_default(),
            // A whole call is its stream's one piece.
            tool_calls: ch
                .message
                .tool_calls
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, c)| ToolCallDelta {
                    index: i as u32,
                    id: Some(c.id),
                    kind: Some(c.kind),
                    function: Some(FunctionCallDelta {
                        name: Some(c.function.name),
                        arguments: Some(c.function.arguments),
                    }),
                })
                .collect(),
            finish_reason: ch.finish_reason,
        })
    }
}

impl From<Completion> for Parts {
    fn from(c: Completion) -> Self {
        Parts::new(c.system_fingerprint, c.usage, c.choices, |ch| Part {
            index: ch.index,
            text: ch.text,
            logprobs: ch
                .logprobs
                .map(logprobs::from_completion)
                .unwrap_or_default(),
            tool_calls: Vec::new(),
            finish_reason: ch.finish_reason,
        })
    }
}

fn malformed(e: serde_json::Error, payload: &str) -> CoreError {
    CoreError::Internal(format!(
        "upstream sent malformed SSE data ({e}): {payload:.200}"
    ))
}

/// Follows one upstream stream: chunk payloads in, events out.
#[derive(Debug)]
pub struct Decoder {
    endpoint: Endpoint,
    prompt_estimate: u32,
    started: bool,
    finished: Vec<bool>,
    usage: Option<Usage>,
    /// Content chunks seen: one token each for the servers we know.
    pub chunks: u32,
    pub done: bool,
}

impl Decoder {
    pub fn new(endpoint: Endpoint, choices: usize, prompt_estimate: u32) -> Self {
        Self {
            endpoint,
            prompt_estimate,
            started: false,
            finished: vec![false; choices],
            usage: None,
            chunks: 0,
            done: false,
        }
    }

    /// One SSE `data` payload.
    pub fn decode(&mut self, payload: &str) -> Result<Vec<GenEvent>, CoreError> {
        let parts = match self.endpoint {
            Endpoint::Chat => Payload::<ChatCompletionChunk>::decode(payload)
                .map(|p| Self::chunk_parts(p, Parts::from)),
            Endpoint::Completions => {
                Payload::<Completion>::decode(payload).map(|p| Self::chunk_parts(p, Parts::from))
            }
        }
        .map_err(|e| malformed(e, payload))?;
        match parts? {
            Some(parts) => Ok(self.events(parts)),
            None => {
                self.done = true;
                Ok(vec![])
            }
        }
    }

    fn chunk_parts<T>(p: Payload<T>, parts: fn(T) -> Parts) -> Result<Option<Parts>, CoreError> {
        match p {
            Payload::Chunk(c) => Ok(Some(parts(c))),
            Payload::Error(e) => Err(CoreError::Internal(format!(
                "upstream error mid-stream: {}",
                e.error.message
            ))),
            Payload::Done => Ok(None),
        }
    }

    /// A whole JSON answer (an upstream that ignored `stream`) as the
    /// events a stream of it would have given, closed.
    pub fn whole(&mut self, body: &[u8]) -> Result<Vec<GenEvent>, String> {
        let parts: Parts = match self.endpoint {
            Endpoint::Chat => serde_json::from_slice::<ChatCompletion>(body).map(Parts::from),
            Endpoint::Completions => serde_json::from_slice::<Completion>(body).map(Parts::from),
        }
        .map_err(|e| format!("malformed JSON answer: {e}"))?;
        let mut events = self.events(parts);
        let chunks = self.chunks;
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                GenEvent::Delta { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        let estimate = estimate_tokens(&text).max(chunks);
        events.extend(self.close(|_| estimate));
        Ok(events)
    }

    fn events(&mut self, parts: Parts) -> Vec<GenEvent> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            out.push(GenEvent::Started {
                prompt_tokens: self.prompt_estimate,
                deployment: None,
                fingerprint: parts.fingerprint,
            });
        }
        if let Some(u) = parts.usage {
            // Some servers leave out the total: recount it.
            let cached = u.prompt_tokens_details.cached_tokens;
            self.usage = Some(Usage::new(u.prompt_tokens, u.completion_tokens, cached));
        }
        for p in parts.choices {
            if !p.text.is_empty() || !p.logprobs.is_empty() {
                self.chunks += 1;
                out.push(GenEvent::Delta {
                    index: p.index,
                    text: p.text,
                    logprobs: p.logprobs,
                    tokens: 1,
                });
            }
            for delta in p.tool_calls {
                self.chunks += 1;
                out.push(GenEvent::ToolCall {
                    index: p.index,
                    delta,
                    tokens: 1,
                });
            }
            let Some(reason) = p.finish_reason else {
                continue;
            };
            if let Some(f) = self.finished.get_mut(p.index as usize) {
                if !*f {
                    *f = true;
                    out.push(GenEvent::Finished {
                        index: p.index,
                        reason: match reason.as_str() {
                            "length" => FinishReason::Length,
                            "tool_calls" | "function_call" => FinishReason::ToolCalls,
                            _ => FinishReason::Stop,
                        },
                    });
                }
            }
        }
        out
    }

    /// The closing events once the upstream said `[DONE]`: choices it left
    /// open are finished, and the usage is its own, or (marked estimated)
    /// the prompt estimate with `completion(chunks seen)` tokens.
    pub fn close(&mut self, completion: impl FnOnce(u32) -> u32) -> Vec<GenEvent> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            out.push(GenEvent::started(self.prompt_estimate));
        }
        for (i, f) in self.finished.iter_mut().enumerate() {
            if !*f {
                *f = true;
                out.push(GenEvent::Finished {
                    index: i as u32,
                    reason: FinishReason::Stop,
                });
            }
        }
        let (usage, estimated) = match self.usage.take() {
            Some(u) => (u, false),
            None => {
                let estimate = completion(self.chunks);
                (Usage::new(self.prompt_estimate, estimate, 0), true)
            }
        };
        out.push(GenEvent::Done { usage, estimated });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aitier_core::{Message, Role, SamplingParams};

    fn chat_req() -> GenerateRequest {
        GenerateRequest {
            sampling: SamplingParams {
                temperature: 0.0,
                top_k: 5,
                ..Default::default()
            },
            n: 2,
            max_tokens: Some(7),
            stop: vec!["\n".into()],
            logprobs: Some(2),
            ..GenerateRequest::new(PromptInput::Chat(vec![Message::new(Role::User, "hi")]))
        }
    }

    #[test]
    fn the_body_streams_asks_for_usage_and_keeps_parameters() {
        let body = request_body(&chat_req(), "up-model");
        let ep = body.endpoint();
        let b = serde_json::to_value(&body).expect("serializes");
        assert_eq!(ep, Endpoint::Chat);
        assert_eq!(b["model"], "up-model");
        assert_eq!(b["stream"], true);
        assert_eq!(b["stream_options"]["include_usage"], true);
        assert_eq!(
            (b["n"].as_u64(), b["max_tokens"].as_u64()),
            (Some(2), Some(7))
        );
        assert_eq!(b["top_logprobs"], 2);
        assert_eq!(b["top_k"], 5);
        assert!(b.get("min_p").is_none() && b.get("presence_penalty").is_none());
    }

    #[test]
    fn tools_and_constraints_go_upstream_and_calls_come_back() {
        use aitier_core::{Constrained, ToolCall, ToolChoice, ToolDef, Tools};
        let mut req = chat_req();
        req.tools = Some(Tools {
            defs: vec![ToolDef {
                name: "f".into(),
                description: None,
                parameters: serde_json::json!({"type": "object"}),
                strict: Some(true),
            }],
            choice: ToolChoice::Function("f".into()),
            parallel: false,
        });
        req.constraint = Some(Constrained {
            rule: Constraint::JsonObject,
            param: "response_format",
        });
        if let PromptInput::Chat(m) = &mut req.prompt {
            m.push(Message {
                tool_calls: vec![ToolCall {
                    id: "call_1".into(),
                    name: "f".into(),
                    arguments: "{}".into(),
                }],
                ..Message::new(Role::Assistant, "")
            });
        }
        let body = serde_json::to_value(request_body(&req, "up")).expect("serializes");
        assert_eq!(body["tools"][0]["function"]["strict"], true);
        assert_eq!(body["tool_choice"]["function"]["name"], "f");
        assert_eq!(body["parallel_tool_calls"], false);
        assert_eq!(body["response_format"]["type"], "json_object");
        assert!(body.get("guided_json").is_none(), "{body}");
        assert!(body["messages"][1]["content"].is_null());
        assert_eq!(body["messages"][1]["tool_calls"][0]["id"], "call_1");

        let mut d = Decoder::new(Endpoint::Chat, 1, 3);
        let ev = d
            .decode(r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_9","type":"function","function":{"name":"f","arguments":"{\"a\""}}]}}]}"#)
            .expect("valid");
        assert!(
            matches!(&ev[1], GenEvent::ToolCall { index: 0, delta, tokens: 1 }
            if delta.id.as_deref() == Some("call_9"))
        );
        let ev = d
            .decode(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#)
            .expect("valid");
        assert_eq!(
            ev,
            vec![GenEvent::Finished {
                index: 0,
                reason: FinishReason::ToolCalls
            }]
        );
    }

    #[test]
    fn chunks_become_events_and_usage() {
        let mut d = Decoder::new(Endpoint::Chat, 2, 9);
        let ev = d
            .decode(r#"{"id":"c","system_fingerprint":"fp-up","choices":[{"index":1,"delta":{"content":"Hi"},"finish_reason":null}]}"#)
            .expect("valid");
        assert_eq!(
            ev,
            vec![
                GenEvent::Started {
                    prompt_tokens: 9,
                    deployment: None,
                    fingerprint: Some("fp-up".into())
                },
                GenEvent::Delta {
                    index: 1,
                    text: "Hi".into(),
                    logprobs: vec![],
                    tokens: 1,
                }
            ]
        );
        let ev = d
            .decode(r#"{"id":"c","choices":[{"index":1,"delta":{},"finish_reason":"length"}]}"#)
            .expect("valid");
        assert_eq!(
            ev,
            vec![GenEvent::Finished {
                index: 1,
                reason: FinishReason::Length
            }]
        );
        d.decode(r#"{"id":"c","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3}}"#)
            .expect("usage");
        d.decode("[DONE]").expect("done");
        assert!(d.done);
        let ev = d.close(|_| 0);
        let estimated = matches!(
            ev.last(),
            Some(GenEvent::Done {
                estimated: true,
                ..
            })
        );
        assert!(!estimated);
        assert_eq!(ev.len(), 2, "choice 0 finished, then Done: {ev:?}");
        assert_eq!(ev[1], GenEvent::done(Usage::new(5, 3, 0)));
        assert!(Decoder::new(Endpoint::Chat, 1, 0)
            .decode("{not json")
            .is_err());
        assert!(Decoder::new(Endpoint::Chat, 1, 0)
            .decode(r#"{"error":{"message":"boom"}}"#)
            .is_err());
    }

    #[test]
    fn missing_usage_is_estimated() {
        let mut d = Decoder::new(Endpoint::Completions, 1, 9);
        d.decode(r#"{"id":"c","choices":[{"index":0,"text":"a"}]}"#)
            .expect("ok");
        d.decode(r#"{"id":"c","choices":[{"index":0,"text":"b"}]}"#)
            .expect("ok");
        let ev = d.close(|chunks| chunks);
        let estimated = matches!(
            ev.last(),
            Some(GenEvent::Done {
                estimated: true,
                ..
            })
        );
        assert!(estimated);
        assert_eq!(
            ev.last(),
            Some(&GenEvent::Done {
                usage: Usage::new(9, 2, 0),
                estimated: true
            })
        );
    }
}
