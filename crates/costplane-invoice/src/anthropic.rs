//! Anthropic's cost and usage reports: the Admin API's JSON, and the
//! Console's cost CSV export.
//!
//! - Cost report (`GET /v1/organizations/cost_report`, group by
//!   `description` and `workspace_id`), as Anthropic's API reference gives
//!   it (<https://platform.claude.com/docs/en/api/admin/cost_report>, also
//!   <https://docs.anthropic.com/en/api/admin-api/usage-cost/get-cost-report>):
//!   `{"data": [{"starting_at", "ending_at", "results": [{"currency":
//!   "USD", "amount": "123.45", "workspace_id", "description", "cost_type",
//!   "context_window", "model", "service_tier", "token_type",
//!   "inference_geo"}]}], "has_more", "next_page"}`; bucket times are RFC
//!   3339. **`amount` is in the currency's lowest unit (cents) as a decimal
//!   string**: "123.45" is $1.2345. `cost_type` is `tokens`, `web_search`
//!   or `code_execution`; `token_type` one of `uncached_input_tokens`,
//!   `output_tokens`, `cache_read_input_tokens`,
//!   `cache_creation.ephemeral_5m_input_tokens`,
//!   `cache_creation.ephemeral_1h_input_tokens`, null for costs that are no
//!   tokens'. A page that says `has_more: true` is refused unless a later
//!   page of the same JSON array follows.
//! - Console cost CSV (Cost page, Export). Anthropic's help page
//!   (<https://support.claude.com/en/articles/9534590-cost-and-usage-reporting-in-the-claude-console>)
//!   documents the export but not its columns; these are the columns of
//!   exports published as they came from the Console: `usage_date_utc`
//!   (`YYYY-MM-DD`), `model` (the display name, `Claude Sonnet 4.5`),
//!   `workspace`, `api_key`, `usage_type`, `context_window`, `token_type`
//!   (`input_no_cache`, `input_cache_read`, `input_cache_write_5m`,
//!   `input_cache_write_1h`, `output`), `cost_usd` (**dollars**, what was
//!   billed), `list_price_usd` (before discounts: not read), `cost_type`,
//!   `inference_geo`, `speed`, and in newer exports `api_key_id`,
//!   `api_key_status`. `usage_date_utc` and `cost_usd` are required; a CSV
//!   with the API's `amount` (cents) instead is no file Anthropic delivers
//!   and is refused rather than guessed at.
//! - Messages usage report (`GET /v1/organizations/usage_report/messages`,
//!   grouped by `model`; <https://platform.claude.com/docs/en/api/admin/usage_report/retrieve_messages>):
//!   results of `uncached_input_tokens`, `cache_read_input_tokens`,
//!   `cache_creation.ephemeral_5m_input_tokens`,
//!   `cache_creation.ephemeral_1h_input_tokens`, `output_tokens`. It carries
//!   tokens and no money: its lines cost 0 and give the invoiced tokens
//!   beside the cost report's amounts (a scope of its own, so importing one
//!   report never replaces the other).
//!
//! Token types map to the ledger's token kinds: uncached input → input,
//! output → output, cache reads → cache_read, cache writes (5-minute and
//! 1-hour) → cache_write; no token type (web search, code execution) →
//! other.

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

/// The ledger token kind of a report's `token_type` (the API's or the
/// Console export's spelling).
pub fn token_kind(token_type: &str) -> TokenKind {
    match token_type.trim() {
        "uncached_input_tokens" | "input_tokens" | "input_no_cache" => TokenKind::Input,
        "output_tokens" | "output" => TokenKind::Output,
        "cache_read_input_tokens" | "input_cache_read" => TokenKind::CacheRead,
        "input_cache_write_1h" | "cache_creation.ephemeral_1h_input_tokens" => TokenKind::CacheWrite1h,
        t if t.starts_with("cache_creation") || t.starts_with("input_cache_write") => TokenKind::CacheWrite,
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

/// The Console's cost CSV export.
pub fn cost_csv(file: &str, text: &str) -> Result<Invoice, InvoiceError> {
    let mut reader = csv_reader(text);
    let h = Header::of(&mut reader, file)?;
    if h.col(&["cost_usd"]).is_none() && h.col(&["amount"]).is_some() {
        return Err(InvoiceError::format(
            file,
            "an amount column (the Admin API's cents) is not the Console's cost export, whose money column is cost_usd \
             (dollars): import the cost report as the API's JSON, or the CSV the Console exports",
        ));
    }
    let date_col = h.need(&["usage_date_utc"], file)?;
    let cost_col = h.need(&["cost_usd"], file)?;
    let model_col = h.col(&["model"]);
    let token_col = h.col(&["token_type"]);
    let cost_type_col = h.col(&["cost_type"]);
    let workspace_col = h.col(&["workspace"]);
    let mut out = Invoice { format: Format::AnthropicCostCsv, lines: Vec::new(), periods: Vec::new() };
    for (i, rec) in reader.records().enumerate() {
        let at = format!("row {}", i + 1);
        let rec = rec.map_err(|e| InvoiceError::cell(file, &at, "*", e.to_string()))?;
        let cell = |c: Option<usize>| c.and_then(|c| rec.get(c)).unwrap_or("").trim();
        let date = cell(Some(date_col));
        let start = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_nanos_opt())
            .ok_or_else(|| InvoiceError::cell(file, &at, "usage_date_utc", format!("{date:?} is not a date (YYYY-MM-DD)")))?;
        let end = start.saturating_add(DAY_NS);
        let cost = decimal(cell(Some(cost_col)))
            .ok_or_else(|| InvoiceError::cell(file, &at, "cost_usd", format!("{:?} is not a decimal number", cell(Some(cost_col)))))?;
        let model = cell(model_col).to_owned();
        let token_type = cell(token_col);
        if !out.periods.contains(&(start, end)) {
            out.periods.push((start, end));
        }
        let name = if token_type.is_empty() { cell(cost_type_col) } else { token_type };
        out.lines.push(InvoiceLine {
            start_ns: start,
            end_ns: end,
            provider: Provider::Anthropic,
            sku: sku(None, &model, name),
            kind: token_kind(token_type),
            model,
            tokens: None,
            cost,
            // cost_usd says it: the Console reports in US dollars.
            currency: "USD".to_owned(),
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
                // Cache writes by lifetime: each at its own rate.
                let (write_5m, write_1h) =
                    (cache.and_then(|c| c.ephemeral_5m_input_tokens), cache.and_then(|c| c.ephemeral_1h_input_tokens));
                for (kind, name, tokens) in [
                    (TokenKind::Input, "uncached_input_tokens", res.uncached_input_tokens),
                    (TokenKind::CacheRead, "cache_read_input_tokens", res.cache_read_input_tokens),
                    (TokenKind::CacheWrite, "cache_creation.ephemeral_5m_input_tokens", write_5m),
                    (TokenKind::CacheWrite1h, "cache_creation.ephemeral_1h_input_tokens", write_1h),
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
        let head = "usage_date_utc,model,token_type,cost_usd\n";
        let csv = format!("{head}2025-08-01,Claude Sonnet 4,output,12\n2025-08-01,Claude Sonnet 4,output,1,5\n");
        assert_eq!(cost_csv("a.csv", &csv).unwrap_err().to_string().split(':').take(2).collect::<Vec<_>>(), ["a.csv", " row 2, column *"]);
        let csv = format!("{head}2025-08-01,Claude Sonnet 4,output,twelve\n");
        assert_eq!(cost_csv("a.csv", &csv).unwrap_err().to_string(), "a.csv: row 1, column cost_usd: \"twelve\" is not a decimal number");
        let csv = format!("{head}2025-08-01,Claude Sonnet 4,output,\n");
        assert_eq!(cost_csv("a.csv", &csv).unwrap_err().to_string(), "a.csv: row 1, column cost_usd: \"\" is not a decimal number");
        let csv = format!("{head}August 1,Claude Sonnet 4,output,1\n");
        assert_eq!(
            cost_csv("a.csv", &csv).unwrap_err().to_string(),
            "a.csv: row 1, column usage_date_utc: \"August 1\" is not a date (YYYY-MM-DD)"
        );
        // The API's fields as CSV columns (cents) are no Console export.
        let csv = "starting_at,model,token_type,amount\n2025-08-01,claude-sonnet-4,output_tokens,12\n";
        assert!(cost_csv("a.csv", csv).unwrap_err().to_string().contains("cost_usd (dollars)"));
        let csv = "model,token_type,cost_usd\nclaude-sonnet-4,output,12\n";
        assert_eq!(cost_csv("a.csv", csv).unwrap_err().to_string(), "a.csv: missing column usage_date_utc");
    }

    #[test]
    fn console_token_types() {
        for (t, k) in [
            ("input_no_cache", TokenKind::Input),
            ("input_cache_read", TokenKind::CacheRead),
            ("input_cache_write_5m", TokenKind::CacheWrite),
            ("input_cache_write_1h", TokenKind::CacheWrite1h),
            ("output", TokenKind::Output),
            ("cache_creation.ephemeral_1h_input_tokens", TokenKind::CacheWrite1h),
            ("cache_creation.ephemeral_5m_input_tokens", TokenKind::CacheWrite),
            ("", TokenKind::Other),
        ] {
            assert_eq!(token_kind(t), k, "{t}");
        }
    }
}
