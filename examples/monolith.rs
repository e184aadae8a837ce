//! An app that embeds the tier: its own route (`POST /ask`) is answered
//! by the tier in this process, with no network hop. The tier's own API is
//! served too, under the same listener, for anything else that wants it.
//!
//! `cargo run --release -p aitier-client --example monolith [-- aitier.toml]`
//! (the configuration file `aitier serve` takes; without one, the embedded
//! default models), then
//! `curl -s localhost:3000/ask -H 'content-type: application/json' -d '{"question":"What is Rust?"}'`.
mod ask_app;

use std::sync::Arc;
use std::time::Duration;

use aitier_client::{Client, Tier};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tier = Arc::new(match std::env::args().nth(1) {
        Some(config) => Tier::from_config(config).await?,
        None => Tier::from_args(Default::default()).await?,
    });
    tier.ready(Duration::from_secs(300)).await?;
    let client = Client::in_process(
        tier.clone(),
        std::env::var("AITIER_API_KEY").ok().as_deref(),
    );
    let app = ask_app::router(client).merge(tier.router());
    ask_app::serve(app).await?;
    // Usage rows still queued are written before the process ends.
    tier.close().await;
    Ok(())
}
