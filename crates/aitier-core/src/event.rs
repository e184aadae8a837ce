use futures::stream::BoxStream;

use aitier_protocol::tools::ToolCallDelta;
use aitier_protocol::Usage;

use crate::error::CoreError;

/// What a provider yields for one request. Choices are interleaved and told
/// apart by `index`; the stream ends after `Done` or `Error`.
#[derive(Debug, Clone, PartialEq)]
pub enum GenEvent {
    /// The request was accepted and is running (or queued to run).
    Started {
        /// Exact for a local model; an upstream's is an estimate until its
        /// usage arrives with `Done`.
        prompt_tokens: u32,
        /// The deployment that took the request, when a router chose one.
        deployment: Option<String>,
        /// An upstream's own `system_fingerprint`, passed on to clients.
        fingerprint: Option<String>,
    },
    /// New text of one choice. It never contains stop-sequence text; `logprobs`
    /// covers the tokens generated since the previous delta of this choice,
    /// and `tokens` counts them, so a request that ends early is billed for
    /// what it was sent.
    Delta {
        index: u32,
        text: String,
        logprobs: Vec<TokenLogprob>,
        tokens: u32,
    },
    /// A piece of a tool call of one choice, in OpenAI's streamed shape:
    /// the first piece of call `delta.index` names it, the rest append to
    /// its arguments. `tokens` counts as in `Delta`.
    ToolCall {
        index: u32,
        delta: ToolCallDelta,
        tokens: u32,
    },
    Finished {
        index: u32,
        reason: FinishReason,
    },
    /// Every choice finished; totals for the request.
    Done {
        usage: Usage,
        /// The counts are an estimate (an upstream that reported none).
        estimated: bool,
    },
    Error(CoreError),
}

impl GenEvent {
    /// `Started` for a request that nothing routed.
    pub fn started(prompt_tokens: u32) -> Self {
        GenEvent::Started {
            prompt_tokens,
            deployment: None,
            fingerprint: None,
        }
    }

    /// `Done` with usage the provider counted itself.
    pub fn done(usage: Usage) -> Self {
        GenEvent::Done {
            usage,
            estimated: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    /// Stopped at the request's stop sequence of this index (reported as
    /// `stop` where an API has no word of its own for it).
    StopSequence(u8),
    Length,
    /// The choice ended with tool calls.
    ToolCalls,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop | FinishReason::StopSequence(_) => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
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
