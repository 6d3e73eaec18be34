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
}
