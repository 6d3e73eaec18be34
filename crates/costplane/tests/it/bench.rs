//! `costplane bench`: a small load against all four targets (rotel from
//! PyPI's `rotel`, the chDB front for the ClickHouse ones) must store
//! exactly what each acknowledged and print the table. The full benchmark
//! runs only with `COSTPLANE_BENCH=1` (it takes minutes and its numbers
//! mean something only on a quiet machine).

use std::process::Command;

use costplane_testkit::repo_root;

use crate::support::BIN;

fn python() -> String {
    costplane_testkit::python().display().to_string()
}

fn bench(extra: &[&str]) -> String {
    let front = repo_root().join("tests/support/chdb_front.py");
    let out = Command::new(BIN)
        .arg("bench")
        .args(["--python", &python(), "--chdb-front"])
        .arg(&front)
        .args(extra)
        .output()
        .expect("run costplane bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "costplane bench failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The table's rows: target name → its cells.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| target") && !l.starts_with("| store"))
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect())
        .collect()
}

#[test]
fn a_small_load_is_stored_whole_by_every_target_and_tabled() {
    // 10 requests of 512 spans = 5,120 spans per target; 30 s is a bound
    // the load never reaches.
    // The plain load only: the LLM load runs in the full benchmark.
    let out = bench(&["--spans", "5120", "--duration-secs", "30", "--ceiling-spans", "4096", "--settle-secs", "60", "--loads", "plain"]);
    let rows = rows(&out);
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        names[..4],
        ["rotel --exporter blackhole", "rotel --exporter clickhouse", "costplane, embedded store", "costplane, ClickHouse"],
        "{out}"
    );
    for row in &rows[..4] {
        assert_eq!(row[1], "5120", "acknowledged: {out}");
        let stored = if row[0].contains("blackhole") { "-" } else { "5120" };
        assert_eq!(row[2], stored, "stored: {out}");
        let cpu: f64 = row[5].parse().unwrap();
        let rss: f64 = row[6].parse().unwrap();
        assert!(cpu > 0.0 && rss > 1.0, "{out}");
    }
    // The ceilings: 4,096 asked, whole requests of 512 decoded and written.
    assert!(rows[4][0].starts_with("ceiling: OTLP decode only"), "{out}");
    assert_eq!(rows[4][1], "4096");
    assert!(rows[5][0].starts_with("ceiling: Parquet write only"), "{out}");
    assert_eq!(rows[5][2], "4096");
    assert!(out.contains("machine: "), "{out}");
}

#[test]
fn the_full_benchmark_runs_with_costplane_bench_set() {
    if std::env::var("COSTPLANE_BENCH").as_deref() != Ok("1") {
        return;
    }
    let duration = std::env::var("COSTPLANE_TEST_BENCH_SECS").unwrap_or_else(|_| "10".into());
    let out = bench(&["--duration-secs", &duration]);
    println!("{out}");
    for row in &rows(&out)[..4] {
        if row[2] != "-" {
            assert_eq!(row[1], row[2], "every acknowledged span is stored: {out}");
        }
    }
    // The LLM load beside the plain one, on both stores, with the ratios.
    let rows = rows(&out);
    for store in ["costplane, embedded store", "costplane, ClickHouse"] {
        let llm = rows.iter().find(|r| r[0] == store && r[1] == "LLM calls").unwrap_or_else(|| panic!("{store}: {out}"));
        assert_eq!(llm[2], llm[3], "every acknowledged LLM call is stored: {out}");
        assert!(rows.iter().any(|r| r[0] == store && r[1] == "LLM / plain"), "{out}");
    }
}

fn bench_queries(extra: &[&str]) -> String {
    let front = repo_root().join("tests/support/chdb_front.py");
    let out = Command::new(BIN)
        .arg("bench-queries")
        .args(["--python", &python(), "--chdb-front"])
        .arg(&front)
        .args(extra)
        .output()
        .expect("run costplane bench-queries");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "costplane bench-queries failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn the_query_benchmark_answers_alike_on_both_stores_and_counts_rows_scanned() {
    // 16,000 spans: 8 services x 16 span names = 128 groups; trace 0 is
    // spans 0..7 (8 spans); one log record per 10 spans, of which span 0's
    // belongs to trace 0 (1 record).
    let out = bench_queries(&["--spans", "16000", "--stores", "embedded,clickhouse", "--repeat", "1"]);
    let rows = rows(&out);
    assert_eq!(rows.len(), 16, "{out}");
    for store in ["Embedded", "Clickhouse"] {
        let of = |q: &str| rows.iter().find(|r| r[0] == store && r[1].starts_with(q)).unwrap_or_else(|| panic!("{store} {q}: {out}"));
        for (q, result_rows) in
            [("count by service", "8"), ("p95 Duration", "128"), ("spans of one trace id", "8"), ("logs of one trace id", "1")]
        {
            let r = of(q);
            assert_eq!(r[3], result_rows, "{store} {q}: {out}");
            let scanned: u64 = r[4].parse().unwrap_or_else(|_| panic!("{store} {q} rows scanned: {out}"));
            assert!(scanned >= result_rows.parse().unwrap(), "{store} {q}: {out}");
        }
        // Counting by service reads every span (no index answers it).
        assert_eq!(of("count by service")[4], "16000", "{out}");
        assert!(of("cost API month view")[2].parse::<f64>().is_ok(), "{out}");
        // Unit costs: 128 (service, span name) routes, the first 100 listed;
        // 10,000 customers, 10 listed; trace 0 holds one model call (span 0).
        for (q, result_rows) in [("unit costs by service and route", "100"), ("unit costs by customer", "10"), ("cost of one trace", "1")] {
            assert_eq!(of(q)[3], result_rows, "{store} {q}: {out}");
        }
    }
}

#[test]
fn the_full_query_benchmark_runs_with_costplane_bench_set() {
    if std::env::var("COSTPLANE_BENCH").as_deref() != Ok("1") {
        return;
    }
    let spans = std::env::var("COSTPLANE_TEST_BENCH_QUERY_SPANS").unwrap_or_else(|_| "10000000".into());
    let out = bench_queries(&["--spans", &spans, "--stores", "embedded,clickhouse"]);
    println!("{out}");
}

fn bench_ledger(extra: &[&str]) -> String {
    let out = Command::new(BIN).arg("bench-ledger").args(extra).output().expect("run costplane bench-ledger");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "costplane bench-ledger failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn the_ledger_benchmark_runs_with_costplane_bench_set() {
    if std::env::var("COSTPLANE_BENCH").as_deref() != Ok("1") {
        return;
    }
    // Two minutes of data at 2,000 calls/s (240,000 calls per mode), sent at
    // 20x real time: four windows of 30 data seconds. The full hour is
    // `--data-secs 3600`, the default.
    let data_secs = std::env::var("COSTPLANE_TEST_BENCH_LEDGER_SECS").unwrap_or_else(|_| "120".into());
    let out = bench_ledger(&["--data-secs", &data_secs, "--samples", "3"]);
    println!("{out}");
    let windows = rows(&out).into_iter().filter(|r| r[0].parse::<u64>().is_ok()).count();
    assert!(windows >= 2, "{out}");
    let summary: Vec<Vec<String>> = rows(&out).into_iter().filter(|r| r[0] == "incremental" || r[0] == "whole hour").collect();
    assert_eq!(summary.len(), 2, "{out}");
    for r in &summary {
        assert_eq!(r[1], (data_secs.parse::<u64>().unwrap() * 2000).to_string(), "every call acknowledged: {out}");
    }
    assert!(out.contains("both modes booked the same LLM cost"), "{out}");
}
