//! Backends for the conformance suite, and helpers the backend-specific
//! tests share.

use std::sync::Arc;

use costplane_store::clickhouse::ClickHouseStore;
use costplane_store::duckdb::DuckDbStore;
use costplane_store::Store;
pub use costplane_testkit::{ChdbFront, ClickHouseTarget};

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

pub async fn open_clickhouse() -> Backend {
    let target = ClickHouseTarget::new();
    let store = ClickHouseStore::connect(target.config()).await.expect("connect to ClickHouse and create the schema");
    Backend { store: Arc::new(store), dialect: Dialect::ClickHouse, _guard: Box::new(target) }
}

/// The statements after "fix: " in a schema error, one per problem.
pub fn fixes(message: &str) -> Vec<String> {
    message.lines().filter_map(|l| l.split_once("; fix: ").map(|(_, fix)| fix.to_owned())).collect()
}
