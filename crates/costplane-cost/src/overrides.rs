//! User price override files: what they may leave out, and how they merge.
//!
//! - **Field by field.** An override entry for a model the shipped catalog
//!   has changes only the fields it gives: `input = "2.00"` alone keeps the
//!   catalog's output, cache and reasoning prices, and tiers. A model the
//!   catalog lacks needs `input` and `output`.
//! - **An override holds from its date on.** A field an override price
//!   gives is the price from that price's `effective` date until a later
//!   override price gives the same field, whatever the shipped catalog
//!   lists before or after: a negotiated $2.00 from 2024-01-01 is not
//!   undone by a list price the catalog dates 2024-10-01. Fields no
//!   override gives follow the catalog, list price changes included. The
//!   merged entry has one price at each date where either side changes.
//! - **Numbers or strings.** Rates may be TOML numbers (`input = 2.5`) or
//!   strings (`input = "2.5"`). Numbers are read from their text as written
//!   in the file (never through a float), so `0.1` is exactly 0.1.

use std::str::FromStr;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::catalog::{CatalogFile, ModelEntry, Price, Tier};
use crate::error::CostError;
use crate::model_name::canonical_provider;

/// The keys whose values are money.
const MONEY_KEYS: [&str; 6] = ["input", "output", "cache_read", "cache_write", "cache_write_1h", "reasoning"];

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OverrideFile {
    pub version: String,
    pub currency: String,
    #[serde(default)]
    pub model: Vec<OverrideEntry>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OverrideEntry {
    pub provider: String,
    pub name: String,
    /// Replaces the catalog's aliases when given.
    #[serde(default)]
    pub aliases: Option<Vec<String>>,
    /// Marks the entry a variant of a plain model (see [`ModelEntry::variant`]).
    #[serde(default)]
    pub variant: Option<String>,
    pub prices: Vec<OverridePrice>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OverridePrice {
    pub effective: NaiveDate,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub input: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub output: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub cache_read: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub cache_write: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub cache_write_1h: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub reasoning: Option<Decimal>,
    #[serde(default)]
    pub source: Option<String>,
    /// Replaces the base price's tiers when given.
    #[serde(default)]
    pub tiers: Option<Vec<Tier>>,
}

/// The exact decimal a TOML number's text denotes (`1_000`, `2.5`, `1e-3`).
fn decimal_of_number_text(text: &str) -> Option<Decimal> {
    let t = text.trim().replace('_', "");
    let t = t.strip_prefix('+').unwrap_or(&t);
    Decimal::from_str(t).ok().or_else(|| Decimal::from_scientific(t).ok())
}

fn number_to_string(value: &mut toml_edit::Value, path: &str) -> Result<(), CostError> {
    let text = match value {
        toml_edit::Value::Integer(n) => n.display_repr().to_string(),
        toml_edit::Value::Float(f) => f.display_repr().to_string(),
        _ => return Ok(()),
    };
    let d = decimal_of_number_text(&text).ok_or_else(|| CostError::Catalog(format!("{path} = {text} is not a decimal price")))?;
    *value = toml_edit::Value::from(d.to_string());
    Ok(())
}

fn walk_table(table: &mut dyn toml_edit::TableLike, path: &str) -> Result<(), CostError> {
    for (key, item) in table.iter_mut() {
        let here = format!("{path}{}{key}", if path.is_empty() { "" } else { "." });
        match item {
            toml_edit::Item::Value(toml_edit::Value::InlineTable(t)) => walk_table(t, &here)?,
            toml_edit::Item::Value(toml_edit::Value::Array(a)) => {
                for v in a.iter_mut() {
                    if let toml_edit::Value::InlineTable(t) = v {
                        walk_table(t, &here)?;
                    }
                }
            }
            toml_edit::Item::Value(v) if MONEY_KEYS.contains(&key.get()) => number_to_string(v, &here)?,
            toml_edit::Item::Table(t) => walk_table(t, &here)?,
            toml_edit::Item::ArrayOfTables(a) => {
                for t in a.iter_mut() {
                    walk_table(t, &here)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The file's text with every money number turned into the string of the
/// same digits, so the catalog's string-only decimal fields read it exactly.
pub fn numbers_as_strings(text: &str, what: &str) -> Result<String, CostError> {
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| CostError::Catalog(format!("{what}: {e}")))?;
    walk_table(doc.as_table_mut(), "").map_err(|e| match e {
        CostError::Catalog(m) => CostError::Catalog(format!("{what}: {m}")),
        other => other,
    })?;
    Ok(doc.to_string())
}

/// Parses an override file (numbers or strings).
pub fn parse(text: &str, what: &str) -> Result<OverrideFile, CostError> {
    let text = numbers_as_strings(text, what)?;
    toml::from_str(&text).map_err(|e| CostError::Catalog(format!("{what}: {e}")))
}

/// The price in force on `day` among `prices` (sorted by date).
fn in_force(prices: &[Price], day: NaiveDate) -> Option<&Price> {
    prices.iter().rev().find(|p| p.effective <= day)
}

/// The latest value on or before `day` that an override price gives for one
/// field (`overrides` sorted by date).
fn given<'a, T>(overrides: &'a [OverridePrice], day: NaiveDate, field: impl Fn(&'a OverridePrice) -> Option<T>) -> Option<T> {
    overrides.iter().rev().filter(|o| o.effective <= day).find_map(field)
}

/// The merged price of one date: each field from the latest override price
/// that gives it, else from the catalog price in force.
fn merged_on(day: NaiveDate, base: Option<&Price>, overrides: &[OverridePrice], model: &str) -> Result<Price, CostError> {
    let need = |v: Option<Decimal>, field: &str| {
        v.ok_or_else(|| {
            CostError::Catalog(format!(
                "override for {model} on {day}: {field} is required (the catalog has no price in force on that date to start from)"
            ))
        })
    };
    let latest = overrides.iter().rev().find(|o| o.effective <= day);
    Ok(Price {
        effective: day,
        input: need(given(overrides, day, |o| o.input).or(base.map(|b| b.input)), "input")?,
        output: need(given(overrides, day, |o| o.output).or(base.map(|b| b.output)), "output")?,
        cache_read: given(overrides, day, |o| o.cache_read).or(base.and_then(|b| b.cache_read)),
        cache_write: given(overrides, day, |o| o.cache_write).or(base.and_then(|b| b.cache_write)),
        cache_write_1h: given(overrides, day, |o| o.cache_write_1h).or(base.and_then(|b| b.cache_write_1h)),
        reasoning: given(overrides, day, |o| o.reasoning).or(base.and_then(|b| b.reasoning)),
        source: latest
            .map(|o| o.source.clone().unwrap_or_else(|| "price override".to_owned()))
            .or_else(|| base.and_then(|b| b.source.clone())),
        tiers: given(overrides, day, |o| o.tiers.clone()).unwrap_or_else(|| base.map(|b| b.tiers.clone()).unwrap_or_default()),
    })
}

/// Each override entry as a whole catalog entry: merged field by field into
/// the shipped entry of the same provider and name, or standing alone.
pub fn resolve(shipped: &CatalogFile, file: OverrideFile) -> Result<CatalogFile, CostError> {
    let mut out = Vec::with_capacity(file.model.len());
    for mut o in file.model {
        let base = shipped.model.iter().find(|m| canonical_provider(&m.provider) == canonical_provider(&o.provider) && m.name == o.name);
        let label = format!("{}/{}", o.provider, o.name);
        if o.prices.is_empty() {
            return Err(CostError::Catalog(format!("override for {label} has no prices")));
        }
        o.prices.sort_by_key(|p| p.effective);
        if let Some(w) = o.prices.windows(2).find(|w| w[0].effective == w[1].effective) {
            return Err(CostError::Catalog(format!("override for {label} gives two prices effective {}", w[0].effective)));
        }
        let mut catalog: Vec<Price> = base.map(|b| b.prices.clone()).unwrap_or_default();
        catalog.sort_by_key(|p| p.effective);
        let first = o.prices[0].effective;
        // Before the first override price the catalog stands as it is; from
        // it on, one merged price at each date where either side changes.
        let mut prices: Vec<Price> = catalog.iter().filter(|p| p.effective < first).cloned().collect();
        let mut days: Vec<NaiveDate> =
            catalog.iter().map(|p| p.effective).filter(|d| *d >= first).chain(o.prices.iter().map(|p| p.effective)).collect();
        days.sort();
        days.dedup();
        for day in days {
            prices.push(merged_on(day, in_force(&catalog, day), &o.prices, &label)?);
        }
        out.push(ModelEntry {
            provider: o.provider,
            name: o.name,
            aliases: o.aliases.unwrap_or_else(|| base.map(|b| b.aliases.clone()).unwrap_or_default()),
            variant: o.variant.or_else(|| base.and_then(|b| b.variant.clone())),
            prices,
        });
    }
    Ok(CatalogFile { version: file.version, currency: file.currency, model: out })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, SHIPPED};

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn load(overrides: &str) -> Result<Catalog, CostError> {
        let shipped: CatalogFile = toml::from_str(SHIPPED).unwrap();
        let merged = resolve(&shipped, parse(overrides, "test overrides")?)?;
        Catalog::from_files(shipped, Some(merged))
    }

    #[test]
    fn a_discount_on_input_keeps_the_other_prices() {
        // The shipped gpt-4o since 2024-10-01: input 2.50, output 10, cache read 1.25.
        let c = load(
            "version = \"discount\"\ncurrency = \"USD\"\n[[model]]\nprovider = \"openai\"\nname = \"gpt-4o\"\n  [[model.prices]]\n  effective = \"2025-01-01\"\n  input = 2.0\n",
        )
        .unwrap();
        let e = c.lookup_for("openai", "gpt-4o").entry.unwrap();
        let day = NaiveDate::from_ymd_opt(2025, 6, 1).unwrap();
        let r = e.rates(day, 1000).unwrap();
        assert_eq!((r.input, r.output, r.cache_read), (d("2.0"), d("10.00"), d("1.25")));
        // Before the override's date the catalog's price still applies.
        let r = e.rates(NaiveDate::from_ymd_opt(2024, 12, 1).unwrap(), 1000).unwrap();
        assert_eq!(r.input, d("2.50"));
    }

    #[test]
    fn an_override_is_not_undone_by_a_later_catalog_price() {
        // Shipped gpt-4o: 5.00/15.00 from 2024-05-13, then 2.50/10.00 from
        // 2024-10-01. A negotiated input of 2.00 from 2024-06-01 holds on
        // every later day; output follows the catalog.
        let c = load(
            "version = \"deal\"\ncurrency = \"USD\"\n[[model]]\nprovider = \"openai\"\nname = \"gpt-4o\"\n  [[model.prices]]\n  effective = \"2024-06-01\"\n  input = 2.0\n",
        )
        .unwrap();
        let e = c.lookup_for("openai", "gpt-4o").entry.unwrap();
        // Before the override, the catalog's own price.
        assert_eq!(e.rates(NaiveDate::from_ymd_opt(2024, 5, 20).unwrap(), 1000).unwrap().input, d("5.00"));
        for (day, output) in [("2024-06-01", "15.00"), ("2025-06-01", "10.00"), ("2026-12-06", "10.00")] {
            let r = e.rates(NaiveDate::from_str(day).unwrap(), 1000).unwrap();
            assert_eq!((r.input, r.output), (d("2.0"), d(output)), "{day}");
        }
    }

    #[test]
    fn a_later_override_price_keeps_the_fields_of_an_earlier_one() {
        let c = load(
            "version = \"deal\"\ncurrency = \"USD\"\n[[model]]\nprovider = \"openai\"\nname = \"gpt-4o\"\n  [[model.prices]]\n  effective = \"2025-02-01\"\n  input = 1.5\n  [[model.prices]]\n  effective = \"2024-01-01\"\n  input = 2\n  output = 8\n",
        )
        .unwrap();
        let e = c.lookup_for("openai", "gpt-4o").entry.unwrap();
        let r = e.rates(NaiveDate::from_ymd_opt(2025, 6, 1).unwrap(), 1000).unwrap();
        assert_eq!((r.input, r.output), (d("1.5"), d("8")));
        let r = e.rates(NaiveDate::from_ymd_opt(2024, 12, 1).unwrap(), 1000).unwrap();
        assert_eq!((r.input, r.output), (d("2"), d("8")));
    }

    #[test]
    fn numbers_are_read_exactly_from_their_text() {
        let c = load(
            "version = \"n\"\ncurrency = \"USD\"\n[[model]]\nprovider = \"acme\"\nname = \"acme-1\"\n  [[model.prices]]\n  effective = \"2026-01-01\"\n  input = 0.1\n  output = 3\n  cache_read = \"0.03\"\n  reasoning = 1_000.000_1\n",
        )
        .unwrap();
        let r = c.lookup("acme-1").entry.unwrap().rates(NaiveDate::from_ymd_opt(2026, 2, 1).unwrap(), 1).unwrap();
        // 0.1 as a float is 0.1000000000000000055...; read from its text it is 0.1.
        assert_eq!(r.input.to_string(), "0.1");
        assert_eq!((r.output, r.cache_read, r.reasoning), (d("3"), d("0.03"), d("1000.0001")));
    }

    #[test]
    fn a_new_model_needs_input_and_output() {
        let err = load(
            "version = \"n\"\ncurrency = \"USD\"\n[[model]]\nprovider = \"acme\"\nname = \"acme-2\"\n  [[model.prices]]\n  effective = \"2026-01-01\"\n  input = 1\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("output is required"), "{err}");
        let err = load("version = \"n\"\ncurrency = \"USD\"\n[[model]]\nprovider = \"acme\"\nname = \"x\"\nprices = [{ effective = \"2026-01-01\", input = 1, output = \"free\" }]\n").unwrap_err();
        assert!(err.to_string().contains("free"), "{err}");
    }
}
