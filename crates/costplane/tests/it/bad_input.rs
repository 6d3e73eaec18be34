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

use crate::support::ServerProcess;

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
