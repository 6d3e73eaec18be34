//! Storage cost is charged once for every ended day, the days a stopped
//! server missed included.

use std::sync::Arc;

use costplane_server::config::{CostSection, LedgerSection};
use costplane_server::costs::closer::{Closer, PriceSource, Timing};
use costplane_store::duckdb::DuckDbStore;
use costplane_store::ledger::Ledger;
use costplane_store::Store;
use costplane_telemetry::model::{ResourceInfo, ScopeInfo, SpanRow};
use costplane_telemetry::usage::{scope, CostFilter, TelemetryUsage, UsageRows, DAY_NS, HOUR_NS};
use costplane_telemetry::TelemetryBatch;
use rust_decimal::Decimal;

/// 2026-10-06T00:00:00Z (October: 31 days).
const DAY: i64 = 1_791_244_800_000_000_000;

fn spans(n: usize) -> Vec<SpanRow> {
    let resource = Arc::new(ResourceInfo {
        service_name: "checkout".into(),
        attributes: costplane_telemetry::Attributes::from([("tenant.id", "acme")]),
        schema_url: String::new(),
    });
    (0..n)
        .map(|i| SpanRow {
            resource: Arc::clone(&resource),
            scope: Arc::new(ScopeInfo::default()),
            timestamp_ns: DAY + 10 * HOUR_NS,
            trace_id: format!("{i:032x}"),
            span_id: format!("{i:016x}"),
            parent_span_id: String::new(),
            trace_state: String::new(),
            span_name: format!("POST /checkout {i}"),
            span_kind: "Server",
            span_attributes: Default::default(),
            duration_ns: 1_000,
            status_code: "Unset",
            status_message: String::new(),
            events: Vec::new(),
            links: Vec::new(),
            encoded_bytes: 200,
        })
        .collect()
}

fn closer(store: &Arc<dyn Store>) -> Closer {
    let ledger_section = LedgerSection::default();
    let cost = CostSection { storage_per_gib_month: "3.1".into(), ..CostSection::default() };
    let source = PriceSource { cost, ledger: ledger_section.clone(), kubernetes: Default::default(), file: None };
    Closer::new(Ledger::new(Arc::clone(store)), Arc::new(source.meter().unwrap()), source, Timing::of(&ledger_section))
}

async fn storage_days(ledger: &Ledger) -> Vec<i64> {
    let states = ledger.hour_states(DAY - 7 * DAY_NS, DAY + 7 * DAY_NS).await.unwrap();
    states.into_iter().filter(|s| s.scope == scope::STORAGE).map(|s| s.hour_ns).collect()
}

#[tokio::test]
async fn a_server_stopped_over_midnight_bills_the_missed_day_once() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(DuckDbStore::open(dir.path()).unwrap());
    let ledger = Ledger::new(Arc::clone(&store));
    let usage = TelemetryUsage {
        hour_ns: DAY + 10 * HOUR_NS,
        tenant: "acme".into(),
        project: "unassigned".into(),
        service: "checkout".into(),
        signal: "traces",
        items: 500,
        bytes: 100_000,
    };
    let batch = TelemetryBatch {
        id: 1,
        spans: spans(500),
        usage: UsageRows { telemetry: vec![usage], ..UsageRows::default() },
        ..TelemetryBatch::default()
    };
    store.write(&batch).await.unwrap();

    // The day runs: its storage is not due before it ends.
    let first = closer(&store);
    first.refresh_at(DAY + 11 * HOUR_NS).await.unwrap();
    first.refresh_at(DAY + 23 * HOUR_NS).await.unwrap();
    assert!(storage_days(&ledger).await.is_empty());
    drop(first);

    // Stopped over midnight, started the next morning: the missed day once.
    let second = closer(&store);
    second.refresh_at(DAY + DAY_NS + 8 * HOUR_NS).await.unwrap();
    second.refresh_at(DAY + DAY_NS + 9 * HOUR_NS).await.unwrap();
    assert_eq!(storage_days(&ledger).await, [DAY]);
    let measured = store.stored_bytes().await.unwrap();
    let bytes: u64 = measured.iter().filter(|m| m.signal == "traces").map(|m| m.bytes).sum();
    assert!(bytes > 0, "the spans take room: {measured:?}");
    // One tenant holds all the traces: bytes / 2^30 GiB x $3.10 per GiB-month / 31 days.
    let expected =
        costplane_telemetry::usage::round_money(Decimal::from(bytes) / Decimal::from(1u64 << 30) * Decimal::new(31, 1) / Decimal::from(31));
    let window = CostFilter { from_ns: DAY, to_ns: DAY + DAY_NS, tenant: None, equals: Vec::new() };
    let rows = ledger.rows(&window).await.unwrap();
    let storage: Vec<(String, Decimal)> =
        rows.iter().filter(|r| r.usage_type.as_str() == "storage").map(|r| (r.tenant.clone(), r.cost)).collect();
    assert_eq!(storage, [("acme".to_owned(), expected)]);

    // Down for two more days: each of them once.
    let third = closer(&store);
    third.refresh_at(DAY + 3 * DAY_NS + HOUR_NS).await.unwrap();
    third.refresh_at(DAY + 3 * DAY_NS + 2 * HOUR_NS).await.unwrap();
    assert_eq!(storage_days(&ledger).await, [DAY, DAY + DAY_NS, DAY + 2 * DAY_NS]);
}
