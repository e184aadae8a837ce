//! What an upstream deployment has done, counted from the events relayed
//! through it, so that `/metrics` and the admin API show upstreams like
//! local engines: requests running, finished and cut off, and tokens.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::StreamExt;

use aitier_core::{EventStream, GenEvent, ProviderStats};

#[derive(Debug, Default)]
pub struct Meter {
    running: AtomicU64,
    finished: AtomicU64,
    cancelled: AtomicU64,
    prompt_tokens: AtomicU64,
    generated_tokens: AtomicU64,
}

/// One request in flight: running until dropped, cut off unless it ended.
struct InFlight {
    meter: Arc<Meter>,
    ended: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.meter.running.fetch_sub(1, Ordering::Relaxed);
        if !self.ended {
            self.meter.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Meter {
    /// The stream, counted as it goes.
    pub fn watch(self: &Arc<Self>, events: EventStream) -> EventStream {
        self.running.fetch_add(1, Ordering::Relaxed);
        let mut flight = InFlight {
            meter: self.clone(),
            ended: false,
        };
        events
            .inspect(move |ev| match ev {
                GenEvent::Done { usage, .. } => {
                    let m = &flight.meter;
                    m.prompt_tokens
                        .fetch_add(u64::from(usage.prompt_tokens), Ordering::Relaxed);
                    m.generated_tokens
                        .fetch_add(u64::from(usage.completion_tokens), Ordering::Relaxed);
                    m.finished.fetch_add(1, Ordering::Relaxed);
                    flight.ended = true;
                }
                // Failed, not cut off by the client.
                GenEvent::Error(_) => flight.ended = true,
                _ => {}
            })
            .boxed()
    }

    pub fn stats(&self) -> ProviderStats {
        let read = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProviderStats {
            prompt_tokens: read(&self.prompt_tokens),
            // An upstream's cache is its own: all of it counts as computed here.
            prompt_computed: read(&self.prompt_tokens),
            generated_tokens: read(&self.generated_tokens),
            requests_finished: read(&self.finished),
            requests_cancelled: read(&self.cancelled),
            running: read(&self.running),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aitier_protocol::Usage;
    use futures::stream;

    #[tokio::test]
    async fn finished_cut_off_and_running_requests_are_told_apart() {
        let meter = Arc::new(Meter::default());
        let done = GenEvent::Done {
            usage: Usage::new(7, 3, 0),
            estimated: false,
        };
        let whole = meter.watch(stream::iter(vec![done]).boxed());
        let mut cut = meter.watch(stream::pending().boxed());
        assert_eq!(meter.stats().running, 2);
        let _ = whole.collect::<Vec<_>>().await;
        assert!(futures::poll!(cut.next()).is_pending());
        drop(cut);
        let s = meter.stats();
        assert_eq!(
            (s.running, s.requests_finished, s.requests_cancelled),
            (0, 1, 1)
        );
        assert_eq!((s.prompt_tokens, s.generated_tokens), (7, 3));
    }
}
