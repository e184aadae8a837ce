//! `tools`, `tool_choice`, `response_format` and the constrained-decoding
//! extensions, checked and turned into the neutral `Tools` and
//! `Constraint`; and tool calls back into their wire shapes.
use aitier_protocol::tools::{
    FunctionCall, FunctionCallDelta, FunctionDef, FunctionName, Guided, JsonSchemaFormat,
    NamedToolChoice, ResponseFormat, Tool, ToolCall as WireCall, ToolCallDelta,
    ToolChoice as WireChoice,
};

use crate::error::CoreError;
use crate::request::{Constrained, Constraint, ToolCall, ToolChoice, ToolDef, Tools};

/// OpenAI's rule for function and schema names.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn tool_def(i: usize, t: &Tool) -> Result<ToolDef, CoreError> {
    if t.kind != "function" {
        return Err(unsupported_tool(&format!("tools[{i}].type"), &t.kind));
    }
    let f = t.function.as_ref().ok_or_else(|| {
        CoreError::invalid(
            format!("tools[{i}].function"),
            "a function tool needs `function`",
        )
    })?;
    let at = format!("tools[{i}].function");
    check_def(
        (&format!("{at}.name"), &f.name),
        f.description.clone(),
        (&format!("{at}.parameters"), f.parameters.as_ref()),
        f.strict,
    )
}

/// A tool type aitier does not run (web search, file search, computer use...).
pub fn unsupported_tool(param: &str, kind: &str) -> CoreError {
    CoreError::invalid(
        param,
        format!("tool type '{kind}' is not supported; only 'function' is"),
    )
}

/// A function tool, however an API spells it: each field with the request
/// path an error names.
pub fn check_def(
    (name_at, name): (&str, &str),
    description: Option<String>,
    (params_at, parameters): (&str, Option<&serde_json::Value>),
    strict: Option<bool>,
) -> Result<ToolDef, CoreError> {
    if !valid_name(name) {
        return Err(CoreError::invalid(
            name_at,
            format!("Invalid function name '{name}': it must be 1 to 64 letters, digits, underscores or dashes"),
        ));
    }
    let parameters = match parameters {
        None => serde_json::json!({"type": "object", "properties": {}}),
        Some(p) if p.is_object() => p.clone(),
        Some(_) => {
            return Err(CoreError::invalid(
                params_at,
                "the parameters must be a JSON Schema object",
            ))
        }
    };
    Ok(ToolDef {
        name: name.to_string(),
        description,
        parameters,
        strict,
    })
}

/// What a request's tool choice asked for, in any API's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked<'a> {
    /// Not given: `auto` with tools, nothing without.
    Unset,
    None,
    Auto,
    Required,
    Function(&'a str),
}

impl Asked<'_> {
    /// OpenAI's `tool_choice` as a word (chat and the Responses API).
    pub fn mode(word: &str) -> Result<Self, CoreError> {
        match word {
            "none" => Ok(Asked::None),
            "auto" => Ok(Asked::Auto),
            "required" => Ok(Asked::Required),
            other => Err(CoreError::invalid(
                "tool_choice",
                format!("Invalid tool_choice '{other}': expected 'none', 'auto', 'required' or a named function"),
            )),
        }
    }
}

/// The tools the model may call, or `None` when it may call none. `name_at`
/// gives the path of tool `i`'s name; `choice_at` that of the choice's.
pub fn select(
    defs: Vec<ToolDef>,
    asked: Asked<'_>,
    parallel: Option<bool>,
    name_at: impl Fn(usize) -> String,
    choice_at: (&str, &str),
) -> Result<Option<Tools>, CoreError> {
    for (i, d) in defs.iter().enumerate() {
        if defs[..i].iter().any(|e| e.name == d.name) {
            return Err(CoreError::invalid(
                name_at(i),
                format!("two tools are named '{}'", d.name),
            ));
        }
    }
    let choice = match asked {
        Asked::None => return Ok(None),
        Asked::Unset | Asked::Auto => ToolChoice::Auto,
        Asked::Required => ToolChoice::Required,
        Asked::Function(name) => {
            if !defs.iter().any(|d| d.name == name) {
                return Err(CoreError::invalid(
                    choice_at.1,
                    format!("the tool choice names '{name}', which is not among the tools"),
                ));
            }
            ToolChoice::Function(name.to_string())
        }
    };
    if defs.is_empty() {
        return match asked {
            Asked::Unset | Asked::Auto => Ok(None),
            _ => Err(CoreError::invalid(
                choice_at.0,
                format!("`{}` is only allowed when tools are specified", choice_at.0),
            )),
        };
    }
    Ok(Some(Tools {
        defs,
        choice,
        parallel: parallel.unwrap_or(true),
    }))
}

/// Chat's `tools`, `tool_choice` and `parallel_tool_calls`.
pub fn tools(
    tools: Option<&[Tool]>,
    choice: Option<&WireChoice>,
    parallel: Option<bool>,
) -> Result<Option<Tools>, CoreError> {
    let defs = tools
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, t)| tool_def(i, t))
        .collect::<Result<Vec<_>, _>>()?;
    let asked = match choice {
        None => Asked::Unset,
        Some(WireChoice::Mode(m)) => Asked::mode(m)?,
        Some(WireChoice::Named(n)) => {
            if n.kind != "function" {
                return Err(CoreError::invalid(
                    "tool_choice.type",
                    format!(
                        "tool_choice type '{}' is not supported; only 'function' is",
                        n.kind
                    ),
                ));
            }
            Asked::Function(&n.function.name)
        }
    };
    select(
        defs,
        asked,
        parallel,
        |i| format!("tools[{i}].function.name"),
        ("tool_choice", "tool_choice.function.name"),
    )
}

fn response_format(f: &ResponseFormat) -> Result<Option<Constraint>, CoreError> {
    if f.kind == "json_schema" && f.json_schema.is_none() {
        return Err(CoreError::invalid(
            "response_format.json_schema",
            "`json_schema` is required when the type is 'json_schema'",
        ));
    }
    format_constraint(
        ("response_format", &f.kind),
        "response_format.json_schema",
        f.json_schema.as_ref(),
    )
}

/// An output format (`text`, `json_object`, `json_schema`) as a constraint;
/// `at` is the format's path, `schema_at` that of the schema's fields.
pub fn format_constraint(
    (at, kind): (&str, &str),
    schema_at: &str,
    js: Option<&JsonSchemaFormat>,
) -> Result<Option<Constraint>, CoreError> {
    match kind {
        "text" => Ok(None),
        "json_object" => Ok(Some(Constraint::JsonObject)),
        "json_schema" => {
            let empty = JsonSchemaFormat {
                name: String::new(),
                description: None,
                schema: None,
                strict: None,
            };
            let js = js.unwrap_or(&empty);
            if !valid_name(&js.name) {
                return Err(CoreError::invalid(
                    format!("{schema_at}.name"),
                    format!("Invalid schema name '{}': it must be 1 to 64 letters, digits, underscores or dashes", js.name),
                ));
            }
            let schema = match &js.schema {
                None => serde_json::json!({}),
                Some(s) if s.is_object() || s.is_boolean() => s.clone(),
                Some(_) => {
                    return Err(CoreError::invalid(
                        format!("{schema_at}.schema"),
                        "`schema` must be a JSON Schema object",
                    ))
                }
            };
            Ok(Some(Constraint::JsonSchema {
                name: js.name.clone(),
                description: js.description.clone(),
                schema,
                strict: js.strict,
            }))
        }
        other => Err(CoreError::invalid(
            format!("{at}.type"),
            format!("Invalid {at} type '{other}': expected 'text', 'json_object' or 'json_schema'"),
        )),
    }
}

/// llama.cpp's `grammar` is GBNF; llguidance's Lark is told apart by its
/// rule syntax (`name: ...` against `name ::= ...`).
fn grammar(text: &str) -> Constraint {
    if text.contains("::=") {
        Constraint::Gbnf(text.to_string())
    } else {
        Constraint::Lark(text.to_string())
    }
}

fn guided(g: &Guided) -> Result<Vec<(&'static str, Constraint)>, CoreError> {
    let mut found = Vec::new();
    if let Some(t) = &g.grammar {
        found.push(("grammar", grammar(t)));
    }
    if let Some(t) = &g.guided_grammar {
        found.push(("guided_grammar", grammar(t)));
    }
    if let Some(v) = &g.guided_json {
        // vLLM takes the schema as an object or as its JSON text.
        let schema = match v {
            serde_json::Value::String(s) => serde_json::from_str(s).map_err(|e| {
                CoreError::invalid("guided_json", format!("`guided_json` is not JSON: {e}"))
            })?,
            other => other.clone(),
        };
        found.push((
            "guided_json",
            Constraint::JsonSchema {
                name: "guided_json".into(),
                description: None,
                schema,
                strict: Some(true),
            },
        ));
    }
    if let Some(r) = &g.guided_regex {
        found.push(("guided_regex", Constraint::Regex(r.clone())));
    }
    if let Some(c) = &g.guided_choice {
        if c.is_empty() {
            return Err(CoreError::invalid(
                "guided_choice",
                "`guided_choice` must list at least one string",
            ));
        }
        found.push(("guided_choice", Constraint::Choice(c.clone())));
    }
    Ok(found)
}

/// The one constraint a request asks for, from `response_format` or an
/// extension; asking for two is refused rather than one silently winning.
pub fn constraint(
    format: Option<&ResponseFormat>,
    g: &Guided,
) -> Result<Option<Constrained>, CoreError> {
    let mut found = guided(g)?;
    if let Some(c) = format.map(response_format).transpose()?.flatten() {
        found.insert(0, ("response_format", c));
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop().map(|(param, rule)| Constrained { rule, param })),
        _ => Err(CoreError::invalid(
            found[1].0,
            format!(
                "`{}` and `{}` both constrain the output; send one",
                found[0].0, found[1].0
            ),
        )),
    }
}

/// `tools` as OpenAI's `tools` entries: for upstreams, and for templates
/// that describe tools themselves.
pub fn to_wire_tools(t: &Tools) -> Vec<Tool> {
    t.defs
        .iter()
        .map(|d| Tool {
            kind: "function".into(),
            function: Some(FunctionDef {
                name: d.name.clone(),
                description: d.description.clone(),
                parameters: Some(d.parameters.clone()),
                strict: d.strict,
            }),
        })
        .collect()
}

pub fn to_wire_choice(t: &Tools) -> WireChoice {
    match &t.choice {
        ToolChoice::Auto => WireChoice::Mode("auto".into()),
        ToolChoice::Required => WireChoice::Mode("required".into()),
        ToolChoice::Function(name) => WireChoice::Named(NamedToolChoice {
            kind: "function".into(),
            function: FunctionName { name: name.clone() },
        }),
    }
}

pub fn to_wire(call: &ToolCall) -> WireCall {
    WireCall {
        id: call.id.clone(),
        kind: "function".into(),
        function: FunctionCall {
            name: call.name.clone(),
            arguments: call.arguments.clone(),
        },
    }
}

pub fn from_wire(call: &WireCall) -> ToolCall {
    ToolCall {
        id: call.id.clone(),
        name: call.function.name.clone(),
        arguments: call.function.arguments.clone(),
    }
}

/// Assembles streamed pieces into whole calls, as the SDKs do.
pub fn assemble(calls: &mut Vec<ToolCall>, delta: ToolCallDelta) {
    let i = delta.index as usize;
    while calls.len() <= i {
        calls.push(ToolCall {
            id: String::new(),
            name: String::new(),
            arguments: String::new(),
        });
    }
    let call = &mut calls[i];
    if let Some(id) = delta.id {
        call.id = id;
    }
    if let Some(FunctionCallDelta { name, arguments }) = delta.function {
        if let Some(n) = name {
            call.name.push_str(&n);
        }
        if let Some(a) = arguments {
            call.arguments.push_str(&a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_tools(v: serde_json::Value) -> Vec<Tool> {
        serde_json::from_value(v).expect("tool shape")
    }

    #[test]
    fn a_named_choice_must_name_a_tool() {
        let t = parse_tools(serde_json::json!([{"type": "function", "function": {"name": "f"}}]));
        let choice: WireChoice = serde_json::from_value(
            serde_json::json!({"type": "function", "function": {"name": "g"}}),
        )
        .expect("shape");
        let err = tools(Some(&t), Some(&choice), None).expect_err("unknown function");
        assert!(
            matches!(err, CoreError::InvalidRequest { param: Some(p), .. } if p == "tool_choice.function.name")
        );
        let none = WireChoice::Mode("none".into());
        assert_eq!(tools(Some(&t), Some(&none), None).expect("ok"), None);
        let got = tools(Some(&t), None, Some(false))
            .expect("ok")
            .expect("tools");
        assert_eq!(got.choice, ToolChoice::Auto);
        assert!(!got.parallel);
        assert_eq!(got.defs[0].parameters["type"], "object");
    }

    #[test]
    fn two_constraints_are_refused() {
        let g = Guided {
            guided_regex: Some("a+".into()),
            ..Guided::default()
        };
        let f = ResponseFormat {
            kind: "json_object".into(),
            json_schema: None,
        };
        let err = constraint(Some(&f), &g).expect_err("two");
        assert!(
            matches!(err, CoreError::InvalidRequest { param: Some(p), .. } if p == "guided_regex")
        );
        assert_eq!(
            constraint(None, &g).expect("one").map(|c| c.rule),
            Some(Constraint::Regex("a+".into()))
        );
        let gbnf = Guided {
            grammar: Some("root ::= \"a\"".into()),
            ..Guided::default()
        };
        assert!(matches!(
            constraint(None, &gbnf).expect("one"),
            Some(Constrained {
                rule: Constraint::Gbnf(_),
                param: "grammar"
            })
        ));
    }

    #[test]
    fn streamed_pieces_assemble_into_calls() {
        let mut calls = Vec::new();
        let piece = |index, id: Option<&str>, name: Option<&str>, args: &str| ToolCallDelta {
            index,
            id: id.map(Into::into),
            kind: id.map(|_| "function".into()),
            function: Some(FunctionCallDelta {
                name: name.map(Into::into),
                arguments: Some(args.into()),
            }),
        };
        assemble(&mut calls, piece(0, Some("call_a"), Some("f"), ""));
        assemble(&mut calls, piece(1, Some("call_b"), Some("g"), "{}"));
        assemble(&mut calls, piece(0, None, None, "{\"x\":"));
        assemble(&mut calls, piece(0, None, None, "1}"));
        assert_eq!(calls[0].arguments, "{\"x\":1}");
        assert_eq!(calls[1].name, "g");
        assert_eq!(calls[0].id, "call_a");
    }
}
