//! Exact decimals in `DECIMAL(38, 12)` columns.
//!
//! Both stores keep money and quantities as `DECIMAL(38, 12)`: the value's
//! mantissa at scale 12 as a 128-bit integer. A value is written only when
//! that mantissa is exact; one that is not (more than 26 integer digits, or
//! more than 12 decimal places that are not zeros) is refused with an error
//! naming it, never stored at another scale or rounded silently.

use rust_decimal::Decimal;

use crate::StoreError;

/// Decimal places of the stores' decimal columns.
pub const SCALE: u32 = 12;

/// The mantissa of `d` at scale 12, if `DECIMAL(38, 12)` holds it exactly.
pub fn mantissa_38_12(d: Decimal) -> Option<i128> {
    let scale = d.scale();
    let m = if scale <= SCALE {
        d.mantissa().checked_mul(10i128.checked_pow(SCALE - scale)?)?
    } else {
        // More places than the column keeps: exact only when they are zeros.
        let div = 10i128.checked_pow(scale - SCALE)?;
        let m = d.mantissa();
        if m % div != 0 {
            return None;
        }
        m / div
    };
    (m.unsigned_abs() < 10u128.pow(38)).then_some(m)
}

/// `d` checked to fit, as an error that says which value of which column.
pub fn checked(table: &str, column: &str, d: Decimal) -> Result<Decimal, StoreError> {
    match mantissa_38_12(d) {
        Some(_) => Ok(d),
        None => Err(StoreError::Rejected(format!(
            "{table}.{column}: {d} does not fit DECIMAL(38, 12) exactly (at most 26 integer digits and 12 decimal places)"
        ))),
    }
}

/// Checks every decimal a write stores: ledger rows' money and quantities,
/// and LLM usage's provided costs.
pub fn check_rows(ledger: &[costplane_ledger::LedgerRow], llm: &[costplane_ledger::LlmUsageRow]) -> Result<(), StoreError> {
    for r in ledger {
        let t = "costplane_ledger";
        checked(t, "BilledCost", r.cost)?;
        checked(t, "ConsumedQuantity", r.consumed_quantity)?;
        checked(t, "PricingQuantity", r.pricing_quantity)?;
        for (column, v) in [
            ("x_AllocationRatio", r.allocation_ratio),
            ("EffectiveCost", r.ext.effective_cost),
            ("ListCost", r.ext.list_cost),
            ("ContractedCost", r.ext.contracted_cost),
        ] {
            if let Some(v) = v {
                checked(t, column, v)?;
            }
        }
    }
    for r in llm {
        if let Some(c) = r.usage.provided_cost {
            checked("costplane_usage_llm", "ProvidedCost", c)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn values_are_kept_exactly_or_refused() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        assert_eq!(mantissa_38_12(d("1.5")), Some(1_500_000_000_000));
        assert_eq!(mantissa_38_12(d("-0.000000000001")), Some(-1));
        // 28 significant digits, 17 of them integer: rust_decimal holds it,
        // and so does the column (rescaling it would have lost places).
        let big = d("79228162514264337.59354395033");
        assert_eq!(big.scale(), 11);
        assert_eq!(mantissa_38_12(big), Some(79_228_162_514_264_337_593_543_950_330));
        // Places beyond 12 that are not zeros cannot be stored exactly.
        assert_eq!(mantissa_38_12(d("0.0000000000001")), None);
        assert_eq!(mantissa_38_12(d("2.5000000000000")), Some(2_500_000_000_000));
        assert!(checked("costplane_ledger", "BilledCost", d("0.1234567890123")).unwrap_err().to_string().contains("BilledCost"));
    }
}
