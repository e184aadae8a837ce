//! The OpenAPI document against the code: the committed copy is current,
//! and the document and the router name the same operations.
use std::collections::BTreeSet;

use aitier_server::{app, openapi};
use serde_json::Value;

#[test]
fn committed_document_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let committed = std::fs::read_to_string(path).expect("docs/openapi.json");
    assert!(
        committed == openapi::json(),
        "docs/openapi.json is stale: run `make openapi` and commit it"
    );
}

/// Axum's `{*rest}` takes the rest of the path, slashes and all; the
/// document names each segment.
fn route_matches(route: &str, documented: &str) -> bool {
    let mut doc = documented.split('/');
    for seg in route.split('/') {
        if seg.starts_with("{*") {
            return doc.next().is_some();
        }
        match doc.next() {
            Some(d) if d == seg || (seg.starts_with('{') && d.starts_with('{')) => {}
            _ => return false,
        }
    }
    doc.next().is_none()
}

#[test]
fn every_route_is_documented_and_every_operation_is_routed() {
    let doc = openapi::document();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, ops)| {
            let ops = ops.as_object().expect("a path item");
            ops.keys().map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let routes: Vec<(String, &str)> = app::all_routes()
        .iter()
        .map(|r| (r.method.to_string(), r.path))
        .collect();
    for (method, path) in &routes {
        assert!(
            documented
                .iter()
                .any(|(m, d)| m == method && route_matches(path, d)),
            "{method} {path} is served but not in the OpenAPI document"
        );
    }
    for (method, path) in &documented {
        assert!(
            routes
                .iter()
                .any(|(m, r)| m == method && route_matches(r, path)),
            "{method} {path} is documented but not served"
        );
    }
    assert_eq!(documented.len(), 31, "{documented:#?}");
}

#[test]
fn operations_have_unique_ids_and_errors_in_their_api_shape() {
    let doc = openapi::document();
    let mut ids = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("a path item") {
            let id = op["operationId"].as_str().expect("an operationId");
            assert!(ids.insert(id.to_string()), "{id} is used twice");
            let bad = resolve(&doc, &op["responses"]["400"]);
            let bad = &bad["content"]["application/json"]["schema"]["$ref"];
            match path.as_str() {
                "/health" | "/ready" | "/openapi.json" => assert!(bad.is_null(), "{method} {path}"),
                p if p.starts_with("/v1/messages") => {
                    assert_eq!(bad, "#/components/schemas/messages.ErrorBody", "{path}")
                }
                _ => assert_eq!(bad, "#/components/schemas/ErrorBody", "{method} {path}"),
            }
        }
    }
}

/// A response, or the shared one its `$ref` names.
fn resolve<'a>(doc: &'a Value, response: &'a Value) -> &'a Value {
    match response["$ref"].as_str() {
        Some(r) => {
            let name = r
                .strip_prefix("#/components/responses/")
                .expect("a response ref");
            &doc["components"]["responses"][name]
        }
        None => response,
    }
}
