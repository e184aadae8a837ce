//! The admin API (`/admin/v1/...`), authorised by the admin token only:
//! tenants, their keys, and usage across tenants.
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use aitier_tenancy::{Limits, StoreError, TenantPatch};

use crate::catalog::Changes;
use crate::error::ApiError;
use crate::extract::OpenAiJson;
use crate::routes::usage::report;
use crate::state::AppState;
use crate::usage_report::UsageParams;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/tenants", post(create_tenant).get(list_tenants))
        .route(
            "/admin/v1/tenants/{id}",
            get(get_tenant).patch(update_tenant),
        )
        .route("/admin/v1/tenants/{id}/disable", post(disable_tenant))
        .route(
            "/admin/v1/tenants/{id}/keys",
            post(create_key).get(list_tenant_keys),
        )
        .route("/admin/v1/keys", get(list_keys))
        .route("/admin/v1/keys/{id}/revoke", post(revoke_key))
        .route("/admin/v1/usage", get(usage))
        .route("/admin/v1/reload", post(reload))
        .route("/admin/v1/models/{*rest}", post(model_action))
}

/// Reads the configuration again and applies it; a configuration that
/// does not resolve is refused, and the running one stays.
async fn reload(State(state): State<AppState>) -> Result<Json<Changes>, ApiError> {
    Ok(Json(state.catalog.reload()?))
}

/// `POST /admin/v1/models/{id}/load|unload` (ids may hold slashes).
async fn model_action(
    State(state): State<AppState>,
    Path(rest): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (id, done) = match rest.rsplit_once('/') {
        Some((id, "load")) => (id, state.catalog.load(id)?),
        Some((id, "unload")) => (id, state.catalog.unload(id)?),
        _ => return Err(ApiError::not_found_route()),
    };
    let (model, status) = done;
    Ok(Json(json!({"id": id, "model": model, "status": status})))
}

/// A body of limits plus a name. Serde cannot refuse unknown fields through
/// `flatten`, so the name is taken out and the rest must be `Limits`.
fn name_and_limits(
    mut map: serde_json::Map<String, serde_json::Value>,
) -> Result<(Option<String>, Limits), String> {
    let name = match map.remove("name") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(_) => return Err("name: expected a string".into()),
    };
    let limits =
        serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| e.to_string())?;
    Ok((name, limits))
}

#[derive(Debug, Deserialize)]
#[serde(try_from = "serde_json::Map<String, serde_json::Value>")]
pub struct NewTenant {
    pub name: String,
    pub limits: Limits,
}

impl TryFrom<serde_json::Map<String, serde_json::Value>> for NewTenant {
    type Error = String;
    fn try_from(map: serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        let (name, limits) = name_and_limits(map)?;
        Ok(Self {
            name: name.ok_or("missing field `name`")?,
            limits,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(try_from = "serde_json::Map<String, serde_json::Value>")]
pub struct NewKey {
    pub name: Option<String>,
    pub limits: Limits,
}

impl TryFrom<serde_json::Map<String, serde_json::Value>> for NewKey {
    type Error = String;
    fn try_from(map: serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        let (name, limits) = name_and_limits(map)?;
        Ok(Self { name, limits })
    }
}

async fn create_tenant(
    State(state): State<AppState>,
    OpenAiJson(body): OpenAiJson<NewTenant>,
) -> Result<Response, ApiError> {
    let t = state
        .tenancy
        .store()
        .create_tenant(&body.name, &body.limits)
        .await?;
    tracing::info!(tenant = %t.name, id = %t.id, "tenant created");
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

/// A store answer as a JSON body.
fn one<T: Serialize>(r: Result<T, StoreError>) -> Result<Response, ApiError> {
    Ok(Json(r?).into_response())
}

/// A store answer as an OpenAI-style list.
fn list<T: Serialize>(r: Result<Vec<T>, StoreError>) -> Result<Response, ApiError> {
    Ok(Json(json!({"object": "list", "data": r?})).into_response())
}

async fn list_tenants(State(state): State<AppState>) -> Result<Response, ApiError> {
    list(state.tenancy.store().list_tenants().await)
}

async fn get_tenant(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    one(state.tenancy.store().get_tenant(&id).await)
}

async fn update_tenant(
    State(state): State<AppState>,
    Path(id): Path<String>,
    OpenAiJson(patch): OpenAiJson<TenantPatch>,
) -> Result<Response, ApiError> {
    one(state.tenancy.store().update_tenant(&id, &patch).await)
}

async fn disable_tenant(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let patch = TenantPatch {
        disabled: Some(true),
        ..Default::default()
    };
    tracing::info!(tenant = %id, "disabling tenant");
    one(state.tenancy.store().update_tenant(&id, &patch).await)
}

async fn create_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // The body is optional: a key with no name and no limits of its own.
    let body: NewKey = if body.iter().all(u8::is_ascii_whitespace) {
        NewKey::default()
    } else {
        crate::extract::parse(&body)?
    };
    let (key, full) = state
        .tenancy
        .store()
        .create_key(&id, body.name.as_deref(), &body.limits)
        .await?;
    state.tenancy.key_created();
    tracing::info!(tenant = %key.tenant_id, key = %key.id, "key created");
    let mut value = serde_json::to_value(&key).map_err(|_| ApiError::internal())?;
    value["key"] = json!(full);
    Ok((StatusCode::CREATED, Json(value)).into_response())
}

async fn list_tenant_keys(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    list(state.tenancy.store().list_keys(Some(&id)).await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFilter {
    tenant: Option<String>,
}

async fn list_keys(
    State(state): State<AppState>,
    q: Result<Query<KeyFilter>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(f) = q?;
    list(state.tenancy.store().list_keys(f.tenant.as_deref()).await)
}

async fn revoke_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    tracing::info!(key = %id, "revoking key");
    one(state.tenancy.store().revoke_key(&id).await)
}

async fn usage(
    State(state): State<AppState>,
    q: Result<Query<UsageParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = q?;
    let tenant = match &params.tenant {
        Some(t) => Some(state.tenancy.store().get_tenant(t).await?.id),
        None => None,
    };
    report(&state, params, tenant).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_take_limits_and_refuse_unknown_fields() {
        let t: NewTenant =
            serde_json::from_str(r#"{"name":"a","rpm":5,"models":["m"]}"#).expect("valid");
        assert_eq!((t.name.as_str(), t.limits.rpm), ("a", Some(5)));
        assert!(serde_json::from_str::<NewTenant>(r#"{"name":"a","rpn":5}"#).is_err());
        assert!(serde_json::from_str::<NewKey>(r#"{"nmae":"x"}"#).is_err());
    }
}
