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
    /// Most tokens a step takes while the engine is shared, decoding
    /// streams' and prompts' together (prompts keep half of it while any
    /// waits; decoders left out go first next step). A newcomer waits for
    /// at most one such step, so its wait is a multiple of its own prefill
    /// time on any machine. 0: no bound but `prefill_chunk` on the prompts.
    pub step_tokens: u32,
    /// KV cells idle slots may keep as prefix cache (LRU beyond it); None
    /// means all of them.
    pub cache_cells: Option<u64>,
    /// KV cells that sequences paused for another tenant (see `preempt`)
    /// may keep in host memory until they resume; beyond it a paused
    /// sequence is recomputed, from the prefix cache where it can be.
    /// None means one slot's context.
    pub swap_cells: Option<u64>,
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
    /// How the KV cache stores keys and values: f16 by default; q8_0 holds
    /// about half the memory per cell (a quantised V cache needs flash
    /// attention, which llama.cpp then turns on).
    pub cache_type_k: KvType,
    pub cache_type_v: KvType,
    /// Layers offloaded to the GPU; 0 runs on the CPU. Only a build with
    /// the `cuda` feature has a GPU to offload to.
    pub gpu_layers: u32,
    /// Flash attention: `Auto` leaves it to llama.cpp (`flash_attn_policy`).
    pub flash_attn: FlashAttn,
}

/// The values of llama.cpp's `--flash-attn`, with aitier's own `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum FlashAttn {
    #[default]
    Auto,
    On,
    Off,
}

impl std::str::FromStr for FlashAttn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "on" | "true" | "1" => Ok(Self::On),
            "off" | "false" | "0" => Ok(Self::Off),
            _ => Err(format!(
                "unknown flash attention setting `{s}` (auto, on or off)"
            )),
        }
    }
}

impl TryFrom<String> for FlashAttn {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// The element types llama.cpp's `--cache-type-k/-v` take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum KvType {
    F32,
    #[default]
    F16,
    Bf16,
    Q8_0,
    Q5_1,
    Q5_0,
    Q4_1,
    Q4_0,
    Iq4Nl,
}

impl KvType {
    const ALL: [(KvType, &'static str); 9] = [
        (KvType::F32, "f32"),
        (KvType::F16, "f16"),
        (KvType::Bf16, "bf16"),
        (KvType::Q8_0, "q8_0"),
        (KvType::Q5_1, "q5_1"),
        (KvType::Q5_0, "q5_0"),
        (KvType::Q4_1, "q4_1"),
        (KvType::Q4_0, "q4_0"),
        (KvType::Iq4Nl, "iq4_nl"),
    ];

    /// Stored in blocks of quantised values rather than as floats.
    pub fn is_quantised(self) -> bool {
        !matches!(self, KvType::F32 | KvType::F16 | KvType::Bf16)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(t, _)| *t == self)
            .map_or("f16", |(_, n)| n)
    }
}

impl std::str::FromStr for KvType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Self::ALL
            .iter()
            .find(|(_, n)| *n == wanted)
            .map(|(t, _)| *t)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|(_, n)| *n).collect();
                format!("unknown KV cache type `{s}` (one of {})", names.join(", "))
            })
    }
}

impl TryFrom<String> for KvType {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl std::fmt::Display for KvType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
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
            step_tokens: 16,
            cache_cells: None,
            swap_cells: None,
            special_tokens_in_content: false,
            background: false,
            chat_template_file: None,
            cache_type_k: KvType::F16,
            cache_type_v: KvType::F16,
            gpu_layers: 0,
            flash_attn: FlashAttn::Auto,
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

    /// llama.cpp's flash attention policy for a generation engine: -1
    /// (llama.cpp's auto, on wherever the backend has a kernel), 0 or 1.
    /// `Auto` is llama.cpp's auto, except that a quantised V cache, which
    /// llama.cpp cannot run without it, asks for it outright. Off decodes
    /// long contexts twice as fast on the CPU, but is not the default
    /// (docs/configuration.md#flash-attention says why).
    pub fn flash_attn_policy(&self) -> i32 {
        match self.flash_attn {
            FlashAttn::On => 1,
            FlashAttn::Off => 0,
            FlashAttn::Auto if self.cache_type_v.is_quantised() => 1,
            FlashAttn::Auto => -1,
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
        if self.flash_attn == FlashAttn::Off && self.cache_type_v.is_quantised() {
            return Err(format!(
                "a {} V cache needs flash attention: set flash_attn to auto or on, \
                 or cache_type_v to f16",
                self.cache_type_v
            ));
        }
        if self.gpu_layers > 0 && !crate::GPU_BUILD {
            return Err(format!(
                "gpu_layers = {} asks for GPU offload, but this build has no GPU backend: \
                 build with `--features cuda` (and the CUDA toolkit), or leave gpu_layers at 0",
                self.gpu_layers
            ));
        }
        Ok(())
    }
}
