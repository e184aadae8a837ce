//! Requests by route, status class, model and tenant, counted by a layer
//! around every route. Handlers name the model and the tenant once they
//! know them (`note_model`, `note_tenant`): the request's tracing span
//! gets them too, so logs and metrics name a request alike.
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;

use super::Metrics;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route's pattern (`/v1/models/{*id}`), never the raw path.
    pub http_route: String,
    pub status_class: &'static str,
    pub model: String,
    /// A tenant's name (bounded by the tenant table); empty without a key.
    pub tenant: String,
}

/// What handlers learn about the request they serve.
#[derive(Debug, Default)]
struct Note {
    model: Option<String>,
    tenant: Option<String>,
}

tokio::task_local! {
    static NOTE: Arc<Mutex<Note>>;
    static STARTED: Instant;
}

/// The model a request asked for.
pub fn note_model(model: &str) {
    tracing::Span::current().record("model", model);
    let _ = NOTE.try_with(|n| {
        n.lock().unwrap_or_else(|p| p.into_inner()).model = Some(model.to_string());
    });
}

/// The tenant whose key authenticated the request.
pub fn note_tenant(tenant: &str) {
    tracing::Span::current().record("tenant", tenant);
    let _ = NOTE.try_with(|n| {
        n.lock().unwrap_or_else(|p| p.into_inner()).tenant = Some(tenant.to_string());
    });
}

/// When the request arrived, for latencies measured from it.
pub fn started() -> Instant {
    STARTED.try_with(|s| *s).unwrap_or_else(|_| Instant::now())
}

fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

pub async fn layer(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let note = Arc::new(Mutex::new(Note::default()));
    let resp = NOTE
        .scope(note.clone(), STARTED.scope(Instant::now(), next.run(req)))
        .await;
    let note = std::mem::take(&mut *note.lock().unwrap_or_else(|p| p.into_inner()));
    if route.starts_with("/v1/") {
        metrics
            .api_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    metrics
        .http
        .get_or_create(&HttpLabels {
            http_route: route,
            status_class: status_class(resp.status().as_u16()),
            model: note
                .model
                .map(|m| metrics.model_label(&m))
                .unwrap_or_default(),
            tenant: note.tenant.unwrap_or_default(),
        })
        .inc();
    resp
}
