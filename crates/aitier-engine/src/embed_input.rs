//! An embedding request's inputs as token ids: texts tokenized as text
//! between the model's own special tokens, token ids checked against the
//! vocabulary, and each input held to the model's window, refused by index
//! or cut where the request asks.
use std::sync::Arc;

use llama_cpp_2::model::LlamaModel;

use aitier_core::{CoreError, EmbedInput, EmbedRequest};

use crate::tokens;

#[derive(Clone)]
pub(crate) struct InputTokenizer {
    model: Arc<LlamaModel>,
    n_vocab: u32,
    /// The longest input, in tokens.
    pub window: u32,
    /// The special tokens a text gets before and after its own.
    specials: (usize, usize),
}

impl InputTokenizer {
    pub fn new(model: Arc<LlamaModel>, n_vocab: u32, window: u32) -> Self {
        Self {
            specials: specials(&model),
            model,
            n_vocab,
            window,
        }
    }

    /// Each input's tokens, within the window: cut to `truncate` (or the
    /// window) where the request asks, else refused by index.
    pub fn tokenize(&self, req: &EmbedRequest) -> Result<Vec<Vec<u32>>, CoreError> {
        let inputs = match &req.input {
            EmbedInput::Texts(texts) => texts
                .iter()
                .map(|t| tokens::tokenize_plain_with_specials(&self.model, t))
                .collect(),
            EmbedInput::Tokens(lists) => {
                for (i, list) in lists.iter().enumerate() {
                    if let Some(bad) = list.iter().find(|&&t| t >= self.n_vocab) {
                        return Err(CoreError::invalid(
                            "input",
                            format!("input[{i}] has token id {bad}, outside the vocabulary of {} tokens", self.n_vocab),
                        ));
                    }
                }
                lists.clone()
            }
        };
        let texts = matches!(req.input, EmbedInput::Texts(_));
        let limit = match req.truncate {
            Some(k) => k.unwrap_or(self.window).min(self.window),
            None => self.window,
        };
        inputs
            .into_iter()
            .enumerate()
            .map(|(i, toks)| {
                if toks.is_empty() {
                    return Err(CoreError::invalid(
                        "input",
                        format!("input[{i}] has no tokens"),
                    ));
                }
                if toks.len() <= limit as usize {
                    return Ok(toks);
                }
                if req.truncate.is_none() {
                    return Err(CoreError::ContextLengthExceeded {
                        message: format!(
                            "This model's maximum context length is {} tokens, however input[{i}] has {} tokens. Shorten it, or set truncate_prompt_tokens to cut it.",
                            self.window,
                            toks.len()
                        ),
                    });
                }
                Ok(self.cut(toks, limit as usize, texts))
            })
            .collect()
    }

    /// The first `limit` tokens; a text keeps its closing special tokens
    /// (BERT's `[SEP]`), as sentence-transformers truncates.
    fn cut(&self, mut toks: Vec<u32>, limit: usize, text: bool) -> Vec<u32> {
        let (head, tail) = if text { self.specials } else { (0, 0) };
        if head + tail >= limit {
            toks.truncate(limit);
            return toks;
        }
        let end = toks.split_off(toks.len() - tail);
        toks.truncate(limit - tail);
        toks.extend(end);
        toks
    }
}

/// How many special tokens the model puts before and after a text's own:
/// found by tokenizing a text both ways.
fn specials(model: &LlamaModel) -> (usize, usize) {
    let with = tokens::tokenize_plain_with_specials(model, "a");
    let plain = tokens::tokenize_plain(model, "a");
    let head = with
        .windows(plain.len().max(1))
        .position(|w| w == plain.as_slice())
        .unwrap_or(0);
    let tail = with.len().saturating_sub(head + plain.len());
    (head, tail)
}
