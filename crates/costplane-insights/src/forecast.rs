//! Daily spend forecasts with 80% and 95% bands, month-end projections and
//! the forecast's measured error.
//!
//! Model: additive Holt-Winters with a weekly season (level, trend and
//! seven day-of-week offsets, each exponentially smoothed). The smoothing
//! weights are picked per series from a small grid by the sum of squared
//! one-day-ahead errors over its history. It was chosen over a seasonal
//! naive forecast ("the same weekday last week") by the backtest in this
//! module's tests: on a series with trend and a weekly pattern the naive
//! forecast lags the trend and carries last week's noise into every day,
//! Holt-Winters does neither (both MAPEs are printed by
//! `holt_winters_beats_seasonal_naive`).
//!
//! Bands are empirical, not from a normal assumption: a rolling-origin
//! backtest refits the model at every origin of the history (up to
//! `MAX_ORIGINS`), forecasts `h` days ahead, and keeps the errors
//! (actual - forecast) per horizon `h`, and of the cumulative sum over
//! `1..=h`. A band at horizon `h` is the forecast plus the 10%/90%
//! (80% band) and 2.5%/97.5% (95% band) quantiles of those errors. Where a
//! horizon has fewer than `MIN_ERRORS` errors (long horizons on short
//! history), the errors of the longest horizon that has enough are
//! stretched: by sqrt(h/h') per day, by h/h' for cumulative sums (errors of
//! neighbouring days are correlated, so a sum's error grows about linearly).
//! With no usable backtest at all, the in-sample one-day error's spread
//! times sqrt(h) and normal quantiles stand in. Bands never go below 0.
//!
//! The backtest's MAPE (mean |error| / actual over every horizon and origin,
//! days with spend only) is reported with each forecast.

use rust_decimal::Decimal;
use serde::Serialize;

use crate::{money, to_f64, InsightsError};

/// Days in the seasonal cycle.
pub const SEASON: usize = 7;
/// Fewest days of history to forecast from (two weekly cycles initialise it).
pub const MIN_HISTORY: usize = 2 * SEASON;
/// Fewest backtest errors at a horizon for its own quantiles.
pub const MIN_ERRORS: usize = 12;
/// Most backtest origins (the most recent ones).
pub const MAX_ORIGINS: usize = 90;

const ALPHAS: [f64; 3] = [0.1, 0.3, 0.5];
const BETAS: [f64; 3] = [0.0, 0.05, 0.15];
const GAMMAS: [f64; 3] = [0.05, 0.2, 0.4];

/// A fitted Holt-Winters model, ready to forecast from the end of its history.
#[derive(Debug, Clone, PartialEq)]
pub struct HoltWinters {
    level: f64,
    trend: f64,
    /// Offsets by position in the cycle; `season[i]` is for the day with
    /// `index % SEASON == i`.
    season: [f64; SEASON],
    /// Length of the history fitted.
    n: usize,
    /// Sum of squared one-day-ahead errors over the history.
    pub sse: f64,
    /// Standard deviation of those errors.
    pub sigma: f64,
}

impl HoltWinters {
    fn run(values: &[f64], alpha: f64, beta: f64, gamma: f64) -> HoltWinters {
        let m = SEASON;
        let first = values[..m].iter().sum::<f64>() / m as f64;
        let second = values[m..2 * m].iter().sum::<f64>() / m as f64;
        let mut level = first;
        let mut trend = (second - first) / m as f64;
        let mut season = [0.0; SEASON];
        for (i, s) in season.iter_mut().enumerate() {
            *s = values[i] - first;
        }
        // Day i of the first cycle sits (m-1)/2 - i days from the cycle's
        // middle, where `first` is the level: start the level at the end of
        // the first cycle.
        level += trend * (m as f64 - 1.0) / 2.0;
        let (mut sse, mut count) = (0.0, 0usize);
        for (t, &x) in values.iter().enumerate().skip(m) {
            let s = season[t % m];
            let predicted = level + trend + s;
            let e = x - predicted;
            sse += e * e;
            count += 1;
            let new_level = alpha * (x - s) + (1.0 - alpha) * (level + trend);
            trend = beta * (new_level - level) + (1.0 - beta) * trend;
            season[t % m] = gamma * (x - new_level) + (1.0 - gamma) * s;
            level = new_level;
        }
        let sigma = if count > 1 { (sse / (count - 1) as f64).sqrt() } else { 0.0 };
        HoltWinters { level, trend, season, n: values.len(), sse, sigma }
    }

    /// Fits the grid's best weights to `values` (at least [`MIN_HISTORY`] days).
    pub fn fit(values: &[f64]) -> Result<HoltWinters, InsightsError> {
        if values.len() < MIN_HISTORY {
            return Err(InsightsError::NotEnoughHistory(format!("{} days; forecasts need {MIN_HISTORY}", values.len())));
        }
        let mut best: Option<HoltWinters> = None;
        for a in ALPHAS {
            for b in BETAS {
                for g in GAMMAS {
                    let m = HoltWinters::run(values, a, b, g);
                    if best.as_ref().is_none_or(|x| m.sse < x.sse) {
                        best = Some(m);
                    }
                }
            }
        }
        Ok(best.expect("the grid is not empty"))
    }

    /// The forecast `h` (1-based) days after the history's end.
    pub fn predict(&self, h: usize) -> f64 {
        let t = self.n + h - 1;
        (self.level + self.trend * h as f64 + self.season[t % SEASON]).max(0.0)
    }
}

/// The seasonal naive forecast `h` days after the end of `values`: the same
/// weekday in the last week. Kept as the reference Holt-Winters must beat.
pub fn seasonal_naive(values: &[f64], h: usize) -> f64 {
    let n = values.len();
    values[n - SEASON + (h - 1) % SEASON]
}

/// Low and high ends of the 80% and 95% bands around a value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Band {
    pub mean: Decimal,
    pub lo80: Decimal,
    pub hi80: Decimal,
    pub lo95: Decimal,
    pub hi95: Decimal,
}

/// One forecast day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForecastPoint {
    /// Days after the history's last day (1 = the next day).
    pub ahead: usize,
    #[serde(flatten)]
    pub band: Band,
}

/// A forecast of the days after a history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    pub method: &'static str,
    pub points: Vec<ForecastPoint>,
    /// `cumulative[i]`: the sum over the first `i + 1` days, with its band.
    pub cumulative: Vec<Band>,
    /// Backtest MAPE in percent; absent when there was nothing to backtest.
    pub backtest_mape: Option<f64>,
    pub backtest_origins: usize,
}

impl Forecast {
    /// The sum over the first `days` forecast days (0 days: all zero).
    pub fn total(&self, days: usize) -> Band {
        if days == 0 {
            let z = Decimal::ZERO;
            return Band { mean: z, lo80: z, hi80: z, lo95: z, hi95: z };
        }
        self.cumulative[days.min(self.cumulative.len()) - 1]
    }
}

/// Errors of a rolling-origin backtest: `daily[h-1]` and `cumulative[h-1]`
/// hold actual - forecast for horizon `h` over every origin.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Backtest {
    pub daily: Vec<Vec<f64>>,
    pub cumulative: Vec<Vec<f64>>,
    pub abs_pct: Vec<f64>,
    pub origins: usize,
}

impl Backtest {
    pub fn mape(&self) -> Option<f64> {
        (!self.abs_pct.is_empty()).then(|| self.abs_pct.iter().sum::<f64>() / self.abs_pct.len() as f64)
    }
}

/// A fitted forecast: days ahead (1-based) -> value.
pub type Predictor = Box<dyn Fn(usize) -> f64>;

/// Backtests `predict` (history -> fitted forecast) over `values`.
pub fn backtest(values: &[f64], horizon: usize, predict: &dyn Fn(&[f64]) -> Option<Predictor>) -> Backtest {
    let mut bt = Backtest { daily: vec![Vec::new(); horizon], cumulative: vec![Vec::new(); horizon], abs_pct: Vec::new(), origins: 0 };
    let n = values.len();
    if n <= MIN_HISTORY {
        return bt;
    }
    let first_origin = MIN_HISTORY.max(n.saturating_sub(MAX_ORIGINS));
    for origin in first_origin..n {
        let Some(f) = predict(&values[..origin]) else { continue };
        bt.origins += 1;
        let mut cum = 0.0;
        for h in 1..=horizon.min(n - origin) {
            let actual = values[origin + h - 1];
            let e = actual - f(h);
            cum += e;
            bt.daily[h - 1].push(e);
            bt.cumulative[h - 1].push(cum);
            if actual > 0.0 {
                bt.abs_pct.push(e.abs() / actual * 100.0);
            }
        }
    }
    bt
}

fn holt_winters_predictor(history: &[f64]) -> Option<Predictor> {
    let m = HoltWinters::fit(history).ok()?;
    Some(Box::new(move |h| m.predict(h)))
}

/// Empirical quantile `p` of `errors` (sorted in place), by linear interpolation.
fn quantile(errors: &mut [f64], p: f64) -> f64 {
    errors.sort_by(f64::total_cmp);
    let pos = p * (errors.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos - pos.floor());
    if i + 1 < errors.len() {
        errors[i] * (1.0 - frac) + errors[i + 1] * frac
    } else {
        errors[i]
    }
}

const PROBS: [f64; 4] = [0.025, 0.10, 0.90, 0.975];
const NORMAL_Z: [f64; 4] = [-1.959_964, -1.281_552, 1.281_552, 1.959_964];

/// Error quantiles (2.5%, 10%, 90%, 97.5%) at each horizon `1..=horizon`.
fn error_quantiles(errors: &[Vec<f64>], horizon: usize, sigma: f64, linear: bool) -> Vec<[f64; 4]> {
    let enough = errors.iter().rposition(|e| e.len() >= MIN_ERRORS);
    let base = enough.map(|i| {
        let mut e = errors[i].clone();
        (i + 1, PROBS.map(|p| quantile(&mut e, p)))
    });
    (1..=horizon)
        .map(|h| match (errors.get(h - 1), base) {
            (Some(e), _) if e.len() >= MIN_ERRORS => {
                let mut e = e.clone();
                PROBS.map(|p| quantile(&mut e, p))
            }
            (_, Some((hb, q))) => {
                let ratio = h as f64 / hb as f64;
                let stretch = if linear { ratio } else { ratio.sqrt() };
                q.map(|x| x * stretch)
            }
            (_, None) => {
                let scale = if linear { sigma * h as f64 } else { sigma * (h as f64).sqrt() };
                NORMAL_Z.map(|z| z * scale)
            }
        })
        .collect()
}

fn band(mean: f64, q: [f64; 4]) -> Band {
    let at = |x: f64| money((mean + x).max(0.0));
    Band { mean: money(mean), lo95: at(q[0]), lo80: at(q[1]), hi80: at(q[2]), hi95: at(q[3]) }
}

/// Forecasts the `horizon` days after `history` (daily spend, oldest first).
pub fn forecast(history: &[Decimal], horizon: usize) -> Result<Forecast, InsightsError> {
    let values: Vec<f64> = history.iter().map(|d| to_f64(*d)).collect();
    let model = HoltWinters::fit(&values)?;
    let bt = backtest(&values, horizon, &holt_winters_predictor);
    let daily_q = error_quantiles(&bt.daily, horizon, model.sigma, false);
    let cum_q = error_quantiles(&bt.cumulative, horizon, model.sigma, true);
    let mut points = Vec::with_capacity(horizon);
    let mut cumulative = Vec::with_capacity(horizon);
    let mut sum = 0.0;
    for h in 1..=horizon {
        let mean = model.predict(h);
        sum += mean;
        points.push(ForecastPoint { ahead: h, band: band(mean, daily_q[h - 1]) });
        cumulative.push(band(sum, cum_q[h - 1]));
    }
    Ok(Forecast { method: "holt-winters-weekly", points, cumulative, backtest_mape: bt.mape(), backtest_origins: bt.origins })
}

/// A month-end projection: spend so far plus the forecast of the days left.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Projection {
    pub month_to_date: Decimal,
    #[serde(flatten)]
    pub band: Band,
}

/// Projects a period's total: `so_far` (exact, the complete days already
/// in the period) plus the forecast's sum over the `days_left` days.
pub fn project(so_far: Decimal, forecast: &Forecast, days_left: usize) -> Projection {
    let rest = forecast.total(days_left);
    Projection {
        month_to_date: so_far,
        band: Band {
            mean: so_far + rest.mean,
            lo80: so_far + rest.lo80,
            hi80: so_far + rest.hi80,
            lo95: so_far + rest.lo95,
            hi95: so_far + rest.hi95,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holt_winters_learns_an_exact_trend_and_week() {
        // 10 + 0.5 t plus a weekend bump of +6 on days 5 and 6 of each week.
        let f = |t: usize| 10.0 + 0.5 * t as f64 + if t % 7 >= 5 { 6.0 } else { 0.0 };
        let values: Vec<f64> = (0..56).map(f).collect();
        let m = HoltWinters::fit(&values).unwrap();
        for h in 1..=14 {
            let want = f(55 + h);
            assert!((m.predict(h) - want).abs() < 0.05 * want, "h={h}: {} vs {want}", m.predict(h));
        }
    }

    #[test]
    fn too_short_history_is_refused() {
        let history = vec![Decimal::ONE; 10];
        assert!(matches!(forecast(&history, 5), Err(InsightsError::NotEnoughHistory(_))));
    }

    #[test]
    fn quantiles_interpolate() {
        let mut e = vec![4.0, 0.0, 2.0, 1.0, 3.0];
        assert_eq!(quantile(&mut e, 0.5), 2.0);
        assert_eq!(quantile(&mut e, 0.1), 0.4);
        assert_eq!(quantile(&mut e, 1.0), 4.0);
    }

    #[test]
    fn projection_adds_the_rest_to_the_exact_spend_so_far() {
        let history: Vec<Decimal> = (0..28).map(|_| Decimal::from(10)).collect();
        let fc = forecast(&history, 10).unwrap();
        // A flat $10/day: 3 more days are $30 on top of $123.45 spent.
        let p = project(Decimal::new(12_345, 2), &fc, 3);
        assert_eq!(p.month_to_date, Decimal::new(12_345, 2));
        assert!((to_f64(p.band.mean) - 153.45).abs() < 0.01, "{p:?}");
        assert!(p.band.lo95 <= p.band.lo80 && p.band.lo80 <= p.band.mean && p.band.mean <= p.band.hi80 && p.band.hi80 <= p.band.hi95);
    }
}
