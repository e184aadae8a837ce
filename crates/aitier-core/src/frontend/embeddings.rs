//! `/v1/embeddings`: the wire request into an `EmbedRequest`, and the
//! vectors back into OpenAI's list, as floats or base64.
use aitier_protocol::embeddings::{
    Embedding, EmbeddingInput, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage,
    EmbeddingVector, EncodingFormat, EMBEDDING, LIST,
};

use crate::embed::{EmbedInput, EmbedRequest, Embeddings};
use crate::error::CoreError;

/// OpenAI's limit on inputs per request.
pub const MAX_INPUTS: usize = 2048;

/// A decoded embedding request and the encoder of its answer.
#[derive(Debug)]
pub struct DecodedEmbed {
    pub request: EmbedRequest,
    pub model: String,
    /// The request's `user` field: the tenant in open mode.
    pub user: Option<String>,
    pub encoder: EmbeddingsEncoder,
}

#[derive(Debug)]
pub struct EmbeddingsEncoder {
    model: String,
    format: EncodingFormat,
}

fn input(input: EmbeddingInput) -> Result<EmbedInput, CoreError> {
    let input = match input {
        EmbeddingInput::Text(t) => EmbedInput::Texts(vec![t]),
        EmbeddingInput::Texts(t) => EmbedInput::Texts(t),
        EmbeddingInput::Tokens(t) => EmbedInput::Tokens(vec![t]),
        EmbeddingInput::TokenLists(t) => EmbedInput::Tokens(t),
    };
    let n = input.count();
    if n == 0 {
        return Err(CoreError::invalid("input", "`input` must not be empty"));
    }
    if n > MAX_INPUTS {
        return Err(CoreError::invalid(
            "input",
            format!("`input` has {n} items; at most {MAX_INPUTS} may be embedded in one request"),
        ));
    }
    let empty = match &input {
        EmbedInput::Texts(t) => t.iter().position(String::is_empty),
        EmbedInput::Tokens(t) => t.iter().position(Vec::is_empty),
    };
    if let Some(i) = empty {
        let what = match input {
            EmbedInput::Texts(_) => "an empty string",
            EmbedInput::Tokens(_) => "an empty token list",
        };
        return Err(CoreError::invalid(
            "input",
            format!("input[{i}] is {what}; every input needs at least one token"),
        ));
    }
    Ok(input)
}

fn truncate(asked: Option<i64>) -> Result<Option<Option<u32>>, CoreError> {
    match asked {
        None => Ok(None),
        Some(-1) => Ok(Some(None)),
        Some(k) if k >= 1 => Ok(Some(Some(u32::try_from(k).unwrap_or(u32::MAX)))),
        Some(k) => Err(CoreError::invalid(
            "truncate_prompt_tokens",
            format!(
                "`truncate_prompt_tokens` must be -1 (the model's limit) or at least 1, not {k}"
            ),
        )),
    }
}

pub fn decode(req: EmbeddingRequest) -> Result<DecodedEmbed, CoreError> {
    if req.dimensions == Some(0) {
        return Err(CoreError::invalid(
            "dimensions",
            "`dimensions` must be at least 1",
        ));
    }
    let request = EmbedRequest {
        input: input(req.input)?,
        dimensions: req.dimensions,
        truncate: truncate(req.truncate_prompt_tokens)?,
    };
    Ok(DecodedEmbed {
        request,
        encoder: EmbeddingsEncoder {
            model: req.model.clone(),
            format: req.encoding_format.unwrap_or_default(),
        },
        model: req.model,
        user: req.user,
    })
}

impl EmbeddingsEncoder {
    pub fn respond(self, answer: Embeddings) -> EmbeddingResponse {
        let data = answer
            .vectors
            .iter()
            .enumerate()
            .map(|(i, v)| Embedding {
                object: EMBEDDING.into(),
                index: i as u32,
                embedding: EmbeddingVector::encode(v, self.format),
            })
            .collect();
        EmbeddingResponse {
            object: LIST.into(),
            data,
            model: self.model,
            usage: EmbeddingUsage {
                prompt_tokens: answer.prompt_tokens,
                total_tokens: answer.prompt_tokens,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: &str) -> Result<DecodedEmbed, CoreError> {
        decode(serde_json::from_str(body).expect("wire shape"))
    }

    fn param_of(body: &str) -> Option<String> {
        match req(body) {
            Err(CoreError::InvalidRequest { param, .. }) => param,
            other => panic!("expected a 400 for {body}, got {other:?}"),
        }
    }

    #[test]
    fn empty_inputs_and_bad_extensions_are_refused_by_name() {
        assert_eq!(
            param_of(r#"{"model":"m","input":[]}"#).as_deref(),
            Some("input")
        );
        assert_eq!(
            param_of(r#"{"model":"m","input":""}"#).as_deref(),
            Some("input")
        );
        assert_eq!(
            param_of(r#"{"model":"m","input":["a",""]}"#).as_deref(),
            Some("input")
        );
        assert_eq!(
            param_of(r#"{"model":"m","input":[[1],[]]}"#).as_deref(),
            Some("input")
        );
        assert_eq!(
            param_of(r#"{"model":"m","input":"a","dimensions":0}"#).as_deref(),
            Some("dimensions")
        );
        assert_eq!(
            param_of(r#"{"model":"m","input":"a","truncate_prompt_tokens":0}"#).as_deref(),
            Some("truncate_prompt_tokens")
        );
        let many = serde_json::to_string(&vec!["x"; MAX_INPUTS + 1]).expect("json");
        assert_eq!(
            param_of(&format!(r#"{{"model":"m","input":{many}}}"#)).as_deref(),
            Some("input")
        );
    }

    #[test]
    fn shapes_become_inputs_and_answers_keep_their_order() {
        let d = req(r#"{"model":"m","input":[5,6],"truncate_prompt_tokens":-1}"#).expect("valid");
        assert_eq!(d.request.input, EmbedInput::Tokens(vec![vec![5, 6]]));
        assert_eq!(d.request.truncate, Some(None));
        let d =
            req(r#"{"model":"m","input":["a","b"],"encoding_format":"base64"}"#).expect("valid");
        let out = d.encoder.respond(Embeddings {
            vectors: vec![vec![1.0], vec![0.0]],
            prompt_tokens: 6,
            estimated: false,
            deployment: None,
        });
        assert_eq!(out.object, "list");
        assert_eq!(out.usage.total_tokens, 6);
        assert_eq!(out.data[1].index, 1);
        assert_eq!(out.data[1].embedding.to_floats(), Some(vec![0.0]));
        assert!(matches!(out.data[0].embedding, EmbeddingVector::Base64(_)));
    }
}
