//! The aitier HTTP service: the OpenAI-compatible API over axum, its
//! configuration, request ids and error mapping, and the serve loop. The
//! `aitier` binary (`src/main.rs`) only parses the command line and calls in.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod extract;
pub mod request_id;
pub mod respond;
pub mod routes;
pub mod routing;
pub mod serve;
pub mod start;
pub mod usage_report;

/// Reported as `system_fingerprint`.
pub const FINGERPRINT: &str = concat!("aitier-", env!("CARGO_PKG_VERSION"));
