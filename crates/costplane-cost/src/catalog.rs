//! The price catalog: costplane's own versioned TOML format.
//!
//! Invariants:
//! - Money is `rust_decimal::Decimal`, parsed from quoted decimal strings;
//!   no float ever holds a price.
//! - Prices are per 1M tokens, with an effective date; a usage is priced by
//!   the entry in force on its day, and by the tier its request's input size
//!   reaches.
//! - A user override file (same format) beats the shipped catalog: a model
//!   it names replaces the shipped entry of that provider and name whole,
//!   and the catalog version becomes `<shipped>+<override>`.

use std::collections::HashMap;
use std::path::Path;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::error::CostError;
use crate::model_name::{normalize, Normalized};

/// The catalog shipped inside the binary.
pub const SHIPPED: &str = include_str!("../prices/catalog.toml");

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    pub version: String,
    pub currency: String,
    #[serde(default)]
    pub model: Vec<ModelEntry>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub provider: String,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub prices: Vec<Price>,
}

/// Per-1M-token prices in force from `effective`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub effective: NaiveDate,
    #[serde(with = "rust_decimal::serde::str")]
    pub input: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub output: Decimal,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub cache_read: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub cache_write: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub reasoning: Option<Decimal>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub tiers: Vec<Tier>,
}

/// Prices that apply when a request's input tokens exceed the threshold.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub above_input_tokens: u64,
    #[serde(with = "rust_decimal::serde::str")]
    pub input: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub output: Decimal,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub cache_read: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub cache_write: Option<Decimal>,
}

/// The rates that apply to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rates {
    pub input: Decimal,
    pub output: Decimal,
    pub cache_read: Decimal,
    pub cache_write: Decimal,
    pub reasoning: Decimal,
    /// `Some(threshold)` when a tier applied.
    pub tier_above: Option<u64>,
    pub effective: NaiveDate,
}

/// A loaded catalog, indexed by normalized model name.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub version: String,
    pub currency: String,
    models: Vec<ModelEntry>,
    /// Which entries came from the user's override file.
    overridden: Vec<bool>,
    index: HashMap<String, usize>,
}

/// Why a model name matched (or not).
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup<'a> {
    pub normalized: Normalized,
    pub entry: Option<&'a ModelEntry>,
    pub from_override: bool,
}

fn parse(text: &str, what: &str) -> Result<CatalogFile, CostError> {
    let file: CatalogFile = toml::from_str(text).map_err(|e| CostError::Catalog(format!("{what}: {e}")))?;
    for m in &file.model {
        if m.prices.is_empty() {
            return Err(CostError::Catalog(format!("{what}: model {}/{} has no prices", m.provider, m.name)));
        }
    }
    Ok(file)
}

impl Catalog {
    /// The shipped catalog, with the user's override file on top if given.
    pub fn load(override_file: Option<&Path>) -> Result<Catalog, CostError> {
        let shipped = parse(SHIPPED, "the shipped catalog")?;
        let overrides = match override_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| CostError::Catalog(format!("cannot read price overrides {}: {e}", path.display())))?;
                Some(parse(&text, &path.display().to_string())?)
            }
        };
        Catalog::from_files(shipped, overrides)
    }

    pub fn from_files(shipped: CatalogFile, overrides: Option<CatalogFile>) -> Result<Catalog, CostError> {
        let mut models = shipped.model;
        let mut overridden = vec![false; models.len()];
        let mut version = shipped.version;
        if let Some(o) = overrides {
            if o.currency != shipped.currency {
                return Err(CostError::Catalog(format!(
                    "the override file is in {}, the catalog in {}; use one currency",
                    o.currency, shipped.currency
                )));
            }
            version = format!("{version}+{}", o.version);
            for entry in o.model {
                if let Some(i) = models.iter().position(|m| m.provider == entry.provider && m.name == entry.name) {
                    models[i] = entry;
                    overridden[i] = true;
                } else {
                    models.push(entry);
                    overridden.push(true);
                }
            }
        }
        let mut index = HashMap::new();
        // Overrides are indexed last, so their names and aliases win.
        let order: Vec<usize> = (0..models.len()).filter(|i| !overridden[*i]).chain((0..models.len()).filter(|i| overridden[*i])).collect();
        for i in order {
            let m = &models[i];
            for name in std::iter::once(&m.name).chain(m.aliases.iter()) {
                index.insert(normalize(name).key, i);
            }
        }
        for m in &mut models {
            m.prices.sort_by_key(|p| p.effective);
        }
        Ok(Catalog { version, currency: shipped.currency, models, overridden, index })
    }

    pub fn models(&self) -> &[ModelEntry] {
        &self.models
    }

    /// Finds the entry for a model name as spans carry it. A name the index
    /// lacks is retried without a `-latest` or `-YYMM` snapshot suffix
    /// (`mistral-large-2411`).
    pub fn lookup(&self, model: &str) -> Lookup<'_> {
        let mut normalized = normalize(model);
        let mut found = self.index.get(&normalized.key).copied();
        if found.is_none() {
            let key = normalized.key.clone();
            let shorter = key.strip_suffix("-latest").or_else(|| {
                let (head, tail) = key.rsplit_once('-')?;
                (tail.len() == 4 && tail.chars().all(|c| c.is_ascii_digit())).then_some(head)
            });
            if let Some(head) = shorter.filter(|h| self.index.contains_key(*h)) {
                normalized.steps.push(format!("dropped snapshot suffix '{}'", &key[head.len()..]));
                normalized.key = head.to_owned();
                found = self.index.get(head).copied();
            }
        }
        Lookup { entry: found.map(|i| &self.models[i]), from_override: found.is_some_and(|i| self.overridden[i]), normalized }
    }
}

impl ModelEntry {
    /// The rates in force on `day` for a request of `input_tokens`.
    pub fn rates(&self, day: NaiveDate, input_tokens: u64) -> Option<Rates> {
        let price = self.prices.iter().rev().find(|p| p.effective <= day)?;
        let tier = price.tiers.iter().filter(|t| input_tokens > t.above_input_tokens).max_by_key(|t| t.above_input_tokens);
        let (input, output, cache_read, cache_write) = match tier {
            Some(t) => (t.input, t.output, t.cache_read.or(price.cache_read), t.cache_write.or(price.cache_write)),
            None => (price.input, price.output, price.cache_read, price.cache_write),
        };
        Some(Rates {
            input,
            output,
            // Without a published cache rate, cached tokens cost what input costs.
            cache_read: cache_read.unwrap_or(input),
            cache_write: cache_write.unwrap_or(input),
            reasoning: price.reasoning.unwrap_or(output),
            tier_above: tier.map(|t| t.above_input_tokens),
            effective: price.effective,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalog_loads_and_matches_real_model_names() {
        let cat = Catalog::load(None).unwrap();
        assert_eq!(cat.currency, "USD");
        for (raw, provider, name) in [
            ("gpt-4o-2024-08-06", "openai", "gpt-4o"),
            ("azure/gpt-4o-mini", "openai", "gpt-4o-mini"),
            ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", "anthropic", "claude-3-5-sonnet"),
            ("claude-3-5-haiku-20241022", "anthropic", "claude-3-5-haiku"),
            ("models/gemini-2.5-pro", "google", "gemini-2.5-pro"),
            ("mistral-large-latest", "mistral", "mistral-large"),
            ("bedrock/meta.llama3-1-70b-instruct-v1:0", "meta", "llama3-1-70b-instruct"),
        ] {
            let found = cat.lookup(raw);
            let entry = found.entry.unwrap_or_else(|| panic!("{raw} is not matched ({:?})", found.normalized));
            assert_eq!((entry.provider.as_str(), entry.name.as_str()), (provider, name), "{raw}");
        }
        assert!(cat.lookup("acme-llm-7b").entry.is_none());
        let gemini = cat.lookup("gemini-2.5-pro").entry.unwrap();
        assert!(gemini.prices.last().unwrap().tiers.iter().any(|t| t.above_input_tokens == 200_000));
    }

    #[test]
    fn unknown_keys_in_a_catalog_are_errors() {
        let err = parse("version = \"x\"\ncurrency = \"USD\"\nmodels = []\n", "test").unwrap_err();
        assert!(err.to_string().contains("unknown field `models`"), "{err}");
    }
}
