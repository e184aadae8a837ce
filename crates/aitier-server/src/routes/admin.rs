//! The admin API (`/admin/v1/...`), authorised by the admin token only:
//! tenants, their keys, and usage across tenants.
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use aitier_protocol::List;
use aitier_tenancy::{ApiKey, Limits, StoreError, Tenant, TenantPatch, UsageRow};

use crate::catalog::{Changes, Status};
use crate::error::ApiError;
use crate::extract::OpenAiJson;
use crate::route::Route;
use crate::routes::status;
use crate::routes::usage::report;
use crate::state::AppState;
use crate::usage_report::UsageParams;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/admin/v1/tenants", create_tenant),
        Route::new(Method::GET, "/admin/v1/tenants", list_tenants),
        Route::new(Method::GET, "/admin/v1/tenants/{id}", get_tenant),
        Route::new(Method::PATCH, "/admin/v1/tenants/{id}", update_tenant),
        Route::new(
            Method::POST,
            "/admin/v1/tenants/{id}/disable",
            disable_tenant,
        ),
        Route::new(Method::POST, "/admin/v1/tenants/{id}/keys", create_key),
        Route::new(Method::GET, "/admin/v1/tenants/{id}/keys", list_tenant_keys),
        Route::new(Method::GET, "/admin/v1/keys", list_keys),
        Route::new(Method::POST, "/admin/v1/keys/{id}/revoke", revoke_key),
        Route::new(Method::GET, "/admin/v1/usage", usage),
        Route::new(Method::POST, "/admin/v1/reload", reload),
        Route::new(Method::GET, "/admin/v1/models", status::models),
        Route::new(Method::GET, "/admin/v1/live", status::live),
        // Model ids may hold slashes: `{id}/load` and `{id}/unload`.
        Route::new(Method::POST, "/admin/v1/models/{*rest}", model_action),
    ]
}

/// Reads the configuration again and applies it; a configuration that
/// does not resolve is refused, and the running one stays.
#[utoipa::path(
    post,
    path = "/admin/v1/reload",
    operation_id = "reload",
    tag = "admin",
    responses((status = 200, description = "What changed", body = Changes)),
)]
pub(crate) async fn reload(State(state): State<AppState>) -> Result<Json<Changes>, ApiError> {
    Ok(Json(state.catalog.reload()?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelAction {
    Load,
    Unload,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelState {
    /// The id as asked for (a model name or an alias).
    id: String,
    /// The model it names.
    model: String,
    status: Status,
}

/// Loads or unloads a configured model: an unloaded model answers 503
/// `model_unloaded` and frees its memory; loading returns at once, with
/// the model `loading` until it is ready. Model ids may hold slashes.
#[utoipa::path(
    post,
    path = "/admin/v1/models/{id}/{action}",
    operation_id = "changeModel",
    tag = "admin",
    params(
        ("id" = String, Path, description = "A configured model's name or alias", example = "all-minilm-l6-v2"),
        ("action" = inline(ModelAction), Path),
    ),
    responses((status = 200, description = "Where the model stands now", body = ModelState)),
)]
pub(crate) async fn model_action(
    State(state): State<AppState>,
    Path(rest): Path<String>,
) -> Result<Json<ModelState>, ApiError> {
    let (id, (model, status)) = match rest.rsplit_once('/') {
        Some((id, "load")) => (id, state.catalog.load(id)?),
        Some((id, "unload")) => (id, state.catalog.unload(id)?),
        _ => return Err(ApiError::not_found_route()),
    };
    let id = id.to_string();
    Ok(Json(ModelState { id, model, status }))
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

// `flatten` is for the schema only: serde reads these through `try_from`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(try_from = "serde_json::Map<String, serde_json::Value>")]
pub struct NewTenant {
    pub name: String,
    #[serde(flatten)]
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

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(try_from = "serde_json::Map<String, serde_json::Value>")]
pub struct NewKey {
    pub name: Option<String>,
    #[serde(flatten)]
    pub limits: Limits,
}

impl TryFrom<serde_json::Map<String, serde_json::Value>> for NewKey {
    type Error = String;
    fn try_from(map: serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        let (name, limits) = name_and_limits(map)?;
        Ok(Self { name, limits })
    }
}

/// A new key: the only time its secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedKey {
    #[serde(flatten)]
    info: ApiKey,
    /// The whole key, `sk-aitier-...`, to send as a bearer token.
    key: String,
}

#[utoipa::path(
    post,
    path = "/admin/v1/tenants",
    operation_id = "createTenant",
    tag = "admin",
    request_body(content = NewTenant, example = json!({"name": "team-a", "rpm": 600})),
    responses((status = 201, description = "The new tenant", body = Tenant, links(
        ("getTenant" = (operation_id = "getTenant", parameters(("id" = "$response.body#/id")))),
        ("updateTenant" = (operation_id = "updateTenant", parameters(("id" = "$response.body#/id")))),
        ("disableTenant" = (operation_id = "disableTenant", parameters(("id" = "$response.body#/id")))),
        ("createKey" = (operation_id = "createKey", parameters(("id" = "$response.body#/id")))),
        ("listTenantKeys" = (operation_id = "listTenantKeys", parameters(("id" = "$response.body#/id")))),
    ))),
)]
pub(crate) async fn create_tenant(
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
    Ok(Json(List::new(r?)).into_response())
}

#[utoipa::path(
    get,
    path = "/admin/v1/tenants",
    operation_id = "listTenants",
    tag = "admin",
    responses((status = 200, description = "Every tenant", body = List<Tenant>)),
)]
pub(crate) async fn list_tenants(State(state): State<AppState>) -> Result<Response, ApiError> {
    list(state.tenancy.store().list_tenants().await)
}

#[utoipa::path(
    get,
    path = "/admin/v1/tenants/{id}",
    operation_id = "getTenant",
    tag = "admin",
    params(("id" = String, Path, description = "The tenant's id or name")),
    responses((status = 200, description = "The tenant", body = Tenant)),
)]
pub(crate) async fn get_tenant(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    one(state.tenancy.store().get_tenant(&id).await)
}

/// Changes a tenant: absent fields stay, `null` removes a limit.
#[utoipa::path(
    patch,
    path = "/admin/v1/tenants/{id}",
    operation_id = "updateTenant",
    tag = "admin",
    params(("id" = String, Path, description = "The tenant's id or name")),
    request_body(content = TenantPatch, example = json!({"tpm": 100000, "rpm": null})),
    responses((status = 200, description = "The tenant as it is now", body = Tenant)),
)]
pub(crate) async fn update_tenant(
    State(state): State<AppState>,
    Path(id): Path<String>,
    OpenAiJson(patch): OpenAiJson<TenantPatch>,
) -> Result<Response, ApiError> {
    one(state.tenancy.store().update_tenant(&id, &patch).await)
}

/// Its keys stop working at once; its usage stays.
#[utoipa::path(
    post,
    path = "/admin/v1/tenants/{id}/disable",
    operation_id = "disableTenant",
    tag = "admin",
    params(("id" = String, Path, description = "The tenant's id or name")),
    responses((status = 200, description = "The disabled tenant", body = Tenant)),
)]
pub(crate) async fn disable_tenant(
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

/// Issues a key; the body (name and limits of its own) is optional.
#[utoipa::path(
    post,
    path = "/admin/v1/tenants/{id}/keys",
    operation_id = "createKey",
    tag = "admin",
    params(("id" = String, Path, description = "The tenant's id or name")),
    request_body(content = Option<NewKey>, example = json!({"name": "ci", "rpm": 60})),
    responses((status = 201, description = "The key, with its secret shown this once", body = IssuedKey, links(
        ("revokeKey" = (operation_id = "revokeKey", parameters(("id" = "$response.body#/id")))),
    ))),
)]
pub(crate) async fn create_key(
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
    let issued = IssuedKey {
        info: key,
        key: full,
    };
    Ok((StatusCode::CREATED, Json(issued)).into_response())
}

#[utoipa::path(
    get,
    path = "/admin/v1/tenants/{id}/keys",
    operation_id = "listTenantKeys",
    tag = "admin",
    params(("id" = String, Path, description = "The tenant's id or name")),
    responses((status = 200, description = "The tenant's keys (no secrets)", body = List<ApiKey>)),
)]
pub(crate) async fn list_tenant_keys(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    list(state.tenancy.store().list_keys(Some(&id)).await)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyFilter {
    /// Only this tenant's keys (an id or a name).
    tenant: Option<String>,
}

#[utoipa::path(
    get,
    path = "/admin/v1/keys",
    operation_id = "listKeys",
    tag = "admin",
    params(KeyFilter),
    responses((status = 200, description = "Keys (no secrets)", body = List<ApiKey>)),
)]
pub(crate) async fn list_keys(
    State(state): State<AppState>,
    q: Result<Query<KeyFilter>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(f) = q?;
    list(state.tenancy.store().list_keys(f.tenant.as_deref()).await)
}

#[utoipa::path(
    post,
    path = "/admin/v1/keys/{id}/revoke",
    operation_id = "revokeKey",
    tag = "admin",
    params(("id" = String, Path, description = "The key's public id")),
    responses((status = 200, description = "The revoked key", body = ApiKey)),
)]
pub(crate) async fn revoke_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    tracing::info!(key = %id, "revoking key");
    one(state.tenancy.store().revoke_key(&id).await)
}

/// Usage across tenants, summed by the groups asked for.
#[utoipa::path(
    get,
    path = "/admin/v1/usage",
    operation_id = "getAdminUsage",
    tag = "admin",
    params(UsageParams),
    responses((status = 200, description = "Usage rows", content(
        (List<UsageRow> = "application/json"),
        (String = "text/csv"),
    ))),
)]
pub(crate) async fn usage(
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
