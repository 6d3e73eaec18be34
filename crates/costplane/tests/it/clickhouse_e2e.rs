//! `costplane serve --store clickhouse` end to end on ClickHouse's engine:
//! an outage of ClickHouse under steady load (longer than any retry budget
//! the old pipeline had), a poison request among other tenants', a backfill
//! over 150 days, and the cluster DDL.

use std::process::Command;
use std::time::{Duration, Instant};

use costplane_testkit::{external_clickhouse, ClickHouseTarget};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;

use crate::support::{clickhouse_args, config_file, logs_request, query_clickhouse, wait_until, ServerProcess, StoppableClickHouse, BIN};

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

#[test]
fn an_outage_of_clickhouse_under_load_loses_and_duplicates_nothing() {
    if external_clickhouse().is_some() {
        return; // needs a ClickHouse this test can stop and start
    }
    let clickhouse = StoppableClickHouse::start();
    // No retry budget (the default): an outage of any length is waited out.
    let config = config_file("[pipeline]\nmemory_limit_mib = 2\nretry_initial_interval = \"50ms\"\nretry_max_interval = \"200ms\"\n");
    let mut server = ServerProcess::start(&clickhouse_args(&clickhouse.target, &["--config", config.path().to_str().unwrap()]));
    let client = reqwest::blocking::Client::new();
    let url = format!("http://{}/v1/logs", server.otlp_http);
    let readyz = format!("http://{}/readyz", server.api);
    let (requests, per_request) = (60u64, 100u64);
    let mut refusals = 0;
    let mut saw_unready = false;
    for r in 0..requests {
        if r == 20 {
            clickhouse.kill();
        }
        if r == 40 {
            // Down for a while; the server must have noticed.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !saw_unready && Instant::now() < deadline {
                saw_unready = reqwest::blocking::get(&readyz).unwrap().status().as_u16() == 503;
                std::thread::sleep(Duration::from_millis(100));
            }
            // Stay down for many more retries than the old five-minute
            // budget allowed (about a dozen attempts at 5-30 s intervals).
            std::thread::sleep(Duration::from_secs(6));
            clickhouse.restart();
        }
        refusals += send_until_accepted(&client, &url, logs_request(r, per_request, ""));
    }
    assert!(saw_unready, "/readyz never reported the store down");
    let metrics = reqwest::blocking::get(format!("http://{}/metrics", server.api)).unwrap().text().unwrap();
    let retries: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("costplane_store_write_retries_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("retries on /metrics");
    assert!(retries >= 20, "{metrics}");
    let status = server.terminate();
    assert!(status.success(), "{}", server.log_text());
    let log = server.log_text();
    assert!(log.contains("store writes are failing"), "{log}");
    assert!(log.contains("the store is taking writes again"), "{log}");
    assert!(!log.contains("dead-lettered"), "an outage never dead-letters: {log}");
    let sent = requests * per_request;
    assert_eq!(clickhouse.query("SELECT count() FROM otel_logs"), sent.to_string());
    assert_eq!(clickhouse.query("SELECT uniqExact(Body) FROM otel_logs"), sent.to_string(), "every accepted record exactly once");
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
    // CREATEs (8 of them the keyed state tables of schema version 4, 2 the
    // Kubernetes samples table of version 7, local and distributed) and
    // ALTERs (the columns schema versions 3, 5, 6, 8 and 9 added, for
    // upgrades: version 6's WriteSeq on two usage tables, version 8's
    // CacheWrite1hTokens and version 9's EventDay on one each, local and
    // distributed).
    assert_eq!(ddl.matches("ON CLUSTER `c1`").count(), 79, "every DDL runs on the whole cluster");
    assert_eq!(ddl.matches("ENGINE = Distributed('c1', 'otel', ").count(), 18);
    assert_eq!(ddl.matches("ENGINE = ReplicatedMergeTree(").count(), 15);
    // The keyed state tables keep the newest version of a key.
    assert_eq!(ddl.matches("ENGINE = ReplicatedReplacingMergeTree(").count(), 4);

    // ClickHouse's own parser accepts every statement. (Executing them needs
    // a configured cluster and Keeper, which the in-process engine lacks.)
    let target = ClickHouseTarget::new();
    let statements =
        ddl.split(";\n\n").map(|chunk| chunk.lines().filter(|l| !l.starts_with("--")).collect::<Vec<_>>().join("\n").trim().to_owned());
    for stmt in statements.filter(|s| !s.is_empty()) {
        let resp = reqwest::blocking::Client::new().post(&target.url).body(format!("EXPLAIN AST {stmt}")).send().unwrap();
        assert!(resp.status().is_success(), "the engine rejects:\n{stmt}\n{}", resp.text().unwrap_or_default());
    }
}

/// A logs request from `tenant` whose bodies start with `prefix`.
fn tenant_logs(tenant: &str, prefix: &str, n: u64) -> Vec<u8> {
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    let records = (0..n)
        .map(|i| LogRecord {
            time_unix_nano: 1_893_456_000_000_000_000 + i,
            severity_number: 9,
            body: Some(AnyValue { value: Some(any_value::Value::StringValue(format!("{prefix}-{tenant}-{i}"))) }),
            ..Default::default()
        })
        .collect();
    let tenant_attr = KeyValue {
        key: "tenant.id".into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(tenant.into())) }),
        ..Default::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource { attributes: vec![tenant_attr], ..Default::default() }),
            scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

#[test]
fn a_poison_request_is_dead_lettered_alone_and_replayed_after_the_fix() {
    let target = ClickHouseTarget::new();
    // A 2 s flush merges every request below into one batch.
    let server = ServerProcess::start(&clickhouse_args(&target, &["--flush-interval", "2s"]));
    let q = |sql: &str| query_clickhouse(&target.url, &target.database, sql);
    // What makes the poison request invalid: a constraint its rows break.
    q("ALTER TABLE otel_logs ADD CONSTRAINT no_poison CHECK NOT startsWith(Body, 'poison')");
    let client = reqwest::blocking::Client::new();
    let url = format!("http://{}/v1/logs", server.otlp_http);
    let per_request = 7u64;
    let tenants = ["t0", "t1", "t2", "t3", "t4", "t5"];
    for t in tenants {
        let prefix = if t == "t3" { "poison" } else { "fine" };
        assert_eq!(send_until_accepted(&client, &url, tenant_logs(t, prefix, per_request)), 0);
    }
    // The five good tenants are stored; the bad request alone is set aside.
    wait_until(|| q("SELECT count() FROM otel_logs") == (5 * per_request).to_string(), "the good tenants' rows");
    let dead_letters = || {
        let out = Command::new(BIN).args(["deadletter", "list", "--json", "--data-dir"]).arg(server.data_dir.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).collect::<Vec<_>>()
    };
    wait_until(|| dead_letters().len() == 1, "one dead letter");
    let letter = &dead_letters()[0];
    assert_eq!(letter["tenant"], "t3");
    assert_eq!(letter["signal"], "logs");
    assert_eq!(letter["items"], per_request);
    assert!(letter["error"].as_str().unwrap().contains("no_poison"), "{letter}");
    let metrics = reqwest::blocking::get(format!("http://{}/metrics", server.api)).unwrap().text().unwrap();
    assert!(
        metrics.contains(&format!("costplane_dead_letter_items_total{{tenant=\"t3\",signal=\"logs\",reason=\"rejected\"}} {per_request}")),
        "{metrics}"
    );
    assert_eq!(q("SELECT count() FROM otel_logs WHERE startsWith(Body, 'poison')"), "0");

    // The cause is fixed; the replay stores the request.
    q("ALTER TABLE otel_logs DROP CONSTRAINT no_poison");
    let out = Command::new(BIN)
        .args(["deadletter", "replay", "--otlp-http", &format!("http://{}", server.otlp_http), "--data-dir"])
        .arg(server.data_dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    wait_until(|| q("SELECT count() FROM otel_logs") == (6 * per_request).to_string(), "the replayed rows");
    assert_eq!(q("SELECT uniqExact(Body) FROM otel_logs"), (6 * per_request).to_string());
    assert!(dead_letters().is_empty(), "a replayed dead letter is removed");
}

#[test]
fn a_backfill_over_150_days_is_stored_whole() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };
    let target = ClickHouseTarget::new();
    let server = ServerProcess::start(&clickhouse_args(&target, &["--flush-interval", "1s"]));
    const DAY_NS: u64 = 86_400_000_000_000;
    // Five requests of 150 points, each point on its own day: 150
    // partitions per insert, past ClickHouse's limit of 100 per insert.
    let client = reqwest::blocking::Client::new();
    let url = format!("http://{}/v1/metrics", server.otlp_http);
    for r in 0..5u64 {
        let points = (0..150u64)
            .map(|d| NumberDataPoint {
                // Days back from 2030-01-01, inside the 365-day metrics TTL
                // as long as the clock is before 2030.
                time_unix_nano: 1_893_456_000_000_000_000 - d * DAY_NS + r,
                value: Some(number_data_point::Value::AsDouble((r * 1000 + d) as f64)),
                ..Default::default()
            })
            .collect();
        let body = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "backfilled".into(),
                        data: Some(metric::Data::Gauge(Gauge { data_points: points })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec();
        send_until_accepted(&client, &url, body);
    }
    let q = |sql: &str| query_clickhouse(&target.url, &target.database, sql);
    wait_until(|| q("SELECT count() FROM otel_metrics_gauge") == "750", "all 750 points");
    assert_eq!(q("SELECT uniqExact(Value) FROM otel_metrics_gauge"), "750");
    assert_eq!(q("SELECT uniqExact(toDate(TimeUnix)) FROM otel_metrics_gauge"), "150");
    let mut server = server;
    let started = Instant::now();
    assert!(server.terminate().success());
    assert!(started.elapsed() < Duration::from_secs(20), "shutdown took {:?}", started.elapsed());
}
