//! The DuckDB side of the startup schema check (see `crate::verify`):
//! expected columns are the fields of the Arrow batches the writer appends
//! (by name), typed as `schema.rs` declares them; found columns come from
//! `information_schema.columns`.

use std::collections::HashMap;

use costplane_telemetry::TelemetryBatch;
use duckdb::Connection;

use super::{errors, schema};
use crate::verify::{self as check, matching_paren, split_top_level, Fixes, FoundColumn, Problem, TableColumns};
use crate::StoreError;

/// Every table of the DDL with its columns' (name, type), in order.
pub(crate) fn declared_tables(ddl: &str) -> HashMap<String, Vec<(String, String)>> {
    const CREATE: &str = "CREATE TABLE IF NOT EXISTS ";
    let mut out = HashMap::new();
    let mut rest = ddl;
    while let Some(at) = rest.find(CREATE) {
        rest = &rest[at + CREATE.len()..];
        let Some(open) = rest.find('(') else { break };
        let Some(close) = matching_paren(&rest[open + 1..]) else { break };
        let name = rest[..open].trim().trim_matches('"').to_owned();
        let columns: Vec<(String, String)> =
            split_top_level(&rest[open + 1..open + 1 + close]).into_iter().filter_map(column_definition).collect();
        out.insert(name, columns);
        rest = &rest[open + 1 + close..];
    }
    // Columns later steps add: `ALTER TABLE t ADD COLUMN IF NOT EXISTS "c" TYPE ...;`
    const ALTER: &str = "ALTER TABLE ";
    const ADD: &str = " ADD COLUMN IF NOT EXISTS ";
    for stmt in ddl.split(';').map(str::trim).filter(|s| s.starts_with(ALTER)) {
        if let Some((table, def)) = stmt[ALTER.len()..].split_once(ADD) {
            if let (Some(cols), Some(c)) = (out.get_mut(table.trim().trim_matches('"')), column_definition(def.trim())) {
                cols.push(c);
            }
        }
    }
    out
}

/// `"Name" TYPE [constraints]` → (Name, TYPE).
fn column_definition(def: &str) -> Option<(String, String)> {
    let (name, rest) = match def.strip_prefix('"') {
        Some(quoted) => {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        }
        None => def.split_once(char::is_whitespace)?,
    };
    let upper = rest.to_ascii_uppercase();
    let end =
        [" PRIMARY KEY", " NOT NULL", " DEFAULT ", " UNIQUE", " CHECK"].iter().filter_map(|k| upper.find(k)).min().unwrap_or(rest.len());
    Some((name.to_owned(), rest[..end].trim().to_owned()))
}

/// How DuckDB spells a type in `information_schema` and in DDL alike:
/// upper case, no spaces, no quotes around struct field names.
pub(crate) fn normalise(ty: &str) -> String {
    ty.chars().filter(|c| !c.is_whitespace() && *c != '"').collect::<String>().to_ascii_uppercase()
}

/// What the writer appends to each table, with the DDL's types.
pub(crate) fn expected() -> Result<Vec<TableColumns>, StoreError> {
    let ddl: String = schema::migrations().into_iter().map(|(_, sql)| sql).collect();
    let declared = declared_tables(&ddl);
    let mut out = Vec::new();
    for (table, rb) in super::to_record_batches(&TelemetryBatch::default(), true)? {
        let types: HashMap<&str, &str> =
            declared.get(table).map(|cs| cs.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect()).unwrap_or_default();
        let columns = rb
            .schema()
            .fields()
            .iter()
            .map(|f| {
                let ty = types.get(f.name().as_str()).unwrap_or_else(|| panic!("{table}.{} is appended but not in the DDL", f.name()));
                (f.name().clone(), (*ty).to_owned())
            })
            .collect();
        out.push(TableColumns { table, columns });
    }
    Ok(out)
}

/// How the tables in `conn`'s database differ from what the writer appends.
pub(crate) fn problems(conn: &Connection) -> Result<Vec<Problem>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT table_name, column_name, data_type, is_nullable = 'NO' AND column_default IS NULL \
             FROM information_schema.columns WHERE table_catalog = current_database() AND table_schema = current_schema()",
        )
        .map_err(errors::classify)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, Option<bool>>(3)?)))
        .map_err(errors::classify)?;
    let mut found: HashMap<String, HashMap<String, FoundColumn>> = HashMap::new();
    for row in rows {
        let (table, column, ty, required) = row.map_err(errors::classify)?;
        found.entry(table).or_default().insert(column, FoundColumn { ty, required: required.unwrap_or(false) });
    }
    Ok(check::compare(&expected()?, &found, normalise))
}

/// DuckDB identifiers in double quotes.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Fixes as DuckDB statements.
pub(crate) struct DuckDbFixes;

impl Fixes for DuckDbFixes {
    fn create_table(&self, table: &str) -> String {
        format!("drop whatever holds the name {table}, so costplane can create the table at its next start")
    }

    fn add_column(&self, table: &str, column: &str, ty: &str) -> String {
        format!("ALTER TABLE {} ADD COLUMN {} {ty}", quoted(table), quoted(column))
    }

    fn modify_column(&self, table: &str, column: &str, ty: &str) -> String {
        format!("ALTER TABLE {} ALTER COLUMN {} TYPE {ty}", quoted(table), quoted(column))
    }

    fn drop_not_null(&self, table: &str, column: &str) -> String {
        format!("ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL", quoted(table), quoted(column))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_tables_parse_with_their_types() {
        let ddl: String = schema::migrations().into_iter().map(|(_, sql)| sql).collect();
        let tables = declared_tables(&ddl);
        // 14 telemetry, cost, usage and ledger tables, 4 keyed state tables.
        assert_eq!(tables.len(), 18, "{:?}", tables.keys());
        assert_eq!(tables["costplane_budgets"][2], ("UpdatedNs".to_owned(), "BIGINT".to_owned()));
        assert_eq!(tables["costplane_written_batches"][0], ("BatchId".to_owned(), "UBIGINT".to_owned()));
        let logs = &tables["otel_logs"];
        assert_eq!(logs[4], ("SeverityText".to_owned(), "VARCHAR".to_owned()));
        assert_eq!(logs[9], ("ResourceAttributes".to_owned(), "MAP(VARCHAR, VARCHAR)".to_owned()));
        let traces = &tables["otel_traces"];
        assert!(traces.contains(&(
            "Events".to_owned(),
            r#"STRUCT("Timestamp" TIMESTAMP_NS, "Name" VARCHAR, "Attributes" MAP(VARCHAR, VARCHAR))[]"#.to_owned()
        )));
        assert_eq!(tables["costplane_ledger"][2], ("BilledCost".to_owned(), "DECIMAL(38, 12)".to_owned()));
    }

    #[test]
    fn every_appended_column_has_a_declared_type() {
        // `expected` panics on a field the DDL lacks.
        let tables = expected().unwrap();
        assert_eq!(tables.len(), 12);
        let summary = tables.iter().find(|t| t.table == "otel_metrics_summary").unwrap();
        assert_eq!(summary.columns.len(), 18);
    }

    #[test]
    fn spellings_normalise() {
        assert_eq!(normalise(r#"STRUCT("Quantile" DOUBLE, "Value" DOUBLE)[]"#), normalise("STRUCT(Quantile DOUBLE, \"Value\" DOUBLE)[]"));
        assert_eq!(normalise("DECIMAL(38, 12)"), normalise("DECIMAL(38,12)"));
        assert_ne!(normalise("DECIMAL(38, 12)"), normalise("DECIMAL(18,3)"));
        assert_ne!(normalise("UTINYINT"), normalise("INTEGER"));
    }
}
