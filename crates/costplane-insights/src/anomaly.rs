//! Anomaly decisions over one cost series.
//!
//! A bucket is anomalous when both hold:
//! - its robust z score against the seasonal baseline (`baseline.rs`)
//!   exceeds `threshold` in absolute value (default 3), and
//! - its impact, |actual - expected| in money, is at least `impact_floor`
//!   (default $1). The floor is the same amount at both grains: an hour must
//!   move a whole floor's worth of money on its own to be reported, and a
//!   slow drift too small per hour shows at daily grain instead. This is
//!   what keeps noise on tiny spend quiet: a group spending cents whose
//!   cents triple has a huge z and no impact.
//!
//! Consecutive anomalous buckets moving the same way form one anomaly (a
//! sustained step is one event, not 24 hourly ones); its figures are sums
//! over its buckets and its score is the largest in absolute value.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::baseline::{self, BaselineConfig, Grain};
use crate::{money, to_f64, InsightsError};

/// Detection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectConfig {
    /// |robust z| above this is unusual.
    pub threshold: f64,
    /// The least |actual - expected| worth reporting, in money.
    pub impact_floor: Decimal,
    pub baseline: BaselineConfig,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig { threshold: 3.0, impact_floor: Decimal::ONE, baseline: BaselineConfig::default() }
    }
}

impl DetectConfig {
    pub fn validate(&self) -> Result<(), InsightsError> {
        if !(self.threshold.is_finite() && self.threshold > 0.0) {
            return Err(InsightsError::InvalidConfig(format!("threshold {} must be a positive number", self.threshold)));
        }
        if self.impact_floor < Decimal::ZERO {
            return Err(InsightsError::InvalidConfig("impact_floor must not be negative".into()));
        }
        if self.baseline.weeks == 0 || self.baseline.min_weeks > self.baseline.weeks {
            return Err(InsightsError::InvalidConfig("need 1 <= min_weeks <= weeks".into()));
        }
        Ok(())
    }
}

/// Which way spend moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Spike,
    Drop,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Spike => "spike",
            Direction::Drop => "drop",
        }
    }
}

/// Spend per bucket, oldest first: bucket `i` covers
/// `[start + i * grain, start + (i + 1) * grain)` (Unix seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub start: i64,
    pub grain: Grain,
    pub values: Vec<Decimal>,
}

impl Series {
    /// Start (Unix seconds) of bucket `i`.
    pub fn at(&self, i: usize) -> i64 {
        self.start + i as i64 * self.grain.seconds()
    }

    /// Index of the first non-zero bucket: where the group's history begins.
    pub fn first_real(&self) -> usize {
        self.values.iter().position(|v| !v.is_zero()).unwrap_or(self.values.len())
    }
}

/// Who moved most inside an anomaly's window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contributor {
    /// The dimension (`operation`, `usage_type`, `resource`, ...).
    pub dimension: String,
    pub value: String,
    pub actual: Decimal,
    pub expected: Decimal,
    pub change: Decimal,
}

/// One anomaly: consecutive unusual buckets moving the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    pub grain: Grain,
    /// `[start, end)` in Unix seconds.
    pub start: i64,
    pub end: i64,
    pub direction: Direction,
    /// Spend in the window, exact (summed from the ledger's decimals).
    pub actual: Decimal,
    pub expected: Decimal,
    /// The window's band: expected -/+ threshold spreads, summed.
    pub band_low: Decimal,
    pub band_high: Decimal,
    /// The largest |z| of its buckets, with its sign.
    pub score: f64,
    /// actual - expected.
    pub impact: Decimal,
    /// impact / expected x 100; absent when nothing was expected.
    pub impact_pct: Option<Decimal>,
    /// Whether it reaches the last bucket evaluated (may continue).
    pub ongoing: bool,
    #[serde(default)]
    pub contributors: Vec<Contributor>,
}

/// The verdict on one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub index: usize,
    pub expected: f64,
    pub spread: f64,
    pub z: f64,
    pub anomalous: bool,
}

/// Verdicts on buckets `from..` of `series` (buckets without enough
/// history are skipped).
pub fn verdicts(series: &Series, from: usize, config: &DetectConfig) -> Vec<Verdict> {
    let values: Vec<f64> = series.values.iter().map(|v| to_f64(*v)).collect();
    let first = series.first_real();
    let floor = to_f64(config.impact_floor);
    (from..values.len())
        .filter_map(|i| {
            let b = baseline::seasonal(&values, first, i, series.grain, &config.baseline)?;
            let z = b.z(values[i]);
            let impact = (values[i] - b.expected).abs();
            let anomalous = z.abs() > config.threshold && impact >= floor;
            Some(Verdict { index: i, expected: b.expected, spread: b.spread, z, anomalous })
        })
        .collect()
}

/// The anomalies among buckets `from..` of `series`.
pub fn detect(series: &Series, from: usize, config: &DetectConfig) -> Vec<Anomaly> {
    let verdicts = verdicts(series, from, config);
    let last = series.values.len().saturating_sub(1);
    let mut out: Vec<(Anomaly, usize)> = Vec::new();
    let k = config.threshold;
    for v in verdicts.iter().filter(|v| v.anomalous) {
        let actual = series.values[v.index];
        let direction = if v.z > 0.0 { Direction::Spike } else { Direction::Drop };
        let (lo, hi) = ((v.expected - k * v.spread).max(0.0), v.expected + k * v.spread);
        let bucket_start = series.at(v.index);
        let bucket_end = bucket_start + series.grain.seconds();
        if let Some((a, last_index)) = out.last_mut() {
            if *last_index + 1 == v.index && a.direction == direction {
                a.end = bucket_end;
                a.actual += actual;
                a.expected += money(v.expected);
                a.band_low += money(lo);
                a.band_high += money(hi);
                if v.z.abs() > a.score.abs() {
                    a.score = v.z;
                }
                *last_index = v.index;
                continue;
            }
        }
        out.push((
            Anomaly {
                grain: series.grain,
                start: bucket_start,
                end: bucket_end,
                direction,
                actual,
                expected: money(v.expected),
                band_low: money(lo),
                band_high: money(hi),
                score: v.z,
                impact: Decimal::ZERO,
                impact_pct: None,
                ongoing: false,
                contributors: Vec::new(),
            },
            v.index,
        ));
    }
    out.into_iter()
        .map(|(mut a, last_index)| {
            a.impact = a.actual - a.expected;
            a.impact_pct = (!a.expected.is_zero()).then(|| (a.impact * Decimal::ONE_HUNDRED / a.expected).round_dp(2).normalize());
            a.ongoing = last_index == last;
            if !a.score.is_finite() {
                // Nothing was expected and something came: report a large
                // finite score so JSON can carry it.
                a.score = a.score.signum() * 1e9;
            }
            a
        })
        .collect()
}

/// The `n` contributors that moved most, from (dimension, value, actual,
/// expected) per contributor, largest |change| first.
pub fn top_contributors(items: Vec<(String, String, Decimal, Decimal)>, n: usize) -> Vec<Contributor> {
    let mut c: Vec<Contributor> = items
        .into_iter()
        .map(|(dimension, value, actual, expected)| Contributor {
            dimension,
            value,
            actual,
            expected,
            change: (actual - expected).normalize(),
        })
        .filter(|c| !c.change.is_zero())
        .collect();
    c.sort_by(|a, b| b.change.abs().cmp(&a.change.abs()).then_with(|| a.value.cmp(&b.value)));
    c.truncate(n);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(x: i64) -> Decimal {
        Decimal::from(x)
    }

    #[test]
    fn merges_consecutive_buckets_and_sums_money() {
        // 5 weeks of $10/day, then days 35 and 36 at $50.
        let mut values = vec![d(10); 37];
        values[35] = d(50);
        values[36] = d(50);
        let s = Series { start: 0, grain: Grain::Day, values };
        let found = detect(&s, 28, &DetectConfig::default());
        assert_eq!(found.len(), 1);
        let a = &found[0];
        assert_eq!((a.start, a.end), (35 * 86_400, 37 * 86_400));
        // actual 50 + 50 = 100, expected 10 + 10 = 20, impact 80 = 400%.
        assert_eq!((a.actual, a.expected, a.impact), (d(100), d(20), d(80)));
        assert_eq!(a.impact_pct, Some(d(400)));
        // Spread 5% of 10 = 0.5; band per day 10 -/+ 1.5 -> 17 and 23 for two days.
        assert_eq!((a.band_low, a.band_high), (d(17), d(23)));
        // z = (50 - 10) / 0.5 = 80.
        assert!((a.score - 80.0).abs() < 1e-9);
        assert!(a.ongoing);
        assert_eq!(a.direction, Direction::Spike);
    }

    #[test]
    fn contributors_rank_by_absolute_change() {
        let top = top_contributors(
            vec![
                ("operation".into(), "chat".into(), d(30), d(10)),
                ("operation".into(), "embed".into(), d(1), d(26)),
                ("operation".into(), "rerank".into(), d(5), d(5)),
            ],
            2,
        );
        assert_eq!(top.iter().map(|c| (c.value.as_str(), c.change)).collect::<Vec<_>>(), vec![("embed", d(-25)), ("chat", d(20))]);
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(DetectConfig { threshold: 0.0, ..DetectConfig::default() }.validate().is_err());
        assert!(DetectConfig { impact_floor: d(-1), ..DetectConfig::default() }.validate().is_err());
        assert!(DetectConfig::default().validate().is_ok());
    }
}
