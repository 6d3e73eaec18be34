//! costplane-store: where telemetry rows go.
//!
//! Protocol code never names an engine: the pipeline writes through
//! [`Store`], and each backend lives in its own module. Every backend keeps
//! the OpenTelemetry ClickHouse exporter's table and column names, so tools
//! built for that layout (HyperDX/ClickStack, Grafana's ClickHouse plugin)
//! read costplane's tables unchanged.

pub mod clickhouse;
pub mod cost_views;
mod days;
pub mod duckdb;
mod error;
pub mod ledger;
pub mod money;
mod query;
pub mod reconcile;
mod records;
pub mod tables;
pub mod telemetry_costs;
pub mod unit_costs;
mod verify;
pub mod write_seq;

use async_trait::async_trait;
use costplane_ledger::{LedgerReplacement, LedgerRow};
use costplane_telemetry::TelemetryBatch;

pub use error::StoreError;
pub use query::{json_number, result_cell, QueryLimits, QueryResult};
pub use records::{Record, RecordTable};

/// Runs a write's encoding (Arrow columns, RowBinary, compression: tens of
/// milliseconds per batch) without holding up the runtime's worker
/// threads, which serve the receivers: on a multi-thread runtime the
/// current worker hands its queued tasks to another for the duration
/// (`block_in_place`, which, unlike `spawn_blocking`, may borrow the batch);
/// on a current-thread runtime (unit tests) it simply runs.
pub(crate) fn off_worker<T>(encode: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(encode),
        _ => encode(),
    }
}

/// Builds a parameter list and its placeholders together.
#[derive(Debug)]
pub struct Params {
    dialect: Dialect,
    pub values: Vec<Param>,
}

impl Params {
    pub fn new(dialect: Dialect) -> Self {
        Params { dialect, values: Vec::new() }
    }

    /// Adds a value and returns its placeholder.
    pub fn add(&mut self, value: Param) -> String {
        let placeholder = self.dialect.param(self.values.len(), &value);
        self.values.push(value);
        placeholder
    }
}

/// Names of the telemetry tables, in the order `TelemetryBatch::table_counts` lists them.
pub const TELEMETRY_TABLES: [&str; 7] = [
    "otel_traces",
    "otel_logs",
    "otel_metrics_gauge",
    "otel_metrics_sum",
    "otel_metrics_histogram",
    "otel_metrics_exp_histogram",
    "otel_metrics_summary",
];

/// Where the ingest pipeline writes: all it needs of a store. Every
/// [`Store`] is one; the pipeline depends on this alone.
///
/// `write` is idempotent under retry: writing a batch again with the same
/// `batch.id` (after an error, a timeout, or a replay) never stores a row
/// twice, so the caller retries a retryable error until it succeeds and
/// each row ends up stored exactly once. How each backend gets there:
/// - DuckDB: one transaction per batch, which also records `batch.id` in
///   `costplane_written_batches`. After an error nothing of the batch is
///   stored; an id already recorded (ids are kept for a day) is skipped.
/// - ClickHouse: no transaction spans tables or partitions, so after an error
///   some of the batch's inserts may be stored. Every insert carries a
///   deduplication token derived from the batch id, the table and the
///   partition, so the retry's inserts that were already stored are dropped
///   and the others land (within ClickHouse's deduplication window: the
///   last 1000 inserts per table). Usage rows go last in the same write,
///   so retrying it to success meters all stored telemetry, and a batch
///   rejected (then split) has metered nothing.
///
/// Ledger rows (money) are never part of a batch: the closer makes them
/// from stored usage and writes them with [`Store::replace_ledger`].
///
/// A write error says whether to retry ([`StoreError::is_retryable`]) and
/// whether the rows themselves are invalid ([`StoreError::is_invalid_data`]),
/// in which case the same rows fail again and some must be set aside.
#[async_trait]
pub trait TelemetrySink: Send + Sync + 'static {
    /// The backend's name, for logs (`duckdb`, `clickhouse`).
    fn backend(&self) -> &'static str;

    /// Writes every row of `batch`.
    async fn write(&self, batch: &TelemetryBatch) -> Result<(), StoreError>;

    /// How many batches may be written at the same time.
    fn max_concurrent_writes(&self) -> usize {
        usize::MAX
    }
}

/// A store: the pipeline's [`TelemetrySink`], and the reads, record tables
/// and ledger writes the rest of costplane makes.
#[async_trait]
pub trait Store: TelemetrySink {
    /// Runs one read-only SQL statement (from a user) within the default
    /// [`QueryLimits`] and returns its rows.
    async fn query(&self, sql: &str) -> Result<QueryResult, StoreError>;

    /// [`Store::query`] within `limits`. The engine decides what only reads
    /// (see `query.rs`); a backend without its own bounds runs `query`.
    async fn query_limited(&self, sql: &str, limits: &QueryLimits) -> Result<QueryResult, StoreError> {
        let _ = limits;
        self.query(sql).await
    }

    /// Checks that the store can be reached.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stored (compressed) bytes per byte written, per signal (`traces`,
    /// `logs`, `metrics`), when the backend knows it; empty otherwise.
    async fn compression_ratios(&self) -> Result<Vec<(String, f64)>, StoreError> {
        Ok(Vec::new())
    }

    /// Bytes the store keeps of each signal's telemetry, as measured by the
    /// backend (see [`StoredBytes`]); empty when it cannot tell.
    async fn stored_bytes(&self) -> Result<Vec<StoredBytes>, StoreError> {
        Ok(Vec::new())
    }

    /// The write numbers of usage rows (see [`write_seq`]); `None` when
    /// the backend keeps none, and the closer prices whole hours.
    fn write_seqs(&self) -> Option<std::sync::Arc<write_seq::WriteSeqs>> {
        None
    }

    /// How this backend spells what differs between engines.
    fn dialect(&self) -> Dialect;

    /// The embedded store, for what only it serves (the PostgreSQL endpoint).
    fn as_duckdb(&self) -> Option<&duckdb::DuckDbStore> {
        None
    }

    /// Runs costplane's own SQL with bound parameters. The SQL comes from
    /// code, never from users; user values travel only as `params`
    /// (placeholders from [`Dialect::param`]).
    async fn query_with(&self, sql: &str, params: &[Param]) -> Result<QueryResult, StoreError>;

    /// [`Store::query_with`] on the connections of `lane`: a backend with
    /// a bounded set of read connections keeps the closer's apart from the
    /// ones serving requests, so no read a request asks for can hold up
    /// pricing. One without (ClickHouse over HTTP) runs `query_with`.
    async fn query_on(&self, lane: ReadLane, sql: &str, params: &[Param]) -> Result<QueryResult, StoreError> {
        let _ = lane;
        self.query_with(sql, params).await
    }

    /// [`Store::query_on`]'s rows as Arrow record batches, where the
    /// backend reads them so (the embedded store): typed columns for reads
    /// of many rows, without a JSON cell per value. `None` where a backend
    /// has JSON rows only (ClickHouse over HTTP): the caller reads
    /// `query_on`.
    async fn query_arrow_on(
        &self,
        _lane: ReadLane,
        _sql: &str,
        _params: &[Param],
    ) -> Result<Option<Vec<arrow::record_batch::RecordBatch>>, StoreError> {
        Ok(None)
    }

    /// Writes documents of a state table (see [`RecordTable`]); the latest
    /// write of a key wins.
    async fn put_records(&self, table: RecordTable, records: &[Record]) -> Result<(), StoreError>;

    /// The current documents of a state table (deleted keys left out),
    /// ordered by key.
    async fn records(&self, table: RecordTable) -> Result<Vec<Record>, StoreError>;

    /// Deletes the stored Kubernetes samples of hours before `before_ns`
    /// (they only rebuild a restarted meter's recent hours); returns how
    /// many went, when the backend can tell. A backend that expires them
    /// itself (ClickHouse, by the table's TTL) does nothing.
    async fn prune_kubernetes_samples(&self, before_ns: i64) -> Result<u64, StoreError> {
        let _ = before_ns;
        Ok(0)
    }

    /// Replaces the ledger rows of some (hour, scope)s by a new revision of
    /// each, so that a reader sees either every old row or every new one,
    /// never a mix, a gap or both (see [`ledger`] for how each backend
    /// does it). Interrupted at any point (an error, a SIGKILL), the old
    /// revision stays whole and visible.
    async fn replace_ledger(&self, replacement: &LedgerReplacement) -> Result<(), StoreError>;

    /// Writes ledger rows under revisions no reader sees yet (an import
    /// streamed in chunks): they become visible only when a later
    /// [`Store::replace_ledger`] lists their revisions. While their
    /// revisions are registered as staged ([`ledger::Staging`]), no
    /// replacement retires them. `batch_id` names this write (unique per
    /// chunk).
    async fn stage_ledger_rows(&self, rows: &[LedgerRow], batch_id: u64) -> Result<(), StoreError>;

    /// Deletes the rows of staged `revisions` whose charge periods start in
    /// `[from, to)`: an import that failed or was dropped before its switch.
    async fn discard_ledger_revisions(&self, from: i64, to: i64, revisions: &[u64]) -> Result<(), StoreError>;
}

/// Whose read a query of costplane's own is: requests (cost endpoints,
/// `/metrics`, reports) or the closer that prices the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadLane {
    #[default]
    Serving,
    Closer,
}

/// Stored bytes of one signal (one partition of it, when partitioned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBytes {
    /// `traces`, `logs` or `metrics`.
    pub signal: String,
    /// The day the partition holds (ClickHouse: `toDate(Timestamp)`), or
    /// `None` for the whole signal.
    pub day_ns: Option<i64>,
    pub bytes: u64,
    /// How the bytes were measured.
    pub method: &'static str,
}

/// A bound query parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Str(String),
    Int(i64),
    UInt(u64),
}

/// SQL spellings that differ between DuckDB and ClickHouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    DuckDb,
    ClickHouse,
}

impl Dialect {
    /// Placeholder for parameter `index` (0-based) of type `Int64`, `UInt64` or `String`.
    pub fn param(self, index: usize, param: &Param) -> String {
        match self {
            Dialect::DuckDb => format!("${}", index + 1),
            Dialect::ClickHouse => {
                let ty = match param {
                    Param::Int(_) => "Int64",
                    Param::UInt(_) => "UInt64",
                    Param::Str(_) => "String",
                };
                format!("{{p{index}:{ty}}}")
            }
        }
    }

    /// Nanoseconds since the epoch of a timestamp column.
    pub fn ns(self, column: &str) -> String {
        match self {
            Dialect::DuckDb => format!("epoch_ns({column})"),
            Dialect::ClickHouse => format!("toUnixTimestamp64Nano({column})"),
        }
    }

    /// Integer division of two `Int64` expressions (rounding toward zero).
    pub fn int_div(self, a: &str, b: &str) -> String {
        match self {
            Dialect::DuckDb => format!("(({a}) // ({b}))"),
            Dialect::ClickHouse => format!("intDiv({a}, {b})"),
        }
    }

    /// A timestamp column truncated to `unit` (hour, day, month), as ns.
    pub fn trunc_ns(self, unit: &str, column: &str) -> String {
        match self {
            Dialect::DuckDb => format!("epoch_ns(date_trunc('{unit}', {column}))"),
            Dialect::ClickHouse => {
                let f = match unit {
                    "hour" => "toStartOfHour",
                    "day" => "toStartOfDay",
                    _ => "toStartOfMonth",
                };
                format!("toUnixTimestamp64Nano(toDateTime64({f}({column}), 9))")
            }
        }
    }
}
