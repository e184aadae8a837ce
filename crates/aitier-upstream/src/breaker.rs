//! A circuit breaker per deployment: it opens after `threshold` failures in
//! a row, stays open for `cooldown`, then lets exactly one probe through
//! (half-open); the probe's success closes it, its failure opens it again.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is out.
    HalfOpen,
}

#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    cooldown: Duration,
}

/// Leave to send one request. Report how it went; a permit dropped
/// unreported (the client went away first) frees a half-open probe slot.
#[derive(Debug)]
pub struct Permit {
    breaker: Arc<Breaker>,
    probe: bool,
    reported: bool,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold: threshold.max(1),
            cooldown,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if Instant::now() >= until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen => BreakerState::HalfOpen,
        }
    }

    /// Whether a request may go now (without taking the probe).
    pub fn would_allow(&self) -> bool {
        match *self.lock() {
            State::Closed { .. } => true,
            State::Open { until } => Instant::now() >= until,
            State::HalfOpen => false,
        }
    }

    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut s = self.lock();
        let probe = match *s {
            State::Closed { .. } => false,
            State::Open { until } if Instant::now() >= until => {
                *s = State::HalfOpen;
                true
            }
            State::Open { .. } | State::HalfOpen => return None,
        };
        Some(Permit {
            breaker: self.clone(),
            probe,
            reported: false,
        })
    }
}

impl Permit {
    pub fn success(mut self) {
        self.reported = true;
        *self.breaker.lock() = State::Closed { failures: 0 };
    }

    pub fn failure(mut self) {
        self.reported = true;
        let b = &self.breaker;
        let mut s = b.lock();
        let open = match *s {
            State::Closed { failures } => failures + 1 >= b.threshold,
            State::HalfOpen | State::Open { .. } => true,
        };
        *s = if open {
            State::Open {
                until: Instant::now() + b.cooldown,
            }
        } else if let State::Closed { failures } = *s {
            State::Closed {
                failures: failures + 1,
            }
        } else {
            State::Closed { failures: 1 }
        };
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.probe && !self.reported {
            let mut s = self.breaker.lock();
            if matches!(*s, State::HalfOpen) {
                // Nothing learned: let the next request probe.
                *s = State::Open {
                    until: Instant::now(),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_probes_once() {
        let b = Breaker::new(2, Duration::ZERO);
        b.try_acquire().expect("closed").failure();
        b.try_acquire().expect("still closed").success();
        b.try_acquire().expect("closed").failure();
        b.try_acquire().expect("closed").failure();
        // Open with no cooldown left: exactly one probe goes.
        let probe = b.try_acquire().expect("probe");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.try_acquire().is_none(), "one probe at a time");
        probe.failure();
        let probe = b.try_acquire().expect("probe again");
        probe.success();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn stays_open_during_the_cooldown() {
        let b = Breaker::new(1, Duration::from_secs(3600));
        b.try_acquire().expect("closed").failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.try_acquire().is_none());
    }

    #[test]
    fn an_abandoned_probe_frees_the_slot() {
        let b = Breaker::new(1, Duration::ZERO);
        b.try_acquire().expect("closed").failure();
        drop(b.try_acquire().expect("probe"));
        assert!(b.try_acquire().is_some());
    }
}
