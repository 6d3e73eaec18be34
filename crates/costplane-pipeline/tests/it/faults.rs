use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use costplane_pipeline::deadletter;
use costplane_pipeline::{
    BufferConfig, DiskBufferConfig, FsyncPolicy, Pipeline, PipelineConfig, RequestDecoder, RequestMeta, RetryPolicy, Submission,
};
use costplane_store::duckdb::DuckDbStore;
use costplane_store::{Store, StoreError, TelemetrySink};
use costplane_telemetry::{decode_request, Encoding, Limits, Signal, TelemetryBatch};

/// The real DuckDB store as the pipeline sees it (a `TelemetrySink`), plus
/// injected faults.
pub(crate) struct FaultyStore {
    pub(crate) inner: Arc<DuckDbStore>,
    pub(crate) panics_left: AtomicU32,
    pub(crate) outages_left: AtomicU32,
    /// Rows whose body names this tenant are refused as invalid data.
    pub(crate) reject_tenant: Option<String>,
    /// After storing a batch, never answer (a crash before the commit is logged).
    pub(crate) hang_after_write: AtomicBool,
    /// Every write fails as unavailable until this is cleared.
    pub(crate) down: AtomicBool,
}

impl FaultyStore {
    pub(crate) fn new(inner: Arc<DuckDbStore>) -> FaultyStore {
        FaultyStore {
            inner,
            panics_left: AtomicU32::new(0),
            outages_left: AtomicU32::new(0),
            reject_tenant: None,
            hang_after_write: AtomicBool::new(false),
            down: AtomicBool::new(false),
        }
    }
}

fn take_one(counter: &AtomicU32) -> bool {
    counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
}

#[async_trait]
impl TelemetrySink for FaultyStore {
    fn backend(&self) -> &'static str {
        "duckdb"
    }

    async fn write(&self, batch: &TelemetryBatch) -> Result<(), StoreError> {
        if take_one(&self.panics_left) {
            panic!("injected panic inside a store write");
        }
        if take_one(&self.outages_left) || self.down.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("injected outage".into()));
        }
        if let Some(bad) = &self.reject_tenant {
            if batch.logs.iter().any(|l| l.body.starts_with(bad.as_str())) {
                return Err(StoreError::Rejected(format!("Conversion Error: injected: rows of {bad} are invalid")));
            }
        }
        self.inner.write(batch).await?;
        if self.hang_after_write.load(Ordering::Acquire) {
            std::future::pending::<()>().await;
        }
        Ok(())
    }

    fn max_concurrent_writes(&self) -> usize {
        1
    }
}

pub(crate) struct JsonDecoder;

impl RequestDecoder for JsonDecoder {
    fn decode(&self, meta: &RequestMeta, body: &[u8]) -> Result<TelemetryBatch, String> {
        decode_request(meta.signal, meta.encoding, body, &Limits::default()).map(|c| c.batch).map_err(|e| e.to_string())
    }
}

/// An OTLP/JSON logs request of `n` records whose bodies start with `tenant`.
pub(crate) fn logs_body(tenant: &str, request: u64, n: u64) -> Vec<u8> {
    let records: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"timeUnixNano":"{}","severityNumber":9,"body":{{"stringValue":"{tenant} r{request} i{i}"}}}}"#,
                1_893_456_000_000_000_000u64 + request * 1000 + i
            )
        })
        .collect();
    format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"tenant.id","value":{{"stringValue":"{tenant}"}}}}]}},"scopeLogs":[{{"logRecords":[{}]}}]}}]}}"#,
        records.join(",")
    )
    .into_bytes()
}

pub(crate) fn submit(pipeline: &Pipeline, tenant: &str, request: u64, n: u64) {
    let body = logs_body(tenant, request, n);
    let meta = RequestMeta { signal: Signal::Logs, encoding: Encoding::Json, received_ns: 1, tenant: tenant.into(), sender: None };
    let batch = JsonDecoder.decode(&meta, &body).unwrap();
    assert_eq!(batch.logs.len() as u64, n);
    pipeline.submit(Submission { meta, body: &body, batch }).unwrap();
}

pub(crate) fn config(dir: &std::path::Path) -> PipelineConfig {
    PipelineConfig {
        batch_max_rows: 10_000,
        flush_interval: Duration::from_millis(200),
        retry: RetryPolicy { initial_interval: Duration::from_millis(5), max_interval: Duration::from_millis(20), max_elapsed: None },
        writers: 1,
        dead_letter_dir: dir.join("dead-letter"),
        ..PipelineConfig::default()
    }
}

pub(crate) fn disk(dir: &std::path::Path) -> BufferConfig {
    BufferConfig::Disk(DiskBufferConfig {
        dir: dir.join("buffer"),
        max_bytes: 64 << 20,
        segment_bytes: 1 << 20,
        fsync: FsyncPolicy::Interval(Duration::from_millis(50)),
    })
}

pub(crate) async fn count(store: &DuckDbStore, sql: &str) -> u64 {
    store.query(sql).await.unwrap().rows[0][0].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_write_is_retried_and_releases_its_memory() {
    let dir = tempfile::tempdir().unwrap();
    let duck = Arc::new(DuckDbStore::open(dir.path()).unwrap());
    let store = FaultyStore::new(Arc::clone(&duck));
    store.panics_left.store(2, Ordering::Release);
    let handle = Pipeline::start(config(dir.path()), Arc::new(store), BufferConfig::Memory, Arc::new(JsonDecoder)).unwrap();
    for r in 0..3 {
        submit(handle.pipeline(), "acme", r, 10);
    }
    let stats = handle.shutdown().await;
    assert_eq!(stats.write_panics, 2, "{stats:?}");
    assert_eq!(stats.written_rows, 30, "{stats:?}");
    assert_eq!(stats.queued_bytes, 0, "every reservation is released, the panicked attempts' too");
    assert_eq!(count(&duck, "SELECT count(*) FROM otel_logs").await, 30);
}

/// Counts the log rows of every batch it is told was stored.
#[derive(Default)]
struct StoredRows(std::sync::Mutex<Vec<String>>);

impl costplane_pipeline::StoredObserver for StoredRows {
    fn stored(&self, batch: &TelemetryBatch) {
        self.0.lock().unwrap().extend(batch.logs.iter().map(|l| l.body.clone()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stored_observer_sees_what_was_stored_once_and_nothing_refused() {
    let dir = tempfile::tempdir().unwrap();
    let duck = Arc::new(DuckDbStore::open(dir.path()).unwrap());
    let mut store = FaultyStore::new(Arc::clone(&duck));
    store.reject_tenant = Some("poison".into());
    // Two failed attempts first: the observer hears of the write that succeeds.
    store.outages_left.store(2, Ordering::Release);
    let observer = Arc::new(StoredRows::default());
    let handle = Pipeline::start_observed(
        config(dir.path()),
        Arc::new(store),
        disk(dir.path()),
        Arc::new(JsonDecoder),
        Some(Arc::clone(&observer) as Arc<dyn costplane_pipeline::StoredObserver>),
    )
    .unwrap();
    for (r, tenant) in ["a", "poison", "b"].iter().enumerate() {
        submit(handle.pipeline(), tenant, r as u64, 4);
    }
    let stats = handle.shutdown().await;
    assert_eq!(stats.dead_lettered_rows, 4, "{stats:?}");
    let mut seen = observer.0.lock().unwrap().clone();
    seen.sort();
    let mut stored: Vec<String> =
        duck.query("SELECT Body FROM otel_logs").await.unwrap().rows.iter().map(|r| r[0].as_str().unwrap().to_owned()).collect();
    stored.sort();
    // Two good requests × 4 records, each seen once; the refused one never.
    assert_eq!(seen.len(), 8, "{seen:?}");
    assert_eq!(seen, stored);
    assert!(seen.iter().all(|b| !b.starts_with("poison")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_invalid_request_costs_no_other_tenant_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let duck = Arc::new(DuckDbStore::open(dir.path()).unwrap());
    let mut store = FaultyStore::new(Arc::clone(&duck));
    store.reject_tenant = Some("poison".into());
    let handle = Pipeline::start(config(dir.path()), Arc::new(store), disk(dir.path()), Arc::new(JsonDecoder)).unwrap();
    // Seven requests merged into one batch (200 ms flush, 10k rows): the
    // fifth is the bad one.
    for (r, tenant) in ["a", "b", "c", "d", "poison", "e", "f"].iter().enumerate() {
        submit(handle.pipeline(), tenant, r as u64, 5);
    }
    let stats = handle.shutdown().await;
    assert_eq!(count(&duck, "SELECT count(*) FROM otel_logs").await, 30, "six good requests × 5 records");
    assert_eq!(count(&duck, "SELECT count(*) FROM otel_logs WHERE Body LIKE 'poison%'").await, 0);
    assert_eq!(stats.dead_lettered_rows, 5, "{stats:?}");
    assert_eq!(stats.dead_letters[0].tenant, "poison");
    assert_eq!(stats.dead_letters[0].reason, "rejected");
    let letters = deadletter::list(&dir.path().join("dead-letter")).unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].header.tenant, "poison");
    assert!(letters[0].header.error.contains("rows of poison are invalid"), "{:?}", letters[0].header);
    let (_, body) = deadletter::read(&letters[0].path).unwrap();
    assert_eq!(body, logs_body("poison", 4, 5), "the dead letter holds the request as accepted");
    assert_eq!(stats.buffer.records, 0, "everything is resolved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_any_length_is_retried_without_giving_up() {
    let dir = tempfile::tempdir().unwrap();
    let duck = Arc::new(DuckDbStore::open(dir.path()).unwrap());
    let store = FaultyStore::new(Arc::clone(&duck));
    // 300 failed attempts: with the old 5-minute budget scaled to these
    // 5-20 ms intervals (~250 attempts), the batch would have been dropped.
    store.outages_left.store(300, Ordering::Release);
    let handle = Pipeline::start(config(dir.path()), Arc::new(store), disk(dir.path()), Arc::new(JsonDecoder)).unwrap();
    for r in 0..4 {
        submit(handle.pipeline(), "acme", r, 25);
    }
    let stats = handle.shutdown().await;
    assert!(stats.retries >= 300, "{stats:?}");
    assert_eq!(stats.dead_lettered_rows, 0);
    assert_eq!(count(&duck, "SELECT count(*) FROM otel_logs").await, 100);
    assert_eq!(count(&duck, "SELECT count(DISTINCT Body) FROM otel_logs").await, 100);
}

/// A crash after the store committed a batch but before the buffer logged
/// the commit: the next start replays the batch under its logged id, and
/// the store's deduplication keeps it once.
#[test]
fn a_crash_between_store_and_commit_replays_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let duck = Arc::new(DuckDbStore::open(dir.path()).unwrap());

    let crashed = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    crashed.block_on(async {
        let store = FaultyStore::new(Arc::clone(&duck));
        store.hang_after_write.store(true, Ordering::Release);
        let handle = Pipeline::start(config(dir.path()), Arc::new(store), disk(dir.path()), Arc::new(JsonDecoder)).unwrap();
        for r in 0..5 {
            submit(handle.pipeline(), "acme", r, 20);
        }
        // Wait until the store holds the batch (the write then hangs).
        for _ in 0..200 {
            if count(&duck, "SELECT count(*) FROM otel_logs").await == 100 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(count(&duck, "SELECT count(*) FROM otel_logs").await, 100);
        std::mem::forget(handle);
    });
    // The crash: the runtime and every task go away without a commit.
    crashed.shutdown_background();

    let restarted = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    restarted.block_on(async {
        let store = FaultyStore::new(Arc::clone(&duck));
        let handle = Pipeline::start(config(dir.path()), Arc::new(store), disk(dir.path()), Arc::new(JsonDecoder)).unwrap();
        submit(handle.pipeline(), "acme", 99, 20);
        let stats = handle.shutdown().await;
        assert_eq!(stats.replayed_requests, 5, "{stats:?}");
        assert_eq!(count(&duck, "SELECT count(*) FROM otel_logs").await, 120, "the replayed batch is not stored twice");
        assert_eq!(count(&duck, "SELECT count(DISTINCT Body) FROM otel_logs").await, 120);
        assert_eq!(stats.buffer.records, 0);
    });
}
