//! Forecast backtests on a series with trend and weekly seasonality.

use costplane_insights::forecast::{self, backtest, project, seasonal_naive, HoltWinters};
use costplane_insights::to_f64;
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;

use crate::Rng;

/// $50/day growing $0.4/day, weekends $25 lower, noise with sd $4.
fn trend_weekly(days: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..days)
        .map(|t| {
            let weekend = if t % 7 >= 5 { -25.0 } else { 0.0 };
            (50.0 + 0.4 * t as f64 + weekend + 4.0 * rng.normal()).max(0.0)
        })
        .collect()
}

fn dec(values: &[f64]) -> Vec<Decimal> {
    values.iter().map(|v| Decimal::from_f64(*v).unwrap().round_dp(6)).collect()
}

#[test]
fn holt_winters_beats_seasonal_naive() {
    let (mut hw, mut naive) = (Vec::new(), Vec::new());
    for seed in 0..10 {
        let v = trend_weekly(120, seed);
        let bt_hw = backtest(&v, 14, &|h: &[f64]| {
            let m = HoltWinters::fit(h).ok()?;
            Some(Box::new(move |k| m.predict(k)) as forecast::Predictor)
        });
        let bt_naive = backtest(&v, 14, &|h: &[f64]| {
            let h = h.to_vec();
            Some(Box::new(move |k| seasonal_naive(&h, k)) as forecast::Predictor)
        });
        hw.push(bt_hw.mape().unwrap());
        naive.push(bt_naive.mape().unwrap());
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!("backtest MAPE over 14 days ahead, 10 series: holt-winters {:.2}%, seasonal naive {:.2}%", mean(&hw), mean(&naive));
    assert!(mean(&hw) < mean(&naive));
}

#[test]
fn month_end_projection_falls_inside_its_band() {
    // Days 0..92 are history; the month is days 92..122 (30 days) and "now"
    // is the start of day 107: 15 days spent, 15 to forecast.
    let (month_start, now, month_end) = (92, 107, 122);
    let mut inside = (0, 0);
    let seeds = 40;
    for seed in 0..seeds {
        let v = trend_weekly(month_end, 100 + seed);
        let history = dec(&v[..now]);
        let so_far: Decimal = history[month_start..].iter().sum();
        let truth: f64 = v[month_start..month_end].iter().sum();
        let fc = forecast::forecast(&history, 30).unwrap();
        let p = project(so_far, &fc, month_end - now);
        if seed == 0 {
            // Hand-worked: the trend alone adds 0.4 x day index, so the 30
            // days 92..121 average 50 + 0.4 x 106.5 = 92.6 on weekdays;
            // 8 or 9 weekend days at -25 put the month near $2,560.
            println!(
                "month-end: truth {truth:.2}, projection {} (80% {}..{}, 95% {}..{}), MAPE {:.2}%",
                p.band.mean,
                p.band.lo80,
                p.band.hi80,
                p.band.lo95,
                p.band.hi95,
                fc.backtest_mape.unwrap()
            );
            assert!((2_400.0..2_700.0).contains(&truth));
            assert!(to_f64(p.band.lo95) <= truth && truth <= to_f64(p.band.hi95), "truth outside the 95% band");
        }
        inside.0 += usize::from(to_f64(p.band.lo80) <= truth && truth <= to_f64(p.band.hi80));
        inside.1 += usize::from(to_f64(p.band.lo95) <= truth && truth <= to_f64(p.band.hi95));
    }
    let (c80, c95) = (inside.0 as f64 / seeds as f64, inside.1 as f64 / seeds as f64);
    println!("month-end coverage over {seeds} months: 80% band {c80:.3}, 95% band {c95:.3}");
    assert!(c80 >= 0.65, "80% band covers {c80}");
    assert!(c95 >= 0.85, "95% band covers {c95}");
}

#[test]
fn daily_bands_cover_the_truth_at_about_their_nominal_rate() {
    let (mut n, mut in80, mut in95) = (0usize, 0usize, 0usize);
    for seed in 0..30 {
        let v = trend_weekly(140, 1_000 + seed);
        for origin in [84, 98, 112, 126] {
            let fc = forecast::forecast(&dec(&v[..origin]), 14).unwrap();
            for p in &fc.points {
                let truth = v[origin + p.ahead - 1];
                n += 1;
                in80 += usize::from(to_f64(p.band.lo80) <= truth && truth <= to_f64(p.band.hi80));
                in95 += usize::from(to_f64(p.band.lo95) <= truth && truth <= to_f64(p.band.hi95));
            }
        }
    }
    let (c80, c95) = (in80 as f64 / n as f64, in95 as f64 / n as f64);
    println!("daily band coverage over {n} forecast days: 80% band {c80:.3}, 95% band {c95:.3}");
    assert!((0.72..=0.90).contains(&c80), "80% band covers {c80}");
    assert!((0.89..=0.99).contains(&c95), "95% band covers {c95}");
}
