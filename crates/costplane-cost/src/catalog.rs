//! The price catalog: costplane's own versioned TOML format.
//!
//! Invariants:
//! - Money is `rust_decimal::Decimal`, parsed from quoted decimal strings;
//!   no float ever holds a price.
//! - Prices are per 1M tokens, with an effective date; a usage is priced by
//!   the entry in force on its day, and by the tier its request's input size
//!   reaches.
//! - A user override file (same format; numbers or strings) beats the
//!   shipped catalog: a model it names is merged field by field into the
//!   shipped entry of that provider and name (see [`crate::overrides`]),
//!   and the catalog version becomes `<shipped>+<override>`.
//! - Entries are indexed by (provider, model) and, as a fallback for spans
//!   whose provider has no entry of its own, by model alone. The same model
//!   sold by two providers is two entries; a span's provider picks its own.
//!   Two entries that claim the same model name in the fallback are
//!   reported at load; an override wins there, else the entry listed first.
//! - A variant of a model (a fine-tune, a region, a data zone, a deployment
//!   tier: `ft:gpt-4o-2024-08-06`, `azure/eu/gpt-4o-2024-08-06`,
//!   `us.anthropic.claude-...`) has a price of its own but normalizes to
//!   the plain model's key; an entry marked `variant` is matched by its full
//!   name only, tried before any key, so it never takes the plain name.
//! - A dated snapshot key (`gpt-4o-2024-05-13`) is tried before the
//!   undated one, as some snapshots have their own list price; but an
//!   override of the undated name beats a shipped snapshot entry, so a
//!   price negotiated for a model covers every snapshot its calls report.

use std::collections::HashMap;
use std::path::Path;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::error::CostError;
use crate::llm::Limits;
use crate::model_name::{canonical_provider, normalize_both, normalize_exact, normalize_keeping_date, Normalized};

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
    /// What kind of variant of a plain model this entry is (`fine-tune`,
    /// `regional`, `data-zone`, `deployment-tier`), if it is one: it is
    /// then matched by its full name (and aliases) only.
    #[serde(default)]
    pub variant: Option<String>,
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
    /// Cache writes kept for an hour (Anthropic bills them at 2x input,
    /// where 5-minute writes are 1.25x); the 5-minute rate when absent.
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub cache_write_1h: Option<Decimal>,
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
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub cache_write_1h: Option<Decimal>,
}

/// The rates that apply to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rates {
    pub input: Decimal,
    pub output: Decimal,
    pub cache_read: Decimal,
    pub cache_write: Decimal,
    pub cache_write_1h: Decimal,
    pub reasoning: Decimal,
    /// `Some(threshold)` when a tier applied.
    pub tier_above: Option<u64>,
    pub effective: NaiveDate,
}

/// A loaded catalog, indexed by (provider, normalized model name) and by
/// normalized model name alone.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub version: String,
    pub currency: String,
    /// Sanity limits of pricing. They live with the catalog so that every
    /// pricing path (metering and repricing from stored usage) applies them.
    pub limits: Limits,
    models: Vec<ModelEntry>,
    /// Which entries came from the user's override file.
    overridden: Vec<bool>,
    /// Canonical provider, then model key, to entry.
    by_provider: HashMap<String, HashMap<String, usize>>,
    /// Model key to entry, whatever the provider.
    index: HashMap<String, usize>,
    /// Variants' full names (lowercased), by canonical provider and
    /// whatever the provider.
    exact_by_provider: HashMap<String, HashMap<String, usize>>,
    exact: HashMap<String, usize>,
    /// Keys claimed by more than one entry, described for the operator.
    collisions: Vec<String>,
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
                let what = path.display().to_string();
                Some(crate::overrides::resolve(&shipped, crate::overrides::parse(&text, &what)?)?)
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
                if let Some(i) = models
                    .iter()
                    .position(|m| canonical_provider(&m.provider) == canonical_provider(&entry.provider) && m.name == entry.name)
                {
                    models[i] = entry;
                    overridden[i] = true;
                } else {
                    models.push(entry);
                    overridden.push(true);
                }
            }
        }
        for m in &mut models {
            m.prices.sort_by_key(|p| p.effective);
        }
        // On a collision an override beats a shipped entry; otherwise the
        // entry listed first keeps the key, so a catalog lists the usual
        // seller of a model first. A collision is (winner, loser).
        let claim = |map: &mut HashMap<String, usize>, key: &str, i: usize| match map.get(key).copied() {
            None => {
                map.insert(key.to_owned(), i);
                None
            }
            Some(j) if j == i => None,
            Some(j) if overridden[i] && !overridden[j] => {
                map.insert(key.to_owned(), i);
                Some((i, j))
            }
            Some(j) => Some((j, i)),
        };
        let mut by_provider: HashMap<String, HashMap<String, usize>> = HashMap::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut exact_by_provider: HashMap<String, HashMap<String, usize>> = HashMap::new();
        let mut exact: HashMap<String, usize> = HashMap::new();
        let mut collisions = Vec::new();
        let who = |j: usize| format!("{}/{}", models[j].provider, models[j].name);
        for (i, m) in models.iter().enumerate() {
            let names = std::iter::once(&m.name).chain(m.aliases.iter());
            if m.variant.is_some() {
                let own = exact_by_provider.entry(canonical_provider(&m.provider)).or_default();
                for name in names {
                    let key = name.trim().to_ascii_lowercase();
                    let same_provider = claim(own, &key, i);
                    let any_provider = claim(&mut exact, &key, i);
                    if let Some((won, lost)) = same_provider.or(any_provider) {
                        collisions.push(format!("variant name '{key}' is claimed by {} and {}; {} is used", who(won), who(lost), who(won)));
                    }
                }
                continue;
            }
            let own = by_provider.entry(canonical_provider(&m.provider)).or_default();
            // Dates are kept: a dated entry is its own snapshot, not the
            // alias. A name with a version (`titan-embed-text-v1`) claims
            // its exact key, which lookups try first: that version is a
            // model of its own.
            let keys: Vec<String> = names
                .map(|name| {
                    let exact = normalize_exact(name).key;
                    if name.rsplit_once("-v").is_some_and(|(_, v)| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit())) {
                        exact
                    } else {
                        normalize_keeping_date(name).key
                    }
                })
                .collect();
            for key in keys {
                let same_provider = claim(own, &key, i);
                let any_provider = claim(&mut index, &key, i);
                if let Some((won, lost)) = same_provider {
                    collisions.push(format!("'{key}' is claimed by {} and {} of one provider; {} is used", who(won), who(lost), who(won)));
                } else if let Some((won, lost)) = any_provider {
                    collisions.push(format!(
                        "'{key}' is claimed by {} and {}; spans of a provider without its own entry are priced by {}",
                        who(won),
                        who(lost),
                        who(won)
                    ));
                }
            }
        }
        // Once, not per name: an imported price list claims hundreds of
        // names twice (one model sold by several providers), each normal.
        if !collisions.is_empty() {
            tracing::warn!(
                catalog = %version,
                "{} model names are claimed by more than one price entry; `costplane prices collisions` lists them and the entry used",
                collisions.len()
            );
        }
        Ok(Catalog {
            version,
            currency: shipped.currency,
            limits: Limits::default(),
            models,
            overridden,
            by_provider,
            index,
            exact_by_provider,
            exact,
            collisions,
        })
    }

    pub fn models(&self) -> &[ModelEntry] {
        &self.models
    }

    /// Every input-token count above which some entry's price tier starts,
    /// sorted and without repeats: calls on the same side of each of them
    /// price at the same tier of any entry.
    pub fn tier_thresholds(&self) -> Vec<u64> {
        let mut out: Vec<u64> =
            self.models.iter().flat_map(|m| m.prices.iter().flat_map(|p| p.tiers.iter().map(|t| t.above_input_tokens))).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Model keys claimed by more than one entry (their count is logged at load).
    pub fn collisions(&self) -> &[String] {
        &self.collisions
    }

    /// Finds the entry for a model name as spans carry it, whatever the
    /// provider; see [`Catalog::lookup_for`].
    pub fn lookup(&self, model: &str) -> Lookup<'_> {
        self.lookup_for("", model)
    }

    /// Finds the entry for a model name as spans carry it, sold by
    /// `provider` (any spelling; empty when unknown).
    ///
    /// Order: the provider's own entries before entries of any provider,
    /// because a provider's entry is what that provider bills; within each,
    /// the dated snapshot key before the undated one, then the undated key
    /// without a `-latest` or `-YYMM` snapshot suffix (`mistral-large-2411`).
    pub fn lookup_for(&self, provider: &str, model: &str) -> Lookup<'_> {
        let (undated, dated) = normalize_both(model);
        let key = &undated.key;
        let shorter = key
            .strip_suffix("-latest")
            .or_else(|| {
                let (head, tail) = key.rsplit_once('-')?;
                (tail.len() == 4 && tail.chars().all(|c| c.is_ascii_digit())).then_some(head)
            })
            .map(|head| {
                let mut n = undated.clone();
                n.steps.push(format!("dropped snapshot suffix '{}'", &key[head.len()..]));
                n.key = head.to_owned();
                n
            });
        let exact = Some(normalize_exact(model)).filter(|e| e.key != undated.key && dated.as_ref().is_none_or(|d| d.key != e.key));
        let candidates: Vec<&Normalized> = exact.iter().chain(dated.iter()).chain([&undated]).chain(shorter.iter()).collect();
        let provider = canonical_provider(provider);
        // A variant's full name; a fine-tuned model's name with its
        // organization, suffix and id (`ft:gpt-4o-2024-08-06:acme::abc123`)
        // reaches the fine-tune price of its base (`ft:gpt-4o-2024-08-06`).
        let full = model.trim().to_ascii_lowercase();
        let fine_tune = full.strip_prefix("ft:").and_then(|rest| rest.split(':').next()).map(|base| format!("ft:{base}"));
        let full_names: Vec<&String> = [Some(&full), fine_tune.as_ref()].into_iter().flatten().collect();
        let variant = |names: &HashMap<String, usize>| {
            full_names.iter().find_map(|name| {
                let steps = vec!["matched a variant's full name".to_owned()];
                names.get(*name).map(|&i| (Normalized { key: (*name).clone(), steps }, i))
            })
        };
        // Within one key map, an overridden entry beats a shipped one that a
        // more specific key reaches: a price negotiated for `gpt-4o` covers
        // the calls that report the `gpt-4o-2024-08-06` snapshot.
        let keyed = |keys: &HashMap<String, usize>| {
            let mut hits = candidates.iter().filter_map(|n| keys.get(&n.key).map(|&i| (*n, i)));
            let first = hits.next()?;
            let chosen = if self.overridden[first.1] { first } else { hits.find(|(_, i)| self.overridden[*i]).unwrap_or(first) };
            Some((chosen.0.clone(), chosen.1))
        };
        // The provider's own entries (variants, then keys), then anyone's.
        let own = (self.exact_by_provider.get(&provider), self.by_provider.get(&provider));
        let found = [own, (Some(&self.exact), Some(&self.index))]
            .into_iter()
            .find_map(|(exact, keys)| exact.and_then(variant).or_else(|| keys.and_then(keyed)));
        match found {
            Some((normalized, i)) => Lookup { entry: Some(&self.models[i]), from_override: self.overridden[i], normalized },
            // Unmatched: explain with the key the name reduces to.
            None => Lookup { entry: None, from_override: false, normalized: undated },
        }
    }
}

impl ModelEntry {
    /// The rates in force on `day` for a request of `input_tokens`.
    pub fn rates(&self, day: NaiveDate, input_tokens: u64) -> Option<Rates> {
        let price = self.prices.iter().rev().find(|p| p.effective <= day)?;
        let tier = price.tiers.iter().filter(|t| input_tokens > t.above_input_tokens).max_by_key(|t| t.above_input_tokens);
        let (input, output, cache_read, cache_write, cache_write_1h) = match tier {
            // A tier without its own 1-hour rate: its 5-minute one (the
            // base's 1-hour rate is for requests below the tier).
            Some(t) => (
                t.input,
                t.output,
                t.cache_read.or(price.cache_read),
                t.cache_write.or(price.cache_write),
                t.cache_write_1h.or(t.cache_write).or(price.cache_write_1h),
            ),
            None => (price.input, price.output, price.cache_read, price.cache_write, price.cache_write_1h),
        };
        Some(Rates {
            input,
            output,
            // Without a published cache rate, cached tokens cost what input costs.
            cache_read: cache_read.unwrap_or(input),
            cache_write: cache_write.unwrap_or(input),
            cache_write_1h: cache_write_1h.or(cache_write).unwrap_or(input),
            reasoning: price.reasoning.unwrap_or(output),
            tier_above: tier.map(|t| t.above_input_tokens),
            effective: price.effective,
        })
    }
}

/// A USD catalog file of `version` for tests, one price per model:
/// (provider, name, effective, input, output).
#[cfg(test)]
pub(crate) fn test_file(version: &str, models: &[(&str, &str, &str, &str, &str)]) -> CatalogFile {
    let mut text = format!("version = \"{version}\"\ncurrency = \"USD\"\n");
    for (provider, name, effective, input, output) in models {
        text += &format!(
            "[[model]]\nprovider = \"{provider}\"\nname = \"{name}\"\n\
             [[model.prices]]\neffective = \"{effective}\"\ninput = \"{input}\"\noutput = \"{output}\"\n"
        );
    }
    toml::from_str(&text).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalog_loads_and_matches_real_model_names() {
        let cat = Catalog::load(None).unwrap();
        assert_eq!(cat.currency, "USD");
        for (raw, provider, name) in [
            ("gpt-4o-2024-11-20", "openai", "gpt-4o"),
            ("azure/gpt-4o-mini", "openai", "gpt-4o-mini"),
            ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", "anthropic", "claude-3-5-sonnet"),
            ("claude-3-5-haiku-20241022", "anthropic", "claude-3-5-haiku"),
            ("models/gemini-2.5-pro", "google", "gemini-2.5-pro"),
            ("mistral-large-latest", "mistral", "mistral-large"),
            ("bedrock/meta.llama3-1-70b-instruct-v1:0", "meta", "llama3-1-70b-instruct"),
            // Names a newcomer's spans carried that an older catalog missed.
            ("gpt-3.5-turbo", "openai", "gpt-3.5-turbo"),
            ("gpt-4-turbo-2024-04-09", "openai", "gpt-4-turbo"),
            ("o1-mini", "openai", "o1-mini"),
            ("text-embedding-ada-002", "openai", "text-embedding-ada-002"),
            ("claude-3-sonnet-20240229", "anthropic", "claude-3-sonnet"),
            ("command-r-plus", "cohere", "command-r-plus"),
            ("deepseek-chat", "deepseek", "deepseek-chat"),
            ("llama-3.1-8b-instant", "groq", "llama-3.1-8b-instant"),
            ("openai:gpt-4o-mini", "openai", "gpt-4o-mini"),
            ("accounts/fireworks/models/llama-v3p1-70b-instruct", "fireworks", "llama-v3p1-70b-instruct"),
            ("meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo", "together_ai", "meta-llama-3.1-8b-instruct-turbo"),
            ("grok-4-0709", "xai", "grok-4"),
        ] {
            let found = cat.lookup(raw);
            let entry = found.entry.unwrap_or_else(|| panic!("{raw} is not matched ({:?})", found.normalized));
            assert_eq!((entry.provider.as_str(), entry.name.as_str()), (provider, name), "{raw}");
        }
        assert!(cat.lookup("acme-llm-7b").entry.is_none());
        assert!(cat.models().len() >= 150, "{} models", cat.models().len());
        // o1-mini's price cut on 2025-01-31: 3.00 before, 1.10 after.
        let o1 = cat.lookup("o1-mini").entry.unwrap();
        let day = |d: &str| NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
        assert_eq!(o1.rates(day("2024-12-01"), 1).unwrap().input.to_string(), "3.00");
        assert_eq!(o1.rates(day("2025-02-01"), 1).unwrap().input.to_string(), "1.10");
        let gemini = cat.lookup("gemini-2.5-pro").entry.unwrap();
        assert!(gemini.prices.last().unwrap().tiers.iter().any(|t| t.above_input_tokens == 200_000));
    }

    /// The OpenAI entries of [`two_sellers`].
    const OPENAI: [(&str, &str, &str, &str, &str); 2] =
        [("openai", "gpt-4o", "2024-05-13", "2.50", "10.00"), ("openai", "gpt-4o-2024-05-13", "2024-05-13", "5.00", "15.00")];

    /// gpt-4o sold by OpenAI (with a dated snapshot) and by Azure.
    fn two_sellers() -> CatalogFile {
        let [a, b] = OPENAI;
        test_file("t", &[a, b, ("azure.ai.openai", "gpt-4o", "2024-05-13", "2.75", "11.00")])
    }

    #[test]
    fn the_shipped_catalog_has_no_collisions_and_keeps_dated_snapshots_apart() {
        let cat = Catalog::load(None).unwrap();
        assert_eq!(cat.collisions(), &[] as &[String]);
        for (raw, name) in [
            ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
            ("openai/GPT-4o-2024-05-13", "gpt-4o-2024-05-13"),
            ("gpt-4o-2024-08-06", "gpt-4o-2024-08-06"),
            // Priced like the alias, so no entry of its own.
            ("gpt-4o-2024-11-20", "gpt-4o"),
            ("claude-3-5-sonnet-20240620", "claude-3-5-sonnet"),
        ] {
            assert_eq!(cat.lookup(raw).entry.map(|e| e.name.as_str()), Some(name), "{raw}");
        }
        let exact = cat.lookup("gpt-4o-2024-05-13");
        assert_eq!(exact.normalized.key, "gpt-4o-2024-05-13");
        assert!(exact.normalized.steps.is_empty(), "{:?}", exact.normalized.steps);
    }

    #[test]
    fn a_spans_provider_picks_its_own_entry() {
        let cat = Catalog::from_files(two_sellers(), None).unwrap();
        let seller = |provider: &str, model: &str| {
            let e = cat.lookup_for(provider, model).entry.unwrap();
            format!("{}/{}", e.provider, e.name)
        };
        assert_eq!(seller("az.ai.openai", "gpt-4o"), "azure.ai.openai/gpt-4o");
        assert_eq!(seller("Azure.AI.OpenAI", "azure/gpt-4o"), "azure.ai.openai/gpt-4o");
        assert_eq!(seller("OpenAI", "gpt-4o"), "openai/gpt-4o");
        // No entry of its own: the provider-less fallback, first listed.
        assert_eq!(seller("aws.bedrock", "gpt-4o"), "openai/gpt-4o");
        assert_eq!(seller("", "gpt-4o"), "openai/gpt-4o");
        // The provider's own entry before a dated entry of another provider.
        assert_eq!(seller("azure.ai.openai", "gpt-4o-2024-05-13"), "azure.ai.openai/gpt-4o");
        assert_eq!(seller("openai", "gpt-4o-2024-05-13"), "openai/gpt-4o-2024-05-13");
        assert_eq!(seller("", "gpt-4o-2024-05-13"), "openai/gpt-4o-2024-05-13");
        assert_eq!(
            cat.collisions(),
            ["'gpt-4o' is claimed by openai/gpt-4o and azure.ai.openai/gpt-4o; \
              spans of a provider without its own entry are priced by openai/gpt-4o"]
        );
    }

    #[test]
    fn an_override_of_another_provider_takes_the_fallback_and_says_so() {
        // The OpenAI entries only; the Azure one comes as an override.
        let shipped = test_file("t", &OPENAI);
        let over = test_file("o", &[("az.ai.openai", "gpt-4o", "2024-01-01", "2.00", "8.00")]);
        let cat = Catalog::from_files(shipped, Some(over)).unwrap();
        assert_eq!(cat.lookup_for("", "gpt-4o").entry.unwrap().provider, "az.ai.openai");
        assert_eq!(cat.lookup_for("openai", "gpt-4o").entry.unwrap().provider, "openai");
        assert_eq!(cat.collisions().len(), 1, "{:?}", cat.collisions());
        assert!(cat.collisions()[0].ends_with("priced by az.ai.openai/gpt-4o"), "{:?}", cat.collisions());
    }

    #[test]
    fn a_variant_is_matched_by_its_full_name_only() {
        let file = parse(
            r#"version = "v"
currency = "USD"
[[model]]
provider = "openai"
name = "ft:gpt-4o-2024-08-06"
variant = "fine-tune"
  [[model.prices]]
  effective = "2024-08-06"
  input = "3.75"
  output = "15"
[[model]]
provider = "openai"
name = "gpt-4o-2024-08-06"
  [[model.prices]]
  effective = "2024-08-06"
  input = "2.5"
  output = "10"
"#,
            "test",
        )
        .unwrap();
        let cat = Catalog::from_files(file, None).unwrap();
        let name = |provider: &str, model: &str| cat.lookup_for(provider, model).entry.map(|e| e.name.clone());
        // The fine-tune is listed first yet never takes the plain snapshot's name.
        assert_eq!(name("openai", "gpt-4o-2024-08-06").as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(name("", "openai/gpt-4o-2024-08-06").as_deref(), Some("gpt-4o-2024-08-06"));
        // A fine-tuned model's own name (organization, suffix, id) reaches its base's fine-tune price.
        assert_eq!(name("openai", "ft:gpt-4o-2024-08-06:acme::9xYz").as_deref(), Some("ft:gpt-4o-2024-08-06"));
        assert_eq!(name("", "FT:gpt-4o-2024-08-06").as_deref(), Some("ft:gpt-4o-2024-08-06"));
        assert_eq!(cat.collisions(), &[] as &[String]);
        // A fine-tune of another model has no entry: the base model's name is not a fallback.
        assert_eq!(name("openai", "ft:gpt-4o-mini-2024-07-18:acme::1").as_deref(), None);
    }

    #[test]
    fn one_hour_cache_writes_have_their_own_rate() {
        let file = parse(
            r#"version = "v"
currency = "USD"
[[model]]
provider = "anthropic"
name = "claude-sonnet-4-5"
  [[model.prices]]
  effective = "2025-09-29"
  input = "3"
  output = "15"
  cache_write = "3.75"
  cache_write_1h = "6"
[[model]]
provider = "anthropic"
name = "claude-3-haiku"
  [[model.prices]]
  effective = "2024-03-07"
  input = "0.25"
  output = "1.25"
  cache_write = "0.30"
[[model]]
provider = "acme"
name = "acme-1"
  [[model.prices]]
  effective = "2024-03-07"
  input = "1"
  output = "2"
"#,
            "test",
        )
        .unwrap();
        let cat = Catalog::from_files(file, None).unwrap();
        let day = NaiveDate::from_ymd_opt(2025, 12, 1).unwrap();
        let write = |model: &str| {
            let r = cat.lookup(model).entry.unwrap().rates(day, 1).unwrap();
            (r.cache_write, r.cache_write_1h)
        };
        // Anthropic: 5-minute writes 1.25 x 3 = 3.75, 1-hour writes 2 x 3 = 6.
        assert_eq!(write("claude-sonnet-4-5"), (Decimal::new(375, 2), Decimal::new(6, 0)));
        // No 1-hour rate published: the 5-minute one; no write rate at all: input's.
        assert_eq!(write("claude-3-haiku"), (Decimal::new(30, 2), Decimal::new(30, 2)));
        assert_eq!(write("acme-1"), (Decimal::ONE, Decimal::ONE));
    }

    #[test]
    fn the_shipped_anthropic_one_hour_writes_are_twice_input() {
        let cat = Catalog::load(None).unwrap();
        let day = NaiveDate::from_ymd_opt(2025, 12, 1).unwrap();
        let one_hour = |model: &str, input_tokens: u64| cat.lookup(model).entry.unwrap().rates(day, input_tokens).unwrap().cache_write_1h;
        // Sonnet 4.5: 2 x 3 = 6 per 1M; above 200k input the long-context
        // input is 6, so 2 x 6 = 12. Opus 4.5: 2 x 5 = 10. Haiku 3.5 after
        // its price cut: 2 x 0.80 = 1.60.
        assert_eq!(one_hour("claude-sonnet-4-5", 1_000), Decimal::new(6, 0));
        assert_eq!(one_hour("claude-sonnet-4-5", 250_000), Decimal::new(12, 0));
        assert_eq!(one_hour("claude-opus-4-5-20251101", 1_000), Decimal::new(10, 0));
        assert_eq!(one_hour("claude-3-5-haiku-20241022", 1_000), Decimal::new(160, 2));
    }

    #[test]
    fn unknown_keys_in_a_catalog_are_errors() {
        let err = parse("version = \"x\"\ncurrency = \"USD\"\nmodels = []\n", "test").unwrap_err();
        assert!(err.to_string().contains("unknown field `models`"), "{err}");
    }
}
