//! Building a served model from its configuration: a lone local file
//! directly, anything else behind a router with health checks. Local
//! models load on blocking threads. `catalog` decides when.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aitier_core::Provider;
use aitier_engine::{EmbeddingModel, EngineConfig, LocalModel, Task};
use aitier_upstream::{Breaker, Deployment, Router, Upstream};

use crate::config::{DeploymentConfig, ModelConfig, Routing};

/// The routers built so far, by model, for `/metrics`.
pub type Routers = Arc<std::sync::RwLock<Vec<(String, Arc<Router>)>>>;

/// The HTTP client every upstream deployment shares.
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .build()
}

async fn load_local(engine: EngineConfig) -> Result<Arc<dyn Provider>, String> {
    let path = engine.path.display().to_string();
    let loaded = tokio::task::spawn_blocking(move || match engine.task {
        Task::Generate => LocalModel::load(&engine).map(|m| m as Arc<dyn Provider>),
        Task::Embed { .. } => EmbeddingModel::load(&engine).map(|m| m as Arc<dyn Provider>),
    })
    .await
    .map_err(|e| e.to_string())?;
    let model = loaded.map_err(|e| format!("{path}: {e}"))?;
    tracing::info!(%path, context = model.info().context_length, "local model loaded");
    Ok(model)
}

/// A model's provider: a lone local file directly, anything else behind a
/// router with health checks (listed in `routers` for the metrics, in
/// place of any router the model had before).
pub async fn build(
    m: &ModelConfig,
    client: reqwest::Client,
    routing: &Routing,
    routers: &Routers,
) -> Result<Arc<dyn Provider>, String> {
    // One local file and nothing else: no router in the way.
    if let [DeploymentConfig::Local { engine, .. }] = m.deployments.as_slice() {
        return load_local(engine.clone()).await;
    }
    let mut deployments = Vec::new();
    for d in &m.deployments {
        let breaker = Breaker::new(routing.breaker_failures, routing.breaker_cooldown);
        deployments.push(match d {
            DeploymentConfig::Local {
                name,
                engine,
                weight,
            } => Deployment::new(
                name,
                load_local(engine.clone()).await?,
                *weight,
                None,
                breaker,
            ),
            DeploymentConfig::Upstream { cfg, weight } => {
                let up = Upstream::new(cfg.clone(), client.clone());
                Deployment::new(&cfg.name, up.clone(), *weight, Some(up), breaker)
            }
        });
    }
    let router = Router::new(deployments, routing.retry.clone(), routing.balance);
    router.spawn_health_checks(routing.health_interval);
    let mut list = routers.write().unwrap_or_else(|p| p.into_inner());
    list.retain(|(name, _)| name != &m.name);
    list.push((m.name.clone(), router.clone()));
    Ok(router)
}

/// Model or alias → the models to try after it, in order.
pub fn fallbacks(models: &[ModelConfig]) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    for m in models.iter().filter(|m| !m.fallbacks.is_empty()) {
        for name in std::iter::once(&m.name).chain(&m.aliases) {
            out.insert(name.clone(), m.fallbacks.clone());
        }
    }
    out
}
