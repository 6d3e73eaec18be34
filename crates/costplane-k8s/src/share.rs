//! Exact splits of a shared amount.
//!
//! Rule: each recipient's share is `total × weight / Σ weights` (even: all
//! weights 1) truncated toward zero to [`MONEY_SCALE`] places; the
//! remainder (`total − Σ shares`, fewer than one unit of 10^-12 per
//! recipient) goes to the recipient with the largest share, the first by
//! name among equals. So the shares always sum to `total` exactly, and no
//! recipient gets more than its exact share plus the remainder.
//! A weighted split whose weights sum to zero falls back to even.

use rust_decimal::{Decimal, RoundingStrategy};

use crate::ShareSplit;
use crate::MONEY_SCALE;

/// Splits `total` among `recipients` (name, weight), returned in the same
/// order. Empty recipients → empty result (the caller keeps the amount).
pub fn split(total: Decimal, recipients: &[(String, Decimal)], how: ShareSplit) -> Vec<(String, Decimal)> {
    if recipients.is_empty() {
        return Vec::new();
    }
    let weight_sum: Decimal = recipients.iter().map(|(_, w)| *w).sum();
    let even = how == ShareSplit::Even || weight_sum <= Decimal::ZERO;
    let n = Decimal::from(recipients.len() as u64);
    let mut shares: Vec<(String, Decimal)> = recipients
        .iter()
        .map(|(name, w)| {
            let exact = if even { total / n } else { total * *w / weight_sum };
            (name.clone(), exact.round_dp_with_strategy(MONEY_SCALE, RoundingStrategy::ToZero))
        })
        .collect();
    let remainder = total - shares.iter().map(|(_, s)| *s).sum::<Decimal>();
    if !remainder.is_zero() {
        let mut best = 0;
        for (i, (name, s)) in shares.iter().enumerate() {
            let (bn, bs) = &shares[best];
            if s.abs() > bs.abs() || (s.abs() == bs.abs() && name < bn) {
                best = i;
            }
        }
        shares[best].1 += remainder;
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn names(v: &[(&str, &str)]) -> Vec<(String, Decimal)> {
        v.iter().map(|(n, w)| (n.to_string(), d(w))).collect()
    }

    #[test]
    fn even_thirds_give_the_remainder_to_the_first_name() {
        // 1.000000000000 / 3 = 0.333333333333 (truncated) each;
        // 3 × 0.333333333333 = 0.999999999999, remainder 0.000000000001
        // goes to "a" (all shares equal, first by name).
        let s = split(d("1"), &names(&[("b", "0"), ("a", "0"), ("c", "0")]), ShareSplit::Even);
        assert_eq!(s[0], ("b".into(), d("0.333333333333")));
        assert_eq!(s[1], ("a".into(), d("0.333333333334")));
        assert_eq!(s[2], ("c".into(), d("0.333333333333")));
    }

    #[test]
    fn weighted_split_goes_by_weight_and_conserves() {
        // weights 1 : 2 of total 0.1: 0.1/3 = 0.033333333333 (trunc),
        // 0.2/3 = 0.066666666666 (trunc); sum 0.099999999999, remainder
        // 0.000000000001 to the larger share "y" → 0.066666666667.
        let s = split(d("0.1"), &names(&[("x", "1"), ("y", "2")]), ShareSplit::Weighted);
        assert_eq!(s, vec![("x".into(), d("0.033333333333")), ("y".into(), d("0.066666666667"))]);
        assert_eq!(s.iter().map(|(_, v)| *v).sum::<Decimal>(), d("0.1"));
    }

    #[test]
    fn zero_weights_fall_back_to_even() {
        let s = split(d("2"), &names(&[("x", "0"), ("y", "0")]), ShareSplit::Weighted);
        assert_eq!(s, vec![("x".into(), d("1")), ("y".into(), d("1"))]);
        assert!(split(d("2"), &[], ShareSplit::Even).is_empty());
    }
}
