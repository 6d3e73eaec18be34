//! DuckDB-specific checks: the startup check of tables made by someone
//! else, and what write errors say.

use std::path::Path;

use costplane_store::duckdb::{DuckDbStore, FILE_NAME};
use costplane_store::{Store, StoreError, TelemetrySink};
use costplane_telemetry::usage::TelemetryUsage;
use costplane_telemetry::TelemetryBatch;
use serde_json::{json, Value};

/// `batch` with one usage row of `items` items.
fn with_usage(mut batch: TelemetryBatch, items: u64) -> TelemetryBatch {
    batch.usage.telemetry = vec![TelemetryUsage {
        hour_ns: 1_893_456_000_000_000_000,
        event_day_ns: 1_893_456_000_000_000_000,
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

/// A store of schema version 4 (before the Kubernetes and cloud-bill
/// columns and the Kubernetes usage table) is upgraded in place: old rows
/// read '' in the new columns, new rows keep theirs, and Kubernetes usage
/// is stored and read back as the latest write of each cluster's hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_4_store_gains_the_kubernetes_columns_and_usage() {
    use costplane_store::ledger::Ledger;
    use costplane_telemetry::usage::{
        scope, HourState, KubernetesUsage, LedgerExt, LedgerReplacement, LedgerRow, PricingStatus, Source, UsageRows, UsageType,
    };
    let dir = tempfile::tempdir().unwrap();
    drop(DuckDbStore::open(dir.path()).unwrap());
    // Back to version 4: without the eight columns and the usage table, one old row.
    let drops: String = ["x_Namespace", "x_Pod", "x_Node", "x_Cluster", "x_Container", "x_SharedFrom", "x_ImportKey", "x_Extra"]
        .iter()
        .map(|c| format!("ALTER TABLE costplane_ledger DROP COLUMN \"{c}\";"))
        .collect();
    run(dir.path(), &format!("{drops} DROP TABLE costplane_usage_kubernetes; DELETE FROM costplane_schema_migrations WHERE version = 5;"));
    run(
        dir.path(),
        "INSERT INTO costplane_ledger (\"ChargePeriodStart\", \"ChargePeriodEnd\", \"BilledCost\", \"x_Source\", \"x_UsageType\", \"x_PricingStatus\", \"x_ChargeStatus\", \"x_Revision\") \
         VALUES (TIMESTAMP '1970-01-01 00:00:00', TIMESTAMP '1970-01-01 01:00:00', 1.5, 'llm', 'input', 'priced', 'closed', 1); \
         INSERT INTO costplane_ledger_hours VALUES (TIMESTAMP '1970-01-01 00:00:00', 'llm', 1, 'closed', 1, '')",
    );
    let store: std::sync::Arc<dyn costplane_store::Store> = std::sync::Arc::new(DuckDbStore::open(dir.path()).unwrap());
    let row = LedgerRow::builder(Source::Kubernetes, 0, 3_600_000_000_000)
        .cost("0.02".parse().unwrap(), "USD")
        .service("Kubernetes", "Compute")
        .provider("Kubernetes")
        .publisher("costplane")
        .resource("c1/shop/web/main", "web")
        .consumed("0.5".parse().unwrap(), "Core-Hours")
        .sku("kubernetes/cpu")
        .tags("{}")
        .owner("unassigned", "shop", "shop")
        .operation("cpu")
        .usage_type(UsageType::Cpu)
        .priced(PricingStatus::Priced, "k8s")
        .ext(LedgerExt {
            namespace: "shop".into(),
            node: "n1".into(),
            effective_cost: Some("0.01".parse().unwrap()),
            ..LedgerExt::default()
        })
        .build();
    let row = LedgerRow { revision: 2, ..row };
    let state = HourState {
        hour_ns: 0,
        scope: scope::KUBERNETES.into(),
        revision: 2,
        status: "closed".into(),
        usage_rows: 1,
        price_version: "k8s".into(),
    };
    store.replace_ledger(&LedgerReplacement { hours: vec![state], rows: vec![row.clone()] }).await.unwrap();
    let r = store
        .query("SELECT x_Source, x_Namespace, x_Node, CAST(EffectiveCost AS VARCHAR) FROM costplane_ledger ORDER BY x_Source")
        .await
        .unwrap();
    assert_eq!(r.rows[0], vec![json!("kubernetes"), json!("shop"), json!("n1"), json!("0.010000000000")]);
    assert_eq!(r.rows[1], vec![json!("llm"), json!(""), json!(""), Value::Null]);
    // The repository reads the new columns back as they were written.
    let ledger = Ledger::new(std::sync::Arc::clone(&store));
    let filter = costplane_telemetry::usage::CostFilter { from_ns: 0, to_ns: 3_600_000_000_000, tenant: None, equals: Vec::new() };
    let rows = ledger.rows(&filter).await.unwrap();
    assert_eq!(rows.iter().find(|r| r.source == Source::Kubernetes), Some(&row));
    // Kubernetes usage: two writes of the same hour; the later one is the
    // hour's usage, and all three rows count (the closer sees the change).
    let usage = |written_ns: i64, payload: &str| KubernetesUsage {
        hour_ns: 0,
        written_ns,
        cluster: "c1".into(),
        kind: "node".into(),
        payload: payload.into(),
    };
    for rows in [vec![usage(10, "a")], vec![usage(20, "b"), usage(20, "c")]] {
        let batch = costplane_telemetry::TelemetryBatch {
            id: rand::random(),
            usage: UsageRows { kubernetes: rows, ..UsageRows::default() },
            ..Default::default()
        };
        store.write(&batch).await.unwrap();
    }
    let hour = ledger.usage_of_hour(scope::KUBERNETES, 0, None).await.unwrap();
    assert_eq!(hour.rows, 3);
    assert_eq!(hour.kubernetes, vec![usage(20, "b"), usage(20, "c")]);
    assert!(ledger.usage_counts(0, None).await.unwrap().contains(&(0, scope::KUBERNETES, 3)));
}

/// A stored value outside its column's vocabulary (a charge class FOCUS
/// does not have, a source this version does not know) fails the read with
/// the row and column, instead of reading the row as some default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_stored_vocabulary_value_is_an_error_naming_row_and_column() {
    use costplane_store::ledger::{next_revision, Ledger};
    use costplane_telemetry::usage::{scope, CostFilter, HourState, LedgerReplacement, LedgerRow, Source, UsageType};
    let dir = tempfile::tempdir().unwrap();
    let hour = 3_600_000_000_000i64;
    let revision = next_revision();
    let row = |usage_type: UsageType, cost: &str| LedgerRow {
        revision,
        ..LedgerRow::builder(Source::Llm, hour, 2 * hour)
            .cost(cost.parse().unwrap(), "USD")
            .owner("acme", "shop", "cart")
            .model("gpt-4o")
            .usage_type(usage_type)
            .build()
    };
    let state = HourState {
        hour_ns: hour,
        scope: scope::LLM.into(),
        revision,
        status: "closed".into(),
        usage_rows: 2,
        price_version: String::new(),
    };
    let replacement = LedgerReplacement { hours: vec![state], rows: vec![row(UsageType::Input, "0.5"), row(UsageType::Output, "1.5")] };
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(DuckDbStore::open(dir.path()).unwrap());
    store.replace_ledger(&replacement).await.unwrap();
    let window = CostFilter { from_ns: hour, to_ns: 2 * hour, tenant: None, equals: Vec::new() };
    assert_eq!(Ledger::new(std::sync::Arc::clone(&store)).rows(&window).await.unwrap().len(), 2, "both rows read as written");
    drop(store);

    // Rows are read in (source, usage type) order within the hour: input
    // (0), output (1); `mlops` sorts after `llm`, so it stays row 1.
    for (update, column, value) in [
        (r#"UPDATE costplane_ledger SET "ChargeClass" = 'Refund' WHERE "x_UsageType" = 'output'"#, "ChargeClass", "Refund"),
        (r#"UPDATE costplane_ledger SET "ChargeClass" = NULL, "x_Source" = 'mlops' WHERE "x_UsageType" = 'output'"#, "x_Source", "mlops"),
    ] {
        run(dir.path(), update);
        let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(DuckDbStore::open(dir.path()).unwrap());
        let e = Ledger::new(std::sync::Arc::clone(&store)).rows(&window).await.unwrap_err();
        match &e {
            StoreError::UnknownValue { table: "costplane_ledger", row: 1, column: c, source } => {
                assert_eq!((*c, source.value.as_str()), (column, value));
            }
            other => panic!("{update}: {other:?}"),
        }
        assert!(!e.is_retryable() && e.needs_attention());
        let text = e.to_string();
        assert!(text.contains("row 1") && text.contains(column) && text.contains(value), "{text}");
        drop(store);
    }
}
