//! The admin commands: the same operations as the admin API, run directly
//! against the database (`aitier tenants|keys|usage ...`); and `aitier
//! probe`, a health check for container runtimes.
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};

use aitier_tenancy::limits::BudgetPeriod;
use aitier_tenancy::{Limits, SqlStore, Store, TenantPatch};

use crate::config::{database_url, DatabaseArgs};
use crate::usage_report::{render_table, to_csv, to_table, Format, UsageParams};

#[derive(Debug, Args)]
pub struct DbOpts {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// TOML configuration file whose `[tenancy]` names the database.
    #[arg(long, env = "AITIER_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Limits for a new tenant or key; omitted means no limit.
#[derive(Debug, Default, Args)]
pub struct LimitArgs {
    /// Models it may use (comma-separated); default: all.
    #[arg(long, value_delimiter = ',')]
    pub models: Option<Vec<String>>,
    /// Requests per minute.
    #[arg(long)]
    pub rpm: Option<u64>,
    /// Tokens (prompt + completion) per minute.
    #[arg(long)]
    pub tpm: Option<u64>,
    /// Requests running at once.
    #[arg(long)]
    pub max_concurrent: Option<u64>,
    /// Tokens per budget period.
    #[arg(long)]
    pub budget_tokens: Option<u64>,
    /// `day` or `month` (default month).
    #[arg(long, value_parser = parse_period)]
    pub budget_period: Option<BudgetPeriod>,
    /// Scheduler weight under contention.
    #[arg(long)]
    pub weight: Option<u32>,
}

fn parse_period(s: &str) -> Result<BudgetPeriod, String> {
    BudgetPeriod::parse(s).ok_or_else(|| format!("`{s}`: use day or month"))
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            models: self.models.clone(),
            rpm: self.rpm,
            tpm: self.tpm,
            max_concurrent: self.max_concurrent,
            budget_tokens: self.budget_tokens,
            budget_period: self.budget_period,
            weight: self.weight,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TenantsCmd {
    /// Create a tenant; prints it as JSON.
    Create {
        name: String,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        opts: DbOpts,
    },
    /// List tenants.
    List {
        #[arg(long, default_value = "table")]
        format: String,
        #[command(flatten)]
        opts: DbOpts,
    },
    /// Change a tenant's name, state or limits (`--clear rpm,tpm` removes limits).
    Update {
        /// Tenant id or name.
        tenant: String,
        #[arg(long)]
        name: Option<String>,
        /// Enable a disabled tenant.
        #[arg(long)]
        enable: bool,
        #[command(flatten)]
        limits: LimitArgs,
        /// Limits to remove: models, rpm, tpm, max_concurrent, budget, weight.
        #[arg(long, value_delimiter = ',')]
        clear: Vec<String>,
        #[command(flatten)]
        opts: DbOpts,
    },
    /// Disable a tenant: its keys stop working at once.
    Disable {
        tenant: String,
        #[command(flatten)]
        opts: DbOpts,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Create a key for a tenant; prints the key, alone on its line, once.
    Create {
        /// Tenant id or name.
        tenant: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        opts: DbOpts,
    },
    /// List keys (never their secrets).
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value = "table")]
        format: String,
        #[command(flatten)]
        opts: DbOpts,
    },
    /// Revoke a key by its public id; takes effect on the next request.
    Revoke {
        id: String,
        #[command(flatten)]
        opts: DbOpts,
    },
}

#[derive(Debug, Args)]
pub struct UsageCmd {
    /// Group by any of tenant, key, model, provider, endpoint, day, hour, status.
    #[arg(long, default_value = crate::usage_report::DEFAULT_GROUP_BY)]
    pub group_by: String,
    /// First UTC day, YYYY-MM-DD.
    #[arg(long)]
    pub from: Option<String>,
    /// Last UTC day, YYYY-MM-DD (inclusive).
    #[arg(long)]
    pub to: Option<String>,
    /// Tenant id or name.
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long)]
    pub key: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    /// Add time-to-first-token and latency percentiles (p50, p90, p99).
    #[arg(long)]
    pub latency: bool,
    /// table, json or csv.
    #[arg(long, default_value = "table")]
    pub format: String,
    #[command(flatten)]
    pub opts: DbOpts,
}

async fn open(opts: &DbOpts) -> anyhow::Result<Arc<dyn Store>> {
    let url = database_url(&opts.db, opts.config.as_deref())?;
    Ok(Arc::new(SqlStore::open(&url).await?))
}

fn json<T: serde::Serialize>(v: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(v)?)
}

fn limits_cell(l: &Limits) -> String {
    let v = serde_json::to_value(l).unwrap_or_default();
    match v.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        _ => "-".into(),
    }
}

pub async fn tenants(cmd: TenantsCmd) -> anyhow::Result<()> {
    match cmd {
        TenantsCmd::Create { name, limits, opts } => {
            let t = open(&opts)
                .await?
                .create_tenant(&name, &limits.limits())
                .await?;
            println!("{}", json(&t)?);
        }
        TenantsCmd::List { format, opts } => {
            let list = open(&opts).await?.list_tenants().await?;
            match Format::parse(Some(&format), Format::Table).map_err(anyhow::Error::msg)? {
                Format::Json => println!("{}", json(&list)?),
                _ => {
                    let head = ["id", "name", "state", "limits"].map(String::from);
                    let body: Vec<Vec<String>> = list
                        .iter()
                        .map(|t| {
                            vec![
                                t.id.clone(),
                                t.name.clone(),
                                if t.disabled { "disabled" } else { "active" }.into(),
                                limits_cell(&t.limits),
                            ]
                        })
                        .collect();
                    print!("{}", render_table(&head, &body));
                }
            }
        }
        TenantsCmd::Update {
            tenant,
            name,
            enable,
            limits,
            clear,
            opts,
        } => {
            let mut patch = TenantPatch {
                name,
                disabled: enable.then_some(false),
                models: limits.models.clone().map(Some),
                rpm: limits.rpm.map(Some),
                tpm: limits.tpm.map(Some),
                max_concurrent: limits.max_concurrent.map(Some),
                budget_tokens: limits.budget_tokens.map(Some),
                budget_period: limits.budget_period.map(Some),
                weight: limits.weight.map(Some),
            };
            for c in &clear {
                match c.as_str() {
                    "models" => patch.models = Some(None),
                    "rpm" => patch.rpm = Some(None),
                    "tpm" => patch.tpm = Some(None),
                    "max_concurrent" => patch.max_concurrent = Some(None),
                    "budget" => {
                        patch.budget_tokens = Some(None);
                        patch.budget_period = Some(None);
                    }
                    "weight" => patch.weight = Some(None),
                    other => anyhow::bail!("cannot clear `{other}`"),
                }
            }
            let t = open(&opts).await?.update_tenant(&tenant, &patch).await?;
            println!("{}", json(&t)?);
        }
        TenantsCmd::Disable { tenant, opts } => {
            let patch = TenantPatch {
                disabled: Some(true),
                ..Default::default()
            };
            let t = open(&opts).await?.update_tenant(&tenant, &patch).await?;
            eprintln!("tenant {} ({}) disabled", t.name, t.id);
        }
    }
    Ok(())
}

pub async fn keys(cmd: KeysCmd) -> anyhow::Result<()> {
    match cmd {
        KeysCmd::Create {
            tenant,
            name,
            limits,
            opts,
        } => {
            let (key, full) = open(&opts)
                .await?
                .create_key(&tenant, name.as_deref(), &limits.limits())
                .await?;
            eprintln!(
                "created key {} for tenant {}; it is shown once, store it now:",
                key.id, key.tenant_id
            );
            println!("{full}");
        }
        KeysCmd::List {
            tenant,
            format,
            opts,
        } => {
            let list = open(&opts).await?.list_keys(tenant.as_deref()).await?;
            match Format::parse(Some(&format), Format::Table).map_err(anyhow::Error::msg)? {
                Format::Json => println!("{}", json(&list)?),
                _ => {
                    let head = ["id", "tenant_id", "name", "state", "limits"].map(String::from);
                    let body: Vec<Vec<String>> = list
                        .iter()
                        .map(|k| {
                            vec![
                                k.id.clone(),
                                k.tenant_id.clone(),
                                k.name.clone().unwrap_or_else(|| "-".into()),
                                if k.revoked_at.is_some() {
                                    "revoked"
                                } else {
                                    "active"
                                }
                                .into(),
                                limits_cell(&k.limits),
                            ]
                        })
                        .collect();
                    print!("{}", render_table(&head, &body));
                }
            }
        }
        KeysCmd::Revoke { id, opts } => {
            let k = open(&opts).await?.revoke_key(&id).await?;
            eprintln!("key {} revoked", k.id);
        }
    }
    Ok(())
}

pub async fn usage(cmd: UsageCmd) -> anyhow::Result<()> {
    let store = open(&cmd.opts).await?;
    let tenant = match &cmd.tenant {
        Some(t) => Some(store.get_tenant(t).await?.id),
        None => None,
    };
    let params = UsageParams {
        group_by: Some(cmd.group_by.clone()),
        from: cmd.from.clone(),
        to: cmd.to.clone(),
        tenant: None,
        key: cmd.key.clone(),
        model: cmd.model.clone(),
        latency: Some(cmd.latency),
        format: None,
    };
    let q = params
        .query(tenant)
        .map_err(|(p, m)| anyhow::anyhow!("--{}: {m}", p.replace('_', "-")))?;
    let rows = store.usage(&q).await?;
    match Format::parse(Some(&cmd.format), Format::Table).map_err(anyhow::Error::msg)? {
        Format::Json => println!("{}", json(&rows)?),
        Format::Csv => print!("{}", to_csv(&q, &rows)),
        Format::Table => print!("{}", to_table(&q, &rows)),
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct ProbeCmd {
    /// The path to ask.
    #[arg(long, default_value = "/health")]
    pub path: String,
    /// The server's port (the same variable `serve` reads).
    #[arg(long, env = "AITIER_PORT", default_value_t = crate::config::DEFAULT_PORT)]
    pub port: u16,
    /// The server's address, from inside its container.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    pub timeout: u64,
    /// Set when the server serves HTTPS (the variable `serve` reads): the
    /// probe then speaks TLS, without checking the certificate, which
    /// names the service rather than the loopback address asked.
    #[arg(long, env = "AITIER_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,
}

pub async fn probe(cmd: ProbeCmd) -> anyhow::Result<()> {
    let scheme = if cmd.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let url = format!("{scheme}://{}:{}{}", cmd.host, cmd.port, cmd.path);
    let resp = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(cmd.timeout))
        .danger_accept_invalid_certs(cmd.tls_cert.is_some())
        .build()?
        .get(&url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    anyhow::ensure!(
        resp.status().is_success(),
        "{url} answered {}",
        resp.status()
    );
    Ok(())
}
