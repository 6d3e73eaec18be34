//! costplane-invoice: what the providers invoice for model calls, and how it
//! compares with what costplane estimated from spans. Pure: no I/O, no SQL.
//!
//! # Invoice lines
//! An [`InvoiceLine`] is one amount a provider billed (or reported as
//! billed): one day (or hour), one provider, one SKU as the provider names
//! it, with the model and token kind read from that SKU where it names
//! them. They come from:
//! - the direct providers' cost reports ([`Format`]): OpenAI's Costs API
//!   JSON and its usage dashboard's cost CSV, Anthropic's Admin API cost
//!   report JSON (amounts in cents), its Console's cost CSV export (dollars)
//!   and its messages usage report JSON (tokens only, no money);
//! - the AI lines of imported FOCUS bills (Amazon Bedrock, Azure OpenAI /
//!   AI Foundry, Vertex AI, the Gemini API): [`focus_ai::line`] reads them
//!   from the ledger's `cloud` rows, nothing is imported twice.
//!
//! # Invariants
//! - Money is `Decimal` from the file's text to the answer: JSON numbers
//!   are read from their literal text ([`serde_json::value::RawValue`]),
//!   never through `f64`; amounts are rounded once, to the ledger's 12
//!   places, when a ledger row is made ([`ledger_rows`]).
//! - A cell or field that does not parse is an error naming the file, the
//!   row (1-based, header excluded) or JSON path, and the column: never a
//!   default of 0. A file of no known shape is refused, naming the shapes.
//! - Imported lines land in the ledger as `x_Source = invoice` rows, each
//!   import's provider and account in a ledger scope of its own
//!   (`invoice:<provider>:<account>:<report>`, [`Invoice::scope`]); an
//!   import replaces every hour of the days its report covers
//!   ([`Invoice::periods`]), so re-importing replaces, never doubles.
//! - Reconciliation ([`reconcile`]) maps model names across with
//!   `costplane-cost`'s canonicalization plus a spelling-free key
//!   ([`match_key`]), and reports the mapping it used.

pub mod anthropic;
pub mod focus_ai;
pub mod openai;
pub mod reconcile;

use std::str::FromStr;

use costplane_ledger::{hour_of, round_money, ChargeStatus, LedgerExt, LedgerRow, PricingStatus, Source, UsageType, DAY_NS, HOUR_NS};
use rust_decimal::Decimal;
use thiserror::Error;

/// The ledger's `x_Source` of imported invoice lines.
pub const SOURCE: Source = Source::Invoice;
/// The ledger scope prefix of imported invoice lines.
pub const SCOPE_PREFIX: &str = "invoice:";

/// Errors reading an invoice or cost report.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum InvoiceError {
    /// The file is not one of the known shapes.
    #[error("{file}: {message}")]
    Format { file: String, message: String },
    /// A CSV file whose header lacks a column the format needs.
    #[error("{file}: missing column {column}")]
    MissingColumn { file: String, column: String },
    /// One bad cell or field: the 1-based data row (or JSON path) and column.
    #[error("{file}: {at}, column {column}: {message}")]
    Cell { file: String, at: String, column: String, message: String },
}

impl InvoiceError {
    pub(crate) fn format(file: &str, message: impl Into<String>) -> InvoiceError {
        InvoiceError::Format { file: file.to_owned(), message: message.into() }
    }

    pub(crate) fn cell(file: &str, at: impl Into<String>, column: &str, message: impl Into<String>) -> InvoiceError {
        InvoiceError::Cell { file: file.to_owned(), at: at.into(), column: column.to_owned(), message: message.into() }
    }
}

/// The providers whose bills costplane reads. The id is the reconciliation's
/// provider (a canonical `gen_ai.provider.name`, as `costplane-cost` spells it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Provider {
    OpenAi,
    Anthropic,
    AwsBedrock,
    AzureOpenAi,
    VertexAi,
    Gemini,
}

impl Provider {
    pub fn id(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::AwsBedrock => "aws.bedrock",
            Provider::AzureOpenAi => "azure.ai.openai",
            Provider::VertexAi => "gcp.vertex_ai",
            Provider::Gemini => "gcp.gemini",
        }
    }

    /// The FOCUS ProviderName costplane's own LLM rows use for it.
    pub fn display(self) -> &'static str {
        match self {
            Provider::OpenAi => "OpenAI",
            Provider::Anthropic => "Anthropic",
            Provider::AwsBedrock => "AWS",
            Provider::AzureOpenAi => "Microsoft",
            Provider::VertexAi | Provider::Gemini => "Google",
        }
    }

    pub fn from_id(id: &str) -> Option<Provider> {
        [Provider::OpenAi, Provider::Anthropic, Provider::AwsBedrock, Provider::AzureOpenAi, Provider::VertexAi, Provider::Gemini]
            .into_iter()
            .find(|p| p.id() == id)
    }
}

/// The reconciliation's provider of a span's provider however it is spelled:
/// `costplane-cost`'s canonical id, with Azure's inference endpoint billed
/// as Azure OpenAI.
pub fn provider_family(raw: &str) -> String {
    match costplane_cost::model_name::canonical_provider(raw).as_str() {
        "azure.ai.inference" => "azure.ai.openai".to_owned(),
        other => other.to_owned(),
    }
}

/// A token kind, spelled as the ledger's LLM `x_UsageType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TokenKind {
    Input,
    Output,
    CacheRead,
    /// Cache writes kept for the default time (5 minutes), or of a report
    /// that does not say.
    CacheWrite,
    /// Cache writes kept for an hour.
    CacheWrite1h,
    /// Not a token line (web search, storage, a fee) or one the SKU does not say.
    Other,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Input => "input",
            TokenKind::Output => "output",
            TokenKind::CacheRead => "cache_read",
            TokenKind::CacheWrite => "cache_write",
            TokenKind::CacheWrite1h => "cache_write_1h",
            TokenKind::Other => "other",
        }
    }

    /// The ledger's usage type of the kind.
    pub fn usage_type(self) -> UsageType {
        match self {
            TokenKind::Input => UsageType::Input,
            TokenKind::Output => UsageType::Output,
            TokenKind::CacheRead => UsageType::CacheRead,
            TokenKind::CacheWrite => UsageType::CacheWrite,
            TokenKind::CacheWrite1h => UsageType::CacheWrite1h,
            TokenKind::Other => UsageType::Other,
        }
    }

    pub fn parse(s: &str) -> TokenKind {
        match s {
            "input" => TokenKind::Input,
            "output" => TokenKind::Output,
            "cache_read" => TokenKind::CacheRead,
            "cache_write" => TokenKind::CacheWrite,
            "cache_write_1h" => TokenKind::CacheWrite1h,
            _ => TokenKind::Other,
        }
    }
}

/// One billed amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceLine {
    /// `[start, end)` of the charge, ns since the epoch (UTC).
    pub start_ns: i64,
    pub end_ns: i64,
    pub provider: Provider,
    /// The SKU or line item as the provider names it.
    pub sku: String,
    /// The model as the provider names it; empty when the line is no model's.
    pub model: String,
    pub kind: TokenKind,
    /// Tokens billed, when the line says.
    pub tokens: Option<Decimal>,
    /// In `currency`, exact.
    pub cost: Decimal,
    /// Upper-case ISO 4217.
    pub currency: String,
    /// The provider's project or workspace, when the line has one.
    pub project: String,
    /// The tenant the line belongs to, when the bill tags it.
    pub tenant: Option<String>,
}

/// The shapes of cost reports costplane imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `GET /v1/organization/costs` (pages of daily buckets).
    OpenAiCostsJson,
    /// The usage dashboard's cost export (CSV, one row per bucket and line item).
    OpenAiCostsCsv,
    /// `GET /v1/organizations/cost_report` (amounts in cents).
    AnthropicCostJson,
    /// The Console's cost CSV export (dollars).
    AnthropicCostCsv,
    /// `GET /v1/organizations/usage_report/messages` (tokens, no money).
    AnthropicUsageJson,
}

impl Format {
    pub const ALL: [Format; 5] =
        [Format::OpenAiCostsJson, Format::OpenAiCostsCsv, Format::AnthropicCostJson, Format::AnthropicCostCsv, Format::AnthropicUsageJson];

    pub fn name(self) -> &'static str {
        match self {
            Format::OpenAiCostsJson => "openai-costs-json",
            Format::OpenAiCostsCsv => "openai-costs-csv",
            Format::AnthropicCostJson => "anthropic-cost-json",
            Format::AnthropicCostCsv => "anthropic-cost-csv",
            Format::AnthropicUsageJson => "anthropic-usage-json",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == s)
    }

    pub fn provider(self) -> Provider {
        match self {
            Format::OpenAiCostsJson | Format::OpenAiCostsCsv => Provider::OpenAi,
            _ => Provider::Anthropic,
        }
    }

    /// `cost` or `usage`: the two reports of one account are scopes apart,
    /// so importing one never replaces the other.
    pub fn report(self) -> &'static str {
        if self == Format::AnthropicUsageJson {
            "usage"
        } else {
            "cost"
        }
    }

    /// The format of `bytes`, from its content: a JSON page's result
    /// objects, or a CSV header's columns.
    pub fn detect(bytes: &[u8]) -> Option<Format> {
        let text = std::str::from_utf8(bytes).ok()?.trim_start_matches('\u{feff}').trim_start();
        if text.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(text).ok()?;
            let first = v["data"].as_array()?.iter().find_map(|b| b["results"].as_array().and_then(|r| r.first()).cloned());
            return match first {
                Some(r) if r["object"] == "organization.costs.result" => Some(Format::OpenAiCostsJson),
                Some(r) if r.get("uncached_input_tokens").is_some() => Some(Format::AnthropicUsageJson),
                Some(r) if r["amount"].is_string() => Some(Format::AnthropicCostJson),
                // Empty pages: the bucket's field names tell.
                None if v["data"].as_array()?.first().is_some_and(|b| b.get("start_time").is_some()) => Some(Format::OpenAiCostsJson),
                None if v["data"].as_array()?.first().is_some_and(|b| b.get("starting_at").is_some()) => Some(Format::AnthropicCostJson),
                _ => None,
            };
        }
        let header = text.lines().next()?;
        let cols: Vec<String> = header.split(',').map(|c| c.trim().trim_matches('"').to_ascii_lowercase()).collect();
        let has = |c: &str| cols.iter().any(|h| h == c);
        if has("amount_value") && has("amount_currency") {
            Some(Format::OpenAiCostsCsv)
        } else if has("usage_date_utc") && has("cost_usd") {
            Some(Format::AnthropicCostCsv)
        } else {
            None
        }
    }
}

/// The lines of one imported report, and what it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub format: Format,
    pub lines: Vec<InvoiceLine>,
    /// `[start, end)` of every bucket the report has, empty ones included:
    /// the hours an import replaces.
    pub periods: Vec<(i64, i64)>,
}

impl Invoice {
    /// The ledger scope of `account`'s report of this kind.
    pub fn scope(&self, account: &str) -> String {
        format!("{SCOPE_PREFIX}{}:{}:{}", self.format.provider().id(), account, self.format.report())
    }

    /// Σ cost per currency.
    pub fn totals(&self) -> std::collections::BTreeMap<String, Decimal> {
        let mut out = std::collections::BTreeMap::new();
        for l in &self.lines {
            *out.entry(l.currency.clone()).or_insert(Decimal::ZERO) += l.cost;
        }
        out
    }
}

/// Reads `bytes` as `format`, or as the format its content shows when
/// `format` is `None`.
pub fn parse(format: Option<Format>, file: &str, bytes: &[u8]) -> Result<Invoice, InvoiceError> {
    let format = match format.or_else(|| Format::detect(bytes)) {
        Some(f) => f,
        None => {
            let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
            return Err(InvoiceError::format(
                file,
                format!(
                    "not a cost report costplane knows: expected one of {} (OpenAI's Costs API JSON or cost CSV export, \
                     Anthropic's cost report JSON or Console cost CSV export, Anthropic's messages usage report JSON)",
                    names.join(", ")
                ),
            ));
        }
    };
    let text = std::str::from_utf8(bytes).map_err(|_| InvoiceError::format(file, "not UTF-8 text"))?.trim_start_matches('\u{feff}');
    match format {
        Format::OpenAiCostsJson => openai::costs_json(file, text),
        Format::OpenAiCostsCsv => openai::costs_csv(file, text),
        Format::AnthropicCostJson => anthropic::cost_json(file, text),
        Format::AnthropicCostCsv => anthropic::cost_csv(file, text),
        Format::AnthropicUsageJson => anthropic::usage_json(file, text),
    }
}

/// An exact decimal from a report's text: plain or scientific notation.
pub(crate) fn decimal(s: &str) -> Option<Decimal> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    Decimal::from_str(s).ok().or_else(|| Decimal::from_scientific(s).ok())
}

/// Unix seconds or RFC 3339 / `YYYY-MM-DD` as ns since the epoch.
pub(crate) fn time_ns(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().ok()?.checked_mul(1_000_000_000);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return t.timestamp_nanos_opt();
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s.trim_end_matches(" UTC"), f) {
            return t.and_utc().timestamp_nanos_opt();
        }
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_nanos_opt()
}

/// The start of the UTC day holding `ns`.
pub fn day_of(ns: i64) -> i64 {
    ns.saturating_sub(ns.rem_euclid(DAY_NS))
}

/// The key model names are matched by across spans and bills: the
/// catalog's canonical key (prefixes, versions, dates dropped, `.` as
/// `-`), then without Azure's `-MMDD` snapshot suffix, a trailing `vN`
/// and every separator, so `Claude3.5Sonnet` (a Bedrock usage type),
/// `claude-3-5-sonnet-20241022` and `us.anthropic.claude-3-5-sonnet-20241022-v2:0`
/// meet, as do `gpt-35-turbo` and `gpt-3.5-turbo`, `Gemini 2.5 Flash` and
/// `gemini-2.5-flash`.
pub fn match_key(raw: &str) -> String {
    let mut key = canonical_name(raw);
    if let Some((head, tail)) = key.rsplit_once('-') {
        if tail.len() == 4 && tail.bytes().all(|b| b.is_ascii_digit()) && !head.is_empty() {
            key = head.to_owned();
        }
    }
    let mut compact: String = key.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    // A trailing version after a letter: "sonnetv2" -> "sonnet".
    if let Some(v) = compact.rfind('v') {
        let (head, tail) = compact.split_at(v);
        if tail.len() > 1 && tail[1..].bytes().all(|b| b.is_ascii_digit()) && head.ends_with(|c: char| c.is_ascii_alphabetic()) {
            compact.truncate(v);
        }
    }
    // Claude's family before or after its version ("Claude Sonnet 3.7",
    // the Console's name, and "claude-3-7-sonnet"): family first.
    if let Some(rest) = compact.strip_prefix("claude") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let family = &rest[digits..];
        if digits > 0 && ["sonnet", "opus", "haiku", "instant"].contains(&family) {
            compact = format!("claude{family}{}", &rest[..digits]);
        }
    }
    compact
}

/// The catalog's canonical name of a model (what reconciliation shows).
pub fn canonical_name(raw: &str) -> String {
    let spaced = raw.trim().replace(' ', "-");
    costplane_cost::model_name::normalize(&spaced).key
}

/// Ledger rows of an import, all in `scope`: one per line, at the line's
/// hour, `x_Source = invoice`, the amount rounded once to the ledger's 12
/// places. `ledger_currency` is the only currency accepted: a report in
/// another is refused, never summed into it.
pub fn ledger_rows(invoice: &Invoice, account: &str, ledger_currency: &str, file: &str) -> Result<Vec<LedgerRow>, InvoiceError> {
    let provider = invoice.format.provider();
    let mut out = Vec::with_capacity(invoice.lines.len());
    for l in &invoice.lines {
        if !l.currency.eq_ignore_ascii_case(ledger_currency) {
            return Err(InvoiceError::format(
                file,
                format!("the report is in {}, the ledger in {ledger_currency}: export it in {ledger_currency}", l.currency),
            ));
        }
        let start = hour_of(l.start_ns);
        let month = chrono::DateTime::from_timestamp_nanos(start).format("%Y-%m");
        let tenant = l.tenant.clone().unwrap_or_else(|| "unassigned".to_owned());
        let tags = serde_json::json!({ "tenant": tenant, "project": l.project, "invoice_sku": l.sku });
        let unit = if l.tokens.is_some() { "Tokens" } else { "" };
        out.push(
            LedgerRow::builder(SOURCE, start, l.end_ns.max(start.saturating_add(HOUR_NS)))
                .cost(round_money(l.cost), ledger_currency)
                .service(format!("{} API", provider.display()), "AI and Machine Learning")
                .provider(provider.display())
                .consumed(l.tokens.unwrap_or(Decimal::ZERO), unit)
                .sku(l.sku.clone())
                .tags(tags.to_string())
                .owner(tenant, if l.project.is_empty() { "unassigned".into() } else { l.project.clone() }, "unassigned")
                .model(l.model.clone())
                .operation(invoice.format.report())
                .usage_type(l.kind.usage_type())
                .priced(PricingStatus::Provided, invoice.format.name())
                .charge_status(ChargeStatus::Closed)
                .ext(LedgerExt {
                    charge_category: Some("Usage".into()),
                    invoice_issuer: Some(provider.display().into()),
                    import_key: format!("{}|{}|{}|{}", provider.id(), account, invoice.format.report(), month),
                    ..LedgerExt::default()
                })
                .build(),
        );
    }
    Ok(out)
}

/// An imported invoice row of the ledger read back as a line (`None` for
/// rows of other sources).
pub fn line_of_ledger_row(r: &LedgerRow) -> Option<InvoiceLine> {
    if r.source != SOURCE {
        return None;
    }
    let mut line = line_of_sums(&r.ext.import_key, &r.model, r.usage_type.as_str(), &r.consumed_unit, r.cost, r.consumed_quantity)?;
    line.start_ns = r.charge_period_start_ns;
    line.end_ns = r.charge_period_end_ns;
    line.sku = r.sku_id.clone();
    line.currency = r.billing_currency.clone();
    line.project = r.project.clone();
    line.tenant = Some(r.tenant.clone());
    Some(line)
}

/// Imported invoice rows summed by the store (one import key, model, token
/// kind and unit) as one line: the provider is the import key's first
/// part (`None` when it names none); times, SKU, currency, project and
/// tenant are left for the caller.
pub fn line_of_sums(import_key: &str, model: &str, usage_type: &str, unit: &str, cost: Decimal, quantity: Decimal) -> Option<InvoiceLine> {
    let provider = import_key.split('|').next().and_then(Provider::from_id)?;
    Some(InvoiceLine {
        start_ns: 0,
        end_ns: 0,
        provider,
        sku: String::new(),
        model: model.to_owned(),
        kind: TokenKind::parse(usage_type),
        tokens: unit.eq_ignore_ascii_case("tokens").then_some(quantity),
        cost,
        currency: String::new(),
        project: String::new(),
        tenant: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_meet_across_spellings() {
        for (a, b) in [
            ("Claude3.5Sonnet", "us.anthropic.claude-3-5-sonnet-20241022-v2:0"),
            ("Claude3.5SonnetV2", "claude-3-5-sonnet-20241022"),
            ("gpt-4o-2024-08-06", "openai/gpt-4o"),
            ("gpt-4o-0806", "gpt-4o"),
            ("gpt-35-turbo", "gpt-3.5-turbo"),
            ("Gemini 2.5 Flash", "gemini-2.5-flash"),
            ("claude-sonnet-4-20250514", "claude-sonnet-4"),
            // The Anthropic Console's display names against the API's ids.
            ("Claude Sonnet 4", "claude-sonnet-4-20250514"),
            ("Claude Opus 4.1", "claude-opus-4-1-20250805"),
            ("Claude Haiku 4.5", "claude-haiku-4-5-20251001"),
            ("Claude Sonnet 3.7", "claude-3-7-sonnet-20250219"),
            ("Claude Haiku 3.5", "Claude3.5Haiku"),
        ] {
            assert_eq!(match_key(a), match_key(b), "{a} / {b}");
        }
        assert_ne!(match_key("gpt-4o-mini"), match_key("gpt-4o"));
        assert_ne!(match_key("gemini-2.5-pro"), match_key("gemini-2.5-flash"));
        assert_ne!(match_key("Claude Opus 4.1"), match_key("claude-opus-4"));
    }

    #[test]
    fn times_and_decimals() {
        assert_eq!(time_ns("1730419200"), Some(1_730_419_200_000_000_000));
        assert_eq!(time_ns("2024-11-01T00:00:00Z"), Some(1_730_419_200_000_000_000));
        assert_eq!(time_ns("2024-11-01"), Some(1_730_419_200_000_000_000));
        assert_eq!(time_ns("yesterday"), None);
        assert_eq!(decimal("1.5E-3"), Some(Decimal::new(15, 4)));
        assert_eq!(decimal(""), None);
        assert_eq!(decimal("1..2"), None);
    }

    #[test]
    fn unknown_shapes_are_refused_naming_the_known_ones() {
        let e = parse(None, "bill.json", br#"{"hello": 1}"#).unwrap_err().to_string();
        assert!(e.starts_with("bill.json: not a cost report costplane knows: expected one of openai-costs-json,"), "{e}");
        let e = parse(None, "bill.csv", b"a,b\n1,2\n").unwrap_err().to_string();
        assert!(e.contains("anthropic-cost-csv"), "{e}");
    }
}
