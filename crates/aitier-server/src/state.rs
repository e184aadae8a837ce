//! What every handler shares.
use std::sync::Arc;
use std::time::Duration;

use aitier_core::{ModelRegistry, Secret};
use aitier_tenancy::Tenancy;

use crate::catalog::Catalog;
use crate::console::session::Sessions;
use crate::drain::Drain;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<ModelRegistry>,
    /// Reported as each model's `created`.
    pub started_at: u64,
    /// The served models' configuration, and the settings a reload changes.
    pub catalog: Arc<Catalog>,
    pub tenancy: Arc<Tenancy>,
    pub admin_token: Option<Secret>,
    pub metrics: Arc<Metrics>,
    /// A stream that sends nothing for this long sends an SSE comment.
    pub keep_alive: Duration,
    pub drain: Drain,
    /// Signs the console's session cookies.
    pub sessions: Sessions,
    /// The cookies are sent over TLS only (when the server has it).
    pub console_secure_cookie: bool,
}
