//! Request size and in-flight memory limits, with real OTLP/gRPC (tonic) and
//! OTLP/HTTP (reqwest, raw HTTP/1.1) clients: oversized requests get a final
//! answer the client can read, a spent in-flight budget gets the retryable
//! one at once, and every reservation is released afterwards.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use costplane_server::otlp::grpc::RawCodec;
use costplane_server::otlp::http::RpcStatus;
use costplane_server::Config;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::codec::CompressionEncoding;

use crate::support::{trace_export, RunningServer};

const MIB: usize = 1024 * 1024;
const TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// A valid trace export of `spans` spans, each with a 1000-byte attribute
/// (about 1.1 KB per span), ids unique per `tag`.
fn traces(tag: u64, spans: u64) -> Vec<u8> {
    trace_export(&format!("limits-{tag}"), (0..spans).map(|i| (tag << 32) | (i + 1)))
}

/// Bytes gzip cannot shrink (never decoded: the limits apply before).
fn incompressible(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn grpc_export(addr: SocketAddr, body: Vec<u8>, gzip: bool) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    if gzip {
        grpc = grpc.send_compressed(CompressionEncoding::Gzip);
    }
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(TRACES);
    grpc.unary(tonic::Request::new(body), path, RawCodec).await.map(|_| ())
}

async fn http_export(addr: SocketAddr, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{addr}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("the request is answered")
}

async fn rpc_status(resp: reqwest::Response) -> RpcStatus {
    RpcStatus::decode(resp.bytes().await.unwrap()).expect("a google.rpc.Status body")
}

/// `costplane_inflight_request_bytes` from /metrics.
async fn inflight_bytes(server: &RunningServer) -> u64 {
    let text = reqwest::get(format!("http://{}/metrics", server.api)).await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix("costplane_inflight_request_bytes ")).expect("the gauge is in /metrics").parse().unwrap()
}

async fn wait_for_inflight(server: &RunningServer, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = inflight_bytes(server).await;
        if now == expected {
            return;
        }
        assert!(Instant::now() < deadline, "in-flight bytes stay at {now}, expected {expected}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends raw HTTP/1.1 and reads the answer's status line and headers.
async fn raw_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut byte)).await.expect("an answer in time").unwrap();
        assert_eq!(n, 1, "the connection closed before an answer: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap().to_ascii_lowercase()
}

fn limited(max_body_mib: usize, max_inflight_mib: usize) -> Config {
    let mut config = Config::default();
    config.otlp.max_body_mib = max_body_mib;
    config.otlp.max_inflight_mib = max_inflight_mib;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_grpc_requests_are_resource_exhausted_with_the_limit() {
    let mut server = RunningServer::start(limited(1, 64), Duration::ZERO, 0).await;
    let limit = "larger than the limit of 1048576 bytes";

    // Uncompressed: refused at the message prefix.
    let s = grpc_export(server.grpc, vec![0x0a; 3 * MIB / 2], false).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
    assert!(s.message().contains(limit), "{}", s.message());

    // Compressed, and still over the limit compressed.
    let s = grpc_export(server.grpc, incompressible(3 * MIB / 2), true).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
    assert!(s.message().contains(limit), "{}", s.message());

    // Small compressed, over the limit once inflated.
    let big = traces(1, 2000);
    assert!(big.len() > 2 * MIB);
    let s = grpc_export(server.grpc, big, true).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
    assert!(s.message().contains(limit) && s.message().contains("after decompression"), "{}", s.message());

    // Within the limit both ways: stored.
    grpc_export(server.grpc, traces(2, 300), true).await.unwrap();
    grpc_export(server.grpc, traces(3, 300), false).await.unwrap();

    wait_for_inflight(&server, 0).await;
    let stats = server.stop().await;
    assert_eq!(stats.accepted_rows, 600);
    assert_eq!(server.query_u64("SELECT count(*) FROM otel_traces").await, 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_http_requests_get_413_after_the_body_is_read() {
    let mut server = RunningServer::start(limited(1, 64), Duration::ZERO, 0).await;

    // Far more than socket buffers hold: without reading the rest first the
    // client would fail writing instead of reading the 413.
    let resp = http_export(server.otlp_http, vec![0x0a; 24 * MIB]).await;
    assert_eq!(resp.status().as_u16(), 413);
    assert!(resp.headers().get("connection").is_none(), "the body was read: the connection stays usable");
    let s = rpc_status(resp).await;
    assert!(s.message.contains("larger than the limit of 1048576 bytes"), "{}", s.message);

    // Chunked (no Content-Length): the limit applies as the body arrives.
    let mut tcp = TcpStream::connect(server.otlp_http).await.unwrap();
    tcp.write_all(b"POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ntransfer-encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let chunk = vec![0x0au8; 64 * 1024];
    for _ in 0..40 {
        tcp.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.unwrap();
        tcp.write_all(&chunk).await.unwrap();
        tcp.write_all(b"\r\n").await.unwrap();
    }
    tcp.write_all(b"0\r\n\r\n").await.unwrap();
    let head = raw_head(&mut tcp).await;
    assert!(head.starts_with("http/1.1 413"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");

    // Announced larger than the server would read and discard: answered at
    // once, and the connection closes.
    let mut tcp = TcpStream::connect(server.otlp_http).await.unwrap();
    tcp.write_all(b"POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ncontent-length: 1073741824\r\n\r\n")
        .await
        .unwrap();
    let head = raw_head(&mut tcp).await;
    assert!(head.starts_with("http/1.1 413"), "{head}");
    assert!(head.contains("connection: close"), "{head}");

    // Still serving.
    assert_eq!(http_export(server.otlp_http, traces(9, 10)).await.status().as_u16(), 200);
    wait_for_inflight(&server, 0).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_the_whole_inflight_limit_passes_alone() {
    let mut server = RunningServer::start(limited(20, 1), Duration::ZERO, 0).await;
    let body = traces(1, 3000); // ~3.3 MiB: with its decode estimate ~30 MiB, far over 1 MiB
    assert!(body.len() > 3 * MIB);
    assert_eq!(http_export(server.otlp_http, body).await.status().as_u16(), 200);
    grpc_export(server.grpc, traces(2, 3000), false).await.unwrap();
    grpc_export(server.grpc, traces(3, 3000), true).await.unwrap();
    wait_for_inflight(&server, 0).await;
    let stats = server.stop().await;
    assert_eq!(stats.accepted_rows, 9000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_inflight_budget_is_refused_at_once_and_a_disconnect_releases_it() {
    let mut server = RunningServer::start(limited(20, 4), Duration::ZERO, 0).await;

    // A client announces 3 MiB, sends a little, and stalls: its whole body
    // is reserved up front.
    let announced = 3 * MIB;
    let mut stalled = TcpStream::connect(server.otlp_http).await.unwrap();
    stalled
        .write_all(
            format!("POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ncontent-length: {announced}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    stalled.write_all(&[0x0a; 1000]).await.unwrap();
    wait_for_inflight(&server, announced as u64).await;

    // 2 MiB requests do not fit in what is left: the retryable answers.
    let started = Instant::now();
    let resp = http_export(server.otlp_http, vec![0x0a; 2 * MIB]).await;
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let s = rpc_status(resp).await;
    assert_eq!(s.code, tonic::Code::Unavailable as i32);
    assert!(s.message.contains("in-flight request memory limit (otlp.max_inflight_mib = 4 MiB)"), "{}", s.message);
    let s = grpc_export(server.grpc, vec![0x0a; 2 * MIB], false).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
    assert!(s.message().contains("otlp.max_inflight_mib"), "{}", s.message());
    assert!(started.elapsed() < Duration::from_secs(5), "refusals do not wait for memory");

    // The budget is weighted: a small batch still fits.
    assert_eq!(http_export(server.otlp_http, traces(1, 50)).await.status().as_u16(), 200);
    grpc_export(server.grpc, traces(2, 50), true).await.unwrap();
    assert_eq!(inflight_bytes(&server).await, announced as u64);

    // The stalled client goes away: its reservation is released.
    drop(stalled);
    wait_for_inflight(&server, 0).await;
    assert_eq!(http_export(server.otlp_http, traces(3, 1800)).await.status().as_u16(), 200);
    let stats = server.stop().await;
    assert_eq!(stats.accepted_rows, 1900);
}

async fn retrying_http(addr: SocketAddr, tag: u64, spans: u64, refusals: Arc<AtomicU64>) {
    let body = traces(tag, spans);
    loop {
        let resp = http_export(addr, body.clone()).await;
        match resp.status().as_u16() {
            200 => return,
            503 => {
                assert_eq!(resp.headers()["retry-after"], "1");
                refusals.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20 + tag % 7 * 5)).await;
            }
            other => panic!("unexpected HTTP status {other}"),
        }
    }
}

async fn retrying_grpc(addr: SocketAddr, tag: u64, spans: u64, gzip: bool, refusals: Arc<AtomicU64>) {
    let body = traces(tag, spans);
    loop {
        match grpc_export(addr, body.clone(), gzip).await {
            Ok(()) => return,
            Err(s) if s.code() == tonic::Code::Unavailable => {
                refusals.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20 + tag % 7 * 5)).await;
            }
            Err(s) => panic!("unexpected status {s:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_requests_over_the_budget_are_refused_or_served_and_release_everything() {
    let mut server = RunningServer::start(limited(20, 8), Duration::ZERO, 0).await;
    let refusals = Arc::new(AtomicU64::new(0));
    let spans = 2300; // ~2.5 MiB a request: body + decode estimate ~22 MiB, capped at the whole 8 MiB budget
    let mut tasks = Vec::new();
    for tag in 0..16u64 {
        let refusals = refusals.clone();
        tasks.push(match tag % 3 {
            0 => tokio::spawn(retrying_http(server.otlp_http, tag, spans, refusals)),
            1 => tokio::spawn(retrying_grpc(server.grpc, tag, spans, false, refusals)),
            _ => tokio::spawn(retrying_grpc(server.grpc, tag, spans, true, refusals)),
        });
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t).await.expect("no client hangs").unwrap();
    }
    assert!(refusals.load(Ordering::Relaxed) > 0, "16 concurrent requests over an 8 MiB budget must meet refusals");
    wait_for_inflight(&server, 0).await;
    let stats = server.stop().await;
    let sent = 16 * spans;
    assert_eq!(stats.accepted_rows, sent);
    assert_eq!(server.query_u64("SELECT count(DISTINCT SpanId) FROM otel_traces").await, sent);
}
