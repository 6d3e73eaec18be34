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
            // Only a body that mentions an enum name pays for the detour
            // through a JSON value. (A failed typed decode cannot be the
            // signal: the metric data oneof is flattened, and serde turns
            // an error inside it into "no data".)
            if ENUM_PREFIXES.iter().any(|p| contains(body, p.as_bytes())) {
                let mut value: serde_json::Value =
                    serde_json::from_slice(body).map_err(|e| TelemetryError::MalformedJson(e.to_string()))?;
                replace_enum_names(&mut value);
                return serde_json::from_value(value).map_err(|e| TelemetryError::MalformedJson(e.to_string()));
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
