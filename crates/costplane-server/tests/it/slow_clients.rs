//! Idle and slow clients cannot hold the listeners: with `[connections]`
//! deadlines set short, many idle connections, a half-sent header, a header
//! trickled a byte at a time and a stalled body are all closed by the
//! server near their deadline, on OTLP/HTTP, OTLP/gRPC and the API, while
//! a well-formed request sent meanwhile is answered.

use std::net::SocketAddr;
use std::time::Duration;

use costplane_server::connections::ConnectionsSection;
use costplane_server::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::support::{trace_export, RunningServer};

const HEADER: Duration = Duration::from_secs(2);
const IDLE: Duration = Duration::from_secs(4);
/// How late a close may come on a busy two-core machine.
const SLACK: Duration = Duration::from_secs(3);
const IDLE_CONNECTIONS: usize = 64;

/// The client's HTTP/2 connection preface and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// When the server closed a connection opened at `opened` (reading and
/// dropping whatever it sent first, such as HTTP/2 settings).
fn watch_close(stream: tokio::net::tcp::OwnedReadHalf, opened: Instant) -> JoinHandle<Instant> {
    let mut stream = stream;
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        let read_all = async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return Instant::now(),
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(IDLE + HEADER + SLACK * 2, read_all)
            .await
            .unwrap_or_else(|_| panic!("a connection opened {:?} ago was never closed by the server", opened.elapsed()))
    })
}

/// A connection that sends `first`, then (when `trickle` is set) one byte
/// of it every 200 ms for as long as the server keeps the connection.
async fn hold(addr: SocketAddr, first: &[u8], trickle: Option<u8>) -> (Instant, JoinHandle<Instant>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let opened = Instant::now();
    let (read, mut write) = stream.into_split();
    write.write_all(first).await.unwrap();
    let closed = watch_close(read, opened);
    tokio::spawn(async move {
        if let Some(byte) = trickle {
            while write.write_all(&[byte]).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        } else {
            // Keep the write half (and so the connection) open.
            std::future::pending::<()>().await;
        }
    });
    (opened, closed)
}

/// Checks that every held connection was closed between `deadline` after
/// it opened and `deadline + SLACK`, and after `served` (the well-formed
/// request was answered while all of them were still open).
async fn closed_near(what: &str, held: Vec<(Instant, JoinHandle<Instant>)>, deadline: Duration, served: Instant) {
    for (i, (opened, closed)) in held.into_iter().enumerate() {
        let closed = closed.await.unwrap();
        let after = closed - opened;
        assert!(after + Duration::from_millis(100) >= deadline, "{what} #{i}: closed after {after:?}, before its deadline {deadline:?}");
        assert!(after <= deadline + SLACK, "{what} #{i}: closed only after {after:?} (deadline {deadline:?})");
        assert!(closed > served, "{what} #{i}: closed before the well-formed request was answered");
    }
}

async fn idle_connections(addr: SocketAddr) -> Vec<(Instant, JoinHandle<Instant>)> {
    let mut held = Vec::new();
    for _ in 0..IDLE_CONNECTIONS {
        held.push(hold(addr, b"", None).await);
    }
    held
}

fn config() -> Config {
    Config { connections: ConnectionsSection { header_read_timeout: HEADER, idle_timeout: IDLE }, ..Config::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_http_clients_are_closed_while_requests_are_served() {
    let mut server = RunningServer::start(config(), Duration::ZERO, 0).await;
    for (name, addr, good) in [("OTLP/HTTP", server.otlp_http, "POST"), ("API", server.api, "GET")] {
        let idle = idle_connections(addr).await;
        let half = hold(addr, format!("POST /v1/traces HTTP/1.1\r\nhost: {addr}\r\ncontent-ty").as_bytes(), None).await;
        let trickle = hold(addr, format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\nx-slow: ").as_bytes(), Some(b'a')).await;
        // Whole headers, then a body that stops after 10 of its 100 bytes:
        // only the idle deadline applies once the headers are in.
        let path = if name == "API" { "/api/v1/sql" } else { "/v1/traces" };
        let head =
            format!("POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"sql\": \"");
        let stalled = hold(addr, head.as_bytes(), None).await;

        let client = reqwest::Client::new();
        let answer = if good == "POST" {
            client
                .post(format!("http://{addr}/v1/traces"))
                .header("content-type", "application/x-protobuf")
                .body(trace_export("held", [1]))
                .send()
                .await
                .unwrap()
        } else {
            client.get(format!("http://{addr}/healthz")).send().await.unwrap()
        };
        assert_eq!(answer.status(), 200, "{name}: {}", answer.text().await.unwrap());
        let served = Instant::now();

        closed_near(&format!("{name} idle"), idle, HEADER, served).await;
        closed_near(&format!("{name} half header"), vec![half], HEADER, served).await;
        closed_near(&format!("{name} trickled header"), vec![trickle], HEADER, served).await;
        closed_near(&format!("{name} stalled body"), vec![stalled], IDLE, served).await;
        // The listener still serves.
        assert_eq!(client.get(format!("http://{}/healthz", server.api)).send().await.unwrap().status(), 200, "{name}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_grpc_clients_are_closed_while_exports_are_served() {
    let mut server = RunningServer::start(config(), Duration::ZERO, 0).await;
    let addr = server.grpc;
    let idle = idle_connections(addr).await;
    let half = hold(addr, &H2_PREFACE[..12], None).await;
    // A SETTINGS frame announcing 6,000 bytes, sent a byte every 200 ms:
    // the connection never goes idle, and never sends a request.
    let mut slow = H2_PREFACE.to_vec();
    slow.extend_from_slice(&[0x00, 0x17, 0x70, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00]);
    let trickle = hold(addr, &slow, Some(0)).await;

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export");
    grpc.unary(tonic::Request::new(trace_export("held", [1])), path, costplane_server::otlp::grpc::RawCodec).await.unwrap();
    let served = Instant::now();

    closed_near("gRPC idle", idle, HEADER, served).await;
    closed_near("gRPC half preface", vec![half], HEADER, served).await;
    closed_near("gRPC trickled settings", vec![trickle], HEADER, served).await;
    server.stop().await;
}
