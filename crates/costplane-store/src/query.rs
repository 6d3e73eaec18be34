//! Results of ad-hoc read-only queries (`costplane sql`, `/api/v1/sql`),
//! and the bounds every such query runs within.
//!
//! Whether a statement only reads is decided by each engine, never by
//! looking at its words: DuckDB by the prepared statement's type inside a
//! read-only transaction (`duckdb/adhoc.rs`), ClickHouse by `readonly=1`
//! (which also refuses table functions such as `url()`, `s3()`, `remote()`
//! and `file()`) with its own execution, row and memory limits.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Bounds of one ad-hoc query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryLimits {
    /// Rows returned at most; the rest is cut and the result says so.
    pub max_rows: usize,
    /// The query is stopped after this long.
    pub timeout: Duration,
    /// Memory the query may use in the engine (ClickHouse's `max_memory_usage`).
    pub max_memory_bytes: u64,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits { max_rows: 10_000, timeout: Duration::from_secs(30), max_memory_bytes: 1 << 30 }
    }
}

/// A query's result: column names and types, and rows of JSON values
/// (numbers stay numbers, everything else is rendered text).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub types: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
    /// True when rows were cut at the row limit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// A float as JSON, integral values as integers, so both stores print `5`
/// for 5.0 and answers compare equal whichever store gave them.
pub fn json_number(value: f64) -> serde_json::Value {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        serde_json::Value::from(value as i64)
    } else {
        serde_json::Number::from_f64(value).map_or_else(|| serde_json::Value::String(value.to_string()), serde_json::Value::Number)
    }
}

/// Normalizes a value for a query result: numbers through [`json_number`]
/// (recursively), and nested values (lists, maps, structs) as their compact
/// JSON text, so table, CSV and JSON output show them alike on every store.
pub fn result_cell(value: serde_json::Value) -> serde_json::Value {
    match value {
        nested @ (serde_json::Value::Array(_) | serde_json::Value::Object(_)) => {
            serde_json::Value::String(normalize_numbers(nested).to_string())
        }
        other => normalize_numbers(other),
    }
}

fn normalize_numbers(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        J::Number(n) if n.is_f64() => n.as_f64().map_or(J::Number(n), json_number),
        J::Array(items) => J::Array(items.into_iter().map(normalize_numbers).collect()),
        J::Object(map) => J::Object(map.into_iter().map(|(k, v)| (k, normalize_numbers(v))).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_nested_values_normalize() {
        assert_eq!(result_cell(serde_json::json!(5.0)), serde_json::json!(5));
        assert_eq!(result_cell(serde_json::json!(0.25)), serde_json::json!(0.25));
        assert_eq!(result_cell(serde_json::json!([0.0, 5.0, 7.5])), serde_json::json!("[0,5,7.5]"));
        assert_eq!(result_cell(serde_json::json!({"k": "v"})), serde_json::json!(r#"{"k":"v"}"#));
    }
}
