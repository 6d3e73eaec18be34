//! Ad-hoc SQL cannot change the store: every statement below is refused by
//! the engine (DuckDB's statement type and read-only transaction; ClickHouse's
//! `readonly=1`), with a clear error, and the data is the same afterwards.

use std::time::{Duration, Instant};

use costplane_store::{QueryLimits, StoreError};
use serde_json::Value;

use crate::support::{Backend, Dialect};

/// Rows of the tables a hostile statement aims at.
async fn snapshot(b: &Backend) -> Vec<Value> {
    let r = b
        .store
        .query("SELECT (SELECT count(*) FROM otel_traces), (SELECT count(*) FROM otel_logs), (SELECT count(*) FROM costplane_ledger)")
        .await
        .unwrap();
    r.rows[0].clone()
}

/// Statements both engines must refuse. The first three got through the
/// old first-keyword check on DuckDB.
const COMMON: [&str; 14] = [
    "WITH x AS (SELECT 1) DELETE FROM costplane_ledger",
    "WITH x AS (SELECT 1) DELETE FROM otel_traces WHERE 1 = 1",
    "EXPLAIN ANALYZE DELETE FROM otel_traces",
    "DELETE FROM otel_traces WHERE 1 = 1",
    "DROP TABLE otel_logs",
    "INSERT INTO otel_logs (ServiceName) VALUES ('x')",
    "SELECT 1; DELETE FROM otel_traces WHERE 1 = 1",
    "SELECT 1; SELECT 2",
    "COPY otel_traces TO '/tmp/costplane-exfiltrated.csv'",
    "ATTACH '/tmp/costplane-attached.db' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET max_memory_usage = 1",
    "TRUNCATE TABLE otel_logs",
];

const DUCKDB_ONLY: [&str; 9] = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "PRAGMA enable_profiling",
    "CALL pragma_table_info('otel_traces')",
    "SET threads = 1",
    "CHECKPOINT",
    "DETACH costplane",
    "UPDATE costplane_ledger SET \"BilledCost\" = 0",
    "EXPLAIN ANALYZE INSERT INTO otel_logs (\"ServiceName\") VALUES ('x')",
];

const CLICKHOUSE_ONLY: [&str; 7] = [
    "SELECT * FROM url('http://127.0.0.1:9/x', CSV, 'a String')",
    "SELECT * FROM file('/etc/passwd', LineAsString)",
    "SELECT * FROM remote('127.0.0.1:9', system.one)",
    "SELECT * FROM s3('http://127.0.0.1:9/bucket/x.csv', CSV, 'a String')",
    "SELECT 1 SETTINGS readonly = 0",
    "ALTER TABLE otel_traces DELETE WHERE 1",
    "SELECT * FROM otel_traces SETTINGS max_result_rows = 100000000",
];

pub async fn hostile_statements_are_refused(b: &Backend) {
    b.store.write(&crate::data::traces(5)).await.unwrap();
    let before = snapshot(b).await;
    assert!(before[0].as_u64().unwrap() > 0, "the scenario needs stored spans to protect: {before:?}");
    let specific: &[&str] = match b.dialect {
        Dialect::DuckDb => &DUCKDB_ONLY,
        Dialect::ClickHouse => &CLICKHOUSE_ONLY,
    };
    for sql in COMMON.iter().chain(specific) {
        match b.store.query(sql).await {
            Err(StoreError::NotReadOnly(m) | StoreError::Rejected(m)) => assert!(!m.is_empty(), "{sql}: an empty error"),
            other => panic!("{sql} must be refused, got {other:?}"),
        }
        assert_eq!(snapshot(b).await, before, "{sql} changed the data");
    }
    // The forms that used to run are refused as writes, not as typos.
    if b.dialect == Dialect::DuckDb {
        for sql in &COMMON[..3] {
            assert!(matches!(b.store.query(sql).await, Err(StoreError::NotReadOnly(_))), "{sql}");
        }
    } else {
        let e = b.store.query(CLICKHOUSE_ONLY[0]).await.unwrap_err().to_string();
        assert!(e.contains("read-only mode") || e.contains("readonly"), "url() must be refused by readonly: {e}");
    }
    // Reads still work, in the forms people type.
    let reads: &[&str] = match b.dialect {
        Dialect::DuckDb => {
            &["SELECT 1", "WITH x AS (SELECT 1 AS v) SELECT v FROM x", "FROM otel_logs LIMIT 1", "DESCRIBE otel_traces", "SELECT ';' AS s"]
        }
        Dialect::ClickHouse => &["SELECT 1", "WITH x AS (SELECT 1 AS v) SELECT v FROM x", "DESCRIBE TABLE otel_traces", "SELECT ';' AS s"],
    };
    for sql in reads {
        b.store.query(sql).await.unwrap_or_else(|e| panic!("{sql} is a read: {e}"));
    }
}

pub async fn results_are_bounded(b: &Backend) {
    let sql = match b.dialect {
        Dialect::DuckDb => "SELECT * FROM range(100000)",
        Dialect::ClickHouse => "SELECT number FROM numbers(100000)",
    };
    let limits = QueryLimits { max_rows: 7, ..QueryLimits::default() };
    let r = b.store.query_limited(sql, &limits).await.unwrap();
    assert_eq!(r.rows.len(), 7);
    assert!(r.truncated);
    let r = b.store.query_limited("SELECT 1", &limits).await.unwrap();
    assert!(!r.truncated);
}

/// DuckDB: a slow ad-hoc query is stopped at its timeout, and while it runs
/// costplane's own queries (the cost API, /metrics) are answered.
pub async fn a_slow_query_is_stopped_and_blocks_nothing(b: &Backend) {
    let store = std::sync::Arc::clone(&b.store);
    let slow = tokio::spawn(async move {
        let limits = QueryLimits { timeout: Duration::from_millis(1500), ..QueryLimits::default() };
        let t = Instant::now();
        let r = store.query_limited("SELECT count(*) FROM range(100000000000) a WHERE a.range % 7 = 3", &limits).await;
        (r, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    let r = b.store.query_with("SELECT count(*) FROM otel_traces", &[]).await.unwrap();
    assert!(r.rows[0][0].as_u64().unwrap() > 0);
    assert!(t.elapsed() < Duration::from_millis(1000), "the cost path waited {:?} behind an ad-hoc query", t.elapsed());
    let (r, took) = slow.await.unwrap();
    assert!(matches!(r, Err(StoreError::Unavailable(ref m)) if m.contains("time limit")), "{r:?}");
    assert!(took < Duration::from_secs(5), "stopped after {took:?}");
    // The ad-hoc connection is usable again.
    b.store.query("SELECT 42").await.unwrap();
}
