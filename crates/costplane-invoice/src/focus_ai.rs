//! The AI lines of imported FOCUS bills (ledger rows with `x_Source =
//! cloud`), read as invoice lines at reconciliation time: nothing is
//! imported twice, and re-importing a bill (which replaces its rows)
//! changes the reconciliation with it.
//!
//! Which lines: by `ServiceName` (and Azure's meter subcategory):
//! Amazon Bedrock (`bedrock`), Azure OpenAI / AI Foundry (`openai`,
//! `foundry`), Vertex AI (`vertex`), the Gemini API (`gemini api`,
//! `generative language`). Every other line of a bill is not an AI line.
//!
//! The model and token kind come from the first of these that names a
//! token kind: AWS's `x_UsageType` (`USE1-Claude3.5Sonnet-input-tokens`,
//! `...-output-tokens`, `...-cache-read-input-token-count`,
//! `...-cache-write-input-token-count`: the region code before the model is
//! dropped), Azure's `x_SkuMeterName` (`gpt-4o-0806-Inp-glbl`,
//! `gpt 4o 0513 Outp regnl Tokens`), `x_SkuDescription`, the
//! `ChargeDescription` (`Gemini 2.5 Flash Input Text`, or `... per 1K input
//! tokens for Claude 3.5 Sonnet in US East`: the words after `for`), the
//! `SkuId`. A line none of them reads is kept, with no model and kind
//! `other`: its money still counts, as usage no span can be matched to.
//! Tokens are the `ConsumedQuantity` when the `ConsumedUnit` counts tokens
//! (`Tokens`, `1K tokens`, `1M tokens`, scaled to single tokens).

use costplane_ledger::LedgerRow;
use rust_decimal::Decimal;

use crate::{InvoiceLine, Provider, TokenKind};

/// The bill's source in the ledger.
pub const CLOUD_SOURCE: costplane_ledger::Source = costplane_ledger::Source::Cloud;

fn extra_field(extra: &serde_json::Map<String, serde_json::Value>, key: &str) -> Option<String> {
    extra.get(key).and_then(|v| v.as_str()).filter(|s| !s.trim().is_empty()).map(str::to_owned)
}

/// The AI provider of a bill line, if it is one.
pub fn provider_of(service_name: &str, extra: &serde_json::Map<String, serde_json::Value>) -> Option<Provider> {
    let s = service_name.to_ascii_lowercase();
    let sub = extra_field(extra, "x_SkuMeterSubcategory").unwrap_or_default().to_ascii_lowercase();
    if s.contains("bedrock") {
        Some(Provider::AwsBedrock)
    } else if s.contains("openai") || s.contains("foundry") || sub.contains("openai") {
        Some(Provider::AzureOpenAi)
    } else if s.contains("vertex") {
        Some(Provider::VertexAi)
    } else if s.contains("gemini api") || s.contains("generative language") {
        Some(Provider::Gemini)
    } else {
        None
    }
}

/// Model and kind of a Bedrock usage type (`USE1-Claude3.5Sonnet-input-tokens`).
pub fn bedrock_usage_type(s: &str) -> Option<(String, TokenKind)> {
    let lower = s.to_ascii_lowercase();
    let (at, kind) = [
        ("-cache-read-input-token", TokenKind::CacheRead),
        ("-cache-write-input-token", TokenKind::CacheWrite),
        ("-input-token", TokenKind::Input),
        ("-output-token", TokenKind::Output),
    ]
    .into_iter()
    .find_map(|(pat, kind)| lower.find(pat).map(|at| (at, kind)))?;
    let mut model = &s[..at];
    // A region code first: upper-case letters and digits, then '-'.
    if let Some((head, rest)) = model.split_once('-') {
        if (2..=6).contains(&head.len()) && head.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) && !rest.is_empty() {
            model = rest;
        }
    }
    Some((model.to_owned(), kind))
}

/// Words that say the kind of a line, and what kind.
fn kind_word(words: &[&str], i: usize) -> Option<TokenKind> {
    let w = words[i].to_ascii_lowercase();
    let next = words.get(i + 1).map(|n| n.to_ascii_lowercase()).unwrap_or_default();
    match w.as_str() {
        "cached" | "cache" | "cachedinp" => {
            Some(if next.starts_with("write") || next.starts_with("creat") { TokenKind::CacheWrite } else { TokenKind::CacheRead })
        }
        "input" | "inputs" | "inp" => Some(TokenKind::Input),
        "output" | "outputs" | "outp" => Some(TokenKind::Output),
        _ => None,
    }
}

/// Words at the end of a model's part of a meter name that are not the model's.
const FILLER: [&str; 15] = [
    "text",
    "tokens",
    "token",
    "characters",
    "chars",
    "predictions",
    "global",
    "glbl",
    "regional",
    "regnl",
    "batch",
    "online",
    "data",
    "zone",
    "usage",
];

/// Model and kind of a meter name or description, read by words.
pub fn meter_words(s: &str) -> Option<(String, TokenKind)> {
    let words: Vec<&str> = s.split(|c: char| c.is_whitespace() || c == '-' || c == '_' || c == ',').filter(|w| !w.is_empty()).collect();
    let (at, kind) = (0..words.len()).find_map(|i| kind_word(&words, i).map(|k| (i, k)))?;
    // "... per 1K input tokens for Claude 3.5 Sonnet in US East": the model follows "for".
    let lower = s.to_ascii_lowercase();
    if let Some(p) = lower.rfind(" for ") {
        let tail = &s[p + 5..];
        let end = tail.to_ascii_lowercase().find(" in ").unwrap_or(tail.len());
        let model = tail[..end].trim();
        if !model.is_empty() {
            return Some((model.to_owned(), kind));
        }
    }
    let mut model: Vec<&str> = words[..at].to_vec();
    while model.last().is_some_and(|w| FILLER.contains(&w.to_ascii_lowercase().as_str())) {
        model.pop();
    }
    Some((model.join("-"), kind))
}

/// The tokens a quantity in `unit` stands for, when the unit counts tokens.
pub fn tokens_of(quantity: Decimal, unit: &str) -> Option<Decimal> {
    let u = unit.to_ascii_lowercase();
    if !u.contains("token") {
        return None;
    }
    let scale = if u.contains("1m") || u.contains("million") {
        Decimal::from(1_000_000u32)
    } else if u.contains("1k") || u.contains("1000") || u.contains("thousand") {
        Decimal::from(1000u32)
    } else {
        Decimal::ONE
    };
    quantity.checked_mul(scale)
}

/// The invoice line of one imported bill row, if it is an AI line.
pub fn line(r: &LedgerRow) -> Option<InvoiceLine> {
    if r.source != CLOUD_SOURCE {
        return None;
    }
    let extra: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&r.ext.extra).unwrap_or_default();
    let provider = provider_of(&r.service_name, &extra)?;
    let mut read = None;
    if let Some(u) = extra_field(&extra, "x_UsageType") {
        read = bedrock_usage_type(&u);
    }
    for key in ["x_SkuMeterName", "x_SkuDescription", "ChargeDescription"] {
        if read.is_none() {
            read = extra_field(&extra, key).and_then(|s| meter_words(&s));
        }
    }
    if read.is_none() {
        read = bedrock_usage_type(&r.sku_id).or_else(|| meter_words(&r.sku_id));
    }
    let (model, kind) = read.unwrap_or((String::new(), TokenKind::Other));
    let sku = ["x_UsageType", "x_SkuMeterName", "ChargeDescription"]
        .iter()
        .find_map(|k| extra_field(&extra, k))
        .unwrap_or_else(|| r.sku_id.clone());
    Some(InvoiceLine {
        start_ns: r.charge_period_start_ns,
        end_ns: r.charge_period_end_ns,
        provider,
        sku,
        model,
        kind,
        tokens: tokens_of(r.consumed_quantity, &r.consumed_unit),
        cost: r.cost,
        currency: r.billing_currency.to_ascii_uppercase(),
        project: r.project.clone(),
        tenant: Some(r.tenant.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bedrock_usage_types() {
        assert_eq!(bedrock_usage_type("USE1-Claude3.5Sonnet-input-tokens"), Some(("Claude3.5Sonnet".into(), TokenKind::Input)));
        assert_eq!(bedrock_usage_type("USW2-Claude3Haiku-output-tokens"), Some(("Claude3Haiku".into(), TokenKind::Output)));
        assert_eq!(
            bedrock_usage_type("EUC1-Claude3.7Sonnet-cache-read-input-token-count"),
            Some(("Claude3.7Sonnet".into(), TokenKind::CacheRead))
        );
        assert_eq!(
            bedrock_usage_type("USE1-Claude3.7Sonnet-cache-write-input-token-count"),
            Some(("Claude3.7Sonnet".into(), TokenKind::CacheWrite))
        );
        assert_eq!(bedrock_usage_type("USE1-DataTransfer-Out-Bytes"), None);
    }

    #[test]
    fn meter_names_and_descriptions() {
        assert_eq!(meter_words("gpt-4o-0806-Inp-glbl"), Some(("gpt-4o-0806".into(), TokenKind::Input)));
        assert_eq!(meter_words("gpt 4o mini 0718 Outp regnl Tokens"), Some(("gpt-4o-mini-0718".into(), TokenKind::Output)));
        assert_eq!(meter_words("gpt-4o-0806-cached-Inp-glbl"), Some(("gpt-4o-0806".into(), TokenKind::CacheRead)));
        assert_eq!(meter_words("Gemini 2.5 Flash Input Text"), Some(("Gemini-2.5-Flash".into(), TokenKind::Input)));
        assert_eq!(meter_words("Gemini 2.5 Pro Text Output"), Some(("Gemini-2.5-Pro".into(), TokenKind::Output)));
        assert_eq!(
            meter_words("$0.003 per 1K input tokens for Claude 3.5 Sonnet in US East (N. Virginia)"),
            Some(("Claude 3.5 Sonnet".into(), TokenKind::Input))
        );
        assert_eq!(meter_words("Standard Storage"), None);
    }

    #[test]
    fn token_units() {
        assert_eq!(tokens_of(Decimal::new(15, 1), "1K Tokens"), Some(Decimal::from(1500)));
        assert_eq!(tokens_of(Decimal::from(2), "1M tokens"), Some(Decimal::from(2_000_000)));
        assert_eq!(tokens_of(Decimal::from(7), "Tokens"), Some(Decimal::from(7)));
        assert_eq!(tokens_of(Decimal::from(7), "Hours"), None);
    }
}
