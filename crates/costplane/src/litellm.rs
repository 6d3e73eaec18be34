//! `costplane prices import --format litellm FILE`: LiteLLM's public
//! `model_prices_and_context_window.json` (per-token USD prices, facts) into
//! a costplane price override file, so prices can be refreshed without a
//! release, pricing each call as LiteLLM's own `cost_per_token` does.
//!
//! - Numbers are read from their text ([`json`]), never through a float,
//!   and scaled to costplane's per-1M-token unit exactly.
//! - The entry LiteLLM resolves for a plain model name keeps that name.
//!   A variant that normalizes to the same name (a fine-tune `ft:...`, a
//!   region `bedrock/ap-south-1/...`, a data zone `azure/eu/...` or
//!   `us.anthropic...`, a deployment tier `azure/global-standard/...` or a
//!   Bedrock commitment) is written with `variant`, so the catalog matches
//!   it by its full name only. Two spellings of one model of one provider
//!   keep the one LiteLLM looks up first (`deepseek/deepseek-chat` before
//!   `deepseek-chat`: it tries `provider/model` before `model`).
//! - Carried: input, output, cache read and write, 1-hour cache writes
//!   (`cache_creation_input_token_cost_above_1hr`), reasoning
//!   (`output_cost_per_reasoning_token`) and every `_above_<N>_tokens` tier
//!   of input, output, cache read and cache write. Every other priced field
//!   (batch, priority and flex rates, audio, images, seconds, characters,
//!   queries) is counted in the summary as not carried.
//! - Entries that are not priced per token are skipped, counted by reason.
//! - Bare names (`gpt-4o`) are written before provider-prefixed ones
//!   (`azure/gpt-4o`): LiteLLM prices a name given without a provider by
//!   its bare entry, and the catalog gives the provider-less fallback to
//!   the entry listed first.

mod json;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::str::FromStr;

use anyhow::{bail, Context};
use costplane_cost::model_name::{canonical_provider, normalize_exact, normalize_keeping_date};
use json::Json;
use rust_decimal::Decimal;

/// The modes whose entries are priced per token.
const TOKEN_MODES: [&str; 4] = ["chat", "completion", "embedding", "responses"];

/// Bedrock cross-region inference profile prefixes (data zones).
const PROFILE_PREFIXES: [&str; 8] = ["us.", "eu.", "apac.", "us-gov.", "global.", "jp.", "au.", "ca."];

/// A per-token price's text as a per-1M-token decimal.
fn per_million(text: &str) -> anyhow::Result<Decimal> {
    let d = Decimal::from_str(text).or_else(|_| Decimal::from_scientific(text)).with_context(|| format!("{text} is not a price"))?;
    d.checked_mul(Decimal::from(1_000_000u32)).map(|d| d.normalize()).with_context(|| format!("{text} per token is out of range"))
}

fn field<'a>(fields: &'a [(String, Json)], key: &str) -> Option<&'a Json> {
    fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn num<'a>(fields: &'a [(String, Json)], key: &str) -> Option<&'a str> {
    match field(fields, key) {
        Some(Json::Num(n)) => Some(n),
        _ => None,
    }
}

fn text<'a>(fields: &'a [(String, Json)], key: &str) -> Option<&'a str> {
    match field(fields, key) {
        Some(Json::Str(s)) => Some(s),
        _ => None,
    }
}

/// costplane's provider for LiteLLM's `litellm_provider` (others are kept).
fn provider(litellm: &str) -> &str {
    match litellm {
        p if p == "vertex_ai" || p.starts_with("vertex_ai-") => "gcp.vertex_ai",
        "gemini" => "google",
        "text-completion-openai" => "openai",
        "bedrock" | "bedrock_converse" => "aws.bedrock",
        "azure_ai" => "azure.ai.inference",
        other => other,
    }
}

/// An AWS region name (`ap-south-1`, `us-gov-west-1`).
fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[0].chars().all(|c| c.is_ascii_lowercase())
        && parts.last().is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// What kind of variant of a plain model LiteLLM's `key` is, if any.
fn variant_of(key: &str, litellm_provider: &str) -> Option<&'static str> {
    if key.starts_with("ft:") {
        return Some("fine-tune");
    }
    let segments: Vec<&str> = key.split('/').collect();
    if segments.len() >= 3 && ["bedrock", "bedrock_converse", "azure", "azure_ai"].contains(&segments[0]) {
        let middle = &segments[1..segments.len() - 1];
        if middle.iter().any(|s| s.ends_with("-commitment") || ["global-standard", "standard", "provisioned"].contains(s)) {
            return Some("deployment-tier");
        }
        if middle.iter().any(|s| ["eu", "us", "global", "apac"].contains(s)) {
            return Some("data-zone");
        }
        if middle.iter().any(|s| *s == "*" || is_region(s)) {
            return Some("regional");
        }
    }
    let last = segments.last().copied().unwrap_or(key);
    if litellm_provider.starts_with("bedrock") && PROFILE_PREFIXES.iter().any(|p| last.starts_with(p)) {
        return Some("data-zone");
    }
    None
}

/// How early LiteLLM looks `key` up for the plain name it shares with
/// other keys: `provider/model` first, then the bare `model`, then longer
/// paths (`bedrock/invoke/...`).
fn lookup_rank(key: &str, litellm_provider: &str) -> u8 {
    match key.split_once('/') {
        Some((head, rest)) if head == litellm_provider && !rest.contains('/') => 0,
        None => 1,
        _ => 2,
    }
}

/// The catalog key a name claims (as `Catalog::from_files` computes it).
fn catalog_key(name: &str) -> String {
    if name.rsplit_once("-v").is_some_and(|(_, v)| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit())) {
        normalize_exact(name).key
    } else {
        normalize_keeping_date(name).key
    }
}

/// `_above_<N>_tokens` of a field name as N tokens (`128k` is 128,000).
fn tier_threshold(field: &str, prefix: &str) -> Option<u64> {
    let n = field.strip_prefix(prefix)?.strip_suffix("_tokens")?;
    match n.strip_suffix('k') {
        Some(k) => k.parse::<u64>().ok()?.checked_mul(1000),
        None => n.parse().ok(),
    }
}

/// Whether a field is one the import carries over.
fn carried(key: &str) -> bool {
    const PLAIN: [&str; 6] = [
        "input_cost_per_token",
        "output_cost_per_token",
        "cache_read_input_token_cost",
        "cache_creation_input_token_cost",
        "cache_creation_input_token_cost_above_1hr",
        "output_cost_per_reasoning_token",
    ];
    PLAIN.contains(&key)
        || [
            "input_cost_per_token_above_",
            "output_cost_per_token_above_",
            "cache_read_input_token_cost_above_",
            "cache_creation_input_token_cost_above_",
        ]
        .iter()
        .any(|p| tier_threshold(key, p).is_some())
}

/// One entry taken from the file.
struct Taken {
    litellm_key: String,
    litellm_provider: String,
    provider: String,
    variant: Option<&'static str>,
    fields: Vec<(String, Json)>,
}

/// The result of an import.
#[derive(Debug, Default)]
pub struct Imported {
    /// The override file.
    pub toml: String,
    pub taken: usize,
    /// Taken entries that are variants, by kind.
    pub variants: BTreeMap<&'static str, usize>,
    /// Skipped entries by reason.
    pub skipped: BTreeMap<String, Vec<String>>,
    /// Priced fields not carried over, with the number of entries having them.
    pub not_carried: BTreeMap<String, usize>,
    /// Spellings dropped for the one LiteLLM looks up first, described.
    pub spellings: Vec<String>,
}

impl Imported {
    /// What was taken, skipped and not carried, for the operator.
    pub fn summary(&self) -> String {
        let mut s = format!("imported {} models", self.taken);
        if !self.variants.is_empty() {
            let kinds: Vec<String> = self.variants.iter().map(|(k, n)| format!("{n} {k}")).collect();
            let _ = write!(
                s,
                " ({} of them variants matched by their full name only: {})",
                self.variants.values().sum::<usize>(),
                kinds.join(", ")
            );
        }
        s.push('\n');
        let skipped: usize = self.skipped.values().map(Vec::len).sum();
        if skipped > 0 {
            let _ = writeln!(s, "skipped {skipped} entries:");
            for (reason, names) in &self.skipped {
                let _ = writeln!(s, "  {:>5}  {reason} (e.g. {})", names.len(), names[0]);
            }
        }
        if !self.not_carried.is_empty() {
            let _ = writeln!(s, "prices not carried over (calls are priced at the standard per-token rates):");
            for (f, n) in &self.not_carried {
                let _ = writeln!(s, "  {n:>5}  entries with {f}");
            }
        }
        s
    }
}

/// Why an entry is not taken, if it is not.
fn skip_reason(fields: &[(String, Json)]) -> Option<String> {
    let mode = text(fields, "mode").unwrap_or("chat");
    if !TOKEN_MODES.contains(&mode) {
        return Some(format!("mode {mode}: not priced per token"));
    }
    match field(fields, "input_cost_per_token") {
        None => Some("no input_cost_per_token (priced per second, character or request)".to_owned()),
        Some(Json::Num(_)) => match field(fields, "output_cost_per_token") {
            None | Some(Json::Num(_)) => None,
            Some(_) => Some("output_cost_per_token is not a number".to_owned()),
        },
        Some(_) => Some("input_cost_per_token is not a number".to_owned()),
    }
}

/// The override file for LiteLLM's JSON `text`, prices effective on `effective`.
pub fn to_overrides(text_in: &str, effective: chrono::NaiveDate, version: &str) -> anyhow::Result<Imported> {
    let Json::Object(models) = json::parse(text_in)? else { bail!("not LiteLLM's JSON: the top level is not an object of models") };
    let mut imported = Imported::default();
    let mut taken: Vec<Taken> = Vec::new();
    for (name, spec) in models {
        if name == "sample_spec" {
            continue;
        }
        let Json::Object(fields) = spec else {
            imported.skipped.entry("not a model entry".to_owned()).or_default().push(name);
            continue;
        };
        if let Some(reason) = skip_reason(&fields) {
            imported.skipped.entry(reason).or_default().push(name);
            continue;
        }
        let litellm_provider = text(&fields, "litellm_provider").unwrap_or("unknown").to_owned();
        taken.push(Taken {
            variant: variant_of(&name, &litellm_provider),
            provider: provider(&litellm_provider).to_owned(),
            litellm_key: name,
            litellm_provider,
            fields,
        });
    }
    // Spellings of one model of one provider: the one LiteLLM looks up first.
    let mut groups: HashMap<(String, String), Vec<usize>> = HashMap::new();
    for (i, t) in taken.iter().enumerate().filter(|(_, t)| t.variant.is_none()) {
        groups.entry((canonical_provider(&t.provider), catalog_key(&t.litellm_key))).or_default().push(i);
    }
    let mut dropped = vec![false; taken.len()];
    let mut groups: Vec<_> = groups.into_values().filter(|g| g.len() > 1).collect();
    groups.sort();
    for group in groups {
        let winner = *group.iter().min_by_key(|&&i| (lookup_rank(&taken[i].litellm_key, &taken[i].litellm_provider), i)).expect("a group");
        for &i in group.iter().filter(|&&i| i != winner) {
            dropped[i] = true;
            imported.spellings.push(format!(
                "{} is another spelling of {} ({}); LiteLLM looks {} up first",
                taken[i].litellm_key, taken[winner].litellm_key, taken[i].provider, taken[winner].litellm_key
            ));
            imported
                .skipped
                .entry("another spelling of a model of the same provider, whose entry LiteLLM looks up first".to_owned())
                .or_default()
                .push(taken[i].litellm_key.clone());
        }
    }
    let mut order: Vec<usize> = (0..taken.len()).filter(|&i| !dropped[i]).collect();
    order.sort_by_key(|&i| (taken[i].variant.is_some(), taken[i].litellm_key.contains('/'), i));
    let mut out = format!(
        "# Imported from LiteLLM's model_prices_and_context_window.json by `costplane prices import`.\n\
         # USD per 1M tokens; use with --overrides / COSTPLANE_PRICE_OVERRIDES / [cost] price_overrides.\n\
         version = {}\ncurrency = \"USD\"\n",
        toml_str(version)
    );
    for i in order {
        let t = &taken[i];
        write_entry(&mut out, t, effective).with_context(|| format!("LiteLLM entry {}", t.litellm_key))?;
        for (key, value) in &t.fields {
            let priced = key.contains("cost")
                && matches!(value, Json::Num(n) if Decimal::from_str(n).or_else(|_| Decimal::from_scientific(n)).is_ok_and(|d| !d.is_zero()));
            if priced && !carried(key) {
                *imported.not_carried.entry(key.clone()).or_default() += 1;
            }
        }
        if let Some(v) = t.variant {
            *imported.variants.entry(v).or_default() += 1;
        }
        imported.taken += 1;
    }
    imported.toml = out;
    Ok(imported)
}

/// One `[[model]]` of the override file.
fn write_entry(out: &mut String, t: &Taken, effective: chrono::NaiveDate) -> anyhow::Result<()> {
    let f = &t.fields;
    let rate = |key: &str| num(f, key).map(per_million).transpose();
    let input = rate("input_cost_per_token")?.context("no input price")?;
    let output = rate("output_cost_per_token")?.unwrap_or(Decimal::ZERO);
    let _ = write!(out, "\n[[model]]\nprovider = {}\nname = {}\n", toml_str(&t.provider), toml_str(&t.litellm_key));
    if let Some(v) = t.variant {
        let _ = writeln!(out, "variant = \"{v}\"");
    }
    let _ = write!(out, "  [[model.prices]]\n  effective = \"{effective}\"\n  input = \"{input}\"\n  output = \"{output}\"\n");
    for (key, ours) in [
        ("cache_read_input_token_cost", "cache_read"),
        ("cache_creation_input_token_cost", "cache_write"),
        ("cache_creation_input_token_cost_above_1hr", "cache_write_1h"),
        ("output_cost_per_reasoning_token", "reasoning"),
    ] {
        if let Some(v) = rate(key)? {
            let _ = writeln!(out, "  {ours} = \"{v}\"");
        }
    }
    out.push_str("  source = \"LiteLLM model_prices_and_context_window.json\"\n");
    // Each input tier; LiteLLM keeps the base output and cache rates where
    // a tier gives none, as the catalog does.
    let mut tiers: Vec<(u64, &str)> =
        f.iter().filter_map(|(k, _)| Some((tier_threshold(k, "input_cost_per_token_above_")?, k.as_str()))).collect();
    tiers.sort();
    if tiers.is_empty() {
        // No tier, said outright: an override keeps the tiers of the
        // shipped entry it merges into unless it gives its own.
        out.push_str("  tiers = []\n");
    }
    for (threshold, key) in tiers {
        let suffix = &key["input_cost_per_token".len()..];
        let _ = write!(
            out,
            "    [[model.prices.tiers]]\n    above_input_tokens = {threshold}\n    input = \"{}\"\n    output = \"{}\"\n",
            rate(key)?.context("a tier's input price")?,
            rate(&format!("output_cost_per_token{suffix}"))?.unwrap_or(output)
        );
        for (litellm, ours) in [("cache_read_input_token_cost", "cache_read"), ("cache_creation_input_token_cost", "cache_write")] {
            if let Some(v) = rate(&format!("{litellm}{suffix}"))? {
                let _ = writeln!(out, "    {ours} = \"{v}\"");
            }
        }
    }
    Ok(())
}

fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests;
