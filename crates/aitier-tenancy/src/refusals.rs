//! Requests the limits refused, by reason, for the metrics.
use std::sync::atomic::{AtomicU64, Ordering};

/// Why admission refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// At its concurrency limit.
    Concurrency,
    /// Requests per minute.
    Rpm,
    /// Tokens per minute.
    Tpm,
    /// Larger than the tokens-per-minute limit allows at all.
    TooLarge,
    /// The token budget of the period is spent.
    Budget,
    /// The limits or budgets could not be checked (their store is down).
    Unavailable,
    /// The ledger is full: usage could not be recorded.
    LedgerFull,
}

impl Refusal {
    pub const ALL: [Refusal; 7] = [
        Refusal::Concurrency,
        Refusal::Rpm,
        Refusal::Tpm,
        Refusal::TooLarge,
        Refusal::Budget,
        Refusal::Unavailable,
        Refusal::LedgerFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Concurrency => "concurrency",
            Refusal::Rpm => "rpm",
            Refusal::Tpm => "tpm",
            Refusal::TooLarge => "too_large",
            Refusal::Budget => "budget",
            Refusal::Unavailable => "limits_unavailable",
            Refusal::LedgerFull => "ledger_full",
        }
    }
}

/// One counter per reason, and one for the requests let through unchecked
/// while the limiter was down (`fail_open`).
#[derive(Debug, Default)]
pub struct Refusals([AtomicU64; 7], AtomicU64);

impl Refusals {
    pub fn count_unchecked(&self) {
        self.1.fetch_add(1, Ordering::Relaxed);
    }

    pub fn unchecked(&self) -> u64 {
        self.1.load(Ordering::Relaxed)
    }

    pub fn count(&self, why: Refusal) {
        self.0[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Every reason with its count so far.
    pub fn counts(&self) -> impl Iterator<Item = (Refusal, u64)> + '_ {
        Refusal::ALL
            .into_iter()
            .map(|r| (r, self.0[r as usize].load(Ordering::Relaxed)))
    }
}
