//! Compressions OTLP clients use beyond gzip: zstd on gRPC (tonic's own
//! client with `send_compressed(Zstd)`), zstd and deflate on HTTP; and
//! OTLP/JSON enum names. Every accepted request's spans must be stored.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use costplane_server::otlp::grpc::RawCodec;
use costplane_server::Config;
use tonic::codec::CompressionEncoding;

use crate::support::{trace_export, RunningServer};

const TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

async fn grpc_zstd(addr: SocketAddr, body: Vec<u8>) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel).send_compressed(CompressionEncoding::Zstd);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(TRACES);
    grpc.unary(tonic::Request::new(body), path, RawCodec).await.map(|_| ())
}

async fn http(addr: SocketAddr, content_type: &str, encoding: &str, body: Vec<u8>) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/v1/traces"))
        .header("content-type", content_type)
        .header("content-encoding", encoding)
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap_or_default())
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn zstd_and_deflate_bodies_and_json_enum_names_are_stored() {
    let mut server = RunningServer::start(Config::default(), Duration::ZERO, 0).await;
    // gRPC + zstd: 10 spans.
    grpc_zstd(server.grpc, trace_export("grpc-zstd", 1..=10)).await.expect("zstd over gRPC is accepted");
    // HTTP + zstd: 5 spans; HTTP + deflate: 3 spans.
    let body = zstd::encode_all(&trace_export("http-zstd", 101..=105)[..], 3).unwrap();
    assert_eq!(http(server.otlp_http, "application/x-protobuf", "zstd", body).await.0, 200);
    let body = deflate(&trace_export("http-deflate", 201..=203));
    assert_eq!(http(server.otlp_http, "application/x-protobuf", "deflate", body).await.0, 200);
    // OTLP/JSON with enum names, zstd-compressed: 1 span.
    let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10",
        "spanId":"0102030405060708","name":"json-names","kind":"SPAN_KIND_CLIENT",
        "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000000001000",
        "status":{"code":"STATUS_CODE_ERROR"}}]}]}]}"#;
    let (status, text) = http(server.otlp_http, "application/json", "zstd", zstd::encode_all(json.as_bytes(), 3).unwrap()).await;
    assert_eq!(status, 200, "{text}");
    // Broken zstd is a final 400 that says why; an unknown encoding a 415.
    let (status, text) = http(server.otlp_http, "application/x-protobuf", "zstd", b"not zstd".to_vec()).await;
    assert_eq!(status, 400, "{text}");
    let (status, _) = http(server.otlp_http, "application/x-protobuf", "br", vec![1, 2, 3]).await;
    assert_eq!(status, 415);

    server.stop().await;
    let count = |name: &str| format!("SELECT count(*) FROM otel_traces WHERE SpanName = '{name}'");
    assert_eq!(server.query_u64(&count("grpc-zstd")).await, 10);
    assert_eq!(server.query_u64(&count("http-zstd")).await, 5);
    assert_eq!(server.query_u64(&count("http-deflate")).await, 3);
    assert_eq!(
        server
            .query_u64("SELECT count(*) FROM otel_traces WHERE SpanName = 'json-names' AND SpanKind = 'Client' AND StatusCode = 'Error'")
            .await,
        1
    );
}
