//! `/metrics`. A first cut on the API listener; the operations work moves
//! metrics to a listener of their own.
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::metrics::CONTENT_TYPE;
use crate::state::AppState;

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render(),
    )
}
