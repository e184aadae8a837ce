//! Chat templates from the model's own GGUF metadata, rendered with
//! minijinja under the Hugging Face conventions (`messages`,
//! `add_generation_prompt`, `bos_token`, `eos_token`, `raise_exception`).
use std::borrow::Cow;

use minijinja::{context, Environment, Error, ErrorKind, Value};
use serde::Serialize;

use aitier_core::Message;
use aitier_protocol::tools::Tool;

use crate::segments::{self, Segment};

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("the chat template does not compile: {0}")]
    Compile(String),
    /// The template refused the conversation (`raise_exception`), or failed on it.
    #[error("{0}")]
    Render(String),
}

pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
    /// The template reads a `tools` variable (it describes tools itself).
    uses_tools: bool,
}

#[derive(Serialize)]
struct TemplateMessage<'a> {
    role: &'a str,
    content: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

/// A call as Hugging Face templates read it: arguments as an object.
fn template_call(c: &aitier_core::ToolCall) -> serde_json::Value {
    serde_json::json!({"id": c.id, "type": "function",
        "function": {"name": c.name, "arguments": c.arguments_json()}})
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

fn strftime_now(format: String) -> Result<String, Error> {
    // Templates use this to stamp today's date; without a time-zone database
    // UTC is the honest answer.
    aitier_core::clock::strftime_now(&format)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("strftime_now: {e}")))
}

impl ChatTemplate {
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| TemplateError::Compile(e.to_string()))?;
        Ok(Self {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            uses_tools: source.contains("tools"),
        })
    }

    /// Whether the template renders a `tool` turn after an assistant's
    /// (many insist on alternating user and assistant turns instead).
    pub fn accepts_tool_role(&self) -> bool {
        const PROBE: &str = "aitier-probe-result";
        let probe = [
            Message::new(aitier_core::Role::User, "q"),
            Message::new(aitier_core::Role::Assistant, "a"),
            Message {
                tool_call_id: Some("call_probe".into()),
                ..Message::new(aitier_core::Role::Tool, PROBE)
            },
        ];
        self.render(&probe, None)
            .is_ok_and(|text| text.contains(PROBE))
    }

    pub fn uses_tools(&self) -> bool {
        self.uses_tools
    }

    pub fn render(
        &self,
        messages: &[Message],
        tools: Option<&[Tool]>,
    ) -> Result<String, TemplateError> {
        self.render_with(messages, tools, |_, v| Cow::Borrowed(v))
    }

    /// The rendering split into the template's own text and what the
    /// client sent (contents and names), so that the two are tokenized
    /// differently: see `segments`.
    /// `tools` (OpenAI's `tools` entries) go to the template's own `tools`
    /// variable; they are template text, so the caller checks them first.
    pub fn render_segments(
        &self,
        messages: &[Message],
        tools: Option<&[Tool]>,
    ) -> Result<Vec<Segment>, TemplateError> {
        let marked = self.render_with(messages, tools, |k, _| Cow::Owned(segments::sentinel(k)))?;
        let values: Vec<&str> = messages
            .iter()
            .flat_map(|m| [m.content.as_str(), m.name.as_deref().unwrap_or("")])
            .collect();
        let real = self.render(messages, tools)?;
        Ok(segments::splice(&marked, &values, &real))
    }

    /// Renders with each message's content and name given by `field`:
    /// field `2i` is message i's content, `2i + 1` its name.
    fn render_with<'a>(
        &self,
        messages: &'a [Message],
        tools: Option<&[Tool]>,
        field: impl Fn(usize, &'a str) -> Cow<'a, str>,
    ) -> Result<String, TemplateError> {
        let msgs: Vec<TemplateMessage<'_>> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| TemplateMessage {
                role: m.role.as_str(),
                content: field(2 * i, &m.content),
                name: m.name.as_deref().map(|n| field(2 * i + 1, n)),
                tool_calls: m.tool_calls.iter().map(template_call).collect(),
                tool_call_id: m.tool_call_id.as_deref(),
            })
            .collect();
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| TemplateError::Compile(e.to_string()))?;
        tmpl.render(context! {
            messages => msgs,
            add_generation_prompt => true,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
            tools => tools,
        })
        .map_err(|e| TemplateError::Render(render_message(&e)))
    }
}

fn render_message(e: &Error) -> String {
    match e.detail() {
        Some(d) => d.to_string(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aitier_core::Role;

    // The shape of SmolLM2's template (ChatML with a default system prompt).
    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn user(text: &str) -> Message {
        Message::new(Role::User, text)
    }

    #[test]
    fn renders_chatml_with_generation_prompt() {
        let t = ChatTemplate::new(CHATML, "<|im_start|>", "<|im_end|>").expect("compiles");
        let out = t.render(&[user("Hi")], None).expect("renders");
        assert!(out.starts_with("<|im_start|>system\nYou are a helpful"));
        assert!(out.ends_with("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
    }

    #[test]
    fn raise_exception_becomes_a_render_error() {
        let src = "{% if messages[0]['role'] == 'assistant' %}{{ raise_exception('Conversation must start with user') }}{% endif %}ok";
        let t = ChatTemplate::new(src, "", "").expect("compiles");
        let msg = Message::new(Role::Assistant, "x");
        match t.render(&[msg], None) {
            Err(TemplateError::Render(m)) => assert!(m.contains("must start with user"), "{m}"),
            other => panic!(
                "expected a render error, got {other:?}",
                other = other.is_ok()
            ),
        }
    }

    #[test]
    fn python_string_methods_work() {
        let src = "{{ messages[0]['content'].strip() }}|{{ bos_token }}";
        let t = ChatTemplate::new(src, "<s>", "</s>").expect("compiles");
        assert_eq!(
            t.render(&[user("  hi  ")], None).expect("renders"),
            "hi|<s>"
        );
    }
}
