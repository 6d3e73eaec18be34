//! costplane-pipeline: the buffer, batcher and store writer between the OTLP
//! receivers and the store.
//!
//! Invariants (what "accepted" promises):
//! - **Accepted means will be stored.** With the disk buffer (the default) a
//!   request is acknowledged only after its body is in the write-ahead log
//!   ([`buffer`]); a crash loses nothing acknowledged and the next start
//!   replays what the store had not committed, before new data. With the
//!   memory buffer, a crash loses what was not yet stored.
//! - **Never give up on a retryable error.** Writes are retried with capped
//!   exponential back-off and jitter for as long as it takes; the buffer
//!   absorbs an outage, then back-pressure (a refused submit, which the
//!   receivers answer with a retryable status) reaches the clients.
//!   `retry_max_elapsed` is opt-in; when set and spent, the batch's requests
//!   go to the dead-letter area, not away.
//! - **One bad request costs no one else.** A batch keeps the requests it
//!   was merged from. When the store rejects its data as invalid, the batch
//!   is bisected down to the request(s) at fault; the rest are stored and
//!   the bad ones are written to the dead-letter area ([`deadletter`]) with
//!   the store's error.
//! - **Exactly once.** Every write of a batch carries the same id (logged
//!   with its composition before the first attempt, derived for bisected
//!   halves), and `TelemetrySink::write` is idempotent per id, so retries and
//!   replays store nothing twice.
//! - **Nothing is written that the log does not hold.** With the disk
//!   buffer, a batch whose intent cannot be logged (ENOSPC, EIO) is not
//!   written: it waits, retried with the write back-off, and meanwhile
//!   submits are refused with a retryable error. A commit that cannot be
//!   logged is owed by the buffer (see [`buffer`]).
//! - **Bounded memory.** Decoded rows held in memory reserve their size
//!   ([`memory`], RAII guards released on every path, panics included), and
//!   so does every request's entry in the queue (its metadata, tenant
//!   included, and bookkeeping). With the disk buffer, a request whose rows
//!   do not fit is queued as an entry only and decoded again when the writer
//!   reaches it; when not even its entry fits, the queue *spills*: that
//!   request and every one logged after it stay in the disk buffer only,
//!   with nothing per request in memory, and the writer reads them back in
//!   log order ([`buffer::LogCursor`]) once it has drained the queue, a
//!   chunk at a time; when it has taken the last one the queue takes
//!   entries again. So an outage of any length holds at most
//!   `memory_limit_bytes` of entries and rows, and the disk buffer's
//!   `max_bytes` bounds the rest. With the memory buffer a request that
//!   does not fit is refused. A panicking write counts as a failed attempt.
//! - **Observers see what is stored.** A [`StoredObserver`] is handed
//!   every batch after each write of it that succeeded (a replayed batch
//!   the store already held included), never one that was refused or not
//!   yet written; it must count what it sees once.
//! - **Bounded shutdown.** [`PipelineHandle::shutdown`] drains until its
//!   deadline; what is not stored by then stays in the disk buffer.

pub mod buffer;
pub mod deadletter;
mod memory;
mod stats;
mod writer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use costplane_store::TelemetrySink;
use costplane_telemetry::TelemetryBatch;
use rand::Rng;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use buffer::{BufferError, DiskBuffer, DiskBufferConfig, FsyncPolicy, RequestMeta, Sender};
pub use stats::{
    BufferSnapshot, DeadLetterCount, Histogram, HistogramSnapshot, PipelineStats, SignalSnapshot, StatsSnapshot, LATENCY_BUCKETS,
};

use buffer::{LogCursor, RecordLocation};
use memory::{MemoryBudget, Reservation};

/// Retry policy for store writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial_interval: Duration,
    pub max_interval: Duration,
    /// When set, a batch still failing after this long is dead-lettered.
    /// Unset (the default): retried for as long as it takes.
    pub max_elapsed: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { initial_interval: Duration::from_secs(1), max_interval: Duration::from_secs(30), max_elapsed: None }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`: exponential, capped, with
    /// ±25% jitter so that many writers do not retry in step.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.initial_interval.as_secs_f64() * 2f64.powi(attempt.min(30) as i32);
        let capped = base.min(self.max_interval.as_secs_f64());
        let jitter = rand::rng().random_range(0.75..=1.25);
        Duration::from_secs_f64(capped * jitter)
    }
}

/// Pipeline settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Most bytes of decoded rows held in memory.
    pub memory_limit_bytes: usize,
    /// A batch is flushed when it holds this many rows...
    pub batch_max_rows: usize,
    /// ...or when its oldest rows have waited this long.
    pub flush_interval: Duration,
    pub retry: RetryPolicy,
    /// Batches written at the same time (each retried on its own).
    pub writers: usize,
    /// How long a shutdown may drain before leaving the rest in the buffer.
    pub shutdown_timeout: Duration,
    /// Where refused requests are kept (`DATA_DIR/dead-letter`).
    pub dead_letter_dir: PathBuf,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            memory_limit_bytes: 64 * 1024 * 1024,
            batch_max_rows: 8192,
            flush_interval: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            writers: 2,
            shutdown_timeout: Duration::from_secs(30),
            dead_letter_dir: PathBuf::from("./costplane-data/dead-letter"),
        }
    }
}

/// Where accepted requests wait for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BufferConfig {
    Memory,
    Disk(DiskBufferConfig),
}

/// Decodes a buffered request body again (spilled or replayed requests):
/// the same conversion and metering the receivers apply.
pub trait RequestDecoder: Send + Sync + 'static {
    fn decode(&self, meta: &RequestMeta, body: &[u8]) -> Result<TelemetryBatch, String>;
}

/// Told of every batch once the store holds it: after each write that
/// succeeded, a replayed batch's included (which the store may have held
/// already), in the order the writes ended. What is metered from stored
/// rows (Kubernetes samples) is metered here, so that it counts exactly
/// what was stored, replays and restarts included.
pub trait StoredObserver: Send + Sync + 'static {
    fn stored(&self, batch: &TelemetryBatch);
}

/// An accepted export request: its body as received (decompressed) and the
/// rows decoded from it.
#[derive(Debug)]
pub struct Submission<'a> {
    pub meta: RequestMeta,
    pub body: &'a [u8],
    pub batch: TelemetryBatch,
}

/// Why a request was not accepted.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error("the ingest queue is full ({used} of {limit} bytes in use); retry later")]
    Full { used: usize, limit: usize },
    #[error("the disk buffer is full ({used} of {limit} bytes; the store is behind or down); retry later")]
    BufferFull { used: u64, limit: u64 },
    #[error("the disk buffer cannot be written ({0}); retry later")]
    Buffer(String),
    #[error("the server is shutting down; retry against another instance or later")]
    ShuttingDown,
}

/// Errors starting the pipeline.
#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(transparent)]
    Buffer(#[from] BufferError),
}

/// One request inside the pipeline.
pub(crate) struct Part {
    pub(crate) record_id: u64,
    /// `None` for costplane's own rows (API query metering), which are not logged.
    pub(crate) meta: Option<RequestMeta>,
    /// Where the disk buffer holds the request.
    pub(crate) location: Option<RecordLocation>,
    /// The request body, with the memory buffer (for dead-lettering).
    pub(crate) body: Option<Bytes>,
    pub(crate) rows: usize,
    pub(crate) approx_bytes: usize,
    pub(crate) reservation: Option<Reservation>,
}

/// What the receivers hand to the batcher.
pub(crate) enum Entry {
    /// A request; `batch` is `None` when its rows are only on disk.
    Request { part: Part, batch: Option<Box<TelemetryBatch>> },
    /// A batch logged by an earlier run and not committed: written again as
    /// it was composed, with its id.
    Replay { batch_id: u64, parts: Vec<Part> },
}

/// What a queued request's entry costs besides its rows: the entry, the
/// channel slot and the lag bookkeeping, plus its metadata's strings.
fn entry_bytes(meta: Option<&RequestMeta>) -> usize {
    const FIXED: usize = std::mem::size_of::<Entry>() + 96;
    FIXED + meta.map_or(0, |m| m.tenant.len() + m.sender.as_ref().map_or(0, |s| s.tenant.len() + s.project.as_ref().map_or(0, String::len)))
}

/// The receivers' queue: the writer's channel (gone once shutting down),
/// and whether requests are being kept in the disk buffer only.
pub(crate) struct Queue {
    pub(crate) tx: Option<mpsc::UnboundedSender<Entry>>,
    pub(crate) spill: Option<Spill>,
}

/// Requests in the disk buffer only: every request logged from `from` on,
/// read back by the writer in log order. Changed only under the queue's
/// lock, which submits hold across their append, so a request is either
/// queued or spilled, never both nor neither.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spill {
    /// Where the writer reads next.
    pub(crate) from: LogCursor,
    /// Spilled requests not read back yet.
    pub(crate) requests: u64,
    /// When the oldest of them was accepted (ns).
    pub(crate) oldest_ns: i64,
}

/// The receivers' side of the pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("used", &self.inner.memory.used()).finish()
    }
}

pub(crate) struct Inner {
    pub(crate) queue: Mutex<Queue>,
    /// Wakes the writer when the queue spills (nothing comes down the
    /// channel meanwhile).
    pub(crate) spill_wake: tokio::sync::Notify,
    pub(crate) memory: Arc<MemoryBudget>,
    closed: AtomicBool,
    pub(crate) stats: PipelineStats,
    pub(crate) disk: Option<Arc<DiskBuffer>>,
    next_record: AtomicU64,
    /// The disk buffer cannot log batch intents: requests are refused
    /// until it can (nothing is written to the store around the log).
    pub(crate) log_failing: AtomicBool,
    /// Corrupt stretches of the disk buffer skipped at start.
    corrupt_records: u64,
    /// Unresolved requests: record id → acceptance time (ns), for the lag.
    pub(crate) pending: Mutex<BTreeMap<u64, i64>>,
}

impl Inner {
    /// Where the queue stands on spilling (a copy, read under its lock).
    pub(crate) fn spill(&self) -> Option<Spill> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).spill
    }
}

/// Owns the writer task; `shutdown` drains it.
pub struct PipelineHandle {
    pipeline: Pipeline,
    task: JoinHandle<()>,
    cancel: CancellationToken,
    shutdown_timeout: Duration,
    fsync_task: Option<JoinHandle<()>>,
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl Pipeline {
    /// Opens the buffer, queues what an earlier run left in it, and starts
    /// the batcher/writer task over `store`.
    pub fn start(
        config: PipelineConfig,
        store: Arc<dyn TelemetrySink>,
        buffer: BufferConfig,
        decoder: Arc<dyn RequestDecoder>,
    ) -> Result<PipelineHandle, PipelineError> {
        Pipeline::start_observed(config, store, buffer, decoder, None)
    }

    /// [`Pipeline::start`] with an observer of every stored batch.
    pub fn start_observed(
        config: PipelineConfig,
        store: Arc<dyn TelemetrySink>,
        buffer: BufferConfig,
        decoder: Arc<dyn RequestDecoder>,
        observer: Option<Arc<dyn StoredObserver>>,
    ) -> Result<PipelineHandle, PipelineError> {
        Pipeline::start_with(config, store, buffer, Arc::new(buffer::fs::StdFs), decoder, observer)
    }

    /// [`Pipeline::start`] with the disk buffer on `fs` (tests use an
    /// in-memory filesystem that injects faults).
    pub fn start_on(
        config: PipelineConfig,
        store: Arc<dyn TelemetrySink>,
        buffer: BufferConfig,
        fs: Arc<dyn buffer::fs::BufferFs>,
        decoder: Arc<dyn RequestDecoder>,
    ) -> Result<PipelineHandle, PipelineError> {
        Pipeline::start_with(config, store, buffer, fs, decoder, None)
    }

    fn start_with(
        config: PipelineConfig,
        store: Arc<dyn TelemetrySink>,
        buffer: BufferConfig,
        fs: Arc<dyn buffer::fs::BufferFs>,
        decoder: Arc<dyn RequestDecoder>,
        observer: Option<Arc<dyn StoredObserver>>,
    ) -> Result<PipelineHandle, PipelineError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (disk, recovery) = match buffer {
            BufferConfig::Memory => (None, None),
            BufferConfig::Disk(c) => {
                let (disk, recovery) = DiskBuffer::open_with(c, fs)?;
                (Some(Arc::new(disk)), Some(recovery))
            }
        };
        let inner = Arc::new(Inner {
            queue: Mutex::new(Queue { tx: Some(tx.clone()), spill: None }),
            spill_wake: tokio::sync::Notify::new(),
            memory: MemoryBudget::new(config.memory_limit_bytes),
            closed: AtomicBool::new(false),
            stats: PipelineStats::default(),
            disk: disk.clone(),
            next_record: AtomicU64::new(1),
            log_failing: AtomicBool::new(false),
            corrupt_records: recovery.as_ref().map_or(0, |r| r.corrupt.len() as u64),
            pending: Mutex::new(BTreeMap::new()),
        });
        if let Some(recovery) = recovery {
            let (batches, requests) = (recovery.batches.len(), recovery.requests.len());
            let mut pending = inner.pending.lock().unwrap_or_else(|p| p.into_inner());
            let mut on_disk = |r: buffer::PendingRequest| {
                pending.insert(r.record_id, r.meta.received_ns);
                inner.stats.replayed_requests.fetch_add(1, Ordering::Relaxed);
                Part {
                    record_id: r.record_id,
                    meta: Some(r.meta),
                    location: Some(r.location),
                    body: None,
                    rows: 0,
                    approx_bytes: 0,
                    reservation: None,
                }
            };
            for (batch_id, reqs) in recovery.batches {
                let parts = reqs.into_iter().map(&mut on_disk).collect();
                let _ = tx.send(Entry::Replay { batch_id, parts });
            }
            for r in recovery.requests {
                let _ = tx.send(Entry::Request { part: on_disk(r), batch: None });
            }
            if batches + requests > 0 {
                tracing::info!(batches, requests, "replaying what the disk buffer holds before accepting new data");
            }
            if !recovery.corrupt.is_empty() {
                tracing::error!(
                    corrupt = recovery.corrupt.len(),
                    "the disk buffer held corrupt records: they were skipped (their bytes are in buffer.dir/quarantine) and everything else is replayed"
                );
            }
        }
        drop(tx);
        let pipeline = Pipeline { inner };
        let cancel = CancellationToken::new();
        let writer = Arc::new(writer::Writer {
            config: config.clone(),
            store,
            pipeline: pipeline.clone(),
            decoder,
            observer,
            cancel: cancel.clone(),
        });
        let task = tokio::spawn(writer.run(rx));
        let fsync_task = disk.as_ref().and_then(|d| d.fsync_interval().map(|every| (Arc::clone(d), every))).map(|(d, every)| {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        () = cancel.cancelled() => return,
                    }
                    let d = Arc::clone(&d);
                    match tokio::task::spawn_blocking(move || d.sync_if_dirty()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::error!(error = %e, "disk buffer fsync failed"),
                        Err(e) => tracing::error!(error = %e, "disk buffer fsync task failed"),
                    }
                }
            })
        });
        Ok(PipelineHandle { pipeline, task, cancel, shutdown_timeout: config.shutdown_timeout, fsync_task })
    }

    /// Accepts an export request: logs it (disk buffer) and queues its rows.
    /// An error means nothing was accepted; the client should retry.
    pub fn submit(&self, s: Submission<'_>) -> Result<(), SubmitError> {
        let Submission { meta, body, batch } = s;
        if batch.is_empty() {
            return Ok(());
        }
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(SubmitError::ShuttingDown);
        }
        let rows = batch.rows();
        let entry = entry_bytes(Some(&meta));
        // Held across the append, so a request is either logged and queued
        // (or spilled), or neither (no record a client was told to resend).
        let mut queue = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
        let queue = &mut *queue;
        // A closed channel (the writer is gone) takes nothing: check before
        // logging, so no record is written for a request the client resends.
        let Some(sender) = queue.tx.as_ref().filter(|s| !s.is_closed()) else { return Err(SubmitError::ShuttingDown) };
        let refused = |stats: &PipelineStats| {
            stats.refused_rows.fetch_add(rows as u64, Ordering::Relaxed);
            stats.signal(meta.signal).refused_items.fetch_add(rows as u64, Ordering::Relaxed);
        };
        let (record_id, location, body_copy, reservation, in_memory) = match &self.inner.disk {
            Some(_) if self.inner.log_failing.load(Ordering::Acquire) => {
                return Err(SubmitError::Buffer("batches cannot be logged to it".into()));
            }
            Some(disk) => {
                let (id, loc) = disk.append_request(&meta, body).map_err(|e| match e {
                    BufferError::Full { used, limit } => {
                        refused(&self.inner.stats);
                        SubmitError::BufferFull { used, limit }
                    }
                    other => {
                        tracing::error!(error = %other, "cannot write to the disk buffer; refusing requests");
                        SubmitError::Buffer(other.to_string())
                    }
                })?;
                // Rows stay in memory when they fit; otherwise the entry
                // alone; otherwise the request is in the log only.
                // While spilled, every request stays in the log only (the
                // writer reads them in order); otherwise its rows stay in
                // memory when they fit, else its entry alone, else it
                // starts a spill.
                if let Some(spill) = &mut queue.spill {
                    spill.requests += 1;
                    self.count_accepted(meta.signal, rows, body.len());
                    return Ok(());
                }
                let fits = |bytes| self.inner.memory.try_reserve(bytes).ok();
                match fits(batch.approx_bytes + entry) {
                    Some(r) => (id, Some(loc), None, Some(r), true),
                    None => match fits(entry) {
                        Some(r) => (id, Some(loc), None, Some(r), false),
                        None => {
                            tracing::warn!(
                                used = self.inner.memory.used(),
                                limit = self.inner.memory.limit(),
                                "the ingest queue is at its memory budget; new requests are kept in the disk buffer only until the store catches up"
                            );
                            queue.spill = Some(Spill { from: loc.into(), requests: 1, oldest_ns: meta.received_ns });
                            self.inner.spill_wake.notify_one();
                            self.count_accepted(meta.signal, rows, body.len());
                            return Ok(());
                        }
                    },
                }
            }
            None => {
                let size = batch.approx_bytes + body.len() + entry;
                let reservation = self.inner.memory.try_reserve(size).map_err(|used| {
                    refused(&self.inner.stats);
                    SubmitError::Full { used, limit: self.inner.memory.limit() }
                })?;
                (self.inner.next_record.fetch_add(1, Ordering::Relaxed), None, Some(Bytes::copy_from_slice(body)), Some(reservation), true)
            }
        };
        let (received_ns, signal) = (meta.received_ns, meta.signal);
        let approx_bytes = batch.approx_bytes;
        let batch = in_memory.then(|| Box::new(batch));
        let part = Part { record_id, meta: Some(meta), location, body: body_copy, rows, approx_bytes, reservation };
        self.inner.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(record_id, received_ns);
        if sender.send(Entry::Request { part, batch }).is_err() {
            self.inner.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&record_id);
            return Err(SubmitError::ShuttingDown);
        }
        self.count_accepted(signal, rows, body.len());
        Ok(())
    }

    fn count_accepted(&self, signal: costplane_telemetry::Signal, rows: usize, body_bytes: usize) {
        self.inner.stats.accepted_rows.fetch_add(rows as u64, Ordering::Relaxed);
        let counters = self.inner.stats.signal(signal);
        counters.accepted_items.fetch_add(rows as u64, Ordering::Relaxed);
        counters.accepted_bytes.fetch_add(body_bytes as u64, Ordering::Relaxed);
    }

    /// Counts items a receiver dropped from a request as invalid (its OTLP
    /// partial-success answer), for `/metrics`.
    pub fn record_rejected(&self, signal: costplane_telemetry::Signal, items: u64) {
        if items > 0 {
            self.inner.stats.signal(signal).rejected_items.fetch_add(items, Ordering::Relaxed);
        }
    }

    /// Queues costplane's own rows (API query metering): held in memory
    /// only, refused when memory is short.
    pub fn submit_internal(&self, batch: TelemetryBatch) -> Result<(), SubmitError> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(SubmitError::ShuttingDown);
        }
        let reservation = self
            .inner
            .memory
            .try_reserve(batch.approx_bytes + entry_bytes(None))
            .map_err(|used| SubmitError::Full { used, limit: self.inner.memory.limit() })?;
        let part = Part {
            record_id: 0,
            meta: None,
            location: None,
            body: None,
            rows: batch.rows(),
            approx_bytes: batch.approx_bytes,
            reservation: Some(reservation),
        };
        let queue = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
        match queue.tx.as_ref() {
            Some(sender) if sender.send(Entry::Request { part, batch: Some(Box::new(batch)) }).is_ok() => Ok(()),
            _ => Err(SubmitError::ShuttingDown),
        }
    }

    /// Bytes of decoded rows held in memory.
    pub fn queued_bytes(&self) -> usize {
        self.inner.memory.used()
    }

    /// Waits until nothing accepted is left to store (every request
    /// resolved, no rows queued in memory), or until `deadline` under a
    /// load that never lets the queue empty.
    pub async fn wait_stored(&self, deadline: std::time::Instant) {
        while std::time::Instant::now() < deadline {
            // Spill first: the writer moves what it reads back into
            // `pending` before it ends the spill.
            let spilled = self.inner.spill().is_some();
            let unresolved = spilled || !self.inner.pending.lock().unwrap_or_else(|p| p.into_inner()).is_empty();
            if !unresolved && self.queued_bytes() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Ready means: accepting, and the last store write did not fail.
    pub fn is_ready(&self) -> bool {
        !self.inner.closed.load(Ordering::Acquire) && self.inner.stats.store_healthy.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> StatsSnapshot {
        let spill = self.inner.spill();
        let (records, oldest_ns) = {
            let pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
            let oldest = pending.values().next().copied().into_iter().chain(spill.map(|s| s.oldest_ns)).min();
            (pending.len() as u64 + spill.map_or(0, |s| s.requests), oldest)
        };
        let oldest_age_seconds = oldest_ns.map_or(0.0, |t| ((now_ns() - t).max(0) as f64) / 1e9);
        let buffer = match &self.inner.disk {
            Some(d) => BufferSnapshot {
                kind: "disk",
                bytes: d.bytes(),
                limit_bytes: d.max_bytes(),
                records,
                spilled_records: spill.map_or(0, |s| s.requests),
                oldest_age_seconds,
                corrupt_records: self.inner.corrupt_records,
            },
            None => BufferSnapshot {
                kind: "memory",
                bytes: 0,
                limit_bytes: self.inner.memory.limit() as u64,
                records,
                spilled_records: 0,
                oldest_age_seconds,
                corrupt_records: 0,
            },
        };
        self.inner.stats.snapshot(self.queued_bytes(), self.inner.memory.limit(), buffer)
    }
}

impl PipelineHandle {
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Stops accepting and writes what is accepted, until the shutdown
    /// deadline; what is not stored by then stays in the disk buffer for
    /// the next start.
    pub async fn shutdown(self) -> StatsSnapshot {
        let inner = &self.pipeline.inner;
        inner.closed.store(true, Ordering::Release);
        inner.queue.lock().unwrap_or_else(|p| p.into_inner()).tx.take();
        let mut task = self.task;
        if tokio::time::timeout(self.shutdown_timeout, &mut task).await.is_err() {
            let left = self.pipeline.stats().buffer.records;
            if inner.disk.is_some() {
                tracing::warn!(
                    timeout_s = self.shutdown_timeout.as_secs_f64(),
                    requests = left,
                    "shutdown deadline reached; what is not stored stays in the disk buffer and is replayed at the next start"
                );
            } else {
                tracing::error!(
                    timeout_s = self.shutdown_timeout.as_secs_f64(),
                    requests = left,
                    "shutdown deadline reached with the memory buffer: these requests are lost"
                );
            }
            self.cancel.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut task).await;
        }
        self.cancel.cancel();
        if let Some(t) = self.fsync_task {
            let _ = t.await;
        }
        if let Some(d) = &inner.disk {
            if let Err(e) = d.sync_if_dirty() {
                tracing::error!(error = %e, "final disk buffer fsync failed");
            }
        }
        self.pipeline.stats()
    }
}
