//! Bad input gets the documented status and a message saying what is wrong,
//! and the server keeps serving (and storing) afterwards.

use std::io::Write;

use costplane_server::otlp::grpc::RawCodec;
use costplane_server::otlp::http::RpcStatus;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use crate::support::{wait_until, ServerProcess};

fn request(names: &[&str], attr_value: &str) -> ExportTraceServiceRequest {
    let spans = names
        .iter()
        .enumerate()
        .map(|(i, n)| Span {
            trace_id: vec![7; 16],
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            name: (*n).to_owned(),
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_000_000_100,
            attributes: vec![KeyValue {
                key: "note".into(),
                value: Some(AnyValue { value: Some(any_value::Value::StringValue(attr_value.to_owned())) }),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::StringValue("bad-input".into())) }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

struct Client {
    http: reqwest::blocking::Client,
    base: String,
}

impl Client {
    fn post(&self, path: &str, content_type: &str, encoding: Option<&str>, body: Vec<u8>) -> reqwest::blocking::Response {
        let mut req = self.http.post(format!("{}{path}", self.base)).header("content-type", content_type).body(body);
        if let Some(e) = encoding {
            req = req.header("content-encoding", e);
        }
        req.send().expect("request is answered")
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

fn proto_status(resp: reqwest::blocking::Response, expected_http: u16) -> RpcStatus {
    assert_eq!(resp.status().as_u16(), expected_http);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    RpcStatus::decode(resp.bytes().expect("body")).expect("a google.rpc.Status body")
}

#[test]
fn bad_http_input_gets_clear_final_errors_and_the_server_keeps_serving() {
    let mut server = ServerProcess::start(&["--max-body-mib", "1"]);
    let c = Client { http: reqwest::blocking::Client::new(), base: format!("http://{}", server.otlp_http) };
    let pb = "application/x-protobuf";

    // Malformed protobuf.
    let s = proto_status(c.post("/v1/traces", pb, None, vec![0x0a, 0xff, 0xff, 0x01]), 400);
    assert_eq!(s.code, 3, "INVALID_ARGUMENT");
    assert!(s.message.starts_with("malformed OTLP protobuf payload"), "{}", s.message);

    // Malformed JSON, answered in JSON.
    let resp = c.post("/v1/logs", "application/json", None, b"{\"resourceLogs\": [{]".to_vec());
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: serde_json::Value = resp.json().expect("JSON status");
    assert!(body["message"].as_str().unwrap().starts_with("malformed OTLP JSON payload"), "{body}");

    // Wrong content type.
    let resp = c.post("/v1/metrics", "text/plain", None, b"hello".to_vec());
    assert_eq!(resp.status().as_u16(), 415);
    assert!(resp.text().unwrap().contains("send application/x-protobuf or application/json"));

    // gzip that is not gzip.
    let s = proto_status(c.post("/v1/traces", pb, Some("gzip"), b"definitely not gzip".to_vec()), 400);
    assert!(s.message.contains("not valid gzip"), "{}", s.message);

    // Unsupported compression.
    let resp = c.post("/v1/traces", pb, Some("br"), vec![1, 2, 3]);
    assert_eq!(resp.status().as_u16(), 415);

    // Oversized: plain, and a small gzip body that inflates past the limit.
    let big = request(&["big"], &"x".repeat(60_000));
    let mut body = Vec::new();
    for _ in 0..20 {
        body.extend(big.encode_to_vec()); // concatenated messages merge: still valid protobuf
    }
    assert!(body.len() > 1024 * 1024);
    let s = proto_status(c.post("/v1/traces", pb, None, body.clone()), 413);
    assert!(s.message.contains("larger than the limit of 1048576 bytes"), "{}", s.message);
    let s = proto_status(c.post("/v1/traces", pb, Some("gzip"), gzip(&body)), 413);
    assert!(s.message.contains("after decompression"), "{}", s.message);

    // Invalid UTF-8 in an attribute value: protobuf strings must be UTF-8.
    let mut bytes = request(&["utf8"], "MARKER").encode_to_vec();
    let at = bytes.windows(6).position(|w| w == b"MARKER").expect("marker in encoding");
    bytes[at..at + 4].copy_from_slice(&[0xff, 0xfe, 0xfd, 0xfc]);
    let s = proto_status(c.post("/v1/traces", pb, None, bytes), 400);
    assert!(s.message.contains("UTF-8"), "{}", s.message);

    // Empty batches are successes that store nothing.
    let resp = c.post("/v1/traces", pb, None, Vec::new());
    assert_eq!(resp.status().as_u16(), 200);
    let resp = c.post("/v1/traces", "application/json", None, b"{}".to_vec());
    assert_eq!(resp.status().as_u16(), 200);
    let resp = c.post("/v1/logs", "application/json", None, br#"{"resourceLogs": []}"#.to_vec());
    assert_eq!(resp.status().as_u16(), 200);

    // A batch with one invalid span keeps the others: partial success.
    let mut partial = request(&["good-1", "bad", "good-2"], "v");
    partial.resource_spans[0].scope_spans[0].spans[1].trace_id = vec![1, 2, 3];
    let resp = c.post("/v1/traces", pb, None, partial.encode_to_vec());
    assert_eq!(resp.status().as_u16(), 200);
    let answer = ExportTraceServiceResponse::decode(resp.bytes().unwrap()).unwrap();
    let ps = answer.partial_success.expect("partial_success is set");
    assert_eq!(ps.rejected_spans, 1);
    assert!(ps.error_message.contains("trace_id must be 16 bytes, got 3"), "{}", ps.error_message);

    // The same rules over JSON, answered in JSON.
    let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
        {"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"json-good"},
        {"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"","name":"json-no-span-id"}]}]}]}"#;
    let resp = c.post("/v1/traces", "application/json; charset=utf-8", None, json.as_bytes().to_vec());
    assert_eq!(resp.status().as_u16(), 200);
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(body["partialSuccess"]["rejectedSpans"], serde_json::json!("1"), "{body}");

    // Still serving: a valid gzip request is stored.
    let resp = c.post("/v1/traces", pb, Some("gzip"), gzip(&request(&["after"], "ok").encode_to_vec()));
    assert_eq!(resp.status().as_u16(), 200);

    assert!(server.terminate().success());
    let names = server.sql("SELECT SpanName FROM otel_traces ORDER BY SpanName");
    let names: Vec<&str> = names.iter().map(|r| r["SpanName"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["after", "good-1", "good-2", "json-good"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_grpc_input_is_invalid_argument() {
    let mut server = ServerProcess::start(&[]);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc)).unwrap().connect().await.expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export");

    grpc.ready().await.unwrap();
    let err = grpc.unary(tonic::Request::new(vec![0x0a, 0xff, 0xff, 0x01]), path.clone(), RawCodec).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().starts_with("malformed OTLP protobuf payload"), "{}", err.message());

    // Partial success over gRPC.
    let mut partial = request(&["g-good", "g-bad"], "v");
    partial.resource_spans[0].scope_spans[0].spans[1].span_id = vec![];
    grpc.ready().await.unwrap();
    let ok = grpc.unary(tonic::Request::new(partial.encode_to_vec()), path.clone(), RawCodec).await.expect("OK");
    // RawCodec hands back the bytes the server sent.
    let answer = ExportTraceServiceResponse::decode(ok.into_inner()).unwrap();
    let ps = answer.partial_success.unwrap();
    assert_eq!(ps.rejected_spans, 1);
    assert!(ps.error_message.contains("span_id is missing"), "{}", ps.error_message);

    // An unknown method is UNIMPLEMENTED, not a crash.
    grpc.ready().await.unwrap();
    let other = tonic::codegen::http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Nope");
    let err = grpc.unary(tonic::Request::new(vec![]), other, RawCodec).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);

    assert!(server.terminate().success());
    assert_eq!(server.count("otel_traces"), 1);
}

#[test]
fn a_foreign_otel_logs_table_stops_startup_with_the_fix() {
    // otel_logs made by another tool, without SeverityText.
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = duckdb::Connection::open(dir.path().join("costplane.duckdb")).unwrap();
        conn.execute_batch("CREATE TABLE otel_logs (\"Timestamp\" TIMESTAMP_NS, \"ServiceName\" VARCHAR, \"Body\" VARCHAR)").unwrap();
    }
    let out = std::process::Command::new(crate::support::BIN)
        .args(["serve", "--otlp-grpc-addr", "127.0.0.1:0", "--otlp-http-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "a store error: {stderr}");
    assert!(stderr.contains("otel_logs") && stderr.contains("SeverityText"), "names the table and the column: {stderr}");
}

/// 2300-01-01T00:00:00Z in nanoseconds: past what either store holds.
const YEAR_2300_NS: u64 = 10_413_792_000_000_000_000;

/// An OTLP/JSON trace request of spans `(name, startTimeUnixNano)`, each a
/// millisecond long where the start allows it.
fn json_spans(spans: &[(&str, u64)]) -> Vec<u8> {
    let spans: Vec<serde_json::Value> = spans
        .iter()
        .enumerate()
        .map(|(i, (name, start))| {
            serde_json::json!({
                "traceId": "0102030405060708090a0b0c0d0e0f10",
                "spanId": format!("{:016x}", i + 1),
                "name": name,
                "startTimeUnixNano": start.to_string(),
                "endTimeUnixNano": start.saturating_add(1_000_000).to_string(),
                "attributes": [{"key": "ratio", "value": {"doubleValue": "NaN"}}]
            })
        })
        .collect();
    serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "range"}}]},
        "scopeSpans": [{"spans": spans}]
    }]})
    .to_string()
    .into_bytes()
}

/// A gauge of one point at `time` in OTLP/JSON, its value written as the
/// protobuf JSON mapping writes a NaN.
fn json_nan_gauge(name: &str, time: u64) -> Vec<u8> {
    serde_json::json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": name, "gauge": {"dataPoints": [{"timeUnixNano": time.to_string(), "asDouble": "NaN"}]}}
    ]}]}]})
    .to_string()
    .into_bytes()
}

/// The same gauge in protobuf.
fn proto_gauge(name: &str, time: u64, value: f64) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: time,
                            value: Some(number_data_point::Value::AsDouble(value)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// The partial success of an OTLP/JSON answer: (rejected, message).
fn json_partial(resp: reqwest::blocking::Response, field: &str) -> (String, String) {
    assert_eq!(resp.status().as_u16(), 200, "partial success is a 200");
    let body: serde_json::Value = resp.json().expect("a JSON answer");
    let ps = &body["partialSuccess"];
    (ps[field].as_str().unwrap_or_default().to_owned(), ps["errorMessage"].as_str().unwrap_or_default().to_owned())
}

/// Span names and gauge rows as `costplane sql` reads them.
fn stored(server: &ServerProcess) -> (Vec<String>, Vec<String>) {
    let spans = server.sql("SELECT SpanName FROM otel_traces ORDER BY SpanName");
    let spans = spans.iter().map(|r| r["SpanName"].as_str().unwrap().to_owned()).collect();
    let gauges = server.sql("SELECT MetricName, isnan(\"Value\") AS nan FROM otel_metrics_gauge ORDER BY MetricName");
    let gauges = gauges.iter().map(|r| format!("{} nan={}", r["MetricName"].as_str().unwrap(), r["nan"])).collect();
    (spans, gauges)
}

#[test]
fn times_past_2262_are_refused_per_item_and_nan_is_stored_and_strays_break_no_read() {
    let mut server = ServerProcess::start(&[]);
    const NOW: u64 = 1_700_000_000_000_000_000;

    // OTLP/JSON: a span in 2300 and one at u64::MAX (a valid fixed64) are
    // refused one by one; the normal span beside them is stored.
    let body = json_spans(&[("json-normal", NOW), ("json-2300", YEAR_2300_NS), ("json-max", u64::MAX)]);
    let (rejected, message) = json_partial(server.export("/v1/traces", "application/json", body), "rejectedSpans");
    assert_eq!(rejected, "2", "{message}");
    assert!(message.contains("span 1 ('json-2300'): start_time_unix_nano 10413792000000000000 is outside the range the stores hold (1900-01-01T00:00:00Z..=2099-12-31T23:59:59Z)"), "{message}");
    assert!(message.contains("span 2 ('json-max'): start_time_unix_nano 18446744073709551615"), "{message}");

    // The same over protobuf.
    let mut pb = request(&["pb-normal", "pb-2300"], "v");
    pb.resource_spans[0].scope_spans[0].spans[1].start_time_unix_nano = YEAR_2300_NS;
    let resp = server.export("/v1/traces", "application/x-protobuf", pb.encode_to_vec());
    assert_eq!(resp.status().as_u16(), 200);
    let ps = ExportTraceServiceResponse::decode(resp.bytes().unwrap()).unwrap().partial_success.expect("partial_success is set");
    assert_eq!(ps.rejected_spans, 1);
    assert!(ps.error_message.contains("span 1 ('pb-2300'): start_time_unix_nano 10413792000000000000 is outside"), "{}", ps.error_message);

    // A gauge point in 2300 is refused too; NaN gauges over JSON ("NaN")
    // and protobuf are stored.
    let (rejected, message) =
        json_partial(server.export("/v1/metrics", "application/json", json_nan_gauge("json-2300", YEAR_2300_NS)), "rejectedDataPoints");
    assert_eq!(rejected, "1", "{message}");
    assert!(message.contains("time_unix_nano 10413792000000000000 is outside"), "{message}");
    for (path, content_type, body) in [
        ("/v1/metrics", "application/json", json_nan_gauge("json-nan", NOW)),
        ("/v1/metrics", "application/x-protobuf", proto_gauge("pb-nan", NOW, f64::NAN)),
    ] {
        let resp = server.export(path, content_type, body);
        assert_eq!(resp.status().as_u16(), 200);
        let text = resp.text().unwrap();
        assert!(!text.contains("partialSuccess") && !text.contains("rejected"), "fully accepted: {text}");
    }

    let want_spans = ["json-normal", "pb-normal"];
    let want_gauges = ["json-nan nan=true", "pb-nan nan=true"];
    wait_until(|| stored(&server).0.len() == 2 && stored(&server).1.len() == 2, "the accepted spans and gauges");
    assert_eq!(stored(&server), (want_spans.map(String::from).to_vec(), want_gauges.map(String::from).to_vec()));
    assert!(server.terminate().success(), "{}", server.log_text());

    // Stray entries in the segment tree: a day past what a timestamp
    // reaches (linked to a generation holding a file), a legacy plain
    // directory, a name that is no day, and a directory under segments/
    // that is no generation. None of them breaks a read, with the server
    // stopped (`costplane sql` on the directory) or running.
    let root = server.data_dir.path().to_path_buf();
    let tables = root.join("tables/otel_traces");
    let segments = root.join("segments/otel_traces");
    let real = std::fs::read_dir(&segments)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("date=2023-11-14."))
        .expect("the generation of 2023-11-14");
    let far = segments.join("date=2262-04-12.g-0-0");
    std::fs::create_dir(&far).unwrap();
    for f in std::fs::read_dir(&real).unwrap().flatten() {
        std::fs::copy(f.path(), far.join(f.file_name())).unwrap();
    }
    std::os::unix::fs::symlink("../../segments/otel_traces/date=2262-04-12.g-0-0", tables.join("date=2262-04-12")).unwrap();
    std::fs::create_dir(tables.join("date=2024-01-01")).unwrap();
    std::fs::create_dir(tables.join("legacy")).unwrap();
    std::fs::create_dir(segments.join("date=2262-04-13")).unwrap();
    assert_eq!(stored(&server).0, want_spans);

    let dir = std::mem::replace(&mut server.data_dir, tempfile::tempdir().unwrap());
    let mut server = ServerProcess::start_in(dir, &[]);
    let resp = server.export("/v1/traces", "application/json", json_spans(&[("after-restart", NOW + 1)]));
    assert_eq!(resp.status().as_u16(), 200);
    wait_until(|| stored(&server).0.len() == 3, "the span sent after the restart");
    assert_eq!(stored(&server).0, ["after-restart", "json-normal", "pb-normal"]);
    let log = server.log_text();
    assert!(log.contains("skipping an entry of the telemetry segments"), "{log}");
    for name in ["date=2262-04-12", "date=2024-01-01", "legacy", "date=2262-04-13"] {
        assert!(log.contains(name), "the warning names {name}: {log}");
    }
    assert!(server.terminate().success(), "{}", server.log_text());
    // Nothing stray was deleted.
    assert!(far.exists() && segments.join("date=2262-04-13").exists() && tables.join("legacy").exists());
}

#[test]
fn on_clickhouse_times_past_2262_are_refused_per_item_and_nan_is_stored() {
    let target = costplane_testkit::ClickHouseTarget::new();
    // The longest retention allowed: rows of the last second accepted
    // (2099-12-31T23:59:59Z) expire 2,200 days later, 2106-01-09, inside
    // the 32-bit seconds ClickHouse computes TTLs in (they end 2106-02-07).
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "[clickhouse]\ntraces_ttl_days = 2200\n").unwrap();
    let mut server = ServerProcess::start(&crate::support::clickhouse_args(&target, &["--config", config.path().to_str().unwrap()]));
    let q = |sql: &str| crate::support::query_clickhouse(&target.url, &target.database, sql);
    // 2030-01-01: inside every TTL, so ClickHouse keeps the rows.
    const IN_TTL: u64 = 1_893_456_000_000_000_000;
    // A second before the last accepted (its span ends 1 ms later).
    const LAST_SECOND: u64 = 4_102_444_798_000_000_000; // 2099-12-31T23:59:58Z
                                                        // 2101-01-01: DateTime64(9) holds it, but its expiry would wrap past
                                                        // 2106 and a merge delete it: refused like 2300.
    const YEAR_2101_NS: u64 = 4_133_980_800_000_000_000;

    let body = json_spans(&[
        ("ch-normal", IN_TTL),
        ("ch-2300", YEAR_2300_NS),
        ("ch-max", u64::MAX),
        ("ch-last", LAST_SECOND),
        ("ch-2101", YEAR_2101_NS),
    ]);
    let (rejected, message) = json_partial(server.export("/v1/traces", "application/json", body), "rejectedSpans");
    assert_eq!(rejected, "3", "{message}");
    assert!(message.contains("start_time_unix_nano 18446744073709551615 is outside the range the stores hold"), "{message}");
    assert!(message.contains("('ch-2101'): start_time_unix_nano 4133980800000000000 is outside"), "{message}");
    let mut pb = request(&["ch-pb-normal", "ch-pb-2300"], "v");
    for (span, start) in pb.resource_spans[0].scope_spans[0].spans.iter_mut().zip([IN_TTL, YEAR_2300_NS]) {
        span.start_time_unix_nano = start;
        span.end_time_unix_nano = start + 1;
    }
    let resp = server.export("/v1/traces", "application/x-protobuf", pb.encode_to_vec());
    let ps = ExportTraceServiceResponse::decode(resp.bytes().unwrap()).unwrap().partial_success.expect("partial_success is set");
    assert_eq!(ps.rejected_spans, 1, "{}", ps.error_message);
    for (content_type, body) in [
        ("application/json", json_nan_gauge("ch-json-nan", IN_TTL)),
        ("application/x-protobuf", proto_gauge("ch-pb-nan", IN_TTL, f64::NAN)),
    ] {
        let resp = server.export("/v1/metrics", content_type, body);
        assert_eq!(resp.status().as_u16(), 200);
        assert!(!resp.text().unwrap().contains("partialSuccess"));
    }

    wait_until(|| q("SELECT count() FROM otel_traces") == "3" && q("SELECT count() FROM otel_metrics_gauge") == "2", "the accepted rows");
    // A merge applies the TTL: every accepted row survives it.
    q("OPTIMIZE TABLE otel_traces FINAL");
    assert_eq!(
        q("SELECT arrayStringConcat(groupArray(SpanName), ',') FROM (SELECT SpanName FROM otel_traces ORDER BY SpanName)"),
        "ch-last,ch-normal,ch-pb-normal"
    );
    assert_eq!(q("SELECT SpanAttributes['ratio'] FROM otel_traces WHERE SpanName = 'ch-normal'"), "NaN");
    assert_eq!(q("SELECT countIf(isNaN(Value)) FROM otel_metrics_gauge"), "2");
    assert!(server.terminate().success(), "{}", server.log_text());
    assert!(!server.log_text().contains("dead-lettered"), "{}", server.log_text());
}
