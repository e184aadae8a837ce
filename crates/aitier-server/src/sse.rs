//! A front-end's stream as server-sent events, on axum's SSE support: its
//! payloads as `data:` events (named, for the APIs that name them), an
//! error as the front-end's error event that ends the stream, and keep-alive comments while nothing else is sent (a
//! request queued behind others would otherwise look dead to proxies).
use std::convert::Infallible;
use std::time::Duration;

use axum::http::{header, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use aitier_core::frontend::Frontend;
use aitier_core::{EventStream, GenEvent};
use aitier_protocol::sse::Payload;

use crate::error::ApiError;

pub fn respond<F: Frontend>(events: EventStream, mut encoder: F, keep_alive: Duration) -> Response {
    let stream = events
        .scan(false, move |ended, ev| {
            if *ended {
                return futures::future::ready(None);
            }
            let payloads = match ev {
                GenEvent::Error(e) => {
                    *ended = true;
                    encoder.encode_error(ApiError::from(e).to_body())
                }
                ev => {
                    *ended = matches!(ev, GenEvent::Done { .. });
                    encoder.encode(ev)
                }
            };
            let events = payloads.into_iter().map(|p| {
                let event = match &p {
                    Payload::Chunk(c) => F::event_name(c).map(|n| Event::default().event(n)),
                    _ => None,
                };
                Ok::<_, Infallible>(event.unwrap_or_default().data(p.encode()))
            });
            futures::future::ready(Some(futures::stream::iter(events)))
        })
        .flatten();
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(keep_alive))
        .into_response();
    // nginx buffers responses unless told not to.
    resp.headers_mut().insert(
        header::HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    resp
}
