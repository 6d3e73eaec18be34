//! The telemetry tables, each described once.
//!
//! Rule: the columns of `otel_traces`, `otel_logs` and `otel_metrics_*`
//! (names, order, one logical type each) and the ClickHouse-only parts of
//! their tables (codecs, skip indexes, PARTITION BY, ORDER BY, TTL column,
//! shard key) are written here and nowhere else. Everything that lists them
//! is derived:
//! - the ClickHouse `CREATE TABLE` statements (`clickhouse/schema.rs`);
//! - the INSERT column list of the RowBinary encoder, with `Nested` columns
//!   flattened (`Events.Name`) as ClickHouse inserts them;
//! - the Arrow schema of the record batches written as Parquet segments
//!   (`duckdb/arrow.rs` builds its batches against it, so a builder that
//!   disagrees fails instead of writing a different file);
//! - the DuckDB types of the typed empty views and of the legacy tables.
//!
//! Adding a column is then one edit here plus the value each encoder
//! writes; the tests in `clickhouse/column_order.rs` decode what both
//! encoders emit for sample rows by this description and compare the two.
//! The ledger, usage and state tables keep their own versioned DDL (they
//! have migrations) and are not described here.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field as ArrowField, Fields, Schema, SchemaRef, TimeUnit};

/// One column's logical type; each store spells it its own way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColumnType {
    /// Nanoseconds since the epoch (`DateTime64(9)`, `TIMESTAMP_NS`).
    TimestampNs,
    String,
    /// A string ClickHouse stores as `LowCardinality(String)`; plain text elsewhere.
    LowCardinalityString,
    /// An attribute map, string to string.
    Attributes,
    U8,
    U32,
    U64,
    I32,
    F64,
    Bool,
    ListU64,
    ListF64,
    /// ClickHouse `Nested`, a list of structs elsewhere; inserted into
    /// ClickHouse as one array per field.
    Nested(&'static [Field]),
    /// A ClickHouse `ALIAS` column: computed there, absent from every
    /// other store and from inserts.
    ClickHouseAlias {
        clickhouse_type: &'static str,
        expression: &'static str,
    },
}

/// A field of a [`ColumnType::Nested`] column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field {
    pub name: &'static str,
    pub ty: ColumnType,
}

/// How ClickHouse compresses a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Zstd,
    /// `Delta, ZSTD(1)`: the exporter's spelling for metric times and counts.
    DeltaZstd,
    /// `Delta(8), ZSTD(1)`: the exporter's spelling for span and log times.
    Delta8Zstd,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
    pub codec: Codec,
}

/// A ClickHouse data-skipping index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkipIndex {
    pub name: &'static str,
    pub expression: &'static str,
    pub kind: &'static str,
    pub granularity: u32,
}

/// Which retention setting a table follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Logs,
    Metrics,
}

/// One telemetry table.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub name: &'static str,
    pub columns: Vec<Column>,
    pub indexes: Vec<SkipIndex>,
    /// `PARTITION BY` this column's day (also the segment's date partition).
    pub time_column: &'static str,
    pub order_by: &'static str,
    /// The TTL expression's time.
    pub ttl_column: &'static str,
    pub signal: Signal,
    /// The Distributed table's sharding key in cluster mode.
    pub shard_key: &'static str,
}

const fn col(name: &'static str, ty: ColumnType, codec: Codec) -> Column {
    Column { name, ty, codec }
}

const fn field(name: &'static str, ty: ColumnType) -> Field {
    Field { name, ty }
}

const fn bloom(name: &'static str, expression: &'static str, kind: &'static str) -> SkipIndex {
    SkipIndex { name, expression, kind, granularity: 1 }
}

use Codec::{Delta8Zstd, DeltaZstd, Zstd};
use ColumnType::*;

const EVENT_FIELDS: &[Field] = &[field("Timestamp", TimestampNs), field("Name", LowCardinalityString), field("Attributes", Attributes)];
const LINK_FIELDS: &[Field] =
    &[field("TraceId", String), field("SpanId", String), field("TraceState", String), field("Attributes", Attributes)];
const EXEMPLAR_FIELDS: &[Field] = &[
    field("FilteredAttributes", Attributes),
    field("TimeUnix", TimestampNs),
    field("Value", F64),
    field("SpanId", String),
    field("TraceId", String),
];
const QUANTILE_FIELDS: &[Field] = &[field("Quantile", F64), field("Value", F64)];

/// Bloom filters on an attribute map's keys and values, as the exporter names them.
fn map_indexes(map: &str) -> [SkipIndex; 2] {
    // Spelled out rather than formatted: the description holds static text.
    let (key_name, key_expr, value_name, value_expr) = match map {
        "res" => ("idx_res_attr_key", "mapKeys(ResourceAttributes)", "idx_res_attr_value", "mapValues(ResourceAttributes)"),
        "scope" => ("idx_scope_attr_key", "mapKeys(ScopeAttributes)", "idx_scope_attr_value", "mapValues(ScopeAttributes)"),
        "span" => ("idx_span_attr_key", "mapKeys(SpanAttributes)", "idx_span_attr_value", "mapValues(SpanAttributes)"),
        "log" => ("idx_log_attr_key", "mapKeys(LogAttributes)", "idx_log_attr_value", "mapValues(LogAttributes)"),
        _ => ("idx_attr_key", "mapKeys(Attributes)", "idx_attr_value", "mapValues(Attributes)"),
    };
    [bloom(key_name, key_expr, "bloom_filter(0.01)"), bloom(value_name, value_expr, "bloom_filter(0.01)")]
}

const TRACE_ID_INDEX: SkipIndex = bloom("idx_trace_id", "TraceId", "bloom_filter(0.001)");

fn traces() -> Table {
    let mut indexes = vec![TRACE_ID_INDEX];
    indexes.extend(map_indexes("res"));
    indexes.extend(map_indexes("span"));
    indexes.push(bloom("idx_duration", "Duration", "minmax"));
    Table {
        name: "otel_traces",
        columns: vec![
            col("Timestamp", TimestampNs, Delta8Zstd),
            col("TraceId", String, Zstd),
            col("SpanId", String, Zstd),
            col("ParentSpanId", String, Zstd),
            col("TraceState", String, Zstd),
            col("SpanName", LowCardinalityString, Zstd),
            col("SpanKind", LowCardinalityString, Zstd),
            col("ServiceName", LowCardinalityString, Zstd),
            col("ResourceAttributes", Attributes, Zstd),
            col("ScopeName", String, Zstd),
            col("ScopeVersion", String, Zstd),
            col("SpanAttributes", Attributes, Zstd),
            col("Duration", U64, Zstd),
            col("StatusCode", LowCardinalityString, Zstd),
            col("StatusMessage", String, Zstd),
            col("Events", Nested(EVENT_FIELDS), Zstd),
            col("Links", Nested(LINK_FIELDS), Zstd),
        ],
        indexes,
        time_column: "Timestamp",
        order_by: "(ServiceName, SpanName, toDateTime(Timestamp), Timestamp)",
        ttl_column: "toDateTime(Timestamp)",
        signal: Signal::Traces,
        shard_key: "cityHash64(TraceId)",
    }
}

fn logs() -> Table {
    let mut indexes = vec![TRACE_ID_INDEX];
    indexes.extend(map_indexes("res"));
    indexes.extend(map_indexes("scope"));
    indexes.extend(map_indexes("log"));
    indexes.push(SkipIndex { name: "idx_body", expression: "Body", kind: "tokenbf_v1(32768, 3, 0)", granularity: 8 });
    Table {
        name: "otel_logs",
        columns: vec![
            col("Timestamp", TimestampNs, Delta8Zstd),
            // Older Grafana plugin versions read this second-precision time.
            col("TimestampTime", ClickHouseAlias { clickhouse_type: "DateTime", expression: "toDateTime(Timestamp)" }, Codec::None),
            col("TraceId", String, Zstd),
            col("SpanId", String, Zstd),
            col("TraceFlags", U8, Codec::None),
            col("SeverityText", LowCardinalityString, Zstd),
            col("SeverityNumber", U8, Codec::None),
            col("ServiceName", LowCardinalityString, Zstd),
            col("Body", String, Zstd),
            col("ResourceSchemaUrl", LowCardinalityString, Zstd),
            col("ResourceAttributes", Attributes, Zstd),
            col("ScopeSchemaUrl", LowCardinalityString, Zstd),
            col("ScopeName", String, Zstd),
            col("ScopeVersion", LowCardinalityString, Zstd),
            col("ScopeAttributes", Attributes, Zstd),
            col("LogAttributes", Attributes, Zstd),
            col("EventName", String, Zstd),
        ],
        indexes,
        time_column: "Timestamp",
        order_by: "(toStartOfFiveMinutes(Timestamp), ServiceName, Timestamp)",
        ttl_column: "toDateTime(Timestamp)",
        signal: Signal::Logs,
        shard_key: "cityHash64(ServiceName, TraceId, Timestamp)",
    }
}

/// A metric table: the 14 columns every metric table starts with, then `rest`.
fn metric(name: &'static str, rest: &[Column]) -> Table {
    let mut columns = vec![
        col("ResourceAttributes", Attributes, Zstd),
        col("ResourceSchemaUrl", String, Zstd),
        col("ScopeName", String, Zstd),
        col("ScopeVersion", String, Zstd),
        col("ScopeAttributes", Attributes, Zstd),
        col("ScopeDroppedAttrCount", U32, Zstd),
        col("ScopeSchemaUrl", String, Zstd),
        col("ServiceName", LowCardinalityString, Zstd),
        col("MetricName", String, Zstd),
        col("MetricDescription", String, Zstd),
        col("MetricUnit", String, Zstd),
        col("Attributes", Attributes, Zstd),
        col("StartTimeUnix", TimestampNs, DeltaZstd),
        col("TimeUnix", TimestampNs, DeltaZstd),
    ];
    columns.extend_from_slice(rest);
    let mut indexes = Vec::new();
    indexes.extend(map_indexes("res"));
    indexes.extend(map_indexes("scope"));
    indexes.extend(map_indexes("attr"));
    Table {
        name,
        columns,
        indexes,
        time_column: "TimeUnix",
        order_by: "(ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))",
        ttl_column: "toDateTime(TimeUnix)",
        signal: Signal::Metrics,
        shard_key: "cityHash64(ServiceName, MetricName, Attributes)",
    }
}

const EXEMPLARS: Column = col("Exemplars", Nested(EXEMPLAR_FIELDS), Zstd);
const FLAGS: Column = col("Flags", U32, Zstd);
const TEMPORALITY: Column = col("AggregationTemporality", I32, Zstd);

static TABLES: LazyLock<Vec<Table>> = LazyLock::new(|| {
    let value = col("Value", F64, Zstd);
    let count = col("Count", U64, DeltaZstd);
    let sum = col("Sum", F64, Zstd);
    let (min, max) = (col("Min", F64, Zstd), col("Max", F64, Zstd));
    vec![
        traces(),
        logs(),
        metric("otel_metrics_gauge", &[value, FLAGS, EXEMPLARS]),
        metric("otel_metrics_sum", &[value, FLAGS, EXEMPLARS, TEMPORALITY, col("IsMonotonic", Bool, DeltaZstd)]),
        metric(
            "otel_metrics_histogram",
            &[
                count,
                sum,
                col("BucketCounts", ListU64, Zstd),
                col("ExplicitBounds", ListF64, Zstd),
                EXEMPLARS,
                FLAGS,
                min,
                max,
                TEMPORALITY,
            ],
        ),
        metric(
            "otel_metrics_exp_histogram",
            &[
                count,
                sum,
                col("Scale", I32, Zstd),
                col("ZeroCount", U64, Zstd),
                col("PositiveOffset", I32, Zstd),
                col("PositiveBucketCounts", ListU64, Zstd),
                col("NegativeOffset", I32, Zstd),
                col("NegativeBucketCounts", ListU64, Zstd),
                EXEMPLARS,
                FLAGS,
                min,
                max,
                TEMPORALITY,
            ],
        ),
        metric("otel_metrics_summary", &[count, sum, col("ValueAtQuantiles", Nested(QUANTILE_FIELDS), Zstd), FLAGS]),
    ]
});

static ARROW_SCHEMAS: LazyLock<Vec<SchemaRef>> = LazyLock::new(|| TABLES.iter().map(|t| Arc::new(t.derive_arrow_schema())).collect());

/// Every telemetry table, in the order of [`crate::TELEMETRY_TABLES`].
pub fn telemetry_tables() -> &'static [Table] {
    &TABLES
}

/// The description of the telemetry table `name`.
pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

/// The description of `name`, which must be a telemetry table.
pub(crate) fn described(name: &str) -> &'static Table {
    table(name).unwrap_or_else(|| panic!("{name} is not a described telemetry table"))
}

impl ColumnType {
    fn clickhouse(&self) -> std::string::String {
        match self {
            TimestampNs => "DateTime64(9)".into(),
            String => "String".into(),
            LowCardinalityString => "LowCardinality(String)".into(),
            Attributes => "Map(LowCardinality(String), String)".into(),
            U8 => "UInt8".into(),
            U32 => "UInt32".into(),
            U64 => "UInt64".into(),
            I32 => "Int32".into(),
            F64 => "Float64".into(),
            Bool => "Boolean".into(),
            ListU64 => "Array(UInt64)".into(),
            ListF64 => "Array(Float64)".into(),
            Nested(fields) => {
                let inner: Vec<_> = fields.iter().map(|f| format!("        {} {}", f.name, f.ty.clickhouse())).collect();
                format!("Nested (\n{}\n    )", inner.join(",\n"))
            }
            ClickHouseAlias { clickhouse_type, expression } => format!("{clickhouse_type} ALIAS {expression}"),
        }
    }

    /// DuckDB's spelling, as in `CREATE TABLE` and `CAST(NULL AS ...)`.
    pub fn duckdb(&self) -> std::string::String {
        match self {
            TimestampNs => "TIMESTAMP_NS".into(),
            String | LowCardinalityString => "VARCHAR".into(),
            Attributes => "MAP(VARCHAR, VARCHAR)".into(),
            U8 => "UTINYINT".into(),
            U32 => "UINTEGER".into(),
            U64 => "UBIGINT".into(),
            I32 => "INTEGER".into(),
            F64 => "DOUBLE".into(),
            Bool => "BOOLEAN".into(),
            ListU64 => "UBIGINT[]".into(),
            ListF64 => "DOUBLE[]".into(),
            Nested(fields) => {
                let inner: Vec<_> = fields.iter().map(|f| format!("\"{}\" {}", f.name, f.ty.duckdb())).collect();
                format!("STRUCT({})[]", inner.join(", "))
            }
            ClickHouseAlias { .. } => unreachable!("an alias column exists only in ClickHouse"),
        }
    }

    /// The Arrow type the batch builders produce (and Parquet stores):
    /// maps as `MapBuilder` makes them, lists with nullable `item`s.
    pub fn arrow(&self) -> DataType {
        match self {
            TimestampNs => DataType::Timestamp(TimeUnit::Nanosecond, None),
            String | LowCardinalityString => DataType::Utf8,
            Attributes => {
                let entries =
                    Fields::from(vec![ArrowField::new("key", DataType::Utf8, false), ArrowField::new("value", DataType::Utf8, true)]);
                DataType::Map(Arc::new(ArrowField::new("entries", DataType::Struct(entries), false)), false)
            }
            U8 => DataType::UInt8,
            U32 => DataType::UInt32,
            U64 => DataType::UInt64,
            I32 => DataType::Int32,
            F64 => DataType::Float64,
            Bool => DataType::Boolean,
            ListU64 => DataType::List(Arc::new(ArrowField::new("item", DataType::UInt64, true))),
            ListF64 => DataType::List(Arc::new(ArrowField::new("item", DataType::Float64, true))),
            Nested(fields) => {
                let inner: Fields = fields.iter().map(|f| ArrowField::new(f.name, f.ty.arrow(), true)).collect();
                DataType::List(Arc::new(ArrowField::new("item", DataType::Struct(inner), true)))
            }
            ClickHouseAlias { .. } => unreachable!("an alias column exists only in ClickHouse"),
        }
    }
}

impl Column {
    /// Stored by every store and sent by inserts (not a ClickHouse alias).
    pub fn is_stored(&self) -> bool {
        !matches!(self.ty, ClickHouseAlias { .. })
    }
}

impl Table {
    /// The columns every store keeps, in order.
    pub fn stored_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.is_stored())
    }

    /// The column definitions inside ClickHouse's `CREATE TABLE (...)`.
    pub fn clickhouse_columns(&self) -> std::string::String {
        let mut lines: Vec<std::string::String> = self
            .columns
            .iter()
            .map(|c| {
                let codec = match c.codec {
                    Codec::None => "",
                    Codec::Zstd => " CODEC(ZSTD(1))",
                    Codec::DeltaZstd => " CODEC(Delta, ZSTD(1))",
                    Codec::Delta8Zstd => " CODEC(Delta(8), ZSTD(1))",
                };
                format!("    {} {}{codec}", c.name, c.ty.clickhouse())
            })
            .collect();
        lines.extend(
            self.indexes.iter().map(|i| format!("    INDEX {} {} TYPE {} GRANULARITY {}", i.name, i.expression, i.kind, i.granularity)),
        );
        lines.join(",\n")
    }

    /// The INSERT's column list: stored columns, `Nested` ones as one
    /// column per field (`Events.Timestamp, Events.Name, ...`).
    pub fn insert_columns(&self) -> Vec<std::string::String> {
        let mut out = Vec::new();
        for c in self.stored_columns() {
            match c.ty {
                Nested(fields) => out.extend(fields.iter().map(|f| format!("{}.{}", c.name, f.name))),
                _ => out.push(c.name.to_owned()),
            }
        }
        out
    }

    /// (name, DuckDB type) of each stored column.
    pub fn duckdb_columns(&self) -> Vec<(&'static str, std::string::String)> {
        self.stored_columns().map(|c| (c.name, c.ty.duckdb())).collect()
    }

    /// DuckDB's `CREATE TABLE IF NOT EXISTS` for the table.
    pub fn duckdb_create(&self) -> std::string::String {
        let columns: Vec<_> = self.duckdb_columns().into_iter().map(|(n, t)| format!("    \"{n}\" {t}")).collect();
        format!("CREATE TABLE IF NOT EXISTS {} (\n{}\n);\n", self.name, columns.join(",\n"))
    }

    fn derive_arrow_schema(&self) -> Schema {
        // Every field nullable: what `RecordBatch::try_from_iter` gave the
        // segments written before this description, so their schemas match.
        Schema::new(self.stored_columns().map(|c| ArrowField::new(c.name, c.ty.arrow(), true)).collect::<Vec<_>>())
    }

    /// The Arrow schema of the table's record batches and Parquet segments.
    pub fn arrow_schema(&self) -> SchemaRef {
        let at = TABLES.iter().position(|t| t.name == self.name).expect("a described table");
        Arc::clone(&ARROW_SCHEMAS[at])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clickhouse::SchemaOptions;

    #[test]
    fn tables_are_the_telemetry_tables_in_order() {
        let names: Vec<_> = telemetry_tables().iter().map(|t| t.name).collect();
        assert_eq!(names, crate::TELEMETRY_TABLES);
    }

    #[test]
    fn cluster_ddl_is_byte_for_byte_the_golden_file() {
        // The golden file was written from the hand-written DDL this
        // description replaced; `costplane schema print --cluster c1`
        // prints this script.
        let golden = include_str!("../../costplane/tests/golden/schema_cluster_c1.sql");
        let script = SchemaOptions { cluster: Some("c1".into()), ..SchemaOptions::default() }.script();
        // Line by line, so a difference names its line instead of printing both scripts.
        for (n, (ours, theirs)) in script.lines().zip(golden.lines()).enumerate() {
            assert_eq!(ours, theirs, "line {} of the cluster DDL differs from the golden file", n + 1);
        }
        assert_eq!(script.len(), golden.len(), "the cluster DDL and the golden file differ in length");
    }

    #[test]
    fn derived_spellings() {
        let traces = described("otel_traces");
        let ch = traces.clickhouse_columns();
        assert!(ch.starts_with("    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),\n    TraceId String CODEC(ZSTD(1)),"), "{ch}");
        assert!(ch.contains(
            "    Events Nested (\n        Timestamp DateTime64(9),\n        Name LowCardinality(String),\n        Attributes Map(LowCardinality(String), String)\n    ) CODEC(ZSTD(1)),"
        ), "{ch}");
        assert!(ch.ends_with("    INDEX idx_duration Duration TYPE minmax GRANULARITY 1"), "{ch}");
        let logs = described("otel_logs");
        assert!(logs.clickhouse_columns().contains("    TimestampTime DateTime ALIAS toDateTime(Timestamp),\n"));
        assert!(logs.duckdb_columns().iter().all(|(n, _)| *n != "TimestampTime"));
        assert!(!logs.insert_columns().contains(&"TimestampTime".to_owned()));
        assert_eq!(
            traces.duckdb_columns()[15].1,
            r#"STRUCT("Timestamp" TIMESTAMP_NS, "Name" VARCHAR, "Attributes" MAP(VARCHAR, VARCHAR))[]"#
        );
        let summary = described("otel_metrics_summary");
        assert_eq!(summary.insert_columns()[16..], ["ValueAtQuantiles.Quantile", "ValueAtQuantiles.Value", "Flags"]);
        assert_eq!(summary.arrow_schema().fields().len(), 18);
    }
}
