//! The batcher and the store writer: merges requests into batches, logs
//! each batch's composition, writes it with retries, bisects batches the
//! store rejects, dead-letters the requests at fault and commits.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use costplane_store::TelemetrySink;
use costplane_telemetry::{BatchLens, TelemetryBatch};
use futures::FutureExt;
use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::buffer::BufferError;
use crate::deadletter::{self, DeadLetterReason};
use crate::{Entry, Part, Pipeline, PipelineConfig, RequestDecoder};

pub(crate) struct Writer {
    pub(crate) config: PipelineConfig,
    pub(crate) store: Arc<dyn TelemetrySink>,
    pub(crate) pipeline: Pipeline,
    pub(crate) decoder: Arc<dyn RequestDecoder>,
    pub(crate) observer: Option<Arc<dyn crate::StoredObserver>>,
    pub(crate) cancel: CancellationToken,
}

/// Rows of several requests, merged, with where each request's rows end.
#[derive(Default)]
struct WriteBatch {
    id: u64,
    data: TelemetryBatch,
    parts: Vec<(Part, BatchLens)>,
}

impl WriteBatch {
    fn push(&mut self, part: Part, rows: TelemetryBatch) {
        self.data.append(rows);
        let end = self.data.lens();
        self.parts.push((part, end));
    }

    fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Splits between requests: two halves with ids derived from this one,
    /// so a replayed bisection uses the same insert tokens.
    fn bisect(mut self) -> (WriteBatch, WriteBatch) {
        let mid = self.parts.len() / 2;
        let at = self.parts[mid - 1].1;
        let right_data = self.data.split_off(at);
        let right_parts: Vec<(Part, BatchLens)> = self.parts.split_off(mid).into_iter().map(|(p, end)| (p, end.minus(at))).collect();
        let mut left = WriteBatch { id: derive_id(self.id, 1), data: self.data, parts: self.parts };
        let mut right = WriteBatch { id: derive_id(self.id, 2), data: right_data, parts: right_parts };
        left.data.approx_bytes = left.parts.iter().map(|(p, _)| p.approx_bytes).sum();
        right.data.approx_bytes = right.parts.iter().map(|(p, _)| p.approx_bytes).sum();
        (left, right)
    }
}

/// A fixed mix of a parent id and a side (splitmix64's finalizer).
fn derive_id(parent: u64, side: u64) -> u64 {
    let mut z = parent ^ side.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Why a request's rows are not at hand.
enum Unloaded {
    /// Dead-lettered (cannot be decoded) and resolved.
    Resolved,
    /// Cannot be read now: it stays pending in the buffer.
    Stuck,
}

/// How one write of a batch ended.
enum Outcome {
    Stored,
    /// The store refused the data; retrying will not help.
    Rejected(String),
    /// `retry_max_elapsed` ran out.
    GaveUp(String),
    /// The shutdown deadline passed: leave the batch in the buffer.
    Cancelled,
}

impl Writer {
    /// Batches requests and hands each full batch to one of `writers`
    /// concurrent write tasks; when all are busy the batcher waits (and the
    /// buffer absorbs the difference).
    pub(crate) async fn run(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Entry>) {
        let writers = self.config.writers.min(self.store.max_concurrent_writes()).max(1);
        let slots = Arc::new(tokio::sync::Semaphore::new(writers));
        let mut tasks = tokio::task::JoinSet::new();
        let mut pending = WriteBatch::default();
        let mut deadline: Option<Instant> = None;
        loop {
            // What was spilled comes after everything queued before it.
            if rx.is_empty() && self.pipeline.inner.spill().is_some() && !self.cancel.is_cancelled() {
                self.take_spilled(&mut pending, &mut deadline, &slots, &mut tasks).await;
                continue;
            }
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(Entry::Request { part, batch }) => {
                        let Ok((part, rows)) = self.load(part, batch) else { continue };
                        self.add(&mut pending, &mut deadline, part, rows, &slots, &mut tasks).await;
                    }
                    Some(Entry::Replay { batch_id, parts }) => {
                        self.dispatch(std::mem::take(&mut pending), true, &slots, &mut tasks).await;
                        deadline = None;
                        let mut replay = WriteBatch { id: batch_id, ..WriteBatch::default() };
                        let mut stuck = false;
                        for part in parts {
                            match self.load(part, None) {
                                Ok((part, rows)) => replay.push(part, rows),
                                Err(Unloaded::Stuck) => stuck = true,
                                Err(Unloaded::Resolved) => {}
                            }
                        }
                        if stuck {
                            // Committing the batch would mark the unread
                            // request done: leave it all for the next start.
                            tracing::error!(batch = batch_id, "a replayed batch has a request that cannot be read; the batch stays in the disk buffer");
                        } else {
                            self.dispatch(replay, false, &slots, &mut tasks).await;
                        }
                    }
                    None => {
                        // Shutting down: what was spilled is written too,
                        // until the deadline.
                        while self.pipeline.inner.spill().is_some() && !self.cancel.is_cancelled() {
                            self.take_spilled(&mut pending, &mut deadline, &slots, &mut tasks).await;
                        }
                        self.dispatch(std::mem::take(&mut pending), true, &slots, &mut tasks).await;
                        while let Some(done) = tasks.join_next().await {
                            log_task_failure(done);
                        }
                        tracing::info!("pipeline drained");
                        return;
                    }
                },
                () = timer => {
                    self.dispatch(std::mem::take(&mut pending), true, &slots, &mut tasks).await;
                    deadline = None;
                }
                Some(done) = tasks.join_next(), if !tasks.is_empty() => log_task_failure(done),
                () = self.pipeline.inner.spill_wake.notified() => {}
                () = self.cancel.cancelled() => {
                    // The shutdown deadline: in-flight writes stop where they
                    // are; their requests stay in the disk buffer.
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    return;
                }
            }
        }
    }

    /// Adds a request's rows to the batch being formed; dispatches it once full.
    async fn add(
        self: &Arc<Self>,
        pending: &mut WriteBatch,
        deadline: &mut Option<Instant>,
        part: Part,
        rows: TelemetryBatch,
        slots: &Arc<tokio::sync::Semaphore>,
        tasks: &mut tokio::task::JoinSet<()>,
    ) {
        if pending.is_empty() {
            *deadline = Some(Instant::now() + self.config.flush_interval);
        }
        pending.push(part, rows);
        if pending.data.rows() >= self.config.batch_max_rows {
            self.dispatch(std::mem::take(pending), true, slots, tasks).await;
            *deadline = None;
        }
    }

    /// Reads the next chunk of spilled requests back from the disk buffer
    /// (about a quarter of the memory budget, 64 KiB to 8 MiB of request
    /// bodies) and batches them. Once the last is taken, the queue takes
    /// entries again.
    async fn take_spilled(
        self: &Arc<Self>,
        pending: &mut WriteBatch,
        deadline: &mut Option<Instant>,
        slots: &Arc<tokio::sync::Semaphore>,
        tasks: &mut tokio::task::JoinSet<()>,
    ) {
        let inner = &self.pipeline.inner;
        let (Some(disk), Some(spill)) = (&inner.disk, inner.spill()) else { return };
        let chunk = (self.config.memory_limit_bytes as u64 / 4).clamp(64 << 10, 8 << 20);
        // Read on the writer task, as `load` reads spilled entries: the
        // writer's pace is what bounds the memory of what it holds.
        let read = disk.read_requests_from(spill.from, chunk);
        let requests = match read {
            Ok((requests, next)) if !requests.is_empty() || spill.requests == 0 => {
                let mut queue = inner.queue.lock().unwrap_or_else(|p| p.into_inner());
                let mut lag = inner.pending.lock().unwrap_or_else(|p| p.into_inner());
                for (r, _) in &requests {
                    lag.insert(r.record_id, r.meta.received_ns);
                }
                drop(lag);
                if let Some(s) = queue.spill.as_mut() {
                    s.from = next;
                    s.requests = s.requests.saturating_sub(requests.len() as u64);
                    s.oldest_ns = requests.last().map_or(s.oldest_ns, |(r, _)| r.meta.received_ns);
                    if s.requests == 0 {
                        queue.spill = None;
                        tracing::info!("every spilled request is read back; the ingest queue takes requests in memory again");
                    }
                }
                requests
            }
            failed => {
                let why = match failed {
                    Err(e) => e.to_string(),
                    Ok(_) => format!("{} spilled requests were not found after {:?}", spill.requests, spill.from),
                };
                // They stay pending in the log: read again after a pause,
                // or replayed at the next start.
                tracing::error!(error = %why, "cannot read spilled requests back from the disk buffer; trying again in 1s");
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    () = self.cancel.cancelled() => {}
                }
                return;
            }
        };
        for (request, body) in requests {
            let part = Part {
                record_id: request.record_id,
                meta: Some(request.meta),
                location: Some(request.location),
                body: None,
                rows: 0,
                approx_bytes: 0,
                reservation: None,
            };
            if let Ok((part, rows)) = self.decode_body(part, &body) {
                self.add(pending, deadline, part, rows, slots, tasks).await;
            }
        }
    }

    /// The rows of a request: in memory already, or read back from the disk
    /// buffer and decoded again. A request that cannot be read back is
    /// dead-lettered (or, without a body, reported) and resolved.
    fn load(&self, part: Part, batch: Option<Box<TelemetryBatch>>) -> Result<(Part, TelemetryBatch), Unloaded> {
        if let Some(rows) = batch {
            return Ok((part, *rows));
        }
        let (Some(disk), Some(loc)) = (&self.pipeline.inner.disk, part.location) else {
            return Err(Unloaded::Stuck);
        };
        match disk.read_request(loc) {
            Ok((_, body)) => self.decode_body(part, &body),
            Err(e) => {
                // An I/O error may pass: the request stays pending in the
                // buffer (not committed) and is replayed at the next start.
                tracing::error!(record = part.record_id, error = %e, "cannot read a buffered request back; it stays in the disk buffer for the next start");
                Err(Unloaded::Stuck)
            }
        }
    }

    /// Decodes a buffered request's body again; one that does not decode is
    /// dead-lettered and resolved.
    fn decode_body(&self, mut part: Part, body: &[u8]) -> Result<(Part, TelemetryBatch), Unloaded> {
        let inner = &self.pipeline.inner;
        let (Some(disk), Some(meta)) = (&inner.disk, part.meta.clone()) else {
            return Err(Unloaded::Stuck);
        };
        // A decoder panic must not take the writer (and, replayed first at
        // every start, the server) down with it.
        let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| self.decoder.decode(&meta, body)))
            .unwrap_or_else(|_| Err("decoding the buffered request panicked".to_owned()));
        match decoded {
            Ok(rows) => {
                part.rows = rows.rows();
                part.approx_bytes = rows.approx_bytes;
                part.reservation = Some(inner.memory.force_reserve(rows.approx_bytes));
                Ok((part, rows))
            }
            Err(error) => {
                tracing::error!(record = part.record_id, tenant = %meta.tenant, error = %error, "a buffered request cannot be decoded again");
                if !self.write_dead_letter(&part, body, DeadLetterReason::Rejected, &error) {
                    return Err(Unloaded::Stuck);
                }
                // Logged as a batch of its own, so the next start sees the
                // request resolved.
                let id = derive_id(part.record_id, 3);
                if let Err(e) = disk.append_intent(id, &[part.record_id]) {
                    // Not resolved without its intent: the next start
                    // decodes it again.
                    tracing::error!(error = %e, "cannot log to the disk buffer; the request stays in it for the next start");
                    return Err(Unloaded::Stuck);
                }
                self.resolve(id, &[part]);
                Err(Unloaded::Resolved)
            }
        }
    }

    async fn dispatch(
        self: &Arc<Self>,
        mut batch: WriteBatch,
        log_intent: bool,
        slots: &Arc<tokio::sync::Semaphore>,
        tasks: &mut tokio::task::JoinSet<()>,
    ) {
        if batch.is_empty() {
            return;
        }
        let Ok(permit) = Arc::clone(slots).acquire_owned().await else { return };
        let mut intent = Vec::new();
        if log_intent {
            batch.id = rand::rng().random();
            if self.pipeline.inner.disk.is_some() {
                intent = batch.parts.iter().filter(|(p, _)| p.location.is_some()).map(|(p, _)| p.record_id).collect();
            }
        }
        let writer = Arc::clone(self);
        tasks.spawn(async move {
            if intent.is_empty() || writer.log_intent(batch.id, intent).await {
                writer.write_resolving(batch).await;
            }
            drop(permit);
        });
    }

    /// Logs a batch's composition (fsynced) before its first write, trying
    /// again with the write back-off until the log takes it: nothing is
    /// written to the store that the log does not hold, so a replay always
    /// re-forms the batch under this id. While it fails, the receivers
    /// refuse new requests (retryable). False at the shutdown deadline: the
    /// requests stay in the buffer.
    async fn log_intent(&self, batch_id: u64, records: Vec<u64>) -> bool {
        let inner = &self.pipeline.inner;
        let Some(disk) = &inner.disk else { return true };
        let records = Arc::new(records);
        let mut attempt = 0u32;
        loop {
            let (d, r) = (Arc::clone(disk), Arc::clone(&records));
            let logged = tokio::task::spawn_blocking(move || d.append_intent(batch_id, &r))
                .await
                .unwrap_or_else(|e| Err(BufferError::Io { path: PathBuf::new(), source: std::io::Error::other(e.to_string()) }));
            match logged {
                Ok(()) => {
                    if inner.log_failing.swap(false, Ordering::AcqRel) {
                        tracing::info!("the disk buffer takes batch intents again; accepting requests");
                    }
                    return true;
                }
                Err(e) => {
                    if !inner.log_failing.swap(true, Ordering::AcqRel) || attempt.is_multiple_of(10) {
                        tracing::error!(
                            batch = batch_id,
                            attempt,
                            error = %e,
                            "cannot log a batch's composition to the disk buffer; the batch waits and new requests are refused until it can"
                        );
                    }
                }
            }
            let delay = self.config.retry.delay(attempt);
            attempt = attempt.saturating_add(1);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.cancel.cancelled() => return false,
            }
        }
    }

    /// Writes a batch until every request in it is stored or dead-lettered,
    /// then commits it. Left uncommitted (in the buffer) at the deadline.
    async fn write_resolving(&self, batch: WriteBatch) {
        let top_id = batch.id;
        let mut resolved: Vec<Part> = Vec::with_capacity(batch.parts.len());
        let mut kept = true;
        let mut work = vec![batch];
        while let Some(mut b) = work.pop() {
            b.data.id = b.id;
            match self.write_with_retry(&b.data).await {
                Outcome::Stored => resolved.extend(b.parts.into_iter().map(|(p, _)| p)),
                Outcome::Rejected(error) if b.parts.len() > 1 => {
                    tracing::warn!(
                        requests = b.parts.len(),
                        error = %error,
                        "the store rejected a batch's data; splitting it to find the request(s) at fault"
                    );
                    let (left, right) = b.bisect();
                    work.push(right);
                    work.push(left);
                }
                Outcome::Rejected(error) => {
                    kept &= self.dead_letter(&b, DeadLetterReason::Rejected, &error);
                    resolved.extend(b.parts.into_iter().map(|(p, _)| p));
                }
                Outcome::GaveUp(error) => {
                    kept &= self.dead_letter(&b, DeadLetterReason::RetryBudget, &error);
                    resolved.extend(b.parts.into_iter().map(|(p, _)| p));
                }
                Outcome::Cancelled => return,
            }
        }
        if !kept {
            // Not committed: the next start replays the batch (what was
            // stored is deduplicated) and tries the dead-letter area again.
            tracing::error!(batch = top_id, "a dead-letter file could not be written; the batch stays in the disk buffer");
            return;
        }
        self.resolve(top_id, &resolved);
    }

    /// Marks requests resolved: commit in the disk buffer, lag bookkeeping.
    fn resolve(&self, batch_id: u64, parts: &[Part]) {
        let inner = &self.pipeline.inner;
        if let Some(disk) = &inner.disk {
            let locations: Vec<_> = parts.iter().filter_map(|p| p.location).collect();
            if !locations.is_empty() {
                if let Err(e) = disk.commit(batch_id, &locations) {
                    tracing::error!(
                        batch = batch_id,
                        error = %e,
                        "cannot log a commit to the disk buffer; it is owed and written with the buffer's next write (if the process stops first, the batch is replayed under its id and the store skips it)"
                    );
                }
            }
        }
        let mut pending = inner.pending.lock().unwrap_or_else(|p| p.into_inner());
        for p in parts.iter().filter(|p| p.meta.is_some()) {
            pending.remove(&p.record_id);
        }
    }

    async fn write_with_retry(&self, batch: &TelemetryBatch) -> Outcome {
        let stats = &self.pipeline.inner.stats;
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            let t0 = std::time::Instant::now();
            let attempt_result = tokio::select! {
                r = AssertUnwindSafe(self.store.write(batch)).catch_unwind() => r,
                () = self.cancel.cancelled() => return Outcome::Cancelled,
            };
            let error = match attempt_result {
                Ok(Ok(())) => {
                    stats.record_write(batch.rows() as u64, t0.elapsed());
                    if let Some(observer) = &self.observer {
                        observer.stored(batch);
                    }
                    if !stats.store_healthy.swap(true, Ordering::AcqRel) {
                        tracing::info!(backend = self.store.backend(), "the store is taking writes again");
                    }
                    return Outcome::Stored;
                }
                Ok(Err(e)) if e.is_invalid_data() || !e.is_retryable() => {
                    stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    return Outcome::Rejected(e.to_string());
                }
                Ok(Err(e)) => {
                    stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    if stats.store_healthy.swap(false, Ordering::AcqRel) {
                        tracing::error!(
                            backend = self.store.backend(),
                            error = %e,
                            "store writes are failing; holding accepted data in the buffer and retrying until they succeed"
                        );
                    } else if e.needs_attention() && attempt.is_multiple_of(10) {
                        // Not an outage that passes by itself (credentials,
                        // a table changed under costplane, an unknown error):
                        // keep saying so while it lasts.
                        tracing::error!(backend = self.store.backend(), attempt, error = %e, "store writes still failing; this needs an operator");
                    }
                    e.to_string()
                }
                Err(panic) => {
                    stats.write_panics.fetch_add(1, Ordering::Relaxed);
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".to_owned());
                    tracing::error!(backend = self.store.backend(), panic = %what, "a store write panicked; retrying the batch");
                    format!("the store write panicked: {what}")
                }
            };
            let delay = self.config.retry.delay(attempt);
            if let Some(max) = self.config.retry.max_elapsed {
                if started.elapsed() + delay > max {
                    return Outcome::GaveUp(format!("still failing after {:.0}s (retry_max_elapsed): {error}", max.as_secs_f64()));
                }
            }
            stats.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, error = %error, "store write failed; retrying");
            attempt += 1;
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.cancel.cancelled() => return Outcome::Cancelled,
            }
        }
    }

    /// Dead-letters every request of `batch`; false when a file could not
    /// be written.
    fn dead_letter(&self, batch: &WriteBatch, reason: DeadLetterReason, error: &str) -> bool {
        let inner = &self.pipeline.inner;
        let mut all = true;
        for (part, _) in &batch.parts {
            let body = match (&part.body, part.location, &inner.disk) {
                (Some(body), _, _) => Ok(body.to_vec()),
                (None, Some(loc), Some(disk)) => disk.read_request(loc).map(|(_, body)| body).map_err(|e| e.to_string()),
                _ => Err("no request body (costplane's own usage rows)".to_owned()),
            };
            match body {
                Ok(body) => all &= self.write_dead_letter(part, &body, reason, error),
                // A request in the disk buffer whose body cannot be read now
                // stays there (not committed); costplane's own usage rows,
                // which have no body, are reported and dropped.
                Err(why) if part.location.is_some() => {
                    tracing::error!(error = %error, why = %why, "cannot read a refused request back to dead-letter it; it stays in the disk buffer");
                    all = false;
                }
                Err(why) => tracing::error!(
                    rows = part.rows,
                    error = %error,
                    why = %why,
                    "the store refused rows that cannot be dead-lettered; they are dropped"
                ),
            }
        }
        all
    }

    fn write_dead_letter(&self, part: &Part, body: &[u8], reason: DeadLetterReason, error: &str) -> bool {
        let Some(meta) = &part.meta else { return true };
        let stats = &self.pipeline.inner.stats;
        match deadletter::write(&self.config.dead_letter_dir, part.record_id, meta, body, reason, error, part.rows as u64) {
            Ok(path) => {
                stats.record_dead_letter(&meta.tenant, meta.signal.as_str(), reason.as_str(), part.rows as u64);
                tracing::error!(
                    file = %path.display(),
                    tenant = %meta.tenant,
                    signal = %meta.signal,
                    items = part.rows,
                    reason = reason.as_str(),
                    error = %error,
                    "dead-lettered a request; fix the cause, then `costplane deadletter replay`"
                );
                true
            }
            Err(e) => {
                tracing::error!(
                    dir = %self.config.dead_letter_dir.display(),
                    error = %e,
                    tenant = %meta.tenant,
                    "cannot write a dead-letter file"
                );
                false
            }
        }
    }
}

fn log_task_failure(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if !e.is_cancelled() {
            tracing::error!(error = %e, "a store write task failed; its requests stay in the buffer until the next start");
        }
    }
}
