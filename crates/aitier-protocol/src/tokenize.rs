//! llama.cpp-server-style `/tokenize` and `/detokenize` bodies.
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenizeRequest {
    /// Which model's tokenizer; the first served model when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub content: String,
    #[serde(default)]
    pub add_special: bool,
    /// Control-token spellings in `content` become those tokens (the
    /// default, as in llama.cpp's server); `false` counts them as text, as a
    /// chat message's content is.
    #[serde(default = "yes")]
    pub parse_special: bool,
    #[serde(default)]
    pub with_pieces: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum TokenOut {
    Id(u32),
    WithPiece {
        id: u32,
        #[serde(deserialize_with = "piece_text")]
        piece: String,
    },
}

/// llama.cpp's server sends a piece that is not valid UTF-8 as its bytes.
fn piece_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Piece {
        Text(String),
        Bytes(Vec<u8>),
    }
    Ok(match Piece::deserialize(d)? {
        Piece::Text(t) => t,
        Piece::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
    })
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenizeResponse {
    pub tokens: Vec<TokenOut>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DetokenizeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub tokens: Vec<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DetokenizeResponse {
    pub content: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_read_as_text_or_bytes() {
        let r: TokenizeResponse = serde_json::from_str(
            r#"{"tokens": [{"id": 1, "piece": "Hi"}, {"id": 2, "piece": [226, 130]}, 3]}"#,
        )
        .expect("valid");
        assert_eq!(
            r.tokens,
            vec![
                TokenOut::WithPiece {
                    id: 1,
                    piece: "Hi".into()
                },
                TokenOut::WithPiece {
                    id: 2,
                    piece: "\u{fffd}".into()
                },
                TokenOut::Id(3),
            ]
        );
    }
}
