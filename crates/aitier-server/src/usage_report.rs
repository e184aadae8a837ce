//! Usage reports shared by the admin API, a tenant's own `/v1/usage` and
//! the `aitier usage` command: the query's parameters and the JSON, CSV and
//! table renderings.
use serde::Deserialize;
use utoipa::IntoParams;

use aitier_core::clock::{parse_date, DAY_MS};
use aitier_tenancy::{GroupBy, UsageQuery, UsageRow};

/// Query parameters: `group_by=tenant,key,model,provider,endpoint,day,hour,status`,
/// `from`/`to` as UTC dates (both inclusive), filters, `latency=true` for
/// percentiles, and `format=json|csv`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    /// Comma-separated: `tenant`, `key`, `model`, `provider`, `endpoint`,
    /// `day`, `hour` (UTC, `2026-12-04T17`), `status`; `tenant,model,day`
    /// by default.
    pub group_by: Option<String>,
    /// First UTC day, `2026-11-29`, inclusive.
    pub from: Option<String>,
    /// Last UTC day, inclusive.
    pub to: Option<String>,
    /// A tenant's id or name.
    pub tenant: Option<String>,
    /// A key's public id.
    pub key: Option<String>,
    pub model: Option<String>,
    /// Add each group's time to first token and latency percentiles
    /// (p50, p90, p99, in ms): `ttft_ms_p50`, ..., `latency_ms_p99`.
    pub latency: Option<bool>,
    /// `json` (the default) or `csv`.
    pub format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Table,
}

impl Format {
    pub fn parse(text: Option<&str>, default: Format) -> Result<Format, String> {
        match text {
            None => Ok(default),
            Some("json") => Ok(Format::Json),
            Some("csv") => Ok(Format::Csv),
            Some("table") => Ok(Format::Table),
            Some(other) => Err(format!("unknown format `{other}`: use json, csv or table")),
        }
    }
}

pub const DEFAULT_GROUP_BY: &str = "tenant,model,day";

impl UsageParams {
    /// The store query, with `tenant` resolved by the caller (an id).
    pub fn query(&self, tenant_id: Option<String>) -> Result<UsageQuery, (String, String)> {
        let group_by = GroupBy::parse_list(self.group_by.as_deref().unwrap_or(DEFAULT_GROUP_BY))
            .map_err(|e| ("group_by".to_string(), e))?;
        let date = |name: &str, v: &Option<String>| -> Result<Option<i64>, (String, String)> {
            v.as_deref()
                .map(|d| {
                    parse_date(d).ok_or_else(|| {
                        (
                            name.to_string(),
                            format!("`{d}` is not a date like 2026-11-29"),
                        )
                    })
                })
                .transpose()
        };
        Ok(UsageQuery {
            group_by,
            tenant: tenant_id,
            key: self.key.clone(),
            model: self.model.clone(),
            from: date("from", &self.from)?,
            to: date("to", &self.to)?.map(|d| d + DAY_MS),
            latency: self.latency.unwrap_or(false),
        })
    }
}

const COLUMNS: [&str; 5] = [
    "requests",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "total_tokens",
];

const LATENCY_COLUMNS: [&str; 6] = [
    "ttft_ms_p50",
    "ttft_ms_p90",
    "ttft_ms_p99",
    "latency_ms_p50",
    "latency_ms_p90",
    "latency_ms_p99",
];

fn header(q: &UsageQuery) -> Vec<&'static str> {
    let mut h: Vec<&str> = q.group_by.iter().map(|g| g.column()).collect();
    h.extend(COLUMNS);
    if q.latency {
        h.extend(LATENCY_COLUMNS);
    }
    h
}

fn cells(q: &UsageQuery, r: &UsageRow) -> Vec<String> {
    let mut c: Vec<String> = q
        .group_by
        .iter()
        .map(|g| r.group(*g).unwrap_or_default().to_string())
        .collect();
    c.extend(
        [
            r.requests,
            r.prompt_tokens,
            r.cached_tokens,
            r.completion_tokens,
            r.total_tokens,
        ]
        .map(|n| n.to_string()),
    );
    if q.latency {
        let l = r.latency.clone().unwrap_or_default();
        c.extend(
            [
                l.ttft_ms_p50,
                l.ttft_ms_p90,
                l.ttft_ms_p99,
                l.latency_ms_p50,
                l.latency_ms_p90,
                l.latency_ms_p99,
            ]
            .map(|n| n.map(|n| n.to_string()).unwrap_or_default()),
        );
    }
    c
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn to_csv(q: &UsageQuery, rows: &[UsageRow]) -> String {
    let mut out = header(q).join(",");
    out.push('\n');
    for r in rows {
        let line: Vec<String> = cells(q, r).iter().map(|c| csv_field(c)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

pub fn to_table(q: &UsageQuery, rows: &[UsageRow]) -> String {
    let head: Vec<String> = header(q).into_iter().map(String::from).collect();
    let body: Vec<Vec<String>> = rows.iter().map(|r| cells(q, r)).collect();
    render_table(&head, &body)
}

/// Columns padded to their widest cell.
pub fn render_table(head: &[String], body: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for row in body {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(head);
    for row in body {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        let rows = vec![UsageRow {
            model: Some("a,b".into()),
            day: Some("2026-11-29".into()),
            requests: 2,
            prompt_tokens: 3,
            cached_tokens: 1,
            completion_tokens: 4,
            total_tokens: 7,
            ..Default::default()
        }];
        let mut q = UsageQuery {
            group_by: vec![GroupBy::Model, GroupBy::Day],
            ..Default::default()
        };
        assert_eq!(
            to_csv(&q, &rows),
            "model,day,requests,prompt_tokens,cached_tokens,completion_tokens,total_tokens\n\"a,b\",2026-11-29,2,3,1,4,7\n"
        );
        q.latency = true;
        let csv = to_csv(&q, &rows);
        assert!(
            csv.starts_with("model,day,requests,prompt_tokens,cached_tokens,completion_tokens,total_tokens,ttft_ms_p50,ttft_ms_p90,ttft_ms_p99,latency_ms_p50,latency_ms_p90,latency_ms_p99\n"),
            "{csv}"
        );
        assert!(csv.ends_with(",4,7,,,,,,\n"), "{csv}");
    }

    #[test]
    fn dates_are_inclusive_and_checked() {
        let p = UsageParams {
            from: Some("2026-11-01".into()),
            to: Some("2026-11-01".into()),
            ..Default::default()
        };
        let q = p.query(None).expect("valid");
        assert_eq!(q.to.unwrap_or(0) - q.from.unwrap_or(0), DAY_MS);
        let bad = UsageParams {
            to: Some("yesterday".into()),
            ..Default::default()
        };
        assert_eq!(bad.query(None).expect_err("bad").0, "to");
    }
}
