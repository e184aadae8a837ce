use futures::stream::BoxStream;

use aitier_protocol::Usage;

use crate::error::CoreError;

/// What a provider yields for one request. Choices are interleaved and told
/// apart by `index`; the stream ends after `Done` or `Error`.
#[derive(Debug, Clone, PartialEq)]
pub enum GenEvent {
    /// The prompt was accepted; its exact token count is known.
    Started {
        prompt_tokens: u32,
    },
    /// New text of one choice. It never contains stop-sequence text; `logprobs`
    /// covers the tokens generated since the previous delta of this choice.
    Delta {
        index: u32,
        text: String,
        logprobs: Vec<TokenLogprob>,
    },
    Finished {
        index: u32,
        reason: FinishReason,
    },
    /// Every choice finished; totals for the request.
    Done {
        usage: Usage,
    },
    Error(CoreError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
    /// The most likely alternatives, best first.
    pub top: Vec<(String, Vec<u8>, f32)>,
}

/// Dropping the stream cancels the request.
pub type EventStream = BoxStream<'static, GenEvent>;
