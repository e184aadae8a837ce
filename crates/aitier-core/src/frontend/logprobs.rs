//! Token logprobs between the provider events and the two wire shapes:
//! chat's list of tokens with their alternatives, and legacy completions'
//! parallel arrays. Both directions, so that an upstream's logprobs reach
//! the client as a local model's would.
use std::collections::BTreeMap;

use aitier_protocol::chat::{self, ChatLogprobs, TopLogprob};
use aitier_protocol::completions::CompletionLogprobs;

use crate::event::TokenLogprob;

pub fn to_chat(items: Vec<TokenLogprob>) -> ChatLogprobs {
    ChatLogprobs {
        content: items
            .into_iter()
            .map(|t| chat::TokenLogprob {
                token: t.token,
                logprob: t.logprob,
                bytes: t.bytes,
                top_logprobs: t
                    .top
                    .into_iter()
                    .map(|(token, bytes, logprob)| TopLogprob {
                        token,
                        logprob,
                        bytes,
                    })
                    .collect(),
            })
            .collect(),
        refusal: None,
    }
}

/// Legacy completions logprobs; `offset` is the character offset the first
/// token starts at within the choice's text, moved past these tokens.
pub fn to_completion(items: Vec<TokenLogprob>, offset: &mut u32) -> CompletionLogprobs {
    let mut lp = CompletionLogprobs::default();
    for t in items {
        lp.text_offset.push(*offset);
        *offset += t.token.chars().count() as u32;
        lp.top_logprobs.push(Some(
            t.top
                .into_iter()
                .map(|(tok, _, l)| (tok, l))
                .collect::<BTreeMap<_, _>>(),
        ));
        lp.tokens.push(t.token);
        lp.token_logprobs.push(Some(t.logprob));
    }
    lp
}

/// A token's bytes as sent, or its text's when the server sent none.
fn bytes_or_text(bytes: Vec<u8>, token: &str) -> Vec<u8> {
    if bytes.is_empty() {
        token.as_bytes().to_vec()
    } else {
        bytes
    }
}

pub fn from_chat(lp: ChatLogprobs) -> Vec<TokenLogprob> {
    lp.content
        .into_iter()
        .map(|t| TokenLogprob {
            bytes: bytes_or_text(t.bytes, &t.token),
            logprob: t.logprob,
            top: t
                .top_logprobs
                .into_iter()
                .map(|a| {
                    let bytes = bytes_or_text(a.bytes, &a.token);
                    (a.token, bytes, a.logprob)
                })
                .collect(),
            token: t.token,
        })
        .collect()
}

pub fn from_completion(lp: CompletionLogprobs) -> Vec<TokenLogprob> {
    let mut logprobs = lp.token_logprobs.into_iter();
    let mut tops = lp.top_logprobs.into_iter();
    lp.tokens
        .into_iter()
        .map(|token| TokenLogprob {
            bytes: token.as_bytes().to_vec(),
            logprob: logprobs.next().flatten().unwrap_or(0.0),
            top: tops
                .next()
                .flatten()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    let bytes = k.as_bytes().to_vec();
                    (k, bytes, v)
                })
                .collect(),
            token,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_and_legacy_logprobs_parse_alike() {
        let chat: ChatLogprobs = serde_json::from_value(serde_json::json!({"content": [{"token": "Hi", "bytes": [72, 105], "logprob": -0.5,
            "top_logprobs": [{"token": "Hi", "logprob": -0.5}, {"token": "Yo", "logprob": -1.5}]}]}))
        .expect("chat shape");
        let legacy: CompletionLogprobs = serde_json::from_value(
            serde_json::json!({"tokens": ["Hi"], "token_logprobs": [-0.5],
            "top_logprobs": [{"Hi": -0.5, "Yo": -1.5}]}),
        )
        .expect("legacy shape");
        for lp in [from_chat(chat), from_completion(legacy)] {
            assert_eq!(lp.len(), 1, "{lp:?}");
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
        let empty: ChatLogprobs = serde_json::from_value(serde_json::json!({})).expect("shape");
        assert!(from_chat(empty).is_empty());
    }

    #[test]
    fn completion_offsets_run_on_across_deltas() {
        let t = |s: &str| TokenLogprob {
            token: s.into(),
            bytes: s.as_bytes().to_vec(),
            logprob: -1.0,
            top: vec![],
        };
        let mut offset = 0;
        let first = to_completion(vec![t("ab"), t("c")], &mut offset);
        let second = to_completion(vec![t("de")], &mut offset);
        assert_eq!(first.text_offset, vec![0, 2]);
        assert_eq!(second.text_offset, vec![3]);
        assert_eq!(offset, 5);
    }
}
