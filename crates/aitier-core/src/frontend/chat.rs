//! `/v1/chat/completions`.
use aitier_protocol::chat::{
    AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest,
    ChatMessage, ChunkChoice, Delta, MessageContent, CHAT_COMPLETION, CHAT_COMPLETION_CHUNK,
};
use aitier_protocol::sse::Payload;

use super::params::{self, check_max_tokens, MAX_TOP_LOGPROBS};
use super::{closing, logprobs, tools, Answer, Decoded, Frontend, ResponseMeta};
use crate::error::CoreError;
use crate::event::GenEvent;
use crate::request::{Message, PromptInput, Role};

/// The chat front-end; an encoder for one request's answer.
#[derive(Debug)]
pub struct Chat {
    meta: ResponseMeta,
    choices: u32,
    logprobs: bool,
    include_usage: bool,
}

fn message(i: usize, m: &ChatMessage) -> Result<Message, CoreError> {
    let role = match m.role.as_str() {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        other => {
            return Err(CoreError::invalid(
                format!("messages[{i}].role"),
                format!("Invalid role '{other}': expected one of 'system', 'developer', 'user', 'assistant', 'tool'"),
            ))
        }
    };
    let content = match &m.content {
        Some(MessageContent::Text(t)) => t.clone(),
        Some(MessageContent::Parts(parts)) => {
            let mut text = String::new();
            for (j, p) in parts.iter().enumerate() {
                match (p.kind.as_str(), &p.text) {
                    ("text", Some(t)) => text.push_str(t),
                    ("text", None) => {
                        return Err(CoreError::invalid(
                            format!("messages[{i}].content[{j}].text"),
                            "a text content part needs `text`",
                        ))
                    }
                    (other, _) => {
                        return Err(CoreError::invalid(
                            format!("messages[{i}].content[{j}].type"),
                            format!("content part type '{other}' is not supported by this model; only 'text' is"),
                        ))
                    }
                }
            }
            text
        }
        // An assistant turn that only called tools has no content.
        None if role == Role::Assistant => String::new(),
        None => {
            return Err(CoreError::invalid(
                format!("messages[{i}].content"),
                format!("a '{}' message needs `content`", m.role),
            ))
        }
    };
    let tool_calls: Vec<_> = m
        .tool_calls
        .iter()
        .flatten()
        .map(tools::from_wire)
        .collect();
    if !tool_calls.is_empty() && role != Role::Assistant {
        return Err(CoreError::invalid(
            format!("messages[{i}].tool_calls"),
            "only an 'assistant' message can carry `tool_calls`",
        ));
    }
    if role == Role::Tool && m.tool_call_id.is_none() {
        return Err(CoreError::invalid(
            format!("messages[{i}].tool_call_id"),
            "a 'tool' message needs `tool_call_id`",
        ));
    }
    Ok(Message {
        role,
        content,
        name: m.name.clone(),
        tool_calls,
        tool_call_id: m.tool_call_id.clone(),
    })
}

/// Chat's `logprobs` is a switch and `top_logprobs` the count.
fn top_logprobs(req: &ChatCompletionRequest) -> Result<Option<u32>, CoreError> {
    match (req.logprobs.unwrap_or(false), req.top_logprobs) {
        (false, Some(k)) if k > 0 => Err(CoreError::invalid(
            "top_logprobs",
            "`top_logprobs` requires `logprobs` to be true",
        )),
        (false, _) => Ok(None),
        (true, Some(k)) if k > MAX_TOP_LOGPROBS => Err(CoreError::invalid(
            "top_logprobs",
            format!("`top_logprobs` must be between 0 and {MAX_TOP_LOGPROBS}"),
        )),
        (true, k) => Ok(Some(k.unwrap_or(0))),
    }
}

impl Chat {
    fn chunk(&self, choices: Vec<ChunkChoice>) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.meta.id.clone(),
            object: CHAT_COMPLETION_CHUNK.into(),
            created: self.meta.created,
            model: self.meta.model.clone(),
            system_fingerprint: Some(self.meta.fingerprint.clone()),
            choices,
            usage: None,
        }
    }

    fn choice(index: u32, delta: Delta) -> ChunkChoice {
        ChunkChoice {
            index,
            delta,
            logprobs: None,
            finish_reason: None,
        }
    }
}

impl Frontend for Chat {
    type Request = ChatCompletionRequest;
    type Response = ChatCompletion;
    type Chunk = ChatCompletionChunk;

    fn decode(req: ChatCompletionRequest) -> Result<Decoded<Self>, CoreError> {
        if req.messages.is_empty() {
            return Err(CoreError::invalid(
                "messages",
                "`messages` must contain at least one message",
            ));
        }
        let messages = req
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| message(i, m))
            .collect::<Result<Vec<_>, _>>()?;
        let logprobs = top_logprobs(&req)?;
        let max_tokens = match (req.max_completion_tokens, req.sampling.max_tokens) {
            (Some(m), _) => Some(check_max_tokens("max_completion_tokens", m)?),
            (None, Some(m)) => Some(check_max_tokens("max_tokens", m)?),
            (None, None) => None,
        };
        let (mut request, delivery) = params::build(
            &req.sampling,
            PromptInput::Chat(messages),
            max_tokens,
            logprobs,
        )?;
        request.tools = tools::tools(
            req.tools.as_deref(),
            req.tool_choice.as_ref(),
            req.parallel_tool_calls,
        )?;
        request.constraint = tools::constraint(req.response_format.as_ref(), &req.sampling.guided)?;
        let encoder = Chat {
            meta: ResponseMeta::new("chatcmpl", &req.model),
            choices: request.choices() as u32,
            logprobs: logprobs.is_some(),
            include_usage: delivery.include_usage,
        };
        Ok(Decoded {
            request,
            delivery,
            model: req.model,
            user: req.sampling.user,
            encoder,
        })
    }

    fn respond(mut self, answer: Answer) -> ChatCompletion {
        self.meta.started(answer.fingerprint);
        let want_logprobs = self.logprobs;
        ChatCompletion {
            id: self.meta.id,
            object: CHAT_COMPLETION.into(),
            created: self.meta.created,
            model: self.meta.model,
            system_fingerprint: Some(self.meta.fingerprint),
            choices: answer
                .choices
                .into_iter()
                .enumerate()
                .map(|(i, c)| ChatChoice {
                    index: i as u32,
                    message: AssistantMessage {
                        role: "assistant".into(),
                        // OpenAI sends `null` content beside calls.
                        content: (c.tool_calls.is_empty() || !c.text.is_empty()).then_some(c.text),
                        refusal: None,
                        tool_calls: (!c.tool_calls.is_empty())
                            .then(|| c.tool_calls.iter().map(tools::to_wire).collect()),
                    },
                    logprobs: want_logprobs.then(|| logprobs::to_chat(c.logprobs)),
                    finish_reason: c.finish_reason.map(|r| r.as_str().into()),
                })
                .collect(),
            usage: Some(answer.usage),
        }
    }

    fn encode(&mut self, event: GenEvent) -> Vec<Payload<ChatCompletionChunk>> {
        match event {
            // Each choice opens with its role, as OpenAI's streams do.
            GenEvent::Started { fingerprint, .. } => {
                self.meta.started(fingerprint);
                (0..self.choices)
                    .map(|index| {
                        let delta = Delta {
                            role: Some("assistant".into()),
                            content: Some(String::new()),
                            tool_calls: None,
                        };
                        Payload::Chunk(self.chunk(vec![Self::choice(index, delta)]))
                    })
                    .collect()
            }
            GenEvent::Delta {
                index,
                text,
                logprobs,
                ..
            } => {
                let delta = Delta {
                    role: None,
                    content: Some(text),
                    tool_calls: None,
                };
                let choice = ChunkChoice {
                    logprobs: self.logprobs.then(|| logprobs::to_chat(logprobs)),
                    ..Self::choice(index, delta)
                };
                vec![Payload::Chunk(self.chunk(vec![choice]))]
            }
            GenEvent::ToolCall { index, delta, .. } => {
                let delta = Delta {
                    tool_calls: Some(vec![delta]),
                    ..Delta::default()
                };
                vec![Payload::Chunk(self.chunk(vec![Self::choice(index, delta)]))]
            }
            GenEvent::Finished { index, reason } => {
                let choice = ChunkChoice {
                    finish_reason: Some(reason.as_str().into()),
                    ..Self::choice(index, Delta::default())
                };
                vec![Payload::Chunk(self.chunk(vec![choice]))]
            }
            GenEvent::Done { usage, .. } => closing(self.include_usage, || ChatCompletionChunk {
                usage: Some(usage),
                ..self.chunk(vec![])
            }),
            GenEvent::Error(_) => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::GenerateRequest;

    fn parse(v: serde_json::Value) -> ChatCompletionRequest {
        serde_json::from_value(v).expect("valid shape")
    }

    fn param_of(r: Result<Decoded<Chat>, CoreError>) -> Option<String> {
        match r {
            Err(CoreError::InvalidRequest { param, .. }) => param,
            other => panic!("expected invalid request, got {other:?}"),
        }
    }

    fn decoded(v: serde_json::Value) -> GenerateRequest {
        Chat::decode(parse(v)).expect("valid").request
    }

    #[test]
    fn accepts_text_parts_and_developer_role() {
        let req = parse(serde_json::json!({
            "model": "m",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
            ]
        }));
        let d = Chat::decode(req).expect("valid");
        assert!(!d.delivery.stream);
        let PromptInput::Chat(m) = d.request.prompt else {
            panic!("chat prompt")
        };
        assert_eq!(m[0].role, Role::System);
        assert_eq!(m[1].content, "ab");
    }

    #[test]
    fn rejections_name_their_parameter() {
        let cases = [
            (
                serde_json::json!({"model": "m", "messages": []}),
                "messages",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3}),
                "temperature",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0}),
                "n",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a","b","c","d","e"]}),
                "stop",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 3}),
                "top_logprobs",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "logit_bias": {"abc": 1}}),
                "logit_bias",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
                "max_tokens",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": true}}),
                "stream_options",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}),
                "tools[0].function",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search"}]}),
                "tools[0].type",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
                "messages[0].tool_call_id",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema"}}),
                "response_format.json_schema",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
                "messages[0].content[0].type",
            ),
        ];
        for (body, param) in cases {
            assert_eq!(
                param_of(Chat::decode(parse(body.clone()))).as_deref(),
                Some(param),
                "{body}"
            );
        }
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let req = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 5, "max_completion_tokens": 7});
        assert_eq!(decoded(req).max_tokens, Some(7));
    }

    #[test]
    fn a_stream_opens_each_choice_and_ends_with_usage_then_done() {
        let req = parse(serde_json::json!({"model": "m", "n": 2, "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "x"}]}));
        let mut enc = Chat::decode(req).expect("valid").encoder;
        let opening = enc.encode(GenEvent::Started {
            prompt_tokens: 3,
            deployment: None,
            fingerprint: Some("fp-upstream".into()),
        });
        assert_eq!(opening.len(), 2);
        let Payload::Chunk(first) = &opening[1] else {
            panic!("a chunk")
        };
        assert_eq!(first.choices[0].index, 1);
        assert_eq!(first.choices[0].delta.role.as_deref(), Some("assistant"));
        assert_eq!(first.system_fingerprint.as_deref(), Some("fp-upstream"));
        let end = enc.encode(GenEvent::done(aitier_protocol::Usage::new(3, 1, 0)));
        assert!(matches!(&end[0], Payload::Chunk(c) if c.choices.is_empty() && c.usage.is_some()));
        assert_eq!(end[1], Payload::Done);
    }
}
