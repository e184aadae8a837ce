//! Validated, provider-neutral requests. Building one of these is the only
//! way in; see `validate`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
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

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: String,
    pub name: Option<String>,
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
}

impl GenerateRequest {
    pub fn choices(&self) -> usize {
        self.prompt.count() * self.n as usize
    }
}
