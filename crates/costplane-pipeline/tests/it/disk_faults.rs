//! The disk buffer under disk faults, through the whole pipeline and the
//! real embedded store: a corrupt record in the middle of a segment, and a
//! log that cannot take batch intents.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use costplane_pipeline::buffer::memfs::{Fault, FsOp, MemFs};
use costplane_pipeline::buffer::record::{self, Record};
use costplane_pipeline::{Pipeline, PipelineConfig, RequestDecoder, RequestMeta, Submission, SubmitError};
use costplane_store::duckdb::DuckDbStore;
use costplane_telemetry::{Encoding, Signal};

use crate::faults::{config, count, disk, logs_body, submit, FaultyStore, JsonDecoder};

fn try_submit(pipeline: &Pipeline, tenant: &str, request: u64, n: u64) -> Result<(), SubmitError> {
    let body = logs_body(tenant, request, n);
    let meta = RequestMeta { signal: Signal::Logs, encoding: Encoding::Json, received_ns: 1, tenant: tenant.into(), sender: None };
    let batch = JsonDecoder.decode(&meta, &body).unwrap();
    pipeline.submit(Submission { meta, body: &body, batch })
}

/// Every request record in the buffer's segments: file, offset, length.
fn request_records(buffer: &Path) -> Vec<(PathBuf, usize, usize)> {
    let mut segments: Vec<PathBuf> =
        std::fs::read_dir(buffer).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension() == Some("wal".as_ref())).collect();
    segments.sort();
    let mut found = Vec::new();
    for path in segments {
        let bytes = std::fs::read(&path).unwrap();
        let mut offset = 0;
        while offset < bytes.len() {
            let (rec, n) = record::decode(&bytes[offset..]).unwrap();
            if matches!(rec, Record::Request { .. }) {
                found.push((path.clone(), offset, n));
            }
            offset += n;
        }
    }
    found
}

#[test]
fn a_corrupt_record_mid_segment_is_quarantined_and_counted_and_every_other_request_stored() {
    let dir = tempfile::tempdir().unwrap();
    let duck = Arc::new(DuckDbStore::open(dir.path()).unwrap());
    let short = PipelineConfig { shutdown_timeout: Duration::from_millis(300), ..config(dir.path()) };

    // A run whose store is down: five requests stay in the buffer.
    let down = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    down.block_on(async {
        let store = FaultyStore::new(Arc::clone(&duck));
        store.outages_left.store(u32::MAX, Ordering::Release);
        let handle = Pipeline::start(short.clone(), Arc::new(store), disk(dir.path()), Arc::new(JsonDecoder)).unwrap();
        for r in 0..5 {
            submit(handle.pipeline(), "acme", r, 10);
        }
        tokio::time::sleep(Duration::from_millis(400)).await; // batched, intent logged, writes failing
        let stats = handle.shutdown().await;
        assert_eq!(stats.buffer.records, 5);
    });
    drop(down);

    // Flip a bit in the body of the third request.
    let buffer = dir.path().join("buffer");
    let records = request_records(&buffer);
    assert_eq!(records.len(), 5);
    let (path, offset, len) = records[2].clone();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offset + len - 20] ^= 0x04;
    std::fs::write(&path, &bytes).unwrap();

    let up = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    up.block_on(async {
        let store = FaultyStore::new(Arc::clone(&duck));
        let handle = Pipeline::start(config(dir.path()), Arc::new(store), disk(dir.path()), Arc::new(JsonDecoder)).unwrap();
        let stats = handle.shutdown().await;
        assert_eq!(stats.buffer.corrupt_records, 1, "{stats:?}");
        assert_eq!(stats.replayed_requests, 4, "{stats:?}");
        assert_eq!(stats.buffer.records, 0, "{stats:?}");
        assert_eq!(count(&duck, "SELECT count(*) FROM otel_logs").await, 40, "the four intact requests are stored");
        assert_eq!(count(&duck, "SELECT count(DISTINCT Body) FROM otel_logs").await, 40);
        assert_eq!(count(&duck, "SELECT count(*) FROM otel_logs WHERE Body LIKE 'acme r2 %'").await, 0);
        for r in [0, 1, 3, 4] {
            let sql = format!("SELECT count(*) FROM otel_logs WHERE Body LIKE 'acme r{r} %'");
            assert_eq!(count(&duck, &sql).await, 10, "request {r}");
        }
    });
    let quarantine: Vec<PathBuf> = std::fs::read_dir(buffer.join("quarantine")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(quarantine.len(), 1, "{quarantine:?}");
    let segment = path.file_stem().unwrap().to_str().unwrap();
    assert_eq!(quarantine[0].file_name().unwrap().to_str().unwrap(), format!("{segment}-{offset:020}.bin"));
    assert_eq!(std::fs::read(&quarantine[0]).unwrap(), &bytes[offset..offset + len], "the corrupt record's bytes, as found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_intent_cannot_be_logged_is_not_written_and_requests_are_refused_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let duck = Arc::new(DuckDbStore::open(dir.path()).unwrap());
    let fs = MemFs::new();
    let store = FaultyStore::new(Arc::clone(&duck));
    let handle =
        Pipeline::start_on(config(dir.path()), Arc::new(store), disk(dir.path()), Arc::new(fs.clone()), Arc::new(JsonDecoder)).unwrap();
    // Every fsync fails: request records are written (fsync per interval),
    // but no batch intent can be made durable.
    for _ in 0..100_000 {
        fs.inject(FsOp::SyncData, Fault::Eio);
    }
    let mut accepted = 0;
    for r in 0..3 {
        try_submit(handle.pipeline(), "acme", r, 10).unwrap();
        accepted += 1;
    }
    let mut refused = false;
    for r in 100..400 {
        match try_submit(handle.pipeline(), "acme", r, 10) {
            Ok(()) => accepted += 1,
            Err(SubmitError::Buffer(why)) => {
                assert!(why.contains("batches cannot be logged"), "{why}");
                refused = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "requests are refused while intents fail");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(count(&duck, "SELECT count(*) FROM otel_logs").await, 0, "nothing is written around the log");

    // The disk recovers: the batch is logged, written, and requests flow again.
    fs.clear_faults();
    let mut taken = false;
    for r in 1000..1300 {
        if try_submit(handle.pipeline(), "acme", r, 10).is_ok() {
            accepted += 1;
            taken = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(taken, "requests are taken again once intents can be logged");
    let stats = handle.shutdown().await;
    assert_eq!(stats.buffer.records, 0, "{stats:?}");
    assert_eq!(count(&duck, "SELECT count(*) FROM otel_logs").await, accepted * 10);
    assert_eq!(count(&duck, "SELECT count(DISTINCT Body) FROM otel_logs").await, accepted * 10);
}

/// A buffer filesystem that fills up under load, with the first batch
/// stored but its commit never logged, then a crash: every acknowledged
/// request is stored after the restart, none twice (the stored batch is
/// replayed under its id), and the requests the full disk refused are not
/// stored at all.
#[test]
fn a_full_buffer_disk_refuses_and_after_a_crash_every_acknowledged_request_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let duck = Arc::new(DuckDbStore::open(dir.path()).unwrap());
    let fs = MemFs::new();
    let mut acked: Vec<u64> = Vec::new();
    let mut refused = 0;

    let crashed = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    crashed.block_on(async {
        let store = FaultyStore::new(Arc::clone(&duck));
        store.hang_after_write.store(true, Ordering::Release);
        let handle =
            Pipeline::start_on(config(dir.path()), Arc::new(store), disk(dir.path()), Arc::new(fs.clone()), Arc::new(JsonDecoder)).unwrap();
        // Room for about twenty requests: the first batch is logged and
        // stored (then its write never returns), the rest fill the disk.
        fs.set_capacity(Some(fs.used() + 16_000));
        for r in 0..40 {
            match try_submit(handle.pipeline(), "acme", r, 5) {
                Ok(()) => acked.push(r),
                Err(SubmitError::Buffer(_) | SubmitError::BufferFull { .. }) => refused += 1,
                Err(e) => panic!("{e}"),
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        let stored = count(&duck, "SELECT count(*) FROM otel_logs").await;
        assert!(stored > 0 && stored < acked.len() as u64 * 5, "stored {stored} rows of {} acknowledged requests", acked.len());
        std::mem::forget(handle);
    });
    // The crash: every task goes away, whatever it was doing.
    crashed.shutdown_background();
    assert!(!acked.is_empty() && refused > 0, "acked {acked:?}, refused {refused}");

    fs.set_capacity(None);
    let restarted = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    restarted.block_on(async {
        let store = FaultyStore::new(Arc::clone(&duck));
        let handle =
            Pipeline::start_on(config(dir.path()), Arc::new(store), disk(dir.path()), Arc::new(fs.clone()), Arc::new(JsonDecoder)).unwrap();
        let stats = handle.shutdown().await;
        assert_eq!(stats.replayed_requests, acked.len() as u64, "nothing was committed before the crash");
        assert_eq!(stats.buffer.records, 0, "{stats:?}");
        assert_eq!(count(&duck, "SELECT count(*) FROM otel_logs").await, acked.len() as u64 * 5, "acked {acked:?}");
        assert_eq!(count(&duck, "SELECT count(DISTINCT Body) FROM otel_logs").await, acked.len() as u64 * 5);
        for r in 0..40 {
            let sql = format!("SELECT count(*) FROM otel_logs WHERE Body LIKE 'acme r{r} %'");
            let want = if acked.contains(&r) { 5 } else { 0 };
            assert_eq!(count(&duck, &sql).await, want, "request {r}");
        }
    });
}
