//! Counters the pipeline keeps for logs, `/readyz` and `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

#[derive(Debug)]
pub struct PipelineStats {
    pub(crate) accepted_rows: AtomicU64,
    pub(crate) refused_rows: AtomicU64,
    pub(crate) written_rows: AtomicU64,
    pub(crate) write_errors: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) write_panics: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) write_nanos: AtomicU64,
    pub(crate) replayed_requests: AtomicU64,
    pub(crate) store_healthy: AtomicBool,
    /// Items dead-lettered per (tenant, signal, reason).
    pub(crate) dead_letters: Mutex<BTreeMap<(String, String, String), u64>>,
}

impl Default for PipelineStats {
    fn default() -> Self {
        PipelineStats {
            accepted_rows: AtomicU64::new(0),
            refused_rows: AtomicU64::new(0),
            written_rows: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            write_panics: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            write_nanos: AtomicU64::new(0),
            replayed_requests: AtomicU64::new(0),
            store_healthy: AtomicBool::new(true),
            dead_letters: Mutex::new(BTreeMap::new()),
        }
    }
}

/// Where buffered requests are held, for the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct BufferSnapshot {
    /// `disk` or `memory`.
    pub kind: &'static str,
    /// Bytes of the disk buffer's segments (0 for the memory buffer).
    pub bytes: u64,
    pub limit_bytes: u64,
    /// Accepted requests not yet resolved (stored or dead-lettered).
    pub records: u64,
    /// Age of the oldest accepted, unstored request, in seconds.
    pub oldest_age_seconds: f64,
}

impl PipelineStats {
    pub(crate) fn record_write(&self, rows: u64, took: Duration) {
        self.written_rows.fetch_add(rows, Ordering::Relaxed);
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.write_nanos.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn record_dead_letter(&self, tenant: &str, signal: &str, reason: &str, items: u64) {
        let mut map = self.dead_letters.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((tenant.to_owned(), signal.to_owned(), reason.to_owned())).or_default() += items;
    }

    pub(crate) fn snapshot(&self, queued_bytes: usize, limit_bytes: usize, buffer: BufferSnapshot) -> StatsSnapshot {
        let dead_letters: Vec<DeadLetterCount> = self
            .dead_letters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((tenant, signal, reason), items)| DeadLetterCount {
                tenant: tenant.clone(),
                signal: signal.clone(),
                reason: reason.clone(),
                items: *items,
            })
            .collect();
        StatsSnapshot {
            accepted_rows: self.accepted_rows.load(Ordering::Relaxed),
            refused_rows: self.refused_rows.load(Ordering::Relaxed),
            written_rows: self.written_rows.load(Ordering::Relaxed),
            dead_lettered_rows: dead_letters.iter().map(|d| d.items).sum(),
            write_errors: self.write_errors.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            write_panics: self.write_panics.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            write_seconds: self.write_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            replayed_requests: self.replayed_requests.load(Ordering::Relaxed),
            store_healthy: self.store_healthy.load(Ordering::Relaxed),
            queued_bytes,
            limit_bytes,
            buffer,
            dead_letters,
        }
    }
}

/// Items dead-lettered for one (tenant, signal, reason).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterCount {
    pub tenant: String,
    pub signal: String,
    pub reason: String,
    pub items: u64,
}

/// A point-in-time copy of the pipeline's counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsSnapshot {
    pub accepted_rows: u64,
    pub refused_rows: u64,
    pub written_rows: u64,
    /// Rows moved to the dead-letter area.
    pub dead_lettered_rows: u64,
    pub write_errors: u64,
    /// Write attempts that were retried (errors and panics).
    pub retries: u64,
    pub write_panics: u64,
    pub writes: u64,
    pub write_seconds: f64,
    /// Requests replayed from the disk buffer at start.
    pub replayed_requests: u64,
    pub store_healthy: bool,
    /// Bytes of decoded rows held in memory.
    pub queued_bytes: usize,
    pub limit_bytes: usize,
    pub buffer: BufferSnapshot,
    pub dead_letters: Vec<DeadLetterCount>,
}
