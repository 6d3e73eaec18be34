//! Fixed telemetry for the conformance suite, built as OTLP requests and
//! converted by the real receive path.

use costplane_telemetry::convert::{convert_logs, convert_metrics, convert_traces};
use costplane_telemetry::{Limits, TelemetryBatch};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1 as pm;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status};

/// 2030-01-01T00:00:00.123456789Z: in the future, so ClickHouse TTLs (7 days for
/// traces) never drop the test rows.
pub const T0: u64 = 1_893_456_000_123_456_789;

pub fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

pub fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

fn resource() -> Resource {
    Resource {
        attributes: vec![kv("service.name", s("checkout")), kv("tenant.id", s("acme")), kv("replicas", Value::IntValue(3))],
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope { name: "conformance".into(), version: "1.2.3".into(), ..Default::default() }
}

pub fn traces(id: u64) -> TelemetryBatch {
    let mut spans = Vec::new();
    for i in 0..10u64 {
        spans.push(Span {
            trace_id: [[0xab; 8], (i + 1).to_be_bytes()].concat(),
            span_id: (0x1000 + i).to_be_bytes().to_vec(),
            parent_span_id: if i == 0 { vec![] } else { 0x1000u64.to_be_bytes().to_vec() },
            trace_state: if i == 1 { "vendor=x".into() } else { String::new() },
            name: if i % 2 == 0 { "GET /cart".into() } else { "SELECT".into() },
            kind: if i % 2 == 0 { span::SpanKind::Server as i32 } else { span::SpanKind::Client as i32 },
            start_time_unix_nano: T0 + i,
            end_time_unix_nano: T0 + i + 2_500_000,
            attributes: vec![
                kv("http.route", s("/cart")),
                kv("attempt", Value::IntValue(i as i64)),
                kv("ratio", Value::DoubleValue(0.25)),
                kv("ok", Value::BoolValue(i != 3)),
            ],
            events: if i == 2 {
                vec![span::Event {
                    time_unix_nano: T0 + 50,
                    name: "cache.miss".into(),
                    attributes: vec![kv("key", s("cart:42"))],
                    ..Default::default()
                }]
            } else {
                vec![]
            },
            links: if i == 3 {
                vec![span::Link {
                    trace_id: vec![0xcd; 16],
                    span_id: vec![0xef; 8],
                    trace_state: "a=b".into(),
                    attributes: vec![kv("link.kind", s("follows"))],
                    ..Default::default()
                }]
            } else {
                vec![]
            },
            status: Some(Status {
                code: if i == 3 { status::StatusCode::Error as i32 } else { status::StatusCode::Ok as i32 },
                message: if i == 3 { "boom".into() } else { String::new() },
            }),
            ..Default::default()
        });
    }
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource()),
            scope_spans: vec![ScopeSpans { scope: Some(scope()), spans, ..Default::default() }],
            ..Default::default()
        }],
    };
    let mut batch = convert_traces(&req, &Limits::default()).batch;
    batch.id = id;
    batch
}

pub fn logs(id: u64) -> TelemetryBatch {
    let records = (0..6u64)
        .map(|i| LogRecord {
            // Record 5 has no timestamp: it is stored at its observed time.
            time_unix_nano: if i == 5 { 0 } else { T0 + i },
            observed_time_unix_nano: T0 + 1_000,
            severity_number: 9 + i as i32,
            severity_text: format!("SEV{i}"),
            body: Some(AnyValue { value: Some(s(&format!("order {i} placed"))) }),
            attributes: vec![kv("order.id", s(&format!("o-{i}")))],
            trace_id: if i == 0 { vec![0x11; 16] } else { vec![] },
            span_id: if i == 0 { vec![0x22; 8] } else { vec![] },
            flags: 1,
            event_name: if i == 1 { "order.placed".into() } else { String::new() },
            ..Default::default()
        })
        .collect();
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource()),
            scope_logs: vec![ScopeLogs { scope: Some(scope()), log_records: records, ..Default::default() }],
            ..Default::default()
        }],
    };
    let mut batch = convert_logs(&req, &Limits::default()).batch;
    batch.id = id;
    batch
}

pub fn metrics(id: u64) -> TelemetryBatch {
    let attrs = vec![kv("route", s("/cart"))];
    let number = |v: f64| pm::NumberDataPoint {
        attributes: attrs.clone(),
        start_time_unix_nano: T0 - 60_000_000_000,
        time_unix_nano: T0,
        value: Some(pm::number_data_point::Value::AsDouble(v)),
        exemplars: vec![pm::Exemplar {
            time_unix_nano: T0 - 5,
            value: Some(pm::exemplar::Value::AsInt(7)),
            span_id: vec![0x33; 8],
            trace_id: vec![0x44; 16],
            filtered_attributes: vec![kv("user", s("u1"))],
        }],
        ..Default::default()
    };
    let metric = |name: &str, data: pm::metric::Data| pm::Metric {
        name: name.into(),
        description: format!("{name} description"),
        unit: "ms".into(),
        data: Some(data),
        ..Default::default()
    };
    let metrics = vec![
        metric("cpu.utilization", pm::metric::Data::Gauge(pm::Gauge { data_points: vec![number(0.75)] })),
        metric(
            "requests",
            pm::metric::Data::Sum(pm::Sum { data_points: vec![number(42.0)], aggregation_temporality: 2, is_monotonic: true }),
        ),
        metric(
            "latency",
            pm::metric::Data::Histogram(pm::Histogram {
                data_points: vec![pm::HistogramDataPoint {
                    attributes: attrs.clone(),
                    start_time_unix_nano: T0 - 60_000_000_000,
                    time_unix_nano: T0,
                    count: 6,
                    sum: Some(317.5),
                    bucket_counts: vec![1, 2, 0, 3],
                    explicit_bounds: vec![5.0, 10.0, 25.5],
                    min: Some(1.5),
                    max: Some(300.0),
                    ..Default::default()
                }],
                aggregation_temporality: 1,
            }),
        ),
        metric(
            "payload.size",
            pm::metric::Data::ExponentialHistogram(pm::ExponentialHistogram {
                data_points: vec![pm::ExponentialHistogramDataPoint {
                    attributes: attrs.clone(),
                    time_unix_nano: T0,
                    count: 9,
                    sum: Some(1024.0),
                    scale: 3,
                    zero_count: 1,
                    positive: Some(pm::exponential_histogram_data_point::Buckets { offset: -2, bucket_counts: vec![3, 4] }),
                    negative: Some(pm::exponential_histogram_data_point::Buckets { offset: 1, bucket_counts: vec![1] }),
                    min: Some(0.0),
                    max: Some(512.0),
                    ..Default::default()
                }],
                aggregation_temporality: 2,
            }),
        ),
        metric(
            "rpc.duration",
            pm::metric::Data::Summary(pm::Summary {
                data_points: vec![pm::SummaryDataPoint {
                    attributes: attrs.clone(),
                    time_unix_nano: T0,
                    count: 100,
                    sum: 250.0,
                    quantile_values: vec![
                        pm::summary_data_point::ValueAtQuantile { quantile: 0.5, value: 2.0 },
                        pm::summary_data_point::ValueAtQuantile { quantile: 0.99, value: 9.5 },
                    ],
                    ..Default::default()
                }],
            }),
        ),
    ];
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![pm::ResourceMetrics {
            resource: Some(resource()),
            scope_metrics: vec![pm::ScopeMetrics { scope: Some(scope()), metrics, ..Default::default() }],
            ..Default::default()
        }],
    };
    let mut batch = convert_metrics(&req, &Limits::default()).batch;
    batch.id = id;
    batch
}

/// One LLM call: gpt-4o, 1,000 input and 100 output tokens, tenant acme.
pub fn llm_call(id: u64) -> TelemetryBatch {
    let span = Span {
        trace_id: vec![0x77; 16],
        span_id: vec![0x78; 8],
        name: "chat gpt-4o".into(),
        start_time_unix_nano: T0,
        end_time_unix_nano: T0 + 1_000,
        attributes: vec![
            kv("gen_ai.provider.name", s("openai")),
            kv("gen_ai.request.model", s("gpt-4o")),
            kv("gen_ai.usage.input_tokens", Value::IntValue(1000)),
            kv("gen_ai.usage.output_tokens", Value::IntValue(100)),
        ],
        ..Default::default()
    };
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource()),
            scope_spans: vec![ScopeSpans { scope: Some(scope()), spans: vec![span], ..Default::default() }],
            ..Default::default()
        }],
    };
    let mut batch = convert_traces(&req, &Limits::default()).batch;
    batch.id = id;
    batch
}

/// Nanoseconds per day.
pub const DAY: u64 = 86_400_000_000_000;

/// `per_day` gauge points on each of `days` consecutive days from T0, listed
/// point by point across the days (so a day's points are not adjacent).
pub fn gauges_over_days(id: u64, days: u64, per_day: u64) -> TelemetryBatch {
    let data_points = (0..per_day)
        .flat_map(|p| {
            (0..days).map(move |d| pm::NumberDataPoint {
                attributes: vec![kv("point", Value::IntValue(p as i64))],
                time_unix_nano: T0 + d * DAY + p,
                value: Some(pm::number_data_point::Value::AsDouble(d as f64)),
                ..Default::default()
            })
        })
        .collect();
    let metric =
        pm::Metric { name: "backfill".into(), data: Some(pm::metric::Data::Gauge(pm::Gauge { data_points })), ..Default::default() };
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![pm::ResourceMetrics {
            resource: Some(resource()),
            scope_metrics: vec![pm::ScopeMetrics { scope: Some(scope()), metrics: vec![metric], ..Default::default() }],
            ..Default::default()
        }],
    };
    let mut batch = convert_metrics(&req, &Limits::default()).batch;
    batch.id = id;
    batch
}
