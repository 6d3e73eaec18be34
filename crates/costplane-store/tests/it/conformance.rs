//! The scenarios every store must pass with identical answers. Expected
//! values are written out from the data in `data.rs`, not read back from a
//! store.

use std::str::FromStr;
use std::sync::Arc;

use costplane_cost::{Catalog, Meter, TelemetryRates, Tenancy};
use costplane_store::{Param, Params};
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
    let meter = Meter {
        tenancy: Tenancy::default(),
        catalog: Arc::new(Catalog::load(None).unwrap()),
        rates: TelemetryRates { ingest_per_gib: Decimal::from(2), ..TelemetryRates::default() },
    };
    let mut batch = data::llm_call(90);
    batch.usage = meter.measure(&batch);
    let bytes: u64 = batch.spans.iter().map(|s| u64::from(s.encoded_bytes)).sum();
    b.store.write(&batch).await.unwrap();
    let d = b.store.dialect();
    let dec = |v: &Value| Decimal::from_str(v.as_str().unwrap_or(&v.to_string())).unwrap();

    let r = one(b, "SELECT sum(Items), sum(Bytes), min(Tenant), min(Signal) FROM costplane_usage_telemetry").await;
    assert_eq!(r, vec![json!(1), json!(bytes), json!("acme"), json!("traces")]);
    let r = one(b, "SELECT count(*), sum(InputTokens), sum(OutputTokens), min(Model), min(Provider) FROM costplane_usage_llm").await;
    assert_eq!(r, vec![json!(1), json!(1000), json!(100), json!("gpt-4o"), json!("openai")]);

    // gpt-4o: 1,000 x 2.50/M + 100 x 10/M = 0.0025 + 0.001 = 0.0035, in two rows.
    let mut p = Params::new(d);
    let source = p.add(Param::Str("llm".into()));
    let r = b
        .store
        .query_with(
            &format!(
                "SELECT count(*), sum(BilledCost), sum(ConsumedQuantity), min(x_Tenant) FROM costplane_ledger WHERE x_Source = {source}"
            ),
            &p.values,
        )
        .await
        .unwrap()
        .rows
        .remove(0);
    assert_eq!(
        (r[0].clone(), dec(&r[1]), dec(&r[2]), r[3].clone()),
        (json!(2), Decimal::from_str("0.0035").unwrap(), Decimal::from(1100), json!("acme"))
    );
    // Telemetry ingest: bytes x 2 / 2^30, rounded to 12 places.
    let r = one(b, "SELECT sum(BilledCost) FROM costplane_ledger WHERE x_Source = 'telemetry'").await;
    let expected = (Decimal::from(bytes) * Decimal::from(2) / Decimal::from(1_073_741_824u64)).round_dp(12);
    assert_eq!(dec(&r[0]), expected);

    let hour = (T0 as i64).div_euclid(3_600_000_000_000) * 3_600_000_000_000;
    b.store.delete_ledger("llm", hour, hour + 3_600_000_000_000).await.unwrap();
    let r = one(b, "SELECT count(*) FROM costplane_ledger WHERE x_Source = 'llm'").await;
    assert_eq!(r, vec![json!(0)]);
    let r = one(b, "SELECT count(*) FROM costplane_ledger WHERE x_Source = 'telemetry'").await;
    assert_eq!(r, vec![json!(1)], "deleting one source leaves the other");
}
