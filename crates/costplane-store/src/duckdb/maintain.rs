//! The telemetry side of the embedded store: its options, the views'
//! state, the move of pre-Parquet tables into segments, and the background
//! thread that expires and compacts partitions.

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use duckdb::Connection;

use super::compact::{self, CompactPolicy};
use super::segments::{self, Segments};
use super::{db_err, views};
use crate::{StoreError, TELEMETRY_TABLES};

/// Options of the embedded store's telemetry segments.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Days each signal is kept (the ClickHouse TTL defaults); 0 keeps forever.
    pub traces_ttl_days: u32,
    pub logs_ttl_days: u32,
    pub metrics_ttl_days: u32,
    pub compact: CompactPolicy,
    /// How often the background thread expires and compacts; `None` runs
    /// no thread (tests call [`super::DuckDbStore::maintain_now`]).
    pub maintenance_interval: Option<Duration>,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            traces_ttl_days: 7,
            logs_ttl_days: 30,
            metrics_ttl_days: 365,
            compact: CompactPolicy::default(),
            maintenance_interval: Some(Duration::from_secs(60)),
        }
    }
}

impl EmbeddedOptions {
    pub(crate) fn ttl_days(&self, table: &str) -> u32 {
        match table {
            "otel_traces" => self.traces_ttl_days,
            "otel_logs" => self.logs_ttl_days,
            _ => self.metrics_ttl_days,
        }
    }
}

/// The segments and which views currently read files.
pub(crate) struct Telemetry {
    pub segments: Arc<Segments>,
    pub options: EmbeddedOptions,
    /// Per table of `TELEMETRY_TABLES`: whether its view reads files.
    reading: Mutex<[bool; 7]>,
}

impl Telemetry {
    pub fn new(segments: Arc<Segments>, options: EmbeddedOptions) -> Self {
        Telemetry { segments, options, reading: Mutex::new([false; 7]) }
    }

    /// Makes every view match the files on disk (all of them with `force`)
    /// and rewrites `views.sql` when anything changed.
    pub fn sync_views(&self, conn: &Connection, force: bool) -> Result<(), StoreError> {
        let mut reading = self.reading.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut changed = force;
        for (i, table) in TELEMETRY_TABLES.iter().enumerate() {
            let has = self.segments.has_files(table)?;
            if force || has != reading[i] {
                conn.execute_batch(&views::view_sql(&self.segments, table, has)?).map_err(db_err)?;
                reading[i] = has;
                changed = true;
            }
        }
        if changed {
            views::write_views_file(&self.segments, &views::all_views(&self.segments)?)?;
        }
        Ok(())
    }

    /// Expires and compacts once; returns the partitions removed and merged.
    pub fn maintain(&self, conn: &Mutex<Connection>, now_ns: i64) -> Result<(usize, usize), StoreError> {
        let mut removed = 0;
        for table in TELEMETRY_TABLES {
            removed += self.segments.expire(table, self.options.ttl_days(table), now_ns)?.len();
        }
        if removed > 0 {
            let conn = conn.lock().map_err(|_| StoreError::Unavailable("the writer connection is poisoned".into()))?;
            self.sync_views(&conn, false)?;
        }
        let merged = compact::compact_all(&self.segments, &self.options.compact)?;
        self.segments.prune_written();
        Ok((removed, merged))
    }
}

/// Lets ad-hoc SQL read the segment directories and nothing else.
pub(crate) fn restrict_files(conn: &Connection, root: &std::path::Path) -> Result<(), StoreError> {
    let quote = |p: std::path::PathBuf| format!("'{}/'", p.display().to_string().replace('\'', "''"));
    let sql = format!(
        "SET allowed_directories = [{}, {}]; SET enable_external_access = false;",
        quote(root.join("tables")),
        quote(root.join("segments"))
    );
    conn.execute_batch(&sql).map_err(db_err)
}

/// Moves the rows of telemetry tables that are still DuckDB tables (a store
/// from before the Parquet layout, or the empty tables of migration 1) into
/// segments, then drops the tables. The rows are written as batch
/// `u64::MAX`, so a move interrupted by a crash and run again skips the days
/// it already wrote.
pub(crate) fn move_native_tables(conn: &Connection, segments: &Segments) -> Result<(), StoreError> {
    for table in TELEMETRY_TABLES {
        let kind: Option<String> = conn
            .query_row(
                "SELECT table_type FROM information_schema.tables WHERE table_name = ? AND table_schema = current_schema()",
                [table],
                |r| r.get(0),
            )
            .ok();
        if kind.as_deref() != Some("BASE TABLE") {
            continue;
        }
        let mut stmt = conn.prepare(&format!("SELECT * FROM {table}")).map_err(db_err)?;
        let batches: Vec<_> = stmt.query_arrow([]).map_err(db_err)?.collect();
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        for rb in batches.iter().filter(|b| b.num_rows() > 0) {
            segments.write(u64::MAX, table, rb)?;
        }
        if rows > 0 {
            tracing::info!(table, rows, "moved a DuckDB table's rows into Parquet segments");
        }
        conn.execute_batch(&format!("DROP TABLE {table}")).map_err(db_err)?;
    }
    Ok(())
}

/// The background thread; it stops when its sender is dropped.
pub(crate) fn spawn(
    telemetry: Arc<Telemetry>,
    writer: Arc<Mutex<Connection>>,
    interval: Duration,
) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<()>();
    let handle = std::thread::Builder::new()
        .name("costplane-compactor".into())
        .spawn(move || loop {
            match rx.recv_timeout(interval) {
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(e) = telemetry.maintain(&writer, segments::now_ns()) {
                        tracing::warn!(error = %e, "expiring or compacting telemetry segments failed; trying again later");
                    }
                }
                _ => break,
            }
        })
        .expect("spawning the compactor thread");
    (tx, handle)
}
