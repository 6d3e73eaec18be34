//! Results of ad-hoc read-only queries (`costplane sql`, `/api/v1/sql`).

use serde::{Deserialize, Serialize};

/// A query's result: column names and types, and rows of JSON values
/// (numbers stay numbers, everything else is rendered text).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub types: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
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

/// First keywords of statements that only read. Anything else (INSERT,
/// UPDATE, CREATE, ATTACH, COPY, SET, INSTALL, PRAGMA, ...) is refused.
const READ_ONLY_KEYWORDS: [&str; 8] = ["select", "with", "from", "describe", "show", "explain", "summarize", "values"];

/// Accepts exactly one statement that starts with a read-only keyword.
/// Comments and string literals are skipped when looking for a second
/// statement, so `SELECT ';'` is one statement.
pub fn is_read_only_statement(sql: &str) -> Result<(), String> {
    let body = strip_comments_and_literals(sql);
    let trimmed = body.trim().trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    if trimmed.is_empty() {
        return Err("the query is empty".to_owned());
    }
    if trimmed.contains(';') {
        return Err("send one statement at a time (found ';' between statements)".to_owned());
    }
    let first = trimmed.split(|c: char| c.is_whitespace() || c == '(').find(|w| !w.is_empty()).unwrap_or("").to_ascii_lowercase();
    if !READ_ONLY_KEYWORDS.contains(&first.as_str()) {
        return Err(format!(
            "only read-only statements are allowed ({}); '{first}' is not one",
            READ_ONLY_KEYWORDS.join(", ").to_uppercase()
        ));
    }
    Ok(())
}

fn strip_comments_and_literals(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                // Skip the literal or quoted identifier; doubled quotes escape.
                loop {
                    match chars.next() {
                        None => break,
                        Some(q) if q == c => {
                            if chars.peek() == Some(&c) {
                                chars.next();
                            } else {
                                break;
                            }
                        }
                        Some(_) => {}
                    }
                }
                out.push(' ');
            }
            '-' if chars.peek() == Some(&'-') => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
                out.push(' ');
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
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

    #[test]
    fn accepts_reads() {
        for q in [
            "SELECT 1",
            "  with x as (select 1) select * from x;",
            "DESCRIBE otel_traces",
            "select ';' as s",
            "-- c\nSELECT 2",
            "FROM otel_logs",
        ] {
            assert_eq!(is_read_only_statement(q), Ok(()), "{q}");
        }
    }

    #[test]
    fn refuses_writes_and_multiple_statements() {
        assert!(is_read_only_statement("DELETE FROM otel_traces").unwrap_err().contains("'delete' is not one"));
        assert!(is_read_only_statement("SELECT 1; DROP TABLE otel_traces").unwrap_err().contains("one statement"));
        assert!(is_read_only_statement("ATTACH 'x.db'").is_err());
        assert!(is_read_only_statement("COPY otel_traces TO 'x.csv'").is_err());
        assert!(is_read_only_statement("  ").unwrap_err().contains("empty"));
        assert!(is_read_only_statement("/* x */ INSERT INTO t VALUES (1)").is_err());
    }
}
