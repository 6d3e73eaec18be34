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
    /// DuckDB's buffer pool and operator memory, in MiB (`memory_limit`):
    /// beyond it DuckDB evicts cached blocks and spills to its temporary
    /// directory. 0 leaves DuckDB's default (80% of the machine's memory),
    /// which lets the ledger's cached blocks grow with the ledger.
    pub duckdb_memory_limit_mib: u64,
}

/// The embedded store's default DuckDB memory limit: a server importing a
/// bill of a million rows stays under 256 MiB resident (README, "Bills of
/// any size").
pub const DEFAULT_MEMORY_LIMIT_MIB: u64 = 64;

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            traces_ttl_days: 7,
            logs_ttl_days: 30,
            metrics_ttl_days: 365,
            compact: CompactPolicy::default(),
            maintenance_interval: Some(Duration::from_secs(60)),
            duckdb_memory_limit_mib: DEFAULT_MEMORY_LIMIT_MIB,
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

/// The segments and what each view currently reads.
pub(crate) struct Telemetry {
    pub segments: Arc<Segments>,
    pub options: EmbeddedOptions,
    /// Per table of `TELEMETRY_TABLES`: the view's current definition
    /// (empty before the first sync).
    views: Mutex<[String; 7]>,
    /// Per table: whether `views.sql`'s view reads files.
    reading: Mutex<[bool; 7]>,
}

impl Telemetry {
    pub fn new(segments: Arc<Segments>, options: EmbeddedOptions) -> Self {
        Telemetry { segments, options, views: Mutex::new(Default::default()), reading: Mutex::new([false; 7]) }
    }

    /// Makes every view match the partitions on disk (all of them with
    /// `force`) and rewrites `views.sql` when a table started or stopped
    /// having files.
    pub fn sync_views(&self, conn: &Connection, force: bool) -> Result<(), StoreError> {
        let mut views = self.views.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut reading = self.reading.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut changed = force;
        for (i, table) in TELEMETRY_TABLES.iter().enumerate() {
            let sql = views::partition_view_sql(&self.segments, table)?;
            if force || sql != views[i] {
                conn.execute_batch(&sql).map_err(db_err)?;
                views[i] = sql;
            }
            let has = self.segments.has_files(table)?;
            if has != reading[i] {
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
        {
            // Also after no expiry: a view left on a replaced generation (a
            // sync that failed) moves off it before that generation is deleted.
            let conn = conn.lock().map_err(|_| StoreError::Unavailable("the writer connection is poisoned".into()))?;
            self.sync_views(&conn, false)?;
        }
        // Each swap rewrites the views holding the writer connection, so a
        // write that lands in the new generation returns only once the views
        // read it; queries bound earlier keep reading the old generation.
        let swap = |swap: &mut dyn FnMut() -> Result<(), StoreError>| -> Result<(), StoreError> {
            let conn = conn.lock().map_err(|_| StoreError::Unavailable("the writer connection is poisoned".into()))?;
            swap()?;
            self.sync_views(&conn, false)
        };
        let merged = compact::compact_all_with(&self.segments, &self.options.compact, &swap)?;
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
        .spawn(move || {
            // A message never comes: the sender is dropped (the store closed).
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(interval) {
                if let Err(e) = telemetry.maintain(&writer, segments::now_ns()) {
                    tracing::warn!(error = %e, "expiring or compacting telemetry segments failed; trying again later");
                }
            }
        })
        .expect("spawning the compactor thread");
    (tx, handle)
}

#[cfg(test)]
mod measure {
    use std::sync::Arc;
    use std::time::Instant;

    use costplane_telemetry::model::{ResourceInfo, ScopeInfo, SpanRow};

    use super::super::{arrow, schema, segments};

    /// `COSTPLANE_MEASURE=1`: single-thread Parquet write speed and bytes per
    /// million spans, against the same rows appended to DuckDB tables as
    /// the store did before (spans with 20 attributes, resources with 10,
    /// 8,192-row batches, as in the measurement).
    #[test]
    fn parquet_write_speed_and_size() {
        if std::env::var("COSTPLANE_MEASURE").is_err() {
            return;
        }
        let total: usize = std::env::var("COSTPLANE_MEASURE_SPANS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
        let resources: Vec<Arc<ResourceInfo>> = (0..8)
            .map(|r| {
                Arc::new(ResourceInfo {
                    service_name: format!("svc-{r}"),
                    attributes: (0..10).map(|i| (format!("resource.key.{i}"), format!("value-{r}-{i}"))).collect(),
                    schema_url: String::new(),
                })
            })
            .collect();
        let scope = Arc::new(ScopeInfo { name: "bench".into(), ..ScopeInfo::default() });
        let t0 = 1_893_456_000_000_000_000i64;
        let span = |n: usize| SpanRow {
            resource: Arc::clone(&resources[n % 8]),
            scope: Arc::clone(&scope),
            timestamp_ns: t0 + i64::try_from(n).unwrap() * 1_000_000,
            trace_id: format!("{:032x}", n / 8),
            span_id: format!("{n:016x}"),
            parent_span_id: if n.is_multiple_of(8) { String::new() } else { format!("{:016x}", n - n % 8) },
            trace_state: String::new(),
            span_name: format!("op-{}", n % 16),
            span_kind: "Server",
            span_attributes: (0..20).map(|i| (format!("attr.key.{i}"), format!("v{}", (n * 7 + i) % 1000))).collect(),
            duration_ns: u64::try_from(n % 5000).unwrap() * 1000,
            status_code: "Ok",
            status_message: String::new(),
            events: Vec::new(),
            links: Vec::new(),
            encoded_bytes: 500,
        };
        let batches: Vec<_> = (0..total.div_ceil(8192))
            .map(|b| arrow::traces(&(b * 8192..((b + 1) * 8192).min(total)).map(span).collect::<Vec<_>>()).unwrap())
            .collect();

        let dir = tempfile::tempdir().unwrap();
        let segs = segments::Segments::open(dir.path()).unwrap();
        let started = Instant::now();
        for (i, rb) in batches.iter().enumerate() {
            segs.write(i as u64, "otel_traces", rb).unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        let parquet_bytes: u64 = segs.partition_bytes("otel_traces").unwrap().iter().map(|(_, b)| b).sum();
        let merged =
            super::compact::compact_all(&segs, &super::CompactPolicy { target_bytes: 1 << 40, max_age: std::time::Duration::ZERO })
                .unwrap();
        let compacted_bytes: u64 = segs.partition_bytes("otel_traces").unwrap().iter().map(|(_, b)| b).sum();

        let db = dir.path().join("native.duckdb");
        let conn = duckdb::Connection::open(&db).unwrap();
        let ddl: String = schema::migrations().into_iter().map(|(_, s)| s).collect();
        conn.execute_batch(&ddl).unwrap();
        let started = Instant::now();
        for rb in &batches {
            let mut app = conn.appender("otel_traces").unwrap();
            app.append_record_batch(rb.clone()).unwrap();
            app.flush().unwrap();
        }
        conn.execute_batch("CHECKPOINT").unwrap();
        let native_secs = started.elapsed().as_secs_f64();
        drop(conn);
        let native_bytes = std::fs::metadata(&db).unwrap().len();
        let per_m = |b: u64| b as f64 * 1e6 / total as f64 / 1_048_576.0;
        println!(
            "spans={total} parquet: {:.0} spans/s, {:.1} MiB/M spans as segments, {:.1} MiB/M after compaction ({merged} merged); \
             duckdb tables: {:.0} spans/s, {:.1} MiB/M spans",
            total as f64 / secs,
            per_m(parquet_bytes),
            per_m(compacted_bytes),
            total as f64 / native_secs,
            per_m(native_bytes)
        );
    }
}
