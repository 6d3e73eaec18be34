//! Every report shape from a fixture file written from the provider's
//! documented shape (the CSV exports, whose columns the providers do not
//! document, from exports published as they came: see `openai.rs` and
//! `anthropic.rs`), with its totals worked out by hand.

use costplane_invoice::{ledger_rows, parse, Format, Provider, TokenKind};
use rust_decimal::Decimal;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

const NOV1: i64 = 1_730_419_200_000_000_000; // 2024-11-01T00:00:00Z
const AUG1: i64 = 1_754_006_400_000_000_000; // 2025-08-01T00:00:00Z
const DAY: i64 = 86_400_000_000_000;

#[test]
fn openai_costs_api_json() {
    let bytes = fixture("openai_costs.json");
    assert_eq!(Format::detect(&bytes), Some(Format::OpenAiCostsJson));
    let i = parse(None, "openai_costs.json", &bytes).unwrap();
    // 1.25 + 2.5 + 0.0375 + 0.1 (Nov 1) + 0.625 + 0.3125 (Nov 2) = 4.825.
    assert_eq!(i.totals()["USD"], d("4.825"));
    assert_eq!(i.lines.len(), 6);
    // Three buckets, the empty Nov 3 included: an import replaces all three days.
    assert_eq!(i.periods, vec![(NOV1, NOV1 + DAY), (NOV1 + DAY, NOV1 + 2 * DAY), (NOV1 + 2 * DAY, NOV1 + 3 * DAY)]);
    let web = i.lines.iter().find(|l| l.sku == "web search tool calls").unwrap();
    assert_eq!((web.model.as_str(), web.kind, web.cost), ("", TokenKind::Other, d("0.1")));
    let cached = i.lines.iter().find(|l| l.kind == TokenKind::CacheRead).unwrap();
    assert_eq!((cached.model.as_str(), cached.cost, cached.start_ns), ("gpt-4o-2024-08-06", d("0.3125"), NOV1 + DAY));
    assert_eq!(i.scope("org-acme"), "invoice:openai:org-acme:cost");
}

#[test]
fn openai_cost_csv_export() {
    let bytes = fixture("openai_costs.csv");
    assert_eq!(Format::detect(&bytes), Some(Format::OpenAiCostsCsv));
    let i = parse(None, "openai_costs.csv", &bytes).unwrap();
    // 0.75 + 0.5 + 2.5 + 0.625 = 4.375 (the trailing zeros of the export's text change nothing).
    assert_eq!(i.totals()["USD"], d("4.375"));
    // Nov 1: input 0.75 + 0.5 = 1.25 over two projects.
    let nov1_input: Decimal = i.lines.iter().filter(|l| l.start_ns == NOV1 && l.kind == TokenKind::Input).map(|l| l.cost).sum();
    assert_eq!(nov1_input, d("1.25"));
    assert_eq!(i.lines[1].project, "proj_search");
    assert_eq!(i.lines[2].model, "gpt-4o-2024-08-06");
    // Four lines; three days, the empty Nov 3 (no amount, currency or line item) included.
    assert_eq!(i.lines.len(), 4);
    assert_eq!(i.periods, vec![(NOV1, NOV1 + DAY), (NOV1 + DAY, NOV1 + 2 * DAY), (NOV1 + 2 * DAY, NOV1 + 3 * DAY)]);
}

#[test]
fn anthropic_cost_report_json_in_cents() {
    let bytes = fixture("anthropic_cost_report.json");
    assert_eq!(Format::detect(&bytes), Some(Format::AnthropicCostJson));
    let i = parse(None, "anthropic_cost_report.json", &bytes).unwrap();
    // Cents: 300 + 1500 + 30 + 100 + 80.5 + 400 = 2410.5, i.e. $24.105.
    assert_eq!(i.totals()["USD"], d("24.105"));
    let haiku: Decimal = i.lines.iter().filter(|l| l.model == "claude-3-5-haiku-20241022").map(|l| l.cost).sum();
    // 80.5 + 400 cents = $4.805.
    assert_eq!(haiku, d("4.805"));
    let search = i.lines.iter().find(|l| l.sku == "Web Search Usage").unwrap();
    assert_eq!((search.model.as_str(), search.kind, search.cost), ("", TokenKind::Other, d("1")));
    assert!(i.lines.iter().all(|l| l.provider == Provider::Anthropic));
    assert_eq!(i.lines[4].project, "wrkspc_research");
}

#[test]
fn anthropic_console_cost_csv_in_dollars() {
    let bytes = fixture("anthropic_cost.csv");
    assert_eq!(Format::detect(&bytes), Some(Format::AnthropicCostCsv));
    let i = parse(None, "anthropic_cost.csv", &bytes).unwrap();
    // Dollars: 3.00 + 15.00 + 0.30 + 1.875 + 0.00 = 20.175.
    assert_eq!(i.totals()["USD"], d("20.175"));
    let kinds: Vec<TokenKind> = i.lines.iter().map(|l| l.kind).collect();
    assert_eq!(kinds, [TokenKind::Input, TokenKind::Output, TokenKind::CacheRead, TokenKind::CacheWrite, TokenKind::Output]);
    assert_eq!((i.lines[3].start_ns, i.lines[3].end_ns), (AUG1 + DAY, AUG1 + 2 * DAY));
    assert_eq!((i.lines[0].model.as_str(), i.lines[0].project.as_str()), ("Claude Sonnet 4", "Default"));
    assert_eq!(i.lines[0].sku, "Claude Sonnet 4 input_no_cache");
    // The Console's display name meets the API's model id.
    assert_eq!(costplane_invoice::match_key(&i.lines[3].model), costplane_invoice::match_key("claude-opus-4-1-20250805"));
    assert_eq!(i.periods, vec![(AUG1, AUG1 + DAY), (AUG1 + DAY, AUG1 + 2 * DAY)]);
}

#[test]
fn anthropic_usage_report_gives_tokens_at_no_cost() {
    let bytes = fixture("anthropic_usage_report.json");
    assert_eq!(Format::detect(&bytes), Some(Format::AnthropicUsageJson));
    let i = parse(None, "anthropic_usage_report.json", &bytes).unwrap();
    assert_eq!(i.totals()["USD"], Decimal::ZERO);
    // Input 1,000,000 + cache read 1,000,000 + 5-minute and 1-hour cache
    // writes 0 each + output 1,000,000.
    let tokens: Decimal = i.lines.iter().filter_map(|l| l.tokens).sum();
    assert_eq!(tokens, Decimal::from(3_000_000));
    let kinds: Vec<TokenKind> = i.lines.iter().map(|l| l.kind).collect();
    assert_eq!(kinds, [TokenKind::Input, TokenKind::CacheRead, TokenKind::CacheWrite, TokenKind::CacheWrite1h, TokenKind::Output]);
    assert_eq!(i.scope("default"), "invoice:anthropic:default:usage");
}

#[test]
fn ledger_rows_are_invoice_rows_in_the_ledger_currency() {
    let i = parse(Some(Format::AnthropicCostJson), "a.json", &fixture("anthropic_cost_report.json")).unwrap();
    let rows = ledger_rows(&i, "default", "USD", "a.json").unwrap();
    assert!(rows.iter().all(|r| r.source.as_str() == "invoice" && r.charge_status.as_str() == "closed"));
    assert_eq!(rows.iter().map(|r| r.cost).sum::<Decimal>(), d("24.105"));
    assert_eq!(rows[0].ext.import_key, "anthropic|default|cost|2025-08");
    let back = costplane_invoice::line_of_ledger_row(&rows[1]).unwrap();
    assert_eq!((back.model.as_str(), back.kind, back.cost), ("claude-sonnet-4-20250514", TokenKind::Output, d("15")));
    let e = ledger_rows(&i, "default", "EUR", "a.json").unwrap_err().to_string();
    assert_eq!(e, "a.json: the report is in USD, the ledger in EUR: export it in EUR");
}

#[test]
fn a_format_named_for_the_wrong_file_is_an_error_not_zero() {
    let e = parse(Some(Format::OpenAiCostsCsv), "x.csv", &fixture("anthropic_cost.csv")).unwrap_err().to_string();
    assert_eq!(e, "x.csv: missing column start_time or start_time_iso");
    let e = parse(Some(Format::AnthropicCostCsv), "x.csv", &fixture("openai_costs.csv")).unwrap_err().to_string();
    assert_eq!(e, "x.csv: missing column usage_date_utc");
    let e = parse(Some(Format::AnthropicCostJson), "x.json", &fixture("openai_costs.json")).unwrap_err().to_string();
    assert!(e.starts_with("x.json: not an Anthropic cost report page"), "{e}");
}
