//! Answers to the catalog questions psql asks for `\d`, `\dt`, `\dv` and
//! `\d name`, which read `pg_catalog` tables (`pg_class`, `pg_attribute`,
//! `pg_am`, ...) the engine does not have in PostgreSQL's shape. They are
//! answered from what the backend says the principal can read
//! ([`SqlBackend::relations`], [`SqlBackend::describe`]), so a tenant's
//! `\d` lists a tenant's views only. Relation oids are positions in that
//! list (from 16384, PostgreSQL's first user oid).
//!
//! Other `pg_catalog` questions psql asks about a relation (indexes,
//! rules, triggers, policies, publications) have no answer here: they get
//! no rows, with the columns they asked for.

use crate::sql::without_comments;
use crate::{Column, PgError, PgType, Principal, Rows, SqlBackend};

const FIRST_OID: usize = 16384;

/// psql's catalog tables: a statement naming one of them is answered here.
const PSQL_TABLES: [&str; 12] = [
    "pg_catalog.pg_class",
    "pg_catalog.pg_attribute",
    "pg_catalog.pg_index",
    "pg_catalog.pg_constraint",
    "pg_catalog.pg_trigger",
    "pg_catalog.pg_policy",
    "pg_catalog.pg_statistic_ext",
    "pg_catalog.pg_publication",
    "pg_catalog.pg_inherits",
    "pg_catalog.pg_rewrite",
    "pg_catalog.pg_am",
    "pg_catalog.pg_partitioned_table",
];

fn text_column(name: &str) -> Column {
    Column { name: name.to_owned(), ty: PgType::Text }
}

/// The select list of `sql`'s outermost SELECT, split at top-level commas.
fn select_items(sql: &str) -> Vec<String> {
    let lower = sql.to_ascii_lowercase();
    let Some(start) = lower.find("select") else { return Vec::new() };
    let (mut depth, mut items, mut current) = (0i32, Vec::new(), String::new());
    let body = &sql[start + 6..];
    let mut i = 0;
    let bytes = body.as_bytes();
    while i < bytes.len() {
        let c = bytes[i] as char;
        if depth == 0 && body[i..].to_ascii_lowercase().starts_with("from") && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
            break;
        }
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut current).trim().to_owned());
                i += 1;
                continue;
            }
            '\'' => {
                // Copy the string whole.
                let end = body[i + 1..].find('\'').map_or(body.len(), |n| i + n + 2);
                current.push_str(&body[i..end]);
                i = end;
                continue;
            }
            _ => {}
        }
        current.push(c);
        i += 1;
    }
    if !current.trim().is_empty() {
        items.push(current.trim().to_owned());
    }
    items
}

/// The name a select item answers under: its alias, or its last word.
fn item_name(item: &str) -> String {
    let lower = item.to_ascii_lowercase();
    if let Some(at) = lower.rfind(" as ") {
        return item[at + 4..].trim().trim_matches('"').to_owned();
    }
    let last = item.rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).find(|w| !w.is_empty()).unwrap_or("?column?");
    last.to_owned()
}

/// The relation oid a psql follow-up query asks about (`... = '16385'`).
fn asked_oid(sql: &str) -> Option<usize> {
    for marker in ["c.oid = '", "attrelid = '", "= '"] {
        if let Some(at) = sql.find(marker) {
            let digits: String = sql[at + marker.len()..].chars().take_while(char::is_ascii_digit).collect();
            if let Ok(n) = digits.parse() {
                return Some(n);
            }
        }
    }
    None
}

/// psql's name pattern `'^(name)$'`: the name, with `.*` as a wildcard.
fn pattern_matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split(".*").collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else { return false };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else { return false };
            rest = &rest[at + part.len()..];
        }
    }
    true
}

/// Whether `sql` is a psql catalog question this module answers.
pub(crate) fn is_catalog_query(sql: &str) -> bool {
    let lower = without_comments(sql).to_ascii_lowercase();
    // Grafana asks for TimescaleDB: no extensions here.
    PSQL_TABLES.iter().any(|t| lower.contains(t)) || lower.contains("from pg_extension") || lower.contains("pg_catalog.pg_extension")
}

/// Answers a psql catalog question (see [`is_catalog_query`]).
pub(crate) async fn answer(backend: &dyn SqlBackend, principal: &Principal, sql: &str) -> Result<Rows, PgError> {
    let sql = without_comments(sql);
    let lower = sql.to_ascii_lowercase();
    let relations = backend.relations(principal).await?;
    let items = select_items(&sql);
    let kind = |is_view: bool| if is_view { "v" } else { "r" };

    // \d, \dt, \dv: the list of relations.
    if lower.contains("pg_get_userbyid(c.relowner)") && lower.contains("c.relkind in (") {
        let list = &lower[lower.find("c.relkind in (").unwrap_or(0)..];
        let list = &list[..list.find(')').unwrap_or(list.len())];
        let (tables, views) = (list.contains("'r'"), list.contains("'v'"));
        let columns = items.iter().map(|i| text_column(&item_name(i))).collect::<Vec<_>>();
        let mut rows = Vec::new();
        for (_, name, is_view) in &relations {
            if (*is_view && !views) || (!*is_view && !tables) {
                continue;
            }
            let values = columns
                .iter()
                .map(|c| match c.name.as_str() {
                    "Schema" => Some("public".to_owned()),
                    "Name" => Some(name.clone()),
                    "Type" => Some(if *is_view { "view" } else { "table" }.to_owned()),
                    "Owner" => Some("costplane".to_owned()),
                    _ => None,
                })
                .collect();
            rows.push(values);
        }
        return Ok(Rows { columns, rows });
    }

    // \d name, first step: which relations the pattern names.
    if let (Some(at), true) = (sql.find("'^("), lower.contains("c.relname")) {
        let pattern = &sql[at + 3..];
        let pattern = &pattern[..pattern.find(")$'").unwrap_or(pattern.len())];
        let columns = items.iter().map(|i| text_column(&item_name(i))).collect::<Vec<_>>();
        let rows = relations
            .iter()
            .enumerate()
            .filter(|(_, (_, name, _))| pattern_matches(pattern, name))
            .map(|(i, (_, name, _))| {
                columns
                    .iter()
                    .map(|c| match c.name.as_str() {
                        "oid" => Some((FIRST_OID + i).to_string()),
                        "nspname" => Some("public".to_owned()),
                        "relname" => Some(name.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        return Ok(Rows { columns, rows });
    }

    let columns: Vec<Column> = items.iter().map(|i| text_column(&item_name(i))).collect();
    let relation = asked_oid(&sql).and_then(|oid| oid.checked_sub(FIRST_OID)).and_then(|i| relations.get(i));
    let Some((_, name, is_view)) = relation else {
        return Ok(Rows { columns, rows: Vec::new() });
    };

    // \d name, second step: the relation's flags.
    if lower.contains("c.relchecks") {
        let row = columns
            .iter()
            .map(|c| match c.name.as_str() {
                "relchecks" | "reltablespace" => Some("0".to_owned()),
                "relkind" => Some(kind(*is_view).to_owned()),
                "relpersistence" => Some("p".to_owned()),
                "relreplident" => Some("d".to_owned()),
                "amname" => None,
                n if n.starts_with("relhas") || n.starts_with("relis") || n.contains("rowsecurity") => Some("f".to_owned()),
                _ => Some(String::new()),
            })
            .collect();
        return Ok(Rows { columns, rows: vec![row] });
    }

    // \d name, third step: the columns.
    if lower.contains("a.attname") && lower.contains("pg_catalog.pg_attribute") {
        let ident = format!("\"{}\"", name.replace('"', "\"\""));
        let described = backend.describe(principal, &format!("SELECT * FROM {ident}")).await?;
        let rows = described
            .iter()
            .map(|col| {
                items
                    .iter()
                    .map(|item| {
                        let item = item.to_ascii_lowercase();
                        if item == "a.attname" {
                            Some(col.name.clone())
                        } else if item.contains("format_type") {
                            Some(col.ty.sql_name().to_owned())
                        } else if item == "a.attnotnull" {
                            Some("f".to_owned())
                        } else if item.contains("attidentity") || item.contains("attgenerated") {
                            Some(String::new())
                        } else {
                            None
                        }
                    })
                    .collect()
            })
            .collect();
        return Ok(Rows { columns, rows });
    }
    Ok(Rows { columns, rows: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_lists_and_names() {
        let sql =
            "SELECT c.oid,\n  n.nspname,\n  c.relname, CASE WHEN a = 'x, y' THEN 1 END AS \"Type\", f(a, b) FROM pg_catalog.pg_class c";
        let items = select_items(sql);
        assert_eq!(items.len(), 5);
        assert_eq!(items.iter().map(|i| item_name(i)).collect::<Vec<_>>(), ["oid", "nspname", "relname", "Type", "b"]);
        assert_eq!(asked_oid("WHERE c.oid = '16385';"), Some(16385));
        assert!(pattern_matches("service_costs", "service_costs"));
        assert!(!pattern_matches("service_costs", "pod_costs"));
        assert!(pattern_matches("otel_.*", "otel_traces"));
        assert!(is_catalog_query("SELECT 1 FROM pg_catalog.pg_class c"));
        assert!(!is_catalog_query("SELECT 1 FROM service_costs -- pg_catalog.pg_class"));
        assert!(is_catalog_query("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"));
    }
}
