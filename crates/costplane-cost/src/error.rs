use rust_decimal::Decimal;
use thiserror::Error;

/// Errors of the cost engine.
///
/// Besides catalog errors, these are the reasons an LLM usage is booked
/// `invalid` (at zero cost, with the message as its reason) instead of
/// being priced.
#[derive(Debug, Error)]
pub enum CostError {
    /// A price catalog or override file that cannot be used.
    #[error("price catalog error: {0}")]
    Catalog(String),
    /// A token count that is not an integer or a string of ASCII digits.
    #[error("{attribute} {value} is not a whole number of tokens")]
    NotWholeTokens { attribute: String, value: String },
    /// A token count of digits too large for 64 bits.
    #[error("{attribute} {value} is out of range")]
    TokensOutOfRange { attribute: String, value: String },
    /// A sum of token counts past 64 bits.
    #[error("{a} {a_kind} plus {b} {b_kind} tokens overflow")]
    TokenOverflow { a: u64, a_kind: &'static str, b: u64, b_kind: &'static str },
    /// More tokens in one call than the sanity limit.
    #[error("{tokens} {kind} tokens are above the limit of {limit} per call")]
    AboveTokenLimit { tokens: u64, kind: &'static str, limit: u64 },
    /// A cost the span carries that the ledger cannot keep exactly.
    #[error("the span's cost {value} is outside what the ledger keeps exactly (below 10^15, at most 12 decimal places)")]
    ProvidedCostOutOfRange { value: Decimal },
    /// Money past `Decimal`'s range.
    #[error("the cost of {tokens} {kind} tokens at {rate} per 1M tokens of {entry} overflows")]
    CostOverflow { tokens: u64, kind: costplane_telemetry::usage::UsageType, rate: Decimal, entry: String },
    /// A telemetry cost figure past `Decimal`'s range.
    #[error("the telemetry {what} figure overflows")]
    TelemetryCostOverflow { what: &'static str },
}
