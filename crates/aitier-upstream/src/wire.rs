//! The OpenAI wire format on the upstream side: a validated request back
//! into a JSON body (always streamed, always asking for usage), and the
//! upstream's stream chunks into provider events.
use serde_json::{json, Map, Value};

use aitier_core::{CoreError, FinishReason, GenEvent, GenerateRequest, PromptInput, TokenLogprob};
use aitier_protocol::Usage;

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

/// The upstream body for `req`, sent to `model` (the upstream's own name).
pub fn request_body(req: &GenerateRequest, model: &str) -> (Endpoint, Value) {
    let mut b = Map::new();
    b.insert("model".into(), json!(model));
    let endpoint = match &req.prompt {
        PromptInput::Chat(messages) => {
            let msgs: Vec<Value> = messages
                .iter()
                .map(|m| {
                    let mut o = json!({"role": m.role.as_str(), "content": m.content});
                    if let Some(name) = &m.name {
                        o["name"] = json!(name);
                    }
                    o
                })
                .collect();
            b.insert("messages".into(), Value::Array(msgs));
            if let Some(k) = req.logprobs {
                b.insert("logprobs".into(), json!(true));
                b.insert("top_logprobs".into(), json!(k));
            }
            Endpoint::Chat
        }
        PromptInput::Texts(texts) => {
            b.insert("prompt".into(), json!(texts));
            if let Some(k) = req.logprobs {
                b.insert("logprobs".into(), json!(k));
            }
            Endpoint::Completions
        }
        PromptInput::Tokens(tokens) => {
            b.insert("prompt".into(), json!(tokens));
            if let Some(k) = req.logprobs {
                b.insert("logprobs".into(), json!(k));
            }
            Endpoint::Completions
        }
    };
    b.insert("stream".into(), json!(true));
    b.insert("stream_options".into(), json!({"include_usage": true}));
    if req.n != 1 {
        b.insert("n".into(), json!(req.n));
    }
    if let Some(m) = req.max_tokens {
        b.insert("max_tokens".into(), json!(m));
    }
    if !req.stop.is_empty() {
        b.insert("stop".into(), json!(req.stop));
    }
    let s = &req.sampling;
    b.insert("temperature".into(), json!(s.temperature));
    b.insert("top_p".into(), json!(s.top_p));
    if s.presence_penalty != 0.0 {
        b.insert("presence_penalty".into(), json!(s.presence_penalty));
    }
    if s.frequency_penalty != 0.0 {
        b.insert("frequency_penalty".into(), json!(s.frequency_penalty));
    }
    if let Some(seed) = s.seed {
        b.insert("seed".into(), json!(seed));
    }
    if !s.logit_bias.is_empty() {
        let bias: Map<String, Value> = s
            .logit_bias
            .iter()
            .map(|(t, v)| (t.to_string(), json!(v)))
            .collect();
        b.insert("logit_bias".into(), Value::Object(bias));
    }
    // Not OpenAI parameters: sent only when set, for vLLM, llama.cpp and
    // Ollama, which take them.
    if s.top_k != 0 {
        b.insert("top_k".into(), json!(s.top_k));
    }
    if s.min_p != 0.0 {
        b.insert("min_p".into(), json!(s.min_p));
    }
    if s.repeat_penalty != 1.0 {
        b.insert("repeat_penalty".into(), json!(s.repeat_penalty));
    }
    (endpoint, Value::Object(b))
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

/// Follows one upstream stream: chunk payloads in, events out.
#[derive(Debug)]
pub struct Decoder {
    finished: Vec<bool>,
    usage: Option<Usage>,
    /// Content chunks seen: one token each for the servers we know.
    pub chunks: u32,
    pub done: bool,
}

impl Decoder {
    pub fn new(choices: usize) -> Self {
        Self {
            finished: vec![false; choices],
            usage: None,
            chunks: 0,
            done: false,
        }
    }

    pub fn decode(&mut self, payload: &str) -> Result<Vec<GenEvent>, CoreError> {
        if payload.trim() == "[DONE]" {
            self.done = true;
            return Ok(vec![]);
        }
        let v: Value = serde_json::from_str(payload).map_err(|e| {
            CoreError::Internal(format!(
                "upstream sent malformed SSE data ({e}): {payload:.200}"
            ))
        })?;
        self.decode_value(&v)
    }

    /// One chunk, already parsed.
    pub fn decode_value(&mut self, v: &Value) -> Result<Vec<GenEvent>, CoreError> {
        if let Some(err) = v.get("error") {
            let msg = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the upstream failed mid-stream");
            return Err(CoreError::Internal(format!(
                "upstream error mid-stream: {msg}"
            )));
        }
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            let num = |p: &Value, k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(0) as u32;
            let cached = u
                .get("prompt_tokens_details")
                .map(|d| num(d, "cached_tokens"))
                .unwrap_or(0);
            self.usage = Some(Usage::new(
                num(u, "prompt_tokens"),
                num(u, "completion_tokens"),
                cached,
            ));
        }
        let mut out = Vec::new();
        for c in v
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = c.get("index").and_then(Value::as_u64).unwrap_or(0) as u32;
            let text = c
                .pointer("/delta/content")
                .or_else(|| c.get("text"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let logprobs = c.get("logprobs").map(parse_logprobs).unwrap_or_default();
            if !text.is_empty() || !logprobs.is_empty() {
                self.chunks += 1;
                out.push(GenEvent::Delta {
                    index,
                    text: text.to_string(),
                    logprobs,
                });
            }
            if let Some(reason) = c.get("finish_reason").and_then(Value::as_str) {
                if let Some(f) = self.finished.get_mut(index as usize) {
                    if !*f {
                        *f = true;
                        out.push(GenEvent::Finished {
                            index,
                            reason: if reason == "length" {
                                FinishReason::Length
                            } else {
                                FinishReason::Stop
                            },
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// The closing events once the upstream said `[DONE]`: choices it left
    /// open are finished, and the usage is its own or `estimate`'s.
    pub fn close(&mut self, estimate: impl FnOnce(u32) -> Usage) -> (Vec<GenEvent>, bool) {
        let mut out = Vec::new();
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
            None => (estimate(self.chunks), true),
        };
        out.push(GenEvent::Done { usage });
        (out, estimated)
    }
}

/// Chat (`content: [...]`) or legacy (`tokens`, `token_logprobs`) logprobs.
fn parse_logprobs(v: &Value) -> Vec<TokenLogprob> {
    let f = |x: Option<&Value>| x.and_then(Value::as_f64).unwrap_or(0.0) as f32;
    let text = |x: &Value| {
        x.get("token")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let array = |key: &str| {
        v.get(key)
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
    };
    if let Some(items) = v.get("content").and_then(Value::as_array) {
        return items
            .iter()
            .map(|t| TokenLogprob {
                token: text(t),
                bytes: t
                    .get("bytes")
                    .and_then(Value::as_array)
                    .map(|b| {
                        b.iter()
                            .filter_map(|x| x.as_u64().map(|x| x as u8))
                            .collect()
                    })
                    .unwrap_or_default(),
                logprob: f(t.get("logprob")),
                top: t
                    .get("top_logprobs")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        let tok = text(a);
                        let bytes = tok.as_bytes().to_vec();
                        (tok, bytes, f(a.get("logprob")))
                    })
                    .collect(),
            })
            .collect();
    }
    let (lps, tops) = (array("token_logprobs"), array("top_logprobs"));
    array("tokens")
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let token = t.as_str().unwrap_or("").to_string();
            TokenLogprob {
                bytes: token.as_bytes().to_vec(),
                logprob: f(lps.get(i)),
                top: tops
                    .get(i)
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| {
                                (
                                    k.clone(),
                                    k.as_bytes().to_vec(),
                                    v.as_f64().unwrap_or(0.0) as f32,
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                token,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aitier_core::{Message, Role, SamplingParams};

    #[test]
    fn chat_and_legacy_logprobs_parse_alike() {
        let chat = json!({"content": [{"token": "Hi", "bytes": [72, 105], "logprob": -0.5,
            "top_logprobs": [{"token": "Hi", "logprob": -0.5}, {"token": "Yo", "logprob": -1.5}]}]});
        let legacy = json!({"tokens": ["Hi"], "token_logprobs": [-0.5],
            "top_logprobs": [{"Hi": -0.5, "Yo": -1.5}]});
        for v in [chat, legacy] {
            let lp = parse_logprobs(&v);
            assert_eq!(lp.len(), 1, "{v}");
            assert_eq!(lp[0].token, "Hi");
            assert_eq!(lp[0].bytes, b"Hi".to_vec());
            assert_eq!(lp[0].logprob, -0.5);
            let mut top: Vec<(String, f32)> =
                lp[0].top.iter().map(|(t, _, l)| (t.clone(), *l)).collect();
            top.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(
                top,
                vec![("Hi".to_string(), -0.5), ("Yo".to_string(), -1.5)]
            );
        }
        assert!(parse_logprobs(&json!({})).is_empty());
    }

    fn chat_req() -> GenerateRequest {
        GenerateRequest {
            prompt: PromptInput::Chat(vec![Message {
                role: Role::User,
                content: "hi".into(),
                name: None,
            }]),
            sampling: SamplingParams {
                temperature: 0.0,
                top_k: 5,
                ..Default::default()
            },
            n: 2,
            max_tokens: Some(7),
            stop: vec!["\n".into()],
            logprobs: Some(2),
        }
    }

    #[test]
    fn the_body_streams_asks_for_usage_and_keeps_parameters() {
        let (ep, b) = request_body(&chat_req(), "up-model");
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
    fn chunks_become_events_and_usage() {
        let mut d = Decoder::new(2);
        let ev = d
            .decode(r#"{"choices":[{"index":1,"delta":{"content":"Hi"},"finish_reason":null}]}"#)
            .expect("valid");
        assert_eq!(
            ev,
            vec![GenEvent::Delta {
                index: 1,
                text: "Hi".into(),
                logprobs: vec![]
            }]
        );
        let ev = d
            .decode(r#"{"choices":[{"index":1,"delta":{},"finish_reason":"length"}]}"#)
            .expect("valid");
        assert_eq!(
            ev,
            vec![GenEvent::Finished {
                index: 1,
                reason: FinishReason::Length
            }]
        );
        d.decode(r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3}}"#)
            .expect("usage");
        d.decode("[DONE]").expect("done");
        assert!(d.done);
        let (ev, estimated) = d.close(|_| Usage::new(0, 0, 0));
        assert!(!estimated);
        assert_eq!(ev.len(), 2, "choice 0 finished, then Done: {ev:?}");
        assert_eq!(
            ev[1],
            GenEvent::Done {
                usage: Usage::new(5, 3, 0)
            }
        );
        assert!(Decoder::new(1).decode("{not json").is_err());
        assert!(Decoder::new(1)
            .decode(r#"{"error":{"message":"boom"}}"#)
            .is_err());
    }

    #[test]
    fn missing_usage_is_estimated() {
        let mut d = Decoder::new(1);
        d.decode(r#"{"choices":[{"index":0,"text":"a"}]}"#)
            .expect("ok");
        d.decode(r#"{"choices":[{"index":0,"text":"b"}]}"#)
            .expect("ok");
        let (ev, estimated) = d.close(|chunks| Usage::new(9, chunks, 0));
        assert!(estimated);
        assert_eq!(
            ev.last(),
            Some(&GenEvent::Done {
                usage: Usage::new(9, 2, 0)
            })
        );
    }
}
