//! A GGUF embedding model served in-process: BERT-style encoders (BERT,
//! nomic-bert, jina) and decoders trained for embeddings (Qwen3-Embedding),
//! pooled the way the model's metadata says (`{arch}.pooling_type`: mean,
//! CLS or last token), every vector L2-normalised. Inputs of all requests
//! are batched together on the model's own engine thread (`embed_worker`).
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::future::BoxFuture;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::model::LlamaModel;
use tokio::sync::{mpsc, oneshot};

use aitier_core::embed::shorten;
use aitier_core::{
    CoreError, EmbedRequest, Embeddings, GenerateRequest, ModelInfo, Prepared, Provider,
    ProviderStats, RequestCtx, RequestSize, TokenPiece,
};

use crate::config::{EngineConfig, Task};
use crate::embed_input::InputTokenizer;
use crate::embed_worker::{EmbedJob, EmbedLimits, EmbedWorker};
use crate::engine_thread::{self, EngineError, Intake};
use crate::job::Counters;
use crate::tokens;

/// `{arch}.{key}` of the model's metadata.
fn arch_meta(model: &LlamaModel, key: &str) -> Option<String> {
    let arch = model.meta_val_str("general.architecture").ok()?;
    model.meta_val_str(&format!("{arch}.{key}")).ok()
}

/// How the model's token outputs become one vector, from its metadata.
fn pooling(model: &LlamaModel) -> Result<&'static str, String> {
    let kind = arch_meta(model, "pooling_type").ok_or(
        "no {arch}.pooling_type in its metadata: the file does not say how to pool its outputs into one vector",
    )?;
    // llama.cpp's enum llama_pooling_type.
    match kind.trim() {
        "1" => Ok("mean"),
        "2" => Ok("cls"),
        "3" => Ok("last"),
        "4" => Err("it is a reranker (rank pooling), not an embedding model".into()),
        other => Err(format!("pooling_type {other} is no pooling")),
    }
}

/// A GGUF embedding model with its engine thread.
pub struct EmbeddingModel {
    model: Arc<LlamaModel>,
    intake: Intake<EmbedJob>,
    inputs: InputTokenizer,
    dims: u32,
    matryoshka: bool,
    n_vocab: u32,
    counters: Arc<Counters>,
}

/// What `prepare_embed` computed, kept for `embed`.
struct Tokenized(Vec<Vec<u32>>);

impl EmbeddingModel {
    /// Loads the model and starts its engine thread. Blocking: call it from
    /// a blocking-friendly thread.
    pub fn load(cfg: &EngineConfig) -> Result<Arc<Self>, EngineError> {
        let Task::Embed { matryoshka } = cfg.task else {
            return Err(EngineError::Config("not an embedding model".into()));
        };
        let path = cfg.path.display().to_string();
        let load_error = |why: String| EngineError::Load {
            path: path.clone(),
            why,
        };
        let model = engine_thread::load_model(cfg)?;
        let pooling = pooling(&model).map_err(&load_error)?;
        let window = cfg.ctx_per_slot.min(model.n_ctx_train().max(1));
        let limits = EmbedLimits {
            budget: cfg.batch_size.max(window),
            max_seqs: cfg.slots.min(256),
        };
        let dims = u32::try_from(model.n_embd_out()).unwrap_or(0);
        let causal = arch_meta(&model, "attention.causal").is_none_or(|v| v != "false");
        let model = Arc::new(model);
        let counters = Arc::new(Counters::default());
        // Encoders keep no cells between tokens; a causal model holds a
        // whole batch in its cache.
        let cells = if causal { limits.budget } else { window };
        let jobs = spawn(model.clone(), cfg, limits, cells, counters.clone())?;
        tracing::info!(%path, pooling, window, dims, "embedding model loaded");
        let n_vocab = model.vocab().n_tokens().max(0) as u32;
        Ok(Arc::new(Self {
            inputs: InputTokenizer::new(model.clone(), n_vocab, window),
            n_vocab,
            model,
            intake: Intake {
                jobs,
                capacity: u64::from(cfg.queue_depth),
            },
            dims,
            matryoshka,
            counters,
        }))
    }

    /// The vectors' length.
    pub fn dimensions(&self) -> u32 {
        self.dims
    }

    fn check_dimensions(&self, asked: Option<u32>) -> Result<Option<usize>, CoreError> {
        match asked {
            None => Ok(None),
            Some(d) if d == self.dims => Ok(None),
            Some(d) if self.matryoshka && d < self.dims => Ok(Some(d as usize)),
            Some(_) if self.matryoshka => Err(CoreError::invalid(
                "dimensions",
                format!("`dimensions` must be at most {}, this model's size", self.dims),
            )),
            Some(d) => Err(CoreError::invalid(
                "dimensions",
                format!(
                    "this model makes {}-dimensional vectors and was not trained to be shortened (Matryoshka), so `dimensions` {d} is not supported",
                    self.dims
                ),
            )),
        }
    }
}

/// Starts the engine thread, which owns the llama context; returns the
/// sender of its jobs.
fn spawn(
    model: Arc<LlamaModel>,
    cfg: &EngineConfig,
    limits: EmbedLimits,
    cells: u32,
    counters: Arc<Counters>,
) -> Result<mpsc::Sender<EmbedJob>, EngineError> {
    // One unified cache of `cells`, and every batch in one micro-batch,
    // as non-causal attention needs.
    let params = LlamaContextParams::default()
        .with_embeddings(true)
        .with_n_ctx(NonZeroU32::new(cells))
        .with_n_batch(limits.budget)
        .with_n_ubatch(limits.budget)
        .with_n_seq_max(limits.max_seqs)
        .with_kv_unified(true);
    let params = engine_thread::with_threads(params, cfg);
    // Flash attention skips the masked blocks between the sequences of a
    // batch, which plain attention computes: batches ran 2.4x faster with
    // it (docs/benchmarks.md). 1 is llama.h's LLAMA_FLASH_ATTN_TYPE_ENABLED
    // (the crate re-exports no name for it); a model without it falls back.
    let flash = params.clone().with_flash_attention_policy(1);
    engine_thread::start(
        "aitier-embed",
        cfg,
        model,
        vec![flash, params],
        cfg.queue_depth,
        move |_, ctx, jobs| {
            EmbedWorker::new(ctx, limits, counters).run(jobs);
        },
    )
}

fn not_generative() -> CoreError {
    CoreError::invalid("model", "this is an embedding model: use /v1/embeddings")
}

impl Provider for EmbeddingModel {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            context_length: self.inputs.window,
            generates: false,
            embeds: true,
        }
    }

    fn prepare(&self, _req: GenerateRequest) -> BoxFuture<'_, Result<Prepared, CoreError>> {
        Box::pin(async { Err(not_generative()) })
    }

    fn run(
        &self,
        _prepared: Prepared,
        _ctx: RequestCtx,
    ) -> BoxFuture<'_, Result<aitier_core::EventStream, CoreError>> {
        Box::pin(async { Err(not_generative()) })
    }

    fn prepare_embed(
        &self,
        req: EmbedRequest,
    ) -> BoxFuture<'_, Result<Prepared<EmbedRequest>, CoreError>> {
        Box::pin(async move {
            self.check_dimensions(req.dimensions)?;
            // 2,048 inputs are a lot of tokenizing: off the async threads.
            let tokenizer = self.inputs.clone();
            let (req, inputs) = tokio::task::spawn_blocking(move || {
                let inputs = tokenizer.tokenize(&req);
                (req, inputs)
            })
            .await
            .map_err(|e| CoreError::Internal(format!("tokenizing failed: {e}")))?;
            let inputs = inputs?;
            let size = RequestSize {
                prompt_tokens: inputs.iter().map(|i| i.len() as u32).sum(),
                choices: inputs.len() as u32,
                max_tokens: Some(0),
                completion_cap: 0,
            };
            Ok(Prepared::new(req, size).with_state(Tokenized(inputs)))
        })
    }

    fn embed(
        &self,
        prepared: Prepared<EmbedRequest>,
        ctx: RequestCtx,
    ) -> BoxFuture<'_, Result<Embeddings, CoreError>> {
        Box::pin(async move {
            let dims = self.check_dimensions(prepared.request.dimensions)?;
            let inputs = match prepared.state::<Tokenized>() {
                Some(t) => t.0.clone(),
                None => self.inputs.tokenize(&prepared.request)?,
            };
            let prompt_tokens = inputs.iter().map(|i| i.len() as u32).sum();
            let (reply, answer) = oneshot::channel();
            self.intake.submit(
                &self.counters.in_flight,
                EmbedJob {
                    inputs,
                    tenant: ctx.tenant,
                    weight: ctx.weight,
                    deadline: ctx.deadline,
                    reply,
                },
            )?;
            let mut vectors = answer
                .await
                .map_err(|_| CoreError::Internal("the engine thread has stopped".into()))??;
            if let Some(d) = dims {
                shorten(&mut vectors, d);
            }
            Ok(Embeddings {
                vectors,
                prompt_tokens,
                estimated: false,
                deployment: None,
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

    fn detokenize(&self, tokens: Vec<u32>) -> BoxFuture<'_, Result<String, CoreError>> {
        Box::pin(async move { tokens::detokenize(&self.model, self.n_vocab, &tokens) })
    }

    fn stats(&self) -> ProviderStats {
        let c = &self.counters;
        ProviderStats {
            prompt_tokens: c.prompt_tokens.load(Ordering::Relaxed),
            prompt_computed: c.prompt_tokens.load(Ordering::Relaxed),
            requests_finished: c.finished.load(Ordering::Relaxed),
            requests_cancelled: c.cancelled.load(Ordering::Relaxed),
            running: c.running.load(Ordering::Relaxed),
            waiting: c.waiting.load(Ordering::Relaxed),
            ..ProviderStats::default()
        }
    }
}
