//! Constrained decoding with llguidance: a request's constraint compiled
//! once into a `Matcher` (a 400 when the grammar cannot be enforced), then
//! one token mask per step for each constrained sequence. The vocabulary's
//! token trie is built once per model.
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::SimpleVob;
use llguidance::{Matcher, ParserFactory};

use aitier_core::{Constrained, Constraint, CoreError, Tools};

use crate::job::Counters;
use crate::schema::{find_keyword, unimplemented_keys, with_layout};
use crate::{gbnf, toolcall};

fn grammar_of(c: &Constraint) -> Result<TopLevelGrammar, String> {
    Ok(match c {
        Constraint::JsonObject => {
            TopLevelGrammar::from_json_schema(with_layout(&serde_json::json!({"type": "object"})))
        }
        Constraint::JsonSchema { schema, .. } => {
            TopLevelGrammar::from_json_schema(with_layout(schema))
        }
        Constraint::Lark(text) => TopLevelGrammar::from_lark(text.clone()),
        Constraint::Gbnf(text) => TopLevelGrammar::from_lark(gbnf::to_lark(text)?),
        Constraint::Regex(rx) => TopLevelGrammar::from_regex(rx),
        Constraint::Choice(options) => {
            let alts: Vec<String> = options.iter().map(|o| gbnf::literal(o)).collect();
            TopLevelGrammar::from_lark(format!("start: {}", alts.join(" | ")))
        }
    })
}

/// Compiles grammars for one model's vocabulary.
#[derive(Clone)]
pub struct Grammars {
    factory: Arc<ParserFactory>,
}

impl Grammars {
    pub fn of(model: &LlamaModel) -> Result<Self, String> {
        let env = LlamaSampler::llguidance_tok_env(model);
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
        factory.quiet();
        Ok(Self {
            factory: Arc::new(factory),
        })
    }

    /// A fresh matcher for `c`, or a 400 naming what cannot be enforced.
    pub fn compile(&self, c: &Constrained) -> Result<Matcher, CoreError> {
        self.compile_rule(&c.rule)
            .map_err(|why| refusal(&c.rule, c.param, &why))
    }

    /// The matcher for calls of `tools`. When it cannot be built, each
    /// tool's parameters alone are compiled to name the one at fault (only
    /// then: the envelope holds them all).
    pub fn compile_tools(&self, tools: &Tools) -> Result<Matcher, CoreError> {
        let why = match self.compile_rule(&toolcall::grammar(tools)) {
            Ok(matcher) => return Ok(matcher),
            Err(why) => why,
        };
        for (i, d) in tools.defs.iter().enumerate() {
            let rule = Constraint::JsonSchema {
                name: d.name.clone(),
                description: None,
                schema: d.parameters.clone(),
                strict: d.strict,
            };
            if let Err(why) = self.compile_rule(&rule) {
                return Err(refusal(
                    &rule,
                    &format!("tools[{i}].function.parameters"),
                    &why,
                ));
            }
        }
        Err(CoreError::invalid(
            "tools",
            format!("the tools cannot be enforced: {why}"),
        ))
    }

    pub fn compile_rule(&self, rule: &Constraint) -> Result<Matcher, String> {
        let grammar = grammar_of(rule)?;
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(|e| e.to_string())?;
        let matcher = Matcher::new(Ok(parser));
        match matcher.get_error() {
            Some(e) => Err(e),
            None => Ok(matcher),
        }
    }
}

/// Runs `decode` while computing each pending matcher's mask on a thread
/// of its own; the masks come back in order, an error where one failed.
pub fn masks_beside<R>(
    pending: &mut [(usize, Matcher)],
    counters: &Counters,
    decode: impl FnOnce() -> R,
) -> (R, Vec<Result<SimpleVob, String>>) {
    if pending.is_empty() {
        return (decode(), Vec::new());
    }
    let wanted = pending.len();
    std::thread::scope(|scope| {
        let masker = scope.spawn(|| {
            let started = Instant::now();
            let masks: Vec<_> = pending
                .iter_mut()
                .map(|(_, m)| m.compute_mask().map_err(|e| e.to_string()))
                .collect();
            let micros = started.elapsed().as_micros() as u64;
            counters
                .grammar_masks
                .fetch_add(wanted as u64, Ordering::Relaxed);
            counters
                .grammar_mask_micros
                .fetch_add(micros, Ordering::Relaxed);
            masks
        });
        let decoded = decode();
        let masks = masker
            .join()
            .unwrap_or_else(|_| vec![Err("the grammar thread panicked".to_string()); wanted]);
        (decoded, masks)
    })
}

/// The 400 for a grammar llguidance refused; for a JSON Schema keyword it
/// cannot enforce, naming the keyword and where it is.
fn refusal(rule: &Constraint, param: &str, why: &str) -> CoreError {
    let schema = match rule {
        Constraint::JsonSchema { schema, .. } => Some(schema),
        _ => None,
    };
    let message = match (schema, unimplemented_keys(why)) {
        (Some(schema), Some(keys)) => match find_keyword(schema, &keys, "") {
            Some((key, at)) => format!(
                "the JSON Schema keyword '{key}' (at '{}') cannot be enforced; remove it or use the keywords listed in the documentation",
                if at.is_empty() { "/" } else { &at }
            ),
            None => format!("the JSON Schema uses keywords that cannot be enforced: {}", keys.join(", ")),
        },
        _ if why.contains("oneOf") => {
            "the JSON Schema keyword 'oneOf' cannot be enforced; use 'anyOf'".to_string()
        }
        _ => format!("the grammar cannot be used: {why}"),
    };
    CoreError::invalid(param, message)
}
