//! Who is calling: tenant API keys on the API routes, the admin token on the
//! admin routes. An authenticated response carries the caller's
//! `x-ratelimit-*` headers, whatever its status.
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use aitier_tenancy::Principal;

use crate::error::ApiError;
use crate::state::AppState;

pub fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// The key a client sent: as a bearer token, or in `x-api-key` as
/// Anthropic's clients send it.
fn api_key(req: &Request) -> Option<&str> {
    bearer(req).or_else(|| {
        req.headers()
            .get("x-api-key")?
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|t| !t.is_empty())
    })
}

pub async fn tenant_layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let principal = match state.tenancy.authenticate(api_key(&req)).await {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    if let Principal::Key(k) = &principal {
        crate::metrics::note_tenant(&k.tenant.name);
    }
    req.extensions_mut().insert(principal.clone());
    let mut resp = next.run(req).await;
    if matches!(principal, Principal::Key(_)) {
        match state.tenancy.rate_headers(&principal).await {
            Ok(h) => {
                for (name, value) in h.pairs() {
                    if let Ok(v) = HeaderValue::from_str(&value) {
                        resp.headers_mut().insert(name, v);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read rate limits for headers"),
        }
    }
    resp
}

pub async fn admin_layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(expected) = &state.admin_token else {
        return ApiError::unauthorized(
            "The admin API is off: start the server with --admin-token (or AITIER_ADMIN_TOKEN).",
        )
        .into_response();
    };
    let ok = bearer(&req).is_some_and(|t| bool::from(t.as_bytes().ct_eq(expected.0.as_bytes())));
    if !ok {
        return ApiError::unauthorized("The admin API needs the admin token.").into_response();
    }
    next.run(req).await
}
