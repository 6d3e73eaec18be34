//! Decoding of OTLP export request bodies (protobuf or JSON) into rows, and
//! encoding of the matching export responses.
//!
//! This is the whole of the receive path that does not touch the network or
//! the store, which is why the benchmark measures it as the ceiling.

use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;

use crate::convert::{convert_logs_owned, convert_metrics, convert_traces_owned, Conversion, Limits};
use crate::error::TelemetryError;
use crate::model::Signal;

/// The two OTLP payload encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Decodes one export request body of `signal` and converts it to rows.
pub fn decode_request(signal: Signal, encoding: Encoding, body: &[u8], limits: &Limits) -> Result<Conversion, TelemetryError> {
    // The single-pass decoders take the protobuf bodies they fully accept;
    // the rest (and every rejection's reason) go through prost.
    if encoding == Encoding::Protobuf {
        if let Some(conversion) = crate::wire::decode_fast(signal, body, limits) {
            return Ok(conversion);
        }
    }
    match signal {
        Signal::Traces => {
            decode::<ExportTraceServiceRequest>(encoding, body).map(|r| convert_traces_owned(r, limits, wire_sizes(encoding, body)))
        }
        Signal::Logs => {
            decode::<ExportLogsServiceRequest>(encoding, body).map(|r| convert_logs_owned(r, limits, wire_sizes(encoding, body)))
        }
        Signal::Metrics => decode::<ExportMetricsServiceRequest>(encoding, body).map(|r| convert_metrics(&r, limits)),
    }
}

/// Each item's size as it arrived, for metering (protobuf only: a JSON
/// item is metered by its protobuf `encoded_len`).
fn wire_sizes(encoding: Encoding, body: &[u8]) -> Option<Vec<u32>> {
    match encoding {
        Encoding::Protobuf => crate::wire::item_sizes(body),
        Encoding::Json => None,
    }
}

fn decode<T>(encoding: Encoding, body: &[u8]) -> Result<T, TelemetryError>
where
    T: Message + Default + serde::de::DeserializeOwned,
{
    match encoding {
        Encoding::Protobuf => T::decode(body).map_err(|e| TelemetryError::MalformedProtobuf(e.to_string())),
        Encoding::Json => {
            if body.is_empty() {
                // An empty JSON body is no JSON value; say so rather than
                // quoting serde's "EOF while parsing a value".
                return Err(TelemetryError::MalformedJson("the body is empty; send at least {}".to_owned()));
            }
            // Only a body that mentions an enum name or a non-finite double
            // pays for the detour through a JSON value. (A failed typed
            // decode cannot be the signal: the metric data oneof is
            // flattened, and serde turns an error inside it into "no data".)
            let enums = ENUM_PREFIXES.iter().any(|p| contains(body, p.as_bytes()));
            let non_finite = crate::json::may_have_non_finite(body);
            if enums || non_finite {
                let mut value: serde_json::Value =
                    serde_json::from_slice(body).map_err(|e| TelemetryError::MalformedJson(e.to_string()))?;
                if enums {
                    replace_enum_names(&mut value);
                }
                let typed = if non_finite {
                    <T as serde::Deserialize>::deserialize(crate::json::Json::from_value(value))
                } else {
                    serde_json::from_value(value)
                };
                return typed.map_err(|e| TelemetryError::MalformedJson(e.to_string()));
            }
            serde_json::from_slice(body).map_err(|e| TelemetryError::MalformedJson(e.to_string()))
        }
    }
}

/// The OTLP/JSON enum fields, whose values proto3 JSON may give as names
/// (`"SPAN_KIND_CLIENT"`) as well as numbers; the Collector accepts both.
const ENUM_FIELDS: [&str; 4] = ["kind", "code", "severityNumber", "aggregationTemporality"];

/// The number of an OTLP enum value name (span kind, status code, severity
/// number, aggregation temporality).
fn enum_number(name: &str) -> Option<i64> {
    const SEVERITIES: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
    let n = match name {
        "SPAN_KIND_UNSPECIFIED" | "STATUS_CODE_UNSET" | "SEVERITY_NUMBER_UNSPECIFIED" | "AGGREGATION_TEMPORALITY_UNSPECIFIED" => 0,
        "SPAN_KIND_INTERNAL" | "STATUS_CODE_OK" | "AGGREGATION_TEMPORALITY_DELTA" => 1,
        "SPAN_KIND_SERVER" | "STATUS_CODE_ERROR" | "AGGREGATION_TEMPORALITY_CUMULATIVE" => 2,
        "SPAN_KIND_CLIENT" => 3,
        "SPAN_KIND_PRODUCER" => 4,
        "SPAN_KIND_CONSUMER" => 5,
        other => {
            // SEVERITY_NUMBER_<LEVEL>[2-4]: TRACE = 1..4, DEBUG = 5..8, ...
            let rest = other.strip_prefix("SEVERITY_NUMBER_")?;
            let level = SEVERITIES.iter().position(|l| rest.starts_with(l))?;
            let step = match &rest[SEVERITIES[level].len()..] {
                "" => 0,
                "2" => 1,
                "3" => 2,
                "4" => 3,
                _ => return None,
            };
            return Some(level as i64 * 4 + 1 + step);
        }
    };
    Some(n)
}

/// Replaces enum names by their numbers throughout `v`; true when any was.
fn replace_enum_names(v: &mut serde_json::Value) -> bool {
    let mut changed = false;
    match v {
        serde_json::Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if let serde_json::Value::String(name) = value {
                    if ENUM_FIELDS.contains(&key.as_str()) {
                        if let Some(n) = enum_number(name) {
                            *value = serde_json::Value::from(n);
                            changed = true;
                        }
                    }
                } else {
                    changed |= replace_enum_names(value);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                changed |= replace_enum_names(item);
            }
        }
        _ => {}
    }
    changed
}

/// How every OTLP enum value name starts, quote included.
const ENUM_PREFIXES: [&str; 4] = ["\"SPAN_KIND_", "\"STATUS_CODE_", "\"SEVERITY_NUMBER_", "\"AGGREGATION_TEMPORALITY_"];

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Encodes the export response for `signal`: empty on full success, with
/// `partial_success` when items were rejected.
pub fn encode_response(signal: Signal, encoding: Encoding, rejected: u64, message: Option<String>) -> Vec<u8> {
    let rejected_i64 = i64::try_from(rejected).unwrap_or(i64::MAX);
    let message = message.unwrap_or_default();
    let partial = rejected > 0 || !message.is_empty();
    if encoding == Encoding::Json {
        // proto3 JSON: int64 as a decimal string, camelCase names, defaults omitted.
        let field = match signal {
            Signal::Traces => "rejectedSpans",
            Signal::Logs => "rejectedLogRecords",
            Signal::Metrics => "rejectedDataPoints",
        };
        let body = if partial {
            serde_json::json!({ "partialSuccess": { field: rejected.to_string(), "errorMessage": message } })
        } else {
            serde_json::json!({})
        };
        return body.to_string().into_bytes();
    }
    match signal {
        Signal::Traces => ExportTraceServiceResponse {
            partial_success: partial.then_some(ExportTracePartialSuccess { rejected_spans: rejected_i64, error_message: message }),
        }
        .encode_to_vec(),
        Signal::Logs => ExportLogsServiceResponse {
            partial_success: partial.then_some(ExportLogsPartialSuccess { rejected_log_records: rejected_i64, error_message: message }),
        }
        .encode_to_vec(),
        Signal::Metrics => ExportMetricsServiceResponse {
            partial_success: partial.then_some(ExportMetricsPartialSuccess { rejected_data_points: rejected_i64, error_message: message }),
        }
        .encode_to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON_TRACES: &str = r#"{
      "resourceSpans": [{
        "resource": {"attributes": [
          {"key": "service.name", "value": {"stringValue": "checkout"}},
          {"key": "tenant.id", "value": {"stringValue": "acme"}}
        ]},
        "scopeSpans": [{
          "scope": {"name": "manual", "version": "1.0"},
          "spans": [{
            "traceId": "5B8EFFF798038103D269B633813FC60C",
            "spanId": "EEE19B7EC3C1B174",
            "name": "GET /cart",
            "kind": 2,
            "startTimeUnixNano": "1700000000123456789",
            "endTimeUnixNano": 1700000000223456789,
            "attributes": [
              {"key": "http.response.status_code", "value": {"intValue": "200"}},
              {"key": "retry", "value": {"intValue": 3}},
              {"key": "ok", "value": {"boolValue": true}}
            ],
            "status": {"code": 2, "message": "boom"}
          }, {
            "traceId": "abcd",
            "spanId": "EEE19B7EC3C1B175",
            "name": "bad id"
          }]
        }]
      }]
    }"#;

    #[test]
    fn json_follows_the_otlp_json_rules() {
        let conv = decode_request(Signal::Traces, Encoding::Json, JSON_TRACES.as_bytes(), &Limits::default()).unwrap();
        assert_eq!((conv.accepted, conv.rejected), (1, 1));
        let span = &conv.batch.spans[0];
        assert_eq!(span.trace_id, "5b8efff798038103d269b633813fc60c");
        assert_eq!(span.span_id, "eee19b7ec3c1b174");
        assert_eq!(span.timestamp_ns, 1_700_000_000_123_456_789);
        assert_eq!(span.duration_ns, 100_000_000);
        assert_eq!(span.span_kind, "Server");
        assert_eq!(span.status_code, "Error");
        assert_eq!(span.resource.service_name, "checkout");
        assert_eq!(span.span_attributes.iter().collect::<Vec<_>>(), [("http.response.status_code", "200"), ("retry", "3"), ("ok", "true")]);
        // "abcd" is hex but 2 bytes: that span alone is rejected.
        let msg = conv.partial_success_message(Signal::Traces).unwrap();
        assert_eq!(msg, "rejected 1 of 2 spans: span 1 ('bad id'): trace_id must be 16 bytes, got 2");
        // Text that is not hex at all is not OTLP JSON: the request fails.
        let bad = JSON_TRACES.replace("\"abcd\"", "\"xyz!\"");
        let err = decode_request(Signal::Traces, Encoding::Json, bad.as_bytes(), &Limits::default()).unwrap_err();
        assert!(err.to_string().starts_with("malformed OTLP JSON payload: "), "{err}");
    }

    #[test]
    fn json_enum_names_are_accepted_as_well_as_numbers() {
        let by_name =
            JSON_TRACES.replace(r#""kind": 2"#, r#""kind": "SPAN_KIND_SERVER""#).replace(r#""code": 2"#, r#""code": "STATUS_CODE_ERROR""#);
        assert_ne!(by_name, JSON_TRACES);
        let a = decode_request(Signal::Traces, Encoding::Json, JSON_TRACES.as_bytes(), &Limits::default()).unwrap();
        let b = decode_request(Signal::Traces, Encoding::Json, by_name.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(a.batch.spans[0].span_kind, "Server");
        assert_eq!(b.batch.spans[0].span_kind, "Server");
        assert_eq!(b.batch.spans[0].status_code, "Error");

        let client = JSON_TRACES.replace(r#""kind": 2"#, r#""kind": "SPAN_KIND_CLIENT""#);
        let c = decode_request(Signal::Traces, Encoding::Json, client.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(c.batch.spans[0].span_kind, "Client");

        let unknown = JSON_TRACES.replace(r#""kind": 2"#, r#""kind": "SPAN_KIND_SIDEWAYS""#);
        assert!(decode_request(Signal::Traces, Encoding::Json, unknown.as_bytes(), &Limits::default()).is_err());

        for (name, n) in [
            ("SEVERITY_NUMBER_TRACE", 1),
            ("SEVERITY_NUMBER_DEBUG4", 8),
            ("SEVERITY_NUMBER_INFO", 9),
            ("SEVERITY_NUMBER_WARN2", 14),
            ("SEVERITY_NUMBER_ERROR", 17),
            ("SEVERITY_NUMBER_FATAL4", 24),
            ("AGGREGATION_TEMPORALITY_DELTA", 1),
            ("AGGREGATION_TEMPORALITY_CUMULATIVE", 2),
            ("SPAN_KIND_CONSUMER", 5),
            ("STATUS_CODE_OK", 1),
        ] {
            assert_eq!(enum_number(name), Some(n), "{name}");
        }
        assert_eq!(enum_number("SEVERITY_NUMBER_INFO5"), None);
    }

    #[test]
    fn json_logs_and_metrics_take_enum_names() {
        let logs = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[
            {"timeUnixNano":"1700000000000000000","severityNumber":"SEVERITY_NUMBER_WARN","severityText":"WARN",
             "body":{"stringValue":"disk almost full"}}]}]}]}"#;
        let c = decode_request(Signal::Logs, Encoding::Json, logs.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(c.batch.logs.len(), 1);
        assert_eq!(c.batch.logs[0].severity_number, 13);
        let metrics = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"requests","sum":{
            "aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","isMonotonic":true,
            "dataPoints":[{"timeUnixNano":"1700000000000000000","asInt":"5"}]}}]}]}]}"#;
        let c = decode_request(Signal::Metrics, Encoding::Json, metrics.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(c.batch.sums.len(), 1);
        assert_eq!(c.batch.sums[0].aggregation_temporality, 2);
    }

    #[test]
    fn malformed_bodies_say_what_is_wrong() {
        let err = decode_request(Signal::Logs, Encoding::Json, b"{\"resourceLogs\": [", &Limits::default()).unwrap_err();
        assert!(err.to_string().starts_with("malformed OTLP JSON payload"), "{err}");
        let err = decode_request(Signal::Traces, Encoding::Protobuf, &[0x0a, 0xff, 0xff], &Limits::default()).unwrap_err();
        assert!(err.to_string().starts_with("malformed OTLP protobuf payload"), "{err}");
        let err = decode_request(Signal::Metrics, Encoding::Json, b"", &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("the body is empty"), "{err}");
    }

    #[test]
    fn empty_requests_are_successes() {
        let conv = decode_request(Signal::Traces, Encoding::Protobuf, &[], &Limits::default()).unwrap();
        assert_eq!((conv.accepted, conv.rejected), (0, 0));
        let conv = decode_request(Signal::Metrics, Encoding::Json, b"{}", &Limits::default()).unwrap();
        assert!(conv.batch.is_empty());
    }

    /// A JSON trace request of spans named by `(name, start, end)`.
    fn json_spans(spans: &[(&str, &str, &str)]) -> String {
        let spans: Vec<String> = spans
            .iter()
            .enumerate()
            .map(|(i, (name, start, end))| {
                format!(
                    r#"{{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b17{i}","name":"{name}",
                        "startTimeUnixNano":"{start}","endTimeUnixNano":"{end}"}}"#
                )
            })
            .collect();
        format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#, spans.join(","))
    }

    #[test]
    fn times_past_what_the_stores_hold_are_rejected_per_item() {
        // Year 2300, u64::MAX (a valid fixed64: it parses, then is refused)
        // and the last nanosecond the stores hold.
        let body = json_spans(&[
            ("ok", "1700000000000000000", "1700000000000000100"),
            ("2300", "10413792000000000000", "10413792000000000100"),
            ("max", "18446744073709551615", "18446744073709551615"),
            ("ends-never", "1700000000000000000", "18446744073709551615"),
            ("last", "4102444799000000000", "4102444799000000000"),
            ("past-last", "4102444799000000001", "4102444799000000001"),
        ]);
        let conv = decode_request(Signal::Traces, Encoding::Json, body.as_bytes(), &Limits::default()).unwrap();
        assert_eq!((conv.accepted, conv.rejected), (2, 4), "{:?}", conv.reasons);
        let names: Vec<&str> = conv.batch.spans.iter().map(|s| s.span_name.as_str()).collect();
        assert_eq!(names, ["ok", "last"]);
        assert_eq!(conv.batch.spans[1].timestamp_ns, 4_102_444_799_000_000_000);
        let msg = conv.partial_success_message(Signal::Traces).unwrap();
        assert!(msg.starts_with("rejected 4 of 6 spans: span 1 ('2300'): start_time_unix_nano 10413792000000000000 is outside the range the stores hold (1900-01-01T00:00:00Z..=2099-12-31T23:59:59Z)"), "{msg}");
        assert!(msg.contains("span 2 ('max'): start_time_unix_nano 18446744073709551615"), "{msg}");
        assert!(msg.contains("span 3 ('ends-never'): end_time_unix_nano 18446744073709551615"), "{msg}");

        // The same spans over protobuf: the fast path leaves them to the
        // general path, which answers the same.
        let req: ExportTraceServiceRequest = serde_json::from_str(&body).unwrap();
        let pb = req.encode_to_vec();
        assert!(crate::wire::decode_fast(Signal::Traces, &pb, &Limits::default()).is_none());
        let from_pb = decode_request(Signal::Traces, Encoding::Protobuf, &pb, &Limits::default()).unwrap();
        assert_eq!(from_pb.partial_success_message(Signal::Traces), Some(msg));
        assert_eq!(from_pb.batch.spans.len(), 2);

        // An event past the range takes its span with it.
        let mut with_event = req.clone();
        with_event.resource_spans[0].scope_spans[0].spans.truncate(1);
        with_event.resource_spans[0].scope_spans[0].spans[0]
            .events
            .push(opentelemetry_proto::tonic::trace::v1::span::Event { time_unix_nano: u64::MAX, ..Default::default() });
        let conv = decode_request(Signal::Traces, Encoding::Protobuf, &with_event.encode_to_vec(), &Limits::default()).unwrap();
        assert_eq!((conv.accepted, conv.rejected), (0, 1));
        assert!(conv.reasons[0].contains("event time_unix_nano 18446744073709551615"), "{:?}", conv.reasons);
    }

    #[test]
    fn a_log_is_held_to_the_time_it_is_stored_at() {
        let logs = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[
            {"timeUnixNano":"1700000000000000000","observedTimeUnixNano":"18446744073709551615","body":{"stringValue":"time set"}},
            {"timeUnixNano":"0","observedTimeUnixNano":"1700000000000000000","body":{"stringValue":"observed only"}},
            {"observedTimeUnixNano":"18446744073709551615","body":{"stringValue":"observed past 2262"}},
            {"timeUnixNano":"10413792000000000000","body":{"stringValue":"year 2300"}}]}]}]}"#;
        for encoding in [Encoding::Json, Encoding::Protobuf] {
            let body = match encoding {
                Encoding::Json => logs.as_bytes().to_vec(),
                Encoding::Protobuf => serde_json::from_str::<ExportLogsServiceRequest>(logs).unwrap().encode_to_vec(),
            };
            let conv = decode_request(Signal::Logs, encoding, &body, &Limits::default()).unwrap();
            assert_eq!((conv.accepted, conv.rejected), (2, 2), "{encoding:?}: {:?}", conv.reasons);
            assert_eq!(conv.batch.logs.iter().map(|l| l.timestamp_ns).collect::<Vec<_>>(), [1_700_000_000_000_000_000; 2]);
            assert!(
                conv.reasons[0]
                    .starts_with("log record 2: observed_time_unix_nano (the record has no time_unix_nano) 18446744073709551615"),
                "{:?}",
                conv.reasons
            );
            assert!(conv.reasons[1].starts_with("log record 3: time_unix_nano 10413792000000000000"), "{:?}", conv.reasons);
        }
    }

    #[test]
    fn metric_points_and_exemplars_past_the_range_are_rejected() {
        let metrics = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"g","gauge":{"dataPoints":[
            {"timeUnixNano":"1700000000000000000","asDouble":1},
            {"timeUnixNano":"18446744073709551615","asDouble":2},
            {"startTimeUnixNano":"10413792000000000000","timeUnixNano":"1700000000000000000","asDouble":3},
            {"timeUnixNano":"1700000000000000000","asDouble":4,"exemplars":[{"timeUnixNano":"18446744073709551615","asDouble":1}]}
        ]}}]}]}]}"#;
        let conv = decode_request(Signal::Metrics, Encoding::Json, metrics.as_bytes(), &Limits::default()).unwrap();
        assert_eq!((conv.accepted, conv.rejected), (1, 3), "{:?}", conv.reasons);
        assert_eq!(conv.batch.gauges[0].value, 1.0);
        assert!(conv.reasons[0].starts_with("metric 'g' point 1: time_unix_nano 18446744073709551615"), "{:?}", conv.reasons);
        assert!(conv.reasons[1].starts_with("metric 'g' point 2: start_time_unix_nano 10413792000000000000"), "{:?}", conv.reasons);
        assert!(conv.reasons[2].starts_with("metric 'g' point 3: exemplar time_unix_nano"), "{:?}", conv.reasons);
    }

    #[test]
    fn json_non_finite_doubles_are_read_as_doubles() {
        let spans = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
            "spanId":"eee19b7ec3c1b174","name":"nan","startTimeUnixNano":"1700000000000000000",
            "attributes":[{"key":"ratio","value":{"doubleValue":"NaN"}},{"key":"up","value":{"doubleValue":"Infinity"}},
                          {"key":"down","value":{"doubleValue":"-Infinity"}},{"key":"text","value":{"stringValue":"NaN"}}]}]}]}]}"#;
        let conv = decode_request(Signal::Traces, Encoding::Json, spans.as_bytes(), &Limits::default()).unwrap();
        assert_eq!((conv.accepted, conv.rejected), (1, 0), "{:?}", conv.reasons);
        let attrs: Vec<_> = conv.batch.spans[0].span_attributes.iter().collect();
        assert_eq!(attrs, [("ratio", "NaN"), ("up", "+Inf"), ("down", "-Inf"), ("text", "NaN")]);

        let metrics = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
            {"name":"g","gauge":{"dataPoints":[{"timeUnixNano":"1700000000000000000","asDouble":"NaN"}]}},
            {"name":"s","sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","dataPoints":[
                {"timeUnixNano":"1700000000000000000","asDouble":"-Infinity"}]}},
            {"name":"h","histogram":{"aggregationTemporality":2,"dataPoints":[{"timeUnixNano":"1700000000000000000",
                "count":"1","sum":"Infinity","min":"NaN","max":"Infinity","bucketCounts":["1"]}]}}]}]}]}"#;
        let conv = decode_request(Signal::Metrics, Encoding::Json, metrics.as_bytes(), &Limits::default()).unwrap();
        assert_eq!((conv.accepted, conv.rejected), (3, 0), "{:?}", conv.reasons);
        assert!(conv.batch.gauges[0].value.is_nan());
        assert_eq!(conv.batch.sums[0].value, f64::NEG_INFINITY);
        assert_eq!(conv.batch.sums[0].aggregation_temporality, 2);
        let h = &conv.batch.histograms[0];
        assert!(h.sum == f64::INFINITY && h.min.is_nan() && h.max == f64::INFINITY);

        // Other strings in a double field are still refused.
        let bad = spans.replace(r#"{"doubleValue":"NaN"}"#, r#"{"doubleValue":"nan"}"#);
        let err = decode_request(Signal::Traces, Encoding::Json, bad.as_bytes(), &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("invalid type: string \"nan\""), "{err}");
    }

    #[test]
    fn partial_success_responses_round_trip() {
        let bytes = encode_response(Signal::Logs, Encoding::Protobuf, 2, Some("rejected 2 of 5 log records: x".into()));
        let resp = ExportLogsServiceResponse::decode(&bytes[..]).unwrap();
        let partial = resp.partial_success.unwrap();
        assert_eq!(partial.rejected_log_records, 2);
        assert!(partial.error_message.contains("2 of 5"));
        assert!(encode_response(Signal::Traces, Encoding::Protobuf, 0, None).is_empty());
        let json = String::from_utf8(encode_response(Signal::Metrics, Encoding::Json, 1, Some("m".into()))).unwrap();
        assert_eq!(json, r#"{"partialSuccess":{"errorMessage":"m","rejectedDataPoints":"1"}}"#);
    }
}
