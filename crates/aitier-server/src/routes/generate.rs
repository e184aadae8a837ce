//! The generation endpoints (`/v1/chat/completions`, `/v1/completions`,
//! `/v1/messages`): one handler, generic over the API front-end.
use axum::extract::{MatchedPath, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use aitier_core::frontend::{collect, Decoded, Frontend};
use aitier_tenancy::Principal;

use crate::error::ApiError;
use crate::extract::OpenAiJson;
use crate::generation::{self, Caller};
use crate::request_id::RequestId;
use crate::state::AppState;

pub async fn create<F: Frontend>(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Extension(principal): Extension<Principal>,
    path: MatchedPath,
    OpenAiJson(req): OpenAiJson<F::Request>,
) -> Result<Response, ApiError> {
    let Decoded {
        request,
        delivery,
        model,
        user,
        encoder,
    } = F::decode(req)?;
    let choices = request.choices();
    crate::metrics::note_model(&model);
    let caller = Caller {
        principal: &principal,
        request_id: &rid.id,
        traceparent: rid.traceparent.as_deref(),
        user: user.as_deref(),
        endpoint: path.as_str(),
    };
    let events = generation::start(&state, caller, &model, request).await?;
    if !delivery.stream {
        let answer = collect(events, choices).await?;
        return Ok(Json(encoder.respond(answer)).into_response());
    }
    Ok(crate::sse::respond(
        events,
        encoder,
        state.keep_alive,
        &state.drain,
    ))
}
