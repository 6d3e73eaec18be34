//! The closed vocabularies of a ledger row: where it came from
//! ([`Source`]), what was consumed ([`UsageType`]), how it was priced
//! ([`PricingStatus`]), whether its hour is final ([`ChargeStatus`]) and
//! whether it corrects an exported period ([`ChargeClass`]).
//!
//! Each is stored as the text `as_str` gives (the same text the API, the
//! CSV and FOCUS exports and `/metrics` print), and read back with a
//! `parse` that refuses a value it does not know: a store holding a value
//! this binary cannot name is reported (table, row, column), never read as
//! some default. The one open vocabulary is the charge category an
//! imported cloud bill gives as its usage type
//! ([`UsageType::ChargeCategory`]).

use std::fmt;

/// A stored value a vocabulary does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a known {what}")]
pub struct UnknownValue {
    /// The vocabulary (`x_Source`, `x_UsageType`, ...).
    pub what: &'static str,
    pub value: String,
}

fn unknown<T>(what: &'static str, value: &str) -> Result<T, UnknownValue> {
    Err(UnknownValue { what, value: value.to_owned() })
}

/// Generates `as_str`, `parse`, `ALL` and `Display` for a closed enum of
/// unit variants, from one table of (variant, stored text).
macro_rules! vocabulary {
    ($ty:ident, $what:literal, [$(($variant:ident, $text:literal)),+ $(,)?]) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The stored (and printed) text.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text),+
                }
            }

            /// The value `s` spells; an unknown text is an error.
            pub fn parse(s: &str) -> Result<$ty, UnknownValue> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    _ => unknown($what, s),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// `x_Source`: what produced a ledger row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// LLM calls priced from span usage.
    Llm,
    /// Telemetry ingest, queries and storage priced at the platform's rates.
    Telemetry,
    /// Kubernetes allocation priced from the meter's usage.
    Kubernetes,
    /// Lines of an imported FOCUS cloud bill, as billed.
    Cloud,
    /// Lines of an imported provider invoice or cost report: they restate
    /// spend the `llm` rows already estimate (see [`Source::counts_in_totals`]).
    Invoice,
}

vocabulary!(
    Source,
    "x_Source",
    [(Llm, "llm"), (Telemetry, "telemetry"), (Kubernetes, "kubernetes"), (Cloud, "cloud"), (Invoice, "invoice"),]
);

impl Source {
    /// Whether this source's rows add up into cost totals (sums, series,
    /// exports, metrics). Invoice lines are what a provider billed for the
    /// calls costplane already priced: adding them would count that spend
    /// twice, so they are read only when a reader asks for them by source
    /// (reconciliation).
    pub const fn counts_in_totals(self) -> bool {
        !matches!(self, Source::Invoice)
    }
}

/// `x_PricingStatus`: how a row's cost was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum PricingStatus {
    /// Usage × a catalog, override or rate-card price.
    #[default]
    Priced,
    /// The cost the usage carried (a span's own cost, an imported bill).
    Provided,
    /// No price covers the usage: booked at zero, its quantity kept.
    Unpriced,
    /// The usage's counts cannot be trusted: booked at zero with the
    /// reason, never priced.
    Invalid,
}

vocabulary!(PricingStatus, "x_PricingStatus", [(Priced, "priced"), (Provided, "provided"), (Unpriced, "unpriced"), (Invalid, "invalid"),]);

/// `x_ChargeStatus`: whether a row's hour can still change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum ChargeStatus {
    /// The hour is open: refreshed until it closes.
    Provisional,
    /// The hour is closed: final until repriced or corrected.
    #[default]
    Closed,
}

vocabulary!(ChargeStatus, "x_ChargeStatus", [(Provisional, "provisional"), (Closed, "closed")]);

/// FOCUS `ChargeClass`: null for a regular charge (`Option::None` on the
/// row), `Correction` for one that corrects a period already invoiced or
/// exported. FOCUS allows no other value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChargeClass {
    Correction,
}

vocabulary!(ChargeClass, "ChargeClass", [(Correction, "Correction")]);

/// `x_UsageType`: what a row's quantity counts. LLM rows: a token kind;
/// telemetry rows: the signal (or `storage`); Kubernetes rows: the
/// resource; invoice rows: a token kind or `other`; cloud rows: the bill's
/// charge category.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UsageType {
    /// Input tokens not read from or written to a cache.
    Input,
    CacheRead,
    /// Cache writes kept for the default time (5 minutes).
    CacheWrite,
    /// Cache writes kept for an hour.
    CacheWrite1h,
    /// Output tokens other than reasoning ones.
    Output,
    Reasoning,
    /// A call without token counts (a provided cost with no tokens).
    Total,
    Traces,
    Logs,
    Metrics,
    Queries,
    /// Stored telemetry (a day's share of the store).
    Storage,
    /// A telemetry signal or invoice line of no kind above.
    Other,
    Cpu,
    Memory,
    Gpu,
    Volume,
    NetworkReceive,
    NetworkTransmit,
    IdleCpu,
    IdleMemory,
    /// A shared namespace's (or idle) cost split onto tenants.
    Shared,
    /// The one open value: an imported cloud bill's FOCUS `ChargeCategory`
    /// as the file spells it (first letter upper-cased: `Usage`,
    /// `Purchase`, `Credit`, ...). Providers' files are not held to FOCUS's
    /// list, so any text is kept; only [`Source::Cloud`] rows carry it, and
    /// since it never starts with a lower-case letter it never spells one
    /// of the closed values.
    ChargeCategory(String),
}

/// Every closed usage type (all but [`UsageType::ChargeCategory`]).
const CLOSED_USAGE_TYPES: [UsageType; 22] = [
    UsageType::Input,
    UsageType::CacheRead,
    UsageType::CacheWrite,
    UsageType::CacheWrite1h,
    UsageType::Output,
    UsageType::Reasoning,
    UsageType::Total,
    UsageType::Traces,
    UsageType::Logs,
    UsageType::Metrics,
    UsageType::Queries,
    UsageType::Storage,
    UsageType::Other,
    UsageType::Cpu,
    UsageType::Memory,
    UsageType::Gpu,
    UsageType::Volume,
    UsageType::NetworkReceive,
    UsageType::NetworkTransmit,
    UsageType::IdleCpu,
    UsageType::IdleMemory,
    UsageType::Shared,
];

impl UsageType {
    /// The stored (and printed) text.
    pub fn as_str(&self) -> &str {
        match self {
            UsageType::Input => "input",
            UsageType::CacheRead => "cache_read",
            UsageType::CacheWrite => "cache_write",
            UsageType::CacheWrite1h => "cache_write_1h",
            UsageType::Output => "output",
            UsageType::Reasoning => "reasoning",
            UsageType::Total => "total",
            UsageType::Traces => "traces",
            UsageType::Logs => "logs",
            UsageType::Metrics => "metrics",
            UsageType::Queries => "queries",
            UsageType::Storage => "storage",
            UsageType::Other => "other",
            UsageType::Cpu => "cpu",
            UsageType::Memory => "memory",
            UsageType::Gpu => "gpu",
            UsageType::Volume => "volume",
            UsageType::NetworkReceive => "network/receive",
            UsageType::NetworkTransmit => "network/transmit",
            UsageType::IdleCpu => "idle/cpu",
            UsageType::IdleMemory => "idle/memory",
            UsageType::Shared => "shared",
            UsageType::ChargeCategory(c) => c,
        }
    }

    /// The closed usage type `s` spells, if any.
    pub fn closed(s: &str) -> Option<UsageType> {
        CLOSED_USAGE_TYPES.iter().find(|t| t.as_str() == s).cloned()
    }

    /// The usage type of a row of `source`: a cloud row's is its charge
    /// category, whatever the text; any other source's must be a closed
    /// value.
    pub fn parse(source: Source, s: &str) -> Result<UsageType, UnknownValue> {
        match source {
            Source::Cloud => Ok(UsageType::ChargeCategory(s.to_owned())),
            _ => UsageType::closed(s).map_or_else(|| unknown("x_UsageType", s), Ok),
        }
    }

    /// The usage type of a telemetry signal (`traces`, `logs`, `metrics`,
    /// `queries`, `storage`); usage rows name any other signal `other`
    /// already, and so does this.
    pub fn of_signal(signal: &str) -> UsageType {
        match signal {
            "traces" => UsageType::Traces,
            "logs" => UsageType::Logs,
            "metrics" => UsageType::Metrics,
            "queries" => UsageType::Queries,
            "storage" => UsageType::Storage,
            _ => UsageType::Other,
        }
    }
}

impl fmt::Display for UsageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_closed_value_reads_back_as_itself() {
        for s in Source::ALL {
            assert_eq!(Source::parse(s.as_str()), Ok(*s));
        }
        for s in PricingStatus::ALL {
            assert_eq!(PricingStatus::parse(s.as_str()), Ok(*s));
        }
        for s in ChargeStatus::ALL {
            assert_eq!(ChargeStatus::parse(s.as_str()), Ok(*s));
        }
        assert_eq!(ChargeClass::parse("Correction"), Ok(ChargeClass::Correction));
        for t in &CLOSED_USAGE_TYPES {
            let text = t.as_str();
            assert_eq!(UsageType::parse(Source::Llm, text).as_ref(), Ok(t));
            assert!(text.starts_with(|c: char| c.is_ascii_lowercase()), "{text} could be taken for a charge category");
        }
    }

    #[test]
    fn unknown_stored_values_are_errors_not_defaults() {
        fn err<T>(what: &'static str, value: &str) -> Result<T, UnknownValue> {
            Err(UnknownValue { what, value: value.to_owned() })
        }
        assert_eq!(Source::parse("LLM"), err("x_Source", "LLM"));
        assert_eq!(Source::parse(""), err("x_Source", ""));
        assert_eq!(PricingStatus::parse("estimated"), err("x_PricingStatus", "estimated"));
        assert_eq!(ChargeStatus::parse("open"), err("x_ChargeStatus", "open"));
        assert_eq!(ChargeClass::parse("correction"), err("ChargeClass", "correction"));
        assert_eq!(UsageType::parse(Source::Telemetry, "spans"), err("x_UsageType", "spans"));
        assert_eq!(UsageType::parse(Source::Llm, ""), err("x_UsageType", ""));
        assert_eq!(Source::parse("cloud ").unwrap_err().to_string(), "\"cloud \" is not a known x_Source");
    }

    #[test]
    fn only_cloud_rows_carry_an_open_charge_category() {
        assert_eq!(UsageType::parse(Source::Cloud, "Credit"), Ok(UsageType::ChargeCategory("Credit".into())));
        assert_eq!(UsageType::ChargeCategory("Tax".into()).as_str(), "Tax");
        assert!(UsageType::parse(Source::Kubernetes, "Credit").is_err());
        assert_eq!(UsageType::of_signal("profiles"), UsageType::Other);
    }

    #[test]
    fn invoice_lines_are_the_only_rows_left_out_of_totals() {
        let left_out: Vec<Source> = Source::ALL.iter().copied().filter(|s| !s.counts_in_totals()).collect();
        assert_eq!(left_out, [Source::Invoice]);
    }
}
