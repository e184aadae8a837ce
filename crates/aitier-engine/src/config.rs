use std::path::PathBuf;

/// What a local model is loaded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Task {
    /// Chat and completions (`LocalModel`).
    #[default]
    Generate,
    /// Embeddings (`EmbeddingModel`).
    Embed {
        /// The model was trained for Matryoshka truncation, so requests may
        /// ask for fewer `dimensions`.
        matryoshka: bool,
    },
}

/// How one local model is loaded and scheduled. An embedding model reads
/// the same settings its own way: `slots` is the most inputs per batch,
/// `ctx_per_slot` the longest input (at most the model's trained context),
/// `batch_size` the tokens per batch.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    pub path: PathBuf,
    pub task: Task,
    /// Sequences decoded together in one batch (llama.cpp's "slots").
    pub slots: u32,
    /// Tokens one sequence may hold, prompt and completion together.
    pub ctx_per_slot: u32,
    /// Tokens per llama_decode call; long prompts are fed in chunks of this.
    pub batch_size: u32,
    /// CPU threads for llama.cpp; 0 means one per available core.
    pub threads: u32,
    /// Requests that may wait for a slot before new ones are refused.
    pub queue_depth: u32,
    /// Prompt tokens prefilled per step while other sequences are decoding;
    /// bounds how long one step (and so every stream's next token) can take.
    pub prefill_chunk: u32,
    /// While the engine is shared, prompt chunks are sized from the measured
    /// cost per token so a step takes about this long (at most
    /// `prefill_chunk` tokens); a newcomer never waits longer than one step
    /// to be admitted. 0 turns it off.
    pub step_target_ms: u32,
    /// KV cells idle slots may keep as prefix cache (LRU beyond it); None
    /// means all of them.
    pub cache_cells: Option<u64>,
    /// Tokenize chat message contents with control tokens parsed, as
    /// llama.cpp's server does, so that a caller can write template markup
    /// into them. Off by default: it lets an end user forge roles. Only for
    /// models whose every caller is trusted with the raw template.
    pub special_tokens_in_content: bool,
    /// Run the engine's threads at the lowest CPU priority (SCHED_IDLE on
    /// Linux): its work fills the cores other work leaves idle. On by
    /// default for embedding models, so that they never slow chat on the
    /// same cores.
    pub background: bool,
    /// A Jinja chat template (Hugging Face conventions) used instead of the
    /// one in the GGUF metadata: for models that carry none, or one that
    /// lacks something (tools, a system role).
    pub chat_template_file: Option<PathBuf>,
}

impl EngineConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            task: Task::Generate,
            slots: 4,
            ctx_per_slot: 4096,
            batch_size: 512,
            threads: 0,
            queue_depth: 256,
            prefill_chunk: 64,
            step_target_ms: 50,
            cache_cells: None,
            special_tokens_in_content: false,
            background: false,
            chat_template_file: None,
        }
    }

    /// An embedding model's defaults: up to 64 inputs and 512 tokens per
    /// batch, inputs up to 8192 tokens where the model was trained for that
    /// many, at background priority. A batch's attention mask is as wide as
    /// the batch squared, and llama.cpp reads all of it even where flash
    /// attention skips the blocks between sequences; past a few hundred
    /// tokens that costs more than a bigger batch saves (docs/benchmarks.md).
    pub fn embedding(path: impl Into<PathBuf>, matryoshka: bool) -> Self {
        Self {
            task: Task::Embed { matryoshka },
            slots: 64,
            ctx_per_slot: 8192,
            batch_size: 512,
            background: true,
            ..Self::new(path)
        }
    }

    /// The one check of an engine's settings, for the config and for `load`.
    pub fn validate(&self) -> Result<(), String> {
        if self.slots == 0
            || self.batch_size == 0
            || self.queue_depth == 0
            || self.ctx_per_slot < 16
        {
            return Err(
                "slots, batch_size and queue_depth must be positive and ctx_size at least 16"
                    .into(),
            );
        }
        Ok(())
    }
}
