//! Anthropic's cost and usage reports (Admin API, and as CSV).
//!
//! - Cost report (`GET /v1/organizations/cost_report`, group by
//!   `description` and `workspace_id`): `{"data": [{"starting_at",
//!   "ending_at", "results": [{"currency": "USD", "amount": "123.45",
//!   "workspace_id", "description", "cost_type", "context_window",
//!   "model", "service_tier", "token_type"}]}], "has_more", "next_page"}`.
//!   **`amount` is in the currency's lowest unit (cents) as a decimal
//!   string**: "123.45" is $1.2345. A page that says `has_more: true` is
//!   refused unless a later page of the same JSON array follows.
//! - Cost CSV: the same fields as columns (`starting_at` or
//!   `usage_date_utc` or `date`; `amount` in cents, or `cost_usd` in
//!   dollars; `currency`, `model`, `token_type`, `description`,
//!   `cost_type`, `workspace_id` or `workspace`).
//! - Messages usage report (`GET /v1/organizations/usage_report/messages`,
//!   grouped by `model`): results of `uncached_input_tokens`,
//!   `cache_read_input_tokens`, `cache_creation.ephemeral_5m_input_tokens`,
//!   `cache_creation.ephemeral_1h_input_tokens`, `output_tokens`. It carries
//!   tokens and no money: its lines cost 0 and give the invoiced tokens
//!   beside the cost report's amounts (a scope of its own, so importing one
//!   report never replaces the other).
//!
//! `token_type` maps to the ledger's token kinds: `uncached_input_tokens` →
//! input, `output_tokens` → output, `cache_read_input_tokens` →
//! cache_read, `cache_creation.*` → cache_write; no token type (web
//! search, code execution) → other.

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::openai::{csv_reader, Header};
use crate::{decimal, time_ns, Format, Invoice, InvoiceError, InvoiceLine, Provider, TokenKind, DAY_NS};

#[derive(Deserialize)]
#[serde(bound(deserialize = "T: serde::de::DeserializeOwned"))]
struct Page<T> {
    data: Vec<Bucket<T>>,
    #[serde(default)]
    has_more: bool,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "T: serde::de::DeserializeOwned"))]
struct Bucket<T> {
    starting_at: String,
    ending_at: Option<String>,
    #[serde(default)]
    results: Vec<T>,
}

#[derive(Deserialize)]
struct CostResult {
    amount: Option<Box<RawValue>>,
    currency: Option<String>,
    description: Option<String>,
    model: Option<String>,
    token_type: Option<String>,
    workspace_id: Option<String>,
}

#[derive(Deserialize)]
struct UsageResult {
    model: Option<String>,
    workspace_id: Option<String>,
    uncached_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation: Option<CacheCreation>,
    output_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CacheCreation {
    ephemeral_5m_input_tokens: Option<u64>,
    ephemeral_1h_input_tokens: Option<u64>,
}

/// The ledger token kind of a report's `token_type`.
pub fn token_kind(token_type: &str) -> TokenKind {
    match token_type.trim() {
        "uncached_input_tokens" | "input_tokens" => TokenKind::Input,
        "output_tokens" => TokenKind::Output,
        "cache_read_input_tokens" => TokenKind::CacheRead,
        t if t.starts_with("cache_creation") => TokenKind::CacheWrite,
        _ => TokenKind::Other,
    }
}

fn pages<T: serde::de::DeserializeOwned>(file: &str, text: &str, what: &str) -> Result<Vec<Page<T>>, InvoiceError> {
    let pages: Vec<Page<T>> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text)
    } else {
        serde_json::from_str::<Page<T>>(text).map(|p| vec![p])
    }
    .map_err(|e| InvoiceError::format(file, format!("not an Anthropic {what} page: {e}")))?;
    if pages.last().is_some_and(|p| p.has_more) {
        return Err(InvoiceError::format(
            file,
            "the last page says has_more: true, so the report is incomplete; fetch every page (next_page) and import them as one JSON array",
        ));
    }
    Ok(pages)
}

fn bucket_times<T>(file: &str, at: &str, b: &Bucket<T>) -> Result<(i64, i64), InvoiceError> {
    let start =
        time_ns(&b.starting_at).ok_or_else(|| InvoiceError::cell(file, at, "starting_at", format!("{:?} is not a time", b.starting_at)))?;
    let end = match &b.ending_at {
        Some(e) => time_ns(e).ok_or_else(|| InvoiceError::cell(file, at, "ending_at", format!("{e:?} is not a time")))?,
        None => start.saturating_add(DAY_NS),
    };
    Ok((start, end))
}

/// The name of a line: its description, or its model and token type.
fn sku(description: Option<&str>, model: &str, token_type: &str) -> String {
    match description.filter(|d| !d.is_empty()) {
        Some(d) => d.to_owned(),
        None => [model, token_type].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join(" "),
    }
}

/// Cents as dollars, exactly.
fn cents(d: Decimal) -> Decimal {
    d / Decimal::ONE_HUNDRED
}

/// The Admin API's cost report: one page, or an array of pages.
pub fn cost_json(file: &str, text: &str) -> Result<Invoice, InvoiceError> {
    let mut out = Invoice { format: Format::AnthropicCostJson, lines: Vec::new(), periods: Vec::new() };
    for (p, page) in pages::<CostResult>(file, text, "cost report")?.iter().enumerate() {
        for (b, bucket) in page.data.iter().enumerate() {
            let (start, end) = bucket_times(file, &format!("page {p}, data[{b}]"), bucket)?;
            out.periods.push((start, end));
            for (r, res) in bucket.results.iter().enumerate() {
                let at = format!("page {p}, data[{b}].results[{r}]");
                let raw = res.amount.as_ref().ok_or_else(|| InvoiceError::cell(file, &at, "amount", "is missing"))?;
                let text = raw.get().trim();
                let amount = decimal(text.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(text))
                    .ok_or_else(|| InvoiceError::cell(file, &at, "amount", format!("{text} is not a decimal number")))?;
                let currency = res.currency.as_deref().ok_or_else(|| InvoiceError::cell(file, &at, "currency", "is missing"))?;
                let model = res.model.clone().unwrap_or_default();
                let token_type = res.token_type.as_deref().unwrap_or("");
                out.lines.push(InvoiceLine {
                    start_ns: start,
                    end_ns: end,
                    provider: Provider::Anthropic,
                    sku: sku(res.description.as_deref(), &model, token_type),
                    kind: token_kind(token_type),
                    model,
                    tokens: None,
                    cost: cents(amount),
                    currency: currency.to_ascii_uppercase(),
                    project: res.workspace_id.clone().unwrap_or_default(),
                    tenant: None,
                });
            }
        }
    }
    Ok(out)
}

/// A cost CSV (the cost report's fields as columns).
pub fn cost_csv(file: &str, text: &str) -> Result<Invoice, InvoiceError> {
    let mut reader = csv_reader(text);
    let h = Header::of(&mut reader, file)?;
    let start_col = h.need(&["starting_at", "usage_date_utc", "date"], file)?;
    let end_col = h.col(&["ending_at"]);
    // Exactly one money column: cents (the API's unit) or dollars.
    let (amount_col, in_cents) = match (h.col(&["amount"]), h.col(&["cost_usd"])) {
        (Some(_), Some(_)) => return Err(InvoiceError::format(file, "both amount (cents) and cost_usd (dollars) columns: keep one")),
        (Some(c), None) => (c, true),
        (None, Some(c)) => (c, false),
        (None, None) => return Err(InvoiceError::MissingColumn { file: file.to_owned(), column: "amount or cost_usd".into() }),
    };
    let amount_name = if in_cents { "amount" } else { "cost_usd" };
    let currency_col = h.col(&["currency"]);
    let model_col = h.col(&["model"]);
    let token_col = h.col(&["token_type"]);
    let description_col = h.col(&["description"]);
    let workspace_col = h.col(&["workspace_id", "workspace"]);
    let mut out = Invoice { format: Format::AnthropicCostCsv, lines: Vec::new(), periods: Vec::new() };
    for (i, rec) in reader.records().enumerate() {
        let at = format!("row {}", i + 1);
        let rec = rec.map_err(|e| InvoiceError::cell(file, &at, "*", e.to_string()))?;
        let cell = |c: Option<usize>| c.and_then(|c| rec.get(c)).unwrap_or("").trim();
        let start = time_ns(cell(Some(start_col)))
            .ok_or_else(|| InvoiceError::cell(file, &at, "starting_at", format!("{:?} is not a time", cell(Some(start_col)))))?;
        let end = match end_col {
            Some(c) => time_ns(cell(Some(c)))
                .ok_or_else(|| InvoiceError::cell(file, &at, "ending_at", format!("{:?} is not a time", cell(Some(c)))))?,
            None => start.saturating_add(DAY_NS),
        };
        let amount = decimal(cell(Some(amount_col)))
            .ok_or_else(|| InvoiceError::cell(file, &at, amount_name, format!("{:?} is not a decimal number", cell(Some(amount_col)))))?;
        let currency = match currency_col {
            Some(_) if cell(currency_col).is_empty() => return Err(InvoiceError::cell(file, &at, "currency", "is empty")),
            Some(_) => cell(currency_col).to_ascii_uppercase(),
            // The report's currency is always USD (and cost_usd says so).
            None => "USD".to_owned(),
        };
        let model = cell(model_col).to_owned();
        let token_type = cell(token_col);
        if !out.periods.contains(&(start, end)) {
            out.periods.push((start, end));
        }
        out.lines.push(InvoiceLine {
            start_ns: start,
            end_ns: end,
            provider: Provider::Anthropic,
            sku: sku(Some(cell(description_col)), &model, token_type),
            kind: token_kind(token_type),
            model,
            tokens: None,
            cost: if in_cents { cents(amount) } else { amount },
            currency,
            project: cell(workspace_col).to_owned(),
            tenant: None,
        });
    }
    Ok(out)
}

/// The Admin API's messages usage report: tokens per model and kind, at $0.
pub fn usage_json(file: &str, text: &str) -> Result<Invoice, InvoiceError> {
    let mut out = Invoice { format: Format::AnthropicUsageJson, lines: Vec::new(), periods: Vec::new() };
    for (p, page) in pages::<UsageResult>(file, text, "usage report")?.iter().enumerate() {
        for (b, bucket) in page.data.iter().enumerate() {
            let (start, end) = bucket_times(file, &format!("page {p}, data[{b}]"), bucket)?;
            out.periods.push((start, end));
            for res in &bucket.results {
                let model = res.model.clone().unwrap_or_default();
                let cache = res.cache_creation.as_ref();
                let write = cache
                    .map(|c| c.ephemeral_5m_input_tokens.unwrap_or(0).saturating_add(c.ephemeral_1h_input_tokens.unwrap_or(0)))
                    .filter(|_| cache.is_some_and(|c| c.ephemeral_5m_input_tokens.is_some() || c.ephemeral_1h_input_tokens.is_some()));
                for (kind, name, tokens) in [
                    (TokenKind::Input, "uncached_input_tokens", res.uncached_input_tokens),
                    (TokenKind::CacheRead, "cache_read_input_tokens", res.cache_read_input_tokens),
                    (TokenKind::CacheWrite, "cache_creation", write),
                    (TokenKind::Output, "output_tokens", res.output_tokens),
                ] {
                    let Some(tokens) = tokens else { continue };
                    out.lines.push(InvoiceLine {
                        start_ns: start,
                        end_ns: end,
                        provider: Provider::Anthropic,
                        sku: sku(None, &model, name),
                        model: model.clone(),
                        kind,
                        tokens: Some(Decimal::from(tokens)),
                        cost: Decimal::ZERO,
                        currency: "USD".into(),
                        project: res.workspace_id.clone().unwrap_or_default(),
                        tenant: None,
                    });
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_cents() {
        let page = r#"{"data":[{"starting_at":"2025-08-01T00:00:00Z","ending_at":"2025-08-02T00:00:00Z","results":[
            {"currency":"USD","amount":"123.45","workspace_id":null,"description":"Claude Sonnet 4 Usage - Input Tokens",
             "cost_type":"tokens","context_window":"0-200k","model":"claude-sonnet-4-20250514","service_tier":"standard",
             "token_type":"uncached_input_tokens"}]}],"has_more":false,"next_page":null}"#;
        let i = cost_json("a.json", page).unwrap();
        // 123.45 cents = $1.2345.
        assert_eq!(i.lines[0].cost, Decimal::new(12345, 4));
        assert_eq!(i.lines[0].kind, TokenKind::Input);
        assert_eq!(i.lines[0].model, "claude-sonnet-4-20250514");
    }

    #[test]
    fn bad_cells_name_row_and_column() {
        let csv = "starting_at,model,token_type,amount\n2025-08-01,claude-sonnet-4,output_tokens,12\n2025-08-01,claude-sonnet-4,output_tokens,1,5\n";
        assert_eq!(cost_csv("a.csv", csv).unwrap_err().to_string().split(':').take(2).collect::<Vec<_>>(), ["a.csv", " row 2, column *"]);
        let csv = "starting_at,model,token_type,cost_usd\n2025-08-01,claude-sonnet-4,output_tokens,twelve\n";
        assert_eq!(cost_csv("a.csv", csv).unwrap_err().to_string(), "a.csv: row 1, column cost_usd: \"twelve\" is not a decimal number");
        let csv = "starting_at,model,token_type,amount,cost_usd\n";
        assert!(cost_csv("a.csv", csv).unwrap_err().to_string().contains("keep one"));
    }
}
