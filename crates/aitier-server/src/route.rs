//! A route as data: one method on one path and its handler. The server's
//! routes are listed this way so that a test can hold them against the
//! OpenAPI document.
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{on, MethodFilter, MethodRouter};

use crate::state::AppState;

pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub(crate) handler: MethodRouter<AppState>,
}

impl Route {
    pub fn new<H, T>(method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a method axum can route");
        Self {
            method,
            path,
            handler: on(filter, handler),
        }
    }
}
