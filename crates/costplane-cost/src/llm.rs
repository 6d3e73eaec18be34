//! LLM usage from span attributes, in every convention seen in real traces,
//! and its price.
//!
//! Rules (each one something users of LLM cost tools have asked for):
//! - A cost the span carries (`gen_ai.usage.cost`, `cost.usd`) beats an
//!   inferred one: status `provided`.
//! - Token totals follow what each convention means by its counts (the
//!   rules, with their sources, are in `docs/token-rules.md`):
//!   - **Input.** The OTel GenAI names (`gen_ai.usage.input_tokens` with
//!     `gen_ai.usage.cache_read.input_tokens` /
//!     `gen_ai.usage.cache_creation.input_tokens`) and OpenInference's
//!     `prompt_details` count cached tokens inside the input total, so they
//!     are parts of it, never added on top. Anthropic's Messages API reports
//!     `input_tokens` *excluding* cache reads and writes, and the
//!     instrumentations that copy its fields (the `cache_read_input_tokens`
//!     / `cache_creation_input_tokens` names on an `anthropic` call) keep
//!     that meaning: their cache counts are always added to the input.
//!     Whatever the convention, cached counts above the input count can
//!     only mean an input that excludes them, and the total is rebuilt.
//!   - **Output.** OpenAI's `completion_tokens` includes reasoning tokens;
//!     Gemini's `candidatesTokenCount` excludes its `thoughtsTokenCount`.
//!     A reasoning count up to the output count is taken as part of it; a
//!     reasoning count above it can only be apart from it, and both are
//!     billed (output + reasoning).
//! - The response model beats the request model.
//! - An unknown model is `unpriced`: kept with its tokens and flagged,
//!   never a silent $0.
//! - Token counts are whole numbers: an integer attribute or a string of
//!   ASCII digits. `12.7`, `1e30`, `-5` or `many` are not coerced into a
//!   count (a float parse turned `1e30` into 18 quintillion tokens, about
//!   $10^13 in one span); the call is `invalid`, with the reason, at zero
//!   cost, and its readable counts are kept.
//! - A call above [`Limits::max_tokens_per_call`] tokens is `invalid` too:
//!   no model reads or writes that much in one call, so the count is a bug
//!   and pricing it would book an absurd sum. Sums of counts and every
//!   money operation are checked; an overflow makes the call `invalid`,
//!   never a panic or a wrapped number.
//! - The span's provider picks that provider's catalog entry when there is
//!   one (see [`Catalog::lookup_for`]).
//! - Money is exact: `Decimal` from the catalog's strings to the ledger.

use chrono::NaiveDate;
/// How a cost was obtained: one vocabulary with the ledger's `x_PricingStatus`.
pub use costplane_telemetry::usage::PricingStatus;
use costplane_telemetry::usage::UsageType;
pub use costplane_telemetry::usage::{CallKind, LlmUsage};
use costplane_telemetry::Attributes;
use rust_decimal::Decimal;

use crate::catalog::{Catalog, Rates};
use crate::error::CostError;

pub use crate::usage_names::PROVIDED_COST;
use crate::usage_names::{Field, UsageAttributes};

/// The default of [`Limits::max_tokens_per_call`]: 100M tokens, far above
/// any context window plus output in one call.
pub const DEFAULT_MAX_TOKENS_PER_CALL: u64 = 100_000_000;

/// Sanity limits of pricing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A call with more tokens than this (input plus output, or any one
    /// kind) is `invalid` rather than priced.
    pub max_tokens_per_call: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_tokens_per_call: DEFAULT_MAX_TOKENS_PER_CALL }
    }
}

/// Usage read from a span, and why it cannot be priced when it cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The counts that could be read; an unreadable one is 0.
    pub usage: LlmUsage,
    /// Set when a count is not a whole number or a sum of counts
    /// overflows: the call is then `invalid`, whatever its model.
    pub invalid: Option<String>,
    /// A model call, or an agent/chain/workflow/tool span (see [`call_kind`]).
    pub kind: CallKind,
}

/// Operation values of model calls: OTel GenAI (`chat`, `text_completion`,
/// `generate_content`, `embeddings`), OpenInference (`LLM`, `EMBEDDING`),
/// OpenLLMetry's `llm.request.type` (`completion`, `embedding`, `rerank`).
const MODEL_CALLS: [&str; 9] =
    ["chat", "text_completion", "generate_content", "embeddings", "llm", "embedding", "completion", "rerank", "responses"];

/// Whether a span is a model call. A span that names an operation other
/// than a model call's (agent, chain, workflow, tool, `invoke_agent`,
/// `execute_tool`, ...) carries the roll-up of its children's usage: it is
/// billed only when no model-call span of its trace carries usage (decided
/// when its hour closes). A span naming no operation is a model call.
pub fn call_kind(attrs: &Attributes) -> CallKind {
    kind_of(&UsageAttributes::of(attrs))
}

fn kind_of(found: &UsageAttributes<'_>) -> CallKind {
    let mut named = found.each(Field::Kind).filter_map(|(_, v)| v.filter(|v| !v.is_empty())).peekable();
    if named.peek().is_none() || named.any(|v| MODEL_CALLS.iter().any(|m| v.eq_ignore_ascii_case(m))) {
        CallKind::Model
    } else {
        CallKind::Rollup
    }
}

/// How a cost the span carries (`gen_ai.usage.cost`, `cost.usd`) is used
/// (`cost.provided_cost`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProvidedCost {
    /// The span's figure beats the catalog and overrides.
    Prefer,
    /// Never used: calls are priced by the catalog or unpriced.
    Ignore,
    /// A catalog or override price wins; the span's figure fills in for
    /// models no price covers.
    #[default]
    WhenUnpriced,
}

impl ProvidedCost {
    pub fn parse(s: &str) -> Option<ProvidedCost> {
        match s {
            "prefer" => Some(ProvidedCost::Prefer),
            "ignore" => Some(ProvidedCost::Ignore),
            "when_unpriced" => Some(ProvidedCost::WhenUnpriced),
            _ => None,
        }
    }
}

/// A value as quoted in a reason: bounded, as spans are untrusted input and
/// reasons are stored.
fn quoted(v: &str) -> String {
    const SHOWN: usize = 40;
    if v.chars().count() > SHOWN {
        format!("'{}...'", v.chars().take(SHOWN).collect::<String>())
    } else {
        format!("'{v}'")
    }
}

/// A token count: an integer attribute (rendered in decimal) or a string of
/// ASCII digits. Anything else is a problem, recorded, and reads as absent.
fn count(found: &UsageAttributes<'_>, field: Field, problems: &mut Vec<CostError>) -> Option<u64> {
    let (key, v) = found.first_named(field)?;
    // The reason is built only for a bad count: this runs for every span.
    if !v.bytes().all(|b| b.is_ascii_digit()) {
        problems.push(CostError::NotWholeTokens { attribute: key.to_owned(), value: quoted(v) });
        return None;
    }
    let n = v.parse::<u64>();
    if n.is_err() {
        problems.push(CostError::TokensOutOfRange { attribute: key.to_owned(), value: quoted(v) });
    }
    n.ok()
}

/// The cache counts are under the names of Anthropic's API fields
/// (`cache_read_input_tokens`, `cache_creation_input_tokens`), which the
/// instrumentations that use them copy from the response as they are.
fn anthropic_cache_names(found: &UsageAttributes<'_>) -> bool {
    found.each(Field::AnthropicCache).any(|(_, v)| v.is_some_and(|v| !v.is_empty()))
}

/// Reads LLM usage from a span's attributes; `None` when the span is not an
/// LLM call (no model, no token counts and no cost).
pub fn extract(span_name: &str, attrs: &Attributes) -> Option<Extracted> {
    let found = UsageAttributes::of(attrs);
    let model = found.first(Field::Model).map(str::to_owned);
    let mut provided_cost = found.first(Field::ProvidedCost).and_then(|v| v.trim().parse::<Decimal>().ok());
    let mut problems = Vec::new();
    // The ledger keeps money as DECIMAL(38, 12): a cost it cannot hold
    // exactly (and sums of many) makes the call invalid, never a rounded figure.
    if let Some(c) = provided_cost.filter(|c| c.abs() >= Decimal::from(1_000_000_000_000_000u64) || c.normalize().scale() > 12) {
        problems.push(CostError::ProvidedCostOutOfRange { value: c });
        provided_cost = None;
    }
    let input = count(&found, Field::Input, &mut problems);
    let output = count(&found, Field::Output, &mut problems);
    let total = count(&found, Field::Total, &mut problems);
    // An unreadable count (a problem so far) still marks an LLM call.
    if model.is_none() && input.is_none() && output.is_none() && total.is_none() && problems.is_empty() && provided_cost.is_none() {
        return None;
    }
    let cache_read = count(&found, Field::CacheRead, &mut problems).unwrap_or(0);
    // The writes' parts by lifetime, when the span reports them: the total
    // is at least their sum (a span may report the parts alone).
    let write_5m = count(&found, Field::CacheWrite5m, &mut problems).unwrap_or(0);
    let cache_write_1h = count(&found, Field::CacheWrite1h, &mut problems).unwrap_or(0);
    let parts = write_5m.checked_add(cache_write_1h).unwrap_or_else(|| {
        problems.push(CostError::TokenOverflow {
            a: write_5m,
            a_kind: "5-minute cache write",
            b: cache_write_1h,
            b_kind: "1-hour cache write",
        });
        0
    });
    let cache_write = count(&found, Field::CacheWrite, &mut problems).unwrap_or(0).max(parts);
    let reasoning = count(&found, Field::Reasoning, &mut problems).unwrap_or(0);
    let mut input_tokens = input.unwrap_or(0);
    let output_tokens = output.unwrap_or_else(|| total.map_or(0, |t| t.saturating_sub(input_tokens)));
    if input.is_none() {
        if let (Some(t), Some(o)) = (total, output) {
            input_tokens = t.saturating_sub(o);
        }
    }
    let provider = found.first(Field::Provider).unwrap_or("").to_ascii_lowercase();
    let input_excludes_cache = provider == "anthropic" && anthropic_cache_names(&found);
    match cache_read.checked_add(cache_write) {
        // The input count excluded cached tokens: by the convention's
        // meaning, or because the cached counts alone exceed it.
        Some(cached) if cached > 0 && (input_excludes_cache || cached > input_tokens) => match input_tokens.checked_add(cached) {
            Some(n) => input_tokens = n,
            None => problems.push(CostError::TokenOverflow { a: input_tokens, a_kind: "input", b: cached, b_kind: "cached" }),
        },
        Some(_) => {}
        None => problems.push(CostError::TokenOverflow { a: cache_read, a_kind: "cache read", b: cache_write, b_kind: "cache write" }),
    }
    // Reasoning above the output count is counted apart from it (Gemini).
    let output_tokens = if reasoning > output_tokens {
        output_tokens.checked_add(reasoning).unwrap_or_else(|| {
            problems.push(CostError::TokenOverflow { a: output_tokens, a_kind: "output", b: reasoning, b_kind: "reasoning" });
            reasoning
        })
    } else {
        output_tokens
    };
    let usage = LlmUsage {
        provider,
        model: model.unwrap_or_default(),
        operation: found.first(Field::Operation).map_or_else(|| span_name.to_owned(), str::to_owned).to_ascii_lowercase(),
        input_tokens,
        output_tokens,
        cache_read_tokens: cache_read,
        cache_write_tokens: cache_write,
        cache_write_1h_tokens: cache_write_1h,
        reasoning_tokens: reasoning,
        provided_cost,
    };
    let invalid = (!problems.is_empty()).then(|| problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "));
    Some(Extracted { usage, invalid, kind: kind_of(&found) })
}

/// Cost of one usage, split by token kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmCost {
    pub status: PricingStatus,
    /// (token kind, tokens, cost): input (uncached), cache_read, cache_write
    /// (5-minute), cache_write_1h, output (non-reasoning), reasoning.
    /// Zero-token kinds are left out.
    pub parts: Vec<(UsageType, u64, Decimal)>,
    pub total: Decimal,
    /// The catalog entry's provider, when matched.
    pub provider: Option<String>,
    /// The catalog entry's name, when matched: the model's one name in the
    /// ledger, whatever the span called it (`openai/gpt-4o-mini`,
    /// `gpt-4o-mini`, `azure/gpt-4o-mini` are all `gpt-4o-mini`).
    pub model: Option<String>,
    pub rates: Option<Rates>,
    /// Why it is unpriced or invalid, when it is.
    pub reason: Option<String>,
}

const PER: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

fn token_parts(u: &LlmUsage) -> [(UsageType, u64); 6] {
    let cached = u.cache_read_tokens.saturating_add(u.cache_write_tokens);
    // 1-hour writes are a part of the writes (never more than all of them).
    let write_1h = u.cache_write_1h_tokens.min(u.cache_write_tokens);
    [
        (UsageType::Input, u.input_tokens.saturating_sub(cached)),
        (UsageType::CacheRead, u.cache_read_tokens),
        (UsageType::CacheWrite, u.cache_write_tokens - write_1h),
        (UsageType::CacheWrite1h, write_1h),
        (UsageType::Output, u.output_tokens.saturating_sub(u.reasoning_tokens)),
        (UsageType::Reasoning, u.reasoning_tokens),
    ]
}

/// Why `usage` is beyond `limits`, if it is.
fn over_limits(usage: &LlmUsage, limits: &Limits) -> Option<CostError> {
    let limit = limits.max_tokens_per_call;
    let (input, output) = (usage.input_tokens, usage.output_tokens);
    let Some(total) = input.checked_add(output) else {
        return Some(CostError::TokenOverflow { a: input, a_kind: "input", b: output, b_kind: "output" });
    };
    // Cached and reasoning tokens are parts of input and output; a stored
    // usage whose parts alone exceed the limit is as suspect.
    [
        ("input + output", total),
        ("cache read", usage.cache_read_tokens),
        ("cache write", usage.cache_write_tokens),
        ("reasoning", usage.reasoning_tokens),
    ]
    .into_iter()
    .find(|(_, n)| *n > limit)
    .map(|(kind, tokens)| CostError::AboveTokenLimit { tokens, kind, limit })
}

/// Zero-cost parts of `usage`: its tokens are kept, not priced.
fn unpriced_parts(usage: &LlmUsage) -> Vec<(UsageType, u64, Decimal)> {
    token_parts(usage).into_iter().filter(|(_, n)| *n > 0).map(|(kind, n)| (kind, n, Decimal::ZERO)).collect()
}

/// The cost of a usage that cannot be priced: zero, with its tokens and the
/// reason. A cost the span carried is not booked, as the counts beside it
/// are wrong; the reason says what it was.
pub(crate) fn invalid(catalog: &Catalog, usage: &LlmUsage, reason: &str) -> LlmCost {
    let entry = catalog.lookup_for(&usage.provider, &usage.model).entry;
    let (provider, model) = (entry.map(|e| e.provider.clone()), entry.map(|e| e.name.clone()));
    let reason = match usage.provided_cost {
        Some(cost) => format!("{reason}; the span's own cost {cost} is not booked"),
        None => reason.to_owned(),
    };
    LlmCost {
        status: PricingStatus::Invalid,
        parts: unpriced_parts(usage),
        total: Decimal::ZERO,
        provider,
        model,
        rates: None,
        reason: Some(reason),
    }
}

/// `tokens` × `per_million` / 1M, or `None` when it overflows.
fn cost_of(tokens: u64, per_million: Decimal) -> Option<Decimal> {
    Decimal::from(tokens).checked_mul(per_million)?.checked_div(PER)
}

/// Prices one usage on `day` with `catalog`, within `catalog.limits`; a
/// cost the span carries wins ([`ProvidedCost::Prefer`]).
pub fn price(catalog: &Catalog, usage: &LlmUsage, day: NaiveDate) -> LlmCost {
    price_with(catalog, usage, day, ProvidedCost::Prefer)
}

/// Prices one usage on `day` with `catalog`, using the span's own cost as
/// `provided` says.
pub fn price_with(catalog: &Catalog, usage: &LlmUsage, day: NaiveDate, provided: ProvidedCost) -> LlmCost {
    if let Some(reason) = over_limits(usage, &catalog.limits) {
        return invalid(catalog, usage, &reason.to_string());
    }
    price_at_tier(catalog, usage, usage.input_tokens, day, provided)
}

/// Prices a *sum* of calls that all fall in the price tier a call of
/// `tier_input` input tokens selects, as [`price_with`] prices each of them
/// (pricing is linear in each token part within a tier, so the sum of their
/// costs is the cost of their summed parts). The per-call token limit is
/// the caller's to check, per call.
pub fn price_summed(catalog: &Catalog, sum: &LlmUsage, tier_input: u64, day: NaiveDate, provided: ProvidedCost) -> LlmCost {
    price_at_tier(catalog, sum, tier_input, day, provided)
}

fn price_at_tier(catalog: &Catalog, usage: &LlmUsage, tier_input: u64, day: NaiveDate, provided: ProvidedCost) -> LlmCost {
    let lookup = catalog.lookup_for(&usage.provider, &usage.model);
    let provider = lookup.entry.map(|e| e.provider.clone());
    let model = lookup.entry.map(|e| e.name.clone());
    let provided_cost = || LlmCost {
        status: PricingStatus::Provided,
        parts: unpriced_parts(usage),
        total: usage.provided_cost.unwrap_or_default(),
        provider: provider.clone(),
        model: model.clone(),
        rates: None,
        reason: None,
    };
    if usage.provided_cost.is_some() && provided == ProvidedCost::Prefer {
        // The span's own figure wins; token parts carry no separate price.
        return provided_cost();
    }
    let fill_in = usage.provided_cost.is_some() && provided == ProvidedCost::WhenUnpriced;
    let unpriced = |reason: String| LlmCost {
        status: PricingStatus::Unpriced,
        parts: unpriced_parts(usage),
        total: Decimal::ZERO,
        provider: provider.clone(),
        model: model.clone(),
        rates: None,
        reason: Some(reason),
    };
    let Some(entry) = lookup.entry else {
        if fill_in {
            return provided_cost();
        }
        return unpriced(if usage.model.is_empty() {
            "the span names no model".to_owned()
        } else {
            format!("no catalog entry for '{}' (looked up as '{}')", usage.model, lookup.normalized.key)
        });
    };
    let Some(rates) = entry.rates(day, tier_input) else {
        if fill_in {
            return provided_cost();
        }
        return unpriced(format!("no price for {}/{} in force on {day}", entry.provider, entry.name));
    };
    let mut parts = Vec::with_capacity(6);
    let mut total = Decimal::ZERO;
    for (kind, n) in token_parts(usage).into_iter().filter(|(_, n)| *n > 0) {
        let rate = match kind {
            UsageType::Input => rates.input,
            UsageType::CacheRead => rates.cache_read,
            UsageType::CacheWrite => rates.cache_write,
            UsageType::CacheWrite1h => rates.cache_write_1h,
            UsageType::Output => rates.output,
            _ => rates.reasoning,
        };
        // Within the token limit only an absurd override rate overflows.
        let Some((cost, sum)) = cost_of(n, rate).and_then(|c| Some((c, total.checked_add(c)?))) else {
            let entry = format!("{}/{}", entry.provider, entry.name);
            return invalid(catalog, usage, &CostError::CostOverflow { tokens: n, kind: kind.clone(), rate, entry }.to_string());
        };
        parts.push((kind, n, cost));
        total = sum;
    }
    LlmCost { status: PricingStatus::Priced, parts, total, provider, model, rates: Some(rates), reason: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{test_file, CatalogFile};
    use std::str::FromStr;

    const TEST_CATALOG: &str = r#"
version = "test-1"
currency = "USD"

[[model]]
provider = "openai"
name = "gpt-4o"
  [[model.prices]]
  effective = "2024-05-13"
  input = "5.00"
  output = "15.00"
  [[model.prices]]
  effective = "2024-10-01"
  input = "2.50"
  output = "10.00"
  cache_read = "1.25"

[[model]]
provider = "openai"
name = "o3-mini"
  [[model.prices]]
  effective = "2025-01-31"
  input = "1.10"
  output = "4.40"

[[model]]
provider = "anthropic"
name = "claude-3-5-sonnet"
  [[model.prices]]
  effective = "2024-06-20"
  input = "3.00"
  output = "15.00"
  cache_read = "0.30"
  cache_write = "3.75"

[[model]]
provider = "anthropic"
name = "claude-sonnet-4"
  [[model.prices]]
  effective = "2025-05-22"
  input = "3.00"
  output = "15.00"
  cache_read = "0.30"
  cache_write = "3.75"
  cache_write_1h = "6.00"

[[model]]
provider = "google"
name = "gemini-2.5-pro"
  [[model.prices]]
  effective = "2025-06-17"
  input = "1.25"
  output = "10.00"
    [[model.prices.tiers]]
    above_input_tokens = 200000
    input = "2.50"
    output = "15.00"
"#;

    fn catalog() -> Catalog {
        Catalog::from_files(toml::from_str::<CatalogFile>(TEST_CATALOG).unwrap(), None).unwrap()
    }

    /// Usage of a span whose counts are all readable.
    fn valid(span_name: &str, attrs: &Attributes) -> Option<LlmUsage> {
        extract(span_name, attrs).map(|e| {
            assert_eq!(e.invalid, None, "{span_name}");
            e.usage
        })
    }

    fn attrs(pairs: &[(&str, &str)]) -> Attributes {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::from_str(s).unwrap()
    }

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn cached_tokens_are_part_of_input_not_added() {
        let u = valid(
            "chat",
            &attrs(&[
                ("gen_ai.request.model", "gpt-4o"),
                ("gen_ai.response.model", "gpt-4o-2024-08-06"),
                ("gen_ai.usage.input_tokens", "10000"),
                ("gen_ai.usage.cache_read.input_tokens", "4000"),
                ("gen_ai.usage.output_tokens", "500"),
            ]),
        )
        .unwrap();
        assert_eq!((u.input_tokens, u.cache_read_tokens), (10_000, 4_000));
        let c = price(&catalog(), &u, day("2025-03-01"));
        // 6,000 uncached × $2.50/M = 0.015; 4,000 cached × $1.25/M = 0.005;
        // 500 output × $10/M = 0.005; total 0.025.
        assert_eq!(c.total, d("0.025"));
        assert_eq!(c.status, PricingStatus::Priced);
        assert_eq!(
            c.parts,
            vec![(UsageType::Input, 6_000, d("0.015")), (UsageType::CacheRead, 4_000, d("0.005")), (UsageType::Output, 500, d("0.005"))]
        );
    }

    #[test]
    fn one_hour_cache_writes_are_billed_at_their_own_rate() {
        // 10,000 input tokens (OTel: cache writes included), of which 3,000
        // written to the cache, 2,000 of those for an hour; 500 output.
        // 7,000 uncached × $3/M = 0.021; 1,000 five-minute writes × $3.75/M
        // = 0.00375; 2,000 one-hour writes × $6/M = 0.012; 500 output ×
        // $15/M = 0.0075; total 0.04425.
        let with_total = attrs(&[
            ("gen_ai.provider.name", "anthropic"),
            ("gen_ai.request.model", "claude-sonnet-4-20250514"),
            ("gen_ai.usage.input_tokens", "10000"),
            ("gen_ai.usage.cache_creation.input_tokens", "3000"),
            ("gen_ai.usage.cache_creation.ephemeral_1h_input_tokens", "2000"),
            ("gen_ai.usage.output_tokens", "500"),
        ]);
        // The same call reporting the writes' parts only.
        let parts_only = attrs(&[
            ("gen_ai.provider.name", "anthropic"),
            ("gen_ai.request.model", "claude-sonnet-4-20250514"),
            ("gen_ai.usage.input_tokens", "10000"),
            ("gen_ai.usage.cache_creation.ephemeral_5m_input_tokens", "1000"),
            ("gen_ai.usage.cache_creation.ephemeral_1h_input_tokens", "2000"),
            ("gen_ai.usage.output_tokens", "500"),
        ]);
        for a in [&with_total, &parts_only] {
            let u = valid("chat", a).unwrap();
            assert_eq!((u.input_tokens, u.cache_write_tokens, u.cache_write_1h_tokens), (10_000, 3_000, 2_000));
            let c = price(&catalog(), &u, day("2025-06-01"));
            assert_eq!(
                c.parts,
                vec![
                    (UsageType::Input, 7_000, d("0.021")),
                    (UsageType::CacheWrite, 1_000, d("0.00375")),
                    (UsageType::CacheWrite1h, 2_000, d("0.012")),
                    (UsageType::Output, 500, d("0.0075")),
                ]
            );
            assert_eq!(c.total, d("0.04425"));
        }
        // A model without a 1-hour rate bills them at its 5-minute one:
        // 3,000 × $3.75/M = 0.01125 for all writes.
        let u = LlmUsage { model: "claude-3-5-sonnet-20241022".into(), ..valid("chat", &parts_only).unwrap() };
        let c = price(&catalog(), &u, day("2025-06-01"));
        let writes: Decimal = c.parts.iter().filter(|p| matches!(p.0, UsageType::CacheWrite | UsageType::CacheWrite1h)).map(|p| p.2).sum();
        assert_eq!(writes, d("0.01125"));
    }

    #[test]
    fn reasoning_tokens_are_part_of_output() {
        let u = valid(
            "chat o3-mini",
            &attrs(&[
                ("gen_ai.request.model", "o3-mini"),
                ("gen_ai.usage.input_tokens", "1000"),
                ("gen_ai.usage.output_tokens", "3000"),
                ("gen_ai.usage.reasoning.output_tokens", "2500"),
            ]),
        )
        .unwrap();
        // 1,000 × 1.10/M = 0.0011; 500 visible output × 4.40/M = 0.0022;
        // 2,500 reasoning × 4.40/M (billed as output) = 0.011; total 0.0143.
        assert_eq!(price(&catalog(), &u, day("2025-02-01")).total, d("0.0143"));
    }

    #[test]
    fn input_that_excludes_cache_is_rebuilt() {
        // Anthropic reports input_tokens without cache reads and writes.
        let u = valid(
            "chat",
            &attrs(&[
                ("gen_ai.system", "anthropic"),
                ("gen_ai.request.model", "claude-3-5-sonnet-20241022"),
                ("gen_ai.usage.prompt_tokens", "100"),
                ("gen_ai.usage.cache_read_input_tokens", "5000"),
                ("gen_ai.usage.cache_creation_input_tokens", "1000"),
                ("gen_ai.usage.completion_tokens", "200"),
            ]),
        )
        .unwrap();
        assert_eq!(u.input_tokens, 6_100);
        assert_eq!(u.provider, "anthropic");
        // 100 × 3/M = 0.0003; 5,000 × 0.30/M = 0.0015; 1,000 × 3.75/M = 0.00375;
        // 200 × 15/M = 0.003; total 0.00855.
        assert_eq!(price(&catalog(), &u, day("2025-01-01")).total, d("0.00855"));
    }

    #[test]
    fn anthropic_raw_input_adds_cache_whatever_its_size() {
        // Anthropic's API: input_tokens 10,000 fresh, 4,000 read from cache;
        // the cache count is below the input count, and still apart from it.
        let u = valid(
            "chat",
            &attrs(&[
                ("gen_ai.system", "anthropic"),
                ("gen_ai.request.model", "claude-3-5-sonnet-20241022"),
                ("gen_ai.usage.prompt_tokens", "10000"),
                ("gen_ai.usage.cache_read_input_tokens", "4000"),
                ("gen_ai.usage.completion_tokens", "100"),
            ]),
        )
        .unwrap();
        assert_eq!((u.input_tokens, u.cache_read_tokens), (14_000, 4_000));
        // 10,000 × 3/M = 0.03; 4,000 × 0.30/M = 0.0012; 100 × 15/M = 0.0015;
        // total 0.0327.
        assert_eq!(price(&catalog(), &u, day("2025-01-01")).total, d("0.0327"));
    }

    #[test]
    fn otel_genai_input_includes_cache_even_for_anthropic() {
        // The OTel GenAI names: input_tokens already holds the cached part.
        let u = valid(
            "chat",
            &attrs(&[
                ("gen_ai.provider.name", "anthropic"),
                ("gen_ai.request.model", "claude-3-5-sonnet-20241022"),
                ("gen_ai.usage.input_tokens", "10000"),
                ("gen_ai.usage.cache_read.input_tokens", "4000"),
                ("gen_ai.usage.output_tokens", "100"),
            ]),
        )
        .unwrap();
        assert_eq!(u.input_tokens, 10_000);
        // 6,000 × 3/M = 0.018; 4,000 × 0.30/M = 0.0012; 100 × 15/M = 0.0015;
        // total 0.0207.
        assert_eq!(price(&catalog(), &u, day("2025-01-01")).total, d("0.0207"));
    }

    #[test]
    fn reasoning_above_output_is_billed_beside_it() {
        // Gemini counts thoughts apart from candidates: output 500, reasoning
        // 2,000 means 2,500 billed output tokens, not 2,000.
        let u = valid(
            "chat o3-mini",
            &attrs(&[
                ("gen_ai.request.model", "o3-mini"),
                ("gen_ai.usage.input_tokens", "1000"),
                ("gen_ai.usage.output_tokens", "500"),
                ("gen_ai.usage.reasoning.output_tokens", "2000"),
            ]),
        )
        .unwrap();
        assert_eq!((u.output_tokens, u.reasoning_tokens), (2_500, 2_000));
        // 1,000 × 1.10/M = 0.0011; 500 × 4.40/M = 0.0022; 2,000 reasoning ×
        // 4.40/M = 0.0088; total 0.0121.
        assert_eq!(price(&catalog(), &u, day("2025-02-01")).total, d("0.0121"));
    }

    #[test]
    fn tiers_apply_by_request_size() {
        let u = valid(
            "generate_content",
            &attrs(&[
                ("gen_ai.request.model", "models/gemini-2.5-pro"),
                ("gen_ai.usage.input_tokens", "250000"),
                ("gen_ai.usage.output_tokens", "1000"),
            ]),
        )
        .unwrap();
        let c = price(&catalog(), &u, day("2025-07-01"));
        // Above 200k input: 250,000 × 2.50/M = 0.625; 1,000 × 15/M = 0.015.
        assert_eq!(c.total, d("0.64"));
        assert_eq!(c.rates.unwrap().tier_above, Some(200_000));
        let small = LlmUsage { input_tokens: 200_000, ..u };
        // At the threshold the base price holds: 200,000 × 1.25/M + 1,000 × 10/M.
        assert_eq!(price(&catalog(), &small, day("2025-07-01")).total, d("0.26"));
    }

    #[test]
    fn the_price_in_force_on_the_day_applies() {
        let u = valid(
            "chat",
            &attrs(&[("llm.model_name", "openai/gpt-4o"), ("llm.token_count.prompt", "1000"), ("llm.token_count.completion", "1000")]),
        )
        .unwrap();
        // Before 2024-10-01: 1,000 × 5/M + 1,000 × 15/M = 0.02; after: 0.0025 + 0.01.
        assert_eq!(price(&catalog(), &u, day("2024-09-30")).total, d("0.02"));
        assert_eq!(price(&catalog(), &u, day("2024-10-01")).total, d("0.0125"));
        let before = price(&catalog(), &u, day("2024-01-01"));
        assert_eq!(before.status, PricingStatus::Unpriced);
        assert!(before.reason.unwrap().contains("no price for openai/gpt-4o in force on 2024-01-01"));
    }

    #[test]
    fn overrides_beat_the_catalog() {
        let over = test_file("acme-negotiated", &[("openai", "gpt-4o", "2024-01-01", "2.00", "8.00")]);
        let cat = Catalog::from_files(toml::from_str(TEST_CATALOG).unwrap(), Some(over)).unwrap();
        assert_eq!(cat.version, "test-1+acme-negotiated");
        let u = LlmUsage { model: "azure/gpt-4o".into(), input_tokens: 1_000_000, output_tokens: 1_000_000, ..Default::default() };
        // 1M × $2 + 1M × $8.
        assert_eq!(price(&cat, &u, day("2025-01-01")).total, d("10"));
        assert!(cat.lookup("gpt-4o").from_override);
    }

    #[test]
    fn a_provided_cost_the_ledger_cannot_keep_makes_the_call_invalid() {
        for cost in ["1000000000000000", "0.0000000000001"] {
            let attrs = costplane_telemetry::Attributes::from([("gen_ai.request.model", "gpt-4o"), ("gen_ai.usage.cost", cost)]);
            let got = extract("chat", &attrs).unwrap();
            assert_eq!(got.usage.provided_cost, None, "{cost}");
            assert!(got.invalid.as_deref().is_some_and(|r| r.contains("outside what the ledger keeps")), "{cost}: {:?}", got.invalid);
        }
        let attrs = costplane_telemetry::Attributes::from([("gen_ai.request.model", "gpt-4o"), ("gen_ai.usage.cost", "999999999999999.5")]);
        assert_eq!(extract("chat", &attrs).unwrap().invalid, None);
    }

    #[test]
    fn a_provided_cost_wins_and_unknown_models_are_unpriced_not_free() {
        let u = valid(
            "llm",
            &attrs(&[("cost.model", "gpt-4o"), ("cost.tokens.prompt", "10"), ("cost.tokens.completion", "5"), ("cost.usd", "0.123456789")]),
        )
        .unwrap();
        let c = price(&catalog(), &u, day("2025-01-01"));
        assert_eq!((c.status, c.total), (PricingStatus::Provided, d("0.123456789")));

        let u = valid(
            "chat",
            &attrs(&[("gen_ai.request.model", "acme-llm-7b"), ("gen_ai.usage.input_tokens", "42"), ("gen_ai.usage.output_tokens", "7")]),
        )
        .unwrap();
        let c = price(&catalog(), &u, day("2025-01-01"));
        assert_eq!(c.status, PricingStatus::Unpriced);
        assert_eq!(c.parts.iter().map(|p| p.1).sum::<u64>(), 49, "tokens are kept");
        assert!(c.reason.unwrap().contains("no catalog entry for 'acme-llm-7b'"));
    }

    #[test]
    fn openinference_and_openllmetry_totals() {
        let u = valid(
            "ChatCompletion",
            &attrs(&[
                ("llm.model_name", "gpt-4o"),
                ("llm.provider", "openai"),
                ("openinference.span.kind", "LLM"),
                ("llm.token_count.total", "120"),
                ("llm.token_count.completion", "20"),
                ("llm.token_count.prompt_details.cache_read", "50"),
            ]),
        )
        .unwrap();
        assert_eq!((u.input_tokens, u.output_tokens, u.cache_read_tokens), (100, 20, 50));
        assert_eq!(u.operation, "llm");
        assert!(valid("GET /", &attrs(&[("http.route", "/")])).is_none());
    }

    fn shipped() -> Catalog {
        Catalog::load(None).unwrap()
    }

    fn usage(provider: &str, model: &str, input: u64, output: u64) -> LlmUsage {
        LlmUsage { provider: provider.into(), model: model.into(), input_tokens: input, output_tokens: output, ..Default::default() }
    }

    #[test]
    fn snapshots_versions_and_vertex_names_are_priced_as_themselves() {
        let dec = day("2025-12-06");
        // 1M input + 1M output tokens at each model's own rates.
        for (provider, model, total) in [
            // The moving alias is Mistral Large 3 (0.50 + 1.50 = 2); the
            // 2411 and 2407 snapshots stay at 2 + 6 = 8.
            ("mistral", "mistral-large-latest", "2"),
            ("mistral", "mistral-large-2411", "8"),
            ("mistral", "mistral-large-2407", "8"),
            // gpt-3.5-turbo (0125) 0.50 + 1.50; 1106 1.00 + 2.00; 0613 1.50 + 2.00.
            ("openai", "gpt-3.5-turbo", "2"),
            ("openai", "gpt-3.5-turbo-1106", "3"),
            ("openai", "gpt-3.5-turbo-0613", "3.5"),
            // Titan embeddings v1 at 0.10 per 1M, v2 at 0.02 (output free).
            ("aws.bedrock", "amazon.titan-embed-text-v1", "0.1"),
            ("aws.bedrock", "amazon.titan-embed-text-v2:0", "0.02"),
            // Vertex names the version before the date: claude-3-5-sonnet
            // 3.00 + 15.00.
            ("gcp.vertex_ai", "claude-3-5-sonnet-v2@20241022", "18"),
            // gpt-5.1: 1.25 + 10.00.
            ("openai", "gpt-5.1", "11.25"),
        ] {
            let c = price(&shipped(), &usage(provider, model, 1_000_000, 1_000_000), dec);
            assert_eq!((c.status, c.total), (PricingStatus::Priced, d(total)), "{model}");
        }
        // Long-context tiers: grok-4 above 128k input (6.00 / 30.00), and
        // gemini-3-pro above 200k (4.00 / 18.00): 200,001 input + 1,000 output.
        let c = price(&shipped(), &usage("xai", "grok-4", 200_001, 1_000), dec);
        // 200,001 × 6/1M = 1.200006; 1,000 × 30/1M = 0.03.
        assert_eq!(c.total, d("1.230006"));
        let c = price(&shipped(), &usage("gcp.gemini", "gemini-3-pro-preview", 200_001, 1_000), dec);
        // 200,001 × 4/1M = 0.800004; 1,000 × 18/1M = 0.018.
        assert_eq!(c.total, d("0.818004"));
    }

    #[test]
    fn a_dated_snapshot_keeps_its_own_price() {
        let march = day("2025-03-01");
        // 1,000 × $5/M + 500 × $15/M = 0.005 + 0.0075 = 0.0125.
        let c = price(&shipped(), &usage("openai", "gpt-4o-2024-05-13", 1_000, 500), march);
        assert_eq!((c.status, c.total), (PricingStatus::Priced, d("0.0125")));
        // The alias on the same day: 1,000 × $2.50/M + 500 × $10/M = 0.0025 + 0.005 = 0.0075.
        assert_eq!(price(&shipped(), &usage("openai", "gpt-4o", 1_000, 500), march).total, d("0.0075"));
        // Before the alias moved to it, 2024-08-06 was already the cheaper snapshot:
        // 1,000 × $2.50/M + 500 × $10/M = 0.0075, where the alias cost 0.005 + 0.0075 = 0.0125.
        let sept = day("2024-09-01");
        assert_eq!(price(&shipped(), &usage("openai", "gpt-4o-2024-08-06", 1_000, 500), sept).total, d("0.0075"));
        assert_eq!(price(&shipped(), &usage("openai", "gpt-4o", 1_000, 500), sept).total, d("0.0125"));
    }

    #[test]
    fn a_provider_qualified_entry_prices_that_providers_calls() {
        let over = test_file("azure-1", &[("azure.ai.openai", "gpt-4o", "2024-01-01", "2.75", "11.00")]);
        let cat = Catalog::from_files(toml::from_str(TEST_CATALOG).unwrap(), Some(over)).unwrap();
        let day = day("2025-03-01");
        let u = valid(
            "chat",
            &attrs(&[
                ("gen_ai.system", "az.ai.openai"),
                ("gen_ai.request.model", "gpt-4o"),
                ("gen_ai.usage.input_tokens", "1000"),
                ("gen_ai.usage.output_tokens", "500"),
            ]),
        )
        .unwrap();
        // Azure's entry: 1,000 × $2.75/M + 500 × $11/M = 0.00275 + 0.0055 = 0.00825.
        let c = price(&cat, &u, day);
        assert_eq!((c.total, c.provider.as_deref()), (d("0.00825"), Some("azure.ai.openai")));
        // OpenAI's own entry: 1,000 × $2.50/M + 500 × $10/M = 0.0025 + 0.005 = 0.0075.
        let c = price(&cat, &LlmUsage { provider: "OpenAI".into(), ..u.clone() }, day);
        assert_eq!((c.total, c.provider.as_deref()), (d("0.0075"), Some("openai")));
        // Without a provider the override holds the fallback (and was reported).
        assert_eq!(price(&cat, &LlmUsage { provider: String::new(), ..u }, day).total, d("0.00825"));
        assert_eq!(cat.collisions().len(), 1);
    }

    fn invalid_reason(pairs: &[(&str, &str)]) -> String {
        let e = extract("chat", &attrs(pairs)).unwrap();
        e.invalid.unwrap_or_else(|| panic!("{pairs:?} must be invalid, read as {:?}", e.usage))
    }

    #[test]
    fn token_counts_must_be_whole_numbers() {
        let model = ("gen_ai.request.model", "gpt-4o");
        assert_eq!(
            invalid_reason(&[model, ("gen_ai.usage.input_tokens", "1e30"), ("gen_ai.usage.output_tokens", "10")]),
            "gen_ai.usage.input_tokens '1e30' is not a whole number of tokens"
        );
        assert_eq!(
            invalid_reason(&[model, ("gen_ai.usage.input_tokens", "10"), ("gen_ai.usage.output_tokens", "12.7")]),
            "gen_ai.usage.output_tokens '12.7' is not a whole number of tokens"
        );
        for bad in ["-5", "+5", " 5", "many", "0x10", "NaN"] {
            assert!(invalid_reason(&[model, ("llm.token_count.prompt", bad)]).contains("is not a whole number"), "{bad}");
        }
        // A double attribute of 1e30 is rendered in full: digits, but not a u64.
        let huge = "1000000000000000000000000000000";
        assert_eq!(
            invalid_reason(&[model, ("gen_ai.usage.cache_read.input_tokens", huge)]),
            format!("gen_ai.usage.cache_read.input_tokens '{huge}' is out of range")
        );
        // Reasons quote a bounded part of the value.
        let long = "9".repeat(100) + "x";
        assert_eq!(
            invalid_reason(&[model, ("gen_ai.usage.input_tokens", &long)]),
            format!("gen_ai.usage.input_tokens '{}...' is not a whole number of tokens", "9".repeat(40))
        );
        // An unreadable count alone still marks the span as an LLM call to flag.
        assert!(extract("chat", &attrs(&[("gen_ai.usage.input_tokens", "1.5")])).unwrap().invalid.is_some());
    }

    #[test]
    fn an_invalid_call_is_booked_at_zero_with_its_reason_and_readable_tokens() {
        let e = extract(
            "chat",
            &attrs(&[
                ("gen_ai.request.model", "gpt-4o"),
                ("gen_ai.usage.input_tokens", "12.7"),
                ("gen_ai.usage.output_tokens", "500"),
                ("cost.usd", "0.5"),
            ]),
        )
        .unwrap();
        let c = invalid(&catalog(), &e.usage, e.invalid.as_deref().unwrap());
        assert_eq!((c.status, c.status.as_str(), c.total), (PricingStatus::Invalid, "invalid", Decimal::ZERO));
        assert_eq!(c.parts, vec![(UsageType::Output, 500, Decimal::ZERO)]);
        assert_eq!(
            c.reason.as_deref(),
            Some("gen_ai.usage.input_tokens '12.7' is not a whole number of tokens; the span's own cost 0.5 is not booked")
        );
    }

    #[test]
    fn calls_above_the_token_limit_are_invalid() {
        let cat = catalog();
        let day = day("2025-03-01");
        // At the limit the call is priced: 99,999,500 × $2.50/M + 500 × $10/M = 249.99875 + 0.005 = 250.00375.
        let at = usage("openai", "gpt-4o", 99_999_500, 500);
        let c = price(&cat, &at, day);
        assert_eq!((c.status, c.total), (PricingStatus::Priced, d("250.00375")));
        let above = LlmUsage { output_tokens: 501, ..at };
        let c = price(&cat, &above, day);
        assert_eq!((c.status, c.total), (PricingStatus::Invalid, Decimal::ZERO));
        assert_eq!(c.reason.as_deref(), Some("100000001 input + output tokens are above the limit of 100000000 per call"));
        // A stored usage whose cache count alone is above the limit.
        let cached = LlmUsage { cache_read_tokens: 100_000_001, ..usage("openai", "gpt-4o", 10, 10) };
        assert_eq!(
            price(&cat, &cached, day).reason.as_deref(),
            Some("100000001 cache read tokens are above the limit of 100000000 per call")
        );
        // The limit is the catalog's setting: 1,000 tokens priced, 1,001 not.
        let mut strict = catalog();
        strict.limits = Limits { max_tokens_per_call: 1_000 };
        assert_eq!(price(&strict, &usage("openai", "gpt-4o", 500, 500), day).status, PricingStatus::Priced);
        assert_eq!(price(&strict, &usage("openai", "gpt-4o", 501, 500), day).status, PricingStatus::Invalid);
        assert_eq!(Limits::default().max_tokens_per_call, 100_000_000);
    }

    #[test]
    fn u64_max_tokens_never_panic() {
        let max = u64::MAX.to_string();
        let e = extract(
            "chat",
            &attrs(&[
                ("gen_ai.request.model", "gpt-4o"),
                ("gen_ai.usage.input_tokens", "1"),
                ("gen_ai.usage.output_tokens", &max),
                ("gen_ai.usage.cache_read.input_tokens", &max),
                ("gen_ai.usage.cache_creation.input_tokens", &max),
                ("gen_ai.usage.reasoning.output_tokens", &max),
            ]),
        )
        .unwrap();
        assert_eq!(e.invalid.as_deref(), Some("18446744073709551615 cache read plus 18446744073709551615 cache write tokens overflow"));
        let c = price(&catalog(), &e.usage, day("2025-03-01"));
        assert_eq!((c.status, c.total), (PricingStatus::Invalid, Decimal::ZERO));
        assert_eq!(c.reason.as_deref(), Some("1 input plus 18446744073709551615 output tokens overflow"));

        // Cached tokens that push the rebuilt input total past 64 bits.
        let e = extract(
            "chat",
            &attrs(&[
                ("gen_ai.request.model", "gpt-4o"),
                ("gen_ai.usage.input_tokens", &max),
                ("gen_ai.usage.cache_read.input_tokens", &(u64::MAX / 2 + 1).to_string()),
                ("gen_ai.usage.cache_creation.input_tokens", &(u64::MAX / 2).to_string()),
            ]),
        )
        .unwrap();
        assert!(e.invalid.is_none(), "{:?}", e.invalid);
        let e = extract(
            "chat",
            &attrs(&[
                ("gen_ai.request.model", "gpt-4o"),
                ("gen_ai.usage.input_tokens", "2"),
                ("gen_ai.usage.cache_read.input_tokens", &(u64::MAX - 1).to_string()),
            ]),
        )
        .unwrap();
        assert_eq!(e.invalid.as_deref(), Some("2 input plus 18446744073709551614 cached tokens overflow"));

        // Without a token limit, money that passes Decimal's range is invalid too.
        let absurd = test_file("absurd", &[("acme", "gpt-4o", "2024-01-01", "79228162514264337593543950335", "1")]);
        let mut cat = Catalog::from_files(absurd, None).unwrap();
        cat.limits = Limits { max_tokens_per_call: u64::MAX };
        let c = price(&cat, &usage("acme", "gpt-4o", u64::MAX, 0), day("2025-03-01"));
        assert_eq!((c.status, c.total), (PricingStatus::Invalid, Decimal::ZERO));
        assert_eq!(
            c.reason.as_deref(),
            Some("the cost of 18446744073709551615 input tokens at 79228162514264337593543950335 per 1M tokens of acme/gpt-4o overflows")
        );
    }
}
