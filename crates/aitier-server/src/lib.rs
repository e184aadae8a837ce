//! The aitier HTTP service: the API front-ends over axum (a generic
//! handler and SSE framing around `aitier_core::frontend`), its
//! configuration, start-up of the models, request ids, the one error
//! mapping, metrics, the admin API and commands, the web console, graceful
//! drain, and the serve loop. The
//! `aitier` binary (`src/main.rs`) only parses the command line and calls in.

pub mod affinity;
pub mod app;
pub mod auth;
pub mod catalog;
pub mod cli;
pub use aitier_config as config;
pub mod connections;
pub mod console;
pub mod deployments;
pub mod drain;
pub mod error;
pub mod extract;
pub mod generation;
pub mod metrics;
pub mod openapi;
pub mod request_id;
pub mod route;
pub mod routes;
pub mod serve;
pub mod sse;
pub mod state;
pub mod telemetry;
pub mod tier;
pub mod tls;
pub mod usage_report;
pub mod write_timeout;
