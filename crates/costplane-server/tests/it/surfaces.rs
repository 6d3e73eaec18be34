//! One figure in every surface: on a mixed month (LLM calls priced,
//! provided, unpriced and invalid; telemetry ingest; API queries; storage),
//! the cost API, the chargeback CSV, the FOCUS export and `/metrics` give
//! the same total to the last digit, on DuckDB and on ClickHouse's engine.
//! The rule that makes it so: each ledger row is rounded once (12 places,
//! half-even) when it is made, and every surface adds the stored rows.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{Datelike, Utc};
use costplane_pipeline::{BufferConfig, Pipeline, PipelineConfig};
use costplane_server::api::{router, ApiState};
use costplane_server::auth::ApiKey;
use costplane_server::config::CostSection;
use costplane_server::costs::storage::storage_rows;
use costplane_server::costs::CostState;
use costplane_server::otlp::inflight::InflightLimit;
use costplane_store::clickhouse::ClickHouseStore;
use costplane_store::duckdb::DuckDbStore;
use costplane_store::ledger::Ledger;
use costplane_store::{Store, StoredBytes};
use costplane_telemetry::usage::{CallKind, LlmUsage, LlmUsageRow, TelemetryUsage, UsageRows, DAY_NS, HOUR_NS};
use costplane_telemetry::TelemetryBatch;
use rust_decimal::Decimal;

use crate::focus_export::{get, records};

const ADMIN: &str = "admin-0123456789abcdef";

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn call(tenant: &str, model: &str, input: u64, output: u64, provided: Option<&str>, invalid: Option<&str>, at: i64) -> LlmUsageRow {
    LlmUsageRow {
        timestamp_ns: at,
        received_ns: at,
        hour_ns: at - at.rem_euclid(HOUR_NS),
        tenant: tenant.into(),
        project: "shop".into(),
        service: "assistant".into(),
        trace_id: format!("{tenant}-{model}"),
        span_id: String::new(),
        kind: CallKind::Model,
        usage: LlmUsage {
            provider: "openai".into(),
            model: model.into(),
            operation: "chat".into(),
            input_tokens: input,
            output_tokens: output,
            provided_cost: provided.map(d),
            ..LlmUsage::default()
        },
        invalid_reason: invalid.map(str::to_owned),
    }
}

async fn same_figure_everywhere(store: Arc<dyn Store>) {
    let now = Utc::now().timestamp_nanos_opt().unwrap();
    let hour = now - now.rem_euclid(HOUR_NS);
    let today = now - now.rem_euclid(DAY_NS);
    // The server's own closer prices at zero (default rates), so the
    // queries these requests add and the usage written below for the
    // storage shares leave the totals alone.
    let config =
        PipelineConfig { dead_letter_dir: std::env::temp_dir().join(format!("dl-{}", rand::random::<u64>())), ..PipelineConfig::default() };
    let decoder = costplane_server::otlp::Ingest::decoder_for(costplane_telemetry::Limits::default(), None, None);
    let handle = Pipeline::start(config, store.clone(), BufferConfig::Memory, decoder).unwrap();
    let costs = CostState::new(Arc::clone(&store), &costplane_server::Config::default(), handle.pipeline().clone()).unwrap();
    let keys = vec![ApiKey { key: ADMIN.into(), tenant: None, role: Some("admin".into()) }];
    let app = router(
        ApiState { pipeline: handle.pipeline().clone(), store: Arc::clone(&store), inflight: InflightLimit::new(1 << 20) },
        costs,
        keys,
    );
    std::mem::forget(handle);

    // The month's costs, made by a meter with every rate set.
    let section = CostSection {
        ingest_per_gib: "0.37".into(),
        storage_per_gib_month: "0.023".into(),
        queries_per_1000: "1.9".into(),
        ..CostSection::default()
    };
    let meter = section.meter().unwrap();
    let mut rows = meter.llm_ledger(
        &[
            call("acme", "gpt-4o", 12_345, 678, None, None, hour + 1),
            call("acme", "house-model-2", 10, 5, Some("0.1"), None, hour + 2),
            call("globex", "mystery-llm-7b", 42, 7, None, None, hour + 3),
            call("globex", "gpt-4o", 1_000, 100, None, Some("a test reason"), hour + 4),
        ],
        &|_| true,
        costplane_telemetry::usage::ChargeStatus::Closed,
    );
    let usage = |tenant: &str, signal: &'static str, items, bytes| TelemetryUsage {
        hour_ns: hour,
        event_day_ns: costplane_telemetry::usage::day_of(hour),
        tenant: tenant.into(),
        project: "shop".into(),
        service: "assistant".into(),
        signal,
        items,
        bytes,
    };
    let telemetry = vec![
        usage("acme", "traces", 17, 123_457),
        usage("globex", "traces", 3, 98_765),
        usage("initech", "traces", 1, 98_765),
        usage("acme", "logs", 9, 4_321),
        usage("acme", "queries", 7, 0),
    ];
    rows.extend(meter.telemetry_ledger(&telemetry, costplane_telemetry::usage::ChargeStatus::Provisional));
    // Storage: the store keeps 5 GiB + 12,345 bytes of today's traces,
    // shared by today's traces ingest (acme 123,457; globex and initech 98,765 each).
    store
        .write(&TelemetryBatch { id: rand::random(), usage: UsageRows { telemetry, ..UsageRows::default() }, ..TelemetryBatch::default() })
        .await
        .unwrap();
    let measured = [StoredBytes { signal: "traces".into(), day_ns: Some(today), bytes: (5 << 30) + 12_345, method: "test" }];
    let storage = storage_rows(&Ledger::new(Arc::clone(&store)), &meter, today, &measured).await.unwrap();
    assert_eq!(storage.len(), 3);
    rows.extend(storage);
    let expected: Decimal = rows.iter().map(|r| r.cost).sum();
    assert!(rows.iter().all(|r| r.cost.scale() <= 12), "each row is rounded to 12 places");
    crate::support::write_ledger(store.as_ref(), rows).await;

    let month = format!("{:04}-{:02}", Utc::now().year(), Utc::now().month());
    let (_, api) = get(&app, &format!("/api/v1/costs?from={month}-01&to=2262-01-01"), ADMIN).await;
    let api: Decimal = serde_json::from_str::<serde_json::Value>(&api).unwrap()["total"].as_str().unwrap().parse().unwrap();
    let (_, chargeback) = get(&app, &format!("/api/costs/export?month={month}"), ADMIN).await;
    let chargeback: Decimal = records(&chargeback).iter().map(|r| r["cost"].parse::<Decimal>().unwrap()).sum();
    let (_, focus) = get(&app, &format!("/api/costs/export?month={month}&format=focus"), ADMIN).await;
    let focus: Decimal = records(&focus).iter().map(|r| r["BilledCost"].parse::<Decimal>().unwrap()).sum();
    let (_, metrics) = get(&app, "/metrics", ADMIN).await;
    let metrics: Decimal = metrics
        .lines()
        .filter(|l| l.starts_with("costplane_cost_month_to_date_usd{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<Decimal>().unwrap())
        .sum();
    assert_eq!((api, chargeback, focus, metrics), (expected, expected, expected, expected));
    // Not a round number: the rule is exercised, not avoided.
    assert!(expected.scale() > 6, "{expected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_figure_in_every_surface_on_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    same_figure_everywhere(Arc::new(DuckDbStore::open(dir.path()).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_figure_in_every_surface_on_clickhouse() {
    let target = costplane_testkit::ClickHouseTarget::new();
    let store = ClickHouseStore::connect(target.config()).await.unwrap();
    same_figure_everywhere(Arc::new(store)).await;
}
