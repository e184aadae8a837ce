//! The axum application: routes and the layers around them.
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

use aitier_core::frontend::chat::Chat;
use aitier_core::frontend::completions::Completions;
use aitier_core::frontend::messages::Messages;

use crate::error::ApiError;
use crate::routes::{
    admin, embeddings, generate, health, messages, models, responses, tokenize, usage,
};
use crate::state::AppState;

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

/// The API. `/metrics` is on it only when `metrics_on_api`; it has a
/// listener of its own otherwise.
pub fn router(state: AppState, max_body_bytes: usize, metrics_on_api: bool) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(generate::create::<Chat>))
        .route("/v1/completions", post(generate::create::<Completions>))
        .route("/v1/embeddings", post(embeddings::create))
        .route("/v1/responses", post(responses::create))
        .route(
            "/v1/responses/{id}",
            get(responses::get).delete(responses::delete),
        )
        .route(
            "/v1/responses/{id}/input_items",
            get(responses::input_items),
        )
        .route(messages::PATH, post(generate::create::<Messages>))
        .route("/v1/messages/count_tokens", post(messages::count_tokens))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{*id}", get(models::get))
        .route("/v1/usage", get(usage::own))
        .route("/tokenize", post(tokenize::tokenize))
        .route("/detokenize", post(tokenize::detokenize))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::tenant_layer,
        ));
    let admin = admin::router().route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        crate::auth::admin_layer,
    ));
    let mut app = Router::new()
        .merge(api)
        .merge(admin)
        .route("/health", get(health::health))
        .route("/ready", get(health::ready));
    if metrics_on_api {
        app = app.merge(state.metrics.router());
    }
    app.fallback(|| async { ApiError::not_found_route() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(axum::middleware::from_fn_with_state(
            state.drain.clone(),
            crate::drain::layer,
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
        ))
        .layer(axum::middleware::from_fn(crate::request_id::layer))
        .with_state(state)
}
