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
//! The model comes first from the FOCUS `SkuPriceDetails` column, when its
//! JSON object has a `ModelId`: the FOCUS working draft carries an AI
//! model's identity there (`ModelDeveloper`, `ModelFamily`, `ModelId`,
//! `ModelVersion`) and the token kind as `TokenType` (`Input`, `Output`,
//! `CacheRead`, `CacheWrite`) or, in another revision of the draft, as
//! `TokenDirection` (`Input`, `Output`) with `TokenCacheAction`
//! (`Uncached`, `Read`, `Write`); see
//! <https://github.com/FinOps-Open-Cost-and-Usage-Spec/FOCUS_Spec/blob/main/specification/appendix/ai_model_identity_examples.md>
//! and `.../appendix/ai_prompt_caching_examples.md` there. A kind the
//! properties do not give is read from the `SkuMeter` (`Output Tokens`)
//! or the fields below.
//!
//! Otherwise the model and token kind come from the first of these that
//! names a token kind: AWS's `x_UsageType` (`USE1-Claude3.5Sonnet-input-tokens`,
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
//!
//! The FOCUS import keeps `ChargeDescription`, `SkuMeter`,
//! `SkuPriceDetails` and the provider's `x_` columns in the row's
//! `x_Extra`; `SkuId` is a ledger column. The reconciliation reads them
//! from the store's sums per SKU and day ([`BillLine`]), never row by row.

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

/// What an AI line is read from: one bill row, or the store's sum of the
/// rows of one service, SKU, kept columns, unit and day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BillLine {
    pub start_ns: i64,
    pub end_ns: i64,
    pub service_name: String,
    pub sku_id: String,
    /// The row's `x_Extra`: a JSON object of the kept FOCUS and `x_` columns.
    pub extra: String,
    pub consumed_quantity: Decimal,
    pub consumed_unit: String,
    pub cost: Decimal,
    pub currency: String,
    pub project: String,
    pub tenant: Option<String>,
}

/// Model and kind from a `SkuPriceDetails` cell, when it names a model
/// (`ModelId`); the kind is `None` when no property gives it.
pub fn sku_price_details(cell: &str) -> Option<(String, Option<TokenKind>)> {
    let details: serde_json::Map<String, serde_json::Value> = serde_json::from_str(cell.trim()).ok()?;
    let prop = |k: &str| details.get(k).and_then(|v| v.as_str()).map(str::trim).filter(|s| !s.is_empty());
    let model = prop("ModelId")?.to_owned();
    let kind = match prop("TokenType") {
        Some(t) => match t.to_ascii_lowercase().as_str() {
            "input" => Some(TokenKind::Input),
            "output" => Some(TokenKind::Output),
            "cacheread" => Some(TokenKind::CacheRead),
            "cachewrite" => Some(TokenKind::CacheWrite),
            _ => Some(TokenKind::Other),
        },
        None => match (
            prop("TokenDirection").map(str::to_ascii_lowercase).as_deref(),
            prop("TokenCacheAction").map(str::to_ascii_lowercase).as_deref(),
        ) {
            (Some("input"), Some("read")) => Some(TokenKind::CacheRead),
            (Some("input"), Some("write")) => Some(TokenKind::CacheWrite),
            (Some("input"), _) => Some(TokenKind::Input),
            (Some("output"), _) => Some(TokenKind::Output),
            _ => None,
        },
    };
    Some((model, kind))
}

/// The invoice line of a bill line, if it is an AI line.
pub fn bill_line(b: &BillLine) -> Option<InvoiceLine> {
    let extra: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&b.extra).unwrap_or_default();
    let provider = provider_of(&b.service_name, &extra)?;
    let mut read = None;
    if let Some((model, kind)) = extra_field(&extra, "SkuPriceDetails").and_then(|d| sku_price_details(&d)) {
        // The kind the properties leave open: the meter, then the fields below.
        let kind = kind
            .or_else(|| extra_field(&extra, "SkuMeter").and_then(|m| meter_words(&m)).map(|(_, k)| k))
            .or_else(|| extra_field(&extra, "x_UsageType").and_then(|u| bedrock_usage_type(&u)).map(|(_, k)| k))
            .or_else(|| {
                ["x_SkuMeterName", "x_SkuDescription", "ChargeDescription"]
                    .iter()
                    .find_map(|key| extra_field(&extra, key).and_then(|s| meter_words(&s)).map(|(_, k)| k))
            })
            .unwrap_or(TokenKind::Other);
        read = Some((model, kind));
    }
    if read.is_none() {
        if let Some(u) = extra_field(&extra, "x_UsageType") {
            read = bedrock_usage_type(&u);
        }
    }
    for key in ["x_SkuMeterName", "x_SkuDescription", "ChargeDescription"] {
        if read.is_none() {
            read = extra_field(&extra, key).and_then(|s| meter_words(&s));
        }
    }
    if read.is_none() {
        read = bedrock_usage_type(&b.sku_id).or_else(|| meter_words(&b.sku_id));
    }
    let (model, kind) = read.unwrap_or((String::new(), TokenKind::Other));
    let sku = ["x_UsageType", "x_SkuMeterName", "ChargeDescription"]
        .iter()
        .find_map(|k| extra_field(&extra, k))
        .unwrap_or_else(|| b.sku_id.clone());
    Some(InvoiceLine {
        start_ns: b.start_ns,
        end_ns: b.end_ns,
        provider,
        sku,
        model,
        kind,
        tokens: tokens_of(b.consumed_quantity, &b.consumed_unit),
        cost: b.cost,
        currency: b.currency.to_ascii_uppercase(),
        project: b.project.clone(),
        tenant: b.tenant.clone(),
    })
}

/// The invoice line of one imported bill row, if it is an AI line.
pub fn line(r: &LedgerRow) -> Option<InvoiceLine> {
    if r.source != CLOUD_SOURCE {
        return None;
    }
    bill_line(&BillLine {
        start_ns: r.charge_period_start_ns,
        end_ns: r.charge_period_end_ns,
        service_name: r.service_name.clone(),
        sku_id: r.sku_id.clone(),
        extra: r.ext.extra.clone(),
        consumed_quantity: r.consumed_quantity,
        consumed_unit: r.consumed_unit.clone(),
        cost: r.cost,
        currency: r.billing_currency.clone(),
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
    fn sku_price_details_name_the_model() {
        // The FOCUS draft's AI model identity, with TokenType or TokenDirection + TokenCacheAction.
        let d = r#"{"ModelDeveloper": "Google", "ModelFamily": "Gemini", "ModelId": "gemini-2.5-pro", "ModelVersion": "2.5", "TokenType": "CacheRead"}"#;
        assert_eq!(sku_price_details(d), Some(("gemini-2.5-pro".into(), Some(TokenKind::CacheRead))));
        let d = r#"{"ModelId": "solora-reasoning-pro", "TokenCacheAction": "Write", "TokenDirection": "Input"}"#;
        assert_eq!(sku_price_details(d), Some(("solora-reasoning-pro".into(), Some(TokenKind::CacheWrite))));
        assert_eq!(sku_price_details(r#"{"ModelId": "m", "TokenDirection": "Output"}"#), Some(("m".into(), Some(TokenKind::Output))));
        assert_eq!(sku_price_details(r#"{"ModelId": "m"}"#), Some(("m".into(), None)));
        // A compute SKU's details, and a cell that is no JSON object, name no model.
        assert_eq!(sku_price_details(r#"{"CoreCount": 4, "OperatingSystem": "Linux"}"#), None);
        assert_eq!(sku_price_details("n/a"), None);
    }

    #[test]
    fn token_units() {
        assert_eq!(tokens_of(Decimal::new(15, 1), "1K Tokens"), Some(Decimal::from(1500)));
        assert_eq!(tokens_of(Decimal::from(2), "1M tokens"), Some(Decimal::from(2_000_000)));
        assert_eq!(tokens_of(Decimal::from(7), "Tokens"), Some(Decimal::from(7)));
        assert_eq!(tokens_of(Decimal::from(7), "Hours"), None);
    }
}
