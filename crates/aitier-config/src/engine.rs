//! The settings of a local model's engine, one struct for every source:
//! command-line flags and `AITIER_*` variables (clap), the file's
//! `[engine]` table and each `[[models]]` entry (serde). Unset means "ask
//! the next source"; the engine's own defaults come last.
use std::path::Path;

use clap::Args;
use serde::Deserialize;

use aitier_engine::{EngineConfig, FlashAttn, KvType};

#[derive(Debug, Clone, Default, PartialEq, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    /// Sequences decoded together per model.
    #[arg(long, env = "AITIER_SLOTS")]
    pub slots: Option<u32>,
    /// Context tokens per sequence.
    #[arg(long, env = "AITIER_CTX_SIZE")]
    pub ctx_size: Option<u32>,
    /// CPU threads per model (0: one per core).
    #[arg(long, env = "AITIER_THREADS")]
    pub threads: Option<u32>,
    /// Tokens per decode call.
    #[arg(long, env = "AITIER_BATCH_SIZE")]
    pub batch_size: Option<u32>,
    /// Requests that may wait per model before new ones get 429.
    #[arg(long, env = "AITIER_QUEUE_DEPTH")]
    pub queue_depth: Option<u32>,
    /// Prompt tokens prefilled per step while others decode.
    #[arg(long, env = "AITIER_PREFILL_CHUNK")]
    pub prefill_chunk: Option<u32>,
    /// Most tokens a decode step takes while the engine is shared (decoding
    /// streams and prompt chunks together; prompts keep half); bounds how
    /// long a newcomer waits to start (0: only `prefill_chunk` bounds it).
    #[arg(long, env = "AITIER_STEP_TOKENS")]
    pub step_tokens: Option<u32>,
    /// KV cells idle slots may keep as prefix cache (default: all).
    #[arg(long, env = "AITIER_CACHE_CELLS")]
    pub cache_cells: Option<u64>,
    /// KV cells sequences paused for another tenant keep in memory until
    /// they resume (default: one slot's context); beyond it they are
    /// recomputed.
    #[arg(long, env = "AITIER_SWAP_CELLS")]
    pub swap_cells: Option<u64>,
    /// Parse control tokens written in chat message contents (trusted
    /// callers only: it lets an end user forge roles).
    #[arg(long, env = "AITIER_SPECIAL_TOKENS_IN_CONTENT")]
    pub special_tokens_in_content: Option<bool>,
    /// How the KV cache stores keys: f16 (default), q8_0 (half the memory),
    /// f32, bf16, q5_1, q5_0, q4_1, q4_0, iq4_nl.
    #[arg(long, env = "AITIER_CACHE_TYPE_K", value_parser = parse_kv_type)]
    pub cache_type_k: Option<KvType>,
    /// How the KV cache stores values (as --cache-type-k; a quantised one
    /// turns flash attention on).
    #[arg(long, env = "AITIER_CACHE_TYPE_V", value_parser = parse_kv_type)]
    pub cache_type_v: Option<KvType>,
    /// Layers to offload to the GPU (a build with the `cuda` feature only);
    /// 0 runs on the CPU.
    #[arg(long, env = "AITIER_GPU_LAYERS")]
    pub gpu_layers: Option<u32>,
    /// Flash attention: auto (llama.cpp's choice: on where the backend has
    /// a kernel, the CPU included), on, off (on the CPU, twice as fast
    /// 1,500 tokens deep; a quantised V cache needs it on).
    #[arg(long, env = "AITIER_FLASH_ATTN", value_parser = parse_flash_attn)]
    pub flash_attn: Option<FlashAttn>,
}

fn parse_kv_type(s: &str) -> Result<KvType, String> {
    s.parse()
}

fn parse_flash_attn(s: &str) -> Result<FlashAttn, String> {
    s.parse()
}

impl EngineSettings {
    /// Each setting from `self` where set, else from `fallback`.
    pub fn or(&self, fallback: &EngineSettings) -> EngineSettings {
        EngineSettings {
            slots: self.slots.or(fallback.slots),
            ctx_size: self.ctx_size.or(fallback.ctx_size),
            threads: self.threads.or(fallback.threads),
            batch_size: self.batch_size.or(fallback.batch_size),
            queue_depth: self.queue_depth.or(fallback.queue_depth),
            prefill_chunk: self.prefill_chunk.or(fallback.prefill_chunk),
            step_tokens: self.step_tokens.or(fallback.step_tokens),
            cache_cells: self.cache_cells.or(fallback.cache_cells),
            swap_cells: self.swap_cells.or(fallback.swap_cells),
            special_tokens_in_content: self
                .special_tokens_in_content
                .or(fallback.special_tokens_in_content),
            cache_type_k: self.cache_type_k.or(fallback.cache_type_k),
            cache_type_v: self.cache_type_v.or(fallback.cache_type_v),
            gpu_layers: self.gpu_layers.or(fallback.gpu_layers),
            flash_attn: self.flash_attn.or(fallback.flash_attn),
        }
    }

    /// The engine for the chat model at `path`: these settings over the
    /// engine's defaults.
    pub fn engine(&self, path: &Path) -> EngineConfig {
        self.over(EngineConfig::new(path))
    }

    /// The engine for the embedding model at `path`, over the defaults of
    /// embedding engines.
    pub fn embedding_engine(&self, path: &Path, matryoshka: bool) -> EngineConfig {
        self.over(EngineConfig::embedding(path, matryoshka))
    }

    fn over(&self, d: EngineConfig) -> EngineConfig {
        EngineConfig {
            slots: self.slots.unwrap_or(d.slots),
            ctx_per_slot: self.ctx_size.unwrap_or(d.ctx_per_slot),
            batch_size: self.batch_size.unwrap_or(d.batch_size),
            threads: self.threads.unwrap_or(d.threads),
            queue_depth: self.queue_depth.unwrap_or(d.queue_depth),
            prefill_chunk: self.prefill_chunk.unwrap_or(d.prefill_chunk),
            step_tokens: self.step_tokens.unwrap_or(d.step_tokens),
            cache_cells: self.cache_cells.or(d.cache_cells),
            swap_cells: self.swap_cells.or(d.swap_cells),
            special_tokens_in_content: self
                .special_tokens_in_content
                .unwrap_or(d.special_tokens_in_content),
            path: d.path,
            task: d.task,
            background: d.background,
            chat_template_file: None,
            cache_type_k: self.cache_type_k.unwrap_or(d.cache_type_k),
            cache_type_v: self.cache_type_v.unwrap_or(d.cache_type_v),
            gpu_layers: self.gpu_layers.unwrap_or(d.gpu_layers),
            flash_attn: self.flash_attn.unwrap_or(d.flash_attn),
        }
    }
}
