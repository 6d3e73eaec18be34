//! costplane-store: where telemetry rows go.
//!
//! Protocol code never names an engine: the pipeline writes through
//! [`Store`], and each backend lives in its own module. Every backend keeps
//! the OpenTelemetry ClickHouse exporter's table and column names, so tools
//! built for that layout (HyperDX/ClickStack, Grafana's ClickHouse plugin)
//! read costplane's tables unchanged.

pub mod clickhouse;
pub mod duckdb;
mod error;
mod query;

use async_trait::async_trait;
use costplane_telemetry::TelemetryBatch;

pub use error::StoreError;
pub use query::{is_read_only_statement, json_number, result_cell, QueryResult};

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

/// A telemetry store.
///
/// `write` is all-or-nothing per batch: when it returns an error no row of
/// the batch is visible, so the caller may retry the same batch without
/// duplicating rows.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The backend's name, for logs (`duckdb`, `clickhouse`).
    fn backend(&self) -> &'static str;

    /// Writes every row of `batch`.
    async fn write(&self, batch: &TelemetryBatch) -> Result<(), StoreError>;

    /// Runs one read-only SQL statement and returns its rows.
    async fn query(&self, sql: &str) -> Result<QueryResult, StoreError>;

    /// Checks that the store can be reached.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stored (compressed) bytes per byte written, per signal (`traces`,
    /// `logs`, `metrics`), when the backend knows it; empty otherwise.
    async fn compression_ratios(&self) -> Result<Vec<(String, f64)>, StoreError> {
        Ok(Vec::new())
    }

    /// How many batches may be written at the same time.
    fn max_concurrent_writes(&self) -> usize {
        usize::MAX
    }

    /// How this backend spells what differs between engines.
    fn dialect(&self) -> Dialect;

    /// Runs costplane's own SQL with bound parameters. The SQL comes from
    /// code, never from users; user values travel only as `params`
    /// (placeholders from [`Dialect::param`]).
    async fn query_with(&self, sql: &str, params: &[Param]) -> Result<QueryResult, StoreError>;

    /// Deletes ledger rows of `source` whose charge period starts in
    /// `[from_ns, to_ns)` (repricing replaces them).
    async fn delete_ledger(&self, source: &str, from_ns: i64, to_ns: i64) -> Result<(), StoreError>;
}

/// A bound query parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Str(String),
    Int(i64),
}

/// SQL spellings that differ between DuckDB and ClickHouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    DuckDb,
    ClickHouse,
}

impl Dialect {
    /// Placeholder for parameter `index` (0-based) of type `Int64` or `String`.
    pub fn param(self, index: usize, param: &Param) -> String {
        match self {
            Dialect::DuckDb => format!("${}", index + 1),
            Dialect::ClickHouse => {
                let ty = if matches!(param, Param::Int(_)) { "Int64" } else { "String" };
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
