//! What telemetry costs to keep: the arithmetic behind
//! `GET /api/v1/telemetry-costs`, pure and exact (`Decimal`).
//!
//! - **Groups share their service's metered bytes.** Usage is metered per
//!   (tenant, project, service, signal) and receive hour, not per span
//!   name or severity. A service's metered items and bytes of a window are
//!   split over its groups by what the store holds of each group in that
//!   window: items by row count, bytes by an estimate of each row's
//!   encoded size (the store module says which columns it reads), with
//!   [`apportion`]'s largest remainder, so the groups of a service add up
//!   to its metered items and bytes exactly.
//! - **A month is 30 days.** Window figures are scaled by 30 days over the
//!   window's length (`to - from`), whatever part of it has happened yet.
//! - **Ingest** per month: bytes at `cost.ingest_per_gib`, the rate the
//!   ledger's telemetry rows use; for the window itself the same bytes at
//!   the same rate, so a service's groups add up to its ledger ingest cost.
//! - **Storage** per month, at steady state: a month's ingest, times the
//!   measured stored bytes per ingested byte of its signal, is kept for the
//!   configured retention of R days, so the store always holds R/30 of a
//!   month's stored bytes, at `cost.storage_per_gib_month`. Kept forever
//!   (R = 0) there is no steady state and no figure; without a measured
//!   ratio neither.
//! - **What-ifs**, in money per month saved: dropping a group saves its
//!   ingest and storage; sampling that keeps a fraction r saves (1 - r) of
//!   both; a retention of N days saves (R - N)/R of its storage (negative:
//!   a longer retention costs more).
//!
//! Every figure is computed from the exact inputs as one product over one
//! quotient and rounded once, to 12 places half-even (the ledger's rule).

use costplane_telemetry::usage::{round_money, DAY_NS};
use rust_decimal::Decimal;

use crate::meter::{TelemetryRates, GIB};
use crate::CostError;

/// The month the figures are normalized to, in days.
pub const MONTH_DAYS: i64 = 30;
/// [`MONTH_DAYS`] in nanoseconds.
pub const MONTH_NS: i64 = MONTH_DAYS * DAY_NS;

/// Splits `total` over `weights` in proportion, in whole units, so the
/// parts add up to `total` exactly (largest remainder: each part is its
/// quotient rounded down, and the units left go one each to the largest
/// remainders, ties to the larger weight, then the earlier entry). All
/// weights zero: equal weights.
pub fn apportion(total: u64, weights: &[u64]) -> Vec<u64> {
    if weights.is_empty() {
        return Vec::new();
    }
    let all: u128 = weights.iter().map(|w| u128::from(*w)).sum();
    let ones = vec![1u64; weights.len()];
    let (weights, all) = if all == 0 { (&ones[..], weights.len() as u128) } else { (weights, all) };
    let mut parts = Vec::with_capacity(weights.len());
    let mut rest = Vec::with_capacity(weights.len());
    for (i, w) in weights.iter().enumerate() {
        let scaled = u128::from(total) * u128::from(*w);
        // A part is at most `total`: it fits.
        parts.push((scaled / all) as u64);
        rest.push((scaled % all, *w, i));
    }
    let given: u64 = parts.iter().sum();
    rest.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    for (_, _, i) in rest.into_iter().take((total - given) as usize) {
        parts[i] += 1;
    }
    parts
}

/// `num[0] x num[1] x ... / (den[0] x den[1] x ...)`: the products first
/// (one division, nothing rounded on the way), or, past `Decimal`'s range,
/// a division after each factor.
fn quotient(num: &[Decimal], den: &[Decimal], what: &'static str) -> Result<Decimal, CostError> {
    let overflow = || CostError::TelemetryCostOverflow { what };
    let product = |xs: &[Decimal]| xs.iter().try_fold(Decimal::ONE, |acc, x| acc.checked_mul(*x));
    if let (Some(n), Some(d)) = (product(num), product(den)) {
        if d.is_zero() {
            return Err(overflow());
        }
        if let Some(q) = n.checked_div(d) {
            return Ok(q);
        }
    }
    let mut acc = Decimal::ONE;
    for (i, x) in num.iter().enumerate() {
        acc = acc.checked_mul(*x).ok_or_else(overflow)?;
        if let Some(d) = den.get(i) {
            acc = acc.checked_div(*d).ok_or_else(overflow)?;
        }
    }
    for d in den.iter().skip(num.len()) {
        acc = acc.checked_div(*d).ok_or_else(overflow)?;
    }
    Ok(acc)
}

/// Stored bytes per ingested byte of a signal, as measured: the bytes the
/// store keeps of the signal's days and the bytes ingested (received) on
/// those days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredRatio {
    pub stored: u64,
    pub ingested: u64,
}

impl StoredRatio {
    /// The ratio, rounded to 12 places, for showing.
    pub fn value(&self) -> Option<Decimal> {
        (self.ingested > 0).then(|| round_money(Decimal::from(self.stored) / Decimal::from(self.ingested)))
    }
}

/// What one signal's groups are priced with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Basis {
    pub rates: TelemetryRates,
    /// `to - from` of the window, in nanoseconds (above 0).
    pub window_ns: i64,
    /// The signal's configured retention; 0 keeps forever.
    pub retention_days: u32,
    /// `None` when the store measured nothing for the signal's days.
    pub ratio: Option<StoredRatio>,
}

/// The what-ifs asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WhatIf {
    /// Sampling that keeps this fraction (0 to 1).
    pub sample: Option<Decimal>,
    /// A retention of this many days.
    pub retention_days: Option<u32>,
}

/// One group's costs and savings, each rounded once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupCost {
    /// Ingest of the window's bytes (what the ledger books for them).
    pub ingest: Decimal,
    pub ingest_per_month: Decimal,
    /// `None`: kept forever, or no measured ratio.
    pub storage_per_month: Option<Decimal>,
    /// Ingest and (when known) storage per month.
    pub per_month: Decimal,
    /// Dropping the group: all of `per_month`.
    pub drop_saves: Decimal,
    pub sample_saves: Option<Decimal>,
    /// `None` when not asked, or when storage has no figure.
    pub retention_saves: Option<Decimal>,
}

impl Basis {
    /// The stored bytes the steady state of `days` of retention costs per
    /// month, exact: bytes x rate x stored x days x DAY_NS / (GiB x window_ns x ingested).
    fn storage_for_days(&self, bytes: Decimal, days: i64) -> Result<Option<Decimal>, CostError> {
        let Some(r) = self.ratio.filter(|r| r.ingested > 0 && r.stored > 0) else { return Ok(None) };
        quotient(
            &[bytes, self.rates.storage_per_gib_month, Decimal::from(r.stored), Decimal::from(days), Decimal::from(DAY_NS)],
            &[GIB, Decimal::from(self.window_ns), Decimal::from(r.ingested)],
            "storage per month",
        )
        .map(Some)
    }

    /// The costs and savings of a group of `bytes` ingested in the window.
    pub fn cost(&self, bytes: u64, what_if: &WhatIf) -> Result<GroupCost, CostError> {
        let b = Decimal::from(bytes);
        let ingest = quotient(&[b, self.rates.ingest_per_gib], &[GIB], "ingest")?;
        let ingest_pm =
            quotient(&[b, self.rates.ingest_per_gib, Decimal::from(MONTH_NS)], &[GIB, Decimal::from(self.window_ns)], "ingest per month")?;
        let r = i64::from(self.retention_days);
        let storage_pm = if r == 0 { None } else { self.storage_for_days(b, r)? };
        let per_month = ingest_pm + storage_pm.unwrap_or_default();
        let sample_saves = what_if.sample.map(|keep| (Decimal::ONE - keep) * per_month);
        let retention_saves = match (what_if.retention_days, storage_pm) {
            (Some(n), Some(_)) => self.storage_for_days(b, r - i64::from(n))?,
            _ => None,
        };
        Ok(GroupCost {
            ingest: round_money(ingest),
            ingest_per_month: round_money(ingest_pm),
            storage_per_month: storage_pm.map(round_money),
            per_month: round_money(per_month),
            drop_saves: round_money(per_month),
            sample_saves: sample_saves.map(round_money),
            retention_saves: retention_saves.map(round_money),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn parts_add_up_to_the_total_by_largest_remainder() {
        // 10 x 1/6 = 1.67, 10 x 2/6 = 3.33, 10 x 3/6 = 5: floors 1 + 3 + 5 = 9;
        // the unit left goes to the largest remainder (0.67: the first).
        assert_eq!(apportion(10, &[1, 2, 3]), [2, 3, 5]);
        // 7 over three equal weights: 2 each, remainders tie; the unit goes to the earliest.
        assert_eq!(apportion(7, &[5, 5, 5]), [3, 2, 2]);
        // Ties in remainder go to the larger weight: 5 x 1/4 = 1.25, 5 x 3/4 = 3.75 ->
        // floors 1 + 3 = 4, remainders 1/4 and 3/4: the 3/4 gets the unit.
        assert_eq!(apportion(5, &[1, 3]), [1, 4]);
        assert_eq!(apportion(3, &[0, 0]), [2, 1]);
        assert_eq!(apportion(0, &[4, 9]), [0, 0]);
        assert!(apportion(9, &[]).is_empty());
        // Large totals do not overflow: u64::MAX split in two.
        let big = apportion(u64::MAX, &[u64::MAX, u64::MAX]);
        assert_eq!(u128::from(big[0]) + u128::from(big[1]), u128::from(u64::MAX));
    }

    /// $1 per GiB ingested in a window of 3 days (a month is 10 windows),
    /// $2 per GiB-month stored, 7 days' retention, 1 stored byte for every
    /// 4 ingested.
    fn basis() -> Basis {
        Basis {
            rates: TelemetryRates { ingest_per_gib: d("1"), storage_per_gib_month: d("2"), ..TelemetryRates::default() },
            window_ns: 3 * DAY_NS,
            retention_days: 7,
            ratio: Some(StoredRatio { stored: 25, ingested: 100 }),
        }
    }

    #[test]
    fn a_group_costs_ingest_and_steady_state_storage_per_month() {
        let c = basis().cost(3 << 30, &WhatIf { sample: Some(d("0.1")), retention_days: Some(3) }).unwrap();
        // 3 GiB in the window at $1: 3. A month is 10 windows: 30 GiB, $30.
        assert_eq!((c.ingest, c.ingest_per_month), (d("3"), d("30")));
        // 30 GiB a month, stored at 1/4: 7.5 GiB a month; kept 7 of 30 days the
        // store holds 7.5 x 7/30 = 1.75 GiB, at $2: 3.5.
        assert_eq!(c.storage_per_month, Some(d("3.5")));
        assert_eq!((c.per_month, c.drop_saves), (d("33.5"), d("33.5")));
        // Keeping 10%: 90% of 33.5 = 30.15.
        assert_eq!(c.sample_saves, Some(d("30.15")));
        // 3 days instead of 7: 7.5 x (7 - 3)/30 = 1 GiB less, at $2: 2.
        assert_eq!(c.retention_saves, Some(d("2")));
        // 30 days instead of 7: 7.5 x (7 - 30)/30 = -5.75 GiB, at $2: -11.5 (costs more).
        let longer = basis().cost(3 << 30, &WhatIf { retention_days: Some(30), ..WhatIf::default() }).unwrap();
        assert_eq!(longer.retention_saves, Some(d("-11.5")));
    }

    #[test]
    fn storage_has_no_figure_kept_forever_or_unmeasured() {
        let forever = Basis { retention_days: 0, ..basis() };
        let c = forever.cost(3 << 30, &WhatIf { sample: Some(d("0.5")), retention_days: Some(3) }).unwrap();
        assert_eq!((c.storage_per_month, c.retention_saves), (None, None));
        // Ingest only: 30; keeping half saves 15.
        assert_eq!((c.per_month, c.sample_saves), (d("30"), Some(d("15"))));
        let unmeasured = Basis { ratio: None, ..basis() };
        assert_eq!(unmeasured.cost(1, &WhatIf::default()).unwrap().storage_per_month, None);
        let nothing_stored = Basis { ratio: Some(StoredRatio { stored: 0, ingested: 9 }), ..basis() };
        assert_eq!(nothing_stored.cost(1, &WhatIf::default()).unwrap().storage_per_month, None);
    }

    #[test]
    fn figures_are_rounded_once_to_twelve_places() {
        // 1 byte at $1 per GiB in a 7-day window: 1/2^30 x 30/7 per month =
        // 0.000000003991...: 30 / (7 x 1,073,741,824) = 3.99138246263776506696...e-9.
        let b = Basis { window_ns: 7 * DAY_NS, ratio: None, ..basis() };
        let c = b.cost(1, &WhatIf::default()).unwrap();
        assert_eq!(c.ingest_per_month, d("0.000000003991"));
        // 1 byte in the window: 1/2^30 = 9.31322574615478515625e-10 -> 0.000000000931.
        assert_eq!(c.ingest, d("0.000000000931"));
    }

    #[test]
    fn huge_inputs_overflow_into_an_error_or_divide_early() {
        // Past Decimal's range even when dividing as it goes: an error, never a wrong figure.
        let big = Basis {
            rates: TelemetryRates { ingest_per_gib: d("1000000"), storage_per_gib_month: d("1000000"), ..TelemetryRates::default() },
            window_ns: 1,
            retention_days: 3650,
            ratio: Some(StoredRatio { stored: u64::MAX, ingested: 1 }),
        };
        assert!(matches!(big.cost(u64::MAX, &WhatIf::default()), Err(CostError::TelemetryCostOverflow { .. })));
        // Past the range multiplied out, within it divided as it goes:
        // u64::MAX bytes in a 30-day window at $1 per GiB is u64::MAX / 2^30 =
        // 17,179,869,183.999999999068677... -> 17179869183.999999999069, per month the same.
        let wide = Basis { window_ns: MONTH_NS, ratio: None, ..basis() };
        let c = wide.cost(u64::MAX, &WhatIf::default()).unwrap();
        assert_eq!((c.ingest, c.ingest_per_month), (d("17179869183.999999999069"), d("17179869183.999999999069")));
        assert_eq!(StoredRatio { stored: 1, ingested: 3 }.value(), Some(d("0.333333333333")));
        assert_eq!(StoredRatio { stored: 1, ingested: 0 }.value(), None);
    }
}
