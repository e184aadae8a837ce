//! Logs and traces: log lines on stderr (text or JSON), and, when an OTLP
//! endpoint is configured, the same spans exported to it over HTTP
//! (protobuf) in batches from a thread of their own. A request's W3C
//! `traceparent` makes its span a child of the caller's; the tier passes
//! its own on to upstreams.
use axum::http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

pub const TRACEPARENT: &str = "traceparent";

/// Exports spans until dropped; dropping it sends what is left.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("sending the last spans failed: {e}");
            }
        }
    }
}

/// Installs the global subscriber: `default_filter` unless `RUST_LOG`
/// says otherwise, lines in `format`, spans to `otlp_endpoint` (a full
/// URL, e.g. `http://collector:4318/v1/traces`) when given.
pub fn init(
    default_filter: &str,
    format: LogFormat,
    otlp_endpoint: Option<&str>,
) -> anyhow::Result<Telemetry> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().with_current_span(true).boxed(),
    };
    let provider = otlp_endpoint.map(exporter).transpose()?;
    let spans = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("aitier")));
    tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .with(spans)
        .init();
    Ok(Telemetry { provider })
}

fn exporter(endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| anyhow::anyhow!("OTLP exporter for {endpoint}: {e}"))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name("aitier")
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.version",
                    env!("CARGO_PKG_VERSION"),
                ))
                .build(),
        )
        .build())
}

/// Makes `span` a child of the trace a request's `traceparent` names.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    if headers.get(TRACEPARENT).is_none() {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// The `traceparent` to send upstream: the request span's own while spans
/// are exported, else the caller's as it came (so a trace crosses this
/// tier even when it exports nothing), else none.
pub fn traceparent_for_upstream(span: &tracing::Span, incoming: &HeaderMap) -> Option<String> {
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        let mut headers = HeaderMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut headers));
        return headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
    }
    incoming
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .filter(|v| well_formed(v))
        .map(str::to_string)
}

/// `version-traceid-spanid-flags` in lowercase hex, as W3C writes it.
fn well_formed(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    parts.len() == 4
        && hex(parts[0], 2)
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn only_well_formed_traceparents_pass_through() {
        let mut h = HeaderMap::new();
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        h.insert(TRACEPARENT, HeaderValue::from_static(good));
        let span = tracing::Span::none();
        assert_eq!(traceparent_for_upstream(&span, &h).as_deref(), Some(good));
        for bad in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
        ] {
            h.insert(TRACEPARENT, HeaderValue::from_static(bad));
            assert_eq!(traceparent_for_upstream(&span, &h), None, "{bad}");
        }
    }
}
