//! Models served by routers: a client-facing name over several deployments
//! (local GGUF files and OpenAI-compatible upstreams), its aliases and its
//! fallback chain. The file and flag shapes, validated once, and the
//! providers built from them at start.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use aitier_core::{ModelRegistry, Provider, Secret};
use aitier_engine::{EngineConfig, LocalModel};
use aitier_upstream::{Breaker, Deployment, RetryPolicy, Router, Upstream, UpstreamConfig};

use crate::config::ConfigError;

/// `[routing]`: how routed models retry and when a deployment is shut out.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRouting {
    attempts: Option<u32>,
    backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
    max_retry_after_secs: Option<u64>,
    breaker_failures: Option<u32>,
    breaker_cooldown_secs: Option<u64>,
    health_interval_secs: Option<u64>,
    timeout_secs: Option<u64>,
}

/// One `[[models.deployments]]` entry: a GGUF `path`, or an upstream.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDeployment {
    name: Option<String>,
    path: Option<PathBuf>,
    base_url: Option<String>,
    /// The environment variable holding the upstream's API key.
    api_key_env: Option<String>,
    /// The upstream's own model name (default: the client-facing name).
    model: Option<String>,
    timeout_secs: Option<u64>,
    weight: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Routing {
    pub retry: RetryPolicy,
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    pub health_interval: Duration,
    pub timeout: Duration,
}

impl Routing {
    pub fn from_file(f: &FileRouting) -> Self {
        let d = RetryPolicy::default();
        Self {
            retry: RetryPolicy {
                attempts: f.attempts.unwrap_or(d.attempts).max(1),
                backoff: f.backoff_ms.map(Duration::from_millis).unwrap_or(d.backoff),
                max_backoff: f
                    .max_backoff_ms
                    .map(Duration::from_millis)
                    .unwrap_or(d.max_backoff),
                max_retry_after: f
                    .max_retry_after_secs
                    .map(Duration::from_secs)
                    .unwrap_or(d.max_retry_after),
            },
            breaker_failures: f.breaker_failures.unwrap_or(3).max(1),
            breaker_cooldown: Duration::from_secs(f.breaker_cooldown_secs.unwrap_or(10)),
            health_interval: Duration::from_secs(f.health_interval_secs.unwrap_or(15).max(1)),
            timeout: Duration::from_secs(f.timeout_secs.unwrap_or(60).max(1)),
        }
    }
}

#[derive(Debug, Clone)]
pub enum DeploymentConfig {
    Local {
        name: String,
        engine: EngineConfig,
        weight: u32,
    },
    Upstream {
        cfg: UpstreamConfig,
        weight: u32,
    },
}

impl DeploymentConfig {
    /// An upstream from a file entry or `--upstream`; the key is read from
    /// the environment now, so a missing one fails the start.
    pub fn upstream(
        model: &str,
        index: usize,
        d: &FileDeployment,
        routing: &Routing,
    ) -> Result<Self, ConfigError> {
        let base_url = d.base_url.clone().unwrap_or_default();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ConfigError::Invalid(format!(
                "model `{model}`: deployment {index} needs a `path` or an http(s) `base_url`"
            )));
        }
        if base_url.contains('@') {
            return Err(ConfigError::Invalid(format!(
                "model `{model}`: put upstream credentials in `api_key_env`, not in the URL"
            )));
        }
        let api_key = match &d.api_key_env {
            Some(var) => Some(Secret(std::env::var(var).map_err(|_| {
                ConfigError::Invalid(format!(
                    "model `{model}`: environment variable {var} (api_key_env) is not set"
                ))
            })?)),
            None => None,
        };
        Ok(DeploymentConfig::Upstream {
            cfg: UpstreamConfig {
                name: d.name.clone().unwrap_or_else(|| format!("{model}#{index}")),
                base_url,
                api_key,
                model: d.model.clone().unwrap_or_else(|| model.to_string()),
                timeout: d
                    .timeout_secs
                    .map(Duration::from_secs)
                    .unwrap_or(routing.timeout),
            },
            weight: d.weight.unwrap_or(1).max(1),
        })
    }

    pub fn local_parts(d: &FileDeployment) -> Option<(Option<String>, PathBuf, u32)> {
        d.path
            .clone()
            .map(|p| (d.name.clone(), p, d.weight.unwrap_or(1).max(1)))
    }
}

/// `--upstream NAME=BASE_URL[#MODEL]`.
pub fn parse_upstream_flag(spec: &str) -> Result<(String, FileDeployment), ConfigError> {
    let bad = || {
        ConfigError::Invalid(format!(
            "--upstream takes NAME=BASE_URL[#MODEL], got `{spec}`"
        ))
    };
    let (name, rest) = spec.split_once('=').ok_or_else(bad)?;
    let (url, model) = match rest.split_once('#') {
        Some((u, m)) => (u, Some(m.to_string())),
        None => (rest, None),
    };
    if name.is_empty() || url.is_empty() {
        return Err(bad());
    }
    Ok((
        name.to_string(),
        FileDeployment {
            base_url: Some(url.to_string()),
            model,
            ..Default::default()
        },
    ))
}

/// The routers built so far, by model, for `/metrics`.
pub type Routers = Arc<std::sync::RwLock<Vec<(String, Arc<Router>)>>>;

/// Declares every model and alias, then makes each ready as its
/// deployments come up: local models load on blocking threads.
pub fn start_models(
    registry: &Arc<ModelRegistry>,
    models: &[crate::config::ModelConfig],
    routing: &Routing,
    routers: &Routers,
) {
    for m in models {
        registry.declare(&m.name);
        for a in &m.aliases {
            registry.declare(a);
        }
    }
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .build();
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            for m in models {
                registry.set_failed(&m.name, format!("no HTTP client: {e}"));
            }
            return;
        }
    };
    for m in models.iter().cloned() {
        let registry = registry.clone();
        let client = client.clone();
        let routing = routing.clone();
        let routers = routers.clone();
        tokio::spawn(async move {
            match build(&m, client, &routing, &routers).await {
                Ok(p) => {
                    tracing::info!(model = %m.name, deployments = m.deployments.len(), "model ready");
                    for name in std::iter::once(&m.name).chain(&m.aliases) {
                        registry.set_ready(name, p.clone());
                    }
                }
                Err(why) => {
                    tracing::error!(model = %m.name, error = %why, "model failed to load");
                    for name in std::iter::once(&m.name).chain(&m.aliases) {
                        registry.set_failed(name, why.clone());
                    }
                }
            }
        });
    }
}

async fn load_local(engine: EngineConfig) -> Result<Arc<dyn Provider>, String> {
    let path = engine.path.display().to_string();
    let loaded = tokio::task::spawn_blocking(move || LocalModel::load(&engine))
        .await
        .map_err(|e| e.to_string())?;
    let model = loaded.map_err(|e| format!("{path}: {e}"))?;
    tracing::info!(%path, context = model.info().context_length, "local model loaded");
    Ok(model)
}

async fn build(
    m: &crate::config::ModelConfig,
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
    let router = Router::new(deployments, routing.retry.clone());
    router.spawn_health_checks(routing.health_interval);
    routers
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .push((m.name.clone(), router.clone()));
    Ok(router)
}

/// Model or alias → the models to try after it, in order.
pub fn fallbacks(models: &[crate::config::ModelConfig]) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    for m in models.iter().filter(|m| !m.fallbacks.is_empty()) {
        for name in std::iter::once(&m.name).chain(&m.aliases) {
            out.insert(name.clone(), m.fallbacks.clone());
        }
    }
    out
}
