//! Validated, provider-neutral requests. Building one of these is the only
//! way in; see `validate`.

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Role {
    System,
    #[default]
    User,
    Assistant,
    Tool,
}

impl Role {
    /// The role name chat templates expect (`developer` is sent as `system`,
    /// which is what every open-weights template knows).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: String,
    pub name: Option<String>,
    /// The calls an assistant turn made.
    pub tool_calls: Vec<ToolCall>,
    /// The call a `tool` turn answers.
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            ..Self::default()
        }
    }
}

/// A call to one of the request's tools.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// A JSON text.
    pub arguments: String,
}

impl ToolCall {
    /// The arguments as a JSON value, as templates and the generic tool
    /// format write them; as a string when they are not JSON.
    pub fn arguments_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.arguments)
            .unwrap_or_else(|_| serde_json::Value::String(self.arguments.clone()))
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    pub name: String,
    pub description: Option<String>,
    /// A JSON Schema for the arguments object.
    pub parameters: serde_json::Value,
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// Text or calls, as the model decides.
    Auto,
    /// At least one call.
    Required,
    /// A call of this function.
    Function(String),
}

/// The tools of a request that may call them (`tool_choice` is not `none`).
#[derive(Debug, Clone, PartialEq)]
pub struct Tools {
    pub defs: Vec<ToolDef>,
    pub choice: ToolChoice,
    /// More than one call per turn allowed.
    pub parallel: bool,
}

/// A constraint and the request field that asked for it, which a grammar
/// error names.
#[derive(Debug, Clone, PartialEq)]
pub struct Constrained {
    pub rule: Constraint,
    pub param: &'static str,
}

/// What every generated choice must match.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// Any JSON object.
    JsonObject,
    /// A JSON value valid against this schema.
    JsonSchema {
        name: String,
        description: Option<String>,
        schema: serde_json::Value,
        strict: Option<bool>,
    },
    /// A Lark grammar (llguidance's dialect).
    Lark(String),
    /// A GBNF grammar, as llama.cpp's server takes.
    Gbnf(String),
    Regex(String),
    /// One of these strings exactly.
    Choice(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum PromptInput {
    /// A conversation, rendered with the model's own chat template.
    Chat(Vec<Message>),
    /// Raw prompts (legacy completions), each with its own `n` choices.
    Texts(Vec<String>),
    /// Pre-tokenised prompts.
    Tokens(Vec<Vec<u32>>),
}

impl PromptInput {
    pub fn count(&self) -> usize {
        match self {
            PromptInput::Chat(_) => 1,
            PromptInput::Texts(t) => t.len(),
            PromptInput::Tokens(t) => t.len(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    pub top_p: f32,
    /// 0 means off.
    pub top_k: u32,
    pub min_p: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// llama.cpp-style multiplicative penalty over the recent window; 1 is off.
    pub repeat_penalty: f32,
    pub logit_bias: Vec<(u32, f32)>,
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repeat_penalty: 1.0,
            logit_bias: Vec::new(),
            seed: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    pub prompt: PromptInput,
    pub sampling: SamplingParams,
    /// Choices per prompt.
    pub n: u32,
    /// None: as many as the context leaves room for.
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    /// Some(k): report each token's logprob and its k best alternatives.
    pub logprobs: Option<u32>,
    /// Tools the model may call (absent when `tool_choice` is `none`).
    pub tools: Option<Tools>,
    /// Constrained decoding: every choice matches this.
    pub constraint: Option<Constrained>,
    /// What routers keep together on one deployment (see `affinity`): a
    /// client's key, or none to key the request by its prompt.
    pub affinity: Option<String>,
}

impl GenerateRequest {
    /// One choice of `prompt` with default sampling and nothing else asked.
    pub fn new(prompt: PromptInput) -> Self {
        Self {
            prompt,
            sampling: SamplingParams::default(),
            n: 1,
            max_tokens: None,
            stop: Vec::new(),
            logprobs: None,
            tools: None,
            constraint: None,
            affinity: None,
        }
    }

    pub fn choices(&self) -> usize {
        self.prompt.count() * self.n as usize
    }
}
