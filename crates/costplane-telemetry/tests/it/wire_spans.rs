//! The single-pass trace decoder (`wire::spans`) against the general path
//! (prost's decode, then `convert_traces_owned`).
//!
//! The properties: on generated requests within the limits the fast path
//! answers, and its conversion is the general path's; on generated requests
//! with broken ids or values over the limits, and on mutated bodies, it
//! answers only when the general path accepts the body and converts it to
//! the same rows.

use costplane_telemetry::convert::{convert_traces_owned, MAX_TIME_NS};
use costplane_telemetry::wire::{item_sizes, spans::decode_traces};
use costplane_telemetry::{Conversion, Limits, Signal, TelemetryBatch};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use proptest::prelude::*;
use prost::Message;

use crate::fuzz::{config, edits, mutate, seeds};

const LIMITS: Limits = Limits { max_attributes: 8, max_value_bytes: 24 };

/// The general path, as `decode_request` takes it for a body the fast path
/// passes on.
fn general(body: &[u8]) -> Option<Conversion> {
    let req = ExportTraceServiceRequest::decode(body).ok()?;
    Some(convert_traces_owned(req, &LIMITS, item_sizes(body)))
}

fn assert_same(fast: &Conversion, general: &Conversion) {
    // The memory estimate follows each path's allocations (their
    // capacities differ), not the content: compare it apart.
    let without_estimate = |c: &Conversion| TelemetryBatch { approx_bytes: 0, ..c.batch.clone() };
    assert_eq!(without_estimate(fast), without_estimate(general));
    assert_eq!(fast.batch.approx_bytes > 0, !fast.batch.spans.is_empty());
    assert_eq!(general.batch.approx_bytes > 0, !general.batch.spans.is_empty());
    assert_eq!((fast.accepted, fast.rejected), (general.accepted, general.rejected));
    assert!(fast.reasons.is_empty() && general.reasons.is_empty(), "{:?}", general.reasons);
}

fn value(small: bool) -> impl Strategy<Value = Option<Value>> {
    // Strings and bytes stay within LIMITS when `small`; otherwise some go over.
    let len = if small { 0..12usize } else { 0..40usize };
    let leaf = prop_oneof![
        // Up to 4 bytes per char: at most 24 bytes when small.
        prop::collection::vec(any::<char>(), len.clone())
            .prop_map(move |c| Value::StringValue(c.into_iter().take(if small { 6 } else { 40 }).collect())),
        "[a-z0-9 ._-]{0,24}".prop_map(move |s| Value::StringValue(if small { s } else { s.repeat(2) })),
        any::<bool>().prop_map(Value::BoolValue),
        any::<i64>().prop_map(Value::IntValue),
        any::<f64>().prop_map(Value::DoubleValue),
        prop::sample::select(vec![0.0, -0.0, 5.0, 1e21, 1e-7, f64::NAN, f64::INFINITY]).prop_map(Value::DoubleValue),
        prop::collection::vec(any::<u8>(), len).prop_map(Value::BytesValue),
    ];
    let nested = leaf.clone().prop_recursive(2, 6, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3)
                .prop_map(|vs| Value::ArrayValue(ArrayValue { values: vs.into_iter().map(|v| AnyValue { value: Some(v) }).collect() })),
            prop::collection::vec(("[a-c]", inner), 0..3).prop_map(|kvs| Value::KvlistValue(KeyValueList {
                values: kvs
                    .into_iter()
                    .map(|(key, v)| KeyValue { key, value: Some(AnyValue { value: Some(v) }), ..Default::default() })
                    .collect()
            })),
        ]
    });
    prop::option::weighted(0.9, nested)
}

fn attributes(small: bool) -> impl Strategy<Value = Vec<KeyValue>> {
    // Keys from a small set, so that repeats (last value wins) are common.
    // Up to the limit itself when small (a list may hold exactly that many).
    let max = if small { LIMITS.max_attributes + 1 } else { LIMITS.max_attributes + 3 };
    prop::collection::vec(
        (prop::sample::select(vec!["service.name", "a", "b", "http.method", "gen_ai.system"]), prop::option::weighted(0.95, value(small))),
        0..max,
    )
    .prop_map(|kvs| {
        kvs.into_iter()
            .map(|(key, v)| KeyValue { key: key.into(), value: v.map(|value| AnyValue { value }), ..Default::default() })
            .collect()
    })
}

fn id(width: usize, valid: bool) -> BoxedStrategy<Vec<u8>> {
    let good = prop::collection::vec(1u8..=255, width);
    if valid {
        good.boxed()
    } else {
        prop_oneof![4 => good, 1 => prop::collection::vec(any::<u8>(), 0..20), 1 => Just(vec![0; width])].boxed()
    }
}

fn text(small: bool) -> impl Strategy<Value = String> {
    if small {
        "[a-z /]{0,12}"
    } else {
        "[a-z /]{0,30}"
    }
}

/// A time the stores hold (up to the last one) when `valid`; otherwise
/// any `u64`, past the range half the time.
fn time(valid: bool) -> BoxedStrategy<u64> {
    if valid {
        prop_oneof![0..=MAX_TIME_NS, Just(MAX_TIME_NS)].boxed()
    } else {
        prop_oneof![any::<u64>(), Just(MAX_TIME_NS + 1), Just(u64::MAX)].boxed()
    }
}

fn span_strategy(valid: bool) -> impl Strategy<Value = Span> {
    let ids = (id(16, valid), id(8, valid), prop_oneof![Just(vec![]), id(8, valid)]);
    let times = (time(valid), prop_oneof![time(valid), (0u64..1 << 40).prop_map(|d| 1_700_000_000_000_000_000 + d)]);
    let event = (time(valid), text(valid), attributes(valid)).prop_map(|(time_unix_nano, name, attributes)| span::Event {
        time_unix_nano,
        name,
        attributes,
        ..Default::default()
    });
    let link = (id(16, valid), id(8, valid), text(valid), attributes(valid)).prop_map(|(trace_id, span_id, trace_state, attributes)| {
        span::Link { trace_id, span_id, trace_state, attributes, ..Default::default() }
    });
    let status = prop::option::of((text(valid), -1i32..4).prop_map(|(message, code)| Status { message, code }));
    (
        ids,
        times,
        (text(valid), text(valid), -2i32..8),
        attributes(valid),
        prop::collection::vec(event, 0..3),
        prop::collection::vec(link, 0..3),
        status,
    )
        .prop_map(
            |((trace_id, span_id, parent_span_id), (start, end), (name, trace_state, kind), attributes, events, links, status)| Span {
                trace_id,
                span_id,
                parent_span_id,
                trace_state,
                name,
                kind,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                events,
                links,
                status,
                flags: 1,
                dropped_attributes_count: 2,
                ..Default::default()
            },
        )
}

fn request(valid: bool) -> impl Strategy<Value = ExportTraceServiceRequest> {
    let scope =
        prop::option::of((text(valid), text(valid), attributes(valid)).prop_map(|(name, version, attributes)| InstrumentationScope {
            name,
            version,
            attributes,
            dropped_attributes_count: 7,
        }));
    let scope_spans = (scope, prop::collection::vec(span_strategy(valid), 0..4), text(valid))
        .prop_map(|(scope, spans, schema_url)| ScopeSpans { scope, spans, schema_url });
    let resource = prop::option::of(attributes(valid).prop_map(|attributes| Resource { attributes, ..Default::default() }));
    let resource_spans = (resource, prop::collection::vec(scope_spans, 0..3), text(valid))
        .prop_map(|(resource, scope_spans, schema_url)| ResourceSpans { resource, scope_spans, schema_url });
    prop::collection::vec(resource_spans, 0..3).prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn valid_requests_take_the_fast_path_with_the_same_rows(req in request(true)) {
        let body = req.encode_to_vec();
        let fast = decode_traces(&body, &LIMITS).expect("a request within every limit takes the fast path");
        let general = general(&body).expect("prost decodes what it encoded");
        assert_same(&fast, &general);
    }

    #[test]
    fn the_fast_path_answers_only_what_the_general_path_accepts(req in request(false)) {
        let body = req.encode_to_vec();
        let general = general(&body).expect("prost decodes what it encoded");
        match decode_traces(&body, &LIMITS) {
            Some(fast) => assert_same(&fast, &general),
            // The fast path checks every string and list it reads, so a
            // resource or scope over a limit sends it away also where no
            // span is rejected for it: a resource or scope without spans,
            // or a schema URL beside no scope.
            None => prop_assert!(
                general.rejected > 0 || has_empty_or_scopeless_parts(&req),
                "a fully accepted request left the fast path"
            ),
        }
    }

    #[test]
    fn mutated_bodies_never_diverge(edits in edits(), which in 0usize..2) {
        let seed = if which == 0 { seed_within_limits() } else { seeds().into_iter().find(|(s, _, _)| *s == Signal::Traces).expect("a trace seed").1 };
        let body = mutate(&seed, &edits);
        if let Some(fast) = decode_traces(&body, &LIMITS) {
            let general = general(&body).expect("the fast path accepted a body prost refuses");
            assert_same(&fast, &general);
        }
    }
}

fn has_empty_or_scopeless_parts(req: &ExportTraceServiceRequest) -> bool {
    req.resource_spans.iter().any(|rs| {
        rs.scope_spans.iter().all(|ss| ss.spans.is_empty()) || rs.scope_spans.iter().any(|ss| ss.spans.is_empty() || ss.scope.is_none())
    })
}

/// A request within `LIMITS` with every kind of value, event, link and
/// status: the fast path takes it, so mutations of it reach both paths.
fn seed_within_limits() -> Vec<u8> {
    let v = |value: Value| Some(AnyValue { value: Some(value) });
    let kv = |key: &str, value| KeyValue { key: key.into(), value, ..Default::default() };
    let attrs = vec![
        kv("s", v(Value::StringValue("GET /cart".into()))),
        kv("i", v(Value::IntValue(-7))),
        kv("d", v(Value::DoubleValue(0.25))),
        kv("b", v(Value::BoolValue(true))),
        kv("y", v(Value::BytesValue(vec![0, 1, 254]))),
        kv("a", v(Value::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(Value::IntValue(1)) }] }))),
        kv("n", None),
        kv("s", v(Value::StringValue("again".into()))),
    ];
    let span = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        parent_span_id: vec![3; 8],
        name: "checkout".into(),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_250_000_000,
        attributes: attrs.clone(),
        events: vec![span::Event {
            time_unix_nano: 1_700_000_000_100_000_000,
            name: "retry".into(),
            attributes: attrs[..3].to_vec(),
            ..Default::default()
        }],
        links: vec![span::Link {
            trace_id: vec![4; 16],
            span_id: vec![5; 8],
            trace_state: "k=v".into(),
            attributes: attrs[3..5].to_vec(),
            ..Default::default()
        }],
        status: Some(Status { message: "timeout".into(), code: 2 }),
        ..Default::default()
    };
    let body = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", v(Value::StringValue("cart".into()))), attrs[1].clone()],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "lib".into(),
                    version: "1".into(),
                    attributes: attrs[2..4].to_vec(),
                    dropped_attributes_count: 0,
                }),
                spans: vec![span.clone(), Span { span_id: vec![6; 8], ..span }],
                schema_url: "https://opentelemetry.io/schemas/1.26.0".chars().take(24).collect(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec();
    assert!(decode_traces(&body, &LIMITS).is_some(), "the seed must take the fast path");
    body
}

#[test]
fn non_canonical_fields_are_read_as_prost_reads_them_or_left_to_it() {
    let ids = [field(1, 2, &[1; 16]), field(2, 2, &[2; 8])].concat();
    let request = |span: &[u8]| field(1, 2, &field(2, 2, &field(2, 2, span)));
    // A key given twice, the first not UTF-8: prost refuses the body.
    let kv = [field(1, 2, b"\xff"), field(1, 2, b"k"), field(2, 2, &[])].concat();
    let body = request(&[ids.clone(), field(9, 2, &kv)].concat());
    assert!(decode_traces(&body, &LIMITS).is_none());
    assert!(general(&body).is_none());
    // A name given twice: the last wins on both paths.
    let body = request(&[ids.clone(), field(5, 2, b"first"), field(5, 2, b"second")].concat());
    let fast = decode_traces(&body, &LIMITS).expect("fast path");
    assert_eq!(fast.batch.spans[0].span_name, "second");
    assert_same(&fast, &general(&body).unwrap());
    // A key's string-table index (ignored by both) and an unknown varint field.
    let kv = [field(1, 2, b"k"), field(3, 0, &[5]), field(2, 2, &field(1, 2, b"v"))].concat();
    let body = request(&[ids.clone(), field(9, 2, &kv), field(99, 0, &[1])].concat());
    let fast = decode_traces(&body, &LIMITS).expect("fast path");
    assert_eq!(fast.batch.spans[0].span_attributes.get("k"), Some("v"));
    assert_same(&fast, &general(&body).unwrap());
    // An unknown group (wire type 3): prost skips it; the fast path leaves it to prost.
    let body = request(&[ids, vec![0x9b, 0x06, 0x9c, 0x06]].concat());
    assert!(decode_traces(&body, &LIMITS).is_none());
    assert!(general(&body).is_some());
}

/// A field: key varint, then the payload as given.
fn field(number: u32, wire_type: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_varint(u64::from(number << 3 | wire_type), &mut out);
    if wire_type == 2 {
        prost::encoding::encode_varint(payload.len() as u64, &mut out);
    }
    out.extend_from_slice(payload);
    out
}

fn one_span() -> Span {
    Span { trace_id: vec![1; 16], span_id: vec![2; 8], name: "GET /".into(), ..Default::default() }
}

#[test]
fn fields_out_of_order_and_unknown_fields_are_read_as_prost_reads_them() {
    let resource = Resource {
        attributes: vec![KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue { value: Some(Value::StringValue("api".into())) }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let scope_spans = ScopeSpans { spans: vec![one_span()], ..Default::default() }.encode_to_vec();
    // scope_spans (2) before resource (1), and an unknown field (9) between.
    let mut rs = field(2, 2, &scope_spans);
    rs.extend(field(9, 0, &[5]));
    rs.extend(field(1, 2, &resource.encode_to_vec()));
    let body = field(1, 2, &rs);
    let fast = decode_traces(&body, &LIMITS).expect("fast path");
    assert_eq!(fast.batch.spans.len(), 1);
    assert_eq!(fast.batch.spans[0].resource.service_name, "api");
    assert_same(&fast, &general(&body).unwrap());
}

#[test]
fn shapes_prost_merges_or_refuses_go_to_the_general_path() {
    let resource = Resource { attributes: vec![KeyValue { key: "a".into(), ..Default::default() }], ..Default::default() };
    let scope_spans = ScopeSpans { spans: vec![one_span()], ..Default::default() }.encode_to_vec();
    // The resource twice: prost merges the two attribute lists.
    let mut rs = field(1, 2, &resource.encode_to_vec());
    rs.extend(field(1, 2, &resource.encode_to_vec()));
    rs.extend(field(2, 2, &scope_spans));
    let body = field(1, 2, &rs);
    assert!(decode_traces(&body, &LIMITS).is_none());
    assert_eq!(general(&body).unwrap().batch.spans[0].resource.attributes.len(), 1);
    // A known field with the wrong wire type: prost refuses the body.
    let body = field(1, 2, &field(3, 0, &[1]));
    assert!(decode_traces(&body, &LIMITS).is_none());
    assert!(general(&body).is_none());
    // A key ending in the first byte of "é" and a value starting with its
    // second: valid UTF-8 together, invalid apart, so prost refuses the body.
    let kv = [field(1, 2, b"k\xc3"), field(2, 2, &field(1, 2, b"\xa9v"))].concat();
    let span = [field(1, 2, &[1; 16]), field(2, 2, &[2; 8]), field(9, 2, &kv)].concat();
    let body = field(1, 2, &field(2, 2, &field(2, 2, &span)));
    assert!(decode_traces(&body, &LIMITS).is_none());
    assert!(general(&body).is_none());
    let kv = [field(1, 2, "kü".as_bytes()), field(2, 2, &field(1, 2, "é".as_bytes()))].concat();
    let body = field(1, 2, &field(2, 2, &field(2, 2, &[field(1, 2, &[1; 16]), field(2, 2, &[2; 8]), field(9, 2, &kv)].concat())));
    assert_eq!(decode_traces(&body, &LIMITS).expect("valid").batch.spans[0].span_attributes.get("kü"), Some("é"));
    // A span over a limit: the general path writes the partial-success reason.
    let long = Span { name: "x".repeat(LIMITS.max_value_bytes + 1), ..one_span() };
    let body = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans: vec![long, one_span()], ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    assert!(decode_traces(&body, &LIMITS).is_none());
    let general = general(&body).unwrap();
    assert_eq!((general.accepted, general.rejected), (1, 1));
}
