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

use crate::convert::{convert_logs, convert_metrics, convert_traces, Conversion, Limits};
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
    match signal {
        Signal::Traces => decode::<ExportTraceServiceRequest>(encoding, body).map(|r| convert_traces(&r, limits)),
        Signal::Logs => decode::<ExportLogsServiceRequest>(encoding, body).map(|r| convert_logs(&r, limits)),
        Signal::Metrics => decode::<ExportMetricsServiceRequest>(encoding, body).map(|r| convert_metrics(&r, limits)),
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
            serde_json::from_slice(body).map_err(|e| TelemetryError::MalformedJson(e.to_string()))
        }
    }
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
        assert_eq!(
            span.span_attributes,
            vec![
                ("http.response.status_code".to_owned(), "200".to_owned()),
                ("retry".to_owned(), "3".to_owned()),
                ("ok".to_owned(), "true".to_owned())
            ]
        );
        // "abcd" is hex but 2 bytes: that span alone is rejected.
        let msg = conv.partial_success_message(Signal::Traces).unwrap();
        assert_eq!(msg, "rejected 1 of 2 spans: span 1 ('bad id'): trace_id must be 16 bytes, got 2");
        // Text that is not hex at all is not OTLP JSON: the request fails.
        let bad = JSON_TRACES.replace("\"abcd\"", "\"xyz!\"");
        let err = decode_request(Signal::Traces, Encoding::Json, bad.as_bytes(), &Limits::default()).unwrap_err();
        assert!(err.to_string().starts_with("malformed OTLP JSON payload: "), "{err}");
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
