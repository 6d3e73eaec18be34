//! Counters the pipeline keeps for logs, `/readyz` and `/metrics`.
//!
//! Per-signal counters are indexed by [`Signal::ALL`]'s order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use costplane_telemetry::Signal;
use serde::Serialize;

/// Upper bounds (seconds) of the latency histograms' buckets: store writes
/// take milliseconds when healthy and seconds when the store struggles.
pub const LATENCY_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A latency histogram with [`LATENCY_BUCKETS`], lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = LATENCY_BUCKETS.iter().position(|&b| secs <= b).unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = Vec::with_capacity(self.buckets.len());
        let mut total = 0;
        for b in &self.buckets {
            total += b.load(Ordering::Relaxed);
            cumulative.push(total);
        }
        HistogramSnapshot { cumulative, sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9 }
    }
}

/// A histogram's counts as Prometheus shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct HistogramSnapshot {
    /// Cumulative counts for each of [`LATENCY_BUCKETS`], then `+Inf` (the
    /// total count).
    pub cumulative: Vec<u64>,
    pub sum_seconds: f64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }
}

/// Items and bytes of one signal.
#[derive(Debug, Default)]
pub(crate) struct SignalCounters {
    pub(crate) accepted_items: AtomicU64,
    pub(crate) accepted_bytes: AtomicU64,
    pub(crate) refused_items: AtomicU64,
    pub(crate) rejected_items: AtomicU64,
}

pub(crate) fn signal_index(s: Signal) -> usize {
    Signal::ALL.iter().position(|&x| x == s).unwrap_or(0)
}

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
    pub(crate) signals: [SignalCounters; 3],
    pub(crate) write_duration: Histogram,
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
            signals: Default::default(),
            write_duration: Histogram::default(),
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
    /// Of those, requests kept in the disk buffer only because the queue
    /// was at its memory budget (read back once the store catches up).
    pub spilled_records: u64,
    /// Age of the oldest accepted, unstored request, in seconds.
    pub oldest_age_seconds: f64,
    /// Corrupt records (stretches of bytes) the disk buffer skipped and
    /// quarantined when it was opened at start.
    pub corrupt_records: u64,
}

impl PipelineStats {
    pub(crate) fn record_write(&self, rows: u64, took: Duration) {
        self.written_rows.fetch_add(rows, Ordering::Relaxed);
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.write_nanos.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.write_duration.observe(took);
    }

    pub(crate) fn signal(&self, s: Signal) -> &SignalCounters {
        &self.signals[signal_index(s)]
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
            signals: Signal::ALL
                .iter()
                .zip(&self.signals)
                .map(|(s, c)| SignalSnapshot {
                    signal: s.as_str(),
                    accepted_items: c.accepted_items.load(Ordering::Relaxed),
                    accepted_bytes: c.accepted_bytes.load(Ordering::Relaxed),
                    refused_items: c.refused_items.load(Ordering::Relaxed),
                    rejected_items: c.rejected_items.load(Ordering::Relaxed),
                })
                .collect(),
            write_duration: self.write_duration.snapshot(),
        }
    }
}

/// One signal's ingest counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignalSnapshot {
    pub signal: &'static str,
    /// Items (spans, log records, data points) accepted into the pipeline.
    pub accepted_items: u64,
    /// Bytes of the accepted requests' bodies, uncompressed.
    pub accepted_bytes: u64,
    /// Items refused because the buffer was full (clients retry).
    pub refused_items: u64,
    /// Invalid items dropped from requests (OTLP partial success; final).
    pub rejected_items: u64,
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
    /// Per signal, in [`Signal::ALL`]'s order.
    pub signals: Vec<SignalSnapshot>,
    pub write_duration: HistogramSnapshot,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_bounds_inclusive() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(5)); // <= 0.005: first bucket
        h.observe(Duration::from_millis(6)); // 0.01
        h.observe(Duration::from_secs(60)); // past 30: only +Inf
        let s = h.snapshot();
        assert_eq!(s.cumulative.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(&s.cumulative[..3], &[1, 2, 2]);
        assert_eq!(s.cumulative[LATENCY_BUCKETS.len() - 1], 2);
        assert_eq!(s.count(), 3);
        // 0.005 + 0.006 + 60 = 60.011 s.
        assert!((s.sum_seconds - 60.011).abs() < 1e-9, "{}", s.sum_seconds);
    }
}
