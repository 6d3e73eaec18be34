//! The robust seasonal baseline: what a bucket of spend is expected to be.
//!
//! Method. Spend has a weekly rhythm (weekdays against weekends) and, at
//! hourly grain, a daily one (office hours against nights). For a bucket at
//! time `t` the baseline looks at the same bucket of the same weekday in the
//! previous `weeks` weeks: `t - 1w, t - 2w, ..., t - Nw` (an hourly bucket is
//! compared with the same hour of the same weekday, which carries both
//! rhythms; a daily bucket with the same weekday). From those N values:
//!
//! - expected = their median,
//! - spread = 1.4826 x MAD (median absolute deviation from the median; the
//!   factor makes it estimate a standard deviation for normal noise),
//! - the robust z score of the actual value = (actual - expected) / spread.
//!
//! Medians, not means: one past spike (or outage) in the reference weeks
//! moves neither the expected value nor the spread, so an anomaly does not
//! hide the next one and a weekly pattern is learnt from any 3 of 4 weeks.
//!
//! The spread has a floor of `relative_floor` (default 5%) of the expected
//! value: a perfectly regular series has MAD 0, and without the floor a
//! cent of jitter would score infinity. Tiny absolute amounts are not
//! handled here but by the detector's impact floor.
//!
//! History before a series' first non-zero bucket is not history (the group
//! did not exist yet), and a bucket with fewer than `min_weeks` reference
//! values gets no baseline, hence no verdict.

use serde::{Deserialize, Serialize};

/// The size of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grain {
    Hour,
    Day,
}

impl Grain {
    pub fn seconds(self) -> i64 {
        match self {
            Grain::Hour => 3_600,
            Grain::Day => 86_400,
        }
    }

    /// Buckets per week: the seasonal period.
    pub fn per_week(self) -> usize {
        match self {
            Grain::Hour => 168,
            Grain::Day => 7,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Grain::Hour => "hour",
            Grain::Day => "day",
        }
    }
}

/// How the baseline is computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaselineConfig {
    /// Reference weeks looked back.
    pub weeks: usize,
    /// Fewest reference values for a verdict.
    pub min_weeks: usize,
    /// Floor of the spread, as a fraction of the expected value.
    pub relative_floor: f64,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        BaselineConfig { weeks: 4, min_weeks: 3, relative_floor: 0.05 }
    }
}

/// The expected value of one bucket and its spread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    pub expected: f64,
    /// Robust standard deviation (1.4826 x MAD, floored).
    pub spread: f64,
    /// Reference values used.
    pub samples: usize,
}

impl Baseline {
    /// The robust z score of `actual`.
    pub fn z(&self, actual: f64) -> f64 {
        let d = actual - self.expected;
        if d == 0.0 {
            0.0
        } else if self.spread > 0.0 {
            d / self.spread
        } else {
            d.signum() * f64::INFINITY
        }
    }

    /// `[low, high]` = expected -/+ `k` spreads, never below zero.
    pub fn band(&self, k: f64) -> (f64, f64) {
        ((self.expected - k * self.spread).max(0.0), self.expected + k * self.spread)
    }
}

/// The median of `values` (reordered in place); NaN for none.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Median absolute deviation from `center`.
pub fn mad(values: &[f64], center: f64) -> f64 {
    let mut dev: Vec<f64> = values.iter().map(|v| (v - center).abs()).collect();
    median(&mut dev)
}

/// The baseline of bucket `index` of `values` (buckets of `grain`), from
/// buckets at or after `first` (the series' first real bucket) only.
pub fn seasonal(values: &[f64], first: usize, index: usize, grain: Grain, config: &BaselineConfig) -> Option<Baseline> {
    let period = grain.per_week();
    let mut refs: Vec<f64> =
        (1..=config.weeks).filter_map(|k| index.checked_sub(k * period)).filter(|&i| i >= first).map(|i| values[i]).collect();
    if refs.len() < config.min_weeks.max(1) {
        return None;
    }
    let expected = median(&mut refs);
    let spread = (1.4826 * mad(&refs, expected)).max(config.relative_floor * expected.abs());
    Some(Baseline { expected, spread, samples: refs.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mad() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut []).is_nan());
        // |1-2|, |2-2|, |9-2| = 1, 0, 7 -> median 1: the outlier 9 moves nothing.
        assert_eq!(mad(&[1.0, 2.0, 9.0], 2.0), 1.0);
    }

    #[test]
    fn same_weekday_references_only() {
        // Daily series, 4 weeks + 1 day: Mondays (index 0, 7, 14, 21) are 10,
        // every other day 1. Index 28 is a Monday.
        let values: Vec<f64> = (0..29).map(|i| if i % 7 == 0 { 10.0 } else { 1.0 }).collect();
        let b = seasonal(&values, 0, 28, Grain::Day, &BaselineConfig::default()).unwrap();
        assert_eq!(b.samples, 4);
        assert_eq!(b.expected, 10.0);
        // MAD 0, so the spread is the 5% floor: 0.5.
        assert!((b.spread - 0.5).abs() < 1e-12);
        assert_eq!(b.z(10.0), 0.0);
        // 12 is (12 - 10) / 0.5 = 4 spreads above.
        assert!((b.z(12.0) - 4.0).abs() < 1e-12);
        assert_eq!(b.band(3.0), (8.5, 11.5));
    }

    #[test]
    fn too_little_history_gives_no_verdict() {
        let values = vec![1.0; 20];
        // Index 20 reaches back to 13 and 6 only: 2 references < 3.
        assert!(seasonal(&values, 0, 20, Grain::Day, &BaselineConfig::default()).is_none());
        // Buckets before the first real one do not count.
        let values = vec![1.0; 40];
        assert!(seasonal(&values, 20, 35, Grain::Day, &BaselineConfig::default()).is_none());
        assert!(seasonal(&values, 0, 35, Grain::Day, &BaselineConfig::default()).is_some());
    }
}
