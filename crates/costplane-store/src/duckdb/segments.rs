//! Telemetry tables as Parquet segments, read through DuckDB views.
//!
//! Layout under the data directory:
//! ```text
//! tables/<table>/date=YYYY-MM-DD            symlink -> ../../segments/<table>/date=YYYY-MM-DD.<gen>
//! segments/<table>/date=YYYY-MM-DD.<gen>/<segment>.parquet
//! segments/<table>/tmp/                     files being written (never read)
//! ```
//! Other processes glob `tables/<table>/date=*/*.parquet` (`views.sql`);
//! costplane's own views read each partition's generation directory
//! directly (`views.rs`). Either way what a query sees of a partition is
//! exactly one generation directory.
//!
//! Invariants:
//! - **Whole files only.** A segment is written under `tmp/`, synced, then
//!   renamed into the partition's current generation and the directory is
//!   synced: a reader sees all of a segment or none of it.
//! - **Generations swap atomically.** Compaction (`compact.rs`) builds a new
//!   generation directory holding the merged file plus hard links of the
//!   segments it did not merge, then replaces the partition's symlink with a
//!   `rename(2)`. A reader lists either the old or the new generation, never
//!   both, so no row is seen twice or missed; a kill at any point leaves the
//!   symlink on one whole generation, and unreferenced generations are
//!   deleted at the next open. Old generations stay on disk, whole, for a
//!   grace period: costplane's views, rewritten at each swap, keep reading
//!   the old one until then, so its queries never fail on a swap. A reader
//!   of `tables/` opens files through the symlink, so one that listed a
//!   generation just before the swap can fail to open a file merged away
//!   (an error, never a wrong answer; run it again).
//! - **One lock for the layout.** Renaming a segment in, creating a
//!   partition, swapping a generation and removing a partition all hold
//!   `Segments::layout`; encoding Parquet never does.
//! - **Exactly once.** Each file's Parquet key-value metadata lists the
//!   batch ids whose rows it holds (`costplane.batches`), written in the same
//!   file as the rows, so recording them is atomic with the rename. A batch
//!   written again (a retry, a replay of the durable buffer after a crash)
//!   skips every (table, day) whose file already names it.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use ::arrow::array::{Array, AsArray, UInt32Array};
use ::arrow::datatypes::SchemaRef;
use ::arrow::datatypes::TimestampNanosecondType;
use ::arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::types::ColumnPath;

use crate::{StoreError, TELEMETRY_TABLES};

/// Key of the Parquet key-value metadata entry that lists a file's batch ids.
pub(crate) const BATCHES_KEY: &str = "costplane.batches";
pub(crate) use crate::days::DAY_NS;
use crate::days::{civil_from_days, days_from_civil};
/// How long a replaced generation stays readable after a swap.
const GRACE: Duration = Duration::from_secs(120);

/// The column that decides a row's date partition.
pub(crate) fn time_column(table: &str) -> &'static str {
    if table.starts_with("otel_metrics_") {
        "TimeUnix"
    } else {
        "Timestamp"
    }
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01).
pub(crate) fn day_name(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The first and last day whose midnight a `TIMESTAMP_NS` (signed 64-bit
/// nanoseconds) holds: 1677-09-22 and 2262-04-11 (division truncates
/// towards zero, so both round inwards). A partition outside them cannot
/// be bounded in a view (DuckDB refuses the literal), and no row the
/// receivers accept can be in one. The last day's end, 2262-04-12, is past
/// the range too: its view branch has no upper bound.
pub(crate) const FIRST_DAY: i64 = i64::MIN / DAY_NS;
pub(crate) const LAST_DAY: i64 = i64::MAX / DAY_NS;

/// The day number of `YYYY-MM-DD`, the inverse of [`day_name`].
pub(crate) fn parse_day(name: &str) -> Option<i64> {
    let mut parts = name.splitn(3, '-');
    let (y, m, d): (i64, u32, u32) = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let day = days_from_civil(y, m, d);
    (day_name(day) == name).then_some(day)
}

/// Whether `name` is a generation directory's, as [`Segments::partition_dir`]
/// and compaction name them: `date=YYYY-MM-DD.g-...`.
fn is_generation_name(name: &str) -> bool {
    name.strip_prefix("date=")
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(day, suffix)| parse_day(day).is_some() && suffix.starts_with("g-"))
}

pub(crate) fn now_ns() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn io(what: impl std::fmt::Display, e: std::io::Error) -> StoreError {
    StoreError::Io(std::io::Error::new(e.kind(), format!("{what}: {e}")))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(|e| io(format!("syncing {}", dir.display()), e))
}

/// Batch ids named in a Parquet file's metadata.
pub(crate) fn file_batches(path: &Path) -> Result<Vec<u64>, StoreError> {
    let file = File::open(path).map_err(|e| io(format!("opening {}", path.display()), e))?;
    let reader = SerializedFileReader::new(file).map_err(|e| StoreError::Unexpected(format!("reading {}: {e}", path.display())))?;
    let kv = reader.metadata().file_metadata().key_value_metadata();
    let value = kv.and_then(|kv| kv.iter().find(|e| e.key == BATCHES_KEY)).and_then(|e| e.value.clone()).unwrap_or_default();
    Ok(value.split(',').filter_map(|s| s.parse().ok()).collect())
}

/// The zstd level of flushed segments: the fastest, since compaction
/// rewrites them at a higher level.
pub(crate) const SEGMENT_ZSTD_LEVEL: i32 = 1;

/// Writes `batches` as one Parquet file at `path` (which must not be read
/// yet), naming `batch_ids` in its metadata, and syncs it.
pub(crate) fn write_file(path: &Path, batches: &[RecordBatch], batch_ids: &[u64], level: i32) -> Result<u64, StoreError> {
    let Some(first) = batches.first() else { return Err(StoreError::Rejected("no rows to write".into())) };
    write_stream(path, &first.schema(), batches.iter().map(|b| Ok(b.clone())), batch_ids, level)
}

/// [`write_file`] for batches made one at a time (each is encoded and
/// dropped before the next is built), all of `schema`.
pub(crate) fn write_stream(
    path: &Path,
    schema: &SchemaRef,
    batches: impl Iterator<Item = Result<RecordBatch, StoreError>>,
    batch_ids: &[u64],
    level: i32,
) -> Result<u64, StoreError> {
    let ids = batch_ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(level).map_err(|e| StoreError::Unexpected(e.to_string()))?))
        .set_key_value_metadata(Some(vec![KeyValue::new(BATCHES_KEY.to_owned(), ids)]))
        .set_max_row_group_row_count(Some(128 * 1024))
        // Statistics only where a reader can prune with them: the top-level
        // scalar columns (times, names, ids). Minimum and maximum of every
        // attribute key and value (thirty per span) cost a string compare
        // each, and no filter on a map element can use them.
        .set_statistics_enabled(EnabledStatistics::None);
    let props = schema
        .fields()
        .iter()
        .filter(|f| !f.data_type().is_nested())
        .fold(props, |p, f| p.set_column_statistics_enabled(ColumnPath::from(f.name().as_str()), EnabledStatistics::Page))
        .build();
    let file = File::create(path).map_err(|e| io(format!("creating {}", path.display()), e))?;
    let parquet_err = |e: parquet::errors::ParquetError| StoreError::Rejected(format!("encoding Parquet failed: {e}"));
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(parquet_err)?;
    for b in batches {
        writer.write(&b?).map_err(parquet_err)?;
    }
    let file = writer.into_inner().map_err(parquet_err)?;
    file.sync_all().map_err(|e| io(format!("syncing {}", path.display()), e))?;
    Ok(file.metadata().map(|m| m.len()).unwrap_or(0))
}

/// A partition's rows of one batch split by day.
pub(crate) fn split_by_day(table: &str, rb: &RecordBatch) -> Result<Vec<(i64, RecordBatch)>, StoreError> {
    let column =
        rb.column_by_name(time_column(table)).ok_or_else(|| StoreError::Schema(format!("{table} has no {} column", time_column(table))))?;
    let times =
        column.as_primitive_opt::<TimestampNanosecondType>().ok_or_else(|| StoreError::Schema(format!("{table}: time is not ns")))?;
    let day_of = |i: usize| if times.is_null(i) { 0 } else { times.value(i).div_euclid(DAY_NS) };
    // Nearly every batch falls in one day: check that before indexing rows.
    let first = if rb.num_rows() == 0 { 0 } else { day_of(0) };
    if (1..rb.num_rows()).all(|i| day_of(i) == first) {
        return Ok(if rb.num_rows() == 0 { Vec::new() } else { vec![(first, rb.clone())] });
    }
    let mut rows: HashMap<i64, Vec<u32>> = HashMap::new();
    for i in 0..rb.num_rows() {
        rows.entry(day_of(i)).or_default().push(u32::try_from(i).unwrap_or(u32::MAX));
    }
    if rows.len() <= 1 {
        return Ok(rows.into_keys().map(|day| (day, rb.clone())).collect());
    }
    let mut out = Vec::with_capacity(rows.len());
    for (day, idx) in rows {
        let taken = ::arrow::compute::take_record_batch(rb, &UInt32Array::from(idx))
            .map_err(|e| StoreError::Rejected(format!("splitting {table} by day failed: {e}")))?;
        out.push((day, taken));
    }
    out.sort_by_key(|(day, _)| *day);
    Ok(out)
}

/// A segment one write made.
#[derive(Debug, Clone)]
pub(crate) struct Written {
    batch_id: u64,
    table: &'static str,
    day: i64,
    name: String,
}

/// One partition as found on disk.
#[derive(Debug, Clone)]
pub(crate) struct Partition {
    pub table: &'static str,
    pub day: i64,
    /// The generation directory the partition's symlink points at.
    pub dir: PathBuf,
}

/// The segment layout of one data directory.
pub(crate) struct Segments {
    root: PathBuf,
    /// Held for every change of what readers list (see the module notes).
    layout: Mutex<()>,
    /// (batch id, table index, day) already stored, with when it was learnt.
    written: Mutex<HashMap<(u64, usize, i64), i64>>,
    seq: AtomicU64,
    /// Replaced generations and when they were replaced.
    retired: Mutex<Vec<(PathBuf, std::time::Instant)>>,
    /// Entries of `tables/` or `segments/` that are no partition or
    /// generation of this layout, already warned about (once each).
    strays: Mutex<HashSet<PathBuf>>,
}

impl std::fmt::Debug for Segments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segments").field("root", &self.root).finish()
    }
}

fn table_index(table: &str) -> usize {
    TELEMETRY_TABLES.iter().position(|t| *t == table).unwrap_or(usize::MAX)
}

impl Segments {
    /// Opens the layout under `data_dir`: creates its directories, deletes
    /// what a crash left behind (temporary files, unreferenced generations)
    /// and learns the batch ids the segments hold.
    pub fn open(data_dir: &Path) -> Result<Arc<Self>, StoreError> {
        let root = data_dir.canonicalize().map_err(|e| io(format!("resolving {}", data_dir.display()), e))?;
        let segments = Segments {
            root,
            layout: Mutex::new(()),
            written: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            retired: Mutex::new(Vec::new()),
            strays: Mutex::new(HashSet::new()),
        };
        for table in TELEMETRY_TABLES {
            for dir in [segments.table_dir(table), segments.tmp_dir(table)] {
                fs::create_dir_all(&dir).map_err(|e| io(format!("creating {}", dir.display()), e))?;
            }
            segments.recover(table)?;
        }
        segments.learn_batches()?;
        Ok(Arc::new(segments))
    }

    /// The layout under `data_dir` for listing only: nothing is created,
    /// recovered or learnt (a read-only store while no server runs).
    pub fn open_listing(data_dir: &Path) -> Result<Arc<Self>, StoreError> {
        let root = data_dir.canonicalize().map_err(|e| io(format!("resolving {}", data_dir.display()), e))?;
        Ok(Arc::new(Segments {
            root,
            layout: Mutex::new(()),
            written: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            retired: Mutex::new(Vec::new()),
            strays: Mutex::new(HashSet::new()),
        }))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `tables/`: what readers glob.
    pub fn tables_dir(&self) -> PathBuf {
        self.root.join("tables")
    }

    /// `segments/`: where the files are.
    pub fn segments_dir(&self) -> PathBuf {
        self.root.join("segments")
    }

    pub fn table_dir(&self, table: &str) -> PathBuf {
        self.tables_dir().join(table)
    }

    pub(crate) fn tmp_dir(&self, table: &str) -> PathBuf {
        self.segments_dir().join(table).join("tmp")
    }

    /// The glob a view reads: partitions only, so that another directory
    /// under `tables/<table>/` (whose path has no `date=`) cannot fail a
    /// hive-partitioned read with "Hive partition mismatch".
    pub fn glob(&self, table: &str) -> String {
        format!("{}/date=*/*.parquet", self.table_dir(table).display())
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ()> {
        self.layout.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A name no other file of this process or an earlier one has.
    pub(crate) fn unique(&self, prefix: &str) -> String {
        format!("{prefix}-{:x}-{:x}", now_ns(), self.seq.fetch_add(1, Ordering::Relaxed))
    }

    /// Warns once about an entry that is no partition or generation of
    /// this layout: it is skipped (never read, never deleted), and reads of
    /// everything else go on.
    fn stray(&self, path: &Path, why: &str) {
        let mut strays = self.strays.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if strays.insert(path.to_path_buf()) {
            tracing::warn!(
                path = %path.display(),
                why,
                "skipping an entry of the telemetry segments that costplane did not make; \
                 its rows (if any) are not read; move it out of the data directory to silence this"
            );
        }
    }

    /// Every link of `tables/<table>/` as (entry path, resolved target),
    /// whatever its name: what a generation must not be deleted under.
    fn link_targets(&self, table: &'static str) -> Result<HashSet<PathBuf>, StoreError> {
        let dir = self.table_dir(table);
        let mut out = HashSet::new();
        for entry in fs::read_dir(&dir).map_err(|e| io(format!("listing {}", dir.display()), e))?.flatten() {
            if let Ok(target) = fs::read_link(entry.path()) {
                let resolved = dir.join(target);
                out.insert(resolved.canonicalize().unwrap_or(resolved));
            }
        }
        Ok(out)
    }

    /// Deletes temporary files and generations no symlink points at.
    /// Only what this layout makes is deleted: a directory whose name is no
    /// generation's (`date=YYYY-MM-DD.g-...`) is left alone and reported.
    fn recover(&self, table: &'static str) -> Result<(), StoreError> {
        let tmp = self.tmp_dir(table);
        for entry in fs::read_dir(&tmp).map_err(|e| io(format!("listing {}", tmp.display()), e))?.flatten() {
            let _ = fs::remove_file(entry.path());
        }
        // Every link's target, a skipped partition's included: its
        // generation stays on disk for whoever looks at it.
        let live = self.link_targets(table)?;
        let seg_dir = self.segments_dir().join(table);
        for entry in fs::read_dir(&seg_dir).map_err(|e| io(format!("listing {}", seg_dir.display()), e))?.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".link") {
                let _ = fs::remove_file(&path);
            } else if name == "tmp" || !path.is_dir() || live.contains(&path) {
                continue;
            } else if is_generation_name(&name) {
                tracing::info!(dir = %path.display(), "removing a generation no partition uses (left by an interrupted compaction)");
                fs::remove_dir_all(&path).map_err(|e| io(format!("removing {}", path.display()), e))?;
            } else {
                self.stray(&path, "not a generation directory (date=YYYY-MM-DD.g-...) and no partition links to it");
            }
        }
        Ok(())
    }

    fn learn_batches(&self) -> Result<(), StoreError> {
        let mut written = self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let cutoff = now_ns() - DAY_NS;
        for table in TELEMETRY_TABLES {
            for p in self.partitions(table)? {
                for file in self.files(&p)? {
                    let modified = fs::metadata(&file)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
                    if modified < cutoff {
                        continue;
                    }
                    for id in file_batches(&file)? {
                        written.insert((id, table_index(table), p.day), modified);
                    }
                }
            }
        }
        Ok(())
    }

    /// The partitions of `table`, by day. Whatever else `tables/<table>/`
    /// holds is skipped and reported once ([`Segments::stray`]): a name
    /// that is no `date=YYYY-MM-DD`, a day outside
    /// [`FIRST_DAY`]..=[`LAST_DAY`] (no view can bound it), an entry that
    /// is no symlink, or a link to no directory. None of them fails a read.
    pub fn partitions(&self, table: &'static str) -> Result<Vec<Partition>, StoreError> {
        let dir = self.table_dir(table);
        let mut out = Vec::new();
        if !dir.exists() {
            // A store whose telemetry was never written (listing-only opens).
            return Ok(out);
        }
        for entry in fs::read_dir(&dir).map_err(|e| io(format!("listing {}", dir.display()), e))?.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(day) = name.strip_prefix("date=").and_then(parse_day) else {
                self.stray(&path, "not a partition name (date=YYYY-MM-DD)");
                continue;
            };
            if !(FIRST_DAY..=LAST_DAY).contains(&day) {
                self.stray(&path, "a day outside 1677-09-22..=2262-04-11, which no nanosecond timestamp reaches");
                continue;
            }
            let Ok(target) = fs::read_link(&path) else {
                self.stray(&path, "not a symlink to a generation directory");
                continue;
            };
            let resolved = dir.join(target);
            let resolved = resolved.canonicalize().unwrap_or(resolved);
            if !resolved.is_dir() {
                self.stray(&path, "links to no directory");
                continue;
            }
            out.push(Partition { table, day, dir: resolved });
        }
        out.sort_by_key(|p| p.day);
        Ok(out)
    }

    /// The Parquet files of a partition's generation.
    pub fn files(&self, p: &Partition) -> Result<Vec<PathBuf>, StoreError> {
        let mut out: Vec<PathBuf> = fs::read_dir(&p.dir)
            .map_err(|e| io(format!("listing {}", p.dir.display()), e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Whether `table` has at least one partition (its view can read files).
    pub fn has_files(&self, table: &'static str) -> Result<bool, StoreError> {
        // A partition can be empty (its only segment taken back by `unwrite`).
        for p in self.partitions(table)? {
            if !self.files(&p)?.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The generation directory of (table, day), creating the partition
    /// when it does not exist. Call with the layout lock held.
    fn partition_dir(&self, table: &'static str, day: i64) -> Result<PathBuf, StoreError> {
        let link = self.table_dir(table).join(format!("date={}", day_name(day)));
        if let Ok(target) = fs::read_link(&link) {
            return Ok(self.table_dir(table).join(target));
        }
        let generation = format!("date={}.{}", day_name(day), self.unique("g"));
        let seg_dir = self.segments_dir().join(table);
        let dir = seg_dir.join(&generation);
        fs::create_dir(&dir).map_err(|e| io(format!("creating {}", dir.display()), e))?;
        sync_dir(&seg_dir)?;
        self.point(table, day, &generation)?;
        Ok(dir)
    }

    /// Points (table, day)'s symlink at `generation` (a directory name under
    /// `segments/<table>/`), atomically replacing any earlier link. Call
    /// with the layout lock held.
    pub(crate) fn point(&self, table: &'static str, day: i64, generation: &str) -> Result<(), StoreError> {
        let seg_dir = self.segments_dir().join(table);
        // Made outside `tables/` so no reader's glob ever lists it.
        let tmp_link = seg_dir.join(format!(".link-{}", self.unique("l")));
        let target = PathBuf::from("../../segments").join(table).join(generation);
        std::os::unix::fs::symlink(&target, &tmp_link).map_err(|e| io(format!("linking {}", tmp_link.display()), e))?;
        let link = self.table_dir(table).join(format!("date={}", day_name(day)));
        fs::rename(&tmp_link, &link).map_err(|e| io(format!("renaming {} to {}", tmp_link.display(), link.display()), e))?;
        sync_dir(&self.table_dir(table))
    }

    /// Writes a batch's rows of `table`, one segment per day, skipping the
    /// days whose segments already hold `batch_id`. Returns whether a day
    /// had no files before (the table's view must start reading it).
    pub fn write(&self, batch_id: u64, table: &'static str, rb: &RecordBatch) -> Result<bool, StoreError> {
        self.write_files(batch_id, table, rb, &mut Vec::new())
    }

    /// [`Segments::write`], adding the files it wrote to `written`.
    pub fn write_files(&self, batch_id: u64, table: &'static str, rb: &RecordBatch, files: &mut Vec<Written>) -> Result<bool, StoreError> {
        let mut new_day = false;
        let ti = table_index(table);
        for (day, rows) in split_by_day(table, rb)? {
            if self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains_key(&(batch_id, ti, day)) {
                tracing::debug!(batch_id, table, day, "segment already written; skipping");
                continue;
            }
            let name = format!("{}.parquet", self.unique(&format!("s{batch_id}")));
            let tmp = self.tmp_dir(table).join(&name);
            write_file(&tmp, &[rows], &[batch_id], SEGMENT_ZSTD_LEVEL)?;
            {
                let _layout = self.lock();
                let dir = self.partition_dir(table, day)?;
                // Stops at the first file: a day's directory can hold an hour of small segments.
                new_day |= !fs::read_dir(&dir)
                    .map_err(|e| io(format!("listing {}", dir.display()), e))?
                    .flatten()
                    .any(|e| e.path().extension().is_some_and(|x| x == "parquet"));
                let dest = dir.join(&name);
                fs::rename(&tmp, &dest).map_err(|e| io(format!("renaming {} to {}", tmp.display(), dest.display()), e))?;
                sync_dir(&dir)?;
            }
            self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert((batch_id, ti, day), now_ns());
            files.push(Written { batch_id, table, day, name });
        }
        Ok(new_day)
    }

    /// Takes back segments of a batch the store then refused as invalid
    /// (the pipeline sets its rows aside, so they must not stay stored).
    pub fn unwrite(&self, files: &[Written]) -> Result<(), StoreError> {
        let _layout = self.lock();
        for w in files {
            let link = self.table_dir(w.table).join(format!("date={}", day_name(w.day)));
            if let Ok(target) = fs::read_link(&link) {
                let path = self.table_dir(w.table).join(target).join(&w.name);
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    // Merged meanwhile: the merged file keeps the rows.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        tracing::warn!(table = w.table, batch_id = w.batch_id, "a refused batch's segment was already compacted");
                    }
                    Err(e) => return Err(io(format!("removing {}", path.display()), e)),
                }
            }
            self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&(w.batch_id, table_index(w.table), w.day));
        }
        Ok(())
    }

    /// Forgets batch ids learnt more than a day ago (a replay comes sooner).
    pub fn prune_written(&self) {
        let cutoff = now_ns() - DAY_NS;
        self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|_, at| *at >= cutoff);
    }

    /// Keeps a replaced generation readable for the grace period.
    pub(crate) fn retire(&self, dir: PathBuf) {
        self.retired.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((dir, std::time::Instant::now()));
    }

    /// Deletes replaced generations whose grace period is over (all of
    /// them with `force`).
    pub fn collect_garbage(&self, force: bool) {
        let mut retired = self.retired.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        retired.retain(|(dir, at)| {
            if force || at.elapsed() >= GRACE {
                if let Err(e) = fs::remove_dir_all(dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "removing a replaced generation failed");
                }
                false
            } else {
                true
            }
        });
    }

    /// Removes every partition of `table` whose whole day ended more than
    /// `ttl_days` days before `now_ns` (as ClickHouse's TTL with
    /// `ttl_only_drop_parts` drops a part once all its rows expired).
    /// `ttl_days == 0` keeps everything. Returns the days removed.
    pub fn expire(&self, table: &'static str, ttl_days: u32, now_ns: i64) -> Result<Vec<i64>, StoreError> {
        if ttl_days == 0 {
            return Ok(Vec::new());
        }
        let mut removed = Vec::new();
        for p in self.partitions(table)? {
            // Saturating: the last day's end (2262-04-12) is past i64 nanoseconds.
            let end_ns = (p.day + 1).saturating_mul(DAY_NS);
            if end_ns.saturating_add(i64::from(ttl_days).saturating_mul(DAY_NS)) > now_ns {
                continue;
            }
            {
                let _layout = self.lock();
                // The link goes first: readers stop listing the partition at once.
                let link = self.table_dir(table).join(format!("date={}", day_name(p.day)));
                fs::remove_file(&link).map_err(|e| io(format!("removing {}", link.display()), e))?;
                sync_dir(&self.table_dir(table))?;
            }
            self.retire(p.dir.clone());
            tracing::info!(table, day = %day_name(p.day), ttl_days, "removed an expired partition");
            removed.push(p.day);
        }
        Ok(removed)
    }

    /// Bytes of the files of each partition of `table`.
    pub fn partition_bytes(&self, table: &'static str) -> Result<Vec<(i64, u64)>, StoreError> {
        let mut out = Vec::new();
        for p in self.partitions(table)? {
            let bytes = self.files(&p)?.iter().filter_map(|f| fs::metadata(f).ok()).map(|m| m.len()).sum();
            out.push((p.day, bytes));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_names_round_trip() {
        assert_eq!(day_name(0), "1970-01-01");
        // 2026-01-01: 56 years of 365 days (20,440) plus the 14 leap days
        // 1972..2024 = 20,454. 2026-11-24 is 327 days later (Jan..Oct 304, + 23).
        assert_eq!(parse_day("2026-01-01"), Some(20_454));
        assert_eq!(day_name(20_454), "2026-01-01");
        assert_eq!(day_name(20_454 + 327), "2026-11-24");
        assert_eq!(day_name(-1), "1969-12-31");
        assert_eq!(parse_day("2024-02-29").map(day_name).as_deref(), Some("2024-02-29"));
        assert_eq!(parse_day("2026-02-30"), None);
        assert_eq!(parse_day("x"), None);
    }
}
