//! With a tiny memory limit and a slow store the receivers push back with
//! retryable statuses; retrying clients get everything stored exactly once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use costplane_server::otlp::grpc::RawCodec;
use costplane_server::Config;

use crate::support::{trace_export, RunningServer};

const SPANS_PER_REQUEST: u64 = 200;

fn request(client: u64, seq: u64) -> Vec<u8> {
    // +1: an all-zero id is invalid OTLP and would be rejected.
    trace_export(&format!("client-{client}"), (0..SPANS_PER_REQUEST).map(|i| (client << 40) | (seq << 16) | (i + 1)))
}

fn tiny_config() -> Config {
    let mut config = Config::default();
    config.pipeline.memory_limit_mib = 1;
    config.pipeline.batch_max_rows = 100;
    config.pipeline.flush_interval = "50ms".into();
    config.pipeline.retry_initial_interval = "20ms".into();
    config.pipeline.retry_max_interval = "100ms".into();
    // The memory buffer refuses what does not fit (the disk buffer would
    // keep it on disk instead): this is the memory limit's back-pressure.
    config.buffer.kind = costplane_server::config::BufferKind::Memory;
    config
}

async fn grpc_sender(addr: std::net::SocketAddr, client: u64, requests: u64, refusals: Arc<AtomicU64>) {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export");
    for seq in 0..requests {
        let body = request(client, seq);
        let mut backoff = Duration::from_millis(10);
        loop {
            grpc.ready().await.unwrap();
            match grpc.unary(tonic::Request::new(body.clone()), path.clone(), RawCodec).await {
                Ok(_) => break,
                Err(s) if s.code() == tonic::Code::Unavailable => {
                    // The memory queue or the disk buffer.
                    assert!(s.message().contains("is full"), "{}", s.message());
                    refusals.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
                Err(s) => panic!("unexpected status {s:?}"),
            }
        }
    }
}

async fn http_sender(addr: std::net::SocketAddr, client: u64, requests: u64, refusals: Arc<AtomicU64>) {
    let http = reqwest::Client::new();
    for seq in 0..requests {
        let body = request(client, seq);
        loop {
            let resp = http
                .post(format!("http://{addr}/v1/traces"))
                .header("content-type", "application/x-protobuf")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            match resp.status().as_u16() {
                200 => break,
                503 => {
                    let retry_after = resp.headers().get("retry-after").expect("503 carries Retry-After");
                    assert_eq!(retry_after, "1");
                    refusals.fetch_add(1, Ordering::Relaxed);
                    // Honour the header's spirit without slowing the test to 1 s per refusal.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => panic!("unexpected HTTP status {other}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_pushes_back_and_retrying_clients_lose_nothing() {
    let mut server = RunningServer::start(tiny_config(), Duration::from_millis(150), 0).await;
    let refusals = Arc::new(AtomicU64::new(0));
    let requests = 12;
    let mut tasks = Vec::new();
    for client in 0..3 {
        tasks.push(tokio::spawn(grpc_sender(server.grpc, client, requests, refusals.clone())));
    }
    for client in 3..5 {
        tasks.push(tokio::spawn(http_sender(server.otlp_http, client, requests, refusals.clone())));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = server.stop().await;
    let sent = 5 * requests * SPANS_PER_REQUEST;
    assert!(refusals.load(Ordering::Relaxed) > 0, "the tiny queue must have refused some requests");
    assert_eq!(stats.refused_rows, refusals.load(Ordering::Relaxed) * SPANS_PER_REQUEST);
    assert_eq!(stats.accepted_rows, sent);
    assert_eq!(stats.written_rows, sent);
    assert_eq!(stats.dead_lettered_rows, 0);
    assert_eq!(server.query_u64("SELECT count(*) FROM otel_traces").await, sent);
    assert_eq!(server.query_u64("SELECT count(DISTINCT SpanId) FROM otel_traces").await, sent, "no span stored twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_is_retried_and_reported_then_nothing_is_lost() {
    let mut server = RunningServer::start(tiny_config(), Duration::from_millis(5), 8).await;
    let refusals = Arc::new(AtomicU64::new(0));
    let sender = tokio::spawn(grpc_sender(server.grpc, 9, 10, refusals.clone()));
    // While the store fails, /readyz says so.
    let api = format!("http://{}/readyz", server.api);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut saw_unready = false;
    while Instant::now() < deadline && !saw_unready {
        let resp = reqwest::get(&api).await.unwrap();
        if resp.status().as_u16() == 503 {
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(body["store_healthy"], false);
            saw_unready = true;
        } else {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert!(saw_unready, "/readyz never reported the outage");
    sender.await.unwrap();
    let stats = server.stop().await;
    assert!(stats.write_errors >= 8, "{stats:?}");
    assert_eq!(stats.written_rows, 10 * SPANS_PER_REQUEST, "{stats:?}");
    assert_eq!(server.query_u64("SELECT count(DISTINCT SpanId) FROM otel_traces").await, 10 * SPANS_PER_REQUEST);
    assert_eq!(server.query_u64("SELECT count(*) FROM otel_traces").await, 10 * SPANS_PER_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_buffer_pushes_back_during_an_outage_and_drains_after() {
    let mut config = tiny_config();
    config.buffer.kind = costplane_server::config::BufferKind::Disk;
    // About four requests of 200 × 1 KB spans fit.
    config.buffer.max_mib = 1;
    // 40 failed writes at 20-100 ms back-off: an outage of a few seconds.
    let mut server = RunningServer::start(config, Duration::from_millis(5), 40).await;
    let refusals = Arc::new(AtomicU64::new(0));
    let requests = 8;
    let tasks: Vec<_> = (0..3).map(|client| tokio::spawn(grpc_sender(server.grpc, 20 + client, requests, refusals.clone()))).collect();
    for t in tasks {
        t.await.unwrap();
    }
    let stats = server.stop().await;
    let sent = 3 * requests * SPANS_PER_REQUEST;
    assert!(refusals.load(Ordering::Relaxed) > 0, "the full buffer must have pushed back: {stats:?}");
    assert_eq!(stats.accepted_rows, sent, "{stats:?}");
    assert_eq!(stats.written_rows, sent, "{stats:?}");
    assert_eq!(stats.buffer.records, 0, "{stats:?}");
    assert!(stats.buffer.bytes < 1 << 20, "resolved segments are deleted: {stats:?}");
    assert_eq!(server.query_u64("SELECT count(DISTINCT SpanId) FROM otel_traces").await, sent);
    assert_eq!(server.query_u64("SELECT count(*) FROM otel_traces").await, sent);
}
