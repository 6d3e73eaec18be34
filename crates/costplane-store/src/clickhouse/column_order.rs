//! The telemetry tables' columns are listed by the DuckDB DDL (which the
//! embedded views and the Arrow/Parquet schema check follow) and by the
//! ClickHouse RowBinary encoder; this checks both lists agree, column for
//! column and in order, so a column added to one and not the other fails here.

use crate::clickhouse::rowbinary;
use crate::duckdb::schema;

/// The DDL's columns of `table`, with list-of-struct columns flattened as
/// ClickHouse inserts `Nested` ones (`Events.Name`).
fn duckdb_columns(table: &str) -> Vec<String> {
    let ddl: String = schema::migrations().into_iter().map(|(_, s)| s).collect();
    let declared = crate::duckdb::declared_tables(&ddl);
    let mut out = Vec::new();
    for (name, ty) in &declared[table] {
        match ty.strip_prefix("STRUCT(").and_then(|t| t.strip_suffix(")[]")) {
            Some(fields) => {
                for field in crate::verify::split_top_level(fields) {
                    let field = field.trim().trim_start_matches('"');
                    let end = field.find('"').unwrap_or(field.len());
                    out.push(format!("{name}.{}", &field[..end]));
                }
            }
            None => out.push(name.clone()),
        }
    }
    out
}

fn split(columns: &str) -> Vec<String> {
    columns.split(',').map(|c| c.trim().to_owned()).collect()
}

#[test]
fn rowbinary_column_order_equals_the_table_description() {
    let encoders = [
        ("otel_traces", split(rowbinary::TRACES_COLUMNS)),
        ("otel_logs", split(rowbinary::LOGS_COLUMNS)),
        ("otel_metrics_gauge", split(&rowbinary::gauge_columns())),
        ("otel_metrics_sum", split(&rowbinary::sum_columns())),
        ("otel_metrics_histogram", split(&rowbinary::histogram_columns())),
        ("otel_metrics_exp_histogram", split(&rowbinary::exp_histogram_columns())),
        ("otel_metrics_summary", split(&rowbinary::summary_columns())),
    ];
    for (table, encoded) in encoders {
        assert_eq!(encoded, duckdb_columns(table), "{table}");
    }
}
