//! The web console at `/console/`: its pages, built from `console/` in this
//! crate and embedded at build time, and its sign-in. The pages read and
//! write through the admin API (or a tenant's `/v1/usage`) like any script;
//! what they add is a cookie to carry the sign-in (see `session`).
mod assets;
pub mod session;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use aitier_tenancy::Principal;

use crate::error::ApiError;
use crate::extract::OpenAiJson;
use crate::state::AppState;
use session::{Holder, COOKIE, CSRF_HEADER, LIFETIME_SECS};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(assets::index))
        .route("/console/{*path}", get(assets::file))
        .route(
            "/console/session",
            get(current).post(sign_in).delete(sign_out),
        )
}

/// The session cookie a request carries, if any.
pub fn cookie_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_string())
}

/// The holder of the request's session cookie, when it is good.
pub fn holder(state: &AppState, headers: &HeaderMap) -> Option<(Holder, String)> {
    let value = cookie_of(headers)?;
    let holder = state
        .sessions
        .check(&value, aitier_core::clock::unix_secs())?;
    Some((holder, value))
}

/// Writes made with a session cookie must echo its CSRF token: a page on
/// another origin can make the browser send the cookie, never read the token.
pub fn csrf_ok(state: &AppState, req: &Request, cookie: &str) -> bool {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    safe || state.sessions.csrf_ok(
        cookie,
        req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()),
    )
}

pub fn csrf_refused() -> ApiError {
    ApiError::forbidden(
        CSRF_HEADER,
        "A write made with the console's session needs its CSRF token in x-csrf-token.",
    )
    .code("csrf_failed")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// The admin token or a tenant's API key.
    token: String,
}

#[derive(Debug, Serialize)]
struct TenantRef {
    id: String,
    name: String,
}

#[derive(Debug, Serialize)]
struct Whoami {
    role: &'static str,
    csrf: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<TenantRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
}

/// Who a holder is now: a tenant key is looked up again, so a revoked key
/// or a disabled tenant has no session.
async fn whoami(state: &AppState, holder: &Holder, cookie: &str) -> Result<Whoami, ApiError> {
    let csrf = state.sessions.csrf(cookie);
    match holder {
        Holder::Admin => Ok(Whoami {
            role: "admin",
            csrf,
            tenant: None,
            key_id: None,
        }),
        Holder::Tenant(key) => match state.tenancy.authenticate(Some(key)).await? {
            Principal::Key(k) => Ok(Whoami {
                role: "tenant",
                csrf,
                tenant: Some(TenantRef {
                    id: k.tenant.id.clone(),
                    name: k.tenant.name.clone(),
                }),
                key_id: Some(k.key.id.clone()),
            }),
            Principal::Open => Err(ApiError::unauthorized("Sign in with an API key.")),
        },
    }
}

fn session_cookie(value: String, max_age_secs: i64, secure: bool) -> HeaderValue {
    let c = Cookie::build((COOKIE, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(cookie::time::Duration::seconds(max_age_secs))
        .build();
    // A cookie built of our own ASCII is always a valid header value.
    HeaderValue::from_str(&c.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

async fn sign_in(
    State(state): State<AppState>,
    OpenAiJson(body): OpenAiJson<SignIn>,
) -> Result<Response, ApiError> {
    let is_admin = state
        .admin_token
        .as_ref()
        .is_some_and(|t| bool::from(t.0.as_bytes().ct_eq(body.token.as_bytes())));
    let holder = if is_admin {
        Holder::Admin
    } else if aitier_tenancy::keys::parse(&body.token).is_some() {
        Holder::Tenant(body.token)
    } else {
        return Err(ApiError::unauthorized(
            "Neither the admin token nor a valid API key.",
        ));
    };
    let value = state
        .sessions
        .issue(&holder, aitier_core::clock::unix_secs());
    let who = whoami(&state, &holder, &value).await?;
    tracing::info!(role = who.role, key = ?who.key_id, "console sign-in");
    let cookie = session_cookie(value, LIFETIME_SECS as i64, state.console_secure_cookie);
    Ok(([(header::SET_COOKIE, cookie)], Json(who)).into_response())
}

async fn current(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let Some((holder, value)) = holder(&state, &headers) else {
        return Err(ApiError::unauthorized("Not signed in to the console."));
    };
    Ok(Json(whoami(&state, &holder, &value).await?).into_response())
}

async fn sign_out(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    if let Some((_, value)) = holder(&state, req.headers()) {
        if !csrf_ok(&state, &req, &value) {
            return Err(csrf_refused());
        }
    }
    let cookie = session_cookie(String::new(), 0, state.console_secure_cookie);
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}
