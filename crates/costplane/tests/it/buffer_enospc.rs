//! A full disk under the disk buffer, on the real binary with ClickHouse's
//! engine: the buffer directory is a small tmpfs this test mounts (it needs
//! root; without it the test says loudly that it did not run). ClickHouse
//! is stopped so nothing drains, requests are sent until the filesystem is
//! full, the server is killed with -9, ClickHouse comes back and the server
//! is started again on the same full filesystem. Every acknowledged request
//! must be stored whole, no record twice; the refused ones were answered
//! 503 (retryable), never acknowledged.

use std::path::Path;
use std::process::Command;

use costplane_testkit::external_clickhouse;

use crate::support::{clickhouse_args, config_file, logs_request, wait_until, ServerProcess, StoppableClickHouse};

const RECORDS_PER_REQUEST: u64 = 200;
/// Makes each record about 130 bytes, a request about 26 KB.
fn pad() -> String {
    format!("-{}", "x".repeat(100))
}

/// A tmpfs of `mib` MiB mounted at a new directory, unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(mib: u64) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(Tmpfs(dir))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_buffer_filesystem_refuses_and_loses_nothing_acknowledged() {
    if external_clickhouse().is_some() {
        eprintln!("SKIPPED a_full_buffer_filesystem_refuses_and_loses_nothing_acknowledged: it stops and starts its own ClickHouse");
        return;
    }
    let fs = match Tmpfs::mount(6) {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED a_full_buffer_filesystem_refuses_and_loses_nothing_acknowledged: cannot mount a tmpfs ({why}); run as root");
            return;
        }
    };
    let clickhouse = StoppableClickHouse::start();
    let config = config_file(&format!(
        "[buffer]\ndir = \"{}\"\nmax_mib = 1024\nsegment_mib = 1\nfsync_interval = \"0s\"\n\
             [pipeline]\nmemory_limit_mib = 1\nretry_initial_interval = \"50ms\"\nretry_max_interval = \"200ms\"\n",
        fs.path().display()
    ));
    let flags = clickhouse_args(&clickhouse.target, &["--config", config.path().to_str().unwrap()]);
    let server = ServerProcess::start(&flags);
    // Nothing drains while ClickHouse is down: the buffer fills the disk.
    clickhouse.kill();
    let client = reqwest::blocking::Client::new();
    let url = format!("http://{}/v1/logs", server.otlp_http);
    let (mut acked, mut refused, mut why) = (Vec::new(), 0u32, String::new());
    for r in 0..2_000u64 {
        let resp = client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(logs_request(r, RECORDS_PER_REQUEST, &pad()))
            .send()
            .unwrap();
        match resp.status().as_u16() {
            200 => acked.push(r),
            503 => {
                refused += 1;
                why = resp.text().unwrap_or_default();
                if refused >= 5 {
                    break;
                }
            }
            other => panic!("unexpected status {other}: {}", resp.text().unwrap_or_default()),
        }
    }
    assert!(refused >= 5, "the 6 MiB filesystem never filled: {} requests acknowledged", acked.len());
    assert!(acked.len() > 10, "too few requests acknowledged ({}) to prove anything", acked.len());
    eprintln!("full disk: {} requests acknowledged, then refused with: {why}", acked.len());

    // Killed on the full filesystem; ClickHouse back; started again there.
    let dir = server.kill9();
    clickhouse.restart();
    let server = ServerProcess::start_in(dir, &flags);
    let q = |sql: &str| clickhouse.query(sql);
    let want = acked.len() as u64 * RECORDS_PER_REQUEST;
    wait_until(|| q("SELECT count() FROM otel_logs").parse::<u64>().unwrap_or(0) >= want, "every acknowledged record stored");
    wait_until(|| crate::durability::buffer_records(&server) == 0, "the buffer to drain");
    let total: u64 = q("SELECT count() FROM otel_logs").parse().unwrap();
    let distinct: u64 = q("SELECT uniqExact(Body) FROM otel_logs").parse().unwrap();
    assert_eq!(total, distinct, "a record is stored twice");
    // Each acknowledged request whole (a request the kill cut off may be
    // stored too, but only whole).
    let per_request: std::collections::BTreeMap<String, u64> =
        q("SELECT splitByChar('-', Body)[1] AS r, count() FROM otel_logs GROUP BY r FORMAT TabSeparated")
            .lines()
            .map(|l| {
                let (r, n) = l.split_once('\t').unwrap();
                (r.to_owned(), n.parse().unwrap())
            })
            .collect();
    for r in &acked {
        assert_eq!(per_request.get(&format!("r{r}")).copied(), Some(RECORDS_PER_REQUEST), "acknowledged request r{r}");
    }
    assert!(per_request.values().all(|n| *n == RECORDS_PER_REQUEST), "a request stored partly: {per_request:?}");
    // The server takes requests again once the buffer has room.
    let resp = client
        .post(format!("http://{}/v1/logs", server.otlp_http))
        .header("content-type", "application/x-protobuf")
        .body(logs_request(9_999, RECORDS_PER_REQUEST, &pad()))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{}", server.log_text());
    drop(server);
    drop(clickhouse);
}
