//! costplane-pipeline: the memory-bounded queue, batcher and store writer
//! between the OTLP receivers and the store.
//!
//! Invariants:
//! - **Bounded memory.** Every accepted batch reserves its estimated size
//!   until the store has committed it (or it was given up). When a new batch
//!   would exceed the limit, [`Pipeline::submit`] refuses it and the receiver
//!   answers with a retryable status; nothing is dropped silently. A batch is
//!   always accepted into an empty queue, so one request larger than the
//!   limit cannot be refused forever.
//! - **Accepted means stored, barring a crash.** A refused batch was never
//!   accepted. An accepted batch is written, retried with exponential back-off
//!   and jitter while the store's errors are retryable, and flushed on
//!   shutdown before [`PipelineHandle::shutdown`] returns. Only a batch the
//!   store rejects as invalid, or one still failing after the retry budget
//!   (`max_elapsed`), is dropped, and that is logged and counted.
//! - **No duplicates.** `Store::write` is all-or-nothing, so a retried batch
//!   is written once.

mod stats;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use costplane_store::Store;
use costplane_telemetry::TelemetryBatch;
use rand::Rng;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use stats::{PipelineStats, StatsSnapshot};

/// Retry policy for store writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial_interval: Duration,
    pub max_interval: Duration,
    /// Total time one batch may be retried before it is given up.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(300),
        }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Most bytes of accepted, not yet stored rows held in memory.
    pub memory_limit_bytes: usize,
    /// A batch is flushed when it holds this many rows...
    pub batch_max_rows: usize,
    /// ...or when its oldest rows have waited this long.
    pub flush_interval: Duration,
    pub retry: RetryPolicy,
    /// Batches written at the same time (each retried on its own).
    pub writers: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            memory_limit_bytes: 256 * 1024 * 1024,
            batch_max_rows: 8192,
            flush_interval: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            writers: 2,
        }
    }
}

/// Why a batch was not accepted.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error("the ingest queue is full ({used} of {limit} bytes in use); retry later")]
    Full { used: usize, limit: usize },
    #[error("the server is shutting down; retry against another instance or later")]
    ShuttingDown,
}

/// The receivers' side of the pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("used", &self.inner.used.load(Ordering::Relaxed)).finish()
    }
}

struct Inner {
    tx: std::sync::Mutex<Option<mpsc::UnboundedSender<TelemetryBatch>>>,
    used: AtomicUsize,
    limit: usize,
    closed: AtomicBool,
    stats: PipelineStats,
}

/// Owns the writer task; `shutdown` drains it.
pub struct PipelineHandle {
    pipeline: Pipeline,
    task: JoinHandle<()>,
}

impl Pipeline {
    /// Starts the batcher/writer task over `store`.
    pub fn start(config: PipelineConfig, store: Arc<dyn Store>) -> PipelineHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        let pipeline = Pipeline {
            inner: Arc::new(Inner {
                tx: std::sync::Mutex::new(Some(tx)),
                used: AtomicUsize::new(0),
                limit: config.memory_limit_bytes.max(1),
                closed: AtomicBool::new(false),
                stats: PipelineStats::default(),
            }),
        };
        let writer = Arc::new(Writer { config, store, pipeline: pipeline.clone() });
        let task = tokio::spawn(writer.run(rx));
        PipelineHandle { pipeline, task }
    }

    /// Accepts a batch or refuses it when memory is short.
    pub fn submit(&self, mut batch: TelemetryBatch) -> Result<(), SubmitError> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(SubmitError::ShuttingDown);
        }
        // The same figure is released when the batch is stored.
        batch.approx_bytes = batch.approx_bytes.max(1);
        let size = batch.approx_bytes;
        let limit = self.inner.limit;
        let reserved = self.inner.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            (used == 0 || used + size <= limit).then_some(used + size)
        });
        if let Err(used) = reserved {
            self.inner.stats.refused_rows.fetch_add(batch.rows() as u64, Ordering::Relaxed);
            return Err(SubmitError::Full { used, limit });
        }
        let rows = batch.rows() as u64;
        let sent = match self.inner.tx.lock() {
            Ok(guard) => guard.as_ref().map(|tx| tx.send(batch).is_ok()).unwrap_or(false),
            Err(_) => false,
        };
        if !sent {
            self.release(size);
            return Err(SubmitError::ShuttingDown);
        }
        self.inner.stats.accepted_rows.fetch_add(rows, Ordering::Relaxed);
        Ok(())
    }

    fn release(&self, bytes: usize) {
        self.inner.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Bytes of accepted rows not yet stored.
    pub fn queued_bytes(&self) -> usize {
        self.inner.used.load(Ordering::Acquire)
    }

    /// Ready means: accepting, and the last store write did not fail.
    pub fn is_ready(&self) -> bool {
        !self.inner.closed.load(Ordering::Acquire) && self.inner.stats.store_healthy.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot(self.queued_bytes(), self.inner.limit)
    }
}

impl PipelineHandle {
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Stops accepting, writes everything accepted, and returns when done.
    pub async fn shutdown(self) -> StatsSnapshot {
        self.pipeline.inner.closed.store(true, Ordering::Release);
        if let Ok(mut tx) = self.pipeline.inner.tx.lock() {
            tx.take();
        }
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the pipeline writer task failed");
        }
        self.pipeline.stats()
    }
}

struct Writer {
    config: PipelineConfig,
    store: Arc<dyn Store>,
    pipeline: Pipeline,
}

fn log_task_failure(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        tracing::error!(error = %e, "a store write task failed; its batch is lost");
    }
}

impl Writer {
    /// Batches rows and hands each full batch to one of `writers` concurrent
    /// write tasks; when all are busy the batcher waits (and the queue, which
    /// the memory limit bounds, absorbs the difference).
    async fn run(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<TelemetryBatch>) {
        let writers = self.config.writers.min(self.store.max_concurrent_writes()).max(1);
        let slots = Arc::new(tokio::sync::Semaphore::new(writers));
        let mut tasks = tokio::task::JoinSet::new();
        let mut pending = TelemetryBatch::default();
        let mut deadline: Option<Instant> = None;
        loop {
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(batch) => {
                        if pending.is_empty() {
                            deadline = Some(Instant::now() + self.config.flush_interval);
                        }
                        pending.append(batch);
                        if pending.rows() >= self.config.batch_max_rows {
                            self.dispatch(&mut pending, &slots, &mut tasks).await;
                            deadline = None;
                        }
                    }
                    None => {
                        self.dispatch(&mut pending, &slots, &mut tasks).await;
                        while let Some(done) = tasks.join_next().await {
                            log_task_failure(done);
                        }
                        tracing::info!("pipeline drained");
                        return;
                    }
                },
                () = timer => {
                    self.dispatch(&mut pending, &slots, &mut tasks).await;
                    deadline = None;
                }
                Some(done) = tasks.join_next(), if !tasks.is_empty() => log_task_failure(done),
            }
        }
    }

    async fn dispatch(
        self: &Arc<Self>,
        pending: &mut TelemetryBatch,
        slots: &Arc<tokio::sync::Semaphore>,
        tasks: &mut tokio::task::JoinSet<()>,
    ) {
        if pending.is_empty() {
            return;
        }
        let batch = std::mem::take(pending);
        let Ok(permit) = Arc::clone(slots).acquire_owned().await else { return };
        let writer = Arc::clone(self);
        tasks.spawn(async move {
            writer.write(batch).await;
            drop(permit);
        });
    }

    async fn write(&self, mut batch: TelemetryBatch) {
        // Kept across retries: a store that deduplicates by token sees the
        // same id for every attempt of this batch.
        batch.id = rand::rng().random();
        let stats = &self.pipeline.inner.stats;
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            let t0 = std::time::Instant::now();
            match self.store.write(&batch).await {
                Ok(()) => {
                    stats.record_write(batch.rows() as u64, t0.elapsed());
                    if !stats.store_healthy.swap(true, Ordering::AcqRel) {
                        tracing::info!(backend = self.store.backend(), "the store is reachable again");
                    }
                    break;
                }
                Err(e) => {
                    stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    let retryable = e.is_retryable();
                    let delay = self.config.retry.delay(attempt);
                    if retryable && started.elapsed() + delay <= self.config.retry.max_elapsed {
                        if stats.store_healthy.swap(false, Ordering::AcqRel) {
                            tracing::warn!(backend = self.store.backend(), error = %e, "the store is down; holding accepted rows and retrying");
                        }
                        tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, error = %e, "store write failed; retrying");
                        attempt += 1;
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    stats.dropped_rows.fetch_add(batch.rows() as u64, Ordering::Relaxed);
                    tracing::error!(
                        backend = self.store.backend(),
                        rows = batch.rows(),
                        retryable,
                        attempts = attempt + 1,
                        error = %e,
                        "giving up a batch the store did not take"
                    );
                    break;
                }
            }
        }
        self.pipeline.release(batch.approx_bytes);
    }
}
