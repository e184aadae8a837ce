//! The OpenAPI 3.1 document of the public and admin APIs, generated from
//! the handlers' `#[utoipa::path]` annotations and the wire types. Each
//! handler declares its own success; the errors every route can answer
//! and who may call it are added here, once, by path.
use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{json, Value};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, PathItem, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::routes::{admin, embeddings, generate, health, messages, models, responses};
use crate::routes::{status, tokenize, usage};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "aitier",
        description = "An AI tier: OpenAI's chat, completions, embeddings and Responses APIs and Anthropic's Messages API over local GGUF models and upstream OpenAI-compatible endpoints, with tenants, keys, limits and a usage ledger behind an admin API.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        generate::chat,
        generate::completions,
        embeddings::create,
        responses::create,
        responses::get,
        responses::delete,
        responses::input_items,
        generate::messages,
        messages::count_tokens,
        models::list,
        models::get,
        usage::own,
        tokenize::tokenize,
        tokenize::detokenize,
        admin::create_tenant,
        admin::list_tenants,
        admin::get_tenant,
        admin::update_tenant,
        admin::disable_tenant,
        admin::create_key,
        admin::list_tenant_keys,
        admin::list_keys,
        admin::revoke_key,
        admin::usage,
        admin::reload,
        admin::model_action,
        status::models,
        status::live,
        health::health,
        health::ready,
        serve,
    ),
    components(schemas(aitier_protocol::ErrorBody, aitier_protocol::messages::ErrorBody)),
    modifiers(&Errors, &Security),
    tags(
        (name = "chat", description = "OpenAI chat completions"),
        (name = "completions", description = "OpenAI legacy completions"),
        (name = "embeddings", description = "OpenAI embeddings"),
        (name = "responses", description = "OpenAI's Responses API"),
        (name = "messages", description = "Anthropic's Messages API"),
        (name = "models", description = "The models a key may use"),
        (name = "tokens", description = "The models' tokenizers (llama.cpp's routes)"),
        (name = "usage", description = "A tenant's own usage"),
        (name = "admin", description = "Tenants, keys, usage and models, with the admin token"),
        (name = "health", description = "Probes and this document"),
    ),
)]
struct ApiDoc;

/// The document, as served and as committed in `docs/openapi.json`.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
    let schemas = doc["components"]["schemas"].clone();
    merge_flattened(&mut doc, &schemas);
    frame_streams(&mut doc);
    name_link_fields(&mut doc);
    drop_unreferenced(&mut doc);
    doc
}

/// The document as pretty JSON with a final newline.
pub fn json() -> String {
    let mut text = serde_json::to_string_pretty(&document()).expect("the document serialises");
    text.push('\n');
    text
}

/// A `text/event-stream` schema describes one event (`event`, `data`), as
/// OpenAPI 3.2's `itemSchema` does; `data` holds the JSON the handler
/// declared, or an error body, or OpenAI's `[DONE]`. This is JSON Schema
/// (`contentSchema`) that utoipa's types do not carry, so it is written
/// into the serialised document.
fn frame_streams(doc: &mut Value) {
    each_response(doc, |path, response| {
        let Some(schema) = response.pointer_mut("/content/text~1event-stream/schema") else {
            return;
        };
        let error = json!({"$ref": format!("#/components/schemas/{}", error_schema(path))});
        let mut data = json!({
            "contentMediaType": "application/json",
            "contentSchema": {"anyOf": [schema.take(), error]},
        });
        if matches!(path, "/v1/chat/completions" | "/v1/completions") {
            data = json!({"anyOf": [{"const": "[DONE]"}, data]});
        }
        data["type"] = json!("string");
        *schema = json!({
            "type": "object",
            "required": ["data"],
            "properties": {"event": {"type": "string"}, "data": data},
        });
    });
}

/// Calls `f` on every response of every operation of the serialised
/// document, with the operation's path.
fn each_response(doc: &mut Value, mut f: impl FnMut(&str, &mut Value)) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let responses = item
            .as_object_mut()
            .into_iter()
            .flat_map(|ops| ops.values_mut())
            .filter_map(|op| op.get_mut("responses")?.as_object_mut())
            .flat_map(|responses| responses.values_mut());
        for response in responses {
            f(path, response);
        }
    }
}

/// utoipa writes `#[serde(flatten)]` as `allOf` the parts, which cannot
/// say that the whole refuses unknown fields (a part's
/// `additionalProperties: false` would refuse the other parts' fields).
/// Each such `allOf` of objects becomes the one object serde reads.
fn merge_flattened(value: &mut Value, schemas: &Value) {
    if let Some(mut merged) = value.get("allOf").and_then(|parts| merge(parts, schemas)) {
        // The schema's own keywords (its description) stay.
        for (k, v) in value.as_object().into_iter().flatten() {
            if k != "allOf" {
                merged[k] = v.clone();
            }
        }
        *value = merged;
    }
    match value {
        Value::Object(map) => map.values_mut().for_each(|v| merge_flattened(v, schemas)),
        Value::Array(items) => items.iter_mut().for_each(|v| merge_flattened(v, schemas)),
        _ => {}
    }
}

/// Merged parts (`Sampling`, `Limits`) are referred to no more.
fn drop_unreferenced(doc: &mut Value) {
    loop {
        let text = doc.to_string();
        let Some(schemas) = doc["components"]["schemas"].as_object_mut() else {
            return;
        };
        let before = schemas.len();
        schemas.retain(|name, _| text.contains(&format!("\"#/components/schemas/{name}\"")));
        if schemas.len() == before {
            return;
        }
    }
}

fn merge(parts: &Value, schemas: &Value) -> Option<Value> {
    let parts = parts.as_array().filter(|p| p.len() > 1)?;
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    let mut closed = false;
    for part in parts {
        let mut part = match part.get("$ref").and_then(Value::as_str) {
            Some(r) => schemas
                .get(r.strip_prefix("#/components/schemas/")?)?
                .clone(),
            None => part.clone(),
        };
        merge_flattened(&mut part, schemas);
        if part.get("type")? != "object" {
            return None;
        }
        properties.extend(part["properties"].as_object().cloned().unwrap_or_default());
        required.extend(part["required"].as_array().cloned().unwrap_or_default());
        closed |= part.get("additionalProperties") == Some(&Value::Bool(false));
    }
    let mut object = json!({"type": "object", "properties": properties});
    if !required.is_empty() {
        object["required"] = Value::Array(required);
    }
    if closed {
        object["additionalProperties"] = Value::Bool(false);
    }
    Some(object)
}

/// utoipa 5 writes a link's fields in snake case (`operation_id`); the
/// specification spells them in camel case.
fn name_link_fields(doc: &mut Value) {
    each_response(doc, |_, response| {
        let links = response
            .get_mut("links")
            .and_then(Value::as_object_mut)
            .into_iter()
            .flat_map(|links| links.values_mut())
            .filter_map(Value::as_object_mut);
        for link in links {
            for (from, to) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(v) = link.remove(from) {
                    link.insert(to.into(), v);
                }
            }
        }
    });
}

/// The error body a path answers with: Anthropic's under `/v1/messages`.
fn error_schema(path: &str) -> &'static str {
    if path.starts_with("/v1/messages") {
        "messages.ErrorBody"
    } else {
        "ErrorBody"
    }
}

static JSON: LazyLock<String> = LazyLock::new(json);

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "getOpenapi",
    tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)),
)]
pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], JSON.as_str())
}

/// Who may call a path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Audience {
    /// Probes and this document: anyone.
    Public,
    /// The API, with a tenant's key (or none, in open mode).
    Tenant,
    Admin,
}

fn audience(path: &str) -> Audience {
    if path.starts_with("/admin/") {
        Audience::Admin
    } else if path.starts_with("/v1/") || path == "/tokenize" || path == "/detokenize" {
        Audience::Tenant
    } else {
        Audience::Public
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.post,
        &mut item.put,
        &mut item.patch,
        &mut item.delete,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

const TENANT_ERRORS: &[(&str, &str)] = &[
    ("400", "The request is invalid; `param` names the field"),
    ("401", "No valid API key"),
    ("403", "The key may not do this (a model off its allow-list, another tenant's data)"),
    ("404", "No such model or object"),
    ("408", "The request's body did not arrive within the read timeout"),
    ("413", "The body is over the server's size limit"),
    ("429", "A rate, concurrency or budget limit, or a full queue; `retry-after` says when to try again"),
    ("500", "A fault in the server"),
    ("503", "The model is loading or unloaded, no upstream is available, or the server is shutting down"),
    ("default", "Another status: an upstream's refusal relayed as it came, 502 for an upstream's fault"),
];

const ADMIN_ERRORS: &[(&str, &str)] = &[
    ("400", "The request is invalid; `param` names the field"),
    ("401", "No admin token, or the admin API is off"),
    ("404", "No such tenant, key or model"),
    (
        "408",
        "The request's body did not arrive within the read timeout",
    ),
    ("409", "A tenant of that name exists"),
    ("413", "The body is over the server's size limit"),
    ("500", "A fault in the server"),
    ("503", "The server is shutting down"),
];

/// The error statuses every route of its audience can answer, with the
/// error body its API uses (Anthropic's under `/v1/messages`).
struct Errors;

impl Modify for Errors {
    fn modify(&self, doc: &mut Document) {
        let mut shared = BTreeMap::new();
        for (path, item) in doc.paths.paths.iter_mut() {
            let (errors, prefix) = match audience(path) {
                Audience::Public => continue,
                Audience::Tenant if path.starts_with("/v1/messages") => {
                    (TENANT_ERRORS, "messages.")
                }
                Audience::Tenant => (TENANT_ERRORS, ""),
                Audience::Admin => (ADMIN_ERRORS, "admin."),
            };
            for op in operations(item) {
                for (status, description) in errors {
                    // Declared once under components, referred to by each operation.
                    let name = format!("{prefix}{status}");
                    shared.entry(name.clone()).or_insert_with(|| {
                        let content = ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(error_schema(path))))
                            .build();
                        ResponseBuilder::new()
                            .description(*description)
                            .content("application/json", content)
                            .build()
                    });
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert(Ref::from_response_name(name).into());
                }
            }
        }
        let components = doc.components.get_or_insert_with(Default::default);
        components
            .responses
            .extend(shared.into_iter().map(|(n, r)| (n, r.into())));
    }
}

/// Tenant keys as bearer tokens (or `x-api-key`, as Anthropic's clients
/// send them; optional while no key exists and open mode is on), and the
/// admin token on the admin API.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut Document) {
        let bearer =
            || SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("api_key", bearer());
        components.add_security_scheme("admin_token", bearer());
        for (path, item) in doc.paths.paths.iter_mut() {
            let required = match audience(path) {
                Audience::Public => continue,
                Audience::Tenant => vec![
                    SecurityRequirement::new("api_key", Vec::<String>::new()),
                    SecurityRequirement::default(),
                ],
                Audience::Admin => vec![SecurityRequirement::new(
                    "admin_token",
                    Vec::<String>::new(),
                )],
            };
            for op in operations(item) {
                op.security = Some(required.clone());
            }
        }
    }
}
