//! Text into token ids. A raw prompt (legacy completions) is tokenized as
//! llama.cpp's server does, with control tokens parsed; a rendered chat
//! only lets the template's own text name control tokens, while what a
//! client sent is always plain text (see `segments`). Text on either side
//! of a control token is tokenized as one run, as llama.cpp splits a whole
//! prompt at its control tokens: a prompt whose contents spell no control
//! token gets exactly the tokens it always had.
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use futures::future::BoxFuture;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token_type::LlamaTokenAttr;

use aitier_core::{CoreError, TokenPiece};

use crate::segments::Segment;

fn ids(tokens: Vec<LlamaToken>) -> Vec<u32> {
    tokens.into_iter().map(|t| t.0 as u32).collect()
}

/// `text` with control tokens parsed.
pub fn tokenize_text(model: &LlamaModel, text: &str, add_special: bool) -> Vec<u32> {
    ids(model.vocab().tokenize(text.as_bytes(), add_special, true))
}

/// `text` as plain text: control-token spellings are just characters.
pub fn tokenize_plain(model: &LlamaModel, text: &str) -> Vec<u32> {
    ids(model.vocab().tokenize(text.as_bytes(), false, false))
}

/// `text` as plain text between the special tokens the model adds to
/// every input (BOS; BERT's `[CLS]` and `[SEP]`).
pub fn tokenize_plain_with_specials(model: &LlamaModel, text: &str) -> Vec<u32> {
    ids(model.vocab().tokenize(text.as_bytes(), true, false))
}

/// `/tokenize`: ids with their text, off the async threads (a 4 MiB body
/// is a lot of tokenizing).
pub fn pieces(
    model: Arc<LlamaModel>,
    text: String,
    add_special: bool,
    parse_special: bool,
) -> BoxFuture<'static, Result<Vec<TokenPiece>, CoreError>> {
    Box::pin(async move {
        tokio::task::spawn_blocking(move || {
            let vocab = model.vocab();
            let ids = ids(model
                .vocab()
                .tokenize(text.as_bytes(), add_special, parse_special));
            ids.into_iter()
                .map(|id| TokenPiece {
                    id,
                    piece: String::from_utf8_lossy(&vocab.token_to_piece(
                        LlamaToken(id as i32),
                        true,
                        None,
                    ))
                    .into_owned(),
                })
                .collect()
        })
        .await
        .map_err(|e| CoreError::Internal(format!("tokenizing failed: {e}")))
    })
}

/// `/detokenize`, for ids checked against the vocabulary.
pub fn detokenize(model: &LlamaModel, n_vocab: u32, tokens: &[u32]) -> Result<String, CoreError> {
    if let Some(bad) = tokens.iter().find(|&&t| t >= n_vocab) {
        return Err(CoreError::invalid(
            "tokens",
            format!("token id {bad} is outside the vocabulary of {n_vocab} tokens"),
        ));
    }
    let toks: Vec<LlamaToken> = tokens.iter().map(|&t| LlamaToken(t as i32)).collect();
    let bytes = model.vocab().detokenize(&toks, false, false);
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The vocabulary's control tokens, and a finder for their spellings in
/// template text. Matching is leftmost-longest, as llama.cpp partitions a
/// prompt (longest spellings first); one automaton instead of a llama.cpp
/// tokenize call per template piece.
pub struct Controls {
    finder: AhoCorasick,
    tokens: Vec<(LlamaToken, String)>,
}

impl Controls {
    pub fn of(model: &LlamaModel) -> Result<Self, String> {
        let vocab = model.vocab();
        let tokens: Vec<(LlamaToken, String)> = (0..vocab.n_tokens())
            .map(LlamaToken)
            .filter(|&t| vocab.is_control(t))
            .map(|t| {
                let text = vocab.token_to_piece(t, true, None);
                (t, String::from_utf8_lossy(&text).into_owned())
            })
            .filter(|(_, text)| !text.is_empty())
            .collect();
        let finder = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(tokens.iter().map(|(_, text)| text))
            .map_err(|e| e.to_string())?;
        Ok(Self { finder, tokens })
    }

    /// Each control token with the text that names it.
    pub fn list(&self) -> &[(LlamaToken, String)] {
        &self.tokens
    }

    /// The first control token `text` spells, if any.
    pub fn first_in<'t>(&self, text: &'t str) -> Option<&'t str> {
        let (start, end, _) = self.find(text).next()?;
        Some(&text[start..end])
    }

    /// The control tokens spelled in `text`, with their byte ranges.
    fn find<'a>(&'a self, text: &'a str) -> impl Iterator<Item = (usize, usize, LlamaToken)> + 'a {
        self.finder
            .find_iter(text)
            .map(|m| (m.start(), m.end(), self.tokens[m.pattern().as_usize()].0))
    }
}

/// Text between control tokens, gathered into runs.
struct Runs<'m> {
    model: &'m LlamaModel,
    out: Vec<u32>,
    run: String,
    /// The last control token strips the whitespace after it.
    strip_next: bool,
}

impl Runs<'_> {
    fn text(&mut self, text: &str) {
        let text = if std::mem::take(&mut self.strip_next) {
            text.trim_start()
        } else {
            text
        };
        self.run.push_str(text);
    }

    fn flush(&mut self) {
        if !self.run.is_empty() {
            let run = std::mem::take(&mut self.run);
            self.out.extend(tokenize_plain(self.model, &run));
        }
    }

    fn control(&mut self, tok: LlamaToken) {
        // Attributes some vocabularies give their control tokens, applied
        // as llama.cpp applies them.
        let attr = self.model.vocab().attr(tok);
        if attr.contains(LlamaTokenAttr::LStrip) {
            let kept = self.run.trim_end().len();
            self.run.truncate(kept);
        }
        self.flush();
        self.out.push(tok.0 as u32);
        self.strip_next = attr.contains(LlamaTokenAttr::RStrip);
    }
}

/// The tokens of a rendered chat.
pub fn tokenize_chat(
    model: &LlamaModel,
    controls: &Controls,
    segments: &[Segment],
    add_bos: bool,
) -> Vec<u32> {
    let vocab = model.vocab();
    let mut runs = Runs {
        model,
        out: Vec::new(),
        run: String::new(),
        strip_next: false,
    };
    if add_bos && vocab.should_add_bos() {
        runs.out.push(vocab.bos().0 as u32);
    }
    for seg in segments {
        if seg.from_client {
            runs.text(&seg.text);
            continue;
        }
        let mut pos = 0;
        for (start, end, tok) in controls.find(&seg.text) {
            runs.text(&seg.text[pos..start]);
            runs.control(tok);
            pos = end;
        }
        runs.text(&seg.text[pos..]);
    }
    runs.flush();
    runs.out
}
