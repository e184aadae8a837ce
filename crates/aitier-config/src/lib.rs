//! Configuration: defaults, then a TOML file, then `AITIER_*` environment,
//! then command-line flags (clap folds the last two together). Raw structs
//! reject unknown keys; `ServeConfig` is the validated result, resolved in
//! steps: the server, the models, scheduling, tenancy.
mod args;
mod engine;
mod error;
mod file;
mod routing;
mod server;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use aitier_core::Secret;
use aitier_engine::EngineConfig;

pub use args::{DatabaseArgs, LogFormat, ServeArgs};
pub use engine::EngineSettings;
pub use error::ConfigError;
pub use routing::{DeploymentConfig, Routing};
pub use server::{DrainTimes, TlsFiles};

use file::{read_file, FileConfig, FileModel, FileModelKind};
use routing::parse_upstream_flag;
use server::server;

pub const DEFAULT_MODEL_NAME: &str = "smollm2-135m-instruct";
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const DEFAULT_EMBEDDING_MODEL_NAME: &str = "all-minilm-l6-v2";
pub const DEFAULT_EMBEDDING_MODEL_FILE: &str = "all-MiniLM-L6-v2.F32.gguf";
pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
pub const DEFAULT_QUEUE_TIMEOUT_SECS: u64 = 600;
pub const DEFAULT_KEEP_ALIVE_SECS: u64 = 15;
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9090";

/// Tenancy settings, validated.
#[derive(Clone)]
pub struct TenancySettings {
    pub database_url: String,
    pub admin_token: Option<Secret>,
    pub allow_open: bool,
    pub default_completion_reserve: u32,
    pub ledger_queue: usize,
    pub ledger_sync: bool,
    /// Where the limits live when shared by several replicas.
    pub redis_url: Option<String>,
    pub limits_fail_open: bool,
    /// How long a replica's budget holds and concurrency places outlive it.
    pub hold_lease: Duration,
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
            .field("ledger_queue", &self.ledger_queue)
            .field("ledger_sync", &self.ledger_sync)
            .field(
                "redis_url",
                &self
                    .redis_url
                    .as_deref()
                    .map(aitier_tenancy::store::redact_url),
            )
            .field("limits_fail_open", &self.limits_fail_open)
            .field("hold_lease", &self.hold_lease)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
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
    pub keep_alive: Duration,
    pub drain: DrainTimes,
    /// How long a client has to send a request's headers, then its body.
    pub read_timeout: Duration,
    /// How long a client may take no byte of an answer being sent.
    pub write_timeout: Duration,
    /// The metrics listener's address; `None` when off.
    pub metrics_addr: Option<SocketAddr>,
    pub metrics_on_api: bool,
    /// Serve the web console at `/console/`.
    pub console: bool,
    /// Web origins allowed to call the API from a browser; `*` for any.
    pub cors_origins: Vec<String>,
    /// HTTPS on the API listener when set.
    pub tls: Option<TlsFiles>,
    /// Where spans are exported; none when `None`.
    pub otlp_endpoint: Option<String>,
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

/// The database URL the admin commands use: flags and environment, then
/// the `[tenancy]` table of the config file.
pub fn database_url(db: &DatabaseArgs, config: Option<&Path>) -> Result<String, ConfigError> {
    let file = read_file(config)?;
    Ok(db.url(&file.tenancy))
}

/// The models of `--model` and `--upstream`; their engines take the
/// flags' settings over the file's `[engine]`.
/// A `NAME=PATH` flag's two halves, neither empty.
fn name_and_path(spec: &str) -> Option<(&str, &str)> {
    spec.split_once('=')
        .filter(|(n, p)| !n.is_empty() && !p.is_empty())
}

fn models_from_flags(
    args: &ServeArgs,
    file: &FileConfig,
    routing: &Routing,
) -> Result<Vec<ModelConfig>, ConfigError> {
    let settings = args.engine.or(&file.engine);
    let mut models = Vec::new();
    for spec in &args.models {
        let (name, path) =
            name_and_path(spec).ok_or_else(|| ConfigError::ModelSpec(spec.clone()))?;
        models.push(ModelConfig::local(name, settings.engine(Path::new(path))));
    }
    for spec in &args.embedding_models {
        let (name, path) =
            name_and_path(spec).ok_or_else(|| ConfigError::ModelSpec(spec.clone()))?;
        let engine = settings.embedding_engine(Path::new(path), false);
        models.push(ModelConfig::local(name, engine));
    }
    for spec in &args.upstreams {
        let (name, d) = parse_upstream_flag(spec)?;
        let dep = DeploymentConfig::upstream(&name, 0, &d, routing)?;
        models.push(ModelConfig {
            name,
            aliases: vec![],
            fallbacks: vec![],
            deployments: vec![dep],
        });
    }
    Ok(models)
}

/// One `[[models]]` entry; its engines take the flags' settings, then its
/// own, then `[engine]`'s.
fn model_from_file(
    m: &FileModel,
    args: &ServeArgs,
    file: &FileConfig,
    routing: &Routing,
) -> Result<ModelConfig, ConfigError> {
    let settings = args.engine.or(&m.engine).or(&file.engine);
    let engine = |path: &Path| {
        let mut e = match m.kind {
            FileModelKind::Chat => settings.engine(path),
            FileModelKind::Embedding => settings.embedding_engine(path, m.matryoshka),
        };
        e.background = m.background.unwrap_or(e.background);
        e
    };
    if m.matryoshka && m.kind != FileModelKind::Embedding {
        return Err(ConfigError::Invalid(format!(
            "model `{}`: `matryoshka` is for embedding models (kind = \"embedding\")",
            m.name
        )));
    }
    let mut deployments = Vec::new();
    if let Some(path) = &m.path {
        deployments.push(DeploymentConfig::Local {
            name: m.name.clone(),
            engine: engine(path),
            weight: 1,
        });
    }
    for (i, d) in m.deployments.iter().enumerate() {
        deployments.push(match DeploymentConfig::local_parts(d) {
            Some((name, path, weight)) => DeploymentConfig::Local {
                name: name.unwrap_or_else(|| format!("{}#{i}", m.name)),
                engine: engine(&path),
                weight,
            },
            None => DeploymentConfig::upstream(&m.name, i, d, routing)?,
        });
    }
    if deployments.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "model `{}` needs a `path` or `deployments`",
            m.name
        )));
    }
    if let Some(file) = &m.chat_template_file {
        for d in &mut deployments {
            if let DeploymentConfig::Local { engine, .. } = d {
                engine.chat_template_file = Some(file.clone());
            }
        }
    }
    Ok(ModelConfig {
        name: m.name.clone(),
        aliases: m.aliases.clone(),
        fallbacks: m.fallbacks.clone(),
        deployments,
    })
}

/// Whether the command line names models (which replace the file's).
fn flags_name_models(args: &ServeArgs) -> bool {
    !args.models.is_empty() || !args.embedding_models.is_empty() || !args.upstreams.is_empty()
}

/// The flags' models, else the file's, else the embedded defaults (a chat
/// model and an embedding model).
fn models(
    args: &ServeArgs,
    file: &FileConfig,
    routing: &Routing,
) -> Result<Vec<ModelConfig>, ConfigError> {
    if flags_name_models(args) {
        return models_from_flags(args, file, routing);
    }
    if !file.models.is_empty() {
        return file
            .models
            .iter()
            .map(|m| model_from_file(m, args, file, routing))
            .collect();
    }
    let dir = args
        .models_dir
        .clone()
        .or(file.server.models_dir.clone())
        .unwrap_or_else(|| PathBuf::from("models"));
    let settings = args.engine.or(&file.engine);
    Ok(vec![
        ModelConfig::local(
            DEFAULT_MODEL_NAME,
            settings.engine(&dir.join(DEFAULT_MODEL_FILE)),
        ),
        ModelConfig::local(
            DEFAULT_EMBEDDING_MODEL_NAME,
            settings.embedding_engine(&dir.join(DEFAULT_EMBEDDING_MODEL_FILE), false),
        ),
    ])
}

/// `--chat-template-file NAME=PATH` onto the local engines of model NAME.
fn template_files(args: &ServeArgs, models: &mut [ModelConfig]) -> Result<(), ConfigError> {
    for spec in &args.chat_template_files {
        let (name, path) = name_and_path(spec).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "--chat-template-file takes NAME=PATH, got `{spec}`"
            ))
        })?;
        let model = models.iter_mut().find(|m| m.name == name).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "--chat-template-file names `{name}`, which is not served"
            ))
        })?;
        let mut local = false;
        for d in &mut model.deployments {
            if let DeploymentConfig::Local { engine, .. } = d {
                engine.chat_template_file = Some(PathBuf::from(path));
                local = true;
            }
        }
        if !local {
            return Err(ConfigError::Invalid(format!(
                "--chat-template-file names `{name}`, which has no local engine"
            )));
        }
    }
    Ok(())
}

/// Names are unique, fallbacks name other served models, engines are
/// sane and their files exist. `default_model` says the models are the
/// embedded default, whose missing file has a remedy to suggest.
fn check_models(models: &[ModelConfig], default_model: bool) -> Result<(), ConfigError> {
    let names: Vec<&String> = models
        .iter()
        .flat_map(|m| std::iter::once(&m.name).chain(&m.aliases))
        .collect();
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(ConfigError::DuplicateModel(n.to_string()));
        }
    }
    for m in models {
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
        e.validate()
            .map_err(|why| ConfigError::Invalid(format!("model `{}`: {why}", m.name)))?;
        if let Some(t) = e.chat_template_file.as_ref().filter(|t| !t.is_file()) {
            return Err(ConfigError::Invalid(format!(
                "model `{}`: chat template file {} not found",
                m.name,
                t.display()
            )));
        }
        if !e.path.is_file() {
            let hint = match m.name.as_str() {
                DEFAULT_MODEL_NAME if default_model => {
                    "; run `make model` (or scripts/fetch-model.sh) to fetch the default model"
                }
                DEFAULT_EMBEDDING_MODEL_NAME if default_model => {
                    "; run `make model` (or scripts/fetch-model.sh minilm) to fetch the default embedding model"
                }
                _ => "",
            };
            return Err(ConfigError::MissingModel {
                name: m.name.clone(),
                path: e.path.display().to_string(),
                hint: hint.to_string(),
            });
        }
    }
    Ok(())
}

fn scheduling(args: &ServeArgs, file: &mut FileConfig) -> Result<Scheduling, ConfigError> {
    let weights = std::mem::take(&mut file.scheduler.weights);
    if let Some((t, _)) = weights.iter().find(|(_, w)| **w == 0) {
        return Err(ConfigError::Invalid(format!(
            "scheduler weight of `{t}` must be at least 1"
        )));
    }
    Ok(Scheduling {
        queue_timeout: Duration::from_secs(
            args.queue_timeout
                .or(file.scheduler.queue_timeout)
                .unwrap_or(DEFAULT_QUEUE_TIMEOUT_SECS),
        ),
        default_weight: file.scheduler.default_weight.unwrap_or(1).max(1),
        weights,
    })
}

fn tenancy(args: &ServeArgs, file: &FileConfig) -> Result<TenancySettings, ConfigError> {
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
    let ledger_queue = args
        .ledger_queue
        .or(t.ledger_queue)
        .unwrap_or(aitier_tenancy::ledger::DEFAULT_CAPACITY);
    if ledger_queue == 0 {
        return Err(ConfigError::Invalid(
            "ledger_queue must be at least 1".into(),
        ));
    }
    let hold_lease = match (args.hold_lease, t.hold_lease.as_deref()) {
        (Some(d), _) => d,
        (None, Some(text)) => args::parse_duration(text)
            .map_err(|e| ConfigError::Invalid(format!("hold_lease: {e}")))?,
        (None, None) => Duration::from_secs(30),
    };
    if hold_lease < Duration::from_millis(300) {
        return Err(ConfigError::Invalid(
            "hold_lease must be at least 300ms (it is renewed every third of it)".into(),
        ));
    }
    Ok(TenancySettings {
        database_url: args.db.url(t),
        admin_token: admin_token.map(Secret),
        allow_open: args.allow_open || t.allow_open.unwrap_or(false),
        default_completion_reserve: args
            .default_completion_reserve
            .or(t.default_completion_reserve)
            .unwrap_or(1024),
        ledger_queue,
        ledger_sync: args.ledger_sync || t.ledger_sync.unwrap_or(false),
        redis_url: args.redis_url.clone().or_else(|| t.redis_url.clone()),
        limits_fail_open: args.limits_fail_open || t.limits_fail_open.unwrap_or(false),
        hold_lease,
    })
}

impl ServeConfig {
    pub fn resolve(args: &ServeArgs) -> Result<Self, ConfigError> {
        Self::resolve_file(args, read_file(args.config.as_deref())?)
    }

    /// Resolves `args` with `text` as the configuration file's contents.
    pub fn from_toml(args: &ServeArgs, text: &str) -> Result<Self, ConfigError> {
        Self::resolve_file(args, file::parse(text, "the configuration")?)
    }

    fn resolve_file(args: &ServeArgs, mut file: FileConfig) -> Result<Self, ConfigError> {
        let server = server(args, &file)?;
        let routing = Routing::from_file(&file.routing);
        let mut models = models(args, &file, &routing)?;
        template_files(args, &mut models)?;
        let default_model = !flags_name_models(args) && file.models.is_empty();
        check_models(&models, default_model)?;
        Ok(Self {
            host: server.host,
            port: server.port,
            max_body_bytes: server.max_body_bytes,
            keep_alive: server.keep_alive,
            drain: server.drain,
            read_timeout: server.read_timeout,
            write_timeout: server.write_timeout,
            metrics_addr: server.metrics_addr,
            metrics_on_api: server.metrics_on_api,
            console: server.console,
            cors_origins: server.cors_origins,
            tls: server.tls,
            otlp_endpoint: args
                .otlp_endpoint
                .clone()
                .or(file.server.otlp_endpoint.clone())
                .filter(|e| !e.is_empty()),
            models,
            scheduling: scheduling(args, &mut file)?,
            tenancy: tenancy(args, &file)?,
            routing,
        })
    }
}

#[cfg(test)]
mod tests;
