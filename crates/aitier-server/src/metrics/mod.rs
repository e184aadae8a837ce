//! Prometheus metrics, encoded by `prometheus-client` (OpenMetrics text,
//! label values escaped), served on a listener of their own. Requests and
//! generations are observed as they happen (`requests`, `generation`);
//! everything kept elsewhere (the engines, routers, limits, ledger) is
//! read when scraped (`live`). Every metric is in `docs/metrics.md`.
mod generation;
mod live;
mod requests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::header;
use axum::routing::get;
use axum::Router;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use aitier_core::ModelRegistry;
use aitier_tenancy::Tenancy;

use crate::deployments::Routers;

pub use generation::{GenTimer, TokenLabels};
pub use requests::{layer, note_model, note_tenant, HttpLabels};

use generation::{DurationLabels, GenLabels};

/// Histogram buckets for one kind of latency.
#[derive(Clone, Copy)]
struct Buckets {
    start: f64,
    factor: f64,
    count: u16,
}

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(self.start, self.factor, self.count))
    }
}

/// 1 ms to ~65 s.
const LATENCY: Buckets = Buckets {
    start: 0.001,
    factor: 2.0,
    count: 17,
};
/// 0.5 ms to ~1 s between tokens.
const PER_TOKEN: Buckets = Buckets {
    start: 0.0005,
    factor: 2.0,
    count: 12,
};

type Histograms<L> = Family<L, Histogram, Buckets>;

pub(crate) struct GenMetrics {
    time_to_first_token: Histograms<GenLabels>,
    time_per_output_token: Histograms<GenLabels>,
    inter_token: Histograms<GenLabels>,
    request_duration: Histograms<DurationLabels>,
    tokens: Family<TokenLabels, Counter>,
}

pub struct Metrics {
    registry: Registry,
    models: Arc<ModelRegistry>,
    http: Family<HttpLabels, Counter>,
    gen: GenMetrics,
    /// `/v1/...` requests answered, for the rates of the live view.
    api_requests: AtomicU64,
    started: Instant,
}

impl Metrics {
    pub fn new(models: Arc<ModelRegistry>, routers: Routers, tenancy: Arc<Tenancy>) -> Self {
        let mut registry = Registry::default();
        let http = Family::<HttpLabels, Counter>::default();
        registry.register(
            "aitier_requests",
            "HTTP requests by route, status class, model and tenant.",
            http.clone(),
        );
        let gen = GenMetrics {
            time_to_first_token: Family::new_with_constructor(LATENCY),
            time_per_output_token: Family::new_with_constructor(PER_TOKEN),
            inter_token: Family::new_with_constructor(PER_TOKEN),
            request_duration: Family::new_with_constructor(LATENCY),
            tokens: Family::default(),
        };
        registry.register(
            "gen_ai_server_time_to_first_token_seconds",
            "From the request's arrival to its first output token.",
            gen.time_to_first_token.clone(),
        );
        registry.register(
            "gen_ai_server_time_per_output_token_seconds",
            "Per successful request: time from the first to the last output token, over the tokens after the first.",
            gen.time_per_output_token.clone(),
        );
        registry.register(
            "aitier_inter_token_latency_seconds",
            "Each gap between deliveries of output tokens, per token delivered.",
            gen.inter_token.clone(),
        );
        registry.register(
            "gen_ai_server_request_duration_seconds",
            "From the request's arrival to its last output token, its error, or its client leaving.",
            gen.request_duration.clone(),
        );
        registry.register(
            "aitier_tokens",
            "Tokens of finished requests by model, tenant and type.",
            gen.tokens.clone(),
        );
        registry.register_collector(Box::new(live::Live {
            models: models.clone(),
            routers,
            tenancy,
        }));
        Self {
            registry,
            models,
            http,
            gen,
            api_requests: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    pub fn api_requests(&self) -> u64 {
        self.api_requests.load(Ordering::Relaxed)
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// A model as a label value: a served model's name, else empty (a
    /// client's made-up names would make series without end).
    fn model_label(&self, model: &str) -> String {
        if self.models.contains(model) {
            model.to_string()
        } else {
            String::new()
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }

    /// `/metrics` alone, for the metrics listener (or the API's, when asked).
    pub fn router<S: Clone + Send + Sync + 'static>(self: &Arc<Self>) -> Router<S> {
        let metrics = self.clone();
        Router::new().route(
            "/metrics",
            get(move || async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render()) }),
        )
    }
}

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
