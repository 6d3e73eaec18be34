//! ClickHouse-specific checks on the real engine: schema creation and its
//! idempotence, the DDL's production features, version refusal, and the
//! store's behaviour across an outage of the server.

use costplane_store::clickhouse::ClickHouseStore;
use costplane_store::{Store, StoreError};
use serde_json::json;

use crate::data;
use crate::support::{ChdbFront, ClickHouseTarget};

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
    assert_eq!(versions.rows, vec![vec![json!(1), json!(2)]]);

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
    let lookup = store
        .query("SELECT count(*) FROM otel_traces_trace_id_ts WHERE TraceId = 'abababababababab0000000000000001'")
        .await
        .unwrap();
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
    assert!(matches!(&err, StoreError::Schema(m) if m.contains("version 99, newer than the version 2")), "{err}");
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
