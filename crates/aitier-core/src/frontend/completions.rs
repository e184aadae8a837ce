//! Legacy `/v1/completions`.
use aitier_protocol::completions::{
    Completion, CompletionChoice, CompletionRequest, Prompt, TEXT_COMPLETION,
};
use aitier_protocol::sse::Payload;

use super::params::{self, check_max_tokens, MAX_COMPLETION_LOGPROBS};
use super::{closing, logprobs, tools, Answer, Decoded, Frontend, ResponseMeta};
use crate::error::CoreError;
use crate::event::GenEvent;
use crate::request::PromptInput;

/// The legacy completions front-end; an encoder for one request's answer.
#[derive(Debug)]
pub struct Completions {
    meta: ResponseMeta,
    logprobs: bool,
    include_usage: bool,
    /// Character offset reached by each choice, for `text_offset`.
    offsets: Vec<u32>,
}

fn prompt(p: &Prompt) -> Result<PromptInput, CoreError> {
    let prompt = match p {
        Prompt::Text(t) => PromptInput::Texts(vec![t.clone()]),
        Prompt::Texts(t) => PromptInput::Texts(t.clone()),
        Prompt::Tokens(t) => PromptInput::Tokens(vec![t.clone()]),
        Prompt::TokenLists(t) => PromptInput::Tokens(t.clone()),
    };
    if prompt.count() == 0 {
        return Err(CoreError::invalid(
            "prompt",
            "`prompt` must not be an empty list",
        ));
    }
    Ok(prompt)
}

fn refuse_unsupported(req: &CompletionRequest) -> Result<(), CoreError> {
    if req.echo.unwrap_or(false) {
        return Err(CoreError::invalid("echo", "`echo` is not supported"));
    }
    if req.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(CoreError::invalid("suffix", "`suffix` is not supported"));
    }
    if req.best_of.is_some_and(|b| b > 1) {
        return Err(CoreError::invalid(
            "best_of",
            "`best_of` above 1 is not supported",
        ));
    }
    Ok(())
}

impl Completions {
    fn chunk(&self, choice: Option<CompletionChoice>) -> Completion {
        Completion {
            id: self.meta.id.clone(),
            object: TEXT_COMPLETION.into(),
            created: self.meta.created,
            model: self.meta.model.clone(),
            system_fingerprint: Some(self.meta.fingerprint.clone()),
            choices: choice.into_iter().collect(),
            usage: None,
        }
    }
}

impl Frontend for Completions {
    type Request = CompletionRequest;
    type Response = Completion;
    type Chunk = Completion;

    fn decode(req: CompletionRequest) -> Result<Decoded<Self>, CoreError> {
        let prompt = prompt(&req.prompt)?;
        refuse_unsupported(&req)?;
        let logprobs = match req.logprobs {
            Some(k) if k > MAX_COMPLETION_LOGPROBS => {
                return Err(CoreError::invalid(
                    "logprobs",
                    format!("`logprobs` must be between 0 and {MAX_COMPLETION_LOGPROBS}"),
                ))
            }
            other => other,
        };
        let max_tokens = req
            .sampling
            .max_tokens
            .map(|m| check_max_tokens("max_tokens", m))
            .transpose()?
            // OpenAI's legacy default: 16 tokens.
            .or(Some(16));
        let (mut request, delivery) = params::build(&req.sampling, prompt, max_tokens, logprobs)?;
        request.constraint = tools::constraint(None, &req.sampling.guided)?;
        let encoder = Completions {
            meta: ResponseMeta::new("cmpl", &req.model),
            logprobs: logprobs.is_some(),
            include_usage: delivery.include_usage,
            offsets: vec![0; request.choices()],
        };
        Ok(Decoded {
            request,
            delivery,
            model: req.model,
            user: req.sampling.user,
            encoder,
        })
    }

    fn respond(mut self, answer: Answer) -> Completion {
        self.meta.started(answer.fingerprint);
        let want_logprobs = self.logprobs;
        Completion {
            choices: answer
                .choices
                .into_iter()
                .enumerate()
                .map(|(i, c)| CompletionChoice {
                    index: i as u32,
                    logprobs: want_logprobs.then(|| logprobs::to_completion(c.logprobs, &mut 0)),
                    text: c.text,
                    finish_reason: c.finish_reason.map(|r| r.as_str().into()),
                })
                .collect(),
            usage: Some(answer.usage),
            ..self.chunk(None)
        }
    }

    fn encode(&mut self, event: GenEvent) -> Vec<Payload<Completion>> {
        let choice = match event {
            GenEvent::Started { fingerprint, .. } => {
                self.meta.started(fingerprint);
                return vec![];
            }
            GenEvent::Delta {
                index,
                text,
                logprobs,
                ..
            } => {
                let logprobs = match self.offsets.get_mut(index as usize) {
                    Some(off) if self.logprobs => Some(logprobs::to_completion(logprobs, off)),
                    _ => None,
                };
                CompletionChoice {
                    index,
                    text,
                    logprobs,
                    finish_reason: None,
                }
            }
            GenEvent::Finished { index, reason } => CompletionChoice {
                index,
                text: String::new(),
                logprobs: None,
                finish_reason: Some(reason.as_str().into()),
            },
            GenEvent::Done { usage, .. } => {
                return closing(self.include_usage, || Completion {
                    usage: Some(usage),
                    ..self.chunk(None)
                })
            }
            // Legacy completions take no tools, so no provider sends calls.
            GenEvent::Error(_) | GenEvent::ToolCall { .. } => return vec![],
        };
        vec![Payload::Chunk(self.chunk(Some(choice)))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_defaults_to_sixteen_tokens() {
        let req: CompletionRequest =
            serde_json::from_value(serde_json::json!({"model": "m", "prompt": "hi"}))
                .expect("shape");
        let g = Completions::decode(req).expect("valid").request;
        assert_eq!(g.max_tokens, Some(16));
        assert_eq!(g.prompt, PromptInput::Texts(vec!["hi".into()]));
    }
}
