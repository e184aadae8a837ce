use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use aitier_server::cli::{KeysCmd, ProbeCmd, TenantsCmd, UsageCmd};
use aitier_server::config::{LogFormat, ServeArgs, ServeConfig};

/// aitier: one OpenAI-compatible AI tier for many apps.
#[derive(Parser)]
#[command(name = "aitier", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the OpenAI-compatible API.
    Serve(Box<ServeArgs>),
    /// Manage tenants.
    #[command(subcommand)]
    Tenants(TenantsCmd),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Report usage from the ledger.
    Usage(UsageCmd),
    /// Ask a running server's /health (or another path) and exit 0 if it
    /// answers 2xx: a container health check without curl in the image.
    Probe(ProbeCmd),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The admin commands print results on stdout; keep their log quiet.
    let (default_filter, format) = match &cli.command {
        Command::Serve(args) => ("info,llama-cpp-2=warn", args.log_format),
        _ => ("warn", LogFormat::Text),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().with_current_span(true).init(),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => {
            let cfg = ServeConfig::resolve(&args)?;
            rt.block_on(aitier_server::serve::run(cfg, *args))
        }
        Command::Tenants(cmd) => rt.block_on(aitier_server::cli::tenants(cmd)),
        Command::Keys(cmd) => rt.block_on(aitier_server::cli::keys(cmd)),
        Command::Usage(cmd) => rt.block_on(aitier_server::cli::usage(cmd)),
        Command::Probe(cmd) => rt.block_on(aitier_server::cli::probe(cmd)),
    }
}
