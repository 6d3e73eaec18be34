//! costplane-testkit: test support shared by the crates' integration tests.
//!
//! [`ChdbFront`] runs ClickHouse's own engine (chDB, from PyPI's
//! `chdb-core`) behind `tests/support/chdb_front.py`, a small server that
//! speaks the part of ClickHouse's HTTP interface costplane uses. When
//! `COSTPLANE_TEST_CLICKHOUSE_URL` is set, [`ClickHouseTarget`] uses that
//! real server instead, with a fresh database per test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use costplane_store::clickhouse::{ClickHouseConfig, SchemaOptions};

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python of the tests: `COSTPLANE_TEST_PYTHON`, else the test
/// virtualenv (`./scripts/test.sh` makes it).
pub fn python() -> PathBuf {
    std::env::var("COSTPLANE_TEST_PYTHON").map(PathBuf::from).unwrap_or_else(|_| repo_root().join(".venv/bin/python"))
}

/// Runs `tests/support/focus_check.py` (FOCUS 1.2 conformance) on `csv`,
/// with `extra` arguments: whether it passed, and its problems, one a line.
pub fn focus_check(csv: &str, extra: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("focus.csv");
    std::fs::write(&file, csv).expect("write the file to check");
    let out = Command::new(python())
        .arg(repo_root().join("tests/support/focus_check.py"))
        .arg(&file)
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; run ./scripts/test.sh, which makes the test virtualenv", python().display()));
    assert!(out.status.code().is_some_and(|c| c <= 1), "the checker crashed: {}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The test front over chDB, as a child process.
pub struct ChdbFront {
    child: Child,
    pub port: u16,
}

impl ChdbFront {
    /// Starts the front on `port` (0: any) over `data_dir`.
    pub fn start(data_dir: &Path, port: u16) -> ChdbFront {
        let python = python();
        let script = repo_root().join("tests/support/chdb_front.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .args(["--port", &port.to_string(), "--data-dir"])
            .arg(data_dir)
            .stdout(Stdio::piped())
            // Kept in a file so a front that dies before listening can say why.
            .stderr(std::fs::File::create(data_dir.join("chdb-front.stderr")).map(Stdio::from).unwrap_or_else(|_| Stdio::null()))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {} {}: {e}; run ./scripts/test.sh, which installs chdb-core", python.display(), script.display())
            });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| {
            let stderr = std::fs::read_to_string(data_dir.join("chdb-front.stderr")).unwrap_or_default();
            panic!("the chDB front did not start (said {line:?}; stderr: {stderr})")
        });
        ChdbFront { child, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the front at once, as a crash or outage would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChdbFront {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether the tests run against a real server rather than the chDB front.
pub fn external_clickhouse() -> Option<String> {
    std::env::var("COSTPLANE_TEST_CLICKHOUSE_URL").ok().filter(|u| !u.is_empty())
}

/// A ClickHouse to test against: the server at `COSTPLANE_TEST_CLICKHOUSE_URL`
/// (with a fresh database per test), or a chDB front of the test's own.
pub struct ClickHouseTarget {
    pub url: String,
    pub database: String,
    pub _front: Option<ChdbFront>,
    _dir: Option<tempfile::TempDir>,
}

impl Default for ClickHouseTarget {
    fn default() -> Self {
        Self::new()
    }
}

impl ClickHouseTarget {
    pub fn new() -> ClickHouseTarget {
        let database = format!("costplane_test_{:016x}", rand::random::<u64>());
        match external_clickhouse() {
            Some(url) => ClickHouseTarget { url, database, _front: None, _dir: None },
            None => {
                let dir = tempfile::tempdir().unwrap();
                let front = ChdbFront::start(dir.path(), 0);
                ClickHouseTarget { url: front.url(), database, _front: Some(front), _dir: Some(dir) }
            }
        }
    }

    /// A fresh database on a ClickHouse the caller runs.
    pub fn new_with_url(url: String) -> ClickHouseTarget {
        let database = format!("costplane_test_{:016x}", rand::random::<u64>());
        ClickHouseTarget { url, database, _front: None, _dir: None }
    }

    pub fn config(&self) -> ClickHouseConfig {
        ClickHouseConfig {
            url: self.url.clone(),
            schema: SchemaOptions { database: self.database.clone(), ..SchemaOptions::default() },
            ..ClickHouseConfig::default()
        }
    }
}
