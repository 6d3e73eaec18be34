//! A store outage longer than the memory budget can queue: the queue spills
//! to the disk buffer, its memory stays within the budget (plus the batches
//! the writer holds), and every accepted request is stored exactly once,
//! after the store comes back or after a crash.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use costplane_pipeline::{BufferConfig, DiskBufferConfig, FsyncPolicy, Pipeline, PipelineConfig, RequestDecoder, RequestMeta};
use costplane_store::duckdb::DuckDbStore;
use costplane_telemetry::{Encoding, Signal};

use crate::faults::{config, count, logs_body, submit, FaultyStore, JsonDecoder};

const BUDGET: usize = 32 << 10;
const BATCH_ROWS: usize = 50;
const ROWS_PER_REQUEST: u64 = 3;

fn spill_config(dir: &std::path::Path) -> PipelineConfig {
    PipelineConfig { memory_limit_bytes: BUDGET, batch_max_rows: BATCH_ROWS, ..config(dir) }
}

/// Small segments, so the backlog spans many of them and the reader crosses
/// segments that are deleted behind it.
fn small_segments(dir: &std::path::Path) -> BufferConfig {
    BufferConfig::Disk(DiskBufferConfig {
        dir: dir.join("buffer"),
        max_bytes: 256 << 20,
        segment_bytes: 64 << 10,
        fsync: FsyncPolicy::Interval(Duration::from_millis(50)),
    })
}

/// Bytes of decoded rows of one test request.
fn request_bytes() -> usize {
    let meta = RequestMeta { signal: Signal::Logs, encoding: Encoding::Json, received_ns: 1, tenant: "acme".into(), sender: None };
    JsonDecoder.decode(&meta, &logs_body("acme", 0, ROWS_PER_REQUEST)).unwrap().approx_bytes
}

async fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_keeps_the_queue_within_its_budget_and_stores_every_spilled_request_once() {
    let dir = tempfile::tempdir().unwrap();
    let duck = Arc::new(DuckDbStore::open(dir.path()).unwrap());
    let store = Arc::new(FaultyStore::new(Arc::clone(&duck)));
    store.down.store(true, Ordering::Release);
    let handle = Pipeline::start(spill_config(dir.path()), store.clone(), small_segments(dir.path()), Arc::new(JsonDecoder)).unwrap();
    let pipeline = handle.pipeline().clone();

    const REQUESTS: u64 = 2000;
    for r in 0..REQUESTS {
        submit(&pipeline, "acme", r, ROWS_PER_REQUEST);
    }
    let stats = pipeline.stats();
    assert_eq!(stats.buffer.records, REQUESTS, "every request is accepted and pending: {stats:?}");
    // A queue entry costs more than 96 bytes, so a 32 KiB budget holds
    // fewer than 32768 / 96 = 341 of them; the writer holds at most two
    // batches of 50 rows, 17 requests of 3 rows each, so 34. At least
    // 2000 - 341 - 34 = 1625 requests are in the disk buffer only.
    assert!(stats.buffer.spilled_records >= 1625, "{stats:?}");
    // Memory: the budget for the queue, plus the two batches the writer
    // holds (17 requests each).
    let writer_holds = 2 * 17 * request_bytes();
    assert!(
        pipeline.queued_bytes() <= BUDGET + writer_holds,
        "queued {} bytes, budget {BUDGET} + writer {writer_holds}",
        pipeline.queued_bytes()
    );

    // The store comes back: everything is written, once, and the queue
    // takes requests in memory again.
    store.down.store(false, Ordering::Release);
    pipeline.wait_stored(std::time::Instant::now() + Duration::from_secs(120)).await;
    let stats = pipeline.stats();
    assert_eq!((stats.buffer.records, stats.buffer.spilled_records), (0, 0), "{stats:?}");
    let rows = REQUESTS * ROWS_PER_REQUEST;
    assert_eq!(count(&duck, "SELECT count(*) FROM otel_logs").await, rows);
    assert_eq!(count(&duck, "SELECT count(DISTINCT Body) FROM otel_logs").await, rows, "no request stored twice");
    assert_eq!(pipeline.queued_bytes(), 0, "every reservation is released");

    submit(&pipeline, "acme", REQUESTS, ROWS_PER_REQUEST);
    wait_for("the request after the spill", Duration::from_secs(30), || pipeline.stats().buffer.records == 0).await;
    assert_eq!(pipeline.stats().buffer.spilled_records, 0);
    let stats = handle.shutdown().await;
    assert_eq!(stats.dead_lettered_rows, 0);
    assert_eq!(count(&duck, "SELECT count(DISTINCT Body) FROM otel_logs").await, rows + ROWS_PER_REQUEST);
    // Segments whose requests are all committed are gone.
    let left: u64 = std::fs::read_dir(dir.path().join("buffer"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wal"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(left < 64 << 10, "resolved segments are deleted, {left} bytes left");
}

#[test]
fn requests_spilled_when_the_process_dies_are_replayed_once() {
    let dir = tempfile::tempdir().unwrap();
    let duck = Arc::new(DuckDbStore::open(dir.path()).unwrap());
    const REQUESTS: u64 = 600;

    let crashed = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    crashed.block_on(async {
        let store = Arc::new(FaultyStore::new(Arc::clone(&duck)));
        store.down.store(true, Ordering::Release);
        let handle = Pipeline::start(spill_config(dir.path()), store, small_segments(dir.path()), Arc::new(JsonDecoder)).unwrap();
        for r in 0..REQUESTS {
            submit(handle.pipeline(), "acme", r, ROWS_PER_REQUEST);
        }
        assert!(handle.pipeline().stats().buffer.spilled_records > 0, "the queue spilled");
        std::mem::forget(handle);
    });
    // kill -9: the runtime and every task go away, nothing is committed.
    crashed.shutdown_background();

    let restarted = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    restarted.block_on(async {
        let store = Arc::new(FaultyStore::new(Arc::clone(&duck)));
        let handle = Pipeline::start(spill_config(dir.path()), store, small_segments(dir.path()), Arc::new(JsonDecoder)).unwrap();
        handle.pipeline().wait_stored(std::time::Instant::now() + Duration::from_secs(120)).await;
        let stats = handle.shutdown().await;
        assert_eq!(stats.replayed_requests, REQUESTS, "{stats:?}");
        assert_eq!(stats.buffer.records, 0);
        let rows = REQUESTS * ROWS_PER_REQUEST;
        assert_eq!(count(&duck, "SELECT count(*) FROM otel_logs").await, rows);
        assert_eq!(count(&duck, "SELECT count(DISTINCT Body) FROM otel_logs").await, rows);
    });
}
