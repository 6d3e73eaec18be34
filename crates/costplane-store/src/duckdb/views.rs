//! The DuckDB views that make the Parquet segments the exporter's tables.
//!
//! Each telemetry table is a view named as the exporter's table, listing the
//! exporter's columns (from the table description, `crate::tables`).
//! `union_by_name` lets segments written before a column was added be read
//! with the column NULL; no `date` column is listed, so `SELECT *` gives
//! the same columns as ClickHouse.
//!
//! Two forms read the files:
//! - **costplane's own connections** ([`partition_view_sql`]): one `UNION ALL` branch
//!   per date partition (per few days past 32 partitions), each reading
//!   that partition's *generation
//!   directory* (not the `tables/` symlink) and bounded by the partition's
//!   day on the time column. DuckDB's optimizer drops a branch whose bound
//!   contradicts the query's filter, so `WHERE Timestamp >= X AND Timestamp
//!   < Y` opens only the files of the days it can match (hive filter
//!   pushdown needs a filter on `date` itself, which the exporter's columns
//!   have not). Reading generation directories also makes compaction
//!   invisible to queries: a query bound before a swap reads the replaced
//!   generation, which stays whole for a grace period; the store rewrites
//!   the view right after each swap, each new partition and each expiry.
//! - **`views.sql` for other processes** ([`view_sql`]): one
//!   `read_parquet` over the `tables/<table>/date=*/*.parquet` glob, so days that
//!   arrive later are read without rerunning the file. Its header tells how
//!   such a reader prunes days.
//!
//! A table without files yet cannot be a `read_parquet` (DuckDB refuses a
//! glob that matches nothing), so its view is the same columns, typed, with
//! no rows; the store switches it over when the first segment lands and
//! back when retention removes the last partition.

use std::path::Path;

use super::segments::{day_name, time_column, Segments, LAST_DAY};
use crate::{StoreError, TELEMETRY_TABLES};

/// Most `UNION ALL` branches of an in-process view (see [`partition_view_sql`]).
const MAX_BRANCHES: usize = 32;

/// The file other processes read the views from.
pub const VIEWS_FILE: &str = "views.sql";

fn quote_path(path: &str) -> String {
    // Paths are the data directory's, not a user's SQL; quotes are still doubled.
    format!("'{}'", path.replace('\'', "''"))
}

/// `CREATE OR REPLACE VIEW` for `table`, reading files when `has_files`.
/// With files this is `views.sql`'s form (the `tables/` glob).
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

/// The in-process `CREATE OR REPLACE VIEW` for `table`: one branch per
/// partition with files, over its generation directory, bounded by its
/// day (see the module notes).
pub(crate) fn partition_view_sql(segments: &Segments, table: &'static str) -> Result<String, StoreError> {
    let time = time_column(table);
    let mut parts = Vec::new();
    for p in segments.partitions(table)? {
        if !segments.files(&p)?.is_empty() {
            parts.push(p);
        }
    }
    // Each branch costs DuckDB a bind (~0.3 ms measured here): past
    // MAX_BRANCHES partitions, consecutive days share a branch, so a year
    // of metrics is 31 branches of 12 days rather than 365.
    let per_branch = parts.len().div_ceil(MAX_BRANCHES).max(1);
    let mut branches = Vec::new();
    for group in parts.chunks(per_branch) {
        let (Some(first), Some(last)) = (group.first(), group.last()) else { continue };
        let globs = group.iter().map(|p| quote_path(&format!("{}/*.parquet", p.dir.display()))).collect::<Vec<_>>().join(", ");
        // hive_partitioning off: the generation's name (`date=D.<gen>`) is not a value.
        let scan = format!("SELECT * FROM read_parquet([{globs}], hive_partitioning = false, union_by_name = true)");
        // Day 0 also holds the rows without a time (`split_by_day`): no bound there.
        branches.push(if first.day == 0 {
            scan
        } else if last.day >= LAST_DAY {
            // The day after the last one is past `TIMESTAMP_NS`: DuckDB
            // refuses its literal, and no time reaches it anyway.
            format!("{scan} WHERE \"{time}\" >= TIMESTAMP_NS '{}'", day_name(first.day))
        } else {
            format!(
                "{scan} WHERE \"{time}\" >= TIMESTAMP_NS '{}' AND \"{time}\" < TIMESTAMP_NS '{}'",
                day_name(first.day),
                day_name(last.day + 1)
            )
        });
    }
    let empty = view_sql(segments, table, false)?;
    if branches.is_empty() {
        return Ok(empty);
    }
    // The typed empty view's body goes first: `BY NAME` gives the DDL's
    // columns and types to every branch, and NULLs to a day whose files
    // predate a column. The outer list keeps the DDL's order.
    let typed = empty
        .strip_prefix(&format!("CREATE OR REPLACE VIEW {table} AS "))
        .and_then(|s| s.strip_suffix(';'))
        .ok_or_else(|| StoreError::Unexpected(format!("the empty view of {table} has an unexpected form")))?;
    let list = typed_names(typed);
    let mut body = format!("({typed})");
    for b in branches {
        body.push_str(" UNION ALL BY NAME ");
        body.push_str(&b);
    }
    Ok(format!("CREATE OR REPLACE VIEW {table} AS SELECT {list} FROM ({body});"))
}

/// The quoted column names of the empty view's `CAST(NULL AS T) AS "c"` list.
fn typed_names(select: &str) -> String {
    select.split(" AS \"").skip(1).filter_map(|s| s.split_once('"')).map(|(name, _)| format!("\"{name}\"")).collect::<Vec<_>>().join(", ")
}

/// Every view of `views.sql`, as the current files decide.
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
         --\n\
         -- Pruning: each view reads every day's files (days that arrive later included).\n\
         -- A filter on Timestamp (TimeUnix for metrics) skips other days' row groups by\n\
         -- their statistics, and the metadata cache below keeps their footers in memory,\n\
         -- but DuckDB still opens every file. To open only some days' files, bound the\n\
         -- hive `date` column of the directory layout, e.g.\n\
         --   SELECT count(*) FROM read_parquet('tables/otel_traces/date=*/*.parquet', hive_partitioning = true)\n\
         --   WHERE date BETWEEN DATE '2026-11-20' AND DATE '2026-11-21'\n\
         --     AND Timestamp >= TIMESTAMP '2026-11-20 12:00' AND Timestamp < TIMESTAMP '2026-11-21';\n\
         -- A query that lists a day's files just as costplane compacts that day can fail\n\
         -- with a missing file: run it again (no row is ever read twice or missed).\n\
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
        assert!(full.contains("/tables/otel_logs/date=*/*.parquet', hive_partitioning = true, union_by_name = true)"), "{full}");
        assert!(!full.contains("\"date\""));
    }
}

#[cfg(test)]
mod partition_views {
    use super::super::compact::tests::span;
    use super::super::segments::DAY_NS;
    use super::*;

    const DAY: i64 = 20_454; // 2026-01-01

    /// A store with one 2-span segment on each of `days` days from DAY.
    fn store(days: i64) -> (tempfile::TempDir, std::sync::Arc<Segments>) {
        let dir = tempfile::tempdir().unwrap();
        let segments = Segments::open(dir.path()).unwrap();
        for d in 0..days {
            let noon = (DAY + d) * DAY_NS + DAY_NS / 2;
            let id = usize::try_from(d).unwrap() * 2;
            let rb = super::super::arrow::traces(&[span("a", "x", noon, id), span("b", "y", noon + 1, id + 1)]).unwrap();
            segments.write(u64::try_from(d).unwrap(), "otel_traces", &rb).unwrap();
        }
        (dir, segments)
    }

    fn count(conn: &duckdb::Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn one_branch_per_day_bounded_by_its_day_and_the_exporter_columns() {
        let (_dir, segments) = store(3);
        let sql = partition_view_sql(&segments, "otel_traces").unwrap();
        assert_eq!(sql.matches("read_parquet(").count(), 3, "{sql}");
        assert!(sql.contains("WHERE \"Timestamp\" >= TIMESTAMP_NS '2026-01-02' AND \"Timestamp\" < TIMESTAMP_NS '2026-01-03'"), "{sql}");
        assert!(sql.contains("/segments/otel_traces/date=2026-01-01.g-"), "reads the generation, not the link: {sql}");
        let conn = duckdb::Connection::open_in_memory().unwrap();
        conn.execute_batch(&sql).unwrap();
        // The exporter's columns in the DDL's order, no `date`.
        let empty = view_sql(&segments, "otel_traces", false).unwrap();
        let names: Vec<String> = conn
            .prepare("SELECT * FROM otel_traces")
            .unwrap()
            .query_arrow([])
            .unwrap()
            .get_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names.join(", "), typed_names(&empty).replace('"', ""));
        assert_eq!(names.first().map(String::as_str), Some("Timestamp"));
        // 3 days x 2 spans; 2026-01-02 alone holds 2.
        assert_eq!(count(&conn, "SELECT count(*) FROM otel_traces"), 6);
        assert_eq!(count(&conn, "SELECT count(*) FROM otel_traces WHERE Timestamp >= '2026-01-02' AND Timestamp < '2026-01-03'"), 2);
    }

    #[test]
    fn past_32_partitions_consecutive_days_share_a_branch() {
        // 40 days: ceil(40 / 32) = 2 days a branch, 20 branches.
        let (_dir, segments) = store(40);
        let sql = partition_view_sql(&segments, "otel_traces").unwrap();
        assert_eq!(sql.matches("read_parquet(").count(), 20, "{sql}");
        // The second branch: 2026-01-03 and 2026-01-04, bounded by both.
        assert!(sql.contains("WHERE \"Timestamp\" >= TIMESTAMP_NS '2026-01-03' AND \"Timestamp\" < TIMESTAMP_NS '2026-01-05'"), "{sql}");
        let conn = duckdb::Connection::open_in_memory().unwrap();
        conn.execute_batch(&sql).unwrap();
        assert_eq!(count(&conn, "SELECT count(*) FROM otel_traces"), 80);
        assert_eq!(count(&conn, "SELECT count(*) FROM otel_traces WHERE Timestamp >= '2026-01-04' AND Timestamp < '2026-01-05'"), 2);
    }
}

#[cfg(test)]
mod odd_partitions {
    use super::super::compact::tests::span;
    use super::super::compact::{compact_all, CompactPolicy};
    use super::super::segments::{day_name, DAY_NS, FIRST_DAY, LAST_DAY};
    use super::*;

    const NOON: i64 = 20_454 * DAY_NS + DAY_NS / 2; // 2026-01-01T12:00Z

    fn count(conn: &duckdb::Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn the_nanosecond_range_is_1677_09_22_to_2262_04_11() {
        assert_eq!(day_name(FIRST_DAY), "1677-09-22");
        assert_eq!(day_name(LAST_DAY), "2262-04-11");
        assert_eq!(i64::MAX.div_euclid(DAY_NS), LAST_DAY);
    }

    #[test]
    fn the_last_day_a_timestamp_reaches_is_read_without_an_upper_bound() {
        let dir = tempfile::tempdir().unwrap();
        let segments = Segments::open(dir.path()).unwrap();
        // The last nanosecond TIMESTAMP_NS holds, as a store before the
        // receivers refused later times clamped them to.
        let rb = super::super::arrow::traces(&[span("a", "now", NOON, 1), span("b", "last", i64::MAX, 2)]).unwrap();
        segments.write(1, "otel_traces", &rb).unwrap();
        let sql = partition_view_sql(&segments, "otel_traces").unwrap();
        assert!(sql.contains("WHERE \"Timestamp\" >= TIMESTAMP_NS '2262-04-11')"), "{sql}");
        assert!(!sql.contains("2262-04-12"), "{sql}");
        let conn = duckdb::Connection::open_in_memory().unwrap();
        conn.execute_batch(&sql).unwrap();
        assert_eq!(count(&conn, "SELECT count(*) FROM otel_traces"), 2);
        assert_eq!(count(&conn, "SELECT count(*) FROM otel_traces WHERE Timestamp < '2027-01-01'"), 1);
        // Compaction and retention cope with it too (its end is past i64 nanoseconds).
        segments.write(2, "otel_traces", &rb).unwrap();
        let now = CompactPolicy { target_bytes: 1 << 30, max_age: std::time::Duration::ZERO };
        assert_eq!(compact_all(&segments, &now).unwrap(), 2);
        assert_eq!(segments.expire("otel_traces", 1, NOON + 400 * DAY_NS).unwrap(), vec![20_454]);
        let days: Vec<i64> = segments.partitions("otel_traces").unwrap().iter().map(|p| p.day).collect();
        assert_eq!(days, [LAST_DAY]);
    }

    #[test]
    fn stray_entries_are_skipped_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let segments = Segments::open(dir.path()).unwrap();
        let rb = super::super::arrow::traces(&[span("a", "x", NOON, 1), span("a", "y", NOON + 1, 2)]).unwrap();
        segments.write(1, "otel_traces", &rb).unwrap();
        let tables = dir.path().join("tables/otel_traces");
        let segs = dir.path().join("segments/otel_traces");
        // A day no nanosecond timestamp reaches, linked to a generation with a file.
        let far = segs.join("date=2262-04-12.g-0-0");
        std::fs::create_dir(&far).unwrap();
        super::super::segments::write_file(&far.join("s.parquet"), std::slice::from_ref(&rb), &[9], 1).unwrap();
        std::os::unix::fs::symlink("../../segments/otel_traces/date=2262-04-12.g-0-0", tables.join("date=2262-04-12")).unwrap();
        // A real directory where a link belongs, a name that is no day, a
        // file, a dangling link, and a directory under segments/ that is no
        // generation.
        std::fs::create_dir(tables.join("date=2026-02-01")).unwrap();
        std::fs::create_dir(tables.join("date=someday")).unwrap();
        std::fs::write(tables.join("NOTES"), "kept by hand").unwrap();
        std::os::unix::fs::symlink("../../segments/otel_traces/gone", tables.join("date=2026-03-01")).unwrap();
        let legacy = segs.join("date=2025-12-31");
        std::fs::create_dir(&legacy).unwrap();

        let check = |segments: &Segments| {
            let days: Vec<String> = segments.partitions("otel_traces").unwrap().iter().map(|p| day_name(p.day)).collect();
            assert_eq!(days, ["2026-01-01"]);
            let conn = duckdb::Connection::open_in_memory().unwrap();
            conn.execute_batch(&partition_view_sql(segments, "otel_traces").unwrap()).unwrap();
            assert_eq!(count(&conn, "SELECT count(*) FROM otel_traces"), 2);
        };
        check(&segments);
        // views.sql's form globs partitions only: Parquet files in a
        // directory without `date=` cannot fail its hive-partitioned read
        // ("Hive partition mismatch"). It reads every `date=` entry's files,
        // the far day's included (2 + 2 rows).
        std::fs::create_dir(tables.join("legacy")).unwrap();
        super::super::segments::write_file(&tables.join("legacy/old.parquet"), std::slice::from_ref(&rb), &[8], 1).unwrap();
        let conn = duckdb::Connection::open_in_memory().unwrap();
        conn.execute_batch(&view_sql(&segments, "otel_traces", true).unwrap()).unwrap();
        assert_eq!(count(&conn, "SELECT count(*) FROM otel_traces"), 4);
        check(&segments);
        drop(segments);
        // Opening again (which removes what interrupted compactions left)
        // deletes none of them.
        let segments = Segments::open(dir.path()).unwrap();
        check(&segments);
        assert!(
            far.join("s.parquet").exists()
                && legacy.exists()
                && tables.join("NOTES").exists()
                && tables.join("legacy/old.parquet").exists()
        );
        segments.write(2, "otel_traces", &rb).unwrap();
        let now = CompactPolicy { target_bytes: 1 << 30, max_age: std::time::Duration::ZERO };
        assert_eq!(compact_all(&segments, &now).unwrap(), 1);
        let conn = duckdb::Connection::open_in_memory().unwrap();
        conn.execute_batch(&partition_view_sql(&segments, "otel_traces").unwrap()).unwrap();
        assert_eq!(count(&conn, "SELECT count(*) FROM otel_traces"), 4);
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
        spans[1].span_attributes = costplane_telemetry::Attributes::from([("k", "v")]);
        spans[2].events = vec![costplane_telemetry::model::SpanEvent {
            timestamp_ns: noon,
            name: "e".into(),
            attributes: costplane_telemetry::Attributes::from([("a", "b")]),
        }];
        segments.write(1, "otel_traces", &super::super::arrow::traces(&spans).unwrap()).unwrap();
        super::write_views_file(&segments, &super::all_views(&segments).unwrap()).unwrap();
    }
}
