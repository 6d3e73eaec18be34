//! Bills of any size: a provider-shaped AWS FOCUS 1.2 export made by
//! `focus-data-toolkit` (PyPI) imported through `costplane import focus`
//! into `costplane serve`, with the peak resident memory of both processes
//! read from the kernel (`VmHWM`). The file's totals are summed
//! independently by DuckDB's CSV reader.
//!
//! - CI: 100,000 rows (a 94 MB file), both processes under 256 MiB and the
//!   ledger holding every row and cent of the file.
//! - Both run with `[connections] idle_timeout` at 2 s: the server parses
//!   and stores the file after its upload for far longer than that with no
//!   byte moving, and the connection must stay open for the answer.
//! - The benchmark (`COSTPLANE_BENCH=1`): 1,000,000 rows by default
//!   (`COSTPLANE_TEST_IMPORT_ROWS`), on the embedded store and on
//!   ClickHouse, printing rows per second and both peaks.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::focus_import::{csv_totals, ledger_totals};
use crate::support::{ServerProcess, BIN};

/// The bound the CLI and the server keep to, whatever the bill's size.
const MAX_RSS_KIB: u64 = 256 * 1024;

/// An AWS FOCUS 1.2 file of `rows` rows from `focus-data-toolkit`.
fn generate(rows: u64, dir: &Path) -> PathBuf {
    let out = Command::new(costplane_testkit::python())
        .args(["-m", "focus_data_toolkit", "generate", "--provider", "aws", "--focus-version", "1.2", "--seed", "7"])
        .args(["--rows", &rows.to_string(), "--out"])
        .arg(dir)
        .output()
        .expect("run focus-data-toolkit (installed by scripts/test.sh)");
    assert!(out.status.success(), "focus-data-toolkit failed: {}", String::from_utf8_lossy(&out.stderr));
    let file = dir.join("focus_1_2_cost_and_usage_aws.csv");
    assert!(file.exists(), "focus-data-toolkit wrote no {}", file.display());
    file
}

/// `--config` with an idle deadline far shorter than an import's silent
/// parse (the file is written under `dir`).
fn short_idle_config(dir: &Path) -> PathBuf {
    let config = dir.join("costplane.toml");
    std::fs::write(&config, "[connections]\nidle_timeout = \"2s\"\n").unwrap();
    config
}

/// The peak resident set of a running process, in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

/// Waits (at most 20 minutes) for the anomaly pass an import wakes to end:
/// the server logs it (at debug level when it took under a second, which
/// the test servers log too); answers the seconds waited. The server's own
/// CPU does not tell: on ClickHouse the pass's work is ClickHouse's.
fn detection_done(server: &ServerProcess) -> f64 {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1200) {
        if server.log_text().contains("anomalies evaluated again over re-closed hours") {
            return started.elapsed().as_secs_f64();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("the anomaly pass after the import did not end in 20 minutes");
}

/// What one import measured.
struct Measured {
    seconds: f64,
    cli_peak_kib: u64,
    server_peak_kib: u64,
}

/// Runs `costplane import focus FILE` against `server`, sampling the CLI's
/// peak every 20 ms until it exits (the peak only grows).
fn import_measured(server: &ServerProcess, file: &Path) -> Measured {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(["import", "focus", "--server", &format!("http://{}", server.api)])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run costplane import focus");
    let mut cli_peak_kib = 0;
    loop {
        cli_peak_kib = cli_peak_kib.max(peak_kib(child.id()));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
    Measured { seconds, cli_peak_kib, server_peak_kib: peak_kib(server.pid()) }
}

fn imports_whole_in_bounded_memory(server: &ServerProcess, file: &Path, rows: u64) -> Measured {
    let m = import_measured(server, file);
    assert_eq!(server.count("costplane_ledger WHERE x_Source = 'cloud'"), rows, "every row of the file is in the ledger");
    assert_eq!(ledger_totals(server), csv_totals(file), "Σ BilledCost and Σ EffectiveCost per provider, as DuckDB sums the file");
    m
}

#[test]
fn a_provider_shaped_bill_imports_whole_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let file = generate(100_000, dir.path());
    let config = short_idle_config(dir.path());
    let server = ServerProcess::start(&["--config", config.to_str().unwrap()]);
    let m = imports_whole_in_bounded_memory(&server, &file, 100_000);
    eprintln!("100,000 rows in {:.1} s: CLI peak {} MiB, server peak {} MiB", m.seconds, m.cli_peak_kib >> 10, m.server_peak_kib >> 10);
    assert!(m.cli_peak_kib < MAX_RSS_KIB, "the CLI peaked at {} MiB", m.cli_peak_kib >> 10);
    assert!(m.server_peak_kib < MAX_RSS_KIB, "the server peaked at {} MiB", m.server_peak_kib >> 10);
}

/// `COSTPLANE_BENCH=1 cargo test --release -p costplane --test it import_benchmark -- --nocapture`
#[test]
fn import_benchmark() {
    if std::env::var("COSTPLANE_BENCH").as_deref() != Ok("1") {
        eprintln!("import_benchmark: set COSTPLANE_BENCH=1 to run it (it takes minutes)");
        return;
    }
    let rows: u64 = std::env::var("COSTPLANE_TEST_IMPORT_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let made = Instant::now();
    // A file made before by the same command can be given again.
    let file = match std::env::var("COSTPLANE_TEST_IMPORT_FILE") {
        Ok(f) => PathBuf::from(f),
        Err(_) => {
            let file = generate(rows, dir.path());
            eprintln!("generated {rows} rows with focus-data-toolkit in {:.0} s", made.elapsed().as_secs_f64());
            file
        }
    };
    let mib = std::fs::metadata(&file).unwrap().len() >> 20;
    let target = costplane_testkit::ClickHouseTarget::new();
    let mut table = vec![
        "| store | rows | file | seconds | rows/s | CLI peak | server peak | after detection |".to_owned(),
        "|---|---:|---:|---:|---:|---:|---:|---:|".into(),
    ];
    let config = short_idle_config(dir.path());
    let config = ["--config", config.to_str().unwrap()];
    for (store, server) in [
        ("embedded", ServerProcess::start(&config)),
        ("clickhouse", ServerProcess::start(&crate::support::clickhouse_args(&target, &config))),
    ] {
        let m = imports_whole_in_bounded_memory(&server, &file, rows);
        // The import wakes anomaly detection over the imported window: the
        // server's peak once it has gone quiet.
        let settled = detection_done(&server);
        table.push(format!(
            "| {store} | {rows} | {mib} MiB | {:.1} | {:.0} | {} MiB | {} MiB | {} MiB ({settled:.0} s) |",
            m.seconds,
            rows as f64 / m.seconds,
            m.cli_peak_kib >> 10,
            m.server_peak_kib >> 10,
            peak_kib(server.pid()) >> 10
        ));
    }
    eprintln!("{}", table.join("\n"));
}
