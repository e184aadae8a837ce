//! The axum application: routes and the layers around them.
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer, ExposeHeaders};

use crate::config::ServeConfig;
use crate::error::ApiError;
use crate::route::Route;
use crate::routes::{
    admin, embeddings, generate, health, messages, models, responses, tokenize, usage,
};
use crate::state::AppState;

/// The API, behind a tenant's key.
pub fn api_routes() -> Vec<Route> {
    use Method as M;
    vec![
        Route::new(M::POST, "/v1/chat/completions", generate::chat),
        Route::new(M::POST, "/v1/completions", generate::completions),
        Route::new(M::POST, "/v1/embeddings", embeddings::create),
        Route::new(M::POST, "/v1/responses", responses::create),
        Route::new(M::GET, "/v1/responses/{id}", responses::get),
        Route::new(M::DELETE, "/v1/responses/{id}", responses::delete),
        Route::new(
            M::GET,
            "/v1/responses/{id}/input_items",
            responses::input_items,
        ),
        Route::new(M::POST, messages::PATH, generate::messages),
        Route::new(M::POST, "/v1/messages/count_tokens", messages::count_tokens),
        Route::new(M::GET, "/v1/models", models::list),
        // Model names may hold slashes.
        Route::new(M::GET, "/v1/models/{*id}", models::get),
        Route::new(M::GET, "/v1/usage", usage::own),
        Route::new(M::POST, "/tokenize", tokenize::tokenize),
        Route::new(M::POST, "/detokenize", tokenize::detokenize),
    ]
}

/// Probes and the OpenAPI document, open to anyone.
pub fn public_routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/health", health::health),
        Route::new(Method::GET, "/ready", health::ready),
        Route::new(Method::GET, "/openapi.json", crate::openapi::serve),
    ]
}

/// Every route the listener serves (`/metrics` aside: it has a listener of
/// its own unless `--metrics-on-api`).
pub fn all_routes() -> Vec<Route> {
    let mut all = api_routes();
    all.extend(admin::routes());
    all.extend(public_routes());
    all
}

fn mount(routes: Vec<Route>) -> Router<AppState> {
    routes
        .into_iter()
        .fold(Router::new(), |r, route| r.route(route.path, route.handler))
}

/// A body whose declared length is over the limit is refused before any of
/// it is read; bodies without a length are cut off by `DefaultBodyLimit`.
async fn refuse_declared_oversize(
    State(limit): State<usize>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        let mut resp = ApiError::body_too_large(format!(
            "The request body is larger than this server accepts ({limit} bytes)."
        ))
        .into_response();
        // The unread body would otherwise be drained or misread as the next request.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return resp;
    }
    next.run(req).await
}

/// Lets the pages of the configured web origins call the API from a
/// browser. Allowed headers mirror the preflight's request, as a `*`
/// would not cover `Authorization`.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    let allow = match origins {
        [] => return None,
        [any] if any == "*" => AllowOrigin::any(),
        // Checked when the configuration was read.
        _ => AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok())),
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods(AllowMethods::mirror_request())
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers(ExposeHeaders::any())
            .max_age(Duration::from_secs(3600)),
    )
}

/// The API. `/metrics` is on it only when `metrics_on_api`; it has a
/// listener of its own otherwise.
pub fn router(state: AppState, cfg: &ServeConfig) -> Router {
    let max_body_bytes = cfg.max_body_bytes;
    let api = mount(api_routes()).route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        crate::auth::tenant_layer,
    ));
    let admin = mount(admin::routes()).route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        crate::auth::admin_layer,
    ));
    let mut app = Router::new()
        .merge(api)
        .merge(admin)
        .merge(mount(public_routes()));
    if cfg.console {
        app = app.merge(crate::console::router());
    }
    if cfg.metrics_on_api {
        app = app.merge(state.metrics.router());
    }
    let app = app
        .fallback(|| async { ApiError::not_found_route() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(axum::middleware::from_fn_with_state(
            state.drain.clone(),
            crate::drain::layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            cfg.read_timeout,
            crate::connections::body_deadline,
        ))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            max_body_bytes,
            refuse_declared_oversize,
        ))
        .layer(CatchPanicLayer::custom(|_| -> Response {
            tracing::error!("a handler panicked");
            ApiError::internal().into_response()
        }))
        .layer(axum::middleware::from_fn(messages::errors_layer))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::layer,
        ));
    // Preflights are answered here, before authentication; error bodies
    // get the headers too, so that the page can read them.
    let app = match cors(&cfg.cors_origins) {
        Some(cors) => app.layer(cors),
        None => app,
    };
    app.layer(axum::middleware::from_fn(crate::request_id::layer))
        .with_state(state)
}
