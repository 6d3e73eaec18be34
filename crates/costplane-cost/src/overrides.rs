//! User price override files: what they may leave out, and how they merge.
//!
//! - **Field by field.** An override entry for a model the shipped catalog
//!   has changes only the fields it gives: `input = "2.00"` alone keeps the
//!   catalog's output, cache and reasoning prices, and tiers. The base of
//!   an override price is the catalog price with the same `effective` date,
//!   else the one in force on that date; a model the catalog lacks needs
//!   `input` and `output`.
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
const MONEY_KEYS: [&str; 5] = ["input", "output", "cache_read", "cache_write", "reasoning"];

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

fn overlay(base: Option<&Price>, o: &OverridePrice, model: &str) -> Result<Price, CostError> {
    let need = |v: Option<Decimal>, field: &str| {
        v.ok_or_else(|| {
            CostError::Catalog(format!(
                "override for {model} on {}: {field} is required (the catalog has no price in force on that date to start from)",
                o.effective
            ))
        })
    };
    Ok(Price {
        effective: o.effective,
        input: need(o.input.or(base.map(|b| b.input)), "input")?,
        output: need(o.output.or(base.map(|b| b.output)), "output")?,
        cache_read: o.cache_read.or(base.and_then(|b| b.cache_read)),
        cache_write: o.cache_write.or(base.and_then(|b| b.cache_write)),
        reasoning: o.reasoning.or(base.and_then(|b| b.reasoning)),
        source: o.source.clone().or_else(|| Some("price override".to_owned())),
        tiers: o.tiers.clone().unwrap_or_else(|| base.map(|b| b.tiers.clone()).unwrap_or_default()),
    })
}

/// Each override entry as a whole catalog entry: merged field by field into
/// the shipped entry of the same provider and name, or standing alone.
pub fn resolve(shipped: &CatalogFile, file: OverrideFile) -> Result<CatalogFile, CostError> {
    let mut out = Vec::with_capacity(file.model.len());
    for o in file.model {
        let base = shipped.model.iter().find(|m| canonical_provider(&m.provider) == canonical_provider(&o.provider) && m.name == o.name);
        let label = format!("{}/{}", o.provider, o.name);
        if o.prices.is_empty() {
            return Err(CostError::Catalog(format!("override for {label} has no prices")));
        }
        let mut prices: Vec<Price> = base.map(|b| b.prices.clone()).unwrap_or_default();
        prices.sort_by_key(|p| p.effective);
        for op in &o.prices {
            let same_day = prices.iter().position(|p| p.effective == op.effective);
            let in_force = prices.iter().rev().find(|p| p.effective <= op.effective);
            let merged = overlay(same_day.map(|i| &prices[i]).or(in_force), op, &label)?;
            match same_day {
                Some(i) => prices[i] = merged,
                None => prices.push(merged),
            }
            prices.sort_by_key(|p| p.effective);
        }
        out.push(ModelEntry {
            provider: o.provider,
            name: o.name,
            aliases: o.aliases.unwrap_or_else(|| base.map(|b| b.aliases.clone()).unwrap_or_default()),
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
