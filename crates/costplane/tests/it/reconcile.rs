//! Invoices against estimates through the real binary: LLM spans priced by
//! the server, provider cost reports imported through the API and the CLI,
//! and `GET /api/v1/reconciliation` / `costplane reconcile` over three past
//! months:
//!
//! - three months ago: OpenAI's bill agrees with the spans within the 5%
//!   tolerance for gpt-4o, and bills gpt-4o-mini that no span showed (an
//!   uninstrumented caller: invoiced-only);
//! - two months ago: Anthropic bills claude-3-5-sonnet at twice the price
//!   costplane estimated (drift), AWS's FOCUS bill has Bedrock lines
//!   beside an EC2 line (only the Bedrock ones count), and a model no price
//!   covers is billed within the absolute tolerance yet not matched
//!   (unpriced tokens);
//! - last month: spans, no invoice yet (estimated-only).
//!
//! Every amount is worked out by hand from the shipped catalog's prices.

use std::process::Command;

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeZone, Utc};
use serde_json::{json, Value};

use crate::support::{wait_until, ServerProcess, BIN};

const ADMIN: &str = "reconcile-admin-key-0123456789";
const ACME: &str = "reconcile-acme-key-0123456789";
const BETA: &str = "reconcile-beta-key-0123456789";

/// The first of the month `back` months before this one.
fn month_start(back: u32) -> DateTime<Utc> {
    let now = Utc::now().date_naive();
    let first = NaiveDate::from_ymd_opt(now.year(), now.month(), 1).unwrap() - Months::new(back);
    Utc.from_utc_datetime(&first.and_hms_opt(0, 0, 0).unwrap())
}

/// The 10th of that month, at noon: when its calls were made.
fn call_time(back: u32) -> DateTime<Utc> {
    month_start(back) + chrono::Duration::days(9) + chrono::Duration::hours(12)
}

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

fn attr(key: &str, value: &str) -> Value {
    match value.parse::<u64>() {
        Ok(n) => json!({"key": key, "value": {"intValue": n.to_string()}}),
        Err(_) => json!({"key": key, "value": {"stringValue": value}}),
    }
}

/// One OTLP/JSON request of one LLM span of `tenant` at `at`.
fn span(tenant: &str, at: DateTime<Utc>, n: u32, attrs: &[(&str, &str)]) -> Vec<u8> {
    let start = at.timestamp_nanos_opt().unwrap();
    json!({"resourceSpans": [{
        "resource": {"attributes": [attr("service.name", "chat-api"), attr("tenant.id", tenant)]},
        "scopeSpans": [{"spans": [{
            "traceId": format!("{:032x}", 0x7ec0_0000_u128 + u128::from(n)),
            "spanId": format!("{:016x}", 0x7ec0_u64 + u64::from(n)),
            "name": "chat",
            "kind": 3,
            "startTimeUnixNano": start.to_string(),
            "endTimeUnixNano": (start + 1_000_000).to_string(),
            "attributes": attrs.iter().map(|(k, v)| attr(k, v)).collect::<Vec<_>>(),
        }]}],
    }]})
    .to_string()
    .into_bytes()
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(60)).build().unwrap()
}

/// `req` with `key` as its bearer token (none when empty: an open server).
fn authorized(req: reqwest::blocking::RequestBuilder, key: &str) -> reqwest::blocking::RequestBuilder {
    if key.is_empty() {
        req
    } else {
        req.bearer_auth(key)
    }
}

fn get(server: &ServerProcess, key: &str, path_and_query: &str) -> (u16, Value) {
    let r = authorized(client().get(format!("http://{}{path_and_query}", server.api)), key).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn import(server: &ServerProcess, key: &str, query: &str, body: String) -> (u16, Value) {
    let r = authorized(client().post(format!("http://{}/api/v1/import/invoice?{query}", server.api)), key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// The reconciliation of month `back` by provider and model.
fn month(server: &ServerProcess, key: &str, back: u32) -> Value {
    let (from, to) = (day(month_start(back)), day(month_start(back - 1)));
    let (status, body) = get(server, key, &format!("/api/v1/reconciliation?from={from}&to={to}&group_by=provider,model"));
    assert_eq!(status, 200, "{body}");
    body
}

fn line<'a>(body: &'a Value, provider: &str, model: &str) -> &'a Value {
    body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["provider"] == provider && l["model"] == model)
        .unwrap_or_else(|| panic!("no {provider}/{model} line in {body:#}"))
}

/// OpenAI's Costs API page for the two billed months (account org-acme).
fn openai_costs(gpt4o_output: &str) -> String {
    let bucket = |back: u32, results: Value| {
        let start = call_time(back).date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
        json!({"object": "bucket", "start_time": start, "end_time": start + 86_400, "results": results})
    };
    let result = |value: &str, item: &str| {
        json!({"object": "organization.costs.result", "amount": {"value": value.parse::<Value>().unwrap(), "currency": "usd"},
               "line_item": item, "project_id": "proj_chat"})
    };
    json!({"object": "page", "has_more": false, "next_page": null, "data": [
        bucket(3, json!([
            result("2.5", "gpt-4o-2024-08-06, input"),
            result(gpt4o_output, "gpt-4o-2024-08-06, output"),
            result("0.75", "gpt-4o-mini-2024-07-18, input"),
        ])),
        bucket(2, json!([result("0.004", "acme-llm-7, input")])),
    ]})
    .to_string()
}

/// Anthropic's cost report (amounts in cents) for two months ago.
fn anthropic_costs() -> String {
    let start = call_time(2).date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let end = start + chrono::Duration::days(1);
    let result = |amount: &str, token_type: &str| {
        json!({"currency": "USD", "amount": amount, "workspace_id": null, "description": format!("Claude 3.5 Sonnet {token_type}"),
               "cost_type": "tokens", "context_window": "0-200k", "model": "claude-3-5-sonnet-20241022", "service_tier": "standard",
               "token_type": token_type})
    };
    json!({"has_more": false, "next_page": null, "data": [{
        "starting_at": start.to_rfc3339(), "ending_at": end.to_rfc3339(),
        "results": [result("600", "uncached_input_tokens"), result("15", "output_tokens")],
    }]})
    .to_string()
}

/// AWS's FOCUS bill for two months ago: Bedrock input and output lines
/// (tokens in thousands), a Bedrock line that names its model only in
/// FOCUS's SkuPriceDetails (no usage type, an opaque SKU) and an EC2 line,
/// tagged tenant acme.
fn aws_focus_bill() -> String {
    let day = call_time(2).date_naive();
    let (start, end) = (format!("{day}T00:00:00Z"), format!("{}T00:00:00Z", day.succ_opt().unwrap()));
    let (period, period_end) = (format!("{}T00:00:00Z", month_start(2).date_naive()), format!("{}T00:00:00Z", month_start(1).date_naive()));
    let row = |cost: &str, service: &str, qty: &str, unit: &str, usage_type: &str, details: &str| {
        format!(
            "{cost},{cost},USD,{start},{end},{period},{period_end},AWS,{service},SKU1,{qty},{unit},111122223333,\"{{\"\"tenant\"\":\"\"acme\"\"}}\",{usage_type},{details}\n"
        )
    };
    let haiku = r#""{""ModelId"": ""anthropic.claude-3-haiku-20240307-v1:0"", ""TokenType"": ""Output""}""#;
    "BilledCost,EffectiveCost,BillingCurrency,ChargePeriodStart,ChargePeriodEnd,BillingPeriodStart,BillingPeriodEnd,ProviderName,\
     ServiceName,SkuId,ConsumedQuantity,ConsumedUnit,BillingAccountId,Tags,x_UsageType,SkuPriceDetails\n"
        .to_owned()
        + &row("3.00", "Amazon Bedrock", "1000", "1K tokens", "USE1-Claude3.5Sonnet-input-tokens", "")
        + &row("0.45", "Amazon Bedrock", "30", "1K tokens", "USE1-Claude3.5Sonnet-output-tokens", "")
        + &row("0.25", "Amazon Bedrock", "200", "1K tokens", "", haiku)
        + &row("12.00", "Amazon Elastic Compute Cloud", "24", "Hrs", "USE1-BoxUsage:m5.large", "")
}

#[test]
fn invoices_reconcile_with_estimates_embedded() {
    invoices_reconcile_with_estimates(&[]);
}

#[test]
fn invoices_reconcile_with_estimates_clickhouse() {
    let target = costplane_testkit::ClickHouseTarget::new();
    invoices_reconcile_with_estimates(&crate::support::clickhouse_args(&target, &[]));
}

fn invoices_reconcile_with_estimates(store: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("costplane.toml");
    std::fs::write(
        &config,
        format!(
            "[ledger]\nllm_event_back_hours = 3600\nlookback_days = 160\n\
             [[api.keys]]\nkey = \"{ADMIN}\"\nrole = \"admin\"\n\
             [[api.keys]]\nkey = \"{ACME}\"\ntenant = \"acme\"\n\
             [[api.keys]]\nkey = \"{BETA}\"\ntenant = \"beta\"\n"
        ),
    )
    .unwrap();
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(store);
    let server = ServerProcess::start(&args);
    let spans = [
        // 3 months ago: gpt-4o at 2.50 in / 10.00 out per 1M:
        // 1,000,000 × 2.50/1M = 2.50; 100,000 × 10/1M = 1.00; 3.50.
        span(
            "acme",
            call_time(3),
            1,
            &[
                ("gen_ai.provider.name", "openai"),
                ("gen_ai.request.model", "gpt-4o"),
                ("gen_ai.usage.input_tokens", "1000000"),
                ("gen_ai.usage.output_tokens", "100000"),
            ],
        ),
        // 2 months ago: claude-3-5-sonnet at 3.00 in / 15.00 out per 1M:
        // 1,000,000 × 3/1M = 3.00; 10,000 × 15/1M = 0.15; 3.15.
        span(
            "acme",
            call_time(2),
            2,
            &[
                ("gen_ai.provider.name", "anthropic"),
                ("gen_ai.request.model", "claude-3-5-sonnet-20241022"),
                ("gen_ai.usage.input_tokens", "1000000"),
                ("gen_ai.usage.output_tokens", "10000"),
            ],
        ),
        // 2 months ago: a model no price covers: 5,000 tokens, $0.
        span(
            "acme",
            call_time(2),
            3,
            &[("gen_ai.provider.name", "openai"), ("gen_ai.request.model", "acme-llm-7"), ("gen_ai.usage.input_tokens", "5000")],
        ),
        // 2 months ago through Bedrock: the Anthropic entry's 3.00 per 1M
        // (the catalog has no Bedrock entry of its own): 1,000,000 → 3.00.
        span(
            "acme",
            call_time(2),
            5,
            &[
                ("gen_ai.provider.name", "aws.bedrock"),
                ("gen_ai.request.model", "us.anthropic.claude-3-5-sonnet-20241022-v2:0"),
                ("gen_ai.usage.input_tokens", "1000000"),
            ],
        ),
        // Last month: 2,000,000 × 2.50/1M = 5.00, not billed yet.
        span(
            "acme",
            call_time(1),
            4,
            &[("gen_ai.provider.name", "openai"), ("gen_ai.request.model", "gpt-4o"), ("gen_ai.usage.input_tokens", "2000000")],
        ),
    ];
    for s in spans {
        assert!(server.export("/v1/traces", "application/json", s).status().is_success());
    }
    // The estimates are in the ledger: 3.50 + 3.15 + 0 + 3.00 + 5.00 = 14.65.
    let (from, to) = (day(month_start(3)), day(month_start(0)));
    wait_until(
        || {
            let (_, body) = get(&server, ADMIN, &format!("/api/v1/reconciliation?from={from}&to={to}"));
            body["totals"]["estimated_cost"] == "14.65"
        },
        "the estimates of all three months",
    );

    // A tenant key cannot import; an admin imports OpenAI's report for acme.
    let (status, _) = import(&server, ACME, "account=org-acme&tenant=acme", openai_costs("1.02"));
    assert_eq!(status, 403);
    let (status, answer) = import(&server, ADMIN, "account=org-acme&tenant=acme", openai_costs("1.02"));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["format"], "openai-costs-json");
    assert_eq!(answer["scope"], "invoice:openai:org-acme:cost");
    // 2.5 + 1.02 + 0.75 + 0.004 = 4.274.
    assert_eq!(answer["totals"]["USD"], "4.274");
    // Anthropic's report goes through the CLI, with no tenant tag.
    let report = dir.path().join("anthropic-cost.json");
    std::fs::write(&report, anthropic_costs()).unwrap();
    let out = Command::new(BIN)
        .args(["import", "invoice", "--server", &format!("http://{}", server.api), "--api-key", ADMIN])
        .arg(&report)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // 600 + 15 cents = $6.15.
    assert!(String::from_utf8_lossy(&out.stdout).contains("6.15 USD"), "{}", String::from_utf8_lossy(&out.stdout));

    // AWS's FOCUS bill, imported as a cloud bill.
    let r = client()
        .post(format!("http://{}/api/v1/import/focus?file=aws.csv", server.api))
        .bearer_auth(ADMIN)
        .header("content-type", "text/csv")
        .body(aws_focus_bill())
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());

    // Three months ago: gpt-4o billed 2.50 + 1.02 = 3.52 against 3.50:
    // drift 0.02 = 0.57% of 3.52 (0.568..), within 5%: matched.
    let m3 = month(&server, ADMIN, 3);
    let l = line(&m3, "openai", "gpt-4o");
    assert_eq!(
        (&l["status"], &l["estimated_cost"], &l["invoiced_cost"], &l["drift"], &l["drift_percent"]),
        (&json!("matched"), &json!("3.5"), &json!("3.52"), &json!("0.02"), &json!("0.57"))
    );
    assert_eq!(l["estimated_tokens"], "1100000");
    assert_eq!(l["invoice_models"], json!(["gpt-4o-2024-08-06"]));
    // gpt-4o-mini: billed, never seen in a span.
    let l = line(&m3, "openai", "gpt-4o-mini");
    assert_eq!((&l["status"], &l["invoiced_cost"], &l["estimated_cost"]), (&json!("invoiced-only"), &json!("0.75"), &json!("0")));
    // 3.50 estimated, 3.52 + 0.75 = 4.27 invoiced.
    assert_eq!((&m3["totals"]["estimated_cost"], &m3["totals"]["invoiced_cost"]), (&json!("3.5"), &json!("4.27")));

    // Two months ago: Anthropic billed 6.15 against 3.15: drift 3.00 =
    // 48.78% of 6.15 (3 / 6.15 = 0.487804..).
    let m2 = month(&server, ADMIN, 2);
    let l = line(&m2, "anthropic", "claude-3-5-sonnet");
    assert_eq!(
        (&l["status"], &l["estimated_cost"], &l["invoiced_cost"], &l["drift"], &l["drift_percent"]),
        (&json!("drift"), &json!("3.15"), &json!("6.15"), &json!("3"), &json!("48.78"))
    );
    // The unpriced model: 0.004 billed against $0 is within the $0.01
    // tolerance, but 5,000 tokens had no price: not a match.
    let l = line(&m2, "openai", "acme-llm-7");
    assert_eq!((&l["status"], &l["unpriced_tokens"], &l["drift"]), (&json!("drift"), &json!("5000"), &json!("0.004")));
    assert_eq!(m2["totals"]["unpriced_tokens"], "5000");
    // Bedrock: 3.00 + 0.45 = 3.45 billed against 3.00: drift 0.45 = 13.04%
    // (0.45 / 3.45 = 0.130434..); tokens (1,000 + 30) × 1K = 1,030,000. The
    // EC2 line is no AI line.
    let l = line(&m2, "aws.bedrock", "claude-3-5-sonnet");
    assert_eq!(
        (&l["status"], &l["estimated_cost"], &l["invoiced_cost"], &l["drift"], &l["drift_percent"]),
        (&json!("drift"), &json!("3"), &json!("3.45"), &json!("0.45"), &json!("13.04"))
    );
    assert_eq!((&l["estimated_tokens"], &l["invoiced_tokens"]), (&json!("1000000"), &json!("1030000")));
    assert_eq!(l["invoice_models"], json!(["Claude3.5Sonnet"]));
    // The line named only by SkuPriceDetails: 0.25 billed for claude-3-haiku,
    // which no span used; 200 × 1K = 200,000 tokens.
    let l = line(&m2, "aws.bedrock", "claude-3-haiku");
    assert_eq!(
        (&l["status"], &l["invoiced_cost"], &l["invoiced_tokens"], &l["invoice_models"]),
        (&json!("invoiced-only"), &json!("0.25"), &json!("200000"), &json!(["anthropic.claude-3-haiku-20240307-v1:0"]))
    );
    // Invoiced: Anthropic 6.15 + OpenAI 0.004 + Bedrock 3.45 + 0.25 = 9.854.
    assert_eq!(m2["totals"]["invoiced_cost"], "9.854");

    // Last month: spans, no invoice.
    let m1 = month(&server, ADMIN, 1);
    let l = line(&m1, "openai", "gpt-4o");
    assert_eq!((&l["status"], &l["estimated_cost"], &l["drift_percent"]), (&json!("estimated-only"), &json!("5"), &Value::Null));

    // By day, the line is dated the call's day.
    let (_, by_day) = get(&server, ADMIN, &format!("/api/v1/reconciliation?from={}&to={}", day(month_start(3)), day(month_start(2))));
    assert!(by_day["lines"].as_array().unwrap().iter().all(|l| l["day"] == day(call_time(3))), "{by_day:#}");

    // Re-importing replaces: the same report changes nothing; a corrected
    // one (gpt-4o output 1.00) replaces it: 2.50 + 1.00 = 3.50, no drift.
    let (status, _) = import(&server, ADMIN, "account=org-acme&tenant=acme", openai_costs("1.02"));
    assert_eq!(status, 200);
    assert_eq!(month(&server, ADMIN, 3)["totals"]["invoiced_cost"], "4.27");
    let (status, _) = import(&server, ADMIN, "account=org-acme&tenant=acme", openai_costs("1.00"));
    assert_eq!(status, 200);
    let m3 = month(&server, ADMIN, 3);
    // 3.50 + 0.75 = 4.25.
    assert_eq!(m3["totals"]["invoiced_cost"], "4.25");
    assert_eq!(line(&m3, "openai", "gpt-4o")["drift"], "0");

    // Tenants: acme sees its estimates and the report tagged acme, not
    // Anthropic's untagged one; beta sees nothing.
    let m3 = month(&server, ACME, 3);
    assert_eq!(m3["totals"]["invoiced_cost"], "4.25");
    let m2 = month(&server, ACME, 2);
    let l = line(&m2, "anthropic", "claude-3-5-sonnet");
    assert_eq!((&l["status"], &l["invoiced_cost"]), (&json!("estimated-only"), &json!("0")));
    let m3 = month(&server, BETA, 3);
    assert_eq!((m3["lines"].as_array().unwrap().len(), &m3["totals"]["invoiced_cost"]), (0, &json!("0")));

    // Parameters are checked before any work.
    for bad in ["group_by=tenant", "tolerance_percent=-1", "from=2026-13-01", "colour=red", "from=2026-02-01&to=2026-01-01"] {
        let (status, body) = get(&server, ADMIN, &format!("/api/v1/reconciliation?{bad}"));
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, body) = import(&server, ADMIN, "account=org-acme", "{\"hello\": 1}".into());
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("not a cost report costplane knows"), "{body}");

    // The CLI's table of three months ago, by day.
    let out = Command::new(BIN)
        .args(["reconcile", "--server", &format!("http://{}", server.api), "--api-key", ADMIN])
        .args(["--from", &day(month_start(3)), "--to", &day(month_start(2))])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let row = |model: &str| text.lines().find(|l| l.split_whitespace().nth(1) == Some(model)).unwrap_or_default().to_owned();
    // After the corrected import: gpt-4o 3.5 against 3.5.
    let gpt4o: Vec<String> = row("gpt-4o").split_whitespace().map(String::from).collect();
    assert_eq!(gpt4o, ["openai", "gpt-4o", &day(call_time(3)), "matched", "3.5", "3.5", "0", "0", "0"], "{text}");
    assert!(row("gpt-4o-mini").contains("invoiced-only"), "{text}");
    assert!(text.contains("total: estimated 3.5 · invoiced 4.25 · drift 0.75"), "{text}");
    assert!(text.contains("model openai / gpt-4o: spans [gpt-4o] · invoices [gpt-4o-2024-08-06]"), "{text}");
}

/// `/metrics` carries the drift of the closed days the invoices cover.
#[test]
fn metrics_show_the_drift_of_closed_days() {
    let server = ServerProcess::start(&[]);
    let yesterday = (Utc::now() - chrono::Duration::days(1)).date_naive();
    let noon = Utc.from_utc_datetime(&yesterday.and_hms_opt(12, 0, 0).unwrap());
    // gpt-4o at 2.50 per 1M input tokens: 1,000,000 → 2.50.
    let s = span(
        "acme",
        noon,
        9,
        &[("gen_ai.provider.name", "openai"), ("gen_ai.request.model", "gpt-4o"), ("gen_ai.usage.input_tokens", "1000000")],
    );
    assert!(server.export("/v1/traces", "application/json", s).status().is_success());
    let (from, to) = (yesterday.to_string(), yesterday.succ_opt().unwrap().to_string());
    wait_until(
        || get(&server, "", &format!("/api/v1/reconciliation?from={from}&to={to}")).1["totals"]["estimated_cost"] == "2.5",
        "yesterday's estimate",
    );
    let start = yesterday.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
    let page = json!({"object": "page", "has_more": false, "data": [{"object": "bucket", "start_time": start, "end_time": start + 86_400,
        "results": [{"object": "organization.costs.result", "amount": {"value": 3, "currency": "usd"}, "line_item": "gpt-4o-2024-08-06, input"}]}]});
    let (status, body) = import(&server, "", "account=org-acme", page.to_string());
    assert_eq!(status, 200, "{body}");
    let metrics = client().get(format!("http://{}/metrics", server.api)).send().unwrap().text().unwrap();
    // Billed 3.00 against 2.50: drift 0.50, 16.67% of 3.00 (0.1666..).
    for line in [
        "costplane_reconciliation_estimated_usd{provider=\"openai\"} 2.5",
        "costplane_reconciliation_invoiced_usd{provider=\"openai\"} 3",
        "costplane_reconciliation_drift_usd{provider=\"openai\"} 0.5",
        "costplane_reconciliation_max_daily_drift_percent{provider=\"openai\"} 16.67",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} missing from:\n{metrics}");
    }
}
