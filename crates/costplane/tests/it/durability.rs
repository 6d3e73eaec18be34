//! The durability promise, on the real binary: kill -9 under load loses no
//! acknowledged span and a restart stores none twice, on the embedded store
//! and on ClickHouse's engine.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use costplane_testkit::{external_clickhouse, ClickHouseTarget};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use crate::support::{clickhouse_args, config_file, query_clickhouse, wait_until, ServerProcess, StoppableClickHouse};

pub const SPANS_PER_REQUEST: u64 = 256;
const STREAMS: u64 = 4;

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }), ..Default::default() }
}

/// One request: `SPANS_PER_REQUEST` spans with ids unique to (stream, seq),
/// all named `s<stream>-r<seq>` so a query can check each request whole.
fn request(stream: u64, seq: u64) -> ExportTraceServiceRequest {
    let spans = (0..SPANS_PER_REQUEST)
        .map(|i| {
            let id = (stream << 48) | (seq << 16) | (i + 1);
            Span {
                trace_id: u128::from(id).to_be_bytes().to_vec(),
                span_id: id.to_be_bytes().to_vec(),
                name: format!("s{stream}-r{seq}"),
                // 2030: inside ClickHouse's TTLs.
                start_time_unix_nano: 1_893_456_000_000_000_000 + id,
                end_time_unix_nano: 1_893_456_000_000_100_000 + id,
                attributes: (0..10).map(|a| kv(&format!("attr.{a}"), &format!("value-{a}-{i}"))).collect(),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![kv("service.name", "loadgen"), kv("tenant.id", "acme")], ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

/// Sends requests on `STREAMS` gRPC streams until the server goes away;
/// returns the names of the requests it acknowledged.
pub fn load_until_killed(server: ServerProcess, run_for: Duration) -> (tempfile::TempDir, Vec<String>) {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let url = format!("http://{}", server.grpc);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let senders: Vec<_> = (0..STREAMS)
        .map(|stream| {
            let (url, acked) = (url.clone(), Arc::clone(&acked));
            runtime.spawn(async move {
                let Ok(mut client) = TraceServiceClient::connect(url).await else { return };
                for seq in 0.. {
                    match client.export(request(stream, seq)).await {
                        Ok(_) => acked.lock().unwrap().push(format!("s{stream}-r{seq}")),
                        Err(s) if s.code() == tonic::Code::Unavailable && s.message().contains("full") => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(_) => return, // the server is gone
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(run_for);
    let dir = server.kill9();
    runtime.block_on(async {
        for s in senders {
            let _ = tokio::time::timeout(Duration::from_secs(30), s).await;
        }
    });
    let acked = acked.lock().unwrap().clone();
    (dir, acked)
}

/// Checks the stored spans: every acknowledged request whole, no span twice.
fn check_exactly_once(acked: &[String], per_request: &BTreeMap<String, u64>, total: u64, distinct: u64) {
    assert_eq!(total, distinct, "a span is stored twice");
    for name in acked {
        assert_eq!(per_request.get(name).copied(), Some(SPANS_PER_REQUEST), "acknowledged request {name} is not stored whole");
    }
    // Requests written to the buffer whose answer the kill cut off may be
    // stored too, but only whole.
    for (name, n) in per_request {
        assert_eq!(*n, SPANS_PER_REQUEST, "request {name} stored partly");
    }
}

#[test]
fn kill_9_under_load_on_the_embedded_store_loses_and_duplicates_nothing() {
    let server = ServerProcess::start(&[]);
    let (dir, acked) = load_until_killed(server, Duration::from_secs(4));
    assert!(acked.len() > 10, "the load generator got too few answers ({}) to prove anything", acked.len());

    let server = ServerProcess::start_in(dir, &[]);
    let acked_spans = acked.len() as u64 * SPANS_PER_REQUEST;
    wait_until(|| server.count("otel_traces") >= acked_spans, "the replay to store every acknowledged span");
    // Let a replay finish completely before judging it.
    std::thread::sleep(Duration::from_secs(2));
    let rows = server.sql("SELECT SpanName AS name, count(*) AS n FROM otel_traces GROUP BY 1");
    let per_request: BTreeMap<String, u64> =
        rows.iter().map(|r| (r["name"].as_str().unwrap().to_owned(), r["n"].as_u64().unwrap())).collect();
    let total = server.count("otel_traces");
    let distinct = server.sql("SELECT count(*) AS n FROM (SELECT DISTINCT TraceId, SpanId FROM otel_traces)")[0]["n"].as_u64().unwrap();
    check_exactly_once(&acked, &per_request, total, distinct);
    // Usage is written in the same write as the spans it meters: every
    // stored span metered once, none twice, after the kill and the replay.
    let metered = server.sql("SELECT sum(Items) AS n FROM costplane_usage_telemetry WHERE Signal = 'traces'")[0]["n"].as_u64().unwrap();
    assert_eq!(metered, total, "metered spans");
    let log = server.log_text();
    assert!(log.contains("replaying what the disk buffer holds"), "{log}");
    eprintln!("kill -9 (embedded): {} requests acknowledged, {total} spans stored after the restart", acked.len());
}

#[test]
fn kill_9_under_load_on_clickhouse_loses_and_duplicates_nothing() {
    let target = ClickHouseTarget::new();
    let flags = clickhouse_args(&target, &[]);
    let server = ServerProcess::start(&flags);
    let (dir, acked) = load_until_killed(server, Duration::from_secs(4));
    assert!(acked.len() > 10, "the load generator got too few answers ({}) to prove anything", acked.len());

    let server = ServerProcess::start_in(dir, &flags);
    let q = |sql: &str| query_clickhouse(&target.url, &target.database, sql);
    let acked_spans = acked.len() as u64 * SPANS_PER_REQUEST;
    wait_until(|| q("SELECT count() FROM otel_traces").parse::<u64>().unwrap() >= acked_spans, "every acknowledged span");
    wait_until(|| server.sql("SELECT 1 AS one").len() == 1 && buffer_records(&server) == 0, "the buffer to drain");
    let per_request: BTreeMap<String, u64> = q("SELECT SpanName, count() FROM otel_traces GROUP BY SpanName FORMAT TabSeparated")
        .lines()
        .map(|l| {
            let (name, n) = l.split_once('\t').unwrap();
            (name.to_owned(), n.parse().unwrap())
        })
        .collect();
    let total: u64 = q("SELECT count() FROM otel_traces").parse().unwrap();
    let distinct: u64 = q("SELECT uniqExact(TraceId, SpanId) FROM otel_traces").parse().unwrap();
    check_exactly_once(&acked, &per_request, total, distinct);
    let metered: u64 = q("SELECT sum(Items) FROM costplane_usage_telemetry WHERE Signal = 'traces'").parse().unwrap();
    assert_eq!(metered, total, "metered spans: every stored span once");
    eprintln!("kill -9 (ClickHouse): {} requests acknowledged, {total} spans stored after the restart", acked.len());
    drop(server);
    if external_clickhouse().is_none() {
        drop(target);
    }
}

/// Requests the server's buffer still holds (from `/readyz`).
pub fn buffer_records(server: &ServerProcess) -> u64 {
    let body: serde_json::Value = reqwest::blocking::get(format!("http://{}/readyz", server.api)).unwrap().json().unwrap();
    body["buffer"]["records"].as_u64().unwrap()
}

#[test]
fn a_corrupt_buffer_tail_is_cut_and_the_intact_requests_stored() {
    // ClickHouse down: accepted requests stay in the disk buffer.
    let clickhouse = StoppableClickHouse::start();
    let config = config_file("[pipeline]\nretry_initial_interval = \"100ms\"\nretry_max_interval = \"300ms\"\nshutdown_timeout = \"1s\"\n");
    let flags = clickhouse_args(&clickhouse.target, &["--config", config.path().to_str().unwrap()]);
    let mut server = ServerProcess::start(&flags);
    clickhouse.kill();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let url = format!("http://{}", server.grpc);
    runtime.block_on(async {
        let mut client = TraceServiceClient::connect(url).await.unwrap();
        for seq in 0..5 {
            client.export(request(0, seq)).await.unwrap();
        }
    });
    let status = server.terminate();
    assert!(status.success(), "a shutdown with the store down still exits 0: {}", server.log_text());
    let dir = server.kill9();

    // Damage the newest segment: flip a byte in the body of its last request
    // record (records: len u32, crc u32, payload; payload[0] = 1 for a
    // request) and add a torn half-record at the end.
    let buffer = dir.path().join("buffer");
    let mut segments: Vec<_> =
        std::fs::read_dir(&buffer).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "wal")).collect();
    segments.sort();
    let last = segments.iter().rev().find(|p| std::fs::metadata(p).unwrap().len() > 0).unwrap().clone();
    let mut bytes = std::fs::read(&last).unwrap();
    let (mut offset, mut last_request) = (0usize, None);
    while offset + 8 < bytes.len() {
        let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        if bytes[offset + 8] == 1 {
            last_request = Some((offset, len));
        }
        offset += 8 + len;
    }
    let (at, len) = last_request.expect("the segment holds a request");
    bytes[at + 8 + len / 2] ^= 0xff;
    bytes.extend_from_slice(&[0x10, 0, 0]);
    std::fs::write(&last, &bytes).unwrap();

    clickhouse.restart();
    let server = ServerProcess::start_in(dir, &flags);
    let q = |sql: &str| clickhouse.query(sql);
    wait_until(|| buffer_records(&server) == 0, "the replay");
    let stored: u64 = q("SELECT count() FROM otel_traces").parse().unwrap();
    assert_eq!(stored, 4 * SPANS_PER_REQUEST, "the four intact requests are stored; the damaged last one is cut");
    let log = server.log_text();
    let file = last.display().to_string();
    assert!(log.contains("truncating the segment at an invalid tail") && log.contains(&file), "{log}");
    // The damaged record's bytes are kept for inspection, not lost.
    let quarantined: Vec<_> = std::fs::read_dir(server.data_dir.path().join("buffer/quarantine")).unwrap().collect();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
}
