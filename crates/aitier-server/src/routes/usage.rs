//! Usage reports over HTTP: a tenant's own (`/v1/usage`, scoped to the
//! caller's tenant whatever it asks for) and the admin's (any tenant).
use aitier_protocol::List;
use aitier_tenancy::{Principal, UsageRow};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use crate::error::ApiError;
use crate::state::AppState;
use crate::usage_report::{to_csv, Format, UsageParams};

pub async fn report(
    state: &AppState,
    params: UsageParams,
    tenant_id: Option<String>,
) -> Result<Response, ApiError> {
    let format = Format::parse(params.format.as_deref(), Format::Json)
        .map_err(|e| ApiError::invalid(Some("format".into()), e))?;
    let q = params
        .query(tenant_id)
        .map_err(|(param, msg)| ApiError::invalid(Some(param), msg))?;
    let rows = state.tenancy.store().usage(&q).await?;
    Ok(match format {
        Format::Csv => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            to_csv(&q, &rows),
        )
            .into_response(),
        _ => Json(List::new(rows)).into_response(),
    })
}

/// The caller's own tenant's usage: a `tenant` parameter cannot widen it.
#[utoipa::path(
    get,
    path = "/v1/usage",
    operation_id = "getUsage",
    tag = "usage",
    params(UsageParams),
    responses((status = 200, description = "Usage rows", content(
        (List<UsageRow> = "application/json"),
        (String = "text/csv"),
    ))),
)]
pub async fn own(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    params: Result<Query<UsageParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    let Principal::Key(k) = &principal else {
        return Err(ApiError::unauthorized(
            "Usage is per tenant: call with a tenant's API key.",
        ));
    };
    if params
        .tenant
        .as_deref()
        .is_some_and(|t| t != k.tenant.id && t != k.tenant.name)
    {
        return Err(ApiError::forbidden(
            "tenant",
            "A tenant key can read its own tenant's usage only.",
        ));
    }
    report(&state, params, Some(k.tenant.id.clone())).await
}
