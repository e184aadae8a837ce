//! What every handler shares.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aitier_core::{ModelRegistry, Secret};
use aitier_tenancy::Tenancy;

use crate::config::Scheduling;
use crate::drain::Drain;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<ModelRegistry>,
    /// Reported as each model's `created`.
    pub started_at: u64,
    pub scheduling: Arc<Scheduling>,
    pub tenancy: Arc<Tenancy>,
    pub admin_token: Option<Secret>,
    /// Model → the models to try when it is unavailable.
    pub fallbacks: Arc<HashMap<String, Vec<String>>>,
    pub metrics: Arc<Metrics>,
    /// A stream that sends nothing for this long sends an SSE comment.
    pub keep_alive: Duration,
    pub drain: Drain,
}
