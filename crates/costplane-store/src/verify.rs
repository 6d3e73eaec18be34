//! Startup check that the tables in the database are the ones costplane
//! writes, shared by both backends.
//!
//! `CREATE TABLE IF NOT EXISTS` keeps a table someone else made (an older
//! exporter, a hand-made table), so after migrations each backend compares
//! the columns its writer inserts, with the types its DDL declares, against
//! the columns the database reports. A missing or mistyped column stops
//! startup with the table, the column, both types and the fix, instead of
//! failing every write later. Columns costplane does not write are fine.

use std::collections::HashMap;
use std::fmt::Write as _;

/// What costplane writes into one table: column names with their DDL types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableColumns {
    pub table: &'static str,
    pub columns: Vec<(String, String)>,
}

/// One column as the database reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FoundColumn {
    pub ty: String,
    /// Whether an insert that leaves the column out fails (DuckDB's `NOT
    /// NULL` without a default); ClickHouse fills every column.
    pub required: bool,
}

/// One way the database differs from what costplane writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    MissingTable {
        table: &'static str,
    },
    MissingColumn {
        table: &'static str,
        column: String,
        expected: String,
    },
    WrongType {
        table: &'static str,
        column: String,
        expected: String,
        found: String,
    },
    /// A column costplane does not write that refuses to be left out.
    Required {
        table: &'static str,
        column: String,
        found: String,
    },
}

/// Compares the expected tables with `found` (table → column → column),
/// comparing types after `normalise`.
pub(crate) fn compare(
    expected: &[TableColumns],
    found: &HashMap<String, HashMap<String, FoundColumn>>,
    normalise: impl Fn(&str) -> String,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for t in expected {
        let Some(columns) = found.get(t.table) else {
            problems.push(Problem::MissingTable { table: t.table });
            continue;
        };
        for (name, ty) in &t.columns {
            match columns.get(name) {
                None => problems.push(Problem::MissingColumn { table: t.table, column: name.clone(), expected: ty.clone() }),
                Some(c) if normalise(&c.ty) != normalise(ty) => {
                    problems.push(Problem::WrongType { table: t.table, column: name.clone(), expected: ty.clone(), found: c.ty.clone() })
                }
                Some(_) => {}
            }
        }
        let mut extra: Vec<(&String, &FoundColumn)> =
            columns.iter().filter(|(name, c)| c.required && !t.columns.iter().any(|(n, _)| n == *name)).collect();
        extra.sort_by(|a, b| a.0.cmp(b.0));
        for (name, c) in extra {
            problems.push(Problem::Required { table: t.table, column: name.clone(), found: c.ty.clone() });
        }
    }
    problems
}

/// How a backend spells fixes.
pub(crate) trait Fixes {
    fn create_table(&self, table: &str) -> String;
    fn add_column(&self, table: &str, column: &str, ty: &str) -> String;
    fn modify_column(&self, table: &str, column: &str, ty: &str) -> String;
    /// For a column costplane does not write that cannot be left out.
    fn drop_not_null(&self, table: &str, column: &str) -> String {
        format!("give {table}.{column} a default or make it nullable")
    }
}

/// The `Schema` error text for `problems`: one line per problem with its
/// fix, then `fresh` (how to start over with tables costplane creates).
pub(crate) fn report(what: &str, problems: &[Problem], fixes: &dyn Fixes, fresh: &str) -> String {
    let mut s = format!("{what} does not have the columns costplane writes:");
    for p in problems {
        let _ = match p {
            Problem::MissingTable { table } => write!(s, "\n- table {table} is missing; fix: {}", fixes.create_table(table)),
            Problem::MissingColumn { table, column, expected } => write!(
                s,
                "\n- table {table} has no column {column} (expected type {expected}, found none); fix: {}",
                fixes.add_column(table, column, expected)
            ),
            Problem::WrongType { table, column, expected, found } => write!(
                s,
                "\n- table {table}, column {column}: expected type {expected}, found {found}; fix: {}",
                fixes.modify_column(table, column, expected)
            ),
            Problem::Required { table, column, found } => write!(
                s,
                "\n- table {table}, column {column} ({found}) is NOT NULL without a default, and costplane does not write it; fix: {}",
                fixes.drop_not_null(table, column)
            ),
        };
    }
    let _ = write!(s, "\nor {fresh}.");
    s
}

/// Whether any problem is a missing table (which re-running the DDL fixes).
pub(crate) fn has_missing_table(problems: &[Problem]) -> bool {
    problems.iter().any(|p| matches!(p, Problem::MissingTable { .. }))
}

/// Splits `text` at commas outside parentheses, trimming each part and
/// dropping empty ones.
pub(crate) fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    let mut quoted = None;
    for (i, c) in text.char_indices() {
        match c {
            '"' | '\'' | '`' if quoted == Some(c) => quoted = None,
            '"' | '\'' | '`' if quoted.is_none() => quoted = Some(c),
            _ if quoted.is_some() => {}
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(text[start..].trim());
    parts.retain(|p| !p.is_empty());
    parts
}

/// The index of the `)` closing a parenthesis opened just before `s`.
pub(crate) fn matching_paren(s: &str) -> Option<usize> {
    let mut depth = 1;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sql;
    impl Fixes for Sql {
        fn create_table(&self, table: &str) -> String {
            format!("CREATE {table}")
        }
        fn add_column(&self, table: &str, column: &str, ty: &str) -> String {
            format!("ADD {table}.{column} {ty}")
        }
        fn modify_column(&self, table: &str, column: &str, ty: &str) -> String {
            format!("MODIFY {table}.{column} {ty}")
        }
        fn drop_not_null(&self, table: &str, column: &str) -> String {
            format!("NULL {table}.{column}")
        }
    }

    fn col(ty: &str, required: bool) -> FoundColumn {
        FoundColumn { ty: ty.into(), required }
    }

    #[test]
    fn missing_and_mistyped_columns_are_reported_and_extra_ones_allowed() {
        let expected = vec![
            TableColumns {
                table: "logs",
                columns: vec![("A".into(), "Int32".into()), ("B".into(), "String".into()), ("C".into(), "UInt8".into())],
            },
            TableColumns { table: "gone", columns: vec![("A".into(), "Int32".into())] },
        ];
        let found = HashMap::from([(
            "logs".to_owned(),
            HashMap::from([
                ("A".to_owned(), col("int32", false)),
                ("C".to_owned(), col("Int64", false)),
                ("Extra".to_owned(), col("String", false)),
                ("Strict".to_owned(), col("String", true)),
            ]),
        )]);
        let problems = compare(&expected, &found, |t| t.to_lowercase());
        assert_eq!(
            problems,
            vec![
                Problem::MissingColumn { table: "logs", column: "B".into(), expected: "String".into() },
                Problem::WrongType { table: "logs", column: "C".into(), expected: "UInt8".into(), found: "Int64".into() },
                Problem::Required { table: "logs", column: "Strict".into(), found: "String".into() },
                Problem::MissingTable { table: "gone" },
            ]
        );
        assert!(has_missing_table(&problems));
        let text = report("the store", &problems, &Sql, "start afresh");
        assert!(text.contains("table logs has no column B (expected type String, found none); fix: ADD logs.B String"), "{text}");
        assert!(text.contains("table logs, column C: expected type UInt8, found Int64; fix: MODIFY logs.C UInt8"), "{text}");
        assert!(text.contains("fix: NULL logs.Strict"), "{text}");
        assert!(text.contains("- table gone is missing; fix: CREATE gone"), "{text}");
        assert!(text.ends_with("\nor start afresh."), "{text}");
    }

    #[test]
    fn top_level_commas_split_and_nested_ones_do_not() {
        assert_eq!(
            split_top_level(" a Map(String, String),\n b Decimal(38, 12), \"c,d\" INT ,"),
            vec!["a Map(String, String)", "b Decimal(38, 12)", "\"c,d\" INT"]
        );
    }
}
