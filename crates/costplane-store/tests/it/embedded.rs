//! DuckDB-specific checks: the startup check of tables made by someone
//! else, and what write errors say.

use std::path::Path;

use costplane_store::duckdb::{DuckDbStore, FILE_NAME};
use costplane_store::{Store, StoreError};
use costplane_telemetry::usage::TelemetryUsage;
use costplane_telemetry::TelemetryBatch;
use serde_json::json;

/// `batch` with one usage row of `items` items.
fn with_usage(mut batch: TelemetryBatch, items: u64) -> TelemetryBatch {
    batch.usage.telemetry = vec![TelemetryUsage {
        hour_ns: 1_893_456_000_000_000_000,
        tenant: "acme".into(),
        project: "shop".into(),
        service: "cart".into(),
        signal: "logs",
        items,
        bytes: 100,
    }];
    batch
}

use crate::data;
use crate::support::fixes;

/// The columns costplane appends to `costplane_usage_telemetry`, but for
/// Service, and with Items of type `items`.
fn usage_columns(items: &str) -> String {
    format!(r#""Hour" TIMESTAMP_NS, "Tenant" VARCHAR, "Project" VARCHAR, "Signal" VARCHAR, "Items" {items}, "Bytes" UBIGINT"#)
}

/// Runs `sql` on the store file of `dir` while no store has it open.
fn run(dir: &Path, sql: &str) {
    let conn = duckdb::Connection::open(dir.join(FILE_NAME)).unwrap();
    conn.execute_batch(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_made_table_without_a_column_stops_startup_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    // Made by hand: no Service, Items of another type, and two columns
    // costplane does not write (one nullable, one NOT NULL without a default).
    run(
        dir.path(),
        &format!(r#"CREATE TABLE costplane_usage_telemetry ({}, "Note" VARCHAR, "Owner" VARCHAR NOT NULL)"#, usage_columns("INTEGER")),
    );
    let err = DuckDbStore::open(dir.path()).unwrap_err();
    let StoreError::Schema(message) = &err else { panic!("expected a schema error, got {err:?}") };
    assert!(message.contains("table costplane_usage_telemetry has no column Service (expected type VARCHAR, found none)"), "{message}");
    assert!(message.contains("table costplane_usage_telemetry, column Items: expected type UBIGINT, found INTEGER"), "{message}");
    assert!(message.contains("table costplane_usage_telemetry, column Owner (VARCHAR) is NOT NULL without a default"), "{message}");
    assert!(message.contains("--data-dir"), "{message}");
    assert!(!message.contains("column Note"), "a nullable extra column is fine: {message}");
    // A second start (the schema version is recorded by now) checks again.
    let again = DuckDbStore::open(dir.path()).unwrap_err();
    assert_eq!(again.to_string(), err.to_string());

    // The fixes the message names work; then costplane starts and appends
    // by column name, leaving the extra columns empty.
    let statements = fixes(message);
    assert_eq!(statements.len(), 3, "{message}");
    for sql in &statements {
        run(dir.path(), sql);
    }
    let store = DuckDbStore::open(dir.path()).unwrap();
    store.write(&with_usage(data::logs(5), 6)).await.unwrap();
    // data::logs(5) holds 6 log records; its usage row says 6 items of one service.
    let r = store
        .query(
            "SELECT (SELECT count(*) FROM otel_logs), sum(Items), min(Service), count(Note), count(Owner) FROM costplane_usage_telemetry",
        )
        .await
        .unwrap();
    assert_eq!(r.rows, vec![vec![json!(6), json!(6), json!("cart"), json!(0), json!(0)]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_a_constraint_refuses_are_invalid_data_and_nothing_of_the_batch_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    run(
        dir.path(),
        &format!(r#"CREATE TABLE costplane_usage_telemetry ({}, "Service" VARCHAR, CHECK ("Items" < 7))"#, usage_columns("UBIGINT")),
    );
    let store = DuckDbStore::open(dir.path()).unwrap();
    // A usage row of 10 items, which the check refuses.
    let batch = with_usage(data::traces(31), 10);
    let err = store.write(&batch).await.unwrap_err();
    assert!(err.is_invalid_data() && !err.is_retryable(), "{err:?}");
    // The batch's Parquet segments are taken back: nothing of it is stored.
    let r = store.query("SELECT (SELECT count(*) FROM otel_traces), (SELECT count(*) FROM costplane_usage_telemetry)").await.unwrap();
    assert_eq!(r.rows, vec![vec![json!(0), json!(0)]]);
    // A batch the constraint accepts is stored.
    store.write(&with_usage(data::logs(5), 6)).await.unwrap();
    let r = store.query("SELECT (SELECT count(*) FROM otel_logs), (SELECT count(*) FROM otel_traces)").await.unwrap();
    assert_eq!(r.rows, vec![vec![json!(6), json!(0)]]);
}
