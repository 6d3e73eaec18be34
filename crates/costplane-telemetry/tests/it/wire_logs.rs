//! The single-pass log decoder (`wire::logs`) against the general path
//! (prost's decode, then `convert_logs_owned`), with the properties of
//! `wire_spans.rs`: requests within the limits take the fast path with the
//! general path's rows; broken or mutated ones take it only when the
//! general path accepts them with the same rows.

use costplane_telemetry::convert::{convert_logs_owned, MAX_TIME_NS};
use costplane_telemetry::wire::{item_sizes, logs::decode_logs};
use costplane_telemetry::{Conversion, Limits, TelemetryBatch};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use proptest::prelude::*;
use prost::Message;

use crate::fuzz::{config, edits, mutate};

const LIMITS: Limits = Limits { max_attributes: 8, max_value_bytes: 24 };

fn general(body: &[u8]) -> Option<Conversion> {
    let req = ExportLogsServiceRequest::decode(body).ok()?;
    Some(convert_logs_owned(req, &LIMITS, item_sizes(body)))
}

fn assert_same(fast: &Conversion, general: &Conversion) {
    // The memory estimate follows each path's allocations: compare it apart.
    let without_estimate = |c: &Conversion| TelemetryBatch { approx_bytes: 0, ..c.batch.clone() };
    assert_eq!(without_estimate(fast), without_estimate(general));
    assert_eq!((fast.accepted, fast.rejected), (general.accepted, general.rejected));
    assert!(fast.reasons.is_empty() && general.reasons.is_empty(), "{:?}", general.reasons);
}

fn value(small: bool) -> impl Strategy<Value = Option<AnyValue>> {
    let text = if small { "[a-z0-9 ._-]{0,24}" } else { "[a-z0-9 ._-]{0,40}" };
    let leaf = prop_oneof![
        text.prop_map(Value::StringValue),
        any::<bool>().prop_map(Value::BoolValue),
        any::<i64>().prop_map(Value::IntValue),
        prop::sample::select(vec![0.5, -0.0, 1e21, f64::NAN]).prop_map(Value::DoubleValue),
        prop::collection::vec(any::<u8>(), 0..if small { 12 } else { 30 }).prop_map(Value::BytesValue),
        prop::collection::vec(any::<i64>(), 0..3).prop_map(|v| Value::ArrayValue(ArrayValue {
            values: v.into_iter().map(|i| AnyValue { value: Some(Value::IntValue(i % 1000)) }).collect()
        })),
    ];
    prop::option::weighted(0.9, leaf.prop_map(|v| AnyValue { value: Some(v) }))
}

fn attributes(small: bool) -> impl Strategy<Value = Vec<KeyValue>> {
    let max = if small { LIMITS.max_attributes + 1 } else { LIMITS.max_attributes + 3 };
    prop::collection::vec((prop::sample::select(vec!["service.name", "a", "b", "log.file.name"]), value(small)), 0..max)
        .prop_map(|kvs| kvs.into_iter().map(|(key, value)| KeyValue { key: key.into(), value, ..Default::default() }).collect())
}

fn record(valid: bool) -> impl Strategy<Value = LogRecord> {
    let id = |width: usize| {
        if valid {
            prop_oneof![Just(vec![]), prop::collection::vec(1u8..=255, width)].boxed()
        } else {
            prop::collection::vec(any::<u8>(), 0..20).boxed()
        }
    };
    // Times the stores hold when valid; any u64 (past 2262 half the time) otherwise.
    let time = if valid { (0..=MAX_TIME_NS).boxed() } else { any::<u64>().boxed() };
    let severity = if valid { (0i32..=24).boxed() } else { (-3i32..300).boxed() };
    (
        (prop_oneof![Just(0u64), time.clone()], time, severity, "[A-Z]{0,8}", any::<u32>()),
        (value(valid), attributes(valid), id(16), id(8), "[a-z.]{0,12}"),
    )
        .prop_map(|((time, observed, severity_number, severity_text, flags), (body, attributes, trace_id, span_id, event_name))| {
            LogRecord {
                time_unix_nano: time,
                observed_time_unix_nano: observed,
                severity_number,
                severity_text,
                body,
                attributes,
                dropped_attributes_count: 1,
                flags,
                trace_id,
                span_id,
                event_name,
            }
        })
}

fn request(valid: bool) -> impl Strategy<Value = ExportLogsServiceRequest> {
    let scope = prop::option::of(("[a-z]{0,8}", attributes(valid)).prop_map(|(name, attributes)| InstrumentationScope {
        name,
        version: "1".into(),
        attributes,
        dropped_attributes_count: 0,
    }));
    let scope_logs = (scope, prop::collection::vec(record(valid), 1..4)).prop_map(|(scope, log_records)| ScopeLogs {
        scope,
        log_records,
        schema_url: String::new(),
    });
    let resource = prop::option::of(attributes(valid).prop_map(|attributes| Resource { attributes, ..Default::default() }));
    let resource_logs = (resource, prop::collection::vec(scope_logs, 1..3)).prop_map(|(resource, scope_logs)| ResourceLogs {
        resource,
        scope_logs,
        schema_url: String::new(),
    });
    prop::collection::vec(resource_logs, 0..3).prop_map(|resource_logs| ExportLogsServiceRequest { resource_logs })
}

fn seed() -> Vec<u8> {
    let kv = |key: &str, value: Value| KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() };
    let body = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource { attributes: vec![kv("service.name", Value::StringValue("cart".into()))], ..Default::default() }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope { name: "log".into(), ..Default::default() }),
                log_records: vec![LogRecord {
                    time_unix_nano: 1_700_000_000_000_000_000,
                    severity_number: 9,
                    severity_text: "INFO".into(),
                    body: Some(AnyValue { value: Some(Value::StringValue("order placed".into())) }),
                    attributes: vec![kv("a", Value::IntValue(3)), kv("b", Value::DoubleValue(1.5)), kv("a", Value::BoolValue(false))],
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    flags: 1,
                    event_name: "order".into(),
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec();
    assert!(decode_logs(&body, &LIMITS).is_some(), "the seed must take the fast path");
    body
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn valid_log_requests_take_the_fast_path_with_the_same_rows(req in request(true)) {
        let body = req.encode_to_vec();
        let fast = decode_logs(&body, &LIMITS).expect("a request within every limit takes the fast path");
        assert_same(&fast, &general(&body).expect("prost decodes what it encoded"));
    }

    #[test]
    fn the_log_fast_path_answers_only_what_the_general_path_accepts(req in request(false)) {
        let body = req.encode_to_vec();
        let general = general(&body).expect("prost decodes what it encoded");
        match decode_logs(&body, &LIMITS) {
            Some(fast) => assert_same(&fast, &general),
            None => prop_assert!(general.rejected > 0, "a fully accepted request left the fast path"),
        }
    }

    #[test]
    fn mutated_log_bodies_never_diverge(edits in edits()) {
        let body = mutate(&seed(), &edits);
        if let Some(fast) = decode_logs(&body, &LIMITS) {
            assert_same(&fast, &general(&body).expect("the fast path accepted a body prost refuses"));
        }
    }
}
