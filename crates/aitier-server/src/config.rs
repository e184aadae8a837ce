//! Configuration: defaults, then a TOML file, then `AITIER_*` environment,
//! then command-line flags (clap folds the last two together). Raw structs
//! reject unknown keys; `ServeConfig` is the validated result.
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use aitier_core::Secret;
use aitier_engine::EngineConfig;

use crate::routing::{parse_upstream_flag, DeploymentConfig, FileDeployment, FileRouting, Routing};

pub const DEFAULT_MODEL_NAME: &str = "smollm2-135m-instruct";
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
pub const DEFAULT_QUEUE_TIMEOUT_SECS: u64 = 600;

#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "AITIER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "AITIER_HOST")]
    pub host: Option<String>,
    /// Port to listen on; 0 picks a free one (the address is printed).
    #[arg(long, env = "AITIER_PORT")]
    pub port: Option<u16>,
    /// Serve a GGUF model under a name: NAME=PATH. Repeatable; replaces the
    /// models of the config file.
    #[arg(long = "model", value_name = "NAME=PATH")]
    pub models: Vec<String>,
    /// Serve an OpenAI-compatible upstream under a name:
    /// NAME=BASE_URL[#UPSTREAM_MODEL]. Repeatable; with --model, adds to it.
    #[arg(long = "upstream", value_name = "NAME=URL")]
    pub upstreams: Vec<String>,
    /// Where the embedded default model lives.
    #[arg(long, env = "AITIER_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Sequences decoded together per model.
    #[arg(long, env = "AITIER_SLOTS")]
    pub slots: Option<u32>,
    /// Context tokens per sequence.
    #[arg(long, env = "AITIER_CTX_SIZE")]
    pub ctx_size: Option<u32>,
    /// CPU threads per model (0: one per core).
    #[arg(long, env = "AITIER_THREADS")]
    pub threads: Option<u32>,
    /// Tokens per decode call.
    #[arg(long, env = "AITIER_BATCH_SIZE")]
    pub batch_size: Option<u32>,
    /// Requests that may wait per model before new ones get 429.
    #[arg(long, env = "AITIER_QUEUE_DEPTH")]
    pub queue_depth: Option<u32>,
    /// Prompt tokens prefilled per step while others decode.
    #[arg(long, env = "AITIER_PREFILL_CHUNK")]
    pub prefill_chunk: Option<u32>,
    /// Milliseconds a decode step should take while the engine is shared;
    /// prompt chunks shrink to fit it (0: always `prefill_chunk`).
    #[arg(long, env = "AITIER_STEP_TARGET_MS")]
    pub step_target_ms: Option<u32>,
    /// KV cells idle slots may keep as prefix cache (default: all).
    #[arg(long, env = "AITIER_CACHE_CELLS")]
    pub cache_cells: Option<u64>,
    /// Seconds a request may wait for a slot before it fails.
    #[arg(long, env = "AITIER_QUEUE_TIMEOUT")]
    pub queue_timeout: Option<u64>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "AITIER_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Token that authorises the admin API (`/admin/v1/...`); without one
    /// the admin API is off.
    #[arg(long, env = "AITIER_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
    /// Serve without API keys on a non-loopback address while no key exists.
    #[arg(long, env = "AITIER_ALLOW_OPEN")]
    pub allow_open: bool,
    /// Completion tokens reserved against limits for a request without
    /// `max_tokens`.
    #[arg(long, env = "AITIER_DEFAULT_COMPLETION_RESERVE")]
    pub default_completion_reserve: Option<u32>,
}

/// Where tenants, keys and the usage ledger live; shared by `serve` and the
/// admin commands.
#[derive(Clone, Default, Args)]
pub struct DatabaseArgs {
    /// `postgres://...` or `sqlite://PATH`; default: SQLite in the data directory.
    #[arg(long, env = "AITIER_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Directory for the embedded SQLite database.
    #[arg(long, env = "AITIER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

impl std::fmt::Debug for DatabaseArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseArgs")
            .field(
                "database_url",
                &self
                    .database_url
                    .as_deref()
                    .map(aitier_tenancy::store::redact_url),
            )
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

impl DatabaseArgs {
    /// The database URL: the flag, then the file's, then SQLite in the data
    /// directory (the flag's, the file's, or `data`).
    pub fn url(&self, file: Option<&FileTenancy>) -> String {
        if let Some(u) = self
            .database_url
            .clone()
            .or_else(|| file.and_then(|f| f.database_url.clone()))
        {
            return u;
        }
        let dir = self
            .data_dir
            .clone()
            .or_else(|| file.and_then(|f| f.data_dir.clone()))
            .unwrap_or_else(|| PathBuf::from("data"));
        format!("sqlite://{}", dir.join("aitier.db").display())
    }
}

/// Tenancy settings, validated.
#[derive(Clone)]
pub struct TenancySettings {
    pub database_url: String,
    pub admin_token: Option<Secret>,
    pub allow_open: bool,
    pub default_completion_reserve: u32,
}

impl std::fmt::Debug for TenancySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenancySettings")
            .field(
                "database_url",
                &aitier_tenancy::store::redact_url(&self.database_url),
            )
            .field("admin_token", &self.admin_token)
            .field("allow_open", &self.allow_open)
            .field(
                "default_completion_reserve",
                &self.default_completion_reserve,
            )
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    server: FileServer,
    #[serde(default)]
    engine: FileEngine,
    #[serde(default)]
    models: Vec<FileModel>,
    #[serde(default)]
    scheduler: FileScheduler,
    #[serde(default)]
    tenancy: FileTenancy,
    #[serde(default)]
    routing: FileRouting,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTenancy {
    database_url: Option<String>,
    data_dir: Option<PathBuf>,
    admin_token: Option<String>,
    allow_open: Option<bool>,
    default_completion_reserve: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileScheduler {
    queue_timeout: Option<u64>,
    default_weight: Option<u32>,
    /// Tenant → weight in the fair scheduler.
    #[serde(default)]
    weights: HashMap<String, u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    host: Option<String>,
    port: Option<u16>,
    max_body_bytes: Option<usize>,
    models_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEngine {
    slots: Option<u32>,
    ctx_size: Option<u32>,
    threads: Option<u32>,
    batch_size: Option<u32>,
    queue_depth: Option<u32>,
    prefill_chunk: Option<u32>,
    step_target_ms: Option<u32>,
    cache_cells: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModel {
    name: String,
    /// A local GGUF file; or give `deployments`.
    path: Option<PathBuf>,
    #[serde(default)]
    aliases: Vec<String>,
    /// Models to try, in order, when every deployment of this one fails.
    #[serde(default)]
    fallbacks: Vec<String>,
    #[serde(default)]
    deployments: Vec<FileDeployment>,
    #[serde(flatten)]
    engine: FileEngine,
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub name: String,
    pub aliases: Vec<String>,
    pub fallbacks: Vec<String>,
    pub deployments: Vec<DeploymentConfig>,
}

impl ModelConfig {
    fn local(name: &str, engine: EngineConfig) -> Self {
        Self {
            name: name.to_string(),
            aliases: vec![],
            fallbacks: vec![],
            deployments: vec![DeploymentConfig::Local {
                name: name.to_string(),
                engine,
                weight: 1,
            }],
        }
    }

    /// The local engines among the deployments.
    pub fn engines(&self) -> impl Iterator<Item = &EngineConfig> {
        self.deployments.iter().filter_map(|d| match d {
            DeploymentConfig::Local { engine, .. } => Some(engine),
            DeploymentConfig::Upstream { .. } => None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub host: IpAddr,
    pub port: u16,
    pub max_body_bytes: usize,
    pub models: Vec<ModelConfig>,
    pub scheduling: Scheduling,
    pub tenancy: TenancySettings,
    pub routing: Routing,
}

/// How requests share a model's capacity.
#[derive(Debug, Clone)]
pub struct Scheduling {
    pub queue_timeout: Duration,
    pub default_weight: u32,
    pub weights: HashMap<String, u32>,
}

impl Scheduling {
    pub fn weight_of(&self, tenant: &str) -> u32 {
        self.weights
            .get(tenant)
            .copied()
            .unwrap_or(self.default_weight)
    }
}

impl Default for Scheduling {
    fn default() -> Self {
        Self {
            queue_timeout: Duration::from_secs(DEFAULT_QUEUE_TIMEOUT_SECS),
            default_weight: 1,
            weights: HashMap::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {why}")]
    Read { path: String, why: String },
    #[error("{path}: {why}")]
    Parse { path: String, why: String },
    #[error("--model takes NAME=PATH, got `{0}`")]
    ModelSpec(String),
    #[error("host `{0}` is not an IP address")]
    Host(String),
    #[error("model name `{0}` is declared twice")]
    DuplicateModel(String),
    #[error("model `{name}`: file {path} not found{hint}")]
    MissingModel {
        name: String,
        path: String,
        hint: String,
    },
    #[error("{0}")]
    Invalid(String),
}

fn read_file(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                path: path.display().to_string(),
                why: e.to_string(),
            })?;
            toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::Parse {
                path: path.display().to_string(),
                why: e.to_string(),
            })
        }
        None => Ok(FileConfig::default()),
    }
}

/// The database URL the admin commands use: flags and environment, then
/// the `[tenancy]` table of the config file.
pub fn database_url(db: &DatabaseArgs, config: Option<&Path>) -> Result<String, ConfigError> {
    let file = read_file(config)?;
    Ok(db.url(Some(&file.tenancy)))
}

impl ServeConfig {
    pub fn resolve(args: &ServeArgs) -> Result<Self, ConfigError> {
        let file = read_file(args.config.as_deref())?;
        let host_text = args
            .host
            .clone()
            .or(file.server.host.clone())
            .unwrap_or_else(|| "127.0.0.1".into());
        let host = if host_text == "localhost" {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host_text
                .parse()
                .map_err(|_| ConfigError::Host(host_text.clone()))?
        };
        let port = args.port.or(file.server.port).unwrap_or(DEFAULT_PORT);
        let max_body_bytes = args
            .max_body_bytes
            .or(file.server.max_body_bytes)
            .unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "max_body_bytes must be at least 1024".into(),
            ));
        }
        let models_dir = args
            .models_dir
            .clone()
            .or(file.server.models_dir.clone())
            .unwrap_or_else(|| PathBuf::from("models"));
        let defaults = &file.engine;
        let engine_for = |path: &Path, own: &FileEngine| {
            let mut e = EngineConfig::new(path);
            let pick = |cli: Option<u32>, model: Option<u32>, global: Option<u32>, dflt: u32| {
                cli.or(model).or(global).unwrap_or(dflt)
            };
            e.slots = pick(args.slots, own.slots, defaults.slots, e.slots);
            e.ctx_per_slot = pick(
                args.ctx_size,
                own.ctx_size,
                defaults.ctx_size,
                e.ctx_per_slot,
            );
            e.threads = pick(args.threads, own.threads, defaults.threads, e.threads);
            e.batch_size = pick(
                args.batch_size,
                own.batch_size,
                defaults.batch_size,
                e.batch_size,
            );
            e.queue_depth = pick(
                args.queue_depth,
                own.queue_depth,
                defaults.queue_depth,
                e.queue_depth,
            );
            e.prefill_chunk = pick(
                args.prefill_chunk,
                own.prefill_chunk,
                defaults.prefill_chunk,
                e.prefill_chunk,
            );
            e.step_target_ms = pick(
                args.step_target_ms,
                own.step_target_ms,
                defaults.step_target_ms,
                e.step_target_ms,
            );
            e.cache_cells = args
                .cache_cells
                .or(own.cache_cells)
                .or(defaults.cache_cells);
            e
        };
        let routing = Routing::from_file(&file.routing);
        let mut models = Vec::new();
        let from_flags = !args.models.is_empty() || !args.upstreams.is_empty();
        if from_flags {
            for spec in &args.models {
                let (name, path) = spec
                    .split_once('=')
                    .filter(|(n, p)| !n.is_empty() && !p.is_empty())
                    .ok_or_else(|| ConfigError::ModelSpec(spec.clone()))?;
                models.push(ModelConfig::local(
                    name,
                    engine_for(Path::new(path), &FileEngine::default()),
                ));
            }
            for spec in &args.upstreams {
                let (name, d) = parse_upstream_flag(spec)?;
                let dep = DeploymentConfig::upstream(&name, 0, &d, &routing)?;
                models.push(ModelConfig {
                    name,
                    aliases: vec![],
                    fallbacks: vec![],
                    deployments: vec![dep],
                });
            }
        } else if !file.models.is_empty() {
            for m in &file.models {
                let mut deployments = Vec::new();
                if let Some(path) = &m.path {
                    deployments.push(DeploymentConfig::Local {
                        name: m.name.clone(),
                        engine: engine_for(path, &m.engine),
                        weight: 1,
                    });
                }
                for (i, d) in m.deployments.iter().enumerate() {
                    deployments.push(match DeploymentConfig::local_parts(d) {
                        Some((name, path, weight)) => DeploymentConfig::Local {
                            name: name.unwrap_or_else(|| format!("{}#{i}", m.name)),
                            engine: engine_for(&path, &m.engine),
                            weight,
                        },
                        None => DeploymentConfig::upstream(&m.name, i, d, &routing)?,
                    });
                }
                if deployments.is_empty() {
                    return Err(ConfigError::Invalid(format!(
                        "model `{}` needs a `path` or `deployments`",
                        m.name
                    )));
                }
                models.push(ModelConfig {
                    name: m.name.clone(),
                    aliases: m.aliases.clone(),
                    fallbacks: m.fallbacks.clone(),
                    deployments,
                });
            }
        } else {
            models.push(ModelConfig::local(
                DEFAULT_MODEL_NAME,
                engine_for(&models_dir.join(DEFAULT_MODEL_FILE), &FileEngine::default()),
            ));
        }
        let names: Vec<&String> = models
            .iter()
            .flat_map(|m| std::iter::once(&m.name).chain(&m.aliases))
            .collect();
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(ConfigError::DuplicateModel(n.to_string()));
            }
        }
        for m in &models {
            if let Some(f) = m
                .fallbacks
                .iter()
                .find(|f| !names.contains(f) || **f == m.name)
            {
                return Err(ConfigError::Invalid(format!(
                    "model `{}`: fallback `{f}` is not another served model",
                    m.name
                )));
            }
        }
        for (m, e) in models.iter().flat_map(|m| m.engines().map(move |e| (m, e))) {
            if e.slots == 0 || e.batch_size == 0 || e.queue_depth == 0 || e.ctx_per_slot < 16 {
                return Err(ConfigError::Invalid(format!(
                    "model `{}`: slots, batch_size and queue_depth must be positive and ctx_size at least 16",
                    m.name
                )));
            }
            if !e.path.is_file() {
                let hint = if m.name == DEFAULT_MODEL_NAME && !from_flags && file.models.is_empty()
                {
                    "; run `make model` (or scripts/fetch-model.sh) to fetch the default model"
                        .to_string()
                } else {
                    String::new()
                };
                return Err(ConfigError::MissingModel {
                    name: m.name.clone(),
                    path: e.path.display().to_string(),
                    hint,
                });
            }
        }
        let weights = file.scheduler.weights;
        if let Some((t, _)) = weights.iter().find(|(_, w)| **w == 0) {
            return Err(ConfigError::Invalid(format!(
                "scheduler weight of `{t}` must be at least 1"
            )));
        }
        let scheduling = Scheduling {
            queue_timeout: Duration::from_secs(
                args.queue_timeout
                    .or(file.scheduler.queue_timeout)
                    .unwrap_or(DEFAULT_QUEUE_TIMEOUT_SECS),
            ),
            default_weight: file.scheduler.default_weight.unwrap_or(1).max(1),
            weights,
        };
        let t = &file.tenancy;
        let admin_token = args
            .admin_token
            .clone()
            .map(|s| s.0)
            .or(t.admin_token.clone())
            .filter(|s| !s.is_empty());
        if admin_token.as_ref().is_some_and(|s| s.len() < 16) {
            return Err(ConfigError::Invalid(
                "the admin token must be at least 16 characters".into(),
            ));
        }
        let tenancy = TenancySettings {
            database_url: args.db.url(Some(t)),
            admin_token: admin_token.map(Secret),
            allow_open: args.allow_open || t.allow_open.unwrap_or(false),
            default_completion_reserve: args
                .default_completion_reserve
                .or(t.default_completion_reserve)
                .unwrap_or(1024),
        };
        Ok(Self {
            host,
            port,
            max_body_bytes,
            models,
            scheduling,
            tenancy,
            routing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("aitier-cfg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    #[test]
    fn file_then_flags_win_in_order() {
        let d = tempdir();
        let gguf = write(&d, "m.gguf", "x");
        let cfg = write(
            &d,
            "c.toml",
            &format!("[server]\nport = 9000\nhost = \"0.0.0.0\"\n[engine]\nslots = 2\nstep_target_ms = 80\n[[models]]\nname = \"a\"\npath = \"{}\"\nctx_size = 1024\nstep_target_ms = 30\n", gguf.display()),
        );
        let args = ServeArgs {
            config: Some(cfg),
            port: Some(9100),
            ..Default::default()
        };
        let c = ServeConfig::resolve(&args).expect("valid");
        assert_eq!(c.port, 9100);
        assert_eq!(c.host.to_string(), "0.0.0.0");
        assert_eq!(c.models[0].name, "a");
        let engine = c.models[0].engines().next().expect("local");
        assert_eq!(engine.slots, 2);
        assert_eq!(engine.ctx_per_slot, 1024);
        // The model's own setting wins over [engine].
        assert_eq!(engine.step_target_ms, 30);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let d = tempdir();
        let cfg = write(&d, "c.toml", "[server]\nprot = 1\n");
        let err = ServeConfig::resolve(&ServeArgs {
            config: Some(cfg),
            ..Default::default()
        })
        .expect_err("typo");
        assert!(err.to_string().contains("prot"), "{err}");
    }

    #[test]
    fn bad_model_spec_and_missing_file_are_clear() {
        let args = ServeArgs {
            models: vec!["nopath".into()],
            ..Default::default()
        };
        assert!(matches!(
            ServeConfig::resolve(&args),
            Err(ConfigError::ModelSpec(_))
        ));
        let args = ServeArgs {
            models_dir: Some(tempdir()),
            ..Default::default()
        };
        let err = ServeConfig::resolve(&args).expect_err("missing");
        assert!(err.to_string().contains("make model"), "{err}");
    }
}
