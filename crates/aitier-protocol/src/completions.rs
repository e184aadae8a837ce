//! Legacy `/v1/completions` request, response and stream chunk (a chunk is
//! a `Completion` with one choice's new text).
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::de::null_default;
use crate::sampling::Sampling;
use crate::usage::Usage;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: Prompt,
    #[serde(flatten)]
    pub sampling: Sampling,
    /// The number of top alternatives to return per token (0..=5), unlike
    /// chat's boolean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_of: Option<u32>,
}

/// `prompt`: a string, a list of strings, a token list, or a list of token
/// lists. Each element of a list is its own prompt with its own choices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Completion {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub system_fingerprint: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub choices: Vec<CompletionChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompletionChoice {
    #[serde(default)]
    pub index: u32,
    #[serde(default, deserialize_with = "null_default")]
    pub text: String,
    #[serde(default)]
    pub logprobs: Option<CompletionLogprobs>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// Parallel arrays, one entry per token. An entry is `null` where a server
/// has no value (OpenAI's first echoed prompt token); aitier always has one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompletionLogprobs {
    #[serde(default, deserialize_with = "null_default")]
    pub tokens: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub token_logprobs: Vec<Option<f32>>,
    #[serde(default, deserialize_with = "null_default")]
    pub top_logprobs: Vec<Option<BTreeMap<String, f32>>>,
    #[serde(default, deserialize_with = "null_default")]
    pub text_offset: Vec<u32>,
}

pub const TEXT_COMPLETION: &str = "text_completion";
