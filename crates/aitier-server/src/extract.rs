//! A JSON body extractor whose every failure is an OpenAI-shaped 400 (or 413)
//! naming the offending parameter.
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct OpenAiJson<T>(pub T);

impl<S, T> FromRequest<S> for OpenAiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::body_too_large("The request body is larger than this server accepts.")
            } else {
                ApiError::invalid(
                    None,
                    format!("Could not read the request body: {rejection}"),
                )
            }
        })?;
        parse(&bytes).map(OpenAiJson)
    }
}

pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        use serde_json::error::Category;
        match inner.classify() {
            Category::Syntax | Category::Eof | Category::Io => ApiError::invalid(
                None,
                format!(
                    "We could not parse the JSON body of your request ({inner}). The OpenAI API expects a JSON payload."
                ),
            ),
            Category::Data => {
                let msg = strip_position(&inner.to_string());
                let path = if path == "." { flattened_path(bytes).unwrap_or(path) } else { path };
                let param = missing_field(&msg)
                    .map(|field| if path == "." { field.to_string() } else { format!("{path}.{field}") })
                    .or_else(|| (path != ".").then(|| path.clone()));
                let message = match &param {
                    Some(p) => format!("Invalid value for '{p}': {msg}"),
                    None => format!("Invalid request body: {msg}"),
                };
                ApiError::invalid(param, message)
            }
        }
    })
}

/// serde cannot say where in a `#[serde(flatten)]`ed struct an error is
/// (it buffers those fields), so a body that failed at its root is read
/// again as the one flattened struct of the wire types, the shared
/// sampling parameters, which finds the field if it is theirs.
fn flattened_path(bytes: &[u8]) -> Option<String> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, aitier_protocol::Sampling>(de) {
        Err(e) if e.path().to_string() != "." => Some(e.path().to_string()),
        _ => None,
    }
}

/// serde_json appends " at line L column C"; the parameter name says more.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn missing_field(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("missing field `")?;
    rest.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aitier_protocol::chat::ChatCompletionRequest;

    fn param(body: &str) -> (Option<String>, String) {
        match parse::<ChatCompletionRequest>(body.as_bytes()) {
            Err(e) => (e.body.param, e.body.message),
            Ok(_) => panic!("expected an error for {body}"),
        }
    }

    #[test]
    fn truncated_json_is_a_parse_error_without_param() {
        let (p, m) = param(r#"{"model": "m", "messages": [{"role"#);
        assert_eq!(p, None);
        assert!(m.contains("could not parse the JSON"), "{m}");
    }

    #[test]
    fn wrong_type_names_the_path() {
        let (p, _) = param(r#"{"model": "m", "messages": [], "temperature": "hot"}"#);
        assert_eq!(p.as_deref(), Some("temperature"));
        let (p, _) = param(r#"{"model": "m", "messages": [{"role": 5, "content": "x"}]}"#);
        assert_eq!(p.as_deref(), Some("messages[0].role"));
    }

    #[test]
    fn missing_field_is_the_param() {
        let (p, _) = param(r#"{"messages": []}"#);
        assert_eq!(p.as_deref(), Some("model"));
        let (p, _) = param(r#"{"model": "m", "messages": [{"content": "x"}]}"#);
        assert_eq!(p.as_deref(), Some("messages[0].role"));
    }
}
