//! Who is calling: tenant API keys on the API routes, the admin token on the
//! admin routes; or, for the web console, its session cookie in their
//! place (reads only with a tenant's; writes only with the CSRF token). An
//! authenticated response carries the caller's `x-ratelimit-*` headers,
//! whatever its status.
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use aitier_tenancy::Principal;

use crate::console::{self, session::Holder};
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

/// A console session's tenant key, for a read sent without a key: the
/// console reads a tenant's usage, and never runs a model, with its cookie.
fn console_key(state: &AppState, req: &Request) -> Option<String> {
    if api_key(req).is_some() || !matches!(*req.method(), Method::GET | Method::HEAD) {
        return None;
    }
    match console::holder(state, req.headers())? {
        (Holder::Tenant(key), _) => Some(key),
        (Holder::Admin, _) => None,
    }
}

pub async fn tenant_layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let from_console = console_key(&state, &req);
    let presented = from_console.as_deref().or_else(|| api_key(&req));
    let principal = match state.tenancy.authenticate(presented).await {
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
    if let Some(t) = bearer(&req) {
        if bool::from(t.as_bytes().ct_eq(expected.0.as_bytes())) {
            return next.run(req).await;
        }
    } else if let Some((Holder::Admin, cookie)) = console::holder(&state, req.headers()) {
        if !console::csrf_ok(&state, &req, &cookie) {
            return console::csrf_refused().into_response();
        }
        return next.run(req).await;
    }
    ApiError::unauthorized("The admin API needs the admin token.").into_response()
}
