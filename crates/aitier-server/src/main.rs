use clap::{Parser, Subcommand};

use aitier_server::cli::{KeysCmd, ProbeCmd, TenantsCmd, UsageCmd};
use aitier_server::config::{LogFormat, ServeArgs, ServeConfig};
use aitier_server::telemetry;

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
    /// Print the OpenAPI 3.1 document of the API (as `/openapi.json`
    /// serves it).
    Openapi,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The admin commands print results on stdout; keep their log quiet.
    let quiet = || telemetry::init("warn", LogFormat::Text, None);
    match cli.command {
        Command::Serve(args) => {
            let cfg = ServeConfig::resolve(&args)?;
            // Kept until the end: dropping it sends the last spans.
            let _telemetry = telemetry::init(
                "info,llama-cpp-2=warn",
                args.log_format,
                cfg.otlp_endpoint.as_deref(),
            )?;
            rt.block_on(aitier_server::serve::run(cfg, *args))
        }
        Command::Tenants(cmd) => {
            let _t = quiet()?;
            rt.block_on(aitier_server::cli::tenants(cmd))
        }
        Command::Keys(cmd) => {
            let _t = quiet()?;
            rt.block_on(aitier_server::cli::keys(cmd))
        }
        Command::Usage(cmd) => {
            let _t = quiet()?;
            rt.block_on(aitier_server::cli::usage(cmd))
        }
        Command::Probe(cmd) => {
            let _t = quiet()?;
            rt.block_on(aitier_server::cli::probe(cmd))
        }
        Command::Openapi => {
            print!("{}", aitier_server::openapi::json());
            Ok(())
        }
    }
}
