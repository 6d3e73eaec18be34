//! Counters the pipeline keeps for logs, `/readyz` and (later) `/metrics`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

#[derive(Debug)]
pub struct PipelineStats {
    pub(crate) accepted_rows: AtomicU64,
    pub(crate) refused_rows: AtomicU64,
    pub(crate) written_rows: AtomicU64,
    pub(crate) dropped_rows: AtomicU64,
    pub(crate) write_errors: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) write_nanos: AtomicU64,
    pub(crate) store_healthy: AtomicBool,
}

impl Default for PipelineStats {
    fn default() -> Self {
        PipelineStats {
            accepted_rows: AtomicU64::new(0),
            refused_rows: AtomicU64::new(0),
            written_rows: AtomicU64::new(0),
            dropped_rows: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            write_nanos: AtomicU64::new(0),
            store_healthy: AtomicBool::new(true),
        }
    }
}

impl PipelineStats {
    pub(crate) fn record_write(&self, rows: u64, took: Duration) {
        self.written_rows.fetch_add(rows, Ordering::Relaxed);
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.write_nanos.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, queued_bytes: usize, limit_bytes: usize) -> StatsSnapshot {
        StatsSnapshot {
            accepted_rows: self.accepted_rows.load(Ordering::Relaxed),
            refused_rows: self.refused_rows.load(Ordering::Relaxed),
            written_rows: self.written_rows.load(Ordering::Relaxed),
            dropped_rows: self.dropped_rows.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            write_seconds: self.write_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            store_healthy: self.store_healthy.load(Ordering::Relaxed),
            queued_bytes,
            limit_bytes,
        }
    }
}

/// A point-in-time copy of the pipeline's counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsSnapshot {
    pub accepted_rows: u64,
    pub refused_rows: u64,
    pub written_rows: u64,
    pub dropped_rows: u64,
    pub write_errors: u64,
    pub writes: u64,
    pub write_seconds: f64,
    pub store_healthy: bool,
    pub queued_bytes: usize,
    pub limit_bytes: usize,
}
