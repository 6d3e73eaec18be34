//! Detection on synthetic spend with injected events.

use costplane_insights::anomaly::{detect, Series};
use costplane_insights::{DetectConfig, Direction, Grain};
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;

use crate::Rng;

fn dec(x: f64) -> Decimal {
    Decimal::from_f64(x).unwrap().round_dp(6)
}

/// Daily spend with a weekly pattern (weekdays `weekday`, weekends
/// `weekend`) and 4% noise, for `days` days starting on a Monday.
fn weekly(days: usize, weekday: f64, weekend: f64, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..days).map(|i| (if i % 7 >= 5 { weekend } else { weekday }) * (1.0 + 0.04 * rng.normal())).collect()
}

/// An injected event: `[start, end)` in buckets, and which way it goes.
struct Injected {
    start: usize,
    end: usize,
    direction: Direction,
}

fn series(values: &[f64], grain: Grain) -> Series {
    Series { start: 1_767_571_200, grain, values: values.iter().map(|v| dec(*v)).collect() }
}

/// (true positives, reported, events found, events): an anomaly is a true
/// positive when it overlaps an injected event moving the same way.
fn score(found: &[costplane_insights::Anomaly], s: &Series, injected: &[Injected]) -> (usize, usize, usize, usize) {
    let g = s.grain.seconds();
    let overlaps = |a: &costplane_insights::Anomaly, e: &Injected| {
        let (es, ee) = (s.start + e.start as i64 * g, s.start + e.end as i64 * g);
        a.start < ee && es < a.end && a.direction == e.direction
    };
    let tp = found.iter().filter(|a| injected.iter().any(|e| overlaps(a, e))).count();
    let hit = injected.iter().filter(|e| found.iter().any(|a| overlaps(a, e))).count();
    (tp, found.len(), hit, injected.len())
}

#[test]
fn injected_spikes_drops_and_steps_are_found_and_the_weekly_pattern_is_not() {
    let mut total = (0, 0, 0, 0);
    let mut add = |t: (usize, usize, usize, usize)| {
        total = (total.0 + t.0, total.1 + t.1, total.2 + t.2, total.3 + t.3);
    };
    let config = DetectConfig::default();
    // Evaluation starts after 4 reference weeks.
    let from = 28;

    // 1. A 5x day: weekdays $100, weekends $20; day 45 (a Thursday) x5.
    let mut v = weekly(84, 100.0, 20.0, 1);
    v[45] *= 5.0;
    let s = series(&v, Grain::Day);
    let found = detect(&s, from, &config);
    let injected = [Injected { start: 45, end: 46, direction: Direction::Spike }];
    let t = score(&found, &s, &injected);
    println!("5x day: {t:?}");
    assert_eq!((t.2, t.0, t.1), (1, 1, 1), "the 5x day alone: {found:#?}");
    // The spike's own figures: actual about 5 x 100, expected about 100.
    let a = &found[0];
    assert!(a.impact > Decimal::from(300) && a.score > 3.0, "{a:?}");
    add(t);

    // 2. A sustained step: from day 50 on, spend doubles for good. The
    // baseline takes two weeks to learn the new level (the median of four
    // weeks moves once two are new), so the event is days 50..64.
    let mut v = weekly(84, 100.0, 20.0, 2);
    for x in &mut v[50..] {
        *x *= 2.0;
    }
    let s = series(&v, Grain::Day);
    let found = detect(&s, from, &config);
    let injected = [Injected { start: 50, end: 64, direction: Direction::Spike }];
    let t = score(&found, &s, &injected);
    println!("step: {t:?} {:?}", found.iter().map(|a| ((a.start - s.start) / 86_400, (a.end - s.start) / 86_400)).collect::<Vec<_>>());
    assert_eq!((t.2, t.0), (1, t.1), "the step, and nothing else: {found:#?}");
    assert_eq!(found[0].start, s.start + 50 * 86_400, "found on its first day");
    add(t);

    // 3. A drop: an outage day at 20% of usual spend.
    let mut v = weekly(84, 100.0, 20.0, 3);
    v[60] *= 0.2;
    let s = series(&v, Grain::Day);
    let found = detect(&s, from, &config);
    let t = score(&found, &s, &[Injected { start: 60, end: 61, direction: Direction::Drop }]);
    println!("drop: {t:?}");
    assert_eq!((t.2, t.0, t.1), (1, 1, 1), "{found:#?}");
    add(t);

    // 4. A strong weekly pattern alone (weekends 8x weekdays, 12 weeks):
    // nothing to report.
    let v = weekly(84, 10.0, 80.0, 4);
    let s = series(&v, Grain::Day);
    let found = detect(&s, from, &config);
    println!("weekly pattern: {} anomalies", found.len());
    assert!(found.is_empty(), "{found:#?}");
    add(score(&found, &s, &[]));

    // 5. Hourly grain: office hours (9-18 on weekdays) at $6/h, nights $1/h,
    // 8 weeks, noise 4%: not flagged; one hour x5 is.
    let mut rng = Rng::new(5);
    let mut v: Vec<f64> = (0..168 * 8)
        .map(|i| {
            let (day, hour) = ((i / 24) % 7, i % 24);
            let base = if day < 5 && (9..18).contains(&hour) { 6.0 } else { 1.0 };
            base * (1.0 + 0.04 * rng.normal())
        })
        .collect();
    let pattern = detect(&series(&v, Grain::Hour), 168 * 4, &config);
    assert!(pattern.is_empty(), "daily and weekly rhythm flagged: {pattern:#?}");
    let spike = 168 * 6 + 24 * 2 + 11; // Wednesday 11:00 of week 7
    v[spike] *= 5.0;
    let s = series(&v, Grain::Hour);
    let found = detect(&s, 168 * 4, &config);
    let t = score(&found, &s, &[Injected { start: spike, end: spike + 1, direction: Direction::Spike }]);
    println!("hourly: {t:?}");
    assert_eq!((t.2, t.0, t.1), (1, 1, 1), "{found:#?}");
    add(t);

    // 6. Tiny spend: 2 cents a day, one day x10 (z is huge, the impact
    // $0.18 is below the $1 floor): quiet. With a floor of 10 cents for this
    // group, it is reported.
    let mut v = weekly(84, 0.02, 0.02, 6);
    v[70] *= 10.0;
    let s = series(&v, Grain::Day);
    let quiet = detect(&s, from, &config);
    println!("tiny spend: {} anomalies", quiet.len());
    assert!(quiet.is_empty(), "{quiet:#?}");
    add(score(&quiet, &s, &[]));
    let low_floor = DetectConfig { impact_floor: Decimal::new(10, 2), ..DetectConfig::default() };
    assert_eq!(detect(&s, from, &low_floor).len(), 1);

    let (tp, reported, hit, events) = total;
    let precision = tp as f64 / reported as f64;
    let recall = hit as f64 / events as f64;
    println!("detection: precision {precision:.3} ({tp}/{reported}), recall {recall:.3} ({hit}/{events})");
    assert_eq!(hit, events, "every injected anomaly is found");
    assert_eq!(tp, reported, "no anomaly outside the injected ones");
}

#[test]
fn a_past_spike_in_the_reference_weeks_does_not_mask_the_next() {
    // Day 30 spikes; 7 days later (day 37, same weekday) another spike. The
    // median of the reference weeks ignores the first.
    let mut v = weekly(56, 100.0, 100.0, 7);
    v[30] *= 4.0;
    v[37] *= 4.0;
    let s = series(&v, Grain::Day);
    let found = detect(&s, 28, &DetectConfig::default());
    let starts: Vec<i64> = found.iter().map(|a| (a.start - s.start) / 86_400).collect();
    assert_eq!(starts, vec![30, 37]);
}
