//! What runs now, for the console and for scripts: each configured model
//! with its status, its engine's counters and its deployments
//! (`/admin/v1/models`), and the counters a live view takes rates of
//! (`/admin/v1/live`). The same numbers are on `/metrics`; these answer in
//! JSON, behind the admin token.
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use aitier_core::ProviderStats;
use aitier_protocol::List;
use aitier_upstream::BreakerState;

use crate::catalog::{Kind, Standing, Status};
use crate::state::AppState;

/// A provider's own counters (cumulative) and gauges (now).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct EngineStats {
    /// Sequences decoding now.
    running: u64,
    /// Sequences waiting for a slot.
    waiting: u64,
    kv_cells_used: u64,
    kv_cells: u64,
    prompt_tokens: u64,
    /// Prompt tokens evaluated rather than served from the prefix cache.
    prompt_tokens_computed: u64,
    generated_tokens: u64,
    requests_finished: u64,
    requests_cancelled: u64,
}

impl From<ProviderStats> for EngineStats {
    fn from(s: ProviderStats) -> Self {
        Self {
            running: s.running,
            waiting: s.waiting,
            kv_cells_used: s.kv_cells_used,
            kv_cells: s.kv_cells_total,
            prompt_tokens: s.prompt_tokens,
            prompt_tokens_computed: s.prompt_computed,
            generated_tokens: s.generated_tokens,
            requests_finished: s.requests_finished,
            requests_cancelled: s.requests_cancelled,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Breaker {
    Closed,
    HalfOpen,
    Open,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentView {
    name: String,
    /// The last health check passed.
    healthy: bool,
    breaker: Breaker,
    /// Requests in flight to it.
    outstanding: u32,
    stats: EngineStats,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelView {
    id: String,
    aliases: Vec<String>,
    kind: Kind,
    status: Status,
    /// Why it failed to load.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Its provider's counters while it is loaded (for a routed model, the
    /// sum of its deployments').
    stats: Option<EngineStats>,
    /// The deployments a routed model chooses between; empty otherwise.
    deployments: Vec<DeploymentView>,
}

fn view(state: &AppState, m: Standing) -> ModelView {
    let stats = match m.status {
        Status::Loaded => state.registry.resolve(&m.name).ok().map(|p| p.stats()),
        _ => None,
    };
    let deployments = m
        .router
        .iter()
        .flat_map(|r| r.deployments())
        .map(|d| DeploymentView {
            name: d.name.clone(),
            healthy: d.healthy(),
            breaker: match d.breaker_state() {
                BreakerState::Closed => Breaker::Closed,
                BreakerState::HalfOpen => Breaker::HalfOpen,
                BreakerState::Open => Breaker::Open,
            },
            outstanding: d.outstanding(),
            stats: d.provider.stats().into(),
        })
        .collect();
    ModelView {
        id: m.name,
        aliases: m.aliases,
        kind: m.kind,
        status: m.status,
        error: m.error,
        stats: stats.map(EngineStats::from),
        deployments,
    }
}

/// Every configured model, loaded or not, with what it is doing.
#[utoipa::path(
    get,
    path = "/admin/v1/models",
    operation_id = "listModelStatus",
    tag = "admin",
    responses((status = 200, description = "Each configured model", body = List<ModelView>)),
)]
pub(crate) async fn models(State(state): State<AppState>) -> Json<List<ModelView>> {
    let views = state
        .catalog
        .standings()
        .into_iter()
        .map(|m| view(&state, m))
        .collect();
    Json(List::new(views))
}

/// Counters since the start, summed over the loaded models: a caller
/// takes rates from two readings.
#[derive(Debug, Serialize, ToSchema)]
pub struct Live {
    /// When read, Unix milliseconds.
    ts_ms: i64,
    uptime_s: f64,
    /// API requests (`/v1/...`) answered, whatever their status.
    requests: u64,
    prompt_tokens: u64,
    generated_tokens: u64,
    /// Sequences decoding now.
    running: u64,
    /// Sequences waiting for a slot.
    waiting: u64,
}

#[utoipa::path(
    get,
    path = "/admin/v1/live",
    operation_id = "getLive",
    tag = "admin",
    responses((status = 200, description = "Counters to take rates of", body = Live)),
)]
pub(crate) async fn live(State(state): State<AppState>) -> Json<Live> {
    let sum: ProviderStats = state
        .catalog
        .standings()
        .iter()
        .filter(|m| m.status == Status::Loaded)
        .filter_map(|m| state.registry.resolve(&m.name).ok())
        .map(|p| p.stats())
        .sum();
    Json(Live {
        ts_ms: aitier_core::clock::now_ms(),
        uptime_s: state.metrics.uptime().as_secs_f64(),
        requests: state.metrics.api_requests(),
        prompt_tokens: sum.prompt_tokens,
        generated_tokens: sum.generated_tokens,
        running: sum.running,
        waiting: sum.waiting,
    })
}
