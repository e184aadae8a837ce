//! What every local model does the same way: the llama.cpp backend,
//! loading a GGUF file, the engine thread that owns a model's context, and
//! handing that thread its jobs.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use tokio::sync::mpsc;

use aitier_core::CoreError;

use crate::config::{EngineConfig, KvType};
use crate::template::TemplateError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model file {0} not found")]
    MissingFile(String),
    #[error("llama.cpp backend: {0}")]
    Backend(String),
    #[error("loading {path}: {why}")]
    Load { path: String, why: String },
    #[error("model has no usable chat template: {0}")]
    Template(#[from] TemplateError),
    #[error("bad engine configuration: {0}")]
    Config(String),
}

static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

fn backend() -> Result<&'static LlamaBackend, EngineError> {
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| EngineError::Backend(e.clone()))
}

/// The model file of `cfg`, once its settings are checked.
pub(crate) fn load_model(cfg: &EngineConfig) -> Result<LlamaModel, EngineError> {
    cfg.validate().map_err(EngineError::Config)?;
    if !cfg.path.is_file() {
        return Err(EngineError::MissingFile(cfg.path.display().to_string()));
    }
    let params = LlamaModelParams::default().with_n_gpu_layers(cfg.gpu_layers);
    LlamaModel::load_from_file(backend()?, &cfg.path, &params).map_err(|e| EngineError::Load {
        path: cfg.path.display().to_string(),
        why: e.to_string(),
    })
}

/// llama.cpp's name for a KV cache type.
pub(crate) fn kv_type(t: KvType) -> KvCacheType {
    match t {
        KvType::F32 => KvCacheType::F32,
        KvType::F16 => KvCacheType::F16,
        KvType::Bf16 => KvCacheType::BF16,
        KvType::Q8_0 => KvCacheType::Q8_0,
        KvType::Q5_1 => KvCacheType::Q5_1,
        KvType::Q5_0 => KvCacheType::Q5_0,
        KvType::Q4_1 => KvCacheType::Q4_1,
        KvType::Q4_0 => KvCacheType::Q4_0,
        KvType::Iq4Nl => KvCacheType::IQ4_NL,
    }
}

/// `params` with the configured threads, or one per core.
pub(crate) fn with_threads(params: LlamaContextParams, cfg: &EngineConfig) -> LlamaContextParams {
    let threads = if cfg.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get() as i32)
    } else {
        cfg.threads as i32
    };
    params.with_n_threads(threads).with_n_threads_batch(threads)
}

/// Starts the thread `name` that owns the model's context (made with the
/// first of `params` that works) and runs `work` with it until its jobs'
/// senders are gone; returns once the context exists. `queue` is the
/// channel's room: the real bound is the `Intake`'s capacity.
pub(crate) fn start<J: Send + 'static>(
    name: &str,
    cfg: &EngineConfig,
    model: Arc<LlamaModel>,
    params: Vec<LlamaContextParams>,
    queue: u32,
    work: impl FnOnce(&LlamaModel, LlamaContext<'_>, mpsc::Receiver<J>) + Send + 'static,
) -> Result<mpsc::Sender<J>, EngineError> {
    let backend = backend()?;
    let (jobs_tx, jobs_rx) = mpsc::channel(queue.max(1) as usize);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let background = cfg.background;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if background {
                // Before llama.cpp starts its worker threads, which inherit it.
                lower_priority();
            }
            let mut why = String::from("no context parameters");
            for p in params {
                match model.new_context(backend, p) {
                    Ok(ctx) => {
                        let _ = ready_tx.send(Ok(()));
                        work(&model, ctx, jobs_rx);
                        tracing::debug!("engine thread stopped");
                        return;
                    }
                    Err(e) => {
                        // The next parameters (say, without flash
                        // attention) may work, but run slower.
                        tracing::warn!(error = %e, "llama.cpp refused these context parameters");
                        why = e.to_string();
                    }
                }
            }
            let _ = ready_tx.send(Err(why));
        })
        .map_err(|e| EngineError::Backend(e.to_string()))?;
    ready_rx
        .recv()
        .map_err(|_| EngineError::Backend("engine thread died while starting".into()))?
        .map_err(|why| EngineError::Load {
            path: cfg.path.display().to_string(),
            why,
        })?;
    Ok(jobs_tx)
}

/// The lowest CPU priority for this thread (SCHED_IDLE on Linux): it runs
/// when no other thread of the machine wants the core. Two engines that
/// each use every core would otherwise time-slice each other's llama.cpp
/// threads, which wait at a barrier after every operation: chat's time to
/// first token beside a busy embedding model went from 1.0x to 4.7x
/// (docs/benchmarks.md).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
            ThreadSchedulePolicy,
        };
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        if let Err(e) = set_thread_priority_and_policy(
            thread_native_id(),
            thread_priority::ThreadPriority::Min,
            idle,
        ) {
            tracing::warn!(error = ?e, "could not lower the engine thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    tracing::warn!("background engines run at normal priority on this system");
}

/// The way into an engine thread: at most `capacity` requests in flight
/// (counted in `in_flight`, which the thread decrements as they end).
pub(crate) struct Intake<J> {
    pub jobs: mpsc::Sender<J>,
    pub capacity: u64,
}

impl<J> Intake<J> {
    /// Hands the job over, or refuses it when the queue is full.
    pub fn submit(&self, in_flight: &AtomicU64, job: J) -> Result<(), CoreError> {
        let overloaded = || CoreError::Overloaded {
            message: "this model's queue is full; retry shortly".into(),
            retry_after: Duration::from_secs(1),
        };
        let before = in_flight.fetch_add(1, Ordering::Relaxed);
        if before >= self.capacity {
            in_flight.fetch_sub(1, Ordering::Relaxed);
            return Err(overloaded());
        }
        self.jobs.try_send(job).map_err(|e| {
            in_flight.fetch_sub(1, Ordering::Relaxed);
            match e {
                mpsc::error::TrySendError::Full(_) => overloaded(),
                mpsc::error::TrySendError::Closed(_) => {
                    CoreError::Internal("the engine thread has stopped".into())
                }
            }
        })
    }
}
