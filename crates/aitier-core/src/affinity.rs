//! A generation's affinity key: requests with the same key most likely
//! share a cached prompt prefix, so a router (aitier's own, or a load
//! balancer in front of several replicas) that sends them to the same
//! engine finds that prefix already computed.
//!
//! The key is the xxh3 hash of the prompt's first [`PREFIX_BYTES`] bytes,
//! so that it covers a system prompt or a conversation's opening and
//! stays the same as the conversation grows. It is a fixed definition, not
//! a setting: every replica and every version computes the same key for
//! the same prompt, which is what lets an external balancer hash on it.
use xxhash_rust::xxh3::Xxh3;

use crate::error::CoreError;
use crate::request::{GenerateRequest, PromptInput};

/// The header that carries the key: on every generation's response, on
/// requests relayed to upstreams, and, when a client sends it, instead of
/// the key aitier would compute.
pub const HEADER: &str = "x-aitier-affinity";

/// How much of the prompt the key covers: ~250 tokens of English, past
/// the shared opening lines that distinct system prompts often have,
/// short of what makes one conversation's turns differ.
pub const PREFIX_BYTES: usize = 1024;

const MAX_HEADER_LEN: usize = 128;

/// Hashes at most `budget` bytes of the parts given, in order.
struct Prefix {
    hasher: Xxh3,
    budget: usize,
}

impl Prefix {
    fn new(tag: &[u8]) -> Self {
        let mut hasher = Xxh3::new();
        hasher.update(tag);
        Self {
            hasher,
            budget: PREFIX_BYTES,
        }
    }

    /// False once the budget is spent.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        let take = bytes.len().min(self.budget);
        self.hasher.update(&bytes[..take]);
        self.budget -= take;
        self.budget > 0
    }

    fn key(&self) -> String {
        format!("{:016x}", self.hasher.digest())
    }
}

/// The key of a prompt: its first prompt's leading bytes (a conversation
/// as role and content of each message, which is what every chat template
/// renders first, whatever its markup).
pub fn of_prompt(prompt: &PromptInput) -> String {
    match prompt {
        PromptInput::Chat(messages) => {
            let mut p = Prefix::new(b"chat\0");
            for m in messages {
                let going = p.feed(m.role.as_str().as_bytes())
                    && p.feed(b"\x1f")
                    && p.feed(m.content.as_bytes())
                    && p.feed(b"\x1e");
                if !going {
                    break;
                }
            }
            p.key()
        }
        PromptInput::Texts(texts) => {
            let mut p = Prefix::new(b"text\0");
            p.feed(texts.first().map_or(&b""[..], |t| t.as_bytes()));
            p.key()
        }
        PromptInput::Tokens(lists) => {
            // Four bytes a token: about as many tokens as the text's key covers.
            let mut p = Prefix::new(b"tokens\0");
            for t in lists.first().into_iter().flatten() {
                if !p.feed(&t.to_le_bytes()) {
                    break;
                }
            }
            p.key()
        }
    }
}

/// A request's key: the one it was given, or its prompt's.
pub fn of_request(req: &GenerateRequest) -> String {
    req.affinity
        .clone()
        .unwrap_or_else(|| of_prompt(&req.prompt))
}

/// The key of a client's `prompt_cache_key` (OpenAI's name for the same
/// hint), hashed so the response does not echo the client's text.
pub fn of_cache_key(key: &str) -> String {
    let mut p = Prefix::new(b"cache_key\0");
    p.feed(key.as_bytes());
    p.key()
}

/// A key a client (or an aitier in front) sent in [`HEADER`], used as is.
pub fn from_header(value: &str) -> Result<String, CoreError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_HEADER_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if ok {
        Ok(value.to_string())
    } else {
        Err(CoreError::invalid(
            HEADER,
            format!(
                "the `{HEADER}` header must be 1 to {MAX_HEADER_LEN} letters, digits, `-`, `_`, `.` or `:`"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Message, Role};

    fn chat(system: &str, turns: &[&str]) -> PromptInput {
        let mut m = vec![Message::new(Role::System, system)];
        m.extend(turns.iter().map(|t| Message::new(Role::User, *t)));
        PromptInput::Chat(m)
    }

    #[test]
    fn a_conversation_keeps_its_key_once_past_the_prefix() {
        let system = "You answer questions about invoices. ".repeat(40);
        let first = of_prompt(&chat(&system, &["What is due?"]));
        let later = of_prompt(&chat(&system, &["What is due?", "And next month?"]));
        assert_eq!(first, later);
        assert_eq!(first.len(), 16);
        let other = of_prompt(&chat(&"You write haiku. ".repeat(80), &["What is due?"]));
        assert_ne!(first, other);
    }

    #[test]
    fn the_key_covers_only_the_leading_bytes() {
        let head = "x".repeat(PREFIX_BYTES);
        let a = of_prompt(&PromptInput::Texts(vec![format!("{head}a")]));
        let b = of_prompt(&PromptInput::Texts(vec![format!("{head}b")]));
        assert_eq!(a, b);
        let short_a = of_prompt(&PromptInput::Texts(vec!["a".into()]));
        let short_b = of_prompt(&PromptInput::Texts(vec!["b".into()]));
        assert_ne!(short_a, short_b);
    }

    #[test]
    fn roles_and_boundaries_count() {
        let as_user = of_prompt(&PromptInput::Chat(vec![Message::new(Role::User, "hi")]));
        let as_system = of_prompt(&PromptInput::Chat(vec![Message::new(Role::System, "hi")]));
        assert_ne!(as_user, as_system);
        let split = of_prompt(&PromptInput::Chat(vec![
            Message::new(Role::User, "ab"),
            Message::new(Role::User, "c"),
        ]));
        let joined = of_prompt(&PromptInput::Chat(vec![
            Message::new(Role::User, "a"),
            Message::new(Role::User, "bc"),
        ]));
        assert_ne!(split, joined);
        let text = of_prompt(&PromptInput::Texts(vec!["hi".into()]));
        assert_ne!(text, of_cache_key("hi"));
    }

    #[test]
    fn tokens_key_their_first_prompt() {
        let long: Vec<u32> = (0..1000).collect();
        let mut longer = long.clone();
        longer.push(7);
        assert_eq!(
            of_prompt(&PromptInput::Tokens(vec![long.clone()])),
            of_prompt(&PromptInput::Tokens(vec![longer, vec![1]]))
        );
        assert_ne!(
            of_prompt(&PromptInput::Tokens(vec![vec![1, 2]])),
            of_prompt(&PromptInput::Tokens(vec![vec![1, 3]]))
        );
    }

    #[test]
    fn the_key_is_stable() {
        // Balancers hash on it: it must not change between versions.
        assert_eq!(of_cache_key("tenant-a"), of_cache_key("tenant-a"));
        assert_eq!(
            of_prompt(&PromptInput::Texts(vec!["Hello".into()])),
            format!("{:016x}", xxhash_rust::xxh3::xxh3_64(b"text\0Hello"))
        );
    }

    #[test]
    fn header_values_are_checked() {
        assert_eq!(from_header("ab-12_x.y:z").expect("valid"), "ab-12_x.y:z");
        for bad in ["", "a b", "é", &"a".repeat(129)] {
            assert!(from_header(bad).is_err(), "{bad:?}");
        }
    }
}
