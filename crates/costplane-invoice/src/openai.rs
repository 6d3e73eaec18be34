//! OpenAI's organization costs, in the two shapes OpenAI delivers them.
//!
//! - The Costs API (`GET /v1/organization/costs`, `bucket_width=1d`), as
//!   OpenAI's API reference gives it
//!   (<https://platform.openai.com/docs/api-reference/usage/costs>, also
//!   <https://developers.openai.com/api/reference/cli/resources/admin/subresources/organization/subresources/usage/methods/costs>):
//!   a page `{"object": "page", "data": [bucket], "has_more", "next_page"}`,
//!   each bucket `{"object": "bucket", "start_time", "end_time"}` (Unix
//!   seconds) with `results` (some renderings of the reference name it
//!   `result`; both are read) of `{"object": "organization.costs.result",
//!   "amount": {"value": <number>, "currency": "usd"}, "line_item",
//!   "project_id", "api_key_id"}`. `amount.value` is a JSON number in the
//!   currency's units (dollars, not cents), `currency` lower-case ISO 4217;
//!   a numeric string is read the same way. `line_item` and `project_id` are
//!   null unless grouped by (`group_by=line_item,project_id`): without it a
//!   bucket is one unnamed total, which reconciles as a line of no model.
//!   `quantity` is not read: the reference gives it no unit. A file may
//!   hold one page or a JSON array of pages; a page that says `has_more:
//!   true` is refused (the rest of the report is missing), unless a later
//!   page of the same array follows it.
//! - The usage dashboard's export (Cost view, Export, CSV). OpenAI's help
//!   page (<https://help.openai.com/en/articles/8554956-understanding-your-api-usage>)
//!   documents the Export button, UTC times and the 60-day limit but not
//!   the columns; these are the columns of exports published as they came
//!   from the dashboard: `start_time`, `end_time` (Unix seconds),
//!   `start_time_iso`, `end_time_iso`, `amount_value` (dollars, as
//!   decimal text with up to 30 places), `amount_currency` (`usd`),
//!   `line_item`, `project_id`, `organization_id`, `organization_name`, and
//!   in newer exports `quantity`, `quantity_unit`, `user_id`, `api_key_id`,
//!   `project_name`, `user_email`, `api_source`. A day with no cost is a
//!   row whose amount, currency and line item are all empty: it covers its
//!   day (an import replaces it) with no line. `quantity` is read as
//!   tokens only when `quantity_unit` says tokens. Other columns are
//!   ignored; a missing `start_time` / `amount_value` / `amount_currency`
//!   column, or a cell that does not parse, is an error naming the file,
//!   row and column.
//!
//! A line item reads `<model>, <kind>` (`gpt-4o-2024-08-06, input`,
//! `gpt-4o-mini-2024-07-18, cached input`, `o1-2024-12-17, output`); the
//! reference leaves its text free, so the model is the first word before
//! the first comma (after a service tier written `<tier> | `), and the
//! words after it give the token kind; a line item without a comma (`web
//! search tool calls`, `file search`) is a line of no model, kind `other`.
//! `amount.value` is read from its JSON text, never through a float.

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{decimal, time_ns, Format, Invoice, InvoiceError, InvoiceLine, Provider, TokenKind, DAY_NS};

#[derive(Deserialize)]
struct Page {
    data: Vec<Bucket>,
    #[serde(default)]
    has_more: bool,
}

#[derive(Deserialize)]
struct Bucket {
    start_time: i64,
    end_time: Option<i64>,
    #[serde(default, alias = "result")]
    results: Vec<CostResult>,
}

#[derive(Deserialize)]
struct CostResult {
    amount: Option<Amount>,
    line_item: Option<String>,
    project_id: Option<String>,
}

#[derive(Deserialize)]
struct Amount {
    value: Option<Box<RawValue>>,
    currency: Option<String>,
}

/// Model and token kind of a line item.
pub fn line_item(item: &str) -> (String, TokenKind) {
    let Some((head, rest)) = item.split_once(',') else {
        return (String::new(), TokenKind::Other);
    };
    // "priority | gpt-4o, output": the service tier goes first.
    let head = head.rsplit_once('|').map_or(head, |(_, m)| m);
    // "gpt-audio-mini-2025-12-15 audio, input": the model is the first word.
    let model = head.split_whitespace().next().unwrap_or("").to_owned();
    let rest = rest.to_ascii_lowercase();
    let kind = if rest.contains("cached") || rest.contains("cache read") {
        TokenKind::CacheRead
    } else if rest.contains("cache write") || rest.contains("cache creation") {
        TokenKind::CacheWrite
    } else if rest.contains("input") {
        TokenKind::Input
    } else if rest.contains("output") {
        TokenKind::Output
    } else {
        TokenKind::Other
    };
    (model, kind)
}

/// A JSON number's (or numeric string's) exact value.
fn raw_decimal(raw: &RawValue) -> Option<Decimal> {
    let t = raw.get().trim();
    decimal(t.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(t))
}

/// The Costs API's JSON: one page, or an array of pages.
pub fn costs_json(file: &str, text: &str) -> Result<Invoice, InvoiceError> {
    let pages: Vec<Page> =
        if text.trim_start().starts_with('[') { serde_json::from_str(text) } else { serde_json::from_str::<Page>(text).map(|p| vec![p]) }
            .map_err(|e| InvoiceError::format(file, format!("not an OpenAI Costs API page: {e}")))?;
    if pages.last().is_some_and(|p| p.has_more) {
        return Err(InvoiceError::format(
            file,
            "the last page says has_more: true, so the report is incomplete; fetch every page (next_page) and import them as one JSON array",
        ));
    }
    let mut out = Invoice { format: Format::OpenAiCostsJson, lines: Vec::new(), periods: Vec::new() };
    for (p, page) in pages.iter().enumerate() {
        for (b, bucket) in page.data.iter().enumerate() {
            let start = bucket.start_time.checked_mul(1_000_000_000).ok_or_else(|| {
                InvoiceError::cell(file, format!("page {p}, data[{b}]"), "start_time", format!("{} is out of range", bucket.start_time))
            })?;
            let end = match bucket.end_time {
                Some(e) => e
                    .checked_mul(1_000_000_000)
                    .ok_or_else(|| InvoiceError::cell(file, format!("page {p}, data[{b}]"), "end_time", format!("{e} is out of range")))?,
                None => start.saturating_add(DAY_NS),
            };
            out.periods.push((start, end));
            for (r, result) in bucket.results.iter().enumerate() {
                let at = format!("page {p}, data[{b}].results[{r}]");
                let amount = result.amount.as_ref().ok_or_else(|| InvoiceError::cell(file, &at, "amount", "is missing"))?;
                let raw = amount.value.as_ref().ok_or_else(|| InvoiceError::cell(file, &at, "amount.value", "is missing"))?;
                let cost = raw_decimal(raw)
                    .ok_or_else(|| InvoiceError::cell(file, &at, "amount.value", format!("{} is not a decimal number", raw.get())))?;
                let currency = amount.currency.as_deref().ok_or_else(|| InvoiceError::cell(file, &at, "amount.currency", "is missing"))?;
                let sku = result.line_item.clone().unwrap_or_default();
                let (model, kind) = line_item(&sku);
                out.lines.push(InvoiceLine {
                    start_ns: start,
                    end_ns: end,
                    provider: Provider::OpenAi,
                    sku,
                    model,
                    kind,
                    tokens: None,
                    cost,
                    currency: currency.to_ascii_uppercase(),
                    project: result.project_id.clone().unwrap_or_default(),
                    tenant: None,
                });
            }
        }
    }
    Ok(out)
}

/// A CSV file's header positions, by lower-case column name.
pub(crate) struct Header(Vec<String>);

impl Header {
    pub(crate) fn of(reader: &mut csv::Reader<&[u8]>, file: &str) -> Result<Header, InvoiceError> {
        let h = reader.headers().map_err(|e| InvoiceError::format(file, format!("CSV header: {e}")))?;
        Ok(Header(h.iter().map(|c| c.trim().to_ascii_lowercase()).collect()))
    }

    pub(crate) fn col(&self, names: &[&str]) -> Option<usize> {
        names.iter().find_map(|n| self.0.iter().position(|h| h == n))
    }

    pub(crate) fn need(&self, names: &[&str], file: &str) -> Result<usize, InvoiceError> {
        self.col(names).ok_or_else(|| InvoiceError::MissingColumn { file: file.to_owned(), column: names.join(" or ") })
    }
}

pub(crate) fn csv_reader(text: &str) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(text.as_bytes())
}

/// The usage dashboard's cost CSV export.
pub fn costs_csv(file: &str, text: &str) -> Result<Invoice, InvoiceError> {
    let mut reader = csv_reader(text);
    let h = Header::of(&mut reader, file)?;
    let start_col = h.need(&["start_time", "start_time_iso"], file)?;
    let end_col = h.col(&["end_time", "end_time_iso"]);
    let amount_col = h.need(&["amount_value"], file)?;
    let currency_col = h.need(&["amount_currency"], file)?;
    let item_col = h.col(&["line_item"]);
    let project_col = h.col(&["project_id"]).or_else(|| h.col(&["project_name"]));
    let quantity_col = h.col(&["quantity"]);
    let unit_col = h.col(&["quantity_unit"]);
    let mut out = Invoice { format: Format::OpenAiCostsCsv, lines: Vec::new(), periods: Vec::new() };
    for (i, rec) in reader.records().enumerate() {
        let at = format!("row {}", i + 1);
        let rec = rec.map_err(|e| InvoiceError::cell(file, &at, "*", e.to_string()))?;
        let cell = |c: Option<usize>| c.and_then(|c| rec.get(c)).unwrap_or("").trim();
        let start = time_ns(cell(Some(start_col)))
            .ok_or_else(|| InvoiceError::cell(file, &at, "start_time", format!("{:?} is not a time", cell(Some(start_col)))))?;
        let end = match end_col {
            Some(c) => time_ns(cell(Some(c)))
                .ok_or_else(|| InvoiceError::cell(file, &at, "end_time", format!("{:?} is not a time", cell(Some(c)))))?,
            None => start.saturating_add(DAY_NS),
        };
        if !out.periods.contains(&(start, end)) {
            out.periods.push((start, end));
        }
        let (amount, currency, sku) = (cell(Some(amount_col)), cell(Some(currency_col)), cell(item_col));
        // A day that cost nothing: its bucket, with no amount, currency or line item.
        if amount.is_empty() && currency.is_empty() && sku.is_empty() {
            continue;
        }
        let cost =
            decimal(amount).ok_or_else(|| InvoiceError::cell(file, &at, "amount_value", format!("{amount:?} is not a decimal number")))?;
        if currency.is_empty() {
            return Err(InvoiceError::cell(file, &at, "amount_currency", "is empty"));
        }
        let tokens = match (cell(quantity_col), cell(unit_col)) {
            (q, unit) if !q.is_empty() && unit.eq_ignore_ascii_case("tokens") => {
                Some(decimal(q).ok_or_else(|| InvoiceError::cell(file, &at, "quantity", format!("{q:?} is not a decimal number")))?)
            }
            _ => None,
        };
        let (model, kind) = line_item(sku);
        out.lines.push(InvoiceLine {
            start_ns: start,
            end_ns: end,
            provider: Provider::OpenAi,
            sku: sku.to_owned(),
            model,
            kind,
            tokens,
            cost,
            currency: currency.to_ascii_uppercase(),
            project: cell(project_col).to_owned(),
            tenant: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_items_name_model_and_kind() {
        assert_eq!(line_item("gpt-4o-2024-08-06, input"), ("gpt-4o-2024-08-06".into(), TokenKind::Input));
        assert_eq!(line_item("gpt-4o-mini-2024-07-18, cached input"), ("gpt-4o-mini-2024-07-18".into(), TokenKind::CacheRead));
        assert_eq!(line_item("o1-2024-12-17, output"), ("o1-2024-12-17".into(), TokenKind::Output));
        assert_eq!(line_item("web search tool calls"), (String::new(), TokenKind::Other));
        // A service tier first, a modality after the model, words after the kind.
        assert_eq!(line_item("priority | gpt-4o-2024-08-06, output, long context"), ("gpt-4o-2024-08-06".into(), TokenKind::Output));
        assert_eq!(line_item("gpt-audio-mini-2025-12-15 audio, input"), ("gpt-audio-mini-2025-12-15".into(), TokenKind::Input));
        assert_eq!(line_item("whisper-1, audio"), ("whisper-1".into(), TokenKind::Other));
    }

    /// The newer export's columns, a day that cost nothing (every money
    /// cell empty) and a row of tokens.
    #[test]
    fn the_dashboard_export_with_an_empty_day_and_quantities() {
        let csv = "start_time,end_time,start_time_iso,end_time_iso,amount_value,amount_currency,quantity,quantity_unit,line_item,user_id,\
                   api_key_id,project_id,organization_id,project_name,organization_name,user_email,api_source\n\
                   1730419200,1730505600,2024-11-01T00:00:00+00:00,2024-11-02T00:00:00+00:00,,,,,,,,,,,,,\n\
                   1730505600,1730592000,2024-11-02T00:00:00,2024-11-03T00:00:00,0.250000000000000000000000000000,usd,100000,tokens,\
                   \"gpt-4o-2024-08-06, input\",,key_1,proj_a,org-1,Chat,Acme,,\n";
        let i = costs_csv("c.csv", csv).unwrap();
        // The empty Nov 1 is covered (an import replaces it) with no line.
        assert_eq!(i.periods.len(), 2);
        assert_eq!(i.lines.len(), 1);
        let l = &i.lines[0];
        assert_eq!(
            (l.cost, l.tokens, l.project.as_str(), l.kind),
            (Decimal::new(25, 2), Some(Decimal::from(100_000)), "proj_a", TokenKind::Input)
        );
        // A row with a line item and no amount is no empty day.
        let csv = "start_time,end_time,amount_value,amount_currency,line_item\n1730419200,1730505600,,,\"gpt-4o, input\"\n";
        assert_eq!(costs_csv("c.csv", csv).unwrap_err().to_string(), "c.csv: row 1, column amount_value: \"\" is not a decimal number");
        let csv =
            "start_time,amount_value,amount_currency,quantity,quantity_unit,line_item\n1730419200,1,usd,lots,tokens,\"gpt-4o, input\"\n";
        assert_eq!(costs_csv("c.csv", csv).unwrap_err().to_string(), "c.csv: row 1, column quantity: \"lots\" is not a decimal number");
    }

    #[test]
    fn amounts_keep_every_digit_of_the_json_text() {
        let page = r#"{"object":"page","data":[{"object":"bucket","start_time":1730419200,"end_time":1730505600,
            "results":[{"object":"organization.costs.result","amount":{"value":0.1000000000000000055511151231257827,"currency":"usd"},
            "line_item":"gpt-4o-2024-08-06, input","project_id":"proj_a"}]}],"has_more":false,"next_page":null}"#;
        let i = costs_json("c.json", page).unwrap();
        assert_eq!(i.lines[0].cost.to_string(), "0.1000000000000000055511151231");
        assert_eq!(i.lines[0].currency, "USD");
    }

    #[test]
    fn an_incomplete_report_and_bad_amounts_are_refused() {
        let more = r#"{"object":"page","data":[],"has_more":true,"next_page":"page_2"}"#;
        assert!(costs_json("c.json", more).unwrap_err().to_string().contains("has_more"));
        let bad = r#"{"object":"page","data":[{"start_time":1730419200,"end_time":1730505600,"results":[
            {"object":"organization.costs.result","amount":{"value":"n/a","currency":"usd"},"line_item":null}]}],"has_more":false}"#;
        assert_eq!(
            costs_json("c.json", bad).unwrap_err().to_string(),
            "c.json: page 0, data[0].results[0], column amount.value: \"n/a\" is not a decimal number"
        );
        let csv = "start_time,end_time,amount_value,amount_currency,line_item\n1730419200,1730505600,,usd,\"gpt-4o, input\"\n";
        assert_eq!(costs_csv("c.csv", csv).unwrap_err().to_string(), "c.csv: row 1, column amount_value: \"\" is not a decimal number");
        let csv = "start_time,amount_currency,line_item\n1730419200,usd,x\n";
        assert_eq!(costs_csv("c.csv", csv).unwrap_err().to_string(), "c.csv: missing column amount_value");
    }
}
