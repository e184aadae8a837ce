//! What a tenant or a key may do. `None` means "no limit of this kind";
//! when both a tenant and its key set one, both apply.
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use aitier_core::clock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    Day,
    Month,
}

impl BudgetPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Month => "month",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "day" => Some(BudgetPeriod::Day),
            "month" => Some(BudgetPeriod::Month),
            _ => None,
        }
    }

    /// The UTC period `ms` falls in, as a stable label (`2026-11-29`,
    /// `2026-11`), and the millisecond the next one starts.
    pub fn window(self, ms: i64) -> (String, i64) {
        let date = clock::utc_date(ms);
        match self {
            BudgetPeriod::Day => (date.to_string(), clock::next_day_start(ms)),
            BudgetPeriod::Month => (
                format!("{:04}-{:02}", date.year(), date.month()),
                clock::next_month_start(ms),
            ),
        }
    }
}

/// The limits one tenant or one key carries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Model names this principal may use; `None` allows every model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u64>,
    /// Tokens (prompt + completion) per budget period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_period: Option<BudgetPeriod>,
    /// Share of the engine under contention (fair scheduler weight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

impl Limits {
    pub fn allows_model(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|list| list.iter().any(|m| m == model))
    }

    /// A budget needs both an amount and a period; a lone amount is a
    /// monthly budget.
    pub fn budget(&self) -> Option<(u64, BudgetPeriod)> {
        self.budget_tokens
            .map(|t| (t, self.budget_period.unwrap_or(BudgetPeriod::Month)))
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.weight == Some(0) {
            return Err("weight must be at least 1".into());
        }
        for (name, v) in [
            ("rpm", self.rpm),
            ("tpm", self.tpm),
            ("max_concurrent", self.max_concurrent),
        ] {
            if v == Some(0) {
                return Err(format!("{name} must be at least 1 (omit it for no limit)"));
            }
            if v.is_some_and(|v| v > i64::MAX as u64) {
                return Err(format!("{name} is too large"));
            }
        }
        if self.budget_tokens.is_some_and(|v| v > i64::MAX as u64) {
            return Err("budget_tokens is too large".into());
        }
        if self.budget_period.is_some() && self.budget_tokens.is_none() {
            return Err("budget_period needs budget_tokens".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aitier_core::clock::parse_date;

    #[test]
    fn budget_windows_reset_on_utc_boundaries() {
        let t = parse_date("2026-11-29").unwrap_or(0) + 5 * 3_600_000;
        let (label, next) = BudgetPeriod::Day.window(t);
        assert_eq!(label, "2026-11-29");
        assert_eq!(Some(next), parse_date("2026-11-30"));
        let (label, next) = BudgetPeriod::Month.window(t);
        assert_eq!(label, "2026-11");
        assert_eq!(Some(next), parse_date("2026-12-01"));
    }

    #[test]
    fn model_lists_and_validation() {
        let l = Limits {
            models: Some(vec!["a".into()]),
            ..Default::default()
        };
        assert!(l.allows_model("a") && !l.allows_model("b"));
        assert!(Limits::default().allows_model("b"));
        let zero = Limits {
            rpm: Some(0),
            ..Default::default()
        };
        assert!(zero.validate().is_err());
    }
}
