//! Storage cost is charged once for every ended day, the days a stopped
//! server missed included, and each day partition's bytes to whoever sent
//! the data it holds (by the data's own day, not the day it arrived), on
//! both stores.

use std::sync::Arc;

use costplane_server::config::{CostSection, LedgerSection};
use costplane_server::costs::closer::{Closer, PriceSource, Timing};
use costplane_store::duckdb::DuckDbStore;
use costplane_store::ledger::Ledger;
use costplane_store::Store;
use costplane_telemetry::model::{ResourceInfo, ScopeInfo, SpanRow};
use costplane_telemetry::usage::{round_money, scope, CostFilter, TelemetryUsage, UsageRows, DAY_NS, HOUR_NS};
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

fn price_source() -> PriceSource {
    let cost = CostSection { storage_per_gib_month: "3.1".into(), ..CostSection::default() };
    PriceSource { cost, ledger: LedgerSection::default(), kubernetes: Default::default(), file: None }
}

fn closer(store: &Arc<dyn Store>) -> Closer {
    let source = price_source();
    let timing = Timing::of(&source.ledger);
    Closer::new(Ledger::new(Arc::clone(store)), Arc::new(source.meter().unwrap()), source, timing)
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
        event_day_ns: DAY,
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

/// `n` spans of `tenant` at `time_ns`, 200 encoded bytes each.
fn spans_of(tenant: &str, n: usize, time_ns: i64, first_id: usize) -> Vec<SpanRow> {
    let resource = Arc::new(ResourceInfo {
        service_name: "checkout".into(),
        attributes: costplane_telemetry::Attributes::from([("tenant.id", tenant)]),
        schema_url: String::new(),
    });
    spans(n)
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            s.resource = Arc::clone(&resource);
            s.timestamp_ns = time_ns + i64::try_from(i).unwrap();
            s.trace_id = format!("{:032x}", first_id + i);
            s.span_id = format!("{:016x}", first_id + i);
            s
        })
        .collect()
}

/// 2030-01-01T00:00:00Z (January: 31 days), inside every retention window,
/// so neither store expires the partitions while the test reads them.
const JAN: i64 = 1_893_456_000_000_000_000;

/// Three days of January: globex sends on the 2nd, at 11:00, 100 spans of
/// the 1st (backdated) and 100 of the 2nd; acme sends 400 of the 2nd at
/// 10:00. The 1st's partition holds only globex's data, the 2nd's acme's
/// and globex's in the ratio 400:100, whatever day each arrived.
async fn backdated_data_is_charged_to_its_sender(store: Arc<dyn Store>) {
    let ledger = Ledger::new(Arc::clone(&store));
    let meter = price_source().meter().unwrap();
    let (day1, day2) = (JAN, JAN + DAY_NS);
    let send = |id: u64, spans: Vec<SpanRow>, received_ns: i64| {
        let mut batch = TelemetryBatch { id, spans, ..TelemetryBatch::default() };
        // The receivers' metering: each item's event day from its own time.
        batch.usage = meter.measure(&batch, received_ns);
        batch
    };
    let acme = send(1, spans_of("acme", 400, day2 + 10 * HOUR_NS, 0), day2 + 10 * HOUR_NS);
    let mut globex_spans = spans_of("globex", 100, day1 + 5 * HOUR_NS, 1_000);
    globex_spans.extend(spans_of("globex", 100, day2 + 11 * HOUR_NS, 2_000));
    let globex = send(2, globex_spans, day2 + 11 * HOUR_NS);
    // The meter keeps the two days apart: 100 x 200 bytes each.
    let globex_days: Vec<(i64, u64)> = globex.usage.telemetry.iter().map(|u| (u.event_day_ns, u.bytes)).collect();
    assert_eq!(globex_days, [(day1, 20_000), (day2, 20_000)]);
    store.write(&acme).await.unwrap();
    store.write(&globex).await.unwrap();

    // The 2nd ends; the next morning its storage is charged (one day).
    let closer = closer(&store);
    closer.refresh_at(day2 + 12 * HOUR_NS).await.unwrap();
    closer.refresh_at(day2 + DAY_NS + 8 * HOUR_NS).await.unwrap();
    let states = ledger.hour_states(day1 - DAY_NS, day2 + 2 * DAY_NS).await.unwrap();
    let storage_days: Vec<i64> = states.iter().filter(|s| s.scope == scope::STORAGE).map(|s| s.hour_ns).collect();
    assert_eq!(storage_days, [day2]);

    let measured = store.stored_bytes().await.unwrap();
    let of_day = |d: i64| measured.iter().filter(|m| m.signal == "traces" && m.day_ns == Some(d)).map(|m| m.bytes).sum::<u64>();
    let (old, new) = (of_day(day1), of_day(day2));
    assert!(old > 0 && new > 0, "both days' partitions take room: {measured:?}");
    // $3.10 per GiB-month over January's 31 days is $0.10 per GiB-day:
    // cost = bytes / 2^30 / 10.
    // globex: all of the 1st's partition and 100 / (400 + 100) = 1/5 of the 2nd's;
    // acme: 4/5 of the 2nd's and none of the 1st's.
    let per_gib_day = |bytes: Decimal| round_money(bytes / Decimal::from(1u64 << 30) / Decimal::from(10));
    let (old, new) = (Decimal::from(old), Decimal::from(new));
    let expected = vec![
        ("acme".to_owned(), new * Decimal::new(8, 1), per_gib_day(new * Decimal::new(8, 1))),
        ("globex".to_owned(), old + new * Decimal::new(2, 1), per_gib_day(old + new * Decimal::new(2, 1))),
    ];
    let window = CostFilter { from_ns: day2, to_ns: day2 + DAY_NS, tenant: None, equals: Vec::new() };
    let rows = ledger.rows(&window).await.unwrap();
    let mut storage: Vec<(String, Decimal, Decimal)> = rows
        .iter()
        .filter(|r| r.usage_type.as_str() == "storage")
        .map(|r| (r.tenant.clone(), r.consumed_quantity.normalize(), r.cost))
        .collect();
    storage.sort();
    let expected: Vec<(String, Decimal, Decimal)> =
        expected.into_iter().map(|(t, bytes, cost)| (t, round_money(bytes).normalize(), cost)).collect();
    // Nothing is left unassigned: before, the 1st's partition had no
    // ingest received that day and was charged to nobody.
    assert_eq!(storage, expected);
}

#[tokio::test]
async fn backdated_data_is_charged_to_its_sender_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    backdated_data_is_charged_to_its_sender(Arc::new(DuckDbStore::open(dir.path()).unwrap())).await;
}

#[tokio::test]
async fn backdated_data_is_charged_to_its_sender_on_clickhouse() {
    let target = costplane_testkit::ClickHouseTarget::new();
    let store = costplane_store::clickhouse::ClickHouseStore::connect(target.config()).await.unwrap();
    backdated_data_is_charged_to_its_sender(Arc::new(store)).await;
}
