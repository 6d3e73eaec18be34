//! The embedded store: telemetry as Parquet segments, everything else in
//! one DuckDB file; no server to run.
//!
//! Durability and concurrency:
//! - Telemetry tables are Parquet files per table and day
//!   (`segments.rs`), read through DuckDB views of the exporter's names
//!   (`views.rs`); a background thread compacts them (`compact.rs`) and
//!   drops expired days. Writing Parquet costs a fraction of DuckDB's insert
//!   into MAP columns, and DuckDB reads the files directly.
//! - The ledger, usage and bookkeeping tables live in `costplane.duckdb`.
//!   One process owns that file (DuckDB allows one writing process). Inside
//!   it, writes go through one connection and reads through a second
//!   connection, so a long query never blocks ingestion.
//! - A batch's segments are written first (each records the batch id, so a
//!   retry skips what is stored), then its usage rows and its id in
//!   `costplane_written_batches` in one DuckDB transaction. A batch id found
//!   there is skipped whole; a crash between the two steps is repaired by
//!   the retry or the buffer's replay, which skips the stored segments and
//!   writes the usage. Every row ends up stored exactly once.
//! - Other processes read the telemetry through `views.sql`, also while the
//!   server runs; the DuckDB file they read only while no server holds it
//!   ([`DuckDbStore::open_read_only`]); while `serve` runs, `costplane sql`
//!   goes through the server's `/api/v1/sql`.
//! - Ad-hoc SQL cannot touch files: external access is off, except for the
//!   `tables/` and `segments/` directories the views read.
//! - The schema is versioned in `costplane_schema_migrations`; a file written
//!   by a newer costplane is refused rather than misread. After migrations,
//!   every start checks the tables' columns against what the writer appends
//!   (`verify.rs`): a table made by hand with a missing or mistyped column
//!   stops startup with the fix, rather than failing every write. The
//!   appender names its columns, so columns costplane does not write may
//!   exist (nullable or with a default). Telemetry tables of a store from
//!   before the Parquet layout are moved into segments at the first start.
//! - Errors are classified by DuckDB's error type (`errors.rs`): conversion,
//!   invalid-input, constraint and out-of-range errors are invalid data
//!   (`Rejected`); locks, conflicts and I/O are `Unavailable`; missing tables
//!   or columns are `Schema`; anything else is `Unexpected` and retried.

mod adhoc;
pub(crate) mod arrow;
mod compact;
mod errors;
mod maintain;
mod pg;
mod readers;
pub mod schema;
mod segments;
mod verify;
mod views;

pub use compact::CompactPolicy;
pub use maintain::EmbeddedOptions;
use segments::SEGMENT_ZSTD_LEVEL;

use crate::write_seq::WriteSeqs;
pub use views::VIEWS_FILE;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ::arrow::array::Array;
use ::arrow::datatypes::DataType;
use ::arrow::record_batch::RecordBatch;
use ::arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use costplane_ledger::{LedgerReplacement, LedgerRow};
use costplane_telemetry::{SpanRow, TelemetryBatch};
use duckdb::{AccessMode, Config, Connection};

use crate::{Dialect, Param, QueryLimits, QueryResult, ReadLane, Record, RecordTable, Store, StoreError, TelemetrySink};

/// The file name of the embedded store inside the data directory.
pub const FILE_NAME: &str = "costplane.duckdb";

/// The embedded DuckDB store.
pub struct DuckDbStore {
    path: PathBuf,
    writer: Arc<Mutex<Connection>>,
    /// The SQL endpoint's reads of the store's own tables (`pg.rs`).
    reader: Arc<Mutex<Connection>>,
    /// costplane's own reads for requests: a pool with a time limit (`readers.rs`).
    readers: readers::Readers,
    /// The closer's reads, on a connection of their own.
    closer_readers: readers::Readers,
    /// Ad-hoc user SQL runs here, one query at a time (`adhoc.rs`).
    adhoc: Arc<Mutex<Connection>>,
    /// The Parquet segments (none when opened read-only).
    telemetry: Option<Arc<maintain::Telemetry>>,
    /// Stops and joins the compactor thread on drop.
    compactor: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
    /// Write numbers of usage rows, taken under the writer's lock.
    seqs: Arc<WriteSeqs>,
}

impl Drop for DuckDbStore {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.compactor.take() {
            drop(stop);
            let _ = handle.join();
        }
    }
}

impl std::fmt::Debug for DuckDbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DuckDbStore").field("path", &self.path).finish()
    }
}

fn db_err(e: duckdb::Error) -> StoreError {
    errors::classify(e)
}

impl DuckDbStore {
    /// Opens (creating if needed) the store in `data_dir` for writing with
    /// the default options, and brings its schema up to date.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        DuckDbStore::open_with(data_dir, EmbeddedOptions::default())
    }

    /// [`DuckDbStore::open`] with `options` for the telemetry segments.
    pub fn open_with(data_dir: &Path, options: EmbeddedOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join(FILE_NAME);
        // External access goes off once the segment directories are allowed
        // (`restrict_files`): ad-hoc SQL must not read or write other files.
        let config = Config::default();
        let conn = Connection::open_with_flags(&path, config).map_err(|e| {
            let text = e.to_string();
            if text.contains("lock") {
                StoreError::Unavailable(format!(
                    "{} is in use by another process ({text}); stop the other costplane or pick another --data-dir",
                    path.display()
                ))
            } else {
                db_err(e)
            }
        })?;
        // Only now, holding DuckDB's lock on the file: opening the segments
        // deletes what an interrupted compaction left, which must never be a
        // running server's compaction in progress.
        let segments = segments::Segments::open(data_dir)?;
        maintain::restrict_files(&conn, segments.root())?;
        migrate(&conn)?;
        // Checked before anything moves: a telemetry table made by another
        // tool stops startup with the fix rather than being moved half-read.
        check_schema(&conn, &path)?;
        maintain::move_native_tables(&conn, &segments)?;
        let interval = options.maintenance_interval;
        let memory_limit_mib = options.duckdb_memory_limit_mib;
        let telemetry = Arc::new(maintain::Telemetry::new(segments, options));
        telemetry.sync_views(&conn, true)?;
        pg::install(&conn)?;
        conn.execute_batch("SET parquet_metadata_cache = true").map_err(db_err)?;
        if memory_limit_mib > 0 {
            conn.execute_batch(&format!("SET memory_limit = '{memory_limit_mib}MiB'")).map_err(db_err)?;
        }
        let mut store = DuckDbStore::with_connections(path, conn, Some(Arc::clone(&telemetry)))?;
        if let Some(interval) = interval {
            store.compactor = Some(maintain::spawn(telemetry, Arc::clone(&store.writer), interval));
        }
        Ok(store)
    }

    fn with_connections(path: PathBuf, conn: Connection, telemetry: Option<Arc<maintain::Telemetry>>) -> Result<Self, StoreError> {
        let reader = conn.try_clone().map_err(db_err)?;
        let adhoc = conn.try_clone().map_err(db_err)?;
        let readers = readers::Readers::new(&conn, readers::READERS, readers::READ_TIMEOUT)?;
        let closer_readers = readers::Readers::new(&conn, readers::CLOSER_READERS, readers::READ_TIMEOUT)?;
        let seqs = WriteSeqs::after(stored_write_seq(&conn)?);
        Ok(DuckDbStore {
            seqs,
            path,
            writer: Arc::new(Mutex::new(conn)),
            reader: Arc::new(Mutex::new(reader)),
            readers,
            closer_readers,
            adhoc: Arc::new(Mutex::new(adhoc)),
            telemetry,
            compactor: None,
        })
    }

    /// Expires and compacts the telemetry segments now, as the background
    /// thread does every `maintenance_interval`, as if the time were
    /// `now_ns`. Returns (partitions removed, partitions merged).
    pub async fn maintain_now(&self, now_ns: i64) -> Result<(usize, usize), StoreError> {
        let Some(telemetry) = self.telemetry.clone() else { return Ok((0, 0)) };
        let writer = Arc::clone(&self.writer);
        tokio::task::spawn_blocking(move || telemetry.maintain(&writer, now_ns))
            .await
            .map_err(|e| StoreError::Unavailable(format!("the maintenance task failed: {e}")))?
    }

    /// The data directory's `tables/` (what the views read).
    pub fn tables_dir(&self) -> Option<PathBuf> {
        self.telemetry.as_ref().map(|t| t.segments.tables_dir())
    }

    /// Opens an existing store read-only, for `costplane sql` while no server runs.
    pub fn open_read_only(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(FILE_NAME);
        if !path.exists() {
            return Err(StoreError::Schema(format!(
                "no store at {}; start `costplane serve --data-dir {}` first",
                path.display(),
                data_dir.display()
            )));
        }
        let config = Config::default().access_mode(AccessMode::ReadOnly).map_err(db_err)?;
        let conn = Connection::open_with_flags(&path, config).map_err(db_err)?;
        maintain::restrict_files(&conn, &data_dir.canonicalize()?)?;
        conn.execute_batch("SET parquet_metadata_cache = true").map_err(db_err)?;
        check_version(&conn)?;
        // The file's views are as the server last left them; a server killed
        // between a swap and the views' rewrite leaves them on a generation
        // its next start deletes. Temporary views (read-only files allow
        // them, and they come before the file's in name lookup) read the
        // partitions as they are now.
        // Temporary views belong to one connection: each of the three gets them.
        let segments = segments::Segments::open_listing(data_dir)?;
        let mut temp = String::new();
        for table in crate::TELEMETRY_TABLES {
            temp.push_str(&views::partition_view_sql(&segments, table)?.replacen(
                "CREATE OR REPLACE VIEW ",
                "CREATE OR REPLACE TEMP VIEW ",
                1,
            ));
        }
        let store = DuckDbStore::with_connections(path, conn, None)?;
        for conn in [&store.writer, &store.reader, &store.adhoc].into_iter().chain(store.readers.all()).chain(store.closer_readers.all()) {
            conn.lock().map_err(|_| StoreError::Unavailable("a connection is poisoned".into()))?.execute_batch(&temp).map_err(db_err)?;
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn current_version(conn: &Connection) -> Result<i32, StoreError> {
    let exists: i64 = conn
        .query_row("SELECT count(*) FROM information_schema.tables WHERE table_name = 'costplane_schema_migrations'", [], |r| r.get(0))
        .map_err(db_err)?;
    if exists == 0 {
        return Ok(0);
    }
    conn.query_row("SELECT coalesce(max(version), 0) FROM costplane_schema_migrations", [], |r| r.get(0)).map_err(db_err)
}

fn check_version(conn: &Connection) -> Result<i32, StoreError> {
    let version = current_version(conn)?;
    if version > schema::SCHEMA_VERSION {
        return Err(StoreError::Schema(format!(
            "the store's schema is version {version}, newer than the version {} this costplane knows; \
             upgrade costplane (a downgrade would misread the tables)",
            schema::SCHEMA_VERSION
        )));
    }
    Ok(version)
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version = check_version(conn)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS costplane_schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp)",
    )
    .map_err(db_err)?;
    for (step, ddl) in schema::migrations() {
        if step <= version {
            continue;
        }
        let sql = format!("BEGIN TRANSACTION; {ddl} INSERT INTO costplane_schema_migrations (version) VALUES ({step}); COMMIT;");
        if let Err(e) = conn.execute_batch(&sql) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(StoreError::Schema(format!("migrating the store to schema version {step} failed: {e}")));
        }
    }
    Ok(())
}

/// Fails unless every table has the columns the writer appends. A missing
/// table (dropped since it was created) is created again first.
fn check_schema(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let mut problems = verify::problems(conn)?;
    if crate::verify::has_missing_table(&problems) {
        for (step, ddl) in schema::migrations() {
            // Each step's DDL is `CREATE TABLE IF NOT EXISTS`: existing tables stay.
            conn.execute_batch(&ddl)
                .map_err(|e| StoreError::Schema(format!("creating the tables of schema version {step} again failed: {e}")))?;
        }
        problems = verify::problems(conn)?;
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(StoreError::Schema(crate::verify::report(
        &format!("the store {}", path.display()),
        &problems,
        &verify::DuckDbFixes,
        "point costplane at a fresh --data-dir, where it creates its own tables",
    )))
}

/// One record batch per table of `batch` that has rows (every table when
/// `with_empty`: the schema check reads the columns from them).
fn to_record_batches(batch: &TelemetryBatch, with_empty: bool) -> Result<Vec<(&'static str, RecordBatch)>, StoreError> {
    // A batch Arrow cannot build from these rows will not build on a retry either.
    let conv = |e: ::arrow::error::ArrowError| StoreError::Rejected(format!("building the Arrow batch failed: {e}"));
    type Build<'a> = &'a dyn Fn() -> Result<RecordBatch, ::arrow::error::ArrowError>;
    let (b, usage) = (batch, &batch.usage);
    let tables: [(&'static str, bool, Build); 12] = [
        ("costplane_usage_telemetry", usage.telemetry.is_empty(), &|| arrow::usage_telemetry(&usage.aggregated_telemetry())),
        ("costplane_usage_llm", usage.llm.is_empty(), &|| arrow::usage_llm(&usage.llm)),
        ("costplane_usage_kubernetes", usage.kubernetes.is_empty(), &|| arrow::usage_kubernetes(&usage.kubernetes)),
        ("costplane_usage_k8s_samples", usage.kubernetes_samples.is_empty(), &|| arrow::usage_kubernetes(&usage.kubernetes_samples)),
        // Ledger rows are written by `replace_ledger`, never with a batch;
        // listed (empty) for the schema check.
        ("costplane_ledger", true, &|| arrow::ledger(&[])),
        ("otel_traces", b.spans.is_empty(), &|| arrow::traces(&b.spans)),
        ("otel_logs", b.logs.is_empty(), &|| arrow::logs(&b.logs)),
        ("otel_metrics_gauge", b.gauges.is_empty(), &|| arrow::gauges(&b.gauges)),
        ("otel_metrics_sum", b.sums.is_empty(), &|| arrow::sums(&b.sums)),
        ("otel_metrics_histogram", b.histograms.is_empty(), &|| arrow::histograms(&b.histograms)),
        ("otel_metrics_exp_histogram", b.exp_histograms.is_empty(), &|| arrow::exp_histograms(&b.exp_histograms)),
        ("otel_metrics_summary", b.summaries.is_empty(), &|| arrow::summaries(&b.summaries)),
    ];
    tables.into_iter().filter(|(_, empty, _)| with_empty || !empty).map(|(table, _, build)| Ok((table, build().map_err(conv)?))).collect()
}

/// The largest write number stored (0 for none, and for a store opened
/// read-only from before write numbers).
fn stored_write_seq(conn: &Connection) -> Result<u64, StoreError> {
    let sql = "SELECT max(s) FROM (SELECT max(\"WriteSeq\") AS s FROM costplane_usage_llm \
               UNION ALL SELECT max(\"WriteSeq\") FROM costplane_usage_telemetry)";
    match conn.query_row(sql, [], |r| r.get::<_, Option<u64>>(0)) {
        Ok(n) => Ok(n.unwrap_or(0)),
        // A read-only open of a store not yet migrated has no column: it writes nothing.
        Err(e) if e.to_string().contains("WriteSeq") => Ok(0),
        Err(e) => Err(db_err(e)),
    }
}

fn already_written(conn: &Connection, batch_id: u64) -> Result<bool, StoreError> {
    let n: i64 =
        conn.query_row("SELECT count(*) FROM costplane_written_batches WHERE \"BatchId\" = ?", [batch_id], |r| r.get(0)).map_err(db_err)?;
    Ok(n > 0)
}

fn write_blocking(
    conn: &Connection,
    batch_id: u64,
    tables: Vec<(&'static str, RecordBatch)>,
    seqs: &Arc<WriteSeqs>,
) -> Result<(), StoreError> {
    // Taken and dropped under the writer's lock, which the commit is made
    // under: numbers become visible in order.
    let ticket = seqs.begin();
    conn.execute_batch("BEGIN TRANSACTION").map_err(db_err)?;
    let result = (|| {
        // Times come from here, not SQL: the bundled DuckDB has no ICU, so
        // TIMESTAMPTZ arithmetic (current_timestamp - INTERVAL) is unavailable.
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let fresh = conn
            .execute(
                "INSERT INTO costplane_written_batches (\"BatchId\", \"WrittenAtNs\") VALUES (?, ?) ON CONFLICT DO NOTHING",
                duckdb::params![batch_id, now_ns],
            )
            .map_err(db_err)?;
        if fresh == 0 {
            tracing::debug!(batch_id, "batch already written; skipping");
            return conn.execute_batch("COMMIT").map_err(db_err);
        }
        if batch_id.is_multiple_of(1024) {
            // Ids only need remembering for as long as a retry can come.
            const DAY_NS: i64 = 86_400_000_000_000;
            conn.execute("DELETE FROM costplane_written_batches WHERE \"WrittenAtNs\" < ?", [now_ns - DAY_NS]).map_err(db_err)?;
        }
        for (table, rb) in tables {
            let rb = arrow::with_write_seq(rb, ticket.seq())
                .map_err(|e| StoreError::Rejected(format!("building the Arrow batch failed: {e}")))?;
            append_batch(conn, table, rb)?;
        }
        conn.execute_batch("COMMIT").map_err(db_err)
    })();
    if result.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

/// One cell as JSON: numbers, booleans and strings as themselves; lists,
/// maps and structs as JSON arrays/objects; anything else (timestamps,
/// decimals, dates) as DuckDB's text, which keeps decimals exact.
fn cell_json(array: &dyn Array, row: usize, options: &FormatOptions) -> Result<serde_json::Value, StoreError> {
    use ::arrow::array::AsArray;
    use ::arrow::datatypes as t;
    use serde_json::Value as J;
    if array.is_null(row) {
        return Ok(J::Null);
    }
    let v = match array.data_type() {
        DataType::Boolean => J::Bool(array.as_boolean().value(row)),
        DataType::Int8 => J::from(array.as_primitive::<t::Int8Type>().value(row)),
        DataType::Int16 => J::from(array.as_primitive::<t::Int16Type>().value(row)),
        DataType::Int32 => J::from(array.as_primitive::<t::Int32Type>().value(row)),
        DataType::Int64 => J::from(array.as_primitive::<t::Int64Type>().value(row)),
        DataType::UInt8 => J::from(array.as_primitive::<t::UInt8Type>().value(row)),
        DataType::UInt16 => J::from(array.as_primitive::<t::UInt16Type>().value(row)),
        DataType::UInt32 => J::from(array.as_primitive::<t::UInt32Type>().value(row)),
        DataType::UInt64 => J::from(array.as_primitive::<t::UInt64Type>().value(row)),
        // HUGEINT (e.g. sum of UBIGINT) arrives as DECIMAL(38, 0): an integer
        // when it fits, as ClickHouse's UInt64 sums are.
        DataType::Decimal128(_, 0) => {
            let v = array.as_primitive::<t::Decimal128Type>().value(row);
            i64::try_from(v).map(J::from).or_else(|_| u64::try_from(v).map(J::from)).unwrap_or_else(|_| J::String(v.to_string()))
        }
        DataType::Float32 => crate::json_number(f64::from(array.as_primitive::<t::Float32Type>().value(row))),
        DataType::Float64 => crate::json_number(array.as_primitive::<t::Float64Type>().value(row)),
        DataType::Utf8 => J::String(array.as_string::<i32>().value(row).to_owned()),
        DataType::LargeUtf8 => J::String(array.as_string::<i64>().value(row).to_owned()),
        DataType::Utf8View => J::String(array.as_string_view().value(row).to_owned()),
        DataType::List(_) => {
            let items = array.as_list::<i32>().value(row);
            J::Array((0..items.len()).map(|i| cell_json(items.as_ref(), i, options)).collect::<Result<_, _>>()?)
        }
        DataType::LargeList(_) => {
            let items = array.as_list::<i64>().value(row);
            J::Array((0..items.len()).map(|i| cell_json(items.as_ref(), i, options)).collect::<Result<_, _>>()?)
        }
        DataType::Map(_, _) => {
            let entries = array.as_map().value(row);
            let (keys, values) = (entries.column(0), entries.column(1));
            let mut map = serde_json::Map::new();
            for i in 0..entries.len() {
                let key = match cell_json(keys.as_ref(), i, options)? {
                    J::String(s) => s,
                    other => other.to_string(),
                };
                map.insert(key, cell_json(values.as_ref(), i, options)?);
            }
            J::Object(map)
        }
        DataType::Struct(fields) => {
            let s = array.as_struct();
            let mut map = serde_json::Map::new();
            for (field, column) in fields.iter().zip(s.columns()) {
                map.insert(field.name().clone(), cell_json(column.as_ref(), row, options)?);
            }
            J::Object(map)
        }
        _ => {
            let fmt =
                ArrayFormatter::try_new(array, options).map_err(|e| StoreError::Rejected(format!("formatting the result failed: {e}")))?;
            J::String(fmt.value(row).to_string())
        }
    };
    Ok(v)
}

fn query_blocking(conn: &Connection, sql: &str, params: &[Param]) -> Result<QueryResult, StoreError> {
    let (batches, schema) = arrow_blocking(conn, sql, params)?;
    rows_of(&batches, &schema)
}

fn arrow_blocking(conn: &Connection, sql: &str, params: &[Param]) -> Result<(Vec<RecordBatch>, ::arrow::datatypes::SchemaRef), StoreError> {
    let mut stmt = conn.prepare(sql).map_err(errors::read_error)?;
    let values: Vec<duckdb::types::Value> = params
        .iter()
        .map(|p| match p {
            Param::Str(s) => duckdb::types::Value::Text(s.clone()),
            Param::Int(i) => duckdb::types::Value::BigInt(*i),
            Param::UInt(u) => duckdb::types::Value::UBigInt(*u),
        })
        .collect();
    let batches: Vec<RecordBatch> = stmt.query_arrow(duckdb::params_from_iter(values)).map_err(errors::read_error)?.collect();
    Ok((batches, stmt.schema()))
}

fn rows_of(batches: &[RecordBatch], schema: &::arrow::datatypes::SchemaRef) -> Result<QueryResult, StoreError> {
    let mut result = QueryResult {
        columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
        types: schema.fields().iter().map(|f| f.data_type().to_string()).collect(),
        rows: Vec::new(),
        truncated: false,
    };
    let options = FormatOptions::default();
    for rb in batches {
        for row in 0..rb.num_rows() {
            let values = rb
                .columns()
                .iter()
                .map(|col| cell_json(col.as_ref(), row, &options).map(crate::result_cell))
                .collect::<Result<Vec<_>, _>>()?;
            result.rows.push(values);
        }
    }
    Ok(result)
}

#[async_trait]
impl TelemetrySink for DuckDbStore {
    fn backend(&self) -> &'static str {
        "duckdb"
    }

    /// Two: a write's Arrow and Parquet encoding (most of its work) runs
    /// without the connection, so two writes use both of a small machine's
    /// cores; the DuckDB part (batch id, usage rows) is serialized by the
    /// connection's lock. Segment names and the layout lock keep two
    /// writes' files apart.
    fn max_concurrent_writes(&self) -> usize {
        2
    }

    async fn write(&self, batch: &TelemetryBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        // Arrow arrays are built on the writer's task: handing this worker's
        // tasks to another (`block_in_place`) measured 10.2 against 9.1
        // CPU-s per million spans back to back, and 402 against 379 MiB
        // peak RSS. Parquet encoding
        // runs on the blocking pool, without the connection held.
        let tables = to_record_batches(batch, false)?;
        let writer = Arc::clone(&self.writer);
        let telemetry = self.telemetry.clone();
        let batch_id = batch.id;
        let seqs = Arc::clone(&self.seqs);
        tokio::task::spawn_blocking(move || {
            let poisoned = || StoreError::Unavailable("the writer connection is poisoned".into());
            let Some(telemetry) = telemetry else {
                return Err(StoreError::Unavailable("the store was opened read-only".into()));
            };
            if already_written(&*writer.lock().map_err(|_| poisoned())?, batch_id)? {
                tracing::debug!(batch_id, "batch already written; skipping");
                return Ok(());
            }
            let (rows, cost): (Vec<_>, Vec<_>) = tables.into_iter().partition(|(t, _)| crate::TELEMETRY_TABLES.contains(t));
            let (mut started, mut files) = (false, Vec::new());
            for (table, rb) in &rows {
                started |= telemetry.segments.write_files(batch_id, table, rb, &mut files)?;
            }
            let conn = writer.lock().map_err(|_| poisoned())?;
            if started {
                telemetry.sync_views(&conn, false)?;
            }
            let result = write_blocking(&conn, batch_id, cost, &seqs);
            if result.as_ref().is_err_and(StoreError::is_invalid_data) {
                telemetry.segments.unwrite(&files)?;
                telemetry.sync_views(&conn, false)?;
            }
            result
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("the write task failed: {e}")))?
    }
}

#[async_trait]
impl Store for DuckDbStore {
    fn as_duckdb(&self) -> Option<&DuckDbStore> {
        Some(self)
    }

    fn write_seqs(&self) -> Option<Arc<WriteSeqs>> {
        Some(Arc::clone(&self.seqs))
    }

    async fn query(&self, sql: &str) -> Result<QueryResult, StoreError> {
        self.query_limited(sql, &QueryLimits::default()).await
    }

    async fn query_limited(&self, sql: &str, limits: &QueryLimits) -> Result<QueryResult, StoreError> {
        let conn = Arc::clone(&self.adhoc);
        let (sql, max_rows) = (sql.to_owned(), limits.max_rows);
        // Taken before the query starts, so the timer can stop it.
        let interrupt = conn.lock().map_err(|_| StoreError::Unavailable("the SQL connection is poisoned".into()))?.interrupt_handle();
        let task = tokio::task::spawn_blocking(move || {
            let conn = conn.lock().map_err(|_| StoreError::Unavailable("the SQL connection is poisoned".into()))?;
            let (batches, schema, truncated) = errors::retry_vanished(|| adhoc::run_read_only(&conn, &sql, max_rows))?;
            let mut result = rows_of(&batches, &schema)?;
            result.truncated = truncated;
            Ok(result)
        });
        match tokio::time::timeout(limits.timeout, task).await {
            Ok(joined) => joined.map_err(|e| StoreError::Unavailable(format!("the query task failed: {e}")))?,
            Err(_) => {
                interrupt.interrupt();
                Err(StoreError::Unavailable(format!("the query ran past its time limit ({:?}) and was stopped", limits.timeout)))
            }
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.query("SELECT 1").await.map(|_| ())
    }

    fn dialect(&self) -> Dialect {
        Dialect::DuckDb
    }

    async fn query_with(&self, sql: &str, params: &[Param]) -> Result<QueryResult, StoreError> {
        self.query_on(ReadLane::Serving, sql, params).await
    }

    async fn query_on(&self, lane: ReadLane, sql: &str, params: &[Param]) -> Result<QueryResult, StoreError> {
        let readers = match lane {
            ReadLane::Serving => &self.readers,
            ReadLane::Closer => &self.closer_readers,
        };
        let (sql, params) = (sql.to_owned(), params.to_vec());
        readers.run(move |conn| errors::retry_vanished(|| query_blocking(conn, &sql, &params))).await
    }

    async fn query_arrow_on(&self, lane: ReadLane, sql: &str, params: &[Param]) -> Result<Option<Vec<RecordBatch>>, StoreError> {
        let readers = match lane {
            ReadLane::Serving => &self.readers,
            ReadLane::Closer => &self.closer_readers,
        };
        let (sql, params) = (sql.to_owned(), params.to_vec());
        readers.run(move |conn| errors::retry_vanished(|| arrow_blocking(conn, &sql, &params).map(|(b, _)| Some(b)))).await
    }

    /// Per signal and day: the bytes of the partition's Parquet files.
    async fn stored_bytes(&self) -> Result<Vec<crate::StoredBytes>, StoreError> {
        let Some(telemetry) = self.telemetry.clone() else { return Ok(Vec::new()) };
        tokio::task::spawn_blocking(move || {
            let mut by_day: std::collections::BTreeMap<(&'static str, i64), u64> = std::collections::BTreeMap::new();
            for table in crate::TELEMETRY_TABLES {
                let signal = match table {
                    "otel_traces" => "traces",
                    "otel_logs" => "logs",
                    _ => "metrics",
                };
                for (day, bytes) in telemetry.segments.partition_bytes(table)? {
                    *by_day.entry((signal, day)).or_default() += bytes;
                }
            }
            Ok(by_day
                .into_iter()
                .map(|((signal, day), bytes)| crate::StoredBytes {
                    signal: signal.to_owned(),
                    day_ns: Some(day * segments::DAY_NS),
                    bytes,
                    method: "sum of the partition's Parquet file sizes",
                })
                .collect())
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("the size task failed: {e}")))?
    }

    async fn replace_ledger(&self, replacement: &LedgerReplacement) -> Result<(), StoreError> {
        if replacement.hours.is_empty() {
            return Ok(());
        }
        let conv = |e: ::arrow::error::ArrowError| StoreError::Rejected(format!("building the Arrow batch failed: {e}"));
        let rows = arrow::ledger(&replacement.rows).map_err(conv)?;
        let hours = arrow::ledger_hours(&replacement.hours).map_err(conv)?;
        let window = crate::ledger::replacement_window(replacement);
        let pause = crate::ledger::test_switch_delay(replacement);
        let writer = Arc::clone(&self.writer);
        tokio::task::spawn_blocking(move || {
            let conn = writer.lock().map_err(|_| StoreError::Unavailable("the writer connection is poisoned".into()))?;
            replace_blocking(&conn, rows, hours, window, pause)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("the ledger task failed: {e}")))?
    }

    async fn stage_ledger_rows(&self, rows: &[LedgerRow], _batch_id: u64) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let batch = arrow::ledger(rows).map_err(|e| StoreError::Rejected(format!("building the Arrow batch failed: {e}")))?;
        let writer = Arc::clone(&self.writer);
        tokio::task::spawn_blocking(move || {
            let conn = writer.lock().map_err(|_| StoreError::Unavailable("the writer connection is poisoned".into()))?;
            append_batch(&conn, "costplane_ledger", batch)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("the ledger task failed: {e}")))?
    }

    async fn discard_ledger_revisions(&self, from: i64, to: i64, revisions: &[u64]) -> Result<(), StoreError> {
        if revisions.is_empty() {
            return Ok(());
        }
        let sql = crate::ledger::discard_statement(Dialect::DuckDb, "costplane_ledger", revisions);
        let writer = Arc::clone(&self.writer);
        tokio::task::spawn_blocking(move || {
            let conn = writer.lock().map_err(|_| StoreError::Unavailable("the writer connection is poisoned".into()))?;
            conn.execute(&sql, duckdb::params![from, to]).map(|_| ()).map_err(db_err)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("the ledger task failed: {e}")))?
    }

    async fn prune_kubernetes_samples(&self, before_ns: i64) -> Result<u64, StoreError> {
        let writer = Arc::clone(&self.writer);
        tokio::task::spawn_blocking(move || {
            let conn = writer.lock().map_err(|_| StoreError::Unavailable("the writer connection is poisoned".into()))?;
            let gone = conn
                .execute("DELETE FROM costplane_usage_k8s_samples WHERE epoch_ns(\"Hour\") < ?", duckdb::params![before_ns])
                .map_err(db_err)?;
            Ok(u64::try_from(gone).unwrap_or(0))
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("the prune task failed: {e}")))?
    }

    async fn put_records(&self, table: RecordTable, records: &[Record]) -> Result<(), StoreError> {
        let writer = Arc::clone(&self.writer);
        let records = records.to_vec();
        tokio::task::spawn_blocking(move || {
            let conn = writer.lock().map_err(|_| StoreError::Unavailable("the writer connection is poisoned".into()))?;
            conn.execute_batch("BEGIN TRANSACTION").map_err(db_err)?;
            let sql = format!("INSERT OR REPLACE INTO {} VALUES (?, ?, ?, ?)", table.name());
            let result = records
                .iter()
                .try_for_each(|r| conn.execute(&sql, duckdb::params![r.key, r.body, r.updated_ns, r.deleted]).map(|_| ()).map_err(db_err));
            match result {
                Ok(()) => conn.execute_batch("COMMIT").map_err(db_err),
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("the write task failed: {e}")))?
    }

    async fn records(&self, table: RecordTable) -> Result<Vec<Record>, StoreError> {
        let sql = format!(
            "SELECT \"Key\", \"Body\", \"UpdatedNs\" FROM {} WHERE NOT coalesce(\"Deleted\", false) ORDER BY \"Key\"",
            table.name()
        );
        let r = self.query_with(&sql, &[]).await?;
        Ok(r.rows.iter().map(|row| Record::from_row(row)).collect())
    }
}

/// Appends `batch` to `table` through DuckDB's appender, by column name:
/// the table may have columns costplane does not write.
fn append_batch(conn: &Connection, table: &str, batch: RecordBatch) -> Result<(), StoreError> {
    let append_err = errors::classify_append;
    let mut app = conn.appender(table).map_err(append_err)?;
    for field in batch.schema().fields() {
        app.add_column(field.name()).map_err(append_err)?;
    }
    app.append_record_batch(batch).map_err(append_err)?;
    app.flush().map_err(append_err)
}

/// One transaction: the new rows and revisions in, the superseded ones out.
fn replace_blocking(
    conn: &Connection,
    rows: RecordBatch,
    hours: RecordBatch,
    (from, to): (i64, i64),
    pause: Option<std::time::Duration>,
) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN TRANSACTION").map_err(db_err)?;
    let result = (|| {
        for (table, rb) in [("costplane_ledger", rows), ("costplane_ledger_hours", hours)] {
            if table == "costplane_ledger_hours" {
                if let Some(pause) = pause {
                    tracing::warn!(?pause, "test hook: pausing before the ledger switch");
                    std::thread::sleep(pause);
                }
            }
            if rb.num_rows() == 0 {
                continue;
            }
            append_batch(conn, table, rb)?;
        }
        for sql in crate::ledger::retire_statements(Dialect::DuckDb, "costplane_ledger", "costplane_ledger_hours") {
            conn.execute(&sql, duckdb::params![from, to]).map_err(db_err)?;
        }
        conn.execute_batch("COMMIT").map_err(db_err)
    })();
    if result.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

/// Writes `spans` as one `otel_traces` segment at `path`, encoded exactly as
/// the embedded store encodes them (its Arrow columns, zstd level, writer
/// properties), but outside any data directory: no layout, no batch ids.
/// `costplane bench` times it as the Parquet-write ceiling. Returns the
/// file's size.
pub fn write_traces_segment(spans: &[SpanRow], path: &Path) -> Result<u64, StoreError> {
    const CHUNK: usize = 8192;
    let schema = crate::tables::described("otel_traces").arrow_schema();
    let batches = spans
        .chunks(CHUNK)
        .map(|chunk| arrow::traces(chunk).map_err(|e| StoreError::Rejected(format!("building the Arrow batch failed: {e}"))));
    segments::write_stream(path, &schema, batches, &[], SEGMENT_ZSTD_LEVEL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_old_batch_ids_works() {
        let dir = tempfile::tempdir().unwrap();
        let store = DuckDbStore::open(dir.path()).unwrap();
        let conn = store.writer.lock().unwrap();
        conn.execute_batch("INSERT INTO costplane_written_batches VALUES (7, 0)").unwrap();
        // A batch id that is a multiple of 1024 prunes ids older than a day.
        write_blocking(&conn, 2048, Vec::new(), &WriteSeqs::after(0)).unwrap();
        let ids: Vec<u64> = conn
            .prepare("SELECT \"BatchId\" FROM costplane_written_batches ORDER BY 1")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(ids, vec![2048]);
        // The same id again is a no-op, not an error.
        write_blocking(&conn, 2048, Vec::new(), &WriteSeqs::after(0)).unwrap();
    }

    #[tokio::test]
    async fn records_keep_the_latest_write_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = DuckDbStore::open(dir.path()).unwrap();
            let t = RecordTable::Budgets;
            store.put_records(t, &[Record::new("b", r#"{"v":1}"#, 1), Record::new("a", r#"{"v":1}"#, 1)]).await.unwrap();
            store.put_records(t, &[Record::new("b", r#"{"v":2}"#, 2), Record::tombstone("a", 3)]).await.unwrap();
            let got = store.records(t).await.unwrap();
            assert_eq!(got, vec![Record::new("b", r#"{"v":2}"#, 2)]);
            assert!(store.records(RecordTable::Anomalies).await.unwrap().is_empty());
        }
        let store = DuckDbStore::open(dir.path()).unwrap();
        assert_eq!(store.records(RecordTable::Budgets).await.unwrap().len(), 1);
    }

    /// A file written at schema version 3 (the hourly ledger, no keyed
    /// state tables) opens at the current version: step 4 adds the state
    /// tables, step 5 the Kubernetes columns, step 9 the usage's event day,
    /// and the ledger stays as it was.
    #[tokio::test]
    async fn a_version_3_store_is_upgraded_to_the_current_version() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
            conn.execute_batch(
                "CREATE TABLE costplane_schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp)",
            )
            .unwrap();
            for (step, ddl) in schema::migrations().into_iter().filter(|(step, _)| *step <= 3) {
                conn.execute_batch(&format!("{ddl} INSERT INTO costplane_schema_migrations (version) VALUES ({step});")).unwrap();
            }
            conn.execute_batch("INSERT INTO costplane_ledger_hours VALUES (TIMESTAMP '2026-11-01 10:00:00', 'llm', 7, 'closed', 3, 'p1')")
                .unwrap();
            conn.execute_batch(
                "INSERT INTO costplane_usage_telemetry VALUES (TIMESTAMP '2026-11-01 10:00:00', 'acme', 'p', 's', 'traces', 1, 100)",
            )
            .unwrap();
            let state: i64 = conn
                .query_row("SELECT count(*) FROM information_schema.tables WHERE table_name = 'costplane_budgets'", [], |r| r.get(0))
                .unwrap();
            assert_eq!(state, 0, "a version 3 file has no state tables");
        }
        let store = DuckDbStore::open(dir.path()).unwrap();
        let v = store.query("SELECT max(version), count(*) FROM costplane_schema_migrations").await.unwrap();
        assert_eq!(v.rows, vec![vec![serde_json::json!(9), serde_json::json!(9)]]);
        let seq = store
            .query("SELECT count(*) FROM information_schema.columns WHERE column_name = 'WriteSeq' AND table_name LIKE 'costplane_usage_%'")
            .await
            .unwrap();
        assert_eq!(seq.rows, vec![vec![serde_json::json!(2)]], "version 6 numbers the LLM and telemetry usage writes");
        let one_hour = store
            .query("SELECT count(*) FROM information_schema.columns WHERE column_name = 'CacheWrite1hTokens' AND table_name = 'costplane_usage_llm'")
            .await
            .unwrap();
        assert_eq!(one_hour.rows, vec![vec![serde_json::json!(1)]], "version 8 counts 1-hour cache writes");
        // Version 9: the old usage row's event day is its receive day, 2026-11-01T00:00:00Z.
        let day = store.query("SELECT epoch_ns(\"EventDay\") FROM costplane_usage_telemetry").await.unwrap();
        assert_eq!(day.rows, vec![vec![serde_json::json!(1_793_491_200_000_000_000i64)]]);
        let kept = store.query("SELECT \"Revision\", \"Status\" FROM costplane_ledger_hours").await.unwrap();
        assert_eq!(kept.rows, vec![vec![serde_json::json!(7), serde_json::json!("closed")]]);
        for t in RecordTable::ALL {
            store.put_records(t, &[Record::new("k", "{}", 1)]).await.unwrap();
            assert_eq!(store.records(t).await.unwrap(), vec![Record::new("k", "{}", 1)], "{}", t.name());
        }
    }

    /// With every connection of the requests' pool held (slow reads of
    /// requests), the closer's ledger reads are answered at once on its
    /// own connection, while a request's read waits for the pool.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_closer_reads_while_every_request_connection_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(DuckDbStore::open(dir.path()).unwrap());
        let duckdb = store.as_duckdb().unwrap();
        let held: Vec<_> = duckdb.readers.all().iter().map(Arc::clone).collect();
        let guards: Vec<_> = held.iter().map(|c| c.lock().unwrap()).collect();
        assert_eq!(guards.len(), readers::READERS);

        let closer = crate::ledger::Ledger::for_closer(Arc::clone(&store));
        let states = tokio::time::timeout(std::time::Duration::from_secs(5), closer.hour_states(0, costplane_ledger::HOUR_NS))
            .await
            .expect("the closer's read waited for the requests' connections");
        assert!(states.unwrap().is_empty());

        let serving = crate::ledger::Ledger::new(Arc::clone(&store));
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(300), serving.hour_states(0, costplane_ledger::HOUR_NS)).await;
        assert!(waiting.is_err(), "a request's read did not wait for the held pool: it ran on another connection");
        drop(guards);
        assert!(serving.hour_states(0, costplane_ledger::HOUR_NS).await.unwrap().is_empty());
    }
}
