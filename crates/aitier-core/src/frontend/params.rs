//! The parameters chat and legacy completions share (`Sampling`), checked
//! once for both: out-of-range values get a 400 naming the parameter.
use aitier_protocol::Sampling;

use crate::error::CoreError;
use crate::request::{GenerateRequest, PromptInput, SamplingParams};

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

pub fn check_max_tokens(param: &str, m: u32) -> Result<u32, CoreError> {
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

/// The common request from the shared parameters and what each API
/// decoded itself.
pub fn build(
    s: &Sampling,
    prompt: PromptInput,
    max_tokens: Option<u32>,
    logprobs: Option<u32>,
) -> Result<(GenerateRequest, Delivery), CoreError> {
    let sampling = sampling_params(s)?;
    let n = s.n.unwrap_or(1);
    if n == 0 || n > MAX_N {
        return Err(CoreError::invalid(
            "n",
            format!("`n` must be between 1 and {MAX_N}"),
        ));
    }
    let stop = match s.stop.clone().map(aitier_protocol::Stop::into_vec) {
        None => Vec::new(),
        Some(v) if v.len() > MAX_STOP => {
            return Err(CoreError::invalid(
                "stop",
                format!("`stop` takes at most {MAX_STOP} sequences"),
            ))
        }
        Some(v) => v.into_iter().filter(|s| !s.is_empty()).collect(),
    };
    let stream = s.stream.unwrap_or(false);
    let include_usage = match &s.stream_options {
        Some(_) if !stream => {
            return Err(CoreError::invalid(
                "stream_options",
                "`stream_options` is only allowed when `stream` is true",
            ))
        }
        Some(o) => o.include_usage.unwrap_or(false),
        None => false,
    };
    Ok((
        GenerateRequest {
            prompt,
            sampling,
            n,
            max_tokens,
            stop,
            logprobs,
            tools: None,
            constraint: None,
            affinity: s
                .prompt_cache_key
                .as_deref()
                .map(crate::affinity::of_cache_key),
        },
        Delivery {
            stream,
            include_usage,
        },
    ))
}

fn sampling_params(s: &Sampling) -> Result<SamplingParams, CoreError> {
    let temperature = in_range("temperature", s.temperature, 0.0, 2.0, 1.0)?;
    let top_p = in_range("top_p", s.top_p, 0.0, 1.0, 1.0)?;
    if top_p == 0.0 {
        return Err(CoreError::invalid(
            "top_p",
            "`top_p` must be greater than 0",
        ));
    }
    let repeat_penalty = in_range("repeat_penalty", s.repeat_penalty, 0.0, 10.0, 1.0)?;
    if repeat_penalty == 0.0 {
        return Err(CoreError::invalid(
            "repeat_penalty",
            "`repeat_penalty` must be greater than 0",
        ));
    }
    let mut logit_bias = Vec::new();
    for (k, v) in s.logit_bias.iter().flatten() {
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
    Ok(SamplingParams {
        temperature,
        top_p,
        top_k: s.top_k.map_or(0, |k| k.max(0) as u32),
        min_p: in_range("min_p", s.min_p, 0.0, 1.0, 0.0)?,
        presence_penalty: in_range("presence_penalty", s.presence_penalty, -2.0, 2.0, 0.0)?,
        frequency_penalty: in_range("frequency_penalty", s.frequency_penalty, -2.0, 2.0, 0.0)?,
        repeat_penalty,
        logit_bias,
        // Negative seeds are valid in OpenAI's API; keep their bits.
        seed: s.seed.map(|s| s as u64),
    })
}
