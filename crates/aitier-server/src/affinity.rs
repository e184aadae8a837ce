//! The affinity key over HTTP (see `aitier_core::affinity`): a client, or
//! an aitier in front, may send the key in `x-aitier-affinity` to be routed
//! by it; every generation's response carries the key it was routed by, so
//! that a client or a balancer can send later requests with it.
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;

use aitier_core::{affinity, GenerateRequest};

use crate::error::ApiError;

/// The key a request came with, checked.
pub struct AffinityHeader(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for AffinityHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(affinity::HEADER) else {
            return Ok(Self(None));
        };
        let text = value.to_str().unwrap_or("\u{0}");
        Ok(Self(Some(affinity::from_header(text)?)))
    }
}

impl AffinityHeader {
    /// The key as the client sent it, if it did.
    pub fn into_inner(self) -> Option<String> {
        self.0
    }
}

/// Gives `req` its key: `given` (a header's), else its `prompt_cache_key`'s,
/// else its prompt's. Returns it for the response.
pub fn settle(req: &mut GenerateRequest, given: Option<String>) -> String {
    let key = given.unwrap_or_else(|| affinity::of_request(req));
    req.affinity = Some(key.clone());
    key
}

/// `resp` with the key it was routed by.
pub fn mark(mut resp: Response, key: &str) -> Response {
    // A settled key is ASCII by construction (hex, or a checked header).
    if let Ok(v) = HeaderValue::from_str(key) {
        resp.headers_mut()
            .insert(HeaderName::from_static(affinity::HEADER), v);
    }
    resp
}
