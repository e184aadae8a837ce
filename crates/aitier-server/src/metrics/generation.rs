//! One generation's or embedding's latencies and tokens, as OpenTelemetry's
//! GenAI server metrics name them: time to first token, time per output
//! token and request duration (in seconds, from the request's arrival),
//! with the gap between each delivery of tokens beside them, and tokens
//! by model, tenant and type.
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;

use aitier_core::GenEvent;

use super::requests;
use super::Metrics;
use crate::error::ApiError;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GenLabels {
    pub gen_ai_operation_name: &'static str,
    pub gen_ai_request_model: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    pub gen_ai_operation_name: &'static str,
    pub gen_ai_request_model: String,
    /// Empty on success; else the HTTP status the error maps to, or
    /// `cancelled` when the client left.
    pub error_type: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub gen_ai_request_model: String,
    pub tenant: String,
    /// `input`, `output` (OpenTelemetry's), or `cached_input` (ours: input
    /// served from the prefix cache, part of `input`).
    pub gen_ai_token_type: &'static str,
}

/// OpenTelemetry's operation names, by API path.
pub fn operation(endpoint: &str) -> &'static str {
    match endpoint {
        "/v1/completions" => "text_completion",
        "/v1/embeddings" => "embeddings",
        _ => "chat",
    }
}

/// Follows one request from its admission to its end.
pub struct GenTimer {
    metrics: Arc<Metrics>,
    labels: GenLabels,
    tenant: String,
    started: Instant,
    first: Option<Instant>,
    last: Option<Instant>,
    output_tokens: u32,
    ended: bool,
    /// The request's span, for what is learnt while the stream runs.
    span: tracing::Span,
}

impl GenTimer {
    pub fn start(metrics: &Arc<Metrics>, endpoint: &str, model: &str, tenant: &str) -> Self {
        Self {
            metrics: metrics.clone(),
            labels: GenLabels {
                gen_ai_operation_name: operation(endpoint),
                gen_ai_request_model: metrics.model_label(model),
            },
            tenant: tenant.to_string(),
            started: requests::started(),
            first: None,
            last: None,
            output_tokens: 0,
            ended: false,
            span: tracing::Span::current(),
        }
    }

    pub fn observe(&mut self, ev: &GenEvent) {
        match ev {
            GenEvent::Delta { tokens, .. } | GenEvent::ToolCall { tokens, .. } if *tokens > 0 => {
                self.delivered(*tokens);
            }
            GenEvent::Done { usage, .. } => {
                let cached = usage.prompt_tokens_details.cached_tokens;
                self.tokens(usage.prompt_tokens, cached, usage.completion_tokens);
                self.finish(String::new());
            }
            GenEvent::Error(e) => self.failed(&ApiError::from(e.clone())),
            GenEvent::Started {
                deployment: Some(d),
                ..
            } => {
                self.span.record("deployment", d.as_str());
            }
            _ => {}
        }
    }

    fn delivered(&mut self, tokens: u32) {
        let now = Instant::now();
        let g = &self.metrics.gen;
        match self.last {
            None => g
                .time_to_first_token
                .get_or_create(&self.labels)
                .observe(now.duration_since(self.started).as_secs_f64()),
            Some(last) => g
                .inter_token
                .get_or_create(&self.labels)
                .observe(now.duration_since(last).as_secs_f64() / f64::from(tokens)),
        }
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.output_tokens += tokens;
    }

    fn tokens(&self, input: u32, cached: u32, output: u32) {
        for (kind, n) in [
            ("input", input),
            ("cached_input", cached),
            ("output", output),
        ] {
            self.metrics
                .gen
                .tokens
                .get_or_create(&TokenLabels {
                    gen_ai_request_model: self.labels.gen_ai_request_model.clone(),
                    tenant: self.tenant.clone(),
                    gen_ai_token_type: kind,
                })
                .inc_by(u64::from(n));
        }
    }

    /// An embedding answered whole.
    pub fn embedded(&mut self, input: u32) {
        self.tokens(input, 0, 0);
        self.finish(String::new());
    }

    pub fn failed(&mut self, e: &ApiError) {
        self.finish(e.status.as_u16().to_string());
    }

    fn finish(&mut self, error_type: String) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let g = &self.metrics.gen;
        let duration = self.started.elapsed().as_secs_f64();
        if let (Some(first), Some(last), true) = (self.first, self.last, error_type.is_empty()) {
            if self.output_tokens > 1 {
                let per_token =
                    last.duration_since(first).as_secs_f64() / f64::from(self.output_tokens - 1);
                g.time_per_output_token
                    .get_or_create(&self.labels)
                    .observe(per_token);
            }
        }
        g.request_duration
            .get_or_create(&DurationLabels {
                gen_ai_operation_name: self.labels.gen_ai_operation_name,
                gen_ai_request_model: self.labels.gen_ai_request_model.clone(),
                error_type,
            })
            .observe(duration);
    }
}

impl Drop for GenTimer {
    /// Dropped before its end: the client went away.
    fn drop(&mut self) {
        self.finish("cancelled".into());
    }
}
