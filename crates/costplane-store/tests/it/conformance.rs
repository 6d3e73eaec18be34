//! The scenarios every store must pass with identical answers. Expected
//! values are written out from the data in `data.rs`, not read back from a
//! store.

use std::str::FromStr;
use std::sync::Arc;

use costplane_cost::{Catalog, Meter, TelemetryRates, Tenancy};
use costplane_store::ledger::{next_revision, Ledger};
use costplane_telemetry::usage::{
    round_money, scope, ChargeStatus, CostFilter, Dimension, HourState, KubernetesUsage, LedgerReplacement, LedgerRow, Source, UsageType,
    CLOSED, HOUR_NS,
};
use costplane_telemetry::TelemetryBatch;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::data::{self, T0};
use crate::support::Backend;

async fn rows(b: &Backend, sql: &str) -> Vec<Vec<Value>> {
    b.store.query(sql).await.unwrap_or_else(|e| panic!("{sql}\n-> {e}")).rows
}

async fn one(b: &Backend, sql: &str) -> Vec<Value> {
    let mut r = rows(b, sql).await;
    assert_eq!(r.len(), 1, "{sql} should give one row: {r:?}");
    r.remove(0)
}

pub async fn traces_round_trip(b: &Backend) {
    b.store.write(&data::traces(1)).await.unwrap();
    let d = b.dialect;
    assert_eq!(one(b, "SELECT count(*) FROM otel_traces").await, vec![json!(10)]);
    assert_eq!(
        rows(b, "SELECT SpanName, SpanKind, count(*) FROM otel_traces GROUP BY SpanName, SpanKind ORDER BY SpanName").await,
        vec![vec![json!("GET /cart"), json!("Server"), json!(5)], vec![json!("SELECT"), json!("Client"), json!(5)]]
    );
    let sql = format!(
        "SELECT TraceId, SpanId, ParentSpanId, TraceState, ServiceName, {ts}, Duration, StatusCode, StatusMessage, \
         ScopeName, ScopeVersion, ResourceAttributes['tenant.id'], ResourceAttributes['replicas'], \
         SpanAttributes['attempt'], SpanAttributes['ratio'], SpanAttributes['ok'], {links}, {link_trace}, {link_attr} \
         FROM otel_traces WHERE SpanId = '0000000000001003'",
        ts = d.ns("Timestamp"),
        links = d.len("Links", "TraceId"),
        link_trace = d.first("Links", "TraceId"),
        link_attr = d.first("Links", "Attributes"),
    );
    assert_eq!(
        one(b, &sql).await,
        vec![
            json!("abababababababab0000000000000004"),
            json!("0000000000001003"),
            json!("0000000000001000"),
            json!(""),
            json!("checkout"),
            json!(T0 + 3),
            json!(2_500_000),
            json!("Error"),
            json!("boom"),
            json!("conformance"),
            json!("1.2.3"),
            json!("acme"),
            json!("3"),
            json!("3"),
            json!("0.25"),
            json!("false"),
            json!(1),
            json!("cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"),
            json!(r#"{"link.kind":"follows"}"#),
        ]
    );
    let sql = format!(
        "SELECT {n}, {name}, {ts}, {attrs}, TraceState FROM otel_traces WHERE SpanId IN ('0000000000001002', '0000000000001001') ORDER BY SpanId",
        n = d.len("Events", "Name"),
        name = d.first("Events", "Name"),
        ts = d.ns(&d.first("Events", "Timestamp")),
        attrs = d.first("Events", "Attributes"),
    );
    let r = rows(b, &sql).await;
    assert_eq!(r[1], vec![json!(1), json!("cache.miss"), json!(T0 + 50), json!(r#"{"key":"cart:42"}"#), json!("")]);
    assert_eq!(r[0][0], json!(0));
    assert_eq!(r[0][4], json!("vendor=x"));
    assert_eq!(
        one(b, "SELECT SpanAttributes FROM otel_traces WHERE SpanId = '0000000000001000'").await,
        // Maps render as JSON objects with sorted keys on every store.
        vec![json!(r#"{"attempt":"0","http.route":"/cart","ok":"true","ratio":"0.25"}"#)]
    );
}

pub async fn logs_round_trip(b: &Backend) {
    b.store.write(&data::logs(2)).await.unwrap();
    let d = b.dialect;
    assert_eq!(one(b, "SELECT count(*) FROM otel_logs").await, vec![json!(6)]);
    let sql = format!(
        "SELECT {ts}, TraceId, SpanId, TraceFlags, SeverityText, SeverityNumber, ServiceName, Body, \
         LogAttributes['order.id'], ResourceAttributes['tenant.id'], ScopeName, ScopeVersion, EventName \
         FROM otel_logs ORDER BY SeverityNumber",
        ts = d.ns("Timestamp")
    );
    let r = rows(b, &sql).await;
    assert_eq!(
        r[0],
        vec![
            json!(T0),
            json!("11111111111111111111111111111111"),
            json!("2222222222222222"),
            json!(1),
            json!("SEV0"),
            json!(9),
            json!("checkout"),
            json!("order 0 placed"),
            json!("o-0"),
            json!("acme"),
            json!("conformance"),
            json!("1.2.3"),
            json!(""),
        ]
    );
    assert_eq!(r[1][12], json!("order.placed"));
    assert_eq!(r[1][1], json!(""));
    // No timestamp: stored at the observed time.
    assert_eq!(r[5][0], json!(T0 + 1_000));
}

pub async fn metrics_round_trip(b: &Backend) {
    b.store.write(&data::metrics(3)).await.unwrap();
    let d = b.dialect;
    let common = format!(
        "ServiceName, MetricName, MetricDescription, MetricUnit, Attributes['route'], {start}, {time}",
        start = d.ns("StartTimeUnix"),
        time = d.ns("TimeUnix")
    );
    let prefix = |name: &str, start: u64| {
        vec![json!("checkout"), json!(name), json!(format!("{name} description")), json!("ms"), json!("/cart"), json!(start), json!(T0)]
    };
    let with = |mut a: Vec<Value>, b: Vec<Value>| {
        a.extend(b);
        a
    };
    let exemplar = format!(
        "{n}, {v}, {sid}, {tid}, {ts}, {fa}",
        n = d.len("Exemplars", "Value"),
        v = d.first("Exemplars", "Value"),
        sid = d.first("Exemplars", "SpanId"),
        tid = d.first("Exemplars", "TraceId"),
        ts = d.ns(&d.first("Exemplars", "TimeUnix")),
        fa = d.first("Exemplars", "FilteredAttributes"),
    );
    let exemplar_values = vec![
        json!(1),
        json!(7),
        json!("3333333333333333"),
        json!("44444444444444444444444444444444"),
        json!(T0 - 5),
        json!(r#"{"user":"u1"}"#),
    ];
    let start = T0 - 60_000_000_000;
    assert_eq!(
        one(b, &format!("SELECT {common}, Value, Flags, {exemplar} FROM otel_metrics_gauge")).await,
        with(with(prefix("cpu.utilization", start), vec![json!(0.75), json!(0)]), exemplar_values.clone())
    );
    assert_eq!(
        one(b, &format!("SELECT {common}, Value, AggregationTemporality, IsMonotonic, {exemplar} FROM otel_metrics_sum")).await,
        with(with(prefix("requests", start), vec![json!(42), json!(2), json!(true)]), exemplar_values)
    );
    assert_eq!(
        one(
            b,
            &format!(
                "SELECT {common}, Count, Sum, BucketCounts, ExplicitBounds, Min, Max, AggregationTemporality FROM otel_metrics_histogram"
            )
        )
        .await,
        with(
            prefix("latency", start),
            vec![json!(6), json!(317.5), json!("[1,2,0,3]"), json!("[5,10,25.5]"), json!(1.5), json!(300), json!(1)]
        )
    );
    assert_eq!(
        one(
            b,
            &format!(
                "SELECT {common}, Count, Sum, Scale, ZeroCount, PositiveOffset, PositiveBucketCounts, NegativeOffset, \
             NegativeBucketCounts, Min, Max FROM otel_metrics_exp_histogram"
            )
        )
        .await,
        with(
            prefix("payload.size", 0),
            vec![json!(9), json!(1024), json!(3), json!(1), json!(-2), json!("[3,4]"), json!(1), json!("[1]"), json!(0), json!(512)]
        )
    );
    let q = format!(
        "SELECT {common}, Count, Sum, {n}, {q}, {v} FROM otel_metrics_summary",
        n = d.len("ValueAtQuantiles", "Quantile"),
        q = d.first("ValueAtQuantiles", "Quantile"),
        v = d.first("ValueAtQuantiles", "Value"),
    );
    assert_eq!(one(b, &q).await, with(prefix("rpc.duration", 0), vec![json!(100), json!(250), json!(2), json!(0.5), json!(2)]));
}

pub async fn a_batch_written_twice_is_stored_once(b: &Backend) {
    let before = one(b, "SELECT count(*) FROM otel_traces").await[0].as_u64().unwrap();
    let batch = data::traces(77);
    b.store.write(&batch).await.unwrap();
    b.store.write(&batch).await.unwrap();
    let after = one(b, "SELECT count(*) FROM otel_traces").await[0].as_u64().unwrap();
    assert_eq!(after - before, 10, "a retried batch (same id) must not duplicate rows");
}

pub async fn usage_and_ledger_round_trip(b: &Backend) {
    let meter = Meter::new(
        Tenancy::default(),
        Arc::new(Catalog::load(None).unwrap()),
        TelemetryRates { ingest_per_gib: Decimal::from(2), ..TelemetryRates::default() },
    );
    let received = T0 as i64;
    let hour = received - received.rem_euclid(HOUR_NS);
    let mut batch = data::llm_call(90);
    batch.usage = meter.measure(&batch, received);
    let bytes: u64 = batch.spans.iter().map(|s| u64::from(s.encoded_bytes)).sum();
    b.store.write(&batch).await.unwrap();
    b.store.write(&batch).await.unwrap(); // a retry stores nothing twice

    let r = one(b, "SELECT sum(Items), sum(Bytes), min(Tenant), min(Signal) FROM costplane_usage_telemetry").await;
    assert_eq!(r, vec![json!(1), json!(bytes), json!("acme"), json!("traces")]);
    let r = one(b, "SELECT count(*), sum(InputTokens), sum(OutputTokens), min(Model), min(Provider) FROM costplane_usage_llm").await;
    assert_eq!(r, vec![json!(1), json!(1000), json!(100), json!("gpt-4o"), json!("openai")]);
    let r = one(b, "SELECT count(*) FROM costplane_ledger").await;
    assert_eq!(r, vec![json!(0)], "a batch writes usage only; money is made when hours close");

    let ledger = Ledger::new(Arc::clone(&b.store));
    assert_eq!(ledger.usage_counts(0, None).await.unwrap(), vec![(hour, "llm", 1), (hour, "telemetry", 1)]);
    let usage = ledger.usage_of_hour(scope::LLM, hour, None).await.unwrap();
    assert_eq!(usage.llm, batch.usage.llm, "LLM usage reads back as written");
    let telemetry = ledger.usage_of_hour(scope::TELEMETRY, hour, None).await.unwrap();
    assert_eq!((telemetry.telemetry, telemetry.rows), (batch.usage.telemetry.clone(), 1));

    // Provisional, then closed: each a revision that replaces the last.
    let window = CostFilter { from_ns: hour, to_ns: hour + HOUR_NS, tenant: None, equals: Vec::new() };
    for status in [ChargeStatus::Provisional, ChargeStatus::Closed] {
        let mut replacement = LedgerReplacement::default();
        for (scope_name, rows) in [
            (scope::LLM, meter.llm_ledger(&usage.llm, &|_| true, status)),
            (scope::TELEMETRY, meter.telemetry_ledger(&batch.usage.telemetry, status)),
        ] {
            let revision = next_revision();
            replacement.hours.push(HourState {
                hour_ns: hour,
                scope: scope_name.into(),
                revision,
                status: status.as_str().into(),
                usage_rows: 1,
                price_version: "v".into(),
            });
            replacement.rows.extend(rows.into_iter().map(|r| LedgerRow { revision, ..r }));
        }
        ledger.replace_window(&replacement).await.unwrap();
        let sums = ledger.sum_costs(&window, &[Dimension::Source, Dimension::ChargeStatus], None).await.unwrap();
        // gpt-4o: 1,000 x 2.50/M + 100 x 10/M = 0.0025 + 0.001 = 0.0035, in two rows (input, output).
        let llm = &sums[0];
        assert_eq!(
            (llm.dims.clone(), llm.cost, llm.quantity, llm.rows),
            (vec!["llm".into(), status.as_str().into()], d("0.0035"), Some(d("1100")), 2)
        );
        // Telemetry ingest: bytes x 2 / 2^30, rounded to 12 places, half-even.
        let expected = round_money(Decimal::from(bytes) * Decimal::from(2) / Decimal::from(1_073_741_824u64));
        assert_eq!((sums[1].dims[0].as_str(), sums[1].cost, sums.len()), ("telemetry", expected, 2), "{sums:?}");
    }
    let states = ledger.hour_states(hour, hour + 1).await.unwrap();
    assert_eq!(states.iter().map(|s| (s.scope.as_str(), s.status.as_str())).collect::<Vec<_>>(), [("llm", CLOSED), ("telemetry", CLOSED)]);
    // Superseded revisions are gone from the table, not only hidden.
    let r = one(b, "SELECT count(*) FROM costplane_ledger").await;
    assert_eq!(r, vec![json!(3)]);
    let rows = ledger.rows(&window).await.unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.charge_status == ChargeStatus::Closed && r.revision > 0), "{rows:?}");

    // A tenant's filter and a case-insensitive provider filter.
    let openai = CostFilter { tenant: Some("acme".into()), equals: vec![(Dimension::Provider, "openai".into())], ..window.clone() };
    assert_eq!(ledger.sum_costs(&openai, &[], None).await.unwrap()[0].cost, d("0.0035"));
    let other = CostFilter { tenant: Some("globex".into()), ..window.clone() };
    assert!(ledger.sum_costs(&other, &[], None).await.unwrap().is_empty());

    // Exports are recorded per month, for one tenant's key or for every tenant.
    ledger.mark_exported(hour, Some("acme")).await.unwrap();
    let marks = ledger.exported(hour, hour + 1).await.unwrap();
    assert!(marks.covers(hour, "acme") && !marks.covers(hour, "globex") && !marks.all(hour), "{marks:?}");
    ledger.mark_exported(hour, None).await.unwrap();
    let marks = ledger.exported(hour, hour + 1).await.unwrap();
    assert!(marks.covers(hour, "acme") && marks.covers(hour, "globex") && marks.all(hour), "{marks:?}");
    assert!(!ledger.exported(hour + 1, hour + 2).await.unwrap().any(hour + 1));
    assert_eq!(ledger.sum_costs(&window, &[], None).await.unwrap()[0].rows, 3, "marking an export touches no row");
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// 500 small requests in one hour: usage rows as written, one ledger row
/// per key once the hour is closed.
pub async fn one_ledger_row_per_key_per_closed_hour(b: &Backend) {
    let meter = Meter::new(Tenancy::default(), Arc::new(Catalog::load(None).unwrap()), TelemetryRates::default());
    let received = T0 as i64 + 7 * HOUR_NS;
    let hour = received - received.rem_euclid(HOUR_NS);
    // 50 batches of 10 requests each, as the batcher merges them.
    for batch_no in 0..50u64 {
        let mut merged = costplane_telemetry::TelemetryBatch { id: 10_000 + batch_no, ..Default::default() };
        for i in 0..10u64 {
            let mut one = data::llm_call(0);
            one.spans[0].span_id = format!("{batch_no:04}{i:04}");
            one.spans[0].timestamp_ns = received;
            one.usage = meter.measure(&one, received + (batch_no * 10 + i) as i64);
            merged.append(one);
        }
        b.store.write(&merged).await.unwrap();
    }
    let ledger = Ledger::new(Arc::clone(&b.store));
    let counts: Vec<_> = ledger.usage_counts(hour, None).await.unwrap().into_iter().filter(|c| c.0 == hour).collect();
    // Telemetry usage is aggregated per batch before it is written; LLM usage stays one row per call.
    assert_eq!(counts, vec![(hour, "llm", 500), (hour, "telemetry", 50)]);
    let usage = ledger.usage_of_hour(scope::LLM, hour, None).await.unwrap();
    let telemetry = ledger.usage_of_hour(scope::TELEMETRY, hour, None).await.unwrap();
    let mut replacement = LedgerReplacement::default();
    for (scope_name, rows, n) in [
        (scope::LLM, meter.llm_ledger(&usage.llm, &|_| true, ChargeStatus::Closed), usage.rows),
        (scope::TELEMETRY, meter.telemetry_ledger(&telemetry.telemetry, ChargeStatus::Closed), telemetry.rows),
    ] {
        let revision = next_revision();
        replacement.hours.push(HourState {
            hour_ns: hour,
            scope: scope_name.into(),
            revision,
            status: CLOSED.into(),
            usage_rows: n,
            price_version: "v".into(),
        });
        replacement.rows.extend(rows.into_iter().map(|r| LedgerRow { revision, ..r }));
    }
    ledger.replace_window(&replacement).await.unwrap();
    let window = CostFilter { from_ns: hour, to_ns: hour + HOUR_NS, tenant: None, equals: Vec::new() };
    let rows = ledger.rows(&window).await.unwrap();
    // One row per key: gpt-4o input, gpt-4o output, traces ingest.
    let keys: Vec<(Source, UsageType)> = rows.iter().map(|r| (r.source, r.usage_type.clone())).collect();
    assert_eq!(keys, [(Source::Llm, UsageType::Input), (Source::Llm, UsageType::Output), (Source::Telemetry, UsageType::Traces)]);
    // 500 calls x (1,000 x 2.50/M + 100 x 10/M) = 500 x 0.0035 = 1.75.
    assert_eq!(rows.iter().map(|r| r.cost).sum::<Decimal>(), d("1.75"));
    assert_eq!(rows[2].consumed_quantity, Decimal::from(500 * u64::from(data::llm_call(0).spans[0].encoded_bytes)));
}

/// Each backend says how many bytes it keeps per signal (storage cost).
pub async fn stored_bytes_are_measured(b: &Backend) {
    b.store.write(&data::traces(5)).await.unwrap();
    let measured = b.store.stored_bytes().await.unwrap();
    let traces: Vec<_> = measured.iter().filter(|m| m.signal == "traces").collect();
    assert!(!traces.is_empty(), "{measured:?}");
    // Both stores keep day partitions (ClickHouse's parts, the embedded
    // store's Parquet directories), with the bytes of the traces just written.
    assert!(traces.iter().all(|m| m.day_ns.is_some_and(|d| d % 86_400_000_000_000 == 0)), "{measured:?}");
    assert!(traces.iter().map(|m| m.bytes).sum::<u64>() > 0, "{measured:?}");
}

/// Usage rows carry their write's number: a read of the rows written after
/// one number and a whole-hour read up to it split the rows exactly.
pub async fn usage_is_read_since_a_write_number(b: &Backend) {
    let meter = Meter::new(Tenancy::default(), Arc::new(Catalog::load(None).unwrap()), TelemetryRates::default());
    let received = T0 as i64 + 20 * HOUR_NS;
    let hour = received - received.rem_euclid(HOUR_NS);
    let seqs = b.store.write_seqs().expect("every store numbers its usage writes");
    let write = |id: u64, span: &'static str| {
        let mut batch = data::llm_call(0);
        batch.id = id;
        batch.spans[0].span_id = span.into();
        batch.spans[0].timestamp_ns = received;
        batch.usage = meter.measure(&batch, received);
        batch
    };
    let ledger = Ledger::new(Arc::clone(&b.store));
    b.store.write(&write(30_001, "00000000000000a1")).await.unwrap();
    let first = seqs.settled();
    b.store.write(&write(30_002, "00000000000000a2")).await.unwrap();
    b.store.write(&write(30_003, "00000000000000a3")).await.unwrap();
    let second = seqs.settled();
    assert!(second > first);

    let before = ledger.usage_of_hour(scope::LLM, hour, Some(first)).await.unwrap();
    assert_eq!(before.llm.iter().map(|r| r.span_id.as_str()).collect::<Vec<_>>(), ["00000000000000a1"]);
    let since = ledger.usage_since(first, second, hour).await.unwrap();
    let mut spans: Vec<&str> = since.llm.iter().map(|r| r.span_id.as_str()).collect();
    spans.sort_unstable();
    assert_eq!(spans, ["00000000000000a2", "00000000000000a3"]);
    // One telemetry usage row per batch (each one span).
    assert_eq!(since.telemetry.iter().map(|u| (u.hour_ns, u.items)).collect::<Vec<_>>(), [(hour, 1), (hour, 1)]);
    assert_eq!(since.llm[0].usage.input_tokens, 1000, "the rows read back whole");
    assert!(ledger.usage_since(second, second, hour).await.unwrap().llm.is_empty(), "nothing after the last write");
    // The two writes after the first, by number: a reader's slices.
    let writes = ledger.writes_since(first, second, hour).await.unwrap();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert!(writes[0].0 > first && writes[0].0 < writes[1].0 && writes[1].0 <= second, "{writes:?}");
    // Each write stored one LLM row and one telemetry row.
    assert_eq!((writes[0].1, writes[1].1), (2, 2), "{writes:?}");
    let one = ledger.usage_since(first, writes[0].0, hour).await.unwrap();
    assert_eq!(one.llm.len(), 1, "a slice of one write holds that write's call");
    assert_eq!(ledger.usage_count(scope::LLM, hour, None).await.unwrap(), 3);
    assert_eq!(ledger.usage_count(scope::LLM, hour, Some(first)).await.unwrap(), 1, "rows up to a write number");
    assert_eq!(ledger.usage_count(scope::LLM, hour + HOUR_NS, None).await.unwrap(), 0);
    let counts = ledger.usage_counts(hour, Some(first)).await.unwrap();
    assert_eq!(counts.into_iter().filter(|c| c.0 == hour).collect::<Vec<_>>(), [(hour, "llm", 1), (hour, "telemetry", 1)]);
}

/// Kubernetes samples are stored with their batch exactly once and read
/// back for a restarting meter: the newest hours only, in time order.
pub async fn kubernetes_samples_round_trip(b: &Backend) {
    let at = T0 as i64 + 30 * HOUR_NS;
    let hour = at - at.rem_euclid(HOUR_NS);
    let sample = |at: i64, payload: &str| KubernetesUsage {
        hour_ns: at - at.rem_euclid(HOUR_NS),
        written_ns: at,
        cluster: "c1 tenant=acme".into(),
        kind: "sample".into(),
        payload: payload.into(),
    };
    let mut batch = TelemetryBatch { id: 40_001, ..TelemetryBatch::default() };
    batch.usage.kubernetes_samples =
        vec![sample(hour + 5, r#"{"a":1}"#), sample(hour + 3 * HOUR_NS + 9, r#"{"c":3}"#), sample(hour + 3 * HOUR_NS + 7, r#"{"b":2}"#)];
    b.store.write(&batch).await.unwrap();
    b.store.write(&batch).await.unwrap();
    let ledger = Ledger::new(Arc::clone(&b.store));
    // The newest 3 hours: hour + 1h .. hour + 3h, written twice, kept once.
    let recent = ledger.recent_kubernetes_samples(3).await.unwrap();
    assert_eq!(recent.iter().map(|r| r.payload.as_str()).collect::<Vec<_>>(), [r#"{"b":2}"#, r#"{"c":3}"#]);
    assert_eq!((recent[0].hour_ns, recent[0].written_ns), (hour + 3 * HOUR_NS, hour + 3 * HOUR_NS + 7));
    assert_eq!(recent[0].cluster, "c1 tenant=acme");
    assert_eq!(ledger.recent_kubernetes_samples(4).await.unwrap().len(), 3);
    // The embedded store deletes old samples when told; ClickHouse's TTL does.
    let pruned = b.store.prune_kubernetes_samples(hour + HOUR_NS).await.unwrap();
    if b.store.backend() == "duckdb" {
        assert_eq!(pruned, 1);
        assert_eq!(ledger.recent_kubernetes_samples(10).await.unwrap().len(), 2);
    }
}

/// A bill row of `scope`'s hour `hour_ns` costing `cost`.
fn bill_row(hour_ns: i64, cost: &str, revision: u64) -> LedgerRow {
    let mut r = LedgerRow::builder(Source::Cloud, hour_ns, hour_ns + HOUR_NS)
        .cost(d(cost), "USD")
        .provider("AWS")
        .owner("acme", "unassigned", "checkout")
        .build();
    r.revision = revision;
    r
}

fn closed(hour_ns: i64, scope_name: &str, revision: u64, usage_rows: u64) -> HourState {
    HourState { hour_ns, scope: scope_name.into(), revision, status: CLOSED.into(), usage_rows, price_version: "focus:1.2".into() }
}

/// An import larger than memory is staged in chunks under revisions no
/// entry lists: invisible, spared by a replacement of overlapping hours
/// (the closer's, another scope's), visible at once on its switch, and
/// deletable whole when the import fails.
pub async fn staged_rows_stay_invisible_and_survive_other_replacements_until_their_switch(b: &Backend) {
    let ledger = Ledger::new(Arc::clone(&b.store));
    let hour = T0 as i64 + 3 * HOUR_NS;
    let all = CostFilter { from_ns: hour, to_ns: hour + 2 * HOUR_NS, tenant: None, equals: Vec::new() };
    let cloud = "cloud:aws:111";
    // The bill's first revision: 5.00 in the first hour, visible.
    let first = next_revision();
    ledger
        .replace_window(&LedgerReplacement { hours: vec![closed(hour, cloud, first, 1)], rows: vec![bill_row(hour, "5", first)] })
        .await
        .unwrap();
    // The re-delivered bill, staged in two chunks: 1.25 + 2.50 in the
    // first hour, 0.25 in the second.
    let mut staging = costplane_store::ledger::Staging::new();
    let (r1, r2) = (staging.revision(), staging.revision());
    b.store.stage_ledger_rows(&[bill_row(hour, "1.25", r1), bill_row(hour, "2.50", r1)], next_revision()).await.unwrap();
    b.store.stage_ledger_rows(&[bill_row(hour + HOUR_NS, "0.25", r2)], next_revision()).await.unwrap();
    let total = |rows: Vec<LedgerRow>| rows.iter().map(|r| r.cost).sum::<Decimal>();
    assert_eq!(total(ledger.rows(&all).await.unwrap()), d("5"), "staged rows are invisible before their switch");
    // Another scope's replacement of the same hours (the closer's) retires
    // superseded revisions in its window: not the staged ones.
    let llm = next_revision();
    let mut own = bill_row(hour, "0.5", llm);
    own.source = Source::Llm;
    own.usage_type = UsageType::Input;
    ledger
        .replace_window(&LedgerReplacement {
            hours: vec![closed(hour, scope::LLM, llm, 1), closed(hour + HOUR_NS, scope::LLM, next_revision(), 0)],
            rows: vec![own],
        })
        .await
        .unwrap();
    // 5 (bill) + 0.5 (llm) = 5.5
    assert_eq!(total(ledger.rows(&all).await.unwrap()), d("5.5"));
    // The switch lists the staged revisions, writing no row.
    ledger
        .replace_window(&LedgerReplacement { hours: vec![closed(hour, cloud, r1, 2), closed(hour + HOUR_NS, cloud, r2, 1)], rows: vec![] })
        .await
        .unwrap();
    drop(staging);
    // 1.25 + 2.50 + 0.25 (the new bill) + 0.5 (llm) = 4.5; the old 5 is retired.
    assert_eq!(total(ledger.rows(&all).await.unwrap()), d("4.5"));
    let booked = ledger.booked_sums(hour, hour + 2 * HOUR_NS, &[r1, r2]).await.unwrap();
    let mut sums: Vec<(u64, Decimal)> = booked.iter().map(|r| (r.revision, r.cost)).collect();
    sums.sort();
    // Per revision and labels: r1 = 1.25 + 2.50 = 3.75, r2 = 0.25.
    assert_eq!(sums, vec![(r1, d("3.75")), (r2, d("0.25"))]);
    assert_eq!((booked[0].tenant.as_str(), booked[0].service.as_str(), booked[0].provider_name.as_str()), ("acme", "checkout", "AWS"));
    // A failed import: staged, then discarded; nothing of it remains.
    let mut failed = costplane_store::ledger::Staging::new();
    let r3 = failed.revision();
    b.store.stage_ledger_rows(&[bill_row(hour, "100", r3)], next_revision()).await.unwrap();
    b.store.discard_ledger_revisions(hour, hour + HOUR_NS, &[r3]).await.unwrap();
    drop(failed);
    let left = rows(b, &format!("SELECT count(*) FROM costplane_ledger WHERE x_Revision = {r3}")).await;
    assert_eq!(left[0][0].to_string().trim_matches('"'), "0", "a discarded revision leaves no row");
    assert_eq!(total(ledger.rows(&all).await.unwrap()), d("4.5"));
}

/// Sums per repeating window (anomaly contributors compare a window with
/// the same window in past weeks): rows between the windows are not
/// counted, each window's sum starts at its own start.
pub async fn costs_sum_per_window_without_the_hours_between(b: &Backend) {
    let ledger = Ledger::new(Arc::clone(&b.store));
    let from = T0 as i64 - (T0 as i64).rem_euclid(HOUR_NS);
    let day = 24 * HOUR_NS;
    let revision = next_revision();
    let row = |hour: i64, service: &str, cost: &str| {
        let mut r = bill_row(from + hour * HOUR_NS, cost, revision);
        r.service = service.into();
        r
    };
    let rows = vec![
        row(0, "checkout", "1.10"),
        row(1, "search", "0.20"),
        row(5, "checkout", "9"), // between windows
        row(25, "checkout", "2.00"),
        row(26, "checkout", "7"), // the third hour of the second day: past the window
        row(48, "checkout", "0.30"),
        row(48, "search", "0.04"),
    ];
    let mut hours: Vec<i64> = rows.iter().map(|r| r.charge_period_start_ns).collect();
    hours.dedup();
    let hours = hours.into_iter().map(|h| closed(h, "cloud:aws:111", revision, 1)).collect();
    ledger.replace_window(&LedgerReplacement { hours, rows }).await.unwrap();
    // Windows of two hours every day, from `from` to the end of the third.
    let filter = CostFilter { from_ns: from, to_ns: from + 2 * day + 2 * HOUR_NS, tenant: None, equals: Vec::new() };
    let windows = costplane_telemetry::usage::Windows { len_ns: 2 * HOUR_NS, every_ns: day };
    let sums = ledger.sum_costs_in_windows(&filter, &[Dimension::Service], windows).await.unwrap();
    let got: Vec<(String, Vec<Decimal>)> = sums.into_iter().map(|s| (s.dims[0].clone(), s.costs)).collect();
    assert_eq!(
        got,
        vec![
            // Day one, hours 0-1: checkout 1.10 (the 9 at hour 5 is outside);
            // day two: 2.00 at hour 25 (the 7 at hour 26 is outside); day three: 0.30.
            ("checkout".to_owned(), vec![d("1.10"), d("2.00"), d("0.30")]),
            // 0.20 on day one, nothing on day two, 0.04 on day three.
            ("search".to_owned(), vec![d("0.20"), d("0"), d("0.04")]),
        ]
    );
    let overlapping = costplane_telemetry::usage::Windows { len_ns: 2 * day, every_ns: day };
    assert!(ledger.sum_costs_in_windows(&filter, &[], overlapping).await.is_err(), "windows longer than their period are refused");
    let hourly = costplane_telemetry::usage::Windows { len_ns: HOUR_NS, every_ns: HOUR_NS };
    let year = CostFilter { to_ns: from + 365 * day, ..filter };
    assert!(ledger.sum_costs_in_windows(&year, &[], hourly).await.is_err(), "8,760 windows (a column each) are refused");
}
