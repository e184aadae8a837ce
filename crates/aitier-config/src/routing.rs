//! Models served by routers: a client-facing name over several deployments
//! (local GGUF files and OpenAI-compatible upstreams), with retries and
//! breakers. The file and flag shapes, validated once; `deployments`
//! builds the providers from them.
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use aitier_core::Secret;
use aitier_engine::EngineConfig;
use aitier_upstream::{Balance, RetryPolicy, UpstreamConfig};

use super::error::ConfigError;

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
    balance: Option<FileBalance>,
    load_factor: Option<f64>,
}

/// `balance`: how a routed model picks a deployment.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum FileBalance {
    Prefix,
    LeastOutstanding,
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

#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    pub retry: RetryPolicy,
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    pub health_interval: Duration,
    pub timeout: Duration,
    pub balance: Balance,
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
            balance: match f.balance {
                Some(FileBalance::LeastOutstanding) => Balance::LeastOutstanding,
                Some(FileBalance::Prefix) | None => Balance::Prefix {
                    // NaN and anything under 1 mean 1: no deployment above its share.
                    load_factor: f
                        .load_factor
                        .unwrap_or(Balance::DEFAULT_LOAD_FACTOR)
                        .max(1.0),
                },
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
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
