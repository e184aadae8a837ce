//! A front-end's stream as server-sent events, on axum's SSE support: its
//! payloads as `data:` events (named, for the APIs that name them), an
//! error as the front-end's error event that ends the stream (also when a
//! drain cuts it), and keep-alive comments while nothing else is sent (a
//! request queued behind others would otherwise look dead to proxies).
use std::convert::Infallible;
use std::time::Duration;

use axum::http::{header, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Future, Stream, StreamExt};

use aitier_core::frontend::Frontend;
use aitier_core::{EventStream, GenEvent};
use aitier_protocol::sse::Payload;

use crate::drain::{Drain, Phase};
use crate::error::ApiError;

/// `events` until they end or `cut` comes, which ends them with an error.
fn until_cut(
    events: EventStream,
    cut: impl Future<Output = ()> + Send + 'static,
) -> impl Stream<Item = Result<GenEvent, ApiError>> + Send {
    let events = events.map(|ev| match ev {
        GenEvent::Error(e) => Err(ApiError::from(e)),
        ev => Ok(ev),
    });
    futures::stream::unfold(Some((events, Box::pin(cut))), |state| async move {
        let (mut events, mut cut) = state?;
        tokio::select! {
            ev = events.next() => ev.map(|ev| (ev, Some((events, cut)))),
            () = &mut cut => Some((Err(ApiError::shutting_down()), None)),
        }
    })
}

pub fn respond<F: Frontend>(
    events: EventStream,
    mut encoder: F,
    keep_alive: Duration,
    drain: &Drain,
) -> Response {
    let stream = until_cut(events, drain.reached(Phase::Cut))
        .scan(false, move |ended, ev| {
            if *ended {
                return futures::future::ready(None);
            }
            let payloads = match ev {
                Err(e) => {
                    *ended = true;
                    encoder.encode_error(e.to_body())
                }
                Ok(ev) => {
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
