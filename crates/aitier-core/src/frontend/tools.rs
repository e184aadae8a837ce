//! `tools`, `tool_choice`, `response_format` and the constrained-decoding
//! extensions, checked and turned into the neutral `Tools` and
//! `Constraint`; and tool calls back into their wire shapes.
use aitier_protocol::tools::{
    FunctionCall, FunctionCallDelta, FunctionDef, FunctionName, Guided, NamedToolChoice,
    ResponseFormat, Tool, ToolCall as WireCall, ToolCallDelta, ToolChoice as WireChoice,
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
        return Err(CoreError::invalid(
            format!("tools[{i}].type"),
            format!(
                "tool type '{}' is not supported; only 'function' is",
                t.kind
            ),
        ));
    }
    let f = t.function.as_ref().ok_or_else(|| {
        CoreError::invalid(
            format!("tools[{i}].function"),
            "a function tool needs `function`",
        )
    })?;
    if !valid_name(&f.name) {
        return Err(CoreError::invalid(
            format!("tools[{i}].function.name"),
            format!("Invalid function name '{}': it must be 1 to 64 letters, digits, underscores or dashes", f.name),
        ));
    }
    let parameters = match &f.parameters {
        None => serde_json::json!({"type": "object", "properties": {}}),
        Some(p) if p.is_object() => p.clone(),
        Some(_) => {
            return Err(CoreError::invalid(
                format!("tools[{i}].function.parameters"),
                "`parameters` must be a JSON Schema object",
            ))
        }
    };
    Ok(ToolDef {
        name: f.name.clone(),
        description: f.description.clone(),
        parameters,
        strict: f.strict,
    })
}

/// The tools the model may call, or `None` when it may call none.
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
    for (i, d) in defs.iter().enumerate() {
        if defs[..i].iter().any(|e| e.name == d.name) {
            return Err(CoreError::invalid(
                format!("tools[{i}].function.name"),
                format!("two tools are named '{}'", d.name),
            ));
        }
    }
    let choice = match choice {
        None => ToolChoice::Auto,
        Some(WireChoice::Mode(m)) => match m.as_str() {
            "none" => return Ok(None),
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            other => {
                return Err(CoreError::invalid(
                    "tool_choice",
                    format!("Invalid tool_choice '{other}': expected 'none', 'auto', 'required' or a named function"),
                ))
            }
        },
        Some(WireChoice::Named(n)) => {
            if n.kind != "function" {
                return Err(CoreError::invalid(
                    "tool_choice.type",
                    format!("tool_choice type '{}' is not supported; only 'function' is", n.kind),
                ));
            }
            if !defs.iter().any(|d| d.name == n.function.name) {
                return Err(CoreError::invalid(
                    "tool_choice.function.name",
                    format!("tool_choice names '{}', which is not among `tools`", n.function.name),
                ));
            }
            ToolChoice::Function(n.function.name.clone())
        }
    };
    if defs.is_empty() {
        return match choice {
            ToolChoice::Auto => Ok(None),
            _ => Err(CoreError::invalid(
                "tool_choice",
                "`tool_choice` is only allowed when `tools` are specified",
            )),
        };
    }
    Ok(Some(Tools {
        defs,
        choice,
        parallel: parallel.unwrap_or(true),
    }))
}

fn response_format(f: &ResponseFormat) -> Result<Option<Constraint>, CoreError> {
    match f.kind.as_str() {
        "text" => Ok(None),
        "json_object" => Ok(Some(Constraint::JsonObject)),
        "json_schema" => {
            let js = f.json_schema.as_ref().ok_or_else(|| {
                CoreError::invalid(
                    "response_format.json_schema",
                    "`json_schema` is required when the type is 'json_schema'",
                )
            })?;
            if !valid_name(&js.name) {
                return Err(CoreError::invalid(
                    "response_format.json_schema.name",
                    format!("Invalid schema name '{}': it must be 1 to 64 letters, digits, underscores or dashes", js.name),
                ));
            }
            let schema = match &js.schema {
                None => serde_json::json!({}),
                Some(s) if s.is_object() || s.is_boolean() => s.clone(),
                Some(_) => {
                    return Err(CoreError::invalid(
                        "response_format.json_schema.schema",
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
            "response_format.type",
            format!("Invalid response_format type '{other}': expected 'text', 'json_object' or 'json_schema'"),
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
