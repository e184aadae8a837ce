//! The console's built pages (`console/dist`), in the binary: the console
//! works offline and needs nothing beside the server.
use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use crate::error::ApiError;

#[derive(RustEmbed)]
#[folder = "console/dist"]
struct Dist;

/// The pages load nothing from elsewhere and are never framed.
const CSP: &str = "default-src 'self'; style-src 'self'; img-src 'self' data:; \
    script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
    form-action 'self'";

fn serve(path: &str) -> Response {
    let Some(file) = Dist::get(path) else {
        return ApiError::not_found_route().into_response();
    };
    let mime = match file.metadata.mimetype() {
        m @ ("text/html" | "text/css" | "text/javascript" | "application/javascript") => {
            format!("{m}; charset=utf-8")
        }
        m => m.to_string(),
    };
    // Built file names carry their content's hash; the page itself does not.
    let cache = if path.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_str(&mime)
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    (headers, file.data.into_owned()).into_response()
}

pub async fn index() -> Response {
    serve("index.html")
}

pub async fn file(Path(path): Path<String>) -> Response {
    serve(&path)
}
