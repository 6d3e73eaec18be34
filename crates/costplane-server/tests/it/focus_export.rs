//! The FOCUS export over a real DuckDB store: every file it writes passes
//! the FOCUS 1.2 conformance check in `tests/support/focus_check.py`, and
//! the checker fails the files it should.

use std::sync::Arc;

use axum::body::Body;
use costplane_pipeline::{BufferConfig, Pipeline, PipelineConfig};
use costplane_server::api::{router, ApiState};
use costplane_server::auth::ApiKey;
use costplane_server::config::{BillingSection, CostSection};
use costplane_server::costs::CostState;
use costplane_server::otlp::inflight::InflightLimit;
use costplane_store::duckdb::DuckDbStore;
use costplane_store::Store;
use costplane_telemetry::usage::{LlmUsage, LlmUsageRow, TelemetryUsage};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use rust_decimal::Decimal;
use tower::ServiceExt;

const ADMIN: &str = "admin-0123456789abcdef";
const ACME: &str = "acme-0123456789abcdef";
/// 2026-10-06T10:00:00Z
const T: i64 = 1_791_280_800_000_000_000;
const HOUR: i64 = 3_600_000_000_000;
/// costplane's one declared departure from FOCUS 1.2 (see costs/focus.rs).
const TOLERATE: &str = "x_PricingStatus=unpriced,provided";

/// Runs the conformance check on `csv`; its problems, one a line.
fn focus_check(csv: &str, tolerate: Option<&str>) -> (bool, String) {
    match tolerate {
        Some(t) => costplane_testkit::focus_check(csv, &["--tolerate-unit-prices-when", t]),
        None => costplane_testkit::focus_check(csv, &[]),
    }
}

fn llm(tenant: &str, provider: &str, model: &str, input: u64, output: u64, provided: Option<&str>) -> LlmUsageRow {
    LlmUsageRow {
        timestamp_ns: T + 60_000_000_000,
        received_ns: T + 60_000_000_000,
        hour_ns: T,
        kind: Default::default(),
        invalid_reason: None,
        tenant: tenant.into(),
        project: "shop".into(),
        service: "checkout".into(),
        trace_id: String::new(),
        span_id: String::new(),
        usage: LlmUsage {
            provider: provider.into(),
            model: model.into(),
            operation: "chat".into(),
            input_tokens: input,
            output_tokens: output,
            provided_cost: provided.map(|c| c.parse().unwrap()),
            ..LlmUsage::default()
        },
    }
}

fn telemetry(hour_ns: i64, [tenant, project, service]: [&str; 3], signal: &'static str, items: u64, bytes: u64) -> TelemetryUsage {
    TelemetryUsage {
        hour_ns,
        event_day_ns: costplane_telemetry::usage::day_of(hour_ns),
        tenant: tenant.into(),
        project: project.into(),
        service: service.into(),
        signal,
        items,
        bytes,
    }
}

/// A DuckDB-backed API with one month of ledger rows: priced, provided and
/// unpriced LLM calls, telemetry ingest (a tenant named like a formula),
/// and a row on the month's last hour.
async fn app(billing: Option<BillingSection>) -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(DuckDbStore::open(dir.path()).unwrap());
    // A span's own cost wins here ("prefer"), for a provided row.
    let cost_config = CostSection { ingest_per_gib: "0.50".into(), provided_cost: "prefer".into(), ..CostSection::default() };
    let meter = Arc::new(cost_config.meter().unwrap());
    let mut ledger = meter.llm_ledger(
        &[
            llm("acme", "openai", "gpt-4o", 10_000, 500, None),
            llm("acme", "", "gpt-4o", 10, 5, Some("0.5")),
            llm("globex", "", "mystery-llm-7b", 42, 7, None),
        ],
        &|_| true,
        costplane_telemetry::usage::ChargeStatus::Closed,
    );
    ledger.extend(meter.telemetry_ledger(
        &[
            telemetry(T, ["acme", "shop", "checkout"], "traces", 8, 12_345),
            telemetry(T, ["=evil", "-x", "@svc"], "logs", 3, 999),
            // 2026-10-31T23:00:00Z: the last hour of the month, ending on its exclusive end.
            telemetry(T + (25 * 24 + 13) * HOUR, ["acme", "shop", "checkout"], "metrics", 1, 100),
            // November: not in October's file.
            telemetry(T + (25 * 24 + 14) * HOUR, ["acme", "shop", "checkout"], "metrics", 1, 100),
        ],
        costplane_telemetry::usage::ChargeStatus::Closed,
    ));
    crate::support::write_ledger(store.as_ref(), ledger).await;

    let config = PipelineConfig { dead_letter_dir: dir.path().join("dead-letter"), ..PipelineConfig::default() };
    let decoder = costplane_server::otlp::Ingest::decoder_for(costplane_telemetry::Limits::default(), None, None);
    let handle = Pipeline::start(config, store.clone(), BufferConfig::Memory, decoder).unwrap();
    let config = costplane_server::Config { cost: cost_config, ..costplane_server::Config::default() };
    let costs = CostState::new(Arc::clone(&store), &config, handle.pipeline().clone()).unwrap();
    let keys = vec![
        ApiKey { key: ADMIN.into(), tenant: None, role: Some("admin".into()) },
        ApiKey { key: ACME.into(), tenant: Some("acme".into()), role: None },
    ];
    let mut r = router(ApiState { pipeline: handle.pipeline().clone(), store, inflight: InflightLimit::new(1 << 20) }, costs, keys);
    if let Some(b) = billing {
        r = r.layer(axum::Extension(Arc::new(b)));
    }
    std::mem::forget(handle); // the writer task lives as long as the runtime
    (r, dir)
}

pub(crate) async fn get(app: &axum::Router, uri: &str, key: &str) -> (StatusCode, String) {
    let req = Request::builder().uri(uri).header("authorization", format!("Bearer {key}")).body(Body::empty()).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// RFC 4180 records (enough for the export's own output).
fn parse(csv: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut cell, mut quoted) = (Vec::new(), Vec::new(), String::new(), false);
    let mut chars = csv.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => row.push(std::mem::take(&mut cell)),
            ('\n', false) => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (c, _) => cell.push(c),
        }
    }
    rows
}

/// The export as maps from column to cell.
pub(crate) fn records(csv: &str) -> Vec<std::collections::HashMap<String, String>> {
    let rows = parse(csv);
    let header = rows[0].clone();
    rows[1..].iter().map(|r| header.iter().cloned().zip(r.iter().cloned()).collect()).collect()
}

#[tokio::test]
async fn the_focus_export_conforms_to_focus_1_2() {
    let billing = BillingSection {
        account_id: "acct-42".into(),
        account_name: String::new(),
        invoice_issuer: "Platform team".into(),
        ..BillingSection::default()
    };
    let (app, _dir) = app(Some(billing)).await;
    let (status, body) = get(&app, "/api/costs/export?month=2026-10&format=focus", ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (ok, problems) = focus_check(&body, Some(TOLERATE));
    assert!(ok, "the export does not conform:\n{problems}\n{body}");

    let rows = records(&body);
    // LLM: priced input and output, the provided cost over its input and
    // output, unpriced input and output; telemetry: three October hours.
    assert_eq!(rows.len(), 9, "{body}");
    for r in &rows {
        assert_eq!(r["BillingAccountId"], "acct-42");
        assert_eq!(r["BillingAccountName"], "", "an empty name is a null");
        assert_eq!(r["InvoiceIssuerName"], "Platform team");
        assert_eq!(r["BillingPeriodStart"], "2026-10-01T00:00:00Z");
        assert_eq!(r["BillingPeriodEnd"], "2026-11-01T00:00:00Z");
        assert_eq!(r["ChargeCategory"], "Usage");
        assert_eq!(r["ChargeClass"], "");
        assert_eq!(r["ChargeFrequency"], "Usage-Based");
    }
    let priced = rows.iter().find(|r| r["SkuId"] == "openai/gpt-4o/input").expect("the priced input row");
    assert_eq!((priced["BilledCost"].as_str(), priced["ListUnitPrice"].as_str()), ("0.025", "2.5"), "{priced:?}");
    assert_eq!((priced["PricingCategory"].as_str(), priced["ServiceCategory"].as_str()), ("Standard", "AI and Machine Learning"));
    let provided = rows.iter().find(|r| r["x_PricingStatus"] == "provided").unwrap();
    // The span's 0.5 over 10 input and 5 output tokens: 0.333333333333 + 0.166666666667.
    let split: Vec<(&str, &str)> =
        rows.iter().filter(|r| r["x_PricingStatus"] == "provided").map(|r| (r["x_UsageType"].as_str(), r["BilledCost"].as_str())).collect();
    assert_eq!(split, [("input", "0.333333333333"), ("output", "0.166666666667")]);
    assert_eq!(provided["ListUnitPrice"], "");
    assert_eq!(provided["PricingCategory"], "Other");
    let unpriced: Vec<_> = rows.iter().filter(|r| r["x_PricingStatus"] == "unpriced").collect();
    assert_eq!(unpriced.len(), 2, "unpriced usage stays visible");
    for r in unpriced {
        assert_eq!((r["BilledCost"].as_str(), r["ListUnitPrice"].as_str(), r["SkuPriceId"].as_str()), ("0", "", ""));
        assert_eq!(r["ProviderName"], "Unidentified provider");
        assert_eq!(r["SubAccountId"], "globex");
    }
    let telemetry: Vec<_> = rows.iter().filter(|r| r["x_Source"] == "telemetry").collect();
    assert!(telemetry.iter().all(|r| r["ServiceCategory"] == "Management and Governance" && r["ServiceSubcategory"] == "Observability"));
    assert!(telemetry.iter().all(|r| r["ListUnitPrice"] == "0.5" && r["PricingUnit"] == "GiB" && r["x_Model"].is_empty()));
    let last = telemetry.iter().find(|r| r["x_UsageType"] == "metrics").unwrap();
    assert_eq!((last["ChargePeriodStart"].as_str(), last["ChargePeriodEnd"].as_str()), ("2026-10-31T23:00:00Z", "2026-11-01T00:00:00Z"));
    // Text is defused against formulas; numbers never are.
    let evil = telemetry.iter().find(|r| r["x_UsageType"] == "logs").unwrap();
    assert_eq!((evil["SubAccountId"].as_str(), evil["x_Project"].as_str(), evil["ResourceName"].as_str()), ("'=evil", "'-x", "'@svc"));
    assert!(body.contains(",'=evil,"), "{body}");

    // The same money as the cost API, to the last digit.
    let (_, costs) = get(&app, "/api/v1/costs?from=2026-10-01&to=2026-11-01", ADMIN).await;
    let total: Decimal = serde_json::from_str::<serde_json::Value>(&costs).unwrap()["total"].as_str().unwrap().parse().unwrap();
    assert_eq!(rows.iter().map(|r| r["BilledCost"].parse::<Decimal>().unwrap()).sum::<Decimal>(), total);

    // A tenant's file conforms too and holds only its rows.
    let (_, mine) = get(&app, "/api/costs/export?month=2026-10&format=focus", ACME).await;
    assert!(focus_check(&mine, Some(TOLERATE)).0);
    assert!(records(&mine).iter().all(|r| r["SubAccountId"] == "acme" && r["SubAccountName"] == "acme"));

    // A month without rows is a header that still names every column.
    let (_, empty) = get(&app, "/api/costs/export?month=2026-09&format=focus", ADMIN).await;
    assert_eq!(empty.lines().count(), 1);
    assert!(focus_check(&empty, None).0);
}

#[tokio::test]
async fn without_a_billing_section_the_defaults_name_the_account() {
    let (app, _dir) = app(None).await;
    let (status, body) = get(&app, "/api/costs/export?month=2026-10&format=focus", ADMIN).await;
    assert_eq!(status, StatusCode::OK);
    let rows = records(&body);
    assert!(rows
        .iter()
        .all(|r| r["BillingAccountId"] == "costplane" && r["BillingAccountName"] == "costplane" && r["InvoiceIssuerName"] == "costplane"));
    assert!(focus_check(&body, Some(TOLERATE)).0);
}

#[tokio::test]
async fn the_checker_fails_a_broken_export() {
    let (app, _dir) = app(None).await;
    let (_, body) = get(&app, "/api/costs/export?month=2026-10&format=focus", ADMIN).await;
    // Without the declared departure, the unpriced and provided rows' null
    // unit prices are reported.
    let (ok, problems) = focus_check(&body, None);
    assert!(!ok && problems.contains("ListUnitPrice: [not-null-for-usage]"), "{problems}");
    // A missing mandatory column, a "" in a non-nullable one, a bad date.
    let broken = body
        .replacen("InvoiceIssuerName", "x_InvoiceIssuerName", 1)
        .replacen("2026-10-06T10:00:00Z", "2026-10-06 10:00:00", 1)
        .replacen(",costplane,costplane,", ",\"\",costplane,", 1);
    let (ok, problems) = focus_check(&broken, Some(TOLERATE));
    assert!(!ok);
    for expected in [
        "header, InvoiceIssuerName: [mandatory-column]",
        "row 1, BillingAccountId: [empty-string]",
        "row 1, ChargePeriodStart: [datetime]",
        "header, ProviderName: [column-order]",
    ] {
        assert!(problems.contains(expected), "{expected} not in:\n{problems}");
    }
}

#[tokio::test]
async fn the_served_export_names_the_configured_billing() {
    let config = costplane_server::config::Config {
        billing: BillingSection {
            account_id: "acct-7".into(),
            account_name: "Platform chargeback".into(),
            invoice_issuer: "Platform team".into(),
            ..BillingSection::default()
        },
        ..costplane_server::config::Config::default()
    };
    let mut server = crate::support::RunningServer::start(config, std::time::Duration::ZERO, 0).await;
    let meter = CostSection::default().meter().unwrap();
    let ledger =
        meter.llm_ledger(&[llm("acme", "openai", "gpt-4o", 1_000, 100, None)], &|_| true, costplane_telemetry::usage::ChargeStatus::Closed);
    crate::support::write_ledger(server.store.as_ref(), ledger).await;
    let body =
        reqwest::get(format!("http://{}/api/costs/export?month=2026-10&format=focus", server.api)).await.unwrap().text().await.unwrap();
    let rows = records(&body);
    assert_eq!(rows.len(), 2, "{body}");
    for r in &rows {
        assert_eq!(
            (r["BillingAccountId"].as_str(), r["BillingAccountName"].as_str(), r["InvoiceIssuerName"].as_str()),
            ("acct-7", "Platform chargeback", "Platform team")
        );
    }
    assert!(focus_check(&body, Some(TOLERATE)).0);
    server.stop().await;
}
