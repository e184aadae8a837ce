//! Wall-clock time, all from `jiff`: Unix times for responses and the
//! ledger, UTC days and months for budget periods and usage reports, and
//! `strftime` for chat templates. No local time zones: UTC is what every
//! replica agrees on.
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

pub const DAY_MS: i64 = 86_400_000;

pub fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

pub fn unix_secs() -> u64 {
    Timestamp::now().as_second().max(0) as u64
}

/// The UTC day a Unix millisecond falls in.
pub fn utc_date(ms: i64) -> Date {
    Timestamp::from_millisecond(ms)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(TimeZone::UTC)
        .date()
}

/// The Unix millisecond a UTC day starts at.
pub fn start_ms(date: Date) -> i64 {
    date.to_zoned(TimeZone::UTC)
        .map(|z| z.timestamp().as_millisecond())
        .unwrap_or(0)
}

/// `YYYY-MM-DD` of a Unix millisecond.
pub fn date_of(ms: i64) -> String {
    utc_date(ms).to_string()
}

/// Parses `YYYY-MM-DD` (exactly) into the Unix millisecond its day starts at.
pub fn parse_date(text: &str) -> Option<i64> {
    if text.len() != 10 {
        return None;
    }
    text.parse::<Date>().ok().map(start_ms)
}

/// The first millisecond of the next UTC day.
pub fn next_day_start(ms: i64) -> i64 {
    let day = utc_date(ms);
    start_ms(day.tomorrow().unwrap_or(day))
}

/// The first millisecond of the next UTC month.
pub fn next_month_start(ms: i64) -> i64 {
    let first = utc_date(ms).first_of_month();
    start_ms(first.checked_add(1.month()).unwrap_or(first))
}

/// The current UTC time in a `strftime` format (as chat templates' own
/// `strftime_now` asks for it).
pub fn strftime_now(format: &str) -> Result<String, String> {
    let now = Timestamp::now().to_zoned(TimeZone::UTC);
    jiff::fmt::strtime::format(format, &now).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips() {
        assert_eq!(date_of(1_795_000_000_000), "2026-11-18");
        assert_eq!(parse_date("2026-11-29"), Some(20_786 * 86_400_000));
        assert_eq!(parse_date("2026-02-31"), None);
        assert_eq!(parse_date("2026-1-1"), None);
        assert_eq!(
            date_of(next_month_start(parse_date("2026-12-15").unwrap_or(0))),
            "2027-01-01"
        );
        let t = parse_date("2026-11-29").unwrap_or(0) + 5 * 3_600_000;
        assert_eq!(Some(next_day_start(t)), parse_date("2026-11-30"));
        for days in [-1000i64, 0, 59, 60, 365, 11_016, 20_000, 20_785] {
            let ms = days * 86_400_000;
            assert_eq!(parse_date(&date_of(ms)), Some(ms));
        }
    }

    #[test]
    fn strftime_takes_what_templates_use_and_refuses_nonsense() {
        let out = strftime_now("%d %B %Y").expect("formats");
        assert_eq!(out.len(), out.trim().len());
        assert!(out.ends_with(&date_of(now_ms())[..4]), "{out}");
        assert!(strftime_now("%Y %").is_err());
    }
}
