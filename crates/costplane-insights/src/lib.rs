//! costplane-insights: anomalies, forecasts and budget arithmetic over cost
//! series. Pure functions, no I/O: the server reads the ledger, hands the
//! series here, and stores or sends what comes back.
//!
//! Money and floats: the ledger's sums arrive as exact [`Decimal`]s. The
//! statistics (medians, deviations, smoothing) run in `f64`, converted once
//! on the way in ([`to_f64`]); every figure reported back (expected value,
//! band, impact, forecast, projection) is converted once on the way out
//! ([`money`], rounded to [`MONEY_DP`] places). Actual spend is never
//! round-tripped through a float: reports carry the input `Decimal`.

pub mod anomaly;
pub mod baseline;
pub mod budget;
pub mod forecast;

use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;
use thiserror::Error;

pub use anomaly::{detect, Anomaly, Contributor, DetectConfig, Direction};
pub use baseline::{Baseline, Grain};
pub use forecast::{Forecast, ForecastPoint};

/// Decimal places of money computed from statistics (expected values,
/// bands, forecasts).
pub const MONEY_DP: u32 = 6;

/// Errors of the insights computations.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum InsightsError {
    /// A setting is out of range (e.g. a threshold of 0).
    #[error("invalid setting: {0}")]
    InvalidConfig(String),
    /// The series is too short for what was asked.
    #[error("not enough history: {0}")]
    NotEnoughHistory(String),
}

/// A ledger sum as a float for the statistics.
pub fn to_f64(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

/// A statistic as money, rounded to [`MONEY_DP`] places (NaN and infinities
/// become zero: they never reach a report as money).
pub fn money(x: f64) -> Decimal {
    if !x.is_finite() {
        return Decimal::ZERO;
    }
    Decimal::from_f64(x).unwrap_or_default().round_dp(MONEY_DP)
}
