//! OpenAI wire request → `GenerateRequest`, rejecting what aitier cannot
//! honour with a 400 that names the parameter.
use std::collections::BTreeMap;

use aitier_protocol::chat::{ChatCompletionRequest, MessageContent, Stop};
use aitier_protocol::completions::{CompletionRequest, Prompt};

use crate::error::CoreError;
use crate::request::{GenerateRequest, Message, PromptInput, Role, SamplingParams};

pub const MAX_N: u32 = 16;
pub const MAX_STOP: usize = 4;
pub const MAX_TOP_LOGPROBS: u32 = 20;
pub const MAX_COMPLETION_LOGPROBS: u32 = 5;

/// How the response is delivered, decided alongside validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub stream: bool,
    pub include_usage: bool,
}

struct Common<'a> {
    temperature: Option<f32>,
    top_p: Option<f32>,
    n: Option<u32>,
    stream: Option<bool>,
    include_usage: Option<Option<bool>>,
    stop: Option<&'a Stop>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    logit_bias: Option<&'a BTreeMap<String, f32>>,
    seed: Option<i64>,
    top_k: Option<i32>,
    min_p: Option<f32>,
    repeat_penalty: Option<f32>,
}

pub fn chat(req: &ChatCompletionRequest) -> Result<(GenerateRequest, Delivery), CoreError> {
    if req.messages.is_empty() {
        return Err(CoreError::invalid(
            "messages",
            "`messages` must contain at least one message",
        ));
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
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
            None if role == Role::Assistant => String::new(),
            None => {
                return Err(CoreError::invalid(
                    format!("messages[{i}].content"),
                    format!("a '{}' message needs `content`", m.role),
                ))
            }
        };
        if m.tool_calls.as_ref().is_some_and(|t| !t.is_null()) {
            return Err(CoreError::invalid(
                format!("messages[{i}].tool_calls"),
                "tool calls are not supported yet",
            ));
        }
        messages.push(Message {
            role,
            content,
            name: m.name.clone(),
        });
    }
    if req.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(CoreError::invalid(
            "tools",
            "tool calling is not supported yet",
        ));
    }
    if let Some(choice) = &req.tool_choice {
        if choice.as_str() != Some("none") && choice.as_str() != Some("auto") {
            return Err(CoreError::invalid(
                "tool_choice",
                "tool calling is not supported yet",
            ));
        }
    }
    if let Some(fmt) = &req.response_format {
        if fmt.kind != "text" {
            return Err(CoreError::invalid(
                "response_format",
                format!(
                    "response_format type '{}' is not supported yet; only 'text' is",
                    fmt.kind
                ),
            ));
        }
    }
    let logprobs = match (req.logprobs.unwrap_or(false), req.top_logprobs) {
        (false, Some(k)) if k > 0 => {
            return Err(CoreError::invalid(
                "top_logprobs",
                "`top_logprobs` requires `logprobs` to be true",
            ))
        }
        (false, _) => None,
        (true, k) => {
            let k = k.unwrap_or(0);
            if k > MAX_TOP_LOGPROBS {
                return Err(CoreError::invalid(
                    "top_logprobs",
                    format!("`top_logprobs` must be between 0 and {MAX_TOP_LOGPROBS}"),
                ));
            }
            Some(k)
        }
    };
    let max_tokens = match (req.max_completion_tokens, req.max_tokens) {
        (Some(m), _) => Some(check_max_tokens("max_completion_tokens", m)?),
        (None, Some(m)) => Some(check_max_tokens("max_tokens", m)?),
        (None, None) => None,
    };
    let common = Common {
        temperature: req.temperature,
        top_p: req.top_p,
        n: req.n,
        stream: req.stream,
        include_usage: req.stream_options.as_ref().map(|o| o.include_usage),
        stop: req.stop.as_ref(),
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        logit_bias: req.logit_bias.as_ref(),
        seed: req.seed,
        top_k: req.top_k,
        min_p: req.min_p,
        repeat_penalty: req.repeat_penalty,
    };
    finish(common, PromptInput::Chat(messages), max_tokens, logprobs)
}

pub fn completion(req: &CompletionRequest) -> Result<(GenerateRequest, Delivery), CoreError> {
    let prompt = match &req.prompt {
        Prompt::Text(t) => PromptInput::Texts(vec![t.clone()]),
        Prompt::Texts(t) => PromptInput::Texts(t.clone()),
        Prompt::Tokens(t) => PromptInput::Tokens(vec![t.clone()]),
        Prompt::TokenLists(t) => PromptInput::Tokens(t.clone()),
    };
    if prompt.count() == 0 {
        return Err(CoreError::invalid(
            "prompt",
            "`prompt` must not be an empty list",
        ));
    }
    if req.echo.unwrap_or(false) {
        return Err(CoreError::invalid("echo", "`echo` is not supported"));
    }
    if req.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(CoreError::invalid("suffix", "`suffix` is not supported"));
    }
    if req.best_of.is_some_and(|b| b > 1) {
        return Err(CoreError::invalid(
            "best_of",
            "`best_of` above 1 is not supported",
        ));
    }
    let logprobs = match req.logprobs {
        Some(k) if k > MAX_COMPLETION_LOGPROBS => {
            return Err(CoreError::invalid(
                "logprobs",
                format!("`logprobs` must be between 0 and {MAX_COMPLETION_LOGPROBS}"),
            ))
        }
        other => other,
    };
    let max_tokens = req
        .max_tokens
        .map(|m| check_max_tokens("max_tokens", m))
        .transpose()?
        // OpenAI's legacy default: 16 tokens.
        .or(Some(16));
    let common = Common {
        temperature: req.temperature,
        top_p: req.top_p,
        n: req.n,
        stream: req.stream,
        include_usage: req.stream_options.as_ref().map(|o| o.include_usage),
        stop: req.stop.as_ref(),
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        logit_bias: req.logit_bias.as_ref(),
        seed: req.seed,
        top_k: req.top_k,
        min_p: req.min_p,
        repeat_penalty: req.repeat_penalty,
    };
    finish(common, prompt, max_tokens, logprobs)
}

fn check_max_tokens(param: &str, m: u32) -> Result<u32, CoreError> {
    if m == 0 {
        return Err(CoreError::invalid(
            param,
            format!("`{param}` must be at least 1"),
        ));
    }
    Ok(m)
}

fn in_range(param: &str, v: Option<f32>, lo: f32, hi: f32, default: f32) -> Result<f32, CoreError> {
    match v {
        None => Ok(default),
        Some(x) if x.is_finite() && x >= lo && x <= hi => Ok(x),
        Some(x) => Err(CoreError::invalid(
            param,
            format!("`{param}` must be between {lo} and {hi}, got {x}"),
        )),
    }
}

fn finish(
    c: Common<'_>,
    prompt: PromptInput,
    max_tokens: Option<u32>,
    logprobs: Option<u32>,
) -> Result<(GenerateRequest, Delivery), CoreError> {
    let temperature = in_range("temperature", c.temperature, 0.0, 2.0, 1.0)?;
    let top_p = in_range("top_p", c.top_p, 0.0, 1.0, 1.0)?;
    if top_p == 0.0 {
        return Err(CoreError::invalid(
            "top_p",
            "`top_p` must be greater than 0",
        ));
    }
    let presence_penalty = in_range("presence_penalty", c.presence_penalty, -2.0, 2.0, 0.0)?;
    let frequency_penalty = in_range("frequency_penalty", c.frequency_penalty, -2.0, 2.0, 0.0)?;
    let min_p = in_range("min_p", c.min_p, 0.0, 1.0, 0.0)?;
    let repeat_penalty = in_range("repeat_penalty", c.repeat_penalty, 0.0, 10.0, 1.0)?;
    if repeat_penalty == 0.0 {
        return Err(CoreError::invalid(
            "repeat_penalty",
            "`repeat_penalty` must be greater than 0",
        ));
    }
    let top_k = match c.top_k {
        None => 0,
        Some(k) if k <= 0 => 0,
        Some(k) => k as u32,
    };
    let n = c.n.unwrap_or(1);
    if n == 0 || n > MAX_N {
        return Err(CoreError::invalid(
            "n",
            format!("`n` must be between 1 and {MAX_N}"),
        ));
    }
    let stop = match c.stop.cloned().map(Stop::into_vec) {
        None => Vec::new(),
        Some(v) if v.len() > MAX_STOP => {
            return Err(CoreError::invalid(
                "stop",
                format!("`stop` takes at most {MAX_STOP} sequences"),
            ))
        }
        Some(v) => v.into_iter().filter(|s| !s.is_empty()).collect(),
    };
    let mut logit_bias = Vec::new();
    for (k, v) in c.logit_bias.into_iter().flatten() {
        let id: u32 = k.parse().map_err(|_| {
            CoreError::invalid(
                "logit_bias",
                format!("logit_bias key '{k}' is not a token id"),
            )
        })?;
        if !v.is_finite() || !(-100.0..=100.0).contains(v) {
            return Err(CoreError::invalid(
                "logit_bias",
                format!("logit_bias value for token {id} must be between -100 and 100"),
            ));
        }
        logit_bias.push((id, *v));
    }
    let stream = c.stream.unwrap_or(false);
    let include_usage = match c.include_usage {
        Some(_) if !stream => {
            return Err(CoreError::invalid(
                "stream_options",
                "`stream_options` is only allowed when `stream` is true",
            ))
        }
        Some(v) => v.unwrap_or(false),
        None => false,
    };
    let sampling = SamplingParams {
        temperature,
        top_p,
        top_k,
        min_p,
        presence_penalty,
        frequency_penalty,
        repeat_penalty,
        logit_bias,
        // Negative seeds are valid in OpenAI's API; keep their bits.
        seed: c.seed.map(|s| s as u64),
    };
    Ok((
        GenerateRequest {
            prompt,
            sampling,
            n,
            max_tokens,
            stop,
            logprobs,
        },
        Delivery {
            stream,
            include_usage,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aitier_protocol::chat::ChatCompletionRequest;

    fn parse(v: serde_json::Value) -> ChatCompletionRequest {
        serde_json::from_value(v).expect("valid shape")
    }

    fn param_of(r: Result<(GenerateRequest, Delivery), CoreError>) -> Option<String> {
        match r {
            Err(CoreError::InvalidRequest { param, .. }) => param,
            other => panic!("expected invalid request, got {other:?}"),
        }
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
        let (g, d) = chat(&req).expect("valid");
        assert!(!d.stream);
        let PromptInput::Chat(m) = g.prompt else {
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
                "tools",
            ),
            (
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
                "messages[0].content[0].type",
            ),
        ];
        for (body, param) in cases {
            assert_eq!(
                param_of(chat(&parse(body.clone()))).as_deref(),
                Some(param),
                "{body}"
            );
        }
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let req = parse(
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 5, "max_completion_tokens": 7}),
        );
        assert_eq!(chat(&req).expect("valid").0.max_tokens, Some(7));
    }

    #[test]
    fn completion_defaults_to_sixteen_tokens() {
        let req: CompletionRequest =
            serde_json::from_value(serde_json::json!({"model": "m", "prompt": "hi"}))
                .expect("shape");
        let (g, _) = completion(&req).expect("valid");
        assert_eq!(g.max_tokens, Some(16));
        assert_eq!(g.prompt, PromptInput::Texts(vec!["hi".into()]));
    }
}
