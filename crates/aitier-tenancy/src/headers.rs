//! What a caller is told of its rate limits: OpenAI's `x-ratelimit-*`
//! headers and the durations they (and refusal messages) are written in.
use std::time::Duration;

use crate::limiter::Snapshot;

/// One `x-ratelimit-*` triple's worth per dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<Snapshot>,
    pub tokens: Option<Snapshot>,
}

impl RateHeaders {
    /// Header names and values, in OpenAI's formats.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (s, names) in [
            (
                self.requests,
                [
                    "x-ratelimit-limit-requests",
                    "x-ratelimit-remaining-requests",
                    "x-ratelimit-reset-requests",
                ],
            ),
            (
                self.tokens,
                [
                    "x-ratelimit-limit-tokens",
                    "x-ratelimit-remaining-tokens",
                    "x-ratelimit-reset-tokens",
                ],
            ),
        ] {
            if let Some(s) = s {
                out.push((names[0], s.limit.to_string()));
                out.push((names[1], s.remaining.to_string()));
                out.push((names[2], openai_duration(s.reset)));
            }
        }
        out
    }
}

/// Go-style duration text, as in OpenAI's `x-ratelimit-reset-*` headers.
pub fn openai_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let h = ms / 3_600_000;
    let m = (ms / 60_000) % 60;
    let s_ms = ms % 60_000;
    let secs = if s_ms.is_multiple_of(1000) {
        format!("{}s", s_ms / 1000)
    } else {
        let text = format!("{}.{:03}", s_ms / 1000, s_ms % 1000);
        format!("{}s", text.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_look_like_openai_headers() {
        assert_eq!(openai_duration(Duration::from_millis(12)), "12ms");
        assert_eq!(openai_duration(Duration::from_secs(1)), "1s");
        assert_eq!(openai_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(openai_duration(Duration::from_millis(59_712)), "59.712s");
        assert_eq!(openai_duration(Duration::from_millis(1_500)), "1.5s");
        assert_eq!(openai_duration(Duration::from_secs(3_723)), "1h2m3s");
    }
}
