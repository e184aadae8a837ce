//! Embeddings on the upstream side: a validated request back into an
//! OpenAI body (floats asked for, extensions sent only when set), and the
//! upstream's list read back into vectors in input order.
use aitier_core::{EmbedInput, EmbedRequest, Embeddings};
use aitier_protocol::embeddings::{
    EmbeddingInput, EmbeddingRequest, EmbeddingResponse, EncodingFormat,
};

use crate::wire::estimate_tokens;

pub fn request_body(req: &EmbedRequest, model: &str) -> EmbeddingRequest {
    EmbeddingRequest {
        model: model.to_string(),
        input: match &req.input {
            EmbedInput::Texts(t) => EmbeddingInput::Texts(t.clone()),
            EmbedInput::Tokens(t) => EmbeddingInput::TokenLists(t.clone()),
        },
        encoding_format: Some(EncodingFormat::Float),
        dimensions: req.dimensions,
        user: None,
        truncate_prompt_tokens: req.truncate.map(|k| k.map_or(-1, i64::from)),
    }
}

/// What the tier admits an upstream embedding by, without its tokenizer.
pub fn estimate(req: &EmbedRequest) -> u32 {
    match &req.input {
        EmbedInput::Texts(t) => t.iter().map(|t| estimate_tokens(t) + 2).sum(),
        EmbedInput::Tokens(t) => t.iter().map(|t| t.len() as u32).sum(),
    }
}

/// The upstream's answer for `inputs` inputs; its usage where it sent
/// one, else `estimate`.
pub fn read(body: &[u8], inputs: usize, estimate: u32) -> Result<Embeddings, String> {
    let resp: EmbeddingResponse =
        serde_json::from_slice(body).map_err(|e| format!("an unexpected embeddings body: {e}"))?;
    let mut vectors = vec![None; inputs];
    for item in resp.data {
        let slot = vectors
            .get_mut(item.index as usize)
            .ok_or_else(|| format!("an embedding for input {} of {inputs}", item.index))?;
        let v = item
            .embedding
            .to_floats()
            .ok_or_else(|| format!("embedding {} is not floats", item.index))?;
        *slot = Some(v);
    }
    let vectors = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| v.ok_or_else(|| format!("no embedding for input {i}")))
        .collect::<Result<Vec<_>, _>>()?;
    let reported = resp.usage.prompt_tokens;
    Ok(Embeddings {
        vectors,
        prompt_tokens: if reported > 0 { reported } else { estimate },
        estimated: reported == 0,
        deployment: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_come_back_in_input_order_with_their_usage() {
        let body = r#"{"object":"list","model":"m","data":[
            {"object":"embedding","index":1,"embedding":[0.0,1.0]},
            {"object":"embedding","index":0,"embedding":"AACAPwAAAAA="}],
            "usage":{"prompt_tokens":7,"total_tokens":7}}"#;
        let e = read(body.as_bytes(), 2, 3).expect("valid");
        assert_eq!(e.vectors, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
        assert_eq!((e.prompt_tokens, e.estimated), (7, false));
    }

    #[test]
    fn a_missing_vector_or_usage_is_noticed() {
        let one = r#"{"data":[{"index":0,"embedding":[1.0]}]}"#;
        assert!(read(one.as_bytes(), 2, 3).is_err());
        let e = read(one.as_bytes(), 1, 3).expect("valid");
        assert_eq!((e.prompt_tokens, e.estimated), (3, true));
        let stray = r#"{"data":[{"index":5,"embedding":[1.0]}]}"#;
        assert!(read(stray.as_bytes(), 1, 3).is_err());
    }

    #[test]
    fn the_body_asks_for_floats_and_says_only_what_was_set() {
        let mut req = EmbedRequest::new(EmbedInput::Texts(vec!["a".into()]));
        let body = serde_json::to_value(request_body(&req, "up")).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"model": "up", "input": ["a"], "encoding_format": "float"})
        );
        req.truncate = Some(None);
        req.dimensions = Some(64);
        let body = serde_json::to_value(request_body(&req, "up")).expect("json");
        assert_eq!(body["truncate_prompt_tokens"], -1);
        assert_eq!(body["dimensions"], 64);
    }
}
