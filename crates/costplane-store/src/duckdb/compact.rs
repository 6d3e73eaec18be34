//! The compactor: merges a partition's small segments into one file sorted
//! by the table's ClickHouse ORDER BY key.
//!
//! When: a partition's segments under `target_bytes` are merged once they
//! add up to `target_bytes` or the oldest of them is `max_age` old, so a
//! partition holds at most an hour's worth of small files and otherwise
//! files of at least `target_bytes`.
//!
//! Memory: the merge is DuckDB's `COPY (... ORDER BY key) TO` on a private
//! in-memory instance limited to [`MERGE_MEMORY`], an external sort that
//! spills to `segments/<table>/tmp`; up to `target_bytes` of compressed
//! segments (gigabytes once unpacked) never need to fit in memory.
//!
//! How (see `segments.rs` for the layout): the merged file is written into
//! a new generation directory; then, holding the layout lock, every segment
//! of the current generation that was not merged (it arrived meanwhile) is
//! hard-linked into the new one, and the partition's symlink is renamed
//! onto the new generation. Before the rename readers list the old
//! generation (every row once); after it, the new one (every row once).
//! Killed before the rename, the new generation is garbage removed at the
//! next open; after it, the old one is. The batch ids of the merged files
//! go into the merged file's metadata, so exactly-once survives compaction.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::segments::{file_batches, Partition, Segments, BATCHES_KEY};
use crate::StoreError;

/// When small segments are merged.
#[derive(Debug, Clone, Copy)]
pub struct CompactPolicy {
    /// Files at least this big are left alone; small ones are merged once
    /// they add up to this much.
    pub target_bytes: u64,
    /// Small segments are merged once the oldest is this old.
    pub max_age: Duration,
}

impl Default for CompactPolicy {
    fn default() -> Self {
        CompactPolicy { target_bytes: 128 * 1024 * 1024, max_age: Duration::from_secs(3600) }
    }
}

/// Test-only: `COSTPLANE_TEST_COMPACT_PAUSE=<point>:<ms>` pauses the
/// compactor at `written` (merged file written, nothing swapped), `linked`
/// (new generation complete, symlink not yet renamed) or `swapped` (symlink
/// renamed, old generation still on disk), printing a line first, so a test
/// can SIGKILL the process exactly there.
fn test_pause(point: &str) {
    let Ok(spec) = std::env::var("COSTPLANE_TEST_COMPACT_PAUSE") else { return };
    let Some((at, ms)) = spec.split_once(':') else { return };
    if at != point {
        return;
    }
    let ms: u64 = ms.parse().unwrap_or(0);
    tracing::warn!(point, ms, "test hook: pausing the compactor");
    println!("costplane-test: compaction paused at {point}");
    std::thread::sleep(Duration::from_millis(ms));
}

/// The table's ClickHouse ORDER BY key as DuckDB sorts it (maps are left
/// out of the metrics key; logs' `toStartOfFiveMinutes` is a bucket number).
fn order_by(table: &str) -> &'static str {
    match table {
        "otel_traces" => r#""ServiceName", "SpanName", "Timestamp""#,
        "otel_logs" => r#"epoch_ns("Timestamp") // 300000000000, "ServiceName", "Timestamp""#,
        _ => r#""ServiceName", "MetricName", "TimeUnix""#,
    }
}

/// How much memory one merge's sort may hold; past it DuckDB spills to the
/// table's temporary directory. A merge reads up to `target_bytes` of
/// zstd Parquet, which unpacks to twenty times that or more in memory, so
/// sorting it all in memory (as an Arrow sort must) would need gigabytes.
const MERGE_MEMORY: &str = "256MB";

/// A literal SQL string of a path costplane made (its data directory and
/// generated names), quotes doubled.
fn sql_path(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "''"))
}

/// Writes `inputs`' rows sorted by the table's key into one zstd Parquet
/// file at `out`, naming `ids` in its metadata, and syncs it. DuckDB does
/// the sort on a private in-memory instance with its own memory limit (an
/// external sort, so memory stays bounded whatever the inputs hold); files
/// written before a column was added read it as NULL. Returns the size.
fn merge_sorted(table: &str, inputs: &[PathBuf], out: &Path, ids: &[u64], spill_dir: &Path) -> Result<u64, StoreError> {
    let err = |e: duckdb::Error| StoreError::Unexpected(format!("merging segments of {table} into {} failed: {e}", out.display()));
    let conn = duckdb::Connection::open_in_memory().map_err(err)?;
    conn.execute_batch(&format!("SET memory_limit = '{MERGE_MEMORY}'; SET threads = 1; SET temp_directory = {};", sql_path(spill_dir)))
        .map_err(err)?;
    let files: Vec<String> = inputs.iter().map(|f| sql_path(f)).collect();
    let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
    let sql = format!(
        "COPY (SELECT * FROM read_parquet([{}], union_by_name = true) ORDER BY {}) TO {} \
         (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 3, ROW_GROUP_SIZE 131072, KV_METADATA {{'{BATCHES_KEY}': '{}'}})",
        files.join(", "),
        order_by(table),
        sql_path(out),
        ids.join(",")
    );
    conn.execute_batch(&sql).map_err(err)?;
    drop(conn);
    let file = File::open(out)?;
    file.sync_all()?;
    Ok(file.metadata()?.len())
}

fn age(path: &Path) -> Duration {
    fs::metadata(path).and_then(|m| m.modified()).ok().and_then(|t| SystemTime::now().duration_since(t).ok()).unwrap_or_default()
}

/// Runs a swap (the closure it is given) and whatever must happen around
/// it: the store holds its writer connection and rewrites the views.
pub(crate) type SwapHook<'a> = &'a dyn Fn(&mut dyn FnMut() -> Result<(), StoreError>) -> Result<(), StoreError>;

/// A hook that only swaps (no views to keep up to date).
#[cfg(test)]
pub(crate) fn just_swap(swap: &mut dyn FnMut() -> Result<(), StoreError>) -> Result<(), StoreError> {
    swap()
}

/// Merges `p`'s small segments when the policy says so. Returns whether it did.
#[cfg(test)]
pub(crate) fn compact_partition(segments: &Segments, p: &Partition, policy: &CompactPolicy) -> Result<bool, StoreError> {
    compact_partition_with(segments, p, policy, &just_swap)
}

/// [`compact_partition`], swapping inside `hook`.
pub(crate) fn compact_partition_with(
    segments: &Segments,
    p: &Partition,
    policy: &CompactPolicy,
    hook: SwapHook<'_>,
) -> Result<bool, StoreError> {
    let mut small: Vec<(PathBuf, u64)> = Vec::new();
    for f in segments.files(p)? {
        let len = fs::metadata(&f)?.len();
        if len < policy.target_bytes {
            small.push((f, len));
        }
    }
    if small.len() < 2 {
        return Ok(false);
    }
    let total: u64 = small.iter().map(|(_, l)| l).sum();
    let oldest = small.iter().map(|(f, _)| age(f)).max().unwrap_or_default();
    if total < policy.target_bytes && oldest < policy.max_age {
        return Ok(false);
    }
    // Oldest first, up to the target.
    small.sort_by_key(|(f, _)| std::cmp::Reverse(age(f)));
    let (mut inputs, mut ids, mut bytes) = (Vec::new(), Vec::new(), 0u64);
    for (f, len) in small {
        ids.extend(file_batches(&f)?);
        inputs.push(f);
        bytes += len;
        if bytes >= policy.target_bytes {
            break;
        }
    }
    if inputs.len() < 2 {
        return Ok(false);
    }
    ids.sort_unstable();
    ids.dedup();
    let generation = format!("date={}.{}", super::segments::day_name(p.day), segments.unique("g"));
    let new_dir = segments.segments_dir().join(p.table).join(&generation);
    fs::create_dir(&new_dir)?;
    let merged_name = format!("{}.parquet", segments.unique("c"));
    let merged_bytes = merge_sorted(p.table, &inputs, &new_dir.join(&merged_name), &ids, &segments.tmp_dir(p.table))?;
    test_pause("written");
    hook(&mut || {
        let _layout = segments.lock();
        // Segments that arrived while merging move over as they are.
        for f in segments.files(p)? {
            if !inputs.contains(&f) {
                if let Some(name) = f.file_name() {
                    fs::hard_link(&f, new_dir.join(name))?;
                }
            }
        }
        File::open(&new_dir)?.sync_all()?;
        test_pause("linked");
        segments.point(p.table, p.day, &generation)?;
        test_pause("swapped");
        Ok(())
    })?;
    segments.retire(p.dir.clone());
    tracing::info!(
        table = p.table,
        day = %super::segments::day_name(p.day),
        files = inputs.len(),
        bytes_in = bytes,
        bytes_out = merged_bytes,
        "compacted a partition"
    );
    Ok(true)
}

/// One pass over every partition of every table; returns how many merged.
#[cfg(test)]
pub(crate) fn compact_all(segments: &Segments, policy: &CompactPolicy) -> Result<usize, StoreError> {
    compact_all_with(segments, policy, &just_swap)
}

/// [`compact_all`], each swap inside `hook`.
pub(crate) fn compact_all_with(segments: &Segments, policy: &CompactPolicy, hook: SwapHook<'_>) -> Result<usize, StoreError> {
    let mut merged = 0;
    for table in crate::TELEMETRY_TABLES {
        for p in segments.partitions(table)? {
            if compact_partition_with(segments, &p, policy, hook)? {
                merged += 1;
            }
        }
    }
    segments.collect_garbage(false);
    Ok(merged)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use costplane_telemetry::model::{ResourceInfo, ScopeInfo, SpanRow};

    use ::arrow::array::AsArray;
    use ::arrow::record_batch::RecordBatch;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::super::segments::{day_name, write_file, DAY_NS};
    use super::*;

    fn read_file(path: &Path) -> Vec<RecordBatch> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap().build().unwrap();
        reader.map(Result::unwrap).collect()
    }

    const DAY: i64 = 20_454; // 2026-01-01

    pub(crate) fn span(service: &str, name: &str, ts_ns: i64, id: usize) -> SpanRow {
        SpanRow {
            resource: Arc::new(ResourceInfo { service_name: service.into(), ..ResourceInfo::default() }),
            scope: Arc::new(ScopeInfo::default()),
            timestamp_ns: ts_ns,
            trace_id: format!("{id:032x}"),
            span_id: format!("{id:016x}"),
            parent_span_id: String::new(),
            trace_state: String::new(),
            span_name: name.into(),
            span_kind: "Server",
            span_attributes: Default::default(),
            duration_ns: 1,
            status_code: "Unset",
            status_message: String::new(),
            events: Vec::new(),
            links: Vec::new(),
            encoded_bytes: 10,
        }
    }

    fn rows_of(segments: &Segments, p: &Partition) -> Vec<RecordBatch> {
        segments.files(p).unwrap().iter().flat_map(|f| read_file(f)).collect()
    }

    fn span_ids(batches: &[RecordBatch]) -> Vec<String> {
        let mut out = Vec::new();
        for b in batches {
            let col = b.column_by_name("SpanId").unwrap().as_string::<i32>().clone();
            out.extend(col.iter().map(|v| v.unwrap().to_owned()));
        }
        out
    }

    #[test]
    fn segments_split_by_day_skip_rewrites_and_compact_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let segments = Segments::open(dir.path()).unwrap();
        let noon = DAY * DAY_NS + DAY_NS / 2;
        // Batch 1: two spans on DAY, one on DAY+1. Batch 2: two on DAY.
        let b1 =
            super::super::arrow::traces(&[span("b", "x", noon, 1), span("a", "y", noon + DAY_NS, 2), span("a", "z", noon, 3)]).unwrap();
        let b2 = super::super::arrow::traces(&[span("a", "x", noon + 5, 4), span("c", "x", noon - 5, 5)]).unwrap();
        assert!(segments.write(1, "otel_traces", &b1).unwrap(), "the first segment starts the table");
        assert!(!segments.write(2, "otel_traces", &b2).unwrap());
        // A replay of batch 1 writes nothing.
        segments.write(1, "otel_traces", &b1).unwrap();
        let parts = segments.partitions("otel_traces").unwrap();
        assert_eq!(parts.iter().map(|p| day_name(p.day)).collect::<Vec<_>>(), ["2026-01-01", "2026-01-02"]);
        assert_eq!(segments.files(&parts[0]).unwrap().len(), 2);
        assert_eq!(segments.files(&parts[1]).unwrap().len(), 1);

        // Young and small: nothing to do.
        assert_eq!(compact_all(&segments, &CompactPolicy::default()).unwrap(), 0);
        let now = CompactPolicy { target_bytes: 1 << 30, max_age: Duration::ZERO };
        // Only DAY has two segments to merge.
        assert_eq!(compact_all(&segments, &now).unwrap(), 1);
        let parts = segments.partitions("otel_traces").unwrap();
        let files = segments.files(&parts[0]).unwrap();
        assert_eq!(files.len(), 1);
        // Sorted by (ServiceName, SpanName, Timestamp): a/x(4), a/z(3), b/x(1), c/x(5).
        let ids = span_ids(&rows_of(&segments, &parts[0]));
        assert_eq!(ids, [4, 3, 1, 5].map(|i| format!("{i:016x}")));
        let mut batches = file_batches(&files[0]).unwrap();
        batches.sort_unstable();
        assert_eq!(batches, [1, 2]);
        // The old generation is gone once collected; a fresh open still
        // knows both batches, so a replay stores nothing twice.
        segments.collect_garbage(true);
        assert_eq!(std::fs::read_dir(dir.path().join("segments/otel_traces")).unwrap().count(), 3, "tmp and two generations");
        drop(segments);
        let segments = Segments::open(dir.path()).unwrap();
        segments.write(2, "otel_traces", &b2).unwrap();
        segments.write(1, "otel_traces", &b1).unwrap();
        let parts = segments.partitions("otel_traces").unwrap();
        assert_eq!(span_ids(&rows_of(&segments, &parts[0])).len(), 4);
        assert_eq!(span_ids(&rows_of(&segments, &parts[1])).len(), 1);
    }

    #[test]
    fn segments_arriving_during_a_merge_move_to_the_new_generation() {
        let dir = tempfile::tempdir().unwrap();
        let segments = Segments::open(dir.path()).unwrap();
        let noon = DAY * DAY_NS + DAY_NS / 2;
        for i in 0..3u64 {
            let b = super::super::arrow::traces(&[span("a", "x", noon, usize::try_from(i).unwrap())]).unwrap();
            segments.write(i, "otel_traces", &b).unwrap();
        }
        // A merge that saw only the first three; the fourth lands before the swap.
        let p = segments.partitions("otel_traces").unwrap().remove(0);
        let b = super::super::arrow::traces(&[span("a", "x", noon, 9)]).unwrap();
        let policy = CompactPolicy { target_bytes: 1 << 30, max_age: Duration::ZERO };
        segments.write(9, "otel_traces", &b).unwrap();
        assert!(compact_partition(&segments, &p, &policy).unwrap());
        let p = segments.partitions("otel_traces").unwrap().remove(0);
        let mut ids = span_ids(&rows_of(&segments, &p));
        ids.sort();
        assert_eq!(ids, [0, 1, 2, 9].map(|i| format!("{i:016x}")));
    }

    #[test]
    fn an_unreferenced_generation_is_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let segments = Segments::open(dir.path()).unwrap();
        let noon = DAY * DAY_NS + DAY_NS / 2;
        let b = super::super::arrow::traces(&[span("a", "x", noon, 1)]).unwrap();
        segments.write(1, "otel_traces", &b).unwrap();
        // What a compaction killed before its swap leaves: a full generation nobody links to.
        let orphan = dir.path().join("segments/otel_traces/date=2026-01-01.g-0-0");
        std::fs::create_dir(&orphan).unwrap();
        write_file(&orphan.join("c.parquet"), &[b], &[1], 3).unwrap();
        drop(segments);
        let segments = Segments::open(dir.path()).unwrap();
        assert!(!orphan.exists());
        let p = segments.partitions("otel_traces").unwrap().remove(0);
        assert_eq!(span_ids(&rows_of(&segments, &p)).len(), 1);
    }

    #[test]
    fn retention_removes_exactly_the_expired_days() {
        let dir = tempfile::tempdir().unwrap();
        let segments = Segments::open(dir.path()).unwrap();
        let today = DAY + 100;
        for (i, back) in [10i64, 8, 7, 1, 0].into_iter().enumerate() {
            let day = today - back;
            let b = super::super::arrow::traces(&[span("a", "x", day * DAY_NS + 1, i)]).unwrap();
            segments.write(u64::try_from(i).unwrap(), "otel_traces", &b).unwrap();
        }
        // At 01:00 of `today` with a 7-day TTL, a day D has expired once its
        // end plus 7 days has passed: (D + 1 + 7) days <= today + 1 h, so
        // D <= today - 8. Days today-10 and today-8 go; today-7 (expires at
        // today's midnight, 23 h from now), today-1 and today stay.
        let now = today * DAY_NS + 3_600_000_000_000;
        let removed = segments.expire("otel_traces", 7, now).unwrap();
        assert_eq!(removed, [today - 10, today - 8]);
        let left: Vec<i64> = segments.partitions("otel_traces").unwrap().iter().map(|p| today - p.day).collect();
        assert_eq!(left, [7, 1, 0]);
        // 0 keeps forever.
        assert!(segments.expire("otel_traces", 0, now + 1000 * DAY_NS).unwrap().is_empty());
        segments.collect_garbage(true);
        assert_eq!(std::fs::read_dir(dir.path().join("segments/otel_traces")).unwrap().count(), 4, "tmp and three generations");
    }
}
