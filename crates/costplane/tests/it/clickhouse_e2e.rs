//! `costplane serve --store clickhouse` end to end on ClickHouse's engine,
//! an outage of ClickHouse under steady load, and the cluster DDL.

use std::process::Command;
use std::time::{Duration, Instant};

use costplane_testkit::{external_clickhouse, ChdbFront, ClickHouseTarget};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;

use crate::support::{ServerProcess, BIN};

fn logs(request: u64, n: u64) -> Vec<u8> {
    let records = (0..n)
        .map(|i| LogRecord {
            // 2030: inside every TTL, so ClickHouse keeps the rows.
            time_unix_nano: 1_893_456_000_000_000_000 + request * 1_000 + i,
            severity_number: 9,
            body: Some(AnyValue { value: Some(any_value::Value::StringValue(format!("r{request}-{i}"))) }),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// Sends one request until it is accepted (retrying 503s as exporters do).
fn send_until_accepted(client: &reqwest::blocking::Client, url: &str, body: Vec<u8>) -> u32 {
    let mut refusals = 0;
    loop {
        let resp = client.post(url).header("content-type", "application/x-protobuf").body(body.clone()).send().unwrap();
        match resp.status().as_u16() {
            200 => return refusals,
            503 => {
                refusals += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            other => panic!("unexpected status {other}: {}", resp.text().unwrap_or_default()),
        }
    }
}

fn query_clickhouse(url: &str, database: &str, sql: &str) -> String {
    let resp = reqwest::blocking::Client::new()
        .post(url)
        .query(&[("database", database)])
        .body(sql.to_owned())
        .send()
        .unwrap();
    assert!(resp.status().is_success(), "{sql}: {}", resp.text().unwrap_or_default());
    resp.text().unwrap().trim().to_owned()
}

#[test]
fn an_outage_of_clickhouse_under_load_loses_and_duplicates_nothing() {
    if external_clickhouse().is_some() {
        return; // needs a ClickHouse this test can stop and start
    }
    let ch_dir = tempfile::tempdir().unwrap();
    let mut front = ChdbFront::start(ch_dir.path(), 0);
    let port = front.port;
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "[pipeline]\nmemory_limit_mib = 2\nretry_initial_interval = \"100ms\"\nretry_max_interval = \"500ms\"\nretry_max_elapsed = \"5m\"\n",
    )
    .unwrap();
    let target = ClickHouseTarget::new_with_url(front.url());
    let mut server = ServerProcess::start(&[
        "--config",
        config.path().to_str().unwrap(),
        "--store",
        "clickhouse",
        "--clickhouse-url",
        &target.url,
        "--clickhouse-database",
        &target.database,
    ]);
    let client = reqwest::blocking::Client::new();
    let url = format!("http://{}/v1/logs", server.otlp_http);
    let readyz = format!("http://{}/readyz", server.api);
    let (requests, per_request) = (60u64, 100u64);
    let mut refusals = 0;
    let mut saw_unready = false;
    for r in 0..requests {
        if r == 20 {
            front.kill();
        }
        if r == 40 {
            // Down for a while; the server must have noticed.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !saw_unready && Instant::now() < deadline {
                saw_unready = reqwest::blocking::get(&readyz).unwrap().status().as_u16() == 503;
                std::thread::sleep(Duration::from_millis(100));
            }
            front = ChdbFront::start(ch_dir.path(), port);
        }
        refusals += send_until_accepted(&client, &url, logs(r, per_request));
    }
    assert!(saw_unready, "/readyz never reported the store down");
    let status = server.terminate();
    assert!(status.success(), "{}", server.log_text());
    let log = server.log_text();
    assert!(log.contains("the store is down"), "{log}");
    assert!(log.contains("the store is reachable again"), "{log}");
    let sent = requests * per_request;
    assert_eq!(query_clickhouse(&front.url(), &target.database, "SELECT count() FROM otel_logs"), sent.to_string());
    assert_eq!(
        query_clickhouse(&front.url(), &target.database, "SELECT uniqExact(Body) FROM otel_logs"),
        sent.to_string(),
        "every accepted record exactly once"
    );
    eprintln!("outage test: {refusals} refused requests were retried");
}

#[test]
fn cluster_ddl_matches_the_golden_file_and_parses_on_the_engine() {
    let out = Command::new(BIN).args(["schema", "print", "--cluster", "c1"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ddl = String::from_utf8(out.stdout).unwrap();
    let golden_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/schema_cluster_c1.sql");
    if std::env::var("COSTPLANE_UPDATE_GOLDEN").is_ok() {
        std::fs::write(&golden_path, &ddl).unwrap();
    }
    let golden = std::fs::read_to_string(&golden_path).unwrap();
    assert_eq!(ddl, golden, "the cluster DDL changed; review it and rerun with COSTPLANE_UPDATE_GOLDEN=1");
    assert_eq!(ddl.matches("ON CLUSTER `c1`").count(), 25, "every DDL runs on the whole cluster");
    assert_eq!(ddl.matches("ENGINE = Distributed('c1', 'otel', ").count(), 11);
    assert_eq!(ddl.matches("ENGINE = ReplicatedMergeTree(").count(), 12);

    // ClickHouse's own parser accepts every statement. (Executing them needs
    // a configured cluster and Keeper, which the in-process engine lacks.)
    let target = ClickHouseTarget::new();
    let statements = ddl.split(";\n\n").map(|chunk| {
        chunk.lines().filter(|l| !l.starts_with("--")).collect::<Vec<_>>().join("\n").trim().to_owned()
    });
    for stmt in statements.filter(|s| !s.is_empty()) {
        let resp = reqwest::blocking::Client::new().post(&target.url).body(format!("EXPLAIN AST {stmt}")).send().unwrap();
        assert!(resp.status().is_success(), "the engine rejects:\n{stmt}\n{}", resp.text().unwrap_or_default());
    }
}
