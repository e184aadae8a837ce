//! Prometheus text exposition of the providers' counters. A first cut on the
//! API listener; the operations work moves metrics to a listener of their own.
use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::app::AppState;

/// name, Prometheus type, help, and how to read it from the stats.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&aitier_core::ProviderStats) -> u64,
);

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let ready = state.registry.ready();
    let mut out = String::new();
    let series: [Series; 7] = [
        (
            "aitier_prompt_tokens_total",
            "counter",
            "Prompt tokens accepted.",
            |s| s.prompt_tokens,
        ),
        (
            "aitier_prompt_tokens_computed_total",
            "counter",
            "Prompt tokens evaluated rather than served from the prefix cache.",
            |s| s.prompt_computed,
        ),
        (
            "aitier_generated_tokens_total",
            "counter",
            "Tokens generated.",
            |s| s.generated_tokens,
        ),
        (
            "aitier_requests_finished_total",
            "counter",
            "Requests that ran to completion.",
            |s| s.requests_finished,
        ),
        (
            "aitier_requests_cancelled_total",
            "counter",
            "Requests dropped because the client went away.",
            |s| s.requests_cancelled,
        ),
        (
            "aitier_sequences_running",
            "gauge",
            "Sequences decoding now.",
            |s| s.running,
        ),
        (
            "aitier_sequences_waiting",
            "gauge",
            "Sequences waiting for a slot.",
            |s| s.waiting,
        ),
    ];
    let stats: Vec<_> = ready.iter().map(|(n, p)| (n, p.stats())).collect();
    for (name, kind, help, get) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (model, s) in &stats {
            let _ = writeln!(out, "{name}{{model=\"{model}\"}} {}", get(s));
        }
    }
    deployment_metrics(&state, &mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// name, help, and how to read it from a deployment.
type DeploymentGauge = (
    &'static str,
    &'static str,
    fn(&aitier_upstream::Deployment) -> u64,
);

/// Per deployment of routed models: load, health and circuit breaker.
fn deployment_metrics(state: &AppState, out: &mut String) {
    let routers = state.routers.read().unwrap_or_else(|p| p.into_inner());
    let gauges: [DeploymentGauge; 3] = [
        (
            "aitier_deployment_outstanding",
            "Requests in flight to the deployment.",
            |d| u64::from(d.outstanding()),
        ),
        (
            "aitier_deployment_healthy",
            "1 when the last health check passed.",
            |d| u64::from(d.healthy()),
        ),
        (
            "aitier_deployment_breaker",
            "Circuit breaker: 0 closed, 1 half-open, 2 open.",
            |d| match d.breaker_state() {
                aitier_upstream::BreakerState::Closed => 0,
                aitier_upstream::BreakerState::HalfOpen => 1,
                aitier_upstream::BreakerState::Open => 2,
            },
        ),
    ];
    for (name, help, get) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (model, router) in routers.iter() {
            for d in router.deployments() {
                let _ = writeln!(
                    out,
                    "{name}{{model=\"{model}\",deployment=\"{}\"}} {}",
                    d.name,
                    get(d)
                );
            }
        }
    }
}
