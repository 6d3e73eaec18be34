//! The ClickHouse side of the startup schema check (see `crate::verify`):
//! expected columns are the ones each insert sends (`tables.rs`), typed as
//! the table's DDL declares them; found columns come from `system.columns`.

use std::collections::HashMap;

use super::schema::{ident, SchemaOptions};
use super::tables;
use crate::verify::{matching_paren, split_top_level, Fixes, TableColumns};

/// (name, type) of every column a `CREATE TABLE` column list declares, as
/// `system.columns` lists them: a `Nested` column as one `Array` per field
/// (`Events.Name Array(LowCardinality(String))`). Codecs, defaults and
/// `INDEX` lines are left out.
pub(crate) fn declared_columns(ddl: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for def in split_top_level(ddl) {
        let Some((name, rest)) = def.split_once(char::is_whitespace) else { continue };
        if name.eq_ignore_ascii_case("INDEX") || name.eq_ignore_ascii_case("PROJECTION") || name.eq_ignore_ascii_case("CONSTRAINT") {
            continue;
        }
        let name = name.trim_matches('`');
        let ty = leading_type(rest);
        match ty.strip_prefix("Nested(").and_then(|t| t.strip_suffix(')')) {
            Some(fields) => {
                for field in split_top_level(fields) {
                    if let Some((f, fty)) = field.split_once(char::is_whitespace) {
                        out.push((format!("{name}.{}", f.trim_matches('`')), format!("Array({})", leading_type(fty))));
                    }
                }
            }
            None => out.push((name.to_owned(), ty)),
        }
    }
    out
}

/// The type at the start of `text`: a name, then its parenthesised
/// arguments if any (`Nested (` loses the space), without what follows
/// (`CODEC(...)`, `ALIAS ...`, `DEFAULT ...`).
fn leading_type(text: &str) -> String {
    let text = text.trim_start();
    let end = text.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(text.len());
    let (name, rest) = text.split_at(end);
    let rest = rest.trim_start();
    if !rest.starts_with('(') {
        return name.to_owned();
    }
    match matching_paren(&rest[1..]) {
        Some(close) => format!("{name}{}", &rest[..close + 2]),
        None => format!("{name}{rest}"),
    }
}

/// A type as written into RowBinary: spelling, spacing, `LowCardinality`
/// and a `DateTime64`'s timezone do not change how values are sent.
pub(crate) fn normalise(ty: &str) -> String {
    let mut s: String = ty.chars().filter(|c| !c.is_whitespace()).collect();
    s = strip_wrapper(&s, "LowCardinality(", &|inner| inner.to_owned());
    s = strip_wrapper(&s, "DateTime64(", &|inner| format!("DateTime64({})", inner.split(',').next().unwrap_or(inner)));
    // `Boolean` (the DDL's spelling) is an alias of `Bool` (system.columns').
    s.replace("Boolean", "Bool")
}

/// Replaces every `prefix...)` in `s` by `f(...)`, inner ones first.
fn strip_wrapper(s: &str, prefix: &str, f: &dyn Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find(prefix) {
        // `prefix` must start a name, not end one (`XLowCardinality(`).
        let boundary = rest[..start].chars().next_back().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let open = start + prefix.len();
        let Some(close) = matching_paren(&rest[open..]) else { break };
        out.push_str(&rest[..start]);
        if boundary {
            out.push_str(&f(&strip_wrapper(&rest[open..open + close], prefix, f)));
        } else {
            out.push_str(&rest[start..=open + close]);
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// What costplane inserts into each table, with the DDL's types.
pub(crate) fn expected() -> Vec<TableColumns> {
    tables::written()
        .iter()
        .map(|t| {
            let declared: HashMap<String, String> = declared_columns(&t.ddl).into_iter().collect();
            let columns = t
                .column_names()
                .map(|c| {
                    let ty = declared.get(c).cloned().unwrap_or_else(|| panic!("{}.{c} is inserted but not in the DDL", t.table));
                    (c.to_owned(), ty)
                })
                .collect();
            TableColumns { table: t.table, columns }
        })
        .collect()
}

/// Fixes as ClickHouse statements; in cluster mode on the `_local` tables
/// and then on the Distributed ones.
pub(crate) struct ClickHouseFixes<'a>(pub &'a SchemaOptions);

impl ClickHouseFixes<'_> {
    fn alter(&self, table: &str, action: &str) -> String {
        let o = self.0;
        match &o.cluster {
            None => format!("ALTER TABLE {} {action}", o.qualified(table)),
            Some(c) => format!(
                "ALTER TABLE {} ON CLUSTER {} {action}; ALTER TABLE {} ON CLUSTER {} {action}",
                o.qualified(&format!("{table}_local")),
                ident(c),
                o.qualified(table),
                ident(c)
            ),
        }
    }
}

impl Fixes for ClickHouseFixes<'_> {
    fn create_table(&self, table: &str) -> String {
        format!("create {} with its statement from `costplane schema print`", self.0.qualified(table))
    }

    fn add_column(&self, table: &str, column: &str, ty: &str) -> String {
        self.alter(table, &format!("ADD COLUMN {} {ty}", ident(column)))
    }

    fn modify_column(&self, table: &str, column: &str, ty: &str) -> String {
        self.alter(table, &format!("MODIFY COLUMN {} {ty}", ident(column)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_columns_parse_with_nested_flattened_and_indexes_skipped() {
        let ddl = "    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TimestampTime DateTime ALIAS toDateTime(Timestamp),
    Attrs Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String)
    ) CODEC(ZSTD(1)),
    Cost Nullable(Decimal(38, 12)),
    IsMonotonic Boolean CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1";
        assert_eq!(
            declared_columns(ddl),
            [
                ("Timestamp", "DateTime64(9)"),
                ("TimestampTime", "DateTime"),
                ("Attrs", "Map(LowCardinality(String), String)"),
                ("Events.Timestamp", "Array(DateTime64(9))"),
                ("Events.Name", "Array(LowCardinality(String))"),
                ("Cost", "Nullable(Decimal(38, 12))"),
                ("IsMonotonic", "Boolean"),
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
    }

    #[test]
    fn types_normalise_to_what_rowbinary_sends() {
        // (a, b, whether they normalise alike)
        let cases = [
            ("Boolean", "Bool", true),
            ("LowCardinality(String)", "String", true),
            ("Map(LowCardinality(String), String)", "Map(String,String)", true),
            ("Array(LowCardinality(String))", "Array(String)", true),
            ("DateTime64(9)", "DateTime64(9, 'UTC')", true),
            ("Array(DateTime64(9))", "Array(DateTime64(9,'Europe/Paris'))", true),
            ("Nullable(Decimal(38, 12))", "Nullable(Decimal(38,12))", true),
            ("UInt8", "Int32", false),
            ("DateTime64(9)", "DateTime64(3)", false),
            ("Decimal(38, 12)", "Decimal(38, 9)", false),
            ("Map(LowCardinality(String), String)", "Map(String, Int64)", false),
            ("String", "Nullable(String)", false),
            ("Array(UInt64)", "Array(Int64)", false),
        ];
        for (a, b, same) in cases {
            assert_eq!(normalise(a) == normalise(b), same, "{a} ({}) vs {b} ({})", normalise(a), normalise(b));
        }
    }

    #[test]
    fn every_inserted_column_has_a_declared_type() {
        // `expected` panics on a column the DDL lacks.
        let tables = expected();
        assert_eq!(tables.len(), 12);
        let logs = tables.iter().find(|t| t.table == "otel_logs").unwrap();
        assert!(logs.columns.contains(&("SeverityText".to_owned(), "LowCardinality(String)".to_owned())));
        let traces = tables.iter().find(|t| t.table == "otel_traces").unwrap();
        assert!(traces.columns.contains(&("Links.Attributes".to_owned(), "Array(Map(LowCardinality(String), String))".to_owned())));
    }

    #[test]
    fn fixes_name_the_statement_to_run() {
        let single = SchemaOptions::default();
        assert_eq!(
            ClickHouseFixes(&single).add_column("otel_logs", "SeverityText", "LowCardinality(String)"),
            "ALTER TABLE `otel`.`otel_logs` ADD COLUMN `SeverityText` LowCardinality(String)"
        );
        let cluster = SchemaOptions { cluster: Some("c".into()), ..SchemaOptions::default() };
        assert_eq!(
            ClickHouseFixes(&cluster).modify_column("otel_logs", "Body", "String"),
            "ALTER TABLE `otel`.`otel_logs_local` ON CLUSTER `c` MODIFY COLUMN `Body` String; \
             ALTER TABLE `otel`.`otel_logs` ON CLUSTER `c` MODIFY COLUMN `Body` String"
        );
    }
}
