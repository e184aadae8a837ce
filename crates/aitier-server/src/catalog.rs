//! The served models, and the settings that may change while serving. The
//! configuration is applied at start and again on reload (SIGHUP, or `POST
//! /admin/v1/reload`): models added, removed or replaced, aliases,
//! fallbacks, upstreams and routing, scheduler weights. A model whose
//! configuration changed keeps serving until its replacement is ready;
//! requests holding the old one finish on it, and it is freed with the
//! last of them. The admin API also unloads and loads models one by one.
//! A configuration that does not resolve changes nothing.
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use aitier_core::ModelRegistry;

use crate::config::{ModelConfig, Routing, Scheduling, ServeArgs, ServeConfig};
use crate::deployments::{build, fallbacks, http_client, Routers};
use crate::error::{ApiError, INVALID};

/// What a reload did.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Loading again with a new configuration; the old one serves until then.
    pub replaced: Vec<String>,
    pub unchanged: Vec<String>,
    /// Settings that changed but only take effect on a restart.
    pub restart_needed: Vec<&'static str>,
}

/// Where a model stands, for the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Loading,
    Loaded,
    Unloaded,
    Failed,
}

/// How a model is served: one local engine, one upstream, or a router
/// over several deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Local,
    Upstream,
    Routed,
}

/// A configured model as it stands now.
pub struct Standing {
    pub name: String,
    pub aliases: Vec<String>,
    pub kind: Kind,
    pub status: Status,
    /// Why it failed to load.
    pub error: Option<String>,
    /// Its router, when it has deployments to choose between.
    pub router: Option<Arc<aitier_upstream::Router>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("no model `{0}` is configured")]
    Unknown(String),
    #[error("the configuration was not applied: {0}")]
    Config(String),
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Unknown(_) => {
                ApiError::new(StatusCode::NOT_FOUND, INVALID, e.to_string())
                    .code("model_not_found")
                    .param("model")
            }
            CatalogError::Config(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, INVALID, e.to_string())
                    .code("invalid_config")
            }
        }
    }
}

/// The settings a reload cannot change, to say so when they differ.
#[derive(PartialEq)]
struct Fixed {
    server: String,
    tenancy: String,
}

impl Fixed {
    fn of(cfg: &ServeConfig) -> Self {
        Self {
            server: format!(
                "{} {} {} {:?} {:?} {:?} {:?} {:?} {} {} {:?} {:?}",
                cfg.host,
                cfg.port,
                cfg.max_body_bytes,
                cfg.keep_alive,
                cfg.drain,
                cfg.read_timeout,
                cfg.write_timeout,
                cfg.metrics_addr,
                cfg.metrics_on_api,
                cfg.console,
                cfg.cors_origins,
                cfg.tls,
            ),
            tenancy: format!(
                "{} {} {} {} {} {}",
                cfg.tenancy.database_url,
                cfg.tenancy
                    .admin_token
                    .as_ref()
                    .map_or("", |s| s.0.as_str()),
                cfg.tenancy.allow_open,
                cfg.tenancy.default_completion_reserve,
                cfg.tenancy.ledger_queue,
                cfg.tenancy.ledger_sync
            ),
        }
    }
}

struct Applied {
    models: Vec<ModelConfig>,
    routing: Routing,
    fixed: Fixed,
    /// The current load of each model: a slower, older load that finishes
    /// after a newer one started is thrown away.
    loads: HashMap<String, u64>,
    next_load: u64,
    unloaded: HashSet<String>,
}

pub struct Catalog {
    registry: Arc<ModelRegistry>,
    routers: Routers,
    client: reqwest::Client,
    /// The command line, read again with the file on each reload.
    args: ServeArgs,
    fallbacks: ArcSwap<HashMap<String, Vec<String>>>,
    scheduling: ArcSwap<Scheduling>,
    state: Mutex<Applied>,
}

fn names(m: &ModelConfig) -> impl Iterator<Item = &String> {
    std::iter::once(&m.name).chain(&m.aliases)
}

impl Catalog {
    /// Declares every model and alias (so `/v1/models` lists them while
    /// they load) and starts loading them.
    pub fn start(
        cfg: &ServeConfig,
        args: ServeArgs,
        registry: Arc<ModelRegistry>,
        routers: Routers,
    ) -> anyhow::Result<Arc<Self>> {
        let catalog = Arc::new(Self {
            registry,
            routers,
            client: http_client()?,
            args,
            fallbacks: ArcSwap::from_pointee(fallbacks(&cfg.models)),
            scheduling: ArcSwap::from_pointee(cfg.scheduling.clone()),
            state: Mutex::new(Applied {
                models: cfg.models.clone(),
                routing: cfg.routing.clone(),
                fixed: Fixed::of(cfg),
                loads: HashMap::new(),
                next_load: 0,
                unloaded: HashSet::new(),
            }),
        });
        let mut st = catalog.lock();
        for m in &cfg.models {
            names(m).for_each(|n| catalog.registry.declare(n));
        }
        for m in &cfg.models {
            catalog.spawn_load(&mut st, m.clone(), false);
        }
        drop(st);
        Ok(catalog)
    }

    fn lock(&self) -> MutexGuard<'_, Applied> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Model or alias → the models to try after it.
    pub fn fallbacks(&self) -> Arc<HashMap<String, Vec<String>>> {
        self.fallbacks.load_full()
    }

    pub fn scheduling(&self) -> Arc<Scheduling> {
        self.scheduling.load_full()
    }

    /// Builds `m` in the background and serves it once ready. With
    /// `keep_serving`, what serves under its names now goes on serving
    /// until then, and goes on if the new one fails.
    fn spawn_load(self: &Arc<Self>, st: &mut Applied, m: ModelConfig, keep_serving: bool) {
        st.next_load += 1;
        let id = st.next_load;
        st.loads.insert(m.name.clone(), id);
        st.unloaded.remove(&m.name);
        if !keep_serving {
            names(&m).for_each(|n| self.registry.set_loading(n));
        }
        let me = self.clone();
        let routing = st.routing.clone();
        tokio::spawn(async move {
            let built = build(&m, me.client.clone(), &routing, &me.routers).await;
            let st = me.lock();
            if st.loads.get(&m.name) != Some(&id) {
                // Replaced, unloaded or removed meanwhile.
                if !st.models.iter().any(|c| c.name == m.name) || st.unloaded.contains(&m.name) {
                    me.forget_router(&m.name);
                }
                return;
            }
            match built {
                Ok(p) => {
                    tracing::info!(model = %m.name, deployments = m.deployments.len(), "model ready");
                    names(&m).for_each(|n| me.registry.set_ready(n, p.clone()));
                }
                Err(why) if keep_serving => tracing::error!(
                    model = %m.name, error = %why,
                    "the model's new configuration failed to load; its running version goes on serving"
                ),
                Err(why) => {
                    tracing::error!(model = %m.name, error = %why, "model failed to load");
                    names(&m).for_each(|n| me.registry.set_failed(n, why.clone()));
                }
            }
        });
    }

    fn forget_router(&self, model: &str) {
        let mut list = self.routers.write().unwrap_or_else(|p| p.into_inner());
        list.retain(|(name, _)| name != model);
    }

    /// Reads the configuration again and applies what changed.
    pub fn reload(self: &Arc<Self>) -> Result<Changes, CatalogError> {
        let cfg = ServeConfig::resolve(&self.args).map_err(|e| {
            tracing::error!(error = %e, "configuration reload refused; the running configuration stays");
            CatalogError::Config(e.to_string())
        })?;
        let mut st = self.lock();
        let mut changes = Changes::default();
        let fixed = Fixed::of(&cfg);
        if fixed.server != st.fixed.server {
            changes.restart_needed.push("server");
        }
        if fixed.tenancy != st.fixed.tenancy {
            changes.restart_needed.push("tenancy");
        }
        let routing_changed = cfg.routing != st.routing;
        st.routing = cfg.routing.clone();
        let old = std::mem::take(&mut st.models);
        for gone in old
            .iter()
            .filter(|o| !cfg.models.iter().any(|m| m.name == o.name))
        {
            names(gone).for_each(|n| self.registry.remove(n));
            st.loads.remove(&gone.name);
            st.unloaded.remove(&gone.name);
            self.forget_router(&gone.name);
            changes.removed.push(gone.name.clone());
        }
        for m in &cfg.models {
            let Some(prev) = old.iter().find(|o| o.name == m.name) else {
                names(m).for_each(|n| self.registry.declare(n));
                self.spawn_load(&mut st, m.clone(), false);
                changes.added.push(m.name.clone());
                continue;
            };
            for a in prev.aliases.iter().filter(|a| !m.aliases.contains(a)) {
                self.registry.remove(a);
            }
            // A lone local file has no router: routing settings do not reach it.
            let routed = !matches!(
                m.deployments.as_slice(),
                [crate::config::DeploymentConfig::Local { .. }]
            );
            let same = prev.deployments == m.deployments && !(routed && routing_changed);
            self.alias_like_name(m);
            if same || st.unloaded.contains(&m.name) {
                changes.unchanged.push(m.name.clone());
            } else {
                self.spawn_load(&mut st, m.clone(), true);
                changes.replaced.push(m.name.clone());
            }
        }
        st.models = cfg.models.clone();
        self.fallbacks.store(Arc::new(fallbacks(&cfg.models)));
        self.scheduling.store(Arc::new(cfg.scheduling.clone()));
        drop(st);
        if !changes.restart_needed.is_empty() {
            tracing::warn!(settings = ?changes.restart_needed, "changed settings that only a restart applies");
        }
        tracing::info!(
            added = ?changes.added, removed = ?changes.removed,
            replaced = ?changes.replaced, unchanged = changes.unchanged.len(),
            "configuration reloaded"
        );
        Ok(changes)
    }

    /// New aliases serve what the model's own name serves now.
    fn alias_like_name(&self, m: &ModelConfig) {
        let provider = self.registry.resolve(&m.name).ok();
        for a in &m.aliases {
            if self.registry.is_ready(a) {
                continue;
            }
            self.registry.declare(a);
            match &provider {
                Some(p) => self.registry.set_ready(a, p.clone()),
                None => self.registry.set_loading(a),
            }
        }
    }

    /// The configured model `id` names (its own name or an alias).
    fn configured(st: &Applied, id: &str) -> Result<ModelConfig, CatalogError> {
        st.models
            .iter()
            .find(|m| names(m).any(|n| n == id))
            .cloned()
            .ok_or_else(|| CatalogError::Unknown(id.to_string()))
    }

    /// Every configured model, in the configuration's order.
    pub fn standings(&self) -> Vec<Standing> {
        let st = self.lock();
        let failures = self.registry.failures();
        let routers = self.routers.read().unwrap_or_else(|p| p.into_inner());
        st.models
            .iter()
            .map(|m| {
                let error = failures
                    .iter()
                    .find(|(n, _)| n == &m.name)
                    .map(|(_, why)| why.clone());
                let status = if st.unloaded.contains(&m.name) {
                    Status::Unloaded
                } else if self.registry.is_ready(&m.name) {
                    Status::Loaded
                } else if error.is_some() {
                    Status::Failed
                } else {
                    Status::Loading
                };
                let kind = match m.deployments.as_slice() {
                    [crate::config::DeploymentConfig::Local { .. }] => Kind::Local,
                    [crate::config::DeploymentConfig::Upstream { .. }] => Kind::Upstream,
                    _ => Kind::Routed,
                };
                Standing {
                    name: m.name.clone(),
                    aliases: m.aliases.clone(),
                    kind,
                    status,
                    error,
                    router: routers
                        .iter()
                        .find(|(n, _)| n == &m.name)
                        .map(|(_, r)| r.clone()),
                }
            })
            .collect()
    }

    /// Stops serving a model: requests running on it finish, then its
    /// memory is freed. It stays listed, answering 503 `model_unloaded`.
    pub fn unload(&self, id: &str) -> Result<(String, Status), CatalogError> {
        let mut st = self.lock();
        let m = Self::configured(&st, id)?;
        st.loads.remove(&m.name);
        st.unloaded.insert(m.name.clone());
        names(&m).for_each(|n| self.registry.set_unloaded(n));
        self.forget_router(&m.name);
        tracing::info!(model = %m.name, "model unloaded");
        Ok((m.name, Status::Unloaded))
    }

    /// Loads a model that was unloaded or failed; a model loaded or
    /// loading is left as it is.
    pub fn load(self: &Arc<Self>, id: &str) -> Result<(String, Status), CatalogError> {
        let mut st = self.lock();
        let m = Self::configured(&st, id)?;
        if self.registry.is_ready(&m.name) {
            return Ok((m.name, Status::Loaded));
        }
        let failed = self.registry.failures().iter().any(|(n, _)| n == &m.name);
        if st.unloaded.contains(&m.name) || failed {
            self.spawn_load(&mut st, m.clone(), false);
            tracing::info!(model = %m.name, "loading model");
        }
        Ok((m.name, Status::Loading))
    }
}
