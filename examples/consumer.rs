//! The same app as `monolith`, calling a separate aitier over HTTP
//! instead of embedding it: only how the client is built differs.
//!
//! Start a tier (`make serve`), then
//! `cargo run --release -p aitier-client --example consumer`
//! (`AITIER_URL`, default `http://127.0.0.1:8080/v1`; `AITIER_API_KEY` if
//! the tier has keys) and ask it as the `monolith` example says.
mod ask_app;

use aitier_client::Client;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("AITIER_URL").unwrap_or_else(|_| "http://127.0.0.1:8080/v1".into());
    let client = Client::http(&url, std::env::var("AITIER_API_KEY").ok().as_deref())?;
    ask_app::serve(ask_app::router(client)).await
}
