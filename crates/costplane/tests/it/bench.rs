//! `costplane bench`: a small load against all four targets (rotel from
//! PyPI's `rotel`, the chDB front for the ClickHouse ones) must store
//! exactly what each acknowledged and print the table. The full benchmark
//! runs only with `COSTPLANE_BENCH=1` (it takes minutes and its numbers
//! mean something only on a quiet machine).

use std::process::Command;

use costplane_testkit::repo_root;

use crate::support::BIN;

fn python() -> String {
    std::env::var("COSTPLANE_TEST_PYTHON").unwrap_or_else(|_| repo_root().join(".venv/bin/python").display().to_string())
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
        .filter(|l| l.starts_with("| ") && !l.starts_with("| target"))
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect())
        .collect()
}

#[test]
fn a_small_load_is_stored_whole_by_every_target_and_tabled() {
    // 10 requests of 512 spans = 5,120 spans per target; 30 s is a bound
    // the load never reaches.
    let out = bench(&["--spans", "5120", "--duration-secs", "30", "--ceiling-spans", "4096", "--settle-secs", "60"]);
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
}
