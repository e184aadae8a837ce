//! JSON Schemas as aitier enforces them: bounds a small model cannot run
//! past where the schema sets none, compact JSON, and finding where in a
//! schema a keyword llguidance refused sits.

/// JSON written compactly: no whitespace the model could repeat until its
/// budget runs out, and fewer tokens.
fn json_options() -> serde_json::Value {
    serde_json::json!({
        "item_separator": ", ",
        "key_separator": ": ",
        "whitespace_flexible": false,
    })
}

/// The largest magnitude an unbounded number may take: 16 digits, as
/// llama.cpp's JSON grammars allow (and about what an f64 holds exactly).
const NUMBER_BOUND: f64 = 1e16;

/// Bounds a small model cannot run past, where the schema sets none; all
/// that they allow is valid against the schema as sent. An object schema
/// that lists its properties and says nothing of others allows none, as
/// llama.cpp's grammars do: otherwise a small model wanders into made-up
/// keys and nests them until its budget runs out. A number without bounds
/// gets 16 digits, or it writes zeros until then.
fn close_objects(v: &mut serde_json::Value) {
    let Some(o) = v.as_object_mut() else {
        return;
    };
    if o.contains_key("properties")
        && !o.contains_key("additionalProperties")
        && !o.contains_key("patternProperties")
    {
        o.insert(
            "additionalProperties".into(),
            serde_json::Value::Bool(false),
        );
    }
    let numeric = |t: &serde_json::Value| t == "number" || t == "integer";
    let is_number = o
        .get("type")
        .is_some_and(|t| numeric(t) || t.as_array().is_some_and(|a| a.iter().any(numeric)));
    if is_number {
        if !o.contains_key("minimum") && !o.contains_key("exclusiveMinimum") {
            o.insert("minimum".into(), serde_json::json!(-NUMBER_BOUND));
        }
        if !o.contains_key("maximum") && !o.contains_key("exclusiveMaximum") {
            o.insert("maximum".into(), serde_json::json!(NUMBER_BOUND));
        }
    }
    for (k, child) in o.iter_mut() {
        if SCHEMA_MAPS.contains(&k.as_str()) {
            child
                .as_object_mut()
                .into_iter()
                .flat_map(|m| m.values_mut())
                .for_each(close_objects);
        } else if SCHEMA_LISTS.contains(&k.as_str()) {
            child
                .as_array_mut()
                .into_iter()
                .flatten()
                .for_each(close_objects);
        } else if SCHEMA_ONE.contains(&k.as_str()) {
            close_objects(child);
        }
    }
}

/// `schema` as aitier enforces it: closed objects, and compact JSON unless
/// the caller chose a layout (`x-guidance`).
pub fn with_layout(schema: &serde_json::Value) -> serde_json::Value {
    match schema {
        serde_json::Value::Object(o) => {
            let mut v = serde_json::Value::Object(o.clone());
            close_objects(&mut v);
            if let Some(o) = v.as_object_mut() {
                o.entry("x-guidance").or_insert_with(json_options);
            }
            v
        }
        serde_json::Value::Bool(true) => serde_json::json!({"x-guidance": json_options()}),
        other => other.clone(),
    }
}

/// The keys of llguidance's "Unimplemented keys: [\"a\", \"b\"]".
pub fn unimplemented_keys(why: &str) -> Option<Vec<String>> {
    let start = why.find("Unimplemented keys: ")? + "Unimplemented keys: ".len();
    let rest = &why[start..];
    let end = rest.find(']')? + 1;
    serde_json::from_str(&rest[..end]).ok()
}

fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Where a schema holds subschemas: maps of them, lists of them, or one.
const SCHEMA_MAPS: [&str; 5] = [
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];
const SCHEMA_LISTS: [&str; 4] = ["anyOf", "allOf", "oneOf", "prefixItems"];
const SCHEMA_ONE: [&str; 10] = [
    "items",
    "additionalItems",
    "additionalProperties",
    "not",
    "contains",
    "if",
    "then",
    "else",
    "propertyNames",
    "unevaluatedProperties",
];

/// The first subschema (depth first) that holds one of `keys`, as a JSON
/// pointer; property names are not mistaken for keywords.
pub fn find_keyword(v: &serde_json::Value, keys: &[String], at: &str) -> Option<(String, String)> {
    let o = v.as_object()?;
    if let Some(k) = keys.iter().find(|k| o.contains_key(k.as_str())) {
        return Some((k.clone(), at.to_string()));
    }
    o.iter().find_map(|(k, child)| {
        let here = format!("{at}/{}", pointer_escape(k));
        if SCHEMA_MAPS.contains(&k.as_str()) {
            child.as_object()?.iter().find_map(|(name, s)| {
                find_keyword(s, keys, &format!("{here}/{}", pointer_escape(name)))
            })
        } else if SCHEMA_LISTS.contains(&k.as_str()) {
            child
                .as_array()?
                .iter()
                .enumerate()
                .find_map(|(i, s)| find_keyword(s, keys, &format!("{here}/{i}")))
        } else if SCHEMA_ONE.contains(&k.as_str()) {
            find_keyword(child, keys, &here)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyword_is_found_with_its_pointer() {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "uniqueItems": {"type": "string"},
                "a/b": {"type": "array", "items": {"type": "string", "uniqueItems": true}}
            }
        });
        let keys = vec!["uniqueItems".to_string()];
        assert_eq!(
            find_keyword(&schema, &keys, ""),
            Some(("uniqueItems".into(), "/properties/a~1b/items".into()))
        );
        assert_eq!(
            unimplemented_keys("blah: Unimplemented keys: [\"if\", \"then\"] at x"),
            Some(vec!["if".to_string(), "then".to_string()])
        );
    }

    #[test]
    fn the_layout_is_added_unless_chosen() {
        let s = with_layout(&serde_json::json!({"type": "object"}));
        assert_eq!(s["x-guidance"]["whitespace_flexible"], false);
        let own = serde_json::json!({"x-guidance": {"whitespace_flexible": true}});
        assert_eq!(with_layout(&own), own);
        let nested = with_layout(&serde_json::json!({
            "properties": {"a": {"type": "object", "properties": {"b": {}}}, "free": {"type": "object"}},
            "$defs": {"d": {"properties": {}, "additionalProperties": true}}
        }));
        assert_eq!(nested["additionalProperties"], false);
        assert_eq!(nested["properties"]["a"]["additionalProperties"], false);
        assert!(nested["properties"]["free"]
            .get("additionalProperties")
            .is_none());
        assert_eq!(nested["$defs"]["d"]["additionalProperties"], true);
    }
}
