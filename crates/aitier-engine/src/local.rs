use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use futures::StreamExt;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::model::LlamaModel;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use aitier_core::{
    CoreError, EngineHistograms, EventStream, GenEvent, GenerateRequest, ModelInfo, Prepared,
    PromptInput, Provider, ProviderStats, RequestCtx, RequestSize, TokenPiece, Tools,
};

use aitier_core::frontend::tools::to_wire_tools;
use aitier_protocol::tools::Tool;

use crate::config::EngineConfig;
use crate::engine_thread::{self, EngineError, Intake};
use crate::grammar::Grammars;
use crate::job::{Counters, Job, WorkerConfig};
use crate::template::{ChatTemplate, TemplateError};
use crate::tokens;
use crate::toolcall;
use crate::worker::Worker;
use llguidance::Matcher;

/// The configured template file, else the model's own chat template from
/// its GGUF metadata; `None` (with a warning) when there is neither, so
/// only legacy completions work.
fn chat_template(
    model: &LlamaModel,
    cfg: &EngineConfig,
    bos_text: &str,
) -> Result<Option<ChatTemplate>, EngineError> {
    let path = cfg.path.display().to_string();
    let src = if let Some(file) = &cfg.chat_template_file {
        std::fs::read_to_string(file).map_err(|e| EngineError::Load {
            path: file.display().to_string(),
            why: format!("chat template file: {e}"),
        })?
    } else {
        let Ok(t) = model.chat_template(None) else {
            tracing::warn!(%path, "model has no chat template; only /v1/completions will work (set chat_template_file)");
            return Ok(None);
        };
        t.to_string().map_err(|e| EngineError::Load {
            path: path.clone(),
            why: format!("chat template is not UTF-8: {e}"),
        })?
    };
    let vocab = model.vocab();
    let eos = vocab.token_to_piece(vocab.eos(), true, None);
    let eos_text = String::from_utf8_lossy(&eos);
    Ok(Some(ChatTemplate::new(&src, bos_text, &eos_text)?))
}

/// Starts the engine thread, which owns the llama context; returns the
/// sender of its jobs.
fn spawn_engine(
    model: Arc<LlamaModel>,
    cfg: &EngineConfig,
    ctx_per_slot: u32,
    counters: Arc<Counters>,
) -> Result<mpsc::Sender<Job>, EngineError> {
    let n_ctx = ctx_per_slot
        .checked_mul(cfg.slots)
        .ok_or_else(|| EngineError::Config("slots × ctx_per_slot overflows".into()))?;
    let worker_cfg = WorkerConfig {
        slots: cfg.slots,
        ctx_per_slot,
        batch_size: cfg.batch_size,
        prefill_chunk: cfg.prefill_chunk.clamp(1, cfg.batch_size),
        step_tokens: cfg.step_tokens,
        cache_cells: cfg.cache_cells.unwrap_or(u64::from(n_ctx)),
        swap_cells: cfg.swap_cells.unwrap_or(u64::from(ctx_per_slot)),
    };
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(cfg.batch_size)
        .with_n_ubatch(cfg.batch_size)
        .with_n_seq_max(cfg.slots)
        .with_kv_unified(false)
        .with_flash_attention_policy(cfg.flash_attn_policy())
        .with_type_k(engine_thread::kv_type(cfg.cache_type_k))
        .with_type_v(engine_thread::kv_type(cfg.cache_type_v));
    let params = engine_thread::with_threads(params, cfg);
    let queue = cfg.slots + cfg.queue_depth;
    engine_thread::start(
        "aitier-engine",
        cfg,
        model,
        vec![params],
        queue,
        move |model, ctx, jobs| {
            Worker::new(model, ctx, worker_cfg, counters).run(jobs);
        },
    )
}

/// A GGUF model served in-process.
pub struct LocalModel {
    model: Arc<LlamaModel>,
    template: Option<ChatTemplate>,
    intake: Intake<Job>,
    ctx_per_slot: u32,
    /// Every slot's context: the KV cache's size.
    kv_cells: u64,
    n_vocab: u32,
    bos_text: String,
    counters: Arc<Counters>,
    /// Message contents may name control tokens (trusted callers only).
    special_tokens_in_content: bool,
    controls: tokens::Controls,
    grammars: Grammars,
    /// The template renders `tool` turns as they are.
    tool_role: bool,
}

impl LocalModel {
    /// Loads the model and starts its engine thread. Blocking: call it from a
    /// blocking-friendly thread.
    pub fn load(cfg: &EngineConfig) -> Result<Arc<Self>, EngineError> {
        let path = cfg.path.display().to_string();
        let model = Arc::new(engine_thread::load_model(cfg)?);
        let vocab = model.vocab();
        let bos_text =
            String::from_utf8_lossy(&vocab.token_to_piece(vocab.bos(), true, None)).into_owned();
        let template = chat_template(&model, cfg, &bos_text)?;
        let controls = tokens::Controls::of(&model).map_err(|why| EngineError::Load {
            path: path.clone(),
            why: format!("control tokens: {why}"),
        })?;
        let grammars = Grammars::of(&model).map_err(|why| EngineError::Load {
            path: path.clone(),
            why: format!("grammar support: {why}"),
        })?;
        let ctx_per_slot = cfg.ctx_per_slot.min(model.n_ctx_train().max(16));
        let counters = Arc::new(Counters::default());
        let jobs = spawn_engine(model.clone(), cfg, ctx_per_slot, counters.clone())?;
        Ok(Arc::new(Self {
            n_vocab: vocab.n_tokens().max(0) as u32,
            model,
            // Requests beyond which new ones are refused: slots plus queue depth.
            intake: Intake {
                jobs,
                capacity: u64::from(cfg.slots) + u64::from(cfg.queue_depth),
            },
            ctx_per_slot,
            kv_cells: u64::from(cfg.slots) * u64::from(ctx_per_slot),
            bos_text,
            counters,
            special_tokens_in_content: cfg.special_tokens_in_content,
            controls,
            grammars,
            tool_role: template
                .as_ref()
                .is_some_and(ChatTemplate::accepts_tool_role),
            template,
        }))
    }

    fn tokenize_text(&self, text: &str, add_special: bool) -> Vec<u32> {
        tokens::tokenize_text(&self.model, text, add_special)
    }

    /// The conversation rendered by the model's template and tokenized so
    /// that only the template names control tokens, unless this model was
    /// configured to trust its callers' contents.
    fn chat_tokens(
        &self,
        template: &ChatTemplate,
        messages: &[aitier_core::Message],
        tools: Option<&[Tool]>,
    ) -> Result<Vec<u32>, CoreError> {
        let refused = |e| match e {
            TemplateError::Render(m) => CoreError::invalid("messages", m),
            TemplateError::Compile(m) => CoreError::Internal(m),
        };
        let starts_with_bos =
            |text: &str| !self.bos_text.is_empty() && text.starts_with(&self.bos_text);
        if self.special_tokens_in_content {
            let text = template.render(messages, tools).map_err(refused)?;
            // The template writes BOS itself when the model wants it.
            return Ok(self.tokenize_text(&text, !starts_with_bos(&text)));
        }
        let segments = template.render_segments(messages, tools).map_err(refused)?;
        let first = segments.iter().find(|s| !s.text.is_empty());
        let add_bos = !first.is_some_and(|s| !s.from_client && starts_with_bos(&s.text));
        Ok(tokens::tokenize_chat(
            &self.model,
            &self.controls,
            &segments,
            add_bos,
        ))
    }

    /// A conversation's prompt. A template that describes tools itself
    /// gets them, and the calls and results of earlier turns, as its
    /// variables; any other gets the generic format's system message and
    /// JSON turns (see `toolcall`), also when this request offers no tools.
    fn chat_prompt(
        &self,
        messages: &[aitier_core::Message],
        tools: Option<&Tools>,
    ) -> Result<Vec<u32>, CoreError> {
        let template = self.template.as_ref().ok_or_else(|| {
            CoreError::invalid(
                "messages",
                "this model has no chat template; use /v1/completions, or configure its chat_template_file",
            )
        })?;
        if !template.uses_tools() {
            let messages = toolcall::conversation(messages, tools, self.tool_role);
            return self.chat_tokens(template, &messages, None);
        }
        let wire = tools.map(to_wire_tools);
        if !self.special_tokens_in_content {
            self.refuse_control_text(messages, wire.as_deref())?;
        }
        self.chat_tokens(template, messages, wire.as_deref())
    }

    /// What a template renders itself (tool definitions, calls) is not cut
    /// out as client text, so a control token spelled in it is refused.
    fn refuse_control_text(
        &self,
        messages: &[aitier_core::Message],
        tools: Option<&[Tool]>,
    ) -> Result<(), CoreError> {
        fn refuse(param: String, token: &str) -> CoreError {
            CoreError::invalid(
                param,
                format!(
                    "the text '{token}' is a control token of this model and cannot appear here"
                ),
            )
        }
        for (i, t) in tools.unwrap_or_default().iter().enumerate() {
            let Some(f) = &t.function else {
                continue;
            };
            let parameters = f.parameters.as_ref().map(|p| p.to_string());
            let texts = [
                Some(f.name.as_str()),
                f.description.as_deref(),
                parameters.as_deref(),
            ];
            let found = texts
                .into_iter()
                .flatten()
                .find_map(|t| self.controls.first_in(t).map(str::to_owned));
            if let Some(token) = found {
                return Err(refuse(format!("tools[{i}]"), &token));
            }
        }
        for (i, m) in messages.iter().enumerate() {
            let ids = m.tool_call_id.iter().map(String::as_str);
            let calls = m
                .tool_calls
                .iter()
                .flat_map(|c| [c.id.as_str(), c.name.as_str(), c.arguments.as_str()]);
            if let Some(token) = ids
                .chain(calls)
                .find_map(|text| self.controls.first_in(text))
            {
                return Err(refuse(format!("messages[{i}].tool_calls"), token));
            }
        }
        Ok(())
    }

    /// The vocabulary's control tokens, with the text that names them in a
    /// template.
    pub fn control_tokens(&self) -> Vec<TokenPiece> {
        self.controls
            .list()
            .iter()
            .map(|(t, text)| TokenPiece {
                id: t.0 as u32,
                piece: text.clone(),
            })
            .collect()
    }

    /// Renders and tokenises the prompts and checks them against the
    /// vocabulary.
    fn prompts(&self, req: &GenerateRequest) -> Result<Vec<Vec<u32>>, CoreError> {
        let prompts = match &req.prompt {
            PromptInput::Chat(messages) => vec![self.chat_prompt(messages, req.tools.as_ref())?],
            PromptInput::Texts(texts) => texts
                .iter()
                .map(|t| {
                    let toks = self.tokenize_text(t, true);
                    // OpenAI accepts an empty prompt: start from BOS alone.
                    let bos = self.model.vocab().bos().0;
                    if toks.is_empty() && bos >= 0 && (bos as u32) < self.n_vocab {
                        vec![bos as u32]
                    } else {
                        toks
                    }
                })
                .collect(),
            PromptInput::Tokens(lists) => {
                for (i, list) in lists.iter().enumerate() {
                    if let Some(bad) = list.iter().find(|&&t| t >= self.n_vocab) {
                        return Err(CoreError::invalid(
                            "prompt",
                            format!("prompt {i} has token id {bad}, outside the vocabulary of {} tokens", self.n_vocab),
                        ));
                    }
                }
                lists.clone()
            }
        };
        for (i, p) in prompts.iter().enumerate() {
            if p.is_empty() {
                return Err(CoreError::invalid(
                    "prompt",
                    format!("prompt {i} is empty after tokenisation"),
                ));
            }
        }
        if let Some(&(bad, _)) = req
            .sampling
            .logit_bias
            .iter()
            .find(|(t, _)| *t >= self.n_vocab)
        {
            return Err(CoreError::invalid(
                "logit_bias",
                format!(
                    "token id {bad} is outside the vocabulary of {} tokens",
                    self.n_vocab
                ),
            ));
        }
        Ok(prompts)
    }

    fn max_new(&self, prompt_len: usize, asked: Option<u32>) -> Result<u32, CoreError> {
        let ctx = self.ctx_per_slot as usize;
        let room = ctx.saturating_sub(prompt_len);
        match asked {
            Some(m) if prompt_len + m as usize > ctx => Err(CoreError::ContextLengthExceeded {
                message: format!(
                    "This model's maximum context length is {ctx} tokens. However, you requested {} tokens ({prompt_len} in the messages, {m} in the completion). Please reduce the length of the messages or completion.",
                    prompt_len + m as usize
                ),
            }),
            Some(m) => Ok(m),
            None if room == 0 => Err(CoreError::ContextLengthExceeded {
                message: format!(
                    "This model's maximum context length is {ctx} tokens. However, your messages resulted in {prompt_len} tokens. Please reduce the length of the messages."
                ),
            }),
            None => Ok(room as u32),
        }
    }
}

/// What `prepare` computed, kept for `run`.
#[derive(Clone)]
struct LocalPrepared {
    prompts: Vec<Vec<u32>>,
    max_new: Vec<u32>,
    /// The compiled constraint, not yet advanced.
    matcher: Option<Matcher>,
}

impl LocalModel {
    fn measure(&self, req: &GenerateRequest) -> Result<(RequestSize, LocalPrepared), CoreError> {
        let prompts = self.prompts(req)?;
        let max_new = prompts
            .iter()
            .map(|p| self.max_new(p.len(), req.max_tokens))
            .collect::<Result<Vec<_>, _>>()?;
        let per_prompt = req.n.max(1);
        let size = RequestSize {
            prompt_tokens: prompts.iter().map(|p| p.len() as u32).sum(),
            choices: per_prompt * prompts.len() as u32,
            max_tokens: req.max_tokens,
            completion_cap: max_new.iter().map(|m| m * per_prompt).sum(),
        };
        let matcher = match (&req.tools, &req.constraint) {
            (Some(_), Some(c)) => {
                return Err(CoreError::invalid(
                    c.param,
                    format!("`{}` together with `tools` is not supported by local models; constrain the tool's parameters instead", c.param),
                ))
            }
            (Some(tools), None) => Some(self.grammars.compile_tools(tools)?),
            (None, Some(c)) => Some(self.grammars.compile(c)?),
            (None, None) => None,
        };
        Ok((
            size,
            LocalPrepared {
                prompts,
                max_new,
                matcher,
            },
        ))
    }
}

impl Provider for LocalModel {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            context_length: self.ctx_per_slot,
            generates: true,
            embeds: false,
        }
    }

    fn prepare(&self, req: GenerateRequest) -> BoxFuture<'_, Result<Prepared, CoreError>> {
        Box::pin(async move {
            let (size, state) = self.measure(&req)?;
            Ok(Prepared::new(req, size).with_state(state))
        })
    }

    fn run(
        &self,
        prepared: Prepared,
        ctx: RequestCtx,
    ) -> BoxFuture<'_, Result<EventStream, CoreError>> {
        Box::pin(async move {
            // Prepared by another provider (a router's other deployment):
            // measure it here.
            let (
                size,
                LocalPrepared {
                    prompts,
                    max_new,
                    matcher,
                },
            ) = match prepared.state::<LocalPrepared>() {
                Some(s) => (prepared.size, s.clone()),
                None => self.measure(&prepared.request)?,
            };
            let req = prepared.request;
            let choices = size.choices as usize;
            let tools = req.tools.is_some();
            let (tx, rx) = mpsc::unbounded_channel();
            let _ = tx.send(GenEvent::started(size.prompt_tokens));
            // The request's span: the engine's spans for this request are its children.
            let span = tracing::Span::current();
            self.intake.submit(
                &self.counters.in_flight,
                Job {
                    prompts,
                    n: req.n,
                    max_new,
                    stop: req.stop,
                    logprobs: req.logprobs,
                    sampling: req.sampling,
                    deadline: ctx.deadline,
                    submitted: Instant::now(),
                    queue_span: tracing::info_span!(parent: &span, "queue_wait"),
                    span,
                    tenant: ctx.tenant,
                    weight: ctx.weight,
                    events: tx,
                    matcher,
                },
            )?;
            let events = UnboundedReceiverStream::new(rx).boxed();
            Ok(if tools {
                toolcall::read_calls(events, choices)
            } else {
                events
            })
        })
    }

    fn tokenize(
        &self,
        text: String,
        add_special: bool,
        parse_special: bool,
    ) -> BoxFuture<'_, Result<Vec<TokenPiece>, CoreError>> {
        tokens::pieces(self.model.clone(), text, add_special, parse_special)
    }

    fn stats(&self) -> ProviderStats {
        let c = &self.counters;
        ProviderStats {
            prompt_tokens: c.prompt_tokens.load(Ordering::Relaxed),
            generated_tokens: c.generated_tokens.load(Ordering::Relaxed),
            requests_finished: c.finished.load(Ordering::Relaxed),
            requests_cancelled: c.cancelled.load(Ordering::Relaxed),
            prompt_computed: c.prompt_computed.load(Ordering::Relaxed),
            running: c.running.load(Ordering::Relaxed),
            waiting: c.waiting.load(Ordering::Relaxed),
            grammar_masks: c.grammar_masks.load(Ordering::Relaxed),
            grammar_mask_micros: c.grammar_mask_micros.load(Ordering::Relaxed),
            kv_cells_used: c.kv_cells_used.load(Ordering::Relaxed),
            preempted: c.preempted.load(Ordering::Relaxed),
            kv_cells_total: self.kv_cells,
        }
    }

    fn histograms(&self) -> Option<EngineHistograms> {
        Some(self.counters.histograms.clone())
    }

    fn detokenize(&self, tokens: Vec<u32>) -> BoxFuture<'_, Result<String, CoreError>> {
        Box::pin(async move { tokens::detokenize(&self.model, self.n_vocab, &tokens) })
    }
}
