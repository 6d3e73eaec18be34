//! Small keyed state tables: budgets created through the API, which budget
//! thresholds have notified in which period, anomalies and their status,
//! and how far detection has got.
//!
//! Each table holds JSON documents by key, the same four columns on every
//! backend (`Key`, `Body`, `UpdatedNs`, `Deleted`). The latest write of a
//! key wins (DuckDB replaces the row under its primary key; ClickHouse keeps
//! versions in a `ReplacingMergeTree(UpdatedNs)` and reads the newest with
//! `argMax`), and a deletion is a write with `Deleted` set, so both backends
//! answer alike whether or not ClickHouse has merged yet. Writers pass an
//! increasing `updated_ns` (the wall clock) for a key.
//!
//! These tables are small (tens to thousands of rows) and read whole.

/// One of the state tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordTable {
    /// Budgets created through the API (configured ones live in the config).
    Budgets,
    /// One row per budget threshold crossing that was notified.
    BudgetNotifications,
    /// Detected anomalies with their status.
    Anomalies,
    /// How far detection got, per grain.
    InsightsProgress,
}

impl RecordTable {
    pub const ALL: [RecordTable; 4] =
        [RecordTable::Budgets, RecordTable::BudgetNotifications, RecordTable::Anomalies, RecordTable::InsightsProgress];

    pub fn name(self) -> &'static str {
        match self {
            RecordTable::Budgets => "costplane_budgets",
            RecordTable::BudgetNotifications => "costplane_budget_notifications",
            RecordTable::Anomalies => "costplane_anomalies",
            RecordTable::InsightsProgress => "costplane_insights_progress",
        }
    }
}

/// One document of a state table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    /// JSON text.
    pub body: String,
    pub updated_ns: i64,
    pub deleted: bool,
}

impl Record {
    pub fn new(key: impl Into<String>, body: impl Into<String>, updated_ns: i64) -> Record {
        Record { key: key.into(), body: body.into(), updated_ns, deleted: false }
    }

    /// A current record from a (Key, Body, UpdatedNs) result row.
    pub(crate) fn from_row(row: &[serde_json::Value]) -> Record {
        let text = |v: &serde_json::Value| v.as_str().map(str::to_owned).unwrap_or_default();
        Record { key: text(&row[0]), body: text(&row[1]), updated_ns: row[2].as_i64().unwrap_or(0), deleted: false }
    }

    /// A deletion of `key`.
    pub fn tombstone(key: impl Into<String>, updated_ns: i64) -> Record {
        Record { key: key.into(), body: String::new(), updated_ns, deleted: true }
    }
}
