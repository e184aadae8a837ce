//! The TOML file's shape. Every table refuses keys it does not know.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::engine::EngineSettings;
use super::error::ConfigError;
use super::routing::{FileDeployment, FileRouting};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: FileServer,
    /// Defaults for every local model.
    #[serde(default)]
    pub engine: EngineSettings,
    #[serde(default)]
    pub models: Vec<FileModel>,
    #[serde(default)]
    pub scheduler: FileScheduler,
    #[serde(default)]
    pub tenancy: FileTenancy,
    #[serde(default)]
    pub routing: FileRouting,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTenancy {
    pub database_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub admin_token: Option<String>,
    pub allow_open: Option<bool>,
    pub default_completion_reserve: Option<u32>,
    pub ledger_queue: Option<usize>,
    pub ledger_sync: Option<bool>,
    pub redis_url: Option<String>,
    pub limits_fail_open: Option<bool>,
    pub hold_lease: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileScheduler {
    pub queue_timeout: Option<u64>,
    pub default_weight: Option<u32>,
    /// Tenant → weight in the fair scheduler.
    #[serde(default)]
    pub weights: HashMap<String, u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub max_body_bytes: Option<usize>,
    pub models_dir: Option<PathBuf>,
    pub keep_alive_secs: Option<u64>,
    /// Durations as on the command line (`5s`, `500ms`).
    pub drain_grace: Option<String>,
    pub drain_timeout: Option<String>,
    pub read_timeout: Option<String>,
    pub write_timeout: Option<String>,
    /// `ADDR:PORT` or `off`.
    pub metrics_addr: Option<String>,
    pub metrics_on_api: Option<bool>,
    /// The web console at `/console/`; on by default.
    pub console: Option<bool>,
    /// Web origins allowed to call the API from a browser, or `["*"]`.
    pub cors_origins: Option<Vec<String>>,
    /// PEM files; HTTPS when both are set.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// OTLP/HTTP traces URL; spans are exported only when set.
    pub otlp_endpoint: Option<String>,
}

/// What a `[[models]]` entry serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileModelKind {
    #[default]
    Chat,
    Embedding,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileModel {
    pub name: String,
    /// `chat` (the default) or `embedding`.
    #[serde(default)]
    pub kind: FileModelKind,
    /// An embedding model trained for Matryoshka truncation: requests may
    /// ask for fewer `dimensions`.
    #[serde(default)]
    pub matryoshka: bool,
    /// Run this model's engine at the lowest CPU priority (default: on for
    /// embedding models, off for chat models).
    pub background: Option<bool>,
    /// A local GGUF file; or give `deployments`.
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Models to try, in order, when every deployment of this one fails.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    #[serde(default)]
    pub deployments: Vec<FileDeployment>,
    /// A Jinja chat template for this model's local engines, used instead
    /// of the GGUF's own.
    pub chat_template_file: Option<PathBuf>,
    /// This model's own engine settings, over `[engine]`.
    #[serde(flatten)]
    pub engine: EngineSettings,
}

pub fn read_file(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.display().to_string(),
        why: e.to_string(),
    })?;
    parse(&text, &path.display().to_string())
}

/// A configuration file's contents; `path` names it in errors.
pub fn parse(text: &str, path: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str::<FileConfig>(text).map_err(|e| ConfigError::Parse {
        path: path.to_string(),
        why: e.to_string(),
    })
}
