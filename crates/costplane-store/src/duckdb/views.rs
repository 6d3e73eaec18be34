//! The DuckDB views that make the Parquet segments the exporter's tables.
//!
//! Each telemetry table is a view named as the exporter's table, listing the
//! exporter's columns (from the table description, `crate::tables`)
//! over `read_parquet(<tables>/<table>/*/*.parquet, hive_partitioning,
//! union_by_name)`. `union_by_name` lets segments written before a column
//! was added be read with the column NULL; the hive `date` column is left
//! out so `SELECT *` gives the same columns as ClickHouse.
//!
//! A table without files yet cannot be a `read_parquet` (DuckDB refuses a
//! glob that matches nothing), so its view is the same columns, typed, with
//! no rows; the store switches it over when the first segment lands and
//! back when retention removes the last partition.
//!
//! `views.sql` in the data directory holds the same definitions for other
//! processes (`duckdb -init views.sql`, Python, Grafana's DuckDB plugin).

use std::path::Path;

use super::segments::Segments;
use crate::{StoreError, TELEMETRY_TABLES};

/// The file other processes read the views from.
pub const VIEWS_FILE: &str = "views.sql";

fn quote_path(path: &str) -> String {
    // Paths are the data directory's, not a user's SQL; quotes are still doubled.
    format!("'{}'", path.replace('\'', "''"))
}

/// `CREATE OR REPLACE VIEW` for `table`, reading files when `has_files`.
pub(crate) fn view_sql(segments: &Segments, table: &'static str, has_files: bool) -> Result<String, StoreError> {
    let columns =
        crate::tables::table(table).ok_or_else(|| StoreError::Schema(format!("{table} is not a telemetry table")))?.duckdb_columns();
    let body = if has_files {
        let list = columns.iter().map(|(name, _)| format!("\"{name}\"")).collect::<Vec<_>>().join(", ");
        format!("SELECT {list} FROM read_parquet({}, hive_partitioning = true, union_by_name = true)", quote_path(&segments.glob(table)))
    } else {
        let list = columns.iter().map(|(name, ty)| format!("CAST(NULL AS {ty}) AS \"{name}\"")).collect::<Vec<_>>().join(", ");
        format!("SELECT {list} LIMIT 0")
    };
    Ok(format!("CREATE OR REPLACE VIEW {table} AS {body};"))
}

/// Every view, as the current files decide.
pub(crate) fn all_views(segments: &Segments) -> Result<Vec<String>, StoreError> {
    TELEMETRY_TABLES.iter().map(|t| view_sql(segments, t, segments.has_files(t)?)).collect()
}

/// Rewrites `views.sql` (temporary file, sync, rename).
pub(crate) fn write_views_file(segments: &Segments, views: &[String]) -> Result<(), StoreError> {
    let root = segments.root();
    let mut text = String::from(
        "-- costplane's telemetry tables as DuckDB views over its Parquet segments.\n\
         -- Rewritten by costplane; open with: duckdb -init views.sql (from this directory)\n\
         -- A table with no data yet is an empty view: run this file again once data arrives.\n\
         SET parquet_metadata_cache = true;\n",
    );
    for v in views {
        text.push_str(v);
        text.push('\n');
    }
    let tmp = root.join(format!(".{VIEWS_FILE}.tmp"));
    write_synced(&tmp, text.as_bytes())?;
    std::fs::rename(&tmp, root.join(VIEWS_FILE))?;
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_list_the_exporter_columns_in_both_states() {
        let dir = tempfile::tempdir().unwrap();
        let segments = Segments::open(dir.path()).unwrap();
        let empty = view_sql(&segments, "otel_logs", false).unwrap();
        assert!(empty.starts_with("CREATE OR REPLACE VIEW otel_logs AS SELECT CAST(NULL AS TIMESTAMP_NS) AS \"Timestamp\""), "{empty}");
        assert!(empty.contains("CAST(NULL AS MAP(VARCHAR, VARCHAR)) AS \"LogAttributes\""), "{empty}");
        assert!(empty.ends_with("LIMIT 0;"));
        let full = view_sql(&segments, "otel_logs", true).unwrap();
        assert!(full.contains("\"EventName\" FROM read_parquet('"), "{full}");
        assert!(full.contains("/tables/otel_logs/*/*.parquet', hive_partitioning = true, union_by_name = true)"), "{full}");
        assert!(!full.contains("\"date\""));
    }
}

#[cfg(test)]
mod dump {
    /// `COSTPLANE_DUMP_DIR=DIR`: leaves a store's segments and `views.sql`
    /// in DIR, for reading with another DuckDB by hand.
    #[test]
    fn dump_segments_and_views() {
        let Ok(dir) = std::env::var("COSTPLANE_DUMP_DIR") else { return };
        let segments = super::Segments::open(std::path::Path::new(&dir)).unwrap();
        let noon = 20_454 * super::super::segments::DAY_NS + 43_200_000_000_000;
        let mut spans: Vec<_> =
            (0..5).map(|i| super::super::compact::tests::span("svc", "op", noon + i, usize::try_from(i).unwrap())).collect();
        spans[1].span_attributes = vec![("k".into(), "v".into())];
        spans[2].events = vec![costplane_telemetry::model::SpanEvent {
            timestamp_ns: noon,
            name: "e".into(),
            attributes: vec![("a".into(), "b".into())],
        }];
        segments.write(1, "otel_traces", &super::super::arrow::traces(&spans).unwrap()).unwrap();
        super::write_views_file(&segments, &super::all_views(&segments).unwrap()).unwrap();
    }
}
