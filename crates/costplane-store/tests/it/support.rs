//! Backends for the tests, and the ClickHouse test front (chDB, ClickHouse's
//! own engine in-process, behind `tests/support/chdb_front.py`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use costplane_store::clickhouse::{ClickHouseConfig, ClickHouseStore, SchemaOptions};
use costplane_store::duckdb::DuckDbStore;
use costplane_store::Store;

/// SQL that differs between the engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    DuckDb,
    ClickHouse,
}

impl Dialect {
    /// Nanoseconds since the epoch of a timestamp column.
    pub fn ns(self, column: &str) -> String {
        match self {
            Dialect::DuckDb => format!("epoch_ns({column})"),
            Dialect::ClickHouse => format!("toUnixTimestamp64Nano({column})"),
        }
    }

    /// The `field` of the first element of a Nested column.
    pub fn first(self, nested: &str, field: &str) -> String {
        match self {
            Dialect::DuckDb => format!("{nested}[1].{field}"),
            Dialect::ClickHouse => format!("{nested}.{field}[1]"),
        }
    }

    /// The number of elements of a Nested column.
    pub fn len(self, nested: &str, any_field: &str) -> String {
        match self {
            Dialect::DuckDb => format!("len({nested})"),
            Dialect::ClickHouse => format!("length({nested}.{any_field})"),
        }
    }
}

pub struct Backend {
    pub store: Arc<dyn Store>,
    pub dialect: Dialect,
    _guard: Box<dyn std::any::Any + Send>,
}

pub async fn open_duckdb() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = DuckDbStore::open(dir.path()).unwrap();
    Backend { store: Arc::new(store), dialect: Dialect::DuckDb, _guard: Box::new(dir) }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The test front over chDB, as a child process.
pub struct ChdbFront {
    child: Child,
    pub port: u16,
}

impl ChdbFront {
    /// Starts the front on `port` (0: any) over `data_dir`.
    pub fn start(data_dir: &Path, port: u16) -> ChdbFront {
        let python = std::env::var("COSTPLANE_TEST_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|_| repo_root().join(".venv/bin/python"));
        let script = repo_root().join("tests/support/chdb_front.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .args(["--port", &port.to_string(), "--data-dir"])
            .arg(data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {} {}: {e}; run ./scripts/test.sh, which installs chdb-core", python.display(), script.display())
            });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the chDB front did not start (said {line:?})"));
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

/// A ClickHouse to test against: the server at `COSTPLANE_TEST_CLICKHOUSE_URL`
/// (with a fresh database per test), or a chDB front of the test's own.
pub struct ClickHouseTarget {
    pub url: String,
    pub database: String,
    pub front: Option<ChdbFront>,
    _dir: Option<tempfile::TempDir>,
}

impl ClickHouseTarget {
    pub fn new() -> ClickHouseTarget {
        let database = format!("costplane_test_{:016x}", rand::random::<u64>());
        match std::env::var("COSTPLANE_TEST_CLICKHOUSE_URL") {
            Ok(url) if !url.is_empty() => ClickHouseTarget { url, database, front: None, _dir: None },
            _ => {
                let dir = tempfile::tempdir().unwrap();
                let front = ChdbFront::start(dir.path(), 0);
                ClickHouseTarget { url: front.url(), database, front: Some(front), _dir: Some(dir) }
            }
        }
    }

    /// A fresh database on a ClickHouse the caller runs.
    pub fn new_with_url(url: String) -> ClickHouseTarget {
        let database = format!("costplane_test_{:016x}", rand::random::<u64>());
        ClickHouseTarget { url, database, front: None, _dir: None }
    }

    pub fn config(&self) -> ClickHouseConfig {
        ClickHouseConfig {
            url: self.url.clone(),
            schema: SchemaOptions { database: self.database.clone(), ..SchemaOptions::default() },
            ..ClickHouseConfig::default()
        }
    }
}

pub async fn open_clickhouse() -> Backend {
    let target = ClickHouseTarget::new();
    let store = ClickHouseStore::connect(target.config()).await.expect("connect to ClickHouse and create the schema");
    Backend { store: Arc::new(store), dialect: Dialect::ClickHouse, _guard: Box::new(target) }
}
