//! Fuzzing the OTLP decoder and converter with property tests.
//!
//! Random bytes, and valid protobuf and OTLP/JSON bodies mutated byte by
//! byte (flips, insertions, deletions, truncations, duplicated ranges), go
//! through `decode_request` for every signal. The properties: nothing
//! panics; an answer is either a conversion whose counts add up, or a
//! malformed-body error (HTTP 400 / gRPC INVALID_ARGUMENT, never a 5xx).
//!
//! CI runs `COSTPLANE_FUZZ_CASES` cases per property (default 2,000);
//! `COSTPLANE_FUZZ_CASES=1000000 cargo test --release -p
//! costplane-telemetry fuzz` runs a long campaign. Failing inputs proptest
//! finds are kept in `tests/fuzz-regressions.txt` (replayed first on every
//! run), and hand-written hostile inputs in `tests/fuzz-corpus/` are
//! replayed as well: together, the corpus kept in the repo.

use std::path::Path;

use costplane_telemetry::{decode_request, Encoding, Limits, Signal, TelemetryError};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1 as pm;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use prost::Message;

fn cases() -> u32 {
    std::env::var("COSTPLANE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000)
}

pub(crate) fn config() -> Config {
    Config {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/fuzz-regressions.txt"))),
        ..Config::default()
    }
}

/// The property every input must keep.
fn check(signal: Signal, encoding: Encoding, body: &[u8]) {
    let limits = Limits { max_attributes: 32, max_value_bytes: 256 };
    match decode_request(signal, encoding, body, &limits) {
        Ok(conv) => {
            assert_eq!(conv.batch.rows() as u64, conv.accepted, "rows and the accepted count differ");
            assert!(conv.reasons.len() as u64 <= conv.rejected);
        }
        Err(TelemetryError::MalformedProtobuf(m)) => assert_eq!(encoding, Encoding::Protobuf, "{m}"),
        Err(TelemetryError::MalformedJson(m)) => assert_eq!(encoding, Encoding::Json, "{m}"),
    }
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn attrs() -> Vec<KeyValue> {
    vec![
        kv("service.name", Value::StringValue("checkout".into())),
        kv("tenant.id", Value::StringValue("acme".into())),
        kv("n", Value::IntValue(-7)),
        kv("b", Value::BytesValue(vec![0, 255, 1])),
        kv(
            "nested",
            Value::KvlistValue(KeyValueList {
                values: vec![kv("list", Value::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(Value::DoubleValue(0.5)) }] }))],
            }),
        ),
    ]
}

/// Valid requests of every signal, the seeds mutations start from.
pub(crate) fn seeds() -> Vec<(Signal, Vec<u8>, Vec<u8>)> {
    let resource = Some(Resource { attributes: attrs(), ..Default::default() });
    let scope = Some(InstrumentationScope { name: "fuzz".into(), version: "1".into(), attributes: attrs(), ..Default::default() });
    let traces = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource.clone(),
            scope_spans: vec![ScopeSpans {
                scope: scope.clone(),
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    parent_span_id: vec![3; 8],
                    name: "chat gpt-4o".into(),
                    kind: 3,
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    end_time_unix_nano: 1_700_000_000_500_000_000,
                    attributes: [
                        attrs(),
                        vec![
                            kv("gen_ai.request.model", Value::StringValue("gpt-4o".into())),
                            kv("gen_ai.usage.input_tokens", Value::IntValue(10)),
                        ],
                    ]
                    .concat(),
                    events: vec![span::Event { name: "e".into(), attributes: attrs(), ..Default::default() }],
                    links: vec![span::Link { trace_id: vec![4; 16], span_id: vec![5; 8], ..Default::default() }],
                    status: Some(Status { message: "boom".into(), code: 2 }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource.clone(),
            scope_logs: vec![ScopeLogs {
                scope: scope.clone(),
                log_records: vec![LogRecord {
                    time_unix_nano: 1_700_000_000_000_000_000,
                    severity_number: 9,
                    severity_text: "INFO".into(),
                    body: Some(AnyValue { value: Some(Value::KvlistValue(KeyValueList { values: attrs() })) }),
                    attributes: attrs(),
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let point = pm::NumberDataPoint {
        attributes: attrs(),
        time_unix_nano: 1_700_000_000_000_000_000,
        value: Some(pm::number_data_point::Value::AsDouble(1.5)),
        ..Default::default()
    };
    let metrics = ExportMetricsServiceRequest {
        resource_metrics: vec![pm::ResourceMetrics {
            resource,
            scope_metrics: vec![pm::ScopeMetrics {
                scope,
                metrics: vec![
                    pm::Metric {
                        name: "g".into(),
                        unit: "1".into(),
                        data: Some(pm::metric::Data::Gauge(pm::Gauge { data_points: vec![point.clone()] })),
                        ..Default::default()
                    },
                    pm::Metric {
                        name: "h".into(),
                        data: Some(pm::metric::Data::Histogram(pm::Histogram {
                            data_points: vec![pm::HistogramDataPoint {
                                attributes: attrs(),
                                count: 3,
                                bucket_counts: vec![1, 2],
                                explicit_bounds: vec![1.0],
                                ..Default::default()
                            }],
                            aggregation_temporality: 2,
                        })),
                        ..Default::default()
                    },
                    pm::Metric {
                        name: "s".into(),
                        data: Some(pm::metric::Data::Sum(pm::Sum {
                            data_points: vec![point],
                            aggregation_temporality: 1,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    vec![
        (Signal::Traces, traces.encode_to_vec(), serde_json::to_vec(&traces).unwrap()),
        (Signal::Logs, logs.encode_to_vec(), serde_json::to_vec(&logs).unwrap()),
        (Signal::Metrics, metrics.encode_to_vec(), serde_json::to_vec(&metrics).unwrap()),
    ]
}

/// One byte-level edit.
#[derive(Debug, Clone)]
pub(crate) enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

pub(crate) fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(
        prop_oneof![
            (any::<usize>(), 1u8..=255).prop_map(|(i, b)| Edit::Flip(i, b)),
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
            any::<usize>().prop_map(Edit::Delete),
            any::<usize>().prop_map(Edit::Truncate),
            (any::<usize>(), 1usize..64).prop_map(|(i, n)| Edit::Duplicate(i, n)),
        ],
        1..8,
    )
}

pub(crate) fn mutate(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for e in edits {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match *e {
            Edit::Flip(i, x) if !b.is_empty() => {
                let i = at(i, b.len());
                b[i] ^= x;
            }
            Edit::Insert(i, x) => {
                let i = at(i, b.len() + 1);
                b.insert(i, x);
            }
            Edit::Delete(i) if !b.is_empty() => {
                let i = at(i, b.len());
                b.remove(i);
            }
            Edit::Truncate(i) => b.truncate(at(i, b.len() + 1)),
            Edit::Duplicate(i, n) if !b.is_empty() => {
                let i = at(i, b.len());
                let piece: Vec<u8> = b[i..(i + n).min(b.len())].to_vec();
                b.splice(i..i, piece);
            }
            _ => {}
        }
    }
    b
}

fn signal_of(i: usize) -> Signal {
    Signal::ALL[i % 3]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), s in 0usize..3) {
        check(signal_of(s), Encoding::Protobuf, &bytes);
        check(signal_of(s), Encoding::Json, &bytes);
    }

    #[test]
    fn mutated_protobuf_never_panics(s in 0usize..3, edits in edits()) {
        let seeds = seeds();
        let (signal, proto, _) = &seeds[s];
        check(*signal, Encoding::Protobuf, &mutate(proto, &edits));
    }

    #[test]
    fn mutated_json_never_panics(s in 0usize..3, edits in edits()) {
        let seeds = seeds();
        let (signal, _, json) = &seeds[s];
        check(*signal, Encoding::Json, &mutate(json, &edits));
    }
}

#[test]
fn the_seeds_are_valid_and_fully_accepted() {
    for (signal, proto, json) in seeds() {
        for (encoding, body) in [(Encoding::Protobuf, &proto), (Encoding::Json, &json)] {
            let conv = decode_request(signal, encoding, body, &Limits::default()).unwrap();
            assert!(conv.accepted > 0 && conv.rejected == 0, "{signal} {encoding:?}: {:?}", conv.reasons);
        }
    }
}

/// Every file in `tests/fuzz-corpus/` (`<signal>-<what>.<pb|json>`) is
/// replayed under the same property.
#[test]
fn the_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let signal = match name.split('-').next() {
            Some("traces") => Signal::Traces,
            Some("logs") => Signal::Logs,
            Some("metrics") => Signal::Metrics,
            _ => continue,
        };
        let encoding = if name.ends_with(".json") { Encoding::Json } else { Encoding::Protobuf };
        check(signal, encoding, &std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n >= 5, "the corpus has {n} files");
}
