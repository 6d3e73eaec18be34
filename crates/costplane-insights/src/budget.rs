//! Budget arithmetic: periods, thresholds, and which thresholds a period's
//! spend has crossed.
//!
//! A threshold is a percentage of the budget's amount, measured either on
//! actual spend so far or on the projected spend at the period's end. Each
//! crossing is identified by (budget, period start, threshold label): the
//! caller notifies once per identity and remembers it, so a threshold
//! notifies once per period however often it is evaluated.
//!
//! Projection for the `forecast` thresholds: the month uses the daily
//! forecast (`forecast.rs`) when the scope has enough history; otherwise,
//! and for days and weeks, the run rate: spend so far / elapsed time x the
//! period's length (an early-period guess that steadies as time passes).

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::InsightsError;

/// A budget's period, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Month,
    /// Monday to Monday (ISO weeks).
    Week,
    Day,
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists"))
}

impl Period {
    /// `[start, end)` of the period containing `at`.
    pub fn bounds(self, at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let day = at.date_naive();
        match self {
            Period::Day => (midnight(day), midnight(day) + Duration::days(1)),
            Period::Week => {
                let monday = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
                (midnight(monday), midnight(monday) + Duration::days(7))
            }
            Period::Month => {
                let first = NaiveDate::from_ymd_opt(day.year(), day.month(), 1).expect("the first of a month exists");
                let next = if day.month() == 12 {
                    NaiveDate::from_ymd_opt(day.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(day.year(), day.month() + 1, 1)
                }
                .expect("the first of a month exists");
                (midnight(first), midnight(next))
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Period::Month => "month",
            Period::Week => "week",
            Period::Day => "day",
        }
    }
}

/// What a threshold measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Measure {
    /// Spend so far in the period.
    Actual,
    /// Projected spend at the period's end.
    Forecast,
}

/// A percentage of the budget on a measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub percent: Decimal,
    #[serde(default = "actual")]
    pub measure: Measure,
}

fn actual() -> Measure {
    Measure::Actual
}

impl Threshold {
    /// A stable name, e.g. `90%-actual`: part of a crossing's identity.
    pub fn label(&self) -> String {
        let m = match self.measure {
            Measure::Actual => "actual",
            Measure::Forecast => "forecast",
        };
        format!("{}%-{m}", self.percent.normalize())
    }
}

/// 50%, 90% and 100% of actual spend, and 100% of projected spend.
pub fn default_thresholds() -> Vec<Threshold> {
    let t = |p: i64, measure| Threshold { percent: Decimal::from(p), measure };
    vec![t(50, Measure::Actual), t(90, Measure::Actual), t(100, Measure::Actual), t(100, Measure::Forecast)]
}

/// Checks an amount and its thresholds.
pub fn validate(amount: Decimal, thresholds: &[Threshold]) -> Result<(), InsightsError> {
    if amount <= Decimal::ZERO {
        return Err(InsightsError::InvalidConfig(format!("amount {amount} must be positive")));
    }
    for t in thresholds {
        if t.percent <= Decimal::ZERO || t.percent > Decimal::from(1000) {
            return Err(InsightsError::InvalidConfig(format!("threshold {}% must be above 0 and at most 1000", t.percent)));
        }
    }
    Ok(())
}

/// Spend so far extended to the whole period at the same rate.
pub fn run_rate(spent: Decimal, start: DateTime<Utc>, end: DateTime<Utc>, now: DateTime<Utc>) -> Decimal {
    let elapsed = (now.min(end) - start).num_seconds();
    if elapsed <= 0 {
        return spent;
    }
    let total = (end - start).num_seconds();
    (spent * Decimal::from(total) / Decimal::from(elapsed)).round_dp(crate::MONEY_DP)
}

/// The thresholds crossed: actual ones by `spent`, forecast ones by
/// `projected` (none when there is no projection).
pub fn crossed(amount: Decimal, spent: Decimal, projected: Option<Decimal>, thresholds: &[Threshold]) -> Vec<Threshold> {
    thresholds
        .iter()
        .filter(|t| {
            let value = match t.measure {
                Measure::Actual => Some(spent),
                Measure::Forecast => projected,
            };
            value.is_some_and(|v| v * Decimal::ONE_HUNDRED >= amount * t.percent)
        })
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    #[test]
    fn periods_are_utc_calendar_periods() {
        // 2026-11-25 is a Wednesday.
        let now = at(2026, 11, 25, 13);
        assert_eq!(Period::Day.bounds(now), (at(2026, 11, 25, 0), at(2026, 11, 26, 0)));
        assert_eq!(Period::Week.bounds(now), (at(2026, 11, 23, 0), at(2026, 11, 30, 0)));
        assert_eq!(Period::Month.bounds(now), (at(2026, 11, 1, 0), at(2026, 12, 1, 0)));
        assert_eq!(Period::Month.bounds(at(2026, 12, 31, 23)).1, at(2027, 1, 1, 0));
    }

    #[test]
    fn thresholds_cross_at_their_percentage() {
        let t = default_thresholds();
        let amount = Decimal::from(200);
        // $179.99 of $200 is 89.995%: only 50%.
        let c = crossed(amount, Decimal::new(17_999, 2), None, &t);
        assert_eq!(c.iter().map(Threshold::label).collect::<Vec<_>>(), vec!["50%-actual"]);
        // $180 is exactly 90%; a projection of $210 is 105%.
        let c = crossed(amount, Decimal::from(180), Some(Decimal::from(210)), &t);
        assert_eq!(c.iter().map(Threshold::label).collect::<Vec<_>>(), vec!["50%-actual", "90%-actual", "100%-forecast"]);
    }

    #[test]
    fn run_rate_extends_spend_to_the_period() {
        // $30 after 3 of 30 days of a month is $300 at the same rate.
        let (s, e) = (at(2026, 11, 1, 0), at(2026, 12, 1, 0));
        assert_eq!(run_rate(Decimal::from(30), s, e, at(2026, 11, 4, 0)), Decimal::from(300));
        assert_eq!(run_rate(Decimal::from(30), s, e, s), Decimal::from(30));
    }

    #[test]
    fn invalid_budgets_are_refused() {
        assert!(validate(Decimal::ZERO, &[]).is_err());
        assert!(validate(Decimal::ONE, &[Threshold { percent: Decimal::ZERO, measure: Measure::Actual }]).is_err());
        assert!(validate(Decimal::ONE, &default_thresholds()).is_ok());
    }
}
