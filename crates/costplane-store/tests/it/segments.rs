//! The embedded store's Parquet segments: compaction killed at each step of
//! its swap, exactly-once across compaction, retention, and `views.sql`.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use costplane_store::duckdb::{CompactPolicy, DuckDbStore, EmbeddedOptions, VIEWS_FILE};
use costplane_store::{Store, TelemetrySink};
use costplane_telemetry::TelemetryBatch;
use serde_json::json;

use crate::data;

const CHILD_DIR: &str = "COSTPLANE_TEST_COMPACT_CHILD_DIR";

/// No background thread; merges whatever is small, whatever its age.
fn eager() -> EmbeddedOptions {
    EmbeddedOptions {
        compact: CompactPolicy { target_bytes: 1 << 30, max_age: Duration::ZERO },
        maintenance_interval: None,
        ..EmbeddedOptions::default()
    }
}

/// `data::traces(id)` with span ids unique to the batch.
fn traces(id: u64) -> TelemetryBatch {
    let mut batch = data::traces(id);
    for (i, span) in batch.spans.iter_mut().enumerate() {
        span.span_id = format!("{id:08x}{i:08x}");
    }
    batch
}

async fn counts(store: &DuckDbStore) -> serde_json::Value {
    let r = store.query("SELECT count(*), count(DISTINCT SpanId) FROM otel_traces").await.unwrap();
    json!(r.rows[0])
}

fn files(dir: &Path) -> usize {
    let partition = dir.join("tables/otel_traces");
    std::fs::read_dir(&partition).unwrap().flatten().map(|p| std::fs::read_dir(p.path()).unwrap().count()).sum()
}

/// Run by `compaction_killed_mid_swap_loses_and_doubles_nothing` as a child
/// process: compacts the store in `COSTPLANE_TEST_COMPACT_CHILD_DIR`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of compaction_killed_mid_swap_loses_and_doubles_nothing"]
async fn compaction_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let store = DuckDbStore::open_with(Path::new(&dir), eager()).unwrap();
    // A day after data::T0: nothing has expired yet.
    let now = i64::try_from(data::T0).unwrap() + 86_400_000_000_000;
    store.maintain_now(now).await.unwrap();
    println!("costplane-test: compaction done");
}

/// Starts the child compactor paused at `point` and SIGKILLs it there.
fn kill_compaction_at(dir: &Path, point: &str) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["segments::compaction_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env("COSTPLANE_TEST_COMPACT_PAUSE", format!("{point}:60000"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let wanted = format!("costplane-test: compaction paused at {point}");
    let mut seen = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        if line.contains(&wanted) {
            // std's Child::kill sends SIGKILL on Unix: no cleanup runs.
            child.kill().unwrap();
            child.wait().unwrap();
            return;
        }
        seen.push(line);
    }
    panic!("the child never paused at {point}: {seen:?}; {:?}", child.wait());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_killed_mid_swap_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = DuckDbStore::open_with(dir.path(), eager()).unwrap();
        for id in 1..=3 {
            store.write(&traces(id)).await.unwrap();
        }
        // 3 batches of 10 spans, all on the day of data::T0: one segment each.
        assert_eq!(counts(&store).await, json!([30, 30]));
        assert_eq!(files(dir.path()), 3);
    }
    for point in ["written", "linked", "swapped"] {
        kill_compaction_at(dir.path(), point);
        if point == "swapped" {
            // The kill came after the swap and before the views were
            // rewritten: the file's views still read the old generation's
            // three segments. A read-only open (`costplane sql` with no
            // server) reads the partitions as they are: the merged file.
            let ro = DuckDbStore::open_read_only(dir.path()).unwrap();
            assert_eq!(counts(&ro).await, json!([30, 30]));
            let plan = analyzed(&ro, "SELECT count(*) FROM otel_traces").await;
            assert_eq!(files_read(&plan), 1, "{plan}");
        }
        let store = DuckDbStore::open_with(dir.path(), eager()).unwrap();
        assert_eq!(counts(&store).await, json!([30, 30]), "after a kill at {point}");
        // Killed before the rename the three segments stay; after it, the merged file.
        let expected_files = if point == "swapped" { 1 } else { 3 };
        assert_eq!(files(dir.path()), expected_files, "after a kill at {point}");
        if point == "swapped" {
            // What the killed process left (the old generation) is gone.
            let generations = std::fs::read_dir(dir.path().join("segments/otel_traces")).unwrap().count();
            assert_eq!(generations, 2, "tmp and one generation");
        }
    }
    // Exactly once across compaction: replaying batch 2 (as the buffer does
    // after a crash) stores nothing; a new batch lands.
    let store = DuckDbStore::open_with(dir.path(), eager()).unwrap();
    store.write(&traces(2)).await.unwrap();
    assert_eq!(counts(&store).await, json!([30, 30]));
    store.write(&traces(4)).await.unwrap();
    assert_eq!(counts(&store).await, json!([40, 40]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_views_are_empty_then_read_files_then_empty_again_after_retention() {
    let dir = tempfile::tempdir().unwrap();
    let store = DuckDbStore::open_with(dir.path(), eager()).unwrap();
    let empty = store.query("SELECT count(*) FROM otel_traces").await.unwrap();
    assert_eq!(empty.rows, vec![vec![json!(0)]]);
    let views = std::fs::read_to_string(dir.path().join(VIEWS_FILE)).unwrap();
    assert!(views.contains("CREATE OR REPLACE VIEW otel_traces AS SELECT CAST(NULL AS TIMESTAMP_NS)"), "{views}");
    store.write(&traces(1)).await.unwrap();
    assert_eq!(counts(&store).await, json!([10, 10]));
    let views = std::fs::read_to_string(dir.path().join(VIEWS_FILE)).unwrap();
    assert!(views.contains("CREATE OR REPLACE VIEW otel_traces AS SELECT \"Timestamp\""), "{views}");
    // The day of data::T0 is long past 7 days: retention removes it, and the
    // view goes back to no rows (a glob matching nothing would be an error).
    let (removed, _) = store.maintain_now(i64::MAX / 2).await.unwrap();
    assert_eq!(removed, 1);
    assert_eq!(counts(&store).await, json!([0, 0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamp_filter_reads_only_matching_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let store = DuckDbStore::open_with(dir.path(), eager()).unwrap();
    let mut late = traces(2);
    for s in &mut late.spans {
        // Ten days later: another partition.
        s.timestamp_ns += 10 * 86_400_000_000_000;
    }
    store.write(&traces(1)).await.unwrap();
    store.write(&late).await.unwrap();
    let plan = store
        .query_with(
            &format!(
                "EXPLAIN ANALYZE SELECT count(*) FROM otel_traces WHERE Timestamp > make_timestamp_ns({})",
                data::T0 + 86_400_000_000_000
            ),
            &[],
        )
        .await
        .unwrap();
    let text = plan.rows.iter().map(|r| r.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join("\n");
    // The earlier day's branch of the view is dropped by the planner: only
    // the later day's one file (one row group) is opened.
    assert!(text.contains("Total Files Read: 1\n") || text.contains("Total Files Read: 1 "), "{text}");
    assert!(text.contains("Row Groups Scanned: 1 / 1"), "{text}");
}

/// The plan's text of `sql` run as `EXPLAIN ANALYZE` on the reader connection.
async fn analyzed(store: &DuckDbStore, sql: &str) -> String {
    let plan = store.query_with(&format!("EXPLAIN ANALYZE {sql}"), &[]).await.unwrap();
    plan.rows.iter().flat_map(|r| r.iter().filter_map(|c| c.as_str().map(str::to_owned))).collect::<Vec<_>>().join("\n")
}

/// The sum of the `Total Files Read: N` lines of a plan (one per scan).
fn files_read(plan: &str) -> u64 {
    plan.split("Total Files Read: ").skip(1).map(|s| s.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse::<u64>().unwrap()).sum()
}

/// `traces(id)` moved `days` days after data::T0.
fn traces_on(id: u64, days: i64) -> TelemetryBatch {
    let mut batch = traces(id);
    for s in &mut batch.spans {
        s.timestamp_ns += days * 86_400_000_000_000;
    }
    batch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamp_filter_opens_only_the_files_of_matching_days() {
    let dir = tempfile::tempdir().unwrap();
    let store = DuckDbStore::open_with(dir.path(), eager()).unwrap();
    // Five days (2030-01-01..05), two batches of 10 spans each: 10 files.
    for day in 0..5 {
        for k in 0..2 {
            store.write(&traces_on(1 + day * 2 + k, i64::try_from(day).unwrap())).await.unwrap();
        }
    }
    assert_eq!(files(dir.path()), 10);
    // 2030-01-02 and 2030-01-03: 2 days x 2 batches x 10 spans = 40 rows, 4 files.
    let two_days = "SELECT count(*) FROM otel_traces \
                    WHERE Timestamp >= TIMESTAMP '2030-01-02' AND Timestamp < TIMESTAMP '2030-01-04'";
    assert_eq!(store.query(two_days).await.unwrap().rows, vec![vec![json!(40)]]);
    let plan = analyzed(&store, two_days).await;
    assert_eq!(files_read(&plan), 4, "{plan}");
    // All days: 100 rows from all 10 files.
    assert_eq!(store.query("SELECT count(*) FROM otel_traces").await.unwrap().rows, vec![vec![json!(100)]]);
    let plan = analyzed(&store, "SELECT count(*) FROM otel_traces").await;
    assert_eq!(files_read(&plan), 10, "{plan}");
    // The same filter over one glob of every day (views.sql's form) opens
    // all 10 files: what the per-day view saves. Bounding the hive `date`
    // as views.sql's header says brings it back to 4.
    let glob = dir.path().canonicalize().unwrap().join("tables/otel_traces/*/*.parquet");
    let from_glob = format!(
        "SELECT count(*) FROM read_parquet('{}', hive_partitioning = true) \
         WHERE Timestamp >= TIMESTAMP '2030-01-02' AND Timestamp < TIMESTAMP '2030-01-04'",
        glob.display()
    );
    let plan = analyzed(&store, &from_glob).await;
    assert_eq!(files_read(&plan), 10, "{plan}");
    let dated = format!("{from_glob} AND date BETWEEN DATE '2030-01-02' AND DATE '2030-01-03'");
    assert_eq!(store.query_with(&dated, &[]).await.unwrap().rows, vec![vec![json!(40)]]);
    assert_eq!(files_read(&analyzed(&store, &dated).await), 4);
}

/// Queries on both of the store's read connections while batches land and
/// compactions swap generations: none fails, none sees a row twice, none
/// misses a row whose write had returned before it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_during_compaction_swaps_never_fail_double_or_miss() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(DuckDbStore::open_with(dir.path(), eager()).unwrap());
    // Spans whose write has returned / has started.
    let (acked, started, done) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    const BATCHES: u64 = 60;
    let writer = {
        let (store, acked, started) = (Arc::clone(&store), Arc::clone(&acked), Arc::clone(&started));
        tokio::spawn(async move {
            for id in 1..=BATCHES {
                started.fetch_add(10, Ordering::SeqCst);
                store.write(&traces(id)).await.unwrap();
                acked.fetch_add(10, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let compactor = {
        let (store, done) = (Arc::clone(&store), Arc::clone(&done));
        tokio::spawn(async move {
            let now = i64::try_from(data::T0).unwrap() + 86_400_000_000_000;
            let mut merged = 0;
            while !done.load(Ordering::SeqCst) {
                merged += store.maintain_now(now).await.unwrap().1;
            }
            merged
        })
    };
    // views.sql's form: the `tables/` glob, through the symlinks a swap
    // replaces. A listed file can vanish under it; the store reads again.
    let glob = dir.path().canonicalize().unwrap().join("tables/otel_traces/*/*.parquet");
    let from_glob = format!("SELECT count(*), count(DISTINCT SpanId) FROM read_parquet('{}')", glob.display());
    let reader = |adhoc: bool, sql: String| {
        let (store, acked, started, done) = (Arc::clone(&store), Arc::clone(&acked), Arc::clone(&started), Arc::clone(&done));
        tokio::spawn(async move {
            let sql = sql.as_str();
            let mut runs = 0u64;
            while !done.load(Ordering::SeqCst) {
                let before = acked.load(Ordering::SeqCst);
                let r = if adhoc { store.query(sql).await } else { store.query_with(sql, &[]).await };
                let r = r.unwrap_or_else(|e| panic!("a query during compaction failed: {e}"));
                let (rows, distinct) = (r.rows[0][0].as_u64().unwrap(), r.rows[0][1].as_u64().unwrap());
                assert_eq!(rows, distinct, "a row seen twice");
                assert!(rows >= before, "rows missed: {rows} < {before} acknowledged");
                assert!(rows <= started.load(Ordering::SeqCst), "more rows than written: {rows}");
                runs += 1;
            }
            runs
        })
    };
    // Wait for the first row: a glob matching nothing is an error of its own.
    while acked.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let view = "SELECT count(*), count(DISTINCT SpanId) FROM otel_traces".to_owned();
    let (adhoc, typed, globbed) = (reader(true, view.clone()), reader(false, view), reader(true, from_glob));
    writer.await.unwrap();
    // A last compaction over what the final writes left.
    tokio::time::sleep(Duration::from_millis(200)).await;
    done.store(true, Ordering::SeqCst);
    let merged = compactor.await.unwrap();
    let (adhoc, typed, globbed) = (adhoc.await.unwrap(), typed.await.unwrap(), globbed.await.unwrap());
    assert!(merged >= 10, "only {merged} compactions ran: the test did not race");
    assert!(adhoc >= 20 && typed >= 20 && globbed >= 20, "too few queries ran: {adhoc}, {typed}, {globbed}");
    assert_eq!(counts(&store).await, json!([BATCHES * 10, BATCHES * 10]));
    eprintln!("{merged} compactions, {adhoc} + {typed} + {globbed} queries");
}
