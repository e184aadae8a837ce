//! Prometheus metrics, encoded by `prometheus-client` (OpenMetrics text,
//! label values escaped): the providers' own counters per model, and the
//! load, health and breaker state of each routed model's deployments. All
//! are read at scrape time from where they are kept.
use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use aitier_core::{ModelRegistry, ProviderStats};
use aitier_upstream::{BreakerState, Deployment};

use crate::deployments::Routers;

/// name (counters without `_total`, which the encoder adds), type, help,
/// and how to read it from the stats.
type Series = (
    &'static str,
    MetricType,
    &'static str,
    fn(&ProviderStats) -> u64,
);

const PROVIDER_SERIES: [Series; 9] = [
    (
        "aitier_prompt_tokens",
        MetricType::Counter,
        "Prompt tokens accepted.",
        |s| s.prompt_tokens,
    ),
    (
        "aitier_prompt_tokens_computed",
        MetricType::Counter,
        "Prompt tokens evaluated rather than served from the prefix cache.",
        |s| s.prompt_computed,
    ),
    (
        "aitier_generated_tokens",
        MetricType::Counter,
        "Tokens generated.",
        |s| s.generated_tokens,
    ),
    (
        "aitier_requests_finished",
        MetricType::Counter,
        "Requests that ran to completion.",
        |s| s.requests_finished,
    ),
    (
        "aitier_requests_cancelled",
        MetricType::Counter,
        "Requests dropped because the client went away.",
        |s| s.requests_cancelled,
    ),
    (
        "aitier_sequences_running",
        MetricType::Gauge,
        "Sequences decoding now.",
        |s| s.running,
    ),
    (
        "aitier_sequences_waiting",
        MetricType::Gauge,
        "Sequences waiting for a slot.",
        |s| s.waiting,
    ),
    (
        "aitier_grammar_masks",
        MetricType::Counter,
        "Token masks computed for constrained sequences.",
        |s| s.grammar_masks,
    ),
    (
        "aitier_grammar_mask_microseconds",
        MetricType::Counter,
        "Microseconds spent computing token masks (overlapping the decode).",
        |s| s.grammar_mask_micros,
    ),
];

/// name, help, and how to read it from a deployment.
type DeploymentGauge = (&'static str, &'static str, fn(&Deployment) -> i64);

const DEPLOYMENT_GAUGES: [DeploymentGauge; 3] = [
    (
        "aitier_deployment_outstanding",
        "Requests in flight to the deployment.",
        |d| i64::from(d.outstanding()),
    ),
    (
        "aitier_deployment_healthy",
        "1 when the last health check passed.",
        |d| i64::from(d.healthy()),
    ),
    (
        "aitier_deployment_breaker",
        "Circuit breaker: 0 closed, 1 half-open, 2 open.",
        |d| match d.breaker_state() {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        },
    ),
];

/// Reads the providers and routers when scraped.
struct Live {
    models: Arc<ModelRegistry>,
    routers: Routers,
}

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Live")
    }
}

impl Live {
    fn providers(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let stats: Vec<(String, ProviderStats)> = self
            .models
            .ready()
            .into_iter()
            .map(|(name, p)| (name, p.stats()))
            .collect();
        for (name, kind, help, read) in PROVIDER_SERIES {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for (model, s) in &stats {
                let labels = [("model", model.as_str())];
                let sample = family.encode_family(&labels)?;
                match kind {
                    MetricType::Counter => ConstCounter::new(read(s)).encode(sample)?,
                    _ => ConstGauge::new(read(s) as i64).encode(sample)?,
                }
            }
        }
        Ok(())
    }

    fn deployments(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let routers = self.routers.read().unwrap_or_else(|p| p.into_inner());
        for (name, help, read) in DEPLOYMENT_GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (model, router) in routers.iter() {
                for d in router.deployments() {
                    let labels = [("model", model.as_str()), ("deployment", d.name.as_str())];
                    ConstGauge::new(read(d)).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        self.providers(&mut encoder)?;
        self.deployments(&mut encoder)
    }
}

pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    pub fn new(models: Arc<ModelRegistry>, routers: Routers) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Live { models, routers }));
        Self { registry }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
