//! `/v1/responses`: create (continuing a stored conversation when asked),
//! retrieve, list input items, delete. Stored responses belong to the
//! tenant that made them; another tenant's id is "not found", exactly as
//! an id that never existed.
use std::sync::{Arc, Mutex};

use axum::extract::rejection::QueryRejection;
use axum::extract::{MatchedPath, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use serde::Deserialize;
use utoipa::IntoParams;

use aitier_core::frontend::responses::{conversation, Responses};
use aitier_core::frontend::{collect, Collector, Frontend};
use aitier_core::EventStream;
use aitier_protocol::responses::{
    Deleted, Item, ItemList, ResponseObject, ResponsesRequest, StreamEvent,
};
use aitier_tenancy::{Principal, Store, StoredResponse};

use crate::affinity::{self, AffinityHeader};
use crate::error::ApiError;
use crate::extract::OpenAiJson;
use crate::generation::{self, Begun, Caller};
use crate::request_id::RequestId;
use crate::state::AppState;

/// Whose responses these are: the caller's tenant; everyone's on a server
/// running open.
fn owner(principal: &Principal) -> String {
    principal.tenant_id().unwrap_or_default().to_string()
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("Response with id '{id}' not found."),
    )
    .code("not_found")
}

/// A stored response and its input, read back.
struct Loaded {
    body: ResponseObject,
    input: Vec<Item>,
}

async fn load(state: &AppState, id: &str, owner: &str) -> Result<Loaded, ApiError> {
    let stored = state
        .tenancy
        .store()
        .get_response(id, owner)
        .await?
        .ok_or_else(|| not_found(id))?;
    let corrupt = |e: serde_json::Error| {
        tracing::error!(id, error = %e, "a stored response does not parse");
        ApiError::internal()
    };
    Ok(Loaded {
        body: serde_json::from_str(&stored.body).map_err(corrupt)?,
        input: serde_json::from_str(&stored.input_items).map_err(corrupt)?,
    })
}

/// Keeps a finished response, for retrieval and continuation.
#[derive(Clone)]
struct Saver {
    store: Arc<dyn Store>,
    owner: String,
    encoder: Responses,
}

impl Saver {
    async fn save(&self, response: &ResponseObject) {
        let (Ok(body), Ok(input_items)) = (
            serde_json::to_string(response),
            serde_json::to_string(self.encoder.input()),
        ) else {
            return;
        };
        let row = StoredResponse {
            id: response.id.clone(),
            owner: self.owner.clone(),
            created_at: aitier_core::clock::now_ms(),
            model: response.model.clone(),
            body,
            input_items,
        };
        if let Err(e) = self.store.save_response(&row).await {
            tracing::error!(id = %row.id, error = %e, "cannot store the response; it cannot be retrieved or continued");
        }
    }

    /// Passes the events on, storing the response before the last one
    /// goes out, so a client that continues at once finds it.
    fn follow(self, events: EventStream) -> EventStream {
        let state = Arc::new(Mutex::new((Collector::new(1), Some(self))));
        events
            .then(move |ev| {
                let state = state.clone();
                async move {
                    let done = {
                        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                        match s.0.observe(&ev) {
                            Some(Ok(answer)) => s.1.take().map(|saver| (answer, saver)),
                            _ => None,
                        }
                    };
                    if let Some((answer, saver)) = done {
                        let response = saver.encoder.clone().respond(answer);
                        saver.save(&response).await;
                    }
                    ev
                }
            })
            .boxed()
    }
}

/// Creates a model response (OpenAI's Responses API); with `stream: true`,
/// its typed events. `store` keeps it for `previous_response_id`.
#[utoipa::path(
    post,
    path = "/v1/responses",
    operation_id = "createResponse",
    tag = "responses",
    request_body(content = ResponsesRequest, example = json!({
        "model": "smollm2-135m-instruct",
        "input": "Say hello.",
        "max_output_tokens": 16
    })),
    responses((status = 200, description = "The response, or its stream of events", content(
        (ResponseObject = "application/json"),
        (StreamEvent = "text/event-stream"),
    ), links(
        ("getResponse" = (operation_id = "getResponse", parameters(("id" = "$response.body#/id")))),
        ("listInputItems" = (operation_id = "listInputItems", parameters(("id" = "$response.body#/id")))),
        ("deleteResponse" = (operation_id = "deleteResponse", parameters(("id" = "$response.body#/id")))),
    ))),
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Extension(principal): Extension<Principal>,
    path: MatchedPath,
    key: AffinityHeader,
    OpenAiJson(req): OpenAiJson<ResponsesRequest>,
) -> Result<Response, ApiError> {
    let owner = owner(&principal);
    let history = match req.previous_response_id.as_deref() {
        Some(id) => {
            // OpenAI's own refusal: a 404 naming the parameter.
            let prev = load(&state, id, &owner).await.map_err(|mut e| {
                if e.status == StatusCode::NOT_FOUND {
                    e.body.message = format!("Previous response with id '{id}' not found.");
                    e = e.code("previous_response_not_found");
                }
                e.param("previous_response_id")
            })?;
            conversation(&prev.input, &prev.body.output)
        }
        None => Vec::new(),
    };
    let caller = Caller {
        principal: &principal,
        request_id: &rid.id,
        traceparent: rid.traceparent.as_deref(),
        user: None,
        endpoint: path.as_str(),
    };
    let decoded = Responses::decode_with(req, history)?;
    let Begun {
        events,
        encoder,
        stream,
        affinity: key,
        ..
    } = generation::begin_decoded(&state, caller, key.into_inner(), decoded).await?;
    let saver = encoder.store().then(|| Saver {
        store: state.tenancy.store().clone(),
        owner,
        encoder: encoder.clone(),
    });
    if !stream {
        let response = encoder.respond(collect(events, 1).await?);
        if let Some(s) = saver {
            s.save(&response).await;
        }
        return Ok(affinity::mark(Json(response).into_response(), &key));
    }
    let events = match saver {
        Some(s) => s.follow(events),
        None => events,
    };
    let resp = crate::sse::respond(events, encoder, state.keep_alive, &state.drain);
    Ok(affinity::mark(resp, &key))
}

/// A stored response, by id (the caller's own only).
#[utoipa::path(
    get,
    path = "/v1/responses/{id}",
    operation_id = "getResponse",
    tag = "responses",
    params(("id" = String, Path, description = "The response's id")),
    responses((status = 200, description = "The stored response", body = ResponseObject)),
)]
pub async fn get(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<ResponseObject>, ApiError> {
    Ok(Json(load(&state, &id, &owner(&principal)).await?.body))
}

/// Deletes a stored response.
#[utoipa::path(
    delete,
    path = "/v1/responses/{id}",
    operation_id = "deleteResponse",
    tag = "responses",
    params(("id" = String, Path, description = "The response's id")),
    responses((status = 200, description = "It is gone", body = Deleted)),
)]
pub async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    if !state
        .tenancy
        .store()
        .delete_response(&id, &owner(&principal))
        .await?
    {
        return Err(not_found(&id));
    }
    Ok(Json(Deleted {
        id,
        object: "response.deleted".into(),
        deleted: true,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// 20 by default.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// `desc` by default.
    #[param(pattern = "^(asc|desc)$")]
    order: Option<String>,
    /// An item id: list the items after it.
    after: Option<String>,
}

/// The input items a stored response was made from.
#[utoipa::path(
    get,
    path = "/v1/responses/{id}/input_items",
    operation_id = "listInputItems",
    tag = "responses",
    params(("id" = String, Path, description = "The response's id"), ListParams),
    responses((status = 200, description = "A page of input items", body = ItemList)),
)]
pub async fn input_items(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<ItemList>, ApiError> {
    let Query(p) = params?;
    let limit = p.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid(
            Some("limit".into()),
            "`limit` must be between 1 and 100",
        ));
    }
    let mut items = load(&state, &id, &owner(&principal)).await?.input;
    match p.order.as_deref() {
        None | Some("desc") => items.reverse(),
        Some("asc") => {}
        Some(other) => {
            return Err(ApiError::invalid(
                Some("order".into()),
                format!("Invalid order '{other}': expected 'asc' or 'desc'"),
            ))
        }
    }
    if let Some(after) = &p.after {
        let at = items
            .iter()
            .position(|i| i.id.as_deref() == Some(after.as_str()))
            .ok_or_else(|| {
                ApiError::invalid(
                    Some("after".into()),
                    format!("no input item '{after}' in this response"),
                )
            })?;
        items.drain(..=at);
    }
    let has_more = items.len() > limit;
    items.truncate(limit);
    Ok(Json(ItemList {
        object: "list".into(),
        first_id: items.first().and_then(|i| i.id.clone()),
        last_id: items.last().and_then(|i| i.id.clone()),
        data: items,
        has_more,
    }))
}
