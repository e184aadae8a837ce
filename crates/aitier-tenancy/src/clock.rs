//! Wall-clock helpers: Unix milliseconds, UTC calendar periods for budgets,
//! and durations in the format OpenAI's rate-limit headers use (`6m0s`,
//! `12ms`).
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub use aitier_core::calendar::{civil_from_days, days_from_civil};

pub const DAY_MS: i64 = 86_400_000;

pub fn date_of(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses `YYYY-MM-DD` into the Unix millisecond its day starts at.
pub fn parse_date(text: &str) -> Option<i64> {
    let mut parts = text.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if text.len() != 10 || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // Rejects 2026-02-31 and the like.
    (civil_from_days(days) == (y, m, d)).then_some(days * DAY_MS)
}

/// The first millisecond of the next UTC month.
pub fn next_month_start(ms: i64) -> i64 {
    let (y, m, _) = civil_from_days(ms.div_euclid(DAY_MS));
    let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    days_from_civil(y, m, 1) * DAY_MS
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
    fn calendar_round_trips() {
        assert_eq!(date_of(1_795_000_000_000), "2026-11-18");
        assert_eq!(parse_date("2026-11-29"), Some(20_786 * DAY_MS));
        assert_eq!(parse_date("2026-02-31"), None);
        assert_eq!(parse_date("2026-1-1"), None);
        assert_eq!(
            date_of(next_month_start(parse_date("2026-12-15").unwrap_or(0))),
            "2027-01-01"
        );
    }

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
