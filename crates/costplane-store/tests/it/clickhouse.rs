//! ClickHouse-specific checks on the real engine: schema creation and its
//! idempotence, the DDL's production features, version refusal, the check
//! of tables made by someone else, inserts split by partition, what write
//! errors say, and the store's behaviour across an outage of the server.

use costplane_store::clickhouse::ClickHouseStore;
use costplane_store::{Store, StoreError, TelemetrySink};
use serde_json::json;

use crate::data;
use crate::support::{fixes, ChdbFront, ClickHouseTarget};

async fn show_create(store: &ClickHouseStore, table: &str) -> String {
    let r = store.query(&format!("SHOW CREATE TABLE {table}")).await.unwrap();
    r.rows[0][0].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_is_created_once_with_production_features_and_newer_versions_are_refused() {
    let target = ClickHouseTarget::new();
    let store = ClickHouseStore::connect(target.config()).await.unwrap();
    // A second start is a no-op.
    let again = ClickHouseStore::connect(target.config()).await.unwrap();
    let versions = again.query("SELECT count(*), max(version) FROM costplane_schema_migrations").await.unwrap();
    assert_eq!(versions.rows, vec![vec![json!(1), json!(9)]]);

    let traces = show_create(&store, "otel_traces").await;
    for needle in [
        "PARTITION BY toDate(Timestamp)",
        "ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), Timestamp)",
        "TTL toDateTime(Timestamp) + toIntervalDay(7)",
        "INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1",
        "INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1",
        "CODEC(Delta(8), ZSTD(1))",
        "ttl_only_drop_parts = 1",
        "`Events.Timestamp` Array(DateTime64(9))",
    ] {
        assert!(traces.contains(needle), "otel_traces lacks {needle}:\n{traces}");
    }
    let logs = show_create(&store, "otel_logs").await;
    assert!(logs.contains("TTL toDateTime(Timestamp) + toIntervalDay(30)"), "{logs}");
    assert!(logs.contains("`TimestampTime` DateTime ALIAS toDateTime(Timestamp)"), "{logs}");
    assert!(logs.contains("ORDER BY (toStartOfFiveMinutes(Timestamp), ServiceName, Timestamp)"), "{logs}");
    let hist = show_create(&store, "otel_metrics_histogram").await;
    assert!(hist.contains("TTL toDateTime(TimeUnix) + toIntervalDay(365)"), "{hist}");
    assert!(hist.contains("ORDER BY (ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))"), "{hist}");

    // The trace-id lookup table is fed by its materialized view.
    store.write(&data::traces(5)).await.unwrap();
    let lookup =
        store.query("SELECT count(*) FROM otel_traces_trace_id_ts WHERE TraceId = 'abababababababab0000000000000001'").await.unwrap();
    assert_eq!(lookup.rows, vec![vec![json!(1)]]);

    // A schema newer than this binary is refused with a clear message.
    let bump = reqwest::Client::new()
        .post(&target.url)
        .body(format!("INSERT INTO `{}`.costplane_schema_migrations (version) VALUES (99)", target.database))
        .send()
        .await
        .unwrap();
    assert!(bump.status().is_success());
    let err = ClickHouseStore::connect(target.config()).await.unwrap_err();
    assert!(matches!(&err, StoreError::Schema(m) if m.contains("version 99, newer than the version 9")), "{err}");
}

/// A database at schema version 3 (no keyed state tables) is upgraded to
/// the current version at the next start, its ledger kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_3_database_is_upgraded_to_the_current_version() {
    use costplane_store::{Record, RecordTable};
    let target = ClickHouseTarget::new();
    drop(ClickHouseStore::connect(target.config()).await.unwrap());
    let http = reqwest::Client::new();
    let run = |sql: String| {
        let req = http.post(&target.url).body(sql);
        async move {
            let resp = req.send().await.unwrap();
            assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
        }
    };
    // Back to what a version 3 costplane left: no state tables, version 3 recorded.
    for t in RecordTable::ALL {
        run(format!("DROP TABLE `{}`.{}", target.database, t.name())).await;
    }
    run(format!("TRUNCATE TABLE `{}`.costplane_schema_migrations", target.database)).await;
    run(format!("INSERT INTO `{}`.costplane_schema_migrations (version) VALUES (3)", target.database)).await;
    run(format!(
        "INSERT INTO `{}`.costplane_ledger_hours (Hour, Scope, Revision, Status, UsageRows, PriceVersion) \
         VALUES ('2026-11-01 10:00:00', 'llm', 7, 'closed', 3, 'p1')",
        target.database
    ))
    .await;
    // Telemetry usage as versions before 9 wrote it: no event day.
    run(format!("ALTER TABLE `{}`.costplane_usage_telemetry DROP COLUMN EventDay", target.database)).await;
    run(format!(
        "INSERT INTO `{}`.costplane_usage_telemetry (Hour, Tenant, Project, Service, Signal, Items, Bytes) \
         VALUES ('2026-11-01 10:00:00', 'acme', 'p', 's', 'traces', 1, 100)",
        target.database
    ))
    .await;

    let store = ClickHouseStore::connect(target.config()).await.unwrap();
    let v = store.query("SELECT max(version) FROM costplane_schema_migrations").await.unwrap();
    assert_eq!(v.rows, vec![vec![json!(9)]]);
    // The old row's event day is its receive day, 2026-11-01T00:00:00Z.
    let day = store.query("SELECT toUnixTimestamp64Nano(EventDay) FROM costplane_usage_telemetry").await.unwrap();
    assert_eq!(day.rows, vec![vec![json!(1_793_491_200_000_000_000i64)]]);
    let kept = store.query("SELECT Revision, Status FROM costplane_ledger_hours").await.unwrap();
    assert_eq!(kept.rows, vec![vec![json!(7), json!("closed")]]);
    for t in RecordTable::ALL {
        store.put_records(t, &[Record::new("k", "{}", 1)]).await.unwrap();
        assert_eq!(store.records(t).await.unwrap(), vec![Record::new("k", "{}", 1)], "{}", t.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_records_keep_the_newest_version_of_each_key() {
    use costplane_store::{Record, RecordTable};
    let target = ClickHouseTarget::new();
    let store = ClickHouseStore::connect(target.config()).await.unwrap();
    let t = RecordTable::BudgetNotifications;
    store.put_records(t, &[Record::new("b", r#"{"v":1}"#, 1), Record::new("a", "{}", 1)]).await.unwrap();
    // A newer version and a deletion, read before any merge.
    store.put_records(t, &[Record::new("b", r#"{"v":2, "q": "it's"}"#, 2), Record::tombstone("a", 3)]).await.unwrap();
    assert_eq!(store.records(t).await.unwrap(), vec![Record::new("b", r#"{"v":2, "q": "it's"}"#, 2)]);
    assert!(store.records(RecordTable::Budgets).await.unwrap().is_empty());
    let engine = show_create(&store, "costplane_budget_notifications").await;
    assert!(engine.contains("ReplacingMergeTree(UpdatedNs)"), "{engine}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_an_outage_are_retryable_and_nothing_is_lost_after_it() {
    if costplane_testkit::external_clickhouse().is_some() {
        // An outage needs a server this test can stop: the chDB front.
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut front = ChdbFront::start(dir.path(), 0);
    let port = front.port;
    let target = ClickHouseTarget::new_with_url(front.url());
    let store = ClickHouseStore::connect(target.config()).await.unwrap();
    store.write(&data::logs(10)).await.unwrap();

    front.kill();
    let err = store.write(&data::logs(11)).await.unwrap_err();
    assert!(err.is_retryable(), "an unreachable ClickHouse must be a retryable error: {err}");
    assert!(store.ping().await.is_err());

    // Back on the same port and data: the retried batch lands once, and
    // what was written before the outage is still there.
    let _front = ChdbFront::start(dir.path(), port);
    store.write(&data::logs(11)).await.unwrap();
    store.write(&data::logs(11)).await.unwrap();
    let n = store.query("SELECT count(*) FROM otel_logs").await.unwrap();
    assert_eq!(n.rows, vec![vec![json!(12)]]);
}

/// Runs one statement on the target as an admin would, outside the store.
async fn admin(target: &ClickHouseTarget, sql: &str) {
    let resp = reqwest::Client::new().post(&target.url).body(sql.to_owned()).send().await.unwrap();
    let status = resp.status();
    assert!(status.is_success(), "{sql}\n-> {status}: {}", resp.text().await.unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_spread_over_150_days_is_stored_whole_and_only_once() {
    let target = ClickHouseTarget::new();
    let store = ClickHouseStore::connect(target.config()).await.unwrap();
    // One insert would touch 150 partitions, over max_partitions_per_insert_block (100).
    let batch = data::gauges_over_days(0x150, 150, 3);
    assert_eq!(batch.gauges.len(), 450);
    store.write(&batch).await.unwrap();
    let sql =
        "SELECT count(*), uniqExact(toDate(TimeUnix)), uniqExact(_partition_id) FROM otel_metrics_gauge WHERE MetricName = 'backfill'";
    let expected = vec![vec![json!(450), json!(150), json!(150)]];
    assert_eq!(store.query(sql).await.unwrap().rows, expected);
    // The same batch again (a retry, a replay): every insert is deduplicated.
    store.write(&batch).await.unwrap();
    assert_eq!(store.query(sql).await.unwrap().rows, expected, "a rewritten batch must add nothing");
    // Another batch with the same rows is new data.
    let mut other = batch.clone();
    other.id = 0x151;
    store.write(&other).await.unwrap();
    let r = store.query("SELECT count(*) FROM otel_metrics_gauge WHERE MetricName = 'backfill'").await.unwrap();
    assert_eq!(r.rows, vec![vec![json!(900)]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_table_without_a_column_stops_startup_with_the_fix() {
    let target = ClickHouseTarget::new();
    let db = format!("`{}`", target.database);
    admin(&target, &format!("CREATE DATABASE {db}")).await;
    // Made by someone else: no SeverityText, SeverityNumber of another type,
    // ServiceName without LowCardinality (sent the same way), an extra column.
    admin(
        &target,
        &format!(
            "CREATE TABLE {db}.otel_logs (Timestamp DateTime64(9), TraceId String, SpanId String, TraceFlags UInt8, \
             SeverityNumber Int32, ServiceName String, Body String, ResourceSchemaUrl String, \
             ResourceAttributes Map(String, String), ScopeSchemaUrl String, ScopeName String, ScopeVersion String, \
             ScopeAttributes Map(String, String), LogAttributes Map(String, String), EventName String, Extra String) \
             ENGINE = MergeTree ORDER BY Timestamp"
        ),
    )
    .await;
    let err = ClickHouseStore::connect(target.config()).await.unwrap_err();
    let StoreError::Schema(message) = &err else { panic!("expected a schema error, got {err:?}") };
    assert!(message.contains("table otel_logs has no column SeverityText (expected type LowCardinality(String), found none)"), "{message}");
    assert!(message.contains("table otel_logs, column SeverityNumber: expected type UInt8, found Int32"), "{message}");
    assert!(message.contains("--clickhouse-database"), "{message}");
    assert!(!message.contains("ServiceName") && !message.contains("Extra"), "{message}");
    // A second start finds the same problems (the version was not recorded).
    let again = ClickHouseStore::connect(target.config()).await.unwrap_err();
    assert_eq!(again.to_string(), err.to_string());

    // The fixes the message names work; then costplane starts and writes.
    let statements = fixes(message);
    assert_eq!(statements.len(), 2, "{message}");
    for sql in &statements {
        admin(&target, sql).await;
    }
    let store = ClickHouseStore::connect(target.config()).await.unwrap();
    store.write(&data::logs(5)).await.unwrap();
    let r = store.query("SELECT count(*), min(SeverityText), max(Extra) FROM otel_logs").await.unwrap();
    assert_eq!(r.rows, vec![vec![json!(6), json!("SEV0"), json!("")]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_errors_say_whether_the_data_or_the_schema_is_at_fault() {
    let target = ClickHouseTarget::new();
    let store = ClickHouseStore::connect(target.config()).await.unwrap();
    let db = format!("`{}`", target.database);

    // Rows a constraint refuses: invalid data, not worth retrying.
    admin(&target, &format!("ALTER TABLE {db}.otel_logs ADD CONSTRAINT low_severity CHECK SeverityNumber < 12")).await;
    let err = store.write(&data::logs(21)).await.unwrap_err();
    assert!(err.is_invalid_data() && !err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("low_severity"), "{err}");

    // A table dropped under costplane: retried, and flagged for an operator.
    admin(&target, &format!("DROP TABLE {db}.otel_metrics_summary")).await;
    let err = store.write(&data::metrics(22)).await.unwrap_err();
    assert!(matches!(err, StoreError::Schema(_)), "{err:?}");
    assert!(err.is_retryable() && err.needs_attention() && !err.is_invalid_data(), "{err:?}");

    // Restarting creates the dropped table again, and the retry completes
    // without duplicating what the failed attempt stored.
    let store = ClickHouseStore::connect(target.config()).await.unwrap();
    store.write(&data::metrics(22)).await.unwrap();
    for table in ["otel_metrics_gauge", "otel_metrics_sum", "otel_metrics_histogram", "otel_metrics_exp_histogram", "otel_metrics_summary"]
    {
        let r = store.query(&format!("SELECT count(*) FROM {table}")).await.unwrap();
        assert_eq!(r.rows, vec![vec![json!(1)]], "{table}");
    }
}
