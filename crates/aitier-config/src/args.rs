//! The command line of `aitier serve` (with `AITIER_*` environment
//! variables folded in by clap), and the database options the admin
//! commands share.
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use aitier_core::Secret;

use super::engine::EngineSettings;
use super::file::FileTenancy;

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// For people.
    #[default]
    Text,
    /// One JSON object per line, with the request's span fields
    /// (request id, tenant, model), for log collectors.
    Json,
}

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
    /// Serve a GGUF embedding model under a name: NAME=PATH. Repeatable;
    /// with --model, replaces the models of the config file too.
    #[arg(long = "embedding-model", value_name = "NAME=PATH")]
    pub embedding_models: Vec<String>,
    /// Serve an OpenAI-compatible upstream under a name:
    /// NAME=BASE_URL[#UPSTREAM_MODEL]. Repeatable; with --model, adds to it.
    #[arg(long = "upstream", value_name = "NAME=URL")]
    pub upstreams: Vec<String>,
    /// A chat template file for a local model: NAME=PATH (Jinja, Hugging
    /// Face conventions), used instead of the GGUF's own. Repeatable.
    #[arg(long = "chat-template-file", value_name = "NAME=PATH")]
    pub chat_template_files: Vec<String>,
    /// Where the embedded default models live.
    #[arg(long, env = "AITIER_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    #[command(flatten)]
    pub engine: EngineSettings,
    /// Seconds a request may wait for a slot before it fails.
    #[arg(long, env = "AITIER_QUEUE_TIMEOUT")]
    pub queue_timeout: Option<u64>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "AITIER_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Seconds a stream may send nothing before a keep-alive comment.
    #[arg(long, env = "AITIER_KEEP_ALIVE_SECS")]
    pub keep_alive_secs: Option<u64>,
    /// After SIGTERM/SIGINT, how long new connections are still accepted
    /// while `/ready` answers 503 (e.g. `5s`, `500ms`; a bare number is
    /// seconds).
    #[arg(long, env = "AITIER_DRAIN_GRACE", value_parser = parse_duration)]
    pub drain_grace: Option<Duration>,
    /// After SIGTERM/SIGINT, how long requests in flight may run before
    /// they are cut (counted from the signal, so the grace is part of it).
    #[arg(long, env = "AITIER_DRAIN_TIMEOUT", value_parser = parse_duration)]
    pub drain_timeout: Option<Duration>,
    /// How long a client has to send a request's headers, and then its
    /// body; past it the connection is closed (a body gets 408 first). An
    /// idle keep-alive connection is closed after it too.
    #[arg(long, env = "AITIER_READ_TIMEOUT", value_parser = parse_duration)]
    pub read_timeout: Option<Duration>,
    /// How long a client may take no byte of an answer the server is
    /// sending; past it the connection is closed and its request cancelled
    /// (a stream's sequence stops and frees its cache).
    #[arg(long, env = "AITIER_WRITE_TIMEOUT", value_parser = parse_duration)]
    pub write_timeout: Option<Duration>,
    /// Export spans over OTLP (HTTP, protobuf) to this URL, e.g.
    /// `http://collector:4318/v1/traces`; off without it.
    #[arg(long, env = "AITIER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// `text` or `json` (one object per line).
    #[arg(long, env = "AITIER_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
    /// Where Prometheus scrapes `/metrics` (`ADDR:PORT`; port 0 picks a
    /// free one, printed on stdout), or `off`.
    #[arg(long, env = "AITIER_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Serve `/metrics` on the API listener too.
    #[arg(long, env = "AITIER_METRICS_ON_API")]
    pub metrics_on_api: bool,
    /// Do not serve the web console (`/console/`).
    #[arg(long, env = "AITIER_NO_CONSOLE")]
    pub no_console: bool,
    /// A web origin whose pages may call the API from a browser (CORS),
    /// e.g. `https://app.example.com`, or `*` for any. Repeatable; none
    /// by default, so browsers refuse cross-origin calls.
    #[arg(
        long = "cors-origin",
        env = "AITIER_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "AITIER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "AITIER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
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
    /// Requests running plus usage rows not yet written, beyond which new
    /// requests get 503 (the database is not keeping up).
    #[arg(long, env = "AITIER_LEDGER_QUEUE")]
    pub ledger_queue: Option<usize>,
    /// Send the end of each answer only once its usage row is written, so
    /// that a crash loses no row of an answer a client received (the
    /// default writes rows a moment later, in batches).
    #[arg(long, env = "AITIER_LEDGER_SYNC")]
    pub ledger_sync: bool,
    /// Keep rate limits and concurrency places in this Redis
    /// (`redis://[:password@]host:port[/db]`), shared by every replica
    /// that names it; in this process when unset.
    #[arg(long, env = "AITIER_REDIS_URL")]
    pub redis_url: Option<String>,
    /// While Redis cannot be reached, let requests through without
    /// checking their limits (counted in `aitier_limits_unchecked_total`)
    /// instead of refusing them with 503.
    #[arg(long, env = "AITIER_LIMITS_FAIL_OPEN")]
    pub limits_fail_open: bool,
    /// How long what a replica holds for its running requests (budget
    /// reservations, and concurrency places in Redis) outlives it: it
    /// renews them every third of this while they run; 30 s by default.
    #[arg(long, env = "AITIER_HOLD_LEASE", value_parser = parse_duration)]
    pub hold_lease: Option<Duration>,
}

/// `30s`, `1m 30s`, `500ms`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("`{s}`: {e} (write e.g. 30s, 500ms, 2m)"))
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
    pub fn url(&self, file: &FileTenancy) -> String {
        if let Some(u) = self
            .database_url
            .clone()
            .or_else(|| file.database_url.clone())
        {
            return u;
        }
        let dir = self
            .data_dir
            .clone()
            .or_else(|| file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("data"));
        format!("sqlite://{}", dir.join("aitier.db").display())
    }
}
