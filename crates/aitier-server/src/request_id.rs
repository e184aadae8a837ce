//! Every response carries `x-request-id`: the client's own when it sent a
//! sane one, else a fresh one (never a cleaned copy of theirs). The id also
//! names the request's tracing span, which continues the caller's trace
//! when it sent a `traceparent`.
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::telemetry;

pub const HEADER: &str = "x-request-id";

/// How a request is known: its id, and the `traceparent` its upstream
/// calls carry (see `telemetry`).
#[derive(Debug, Clone)]
pub struct RequestId {
    pub id: String,
    pub traceparent: Option<String>,
}

/// A client's id is kept only when it is short and made of the characters
/// ids use (UUIDs, ULIDs, `req_…`, base64): nothing a log reader or a
/// header could take for markup, quoting or a separator.
fn acceptable(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@/+=".contains(&b))
}

pub async fn layer(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_string)
        .unwrap_or_else(|| format!("req_{}", uuid::Uuid::new_v4().simple()));
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{} {}", req.method(), req.uri().path()),
        otel.kind = "server",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
        model = tracing::field::Empty,
        tenant = tracing::field::Empty,
        // The model that served (a fallback, maybe), and a router's choice.
        provider = tracing::field::Empty,
        deployment = tracing::field::Empty,
    );
    telemetry::continue_trace(&span, req.headers());
    let traceparent = telemetry::traceparent_for_upstream(&span, req.headers());
    req.extensions_mut().insert(RequestId {
        id: id.clone(),
        traceparent,
    });
    let mut resp = next.run(req).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(HEADER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::acceptable;

    #[test]
    fn ids_are_kept_only_when_plain() {
        for ok in [
            "abc-123",
            "req_0f8fad5bd9cb",
            "01HZX3K9Q7",
            "trace:42",
            "a/b+c==",
        ] {
            assert!(acceptable(ok), "{ok}");
        }
        let long = "x".repeat(129);
        for bad in [
            "",
            "two words",
            "tab\there",
            "quote\"d",
            "<script>",
            "über",
            "a\nb",
            &long,
        ] {
            assert!(!acceptable(bad), "{bad}");
        }
    }
}
