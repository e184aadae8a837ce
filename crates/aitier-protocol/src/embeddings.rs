//! `/v1/embeddings`: the request, the response, and the two encodings of a
//! vector (a JSON array of floats, or base64 of little-endian `f32`s, which
//! the OpenAI SDKs ask for by default and decode themselves).
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::de::null_default;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingRequest {
    pub model: String,
    pub input: EmbeddingInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<EncodingFormat>,
    /// Fewer dimensions than the model's (Matryoshka models only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Extension (vLLM's name): cut each input to this many tokens instead
    /// of refusing one that is longer than the model takes; -1 means the
    /// model's own limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate_prompt_tokens: Option<i64>,
}

/// `input`: a string, a list of strings, a token list, or a list of token
/// lists; each string or token list is embedded on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingResponse {
    #[serde(default)]
    pub object: String,
    #[serde(default, deserialize_with = "null_default")]
    pub data: Vec<Embedding>,
    #[serde(default)]
    pub model: String,
    #[serde(default, deserialize_with = "null_default")]
    pub usage: EmbeddingUsage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Embedding {
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub index: u32,
    pub embedding: EmbeddingVector,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingUsage {
    #[serde(default)]
    pub prompt_tokens: u32,
    #[serde(default)]
    pub total_tokens: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Float(Vec<f32>),
    Base64(String),
}

impl EmbeddingVector {
    pub fn encode(values: &[f32], format: EncodingFormat) -> Self {
        match format {
            EncodingFormat::Float => EmbeddingVector::Float(values.to_vec()),
            EncodingFormat::Base64 => {
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                EmbeddingVector::Base64(STANDARD.encode(bytes))
            }
        }
    }

    /// The floats, whichever way they were sent; `None` for base64 that is
    /// not a whole number of `f32`s.
    pub fn to_floats(&self) -> Option<Vec<f32>> {
        match self {
            EmbeddingVector::Float(v) => Some(v.clone()),
            EmbeddingVector::Base64(s) => {
                let bytes = STANDARD.decode(s).ok()?;
                if bytes.len() % 4 != 0 {
                    return None;
                }
                Some(
                    bytes
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                )
            }
        }
    }
}

pub const LIST: &str = "list";
pub const EMBEDDING: &str = "embedding";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_shape_reads() {
        let read = |s: &str| serde_json::from_str::<EmbeddingInput>(s).expect(s);
        assert_eq!(read(r#""a""#), EmbeddingInput::Text("a".into()));
        assert_eq!(
            read(r#"["a","b"]"#),
            EmbeddingInput::Texts(vec!["a".into(), "b".into()])
        );
        assert_eq!(read("[1,2]"), EmbeddingInput::Tokens(vec![1, 2]));
        assert_eq!(
            read("[[1],[2,3]]"),
            EmbeddingInput::TokenLists(vec![vec![1], vec![2, 3]])
        );
        assert!(serde_json::from_str::<EmbeddingInput>(r#"["a",1]"#).is_err());
    }

    #[test]
    fn base64_is_little_endian_f32_and_reads_back() {
        let v = [1.0f32, -0.5, 3.25e-3];
        let EmbeddingVector::Base64(s) = EmbeddingVector::encode(&v, EncodingFormat::Base64) else {
            panic!("base64 asked");
        };
        // 1.0f32 is 00 00 80 3f in little-endian order.
        assert!(STANDARD
            .decode(&s)
            .expect("base64")
            .starts_with(&[0, 0, 0x80, 0x3f]));
        assert_eq!(EmbeddingVector::Base64(s).to_floats(), Some(v.to_vec()));
        assert_eq!(EmbeddingVector::Base64("AAA=".into()).to_floats(), None);
    }
}
