//! `costplane sql`: one read-only query against the store.
//!
//! DuckDB lets one process write a file. So while `costplane serve` runs,
//! the query goes through the server (`POST /api/v1/sql`); when no server
//! answers at `--server`, the file in `--data-dir` is opened read-only (or,
//! with `--store clickhouse`, ClickHouse is queried directly).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use costplane_server::{csv, StoreKind};
use costplane_store::clickhouse::{ClickHouseConfig, ClickHouseStore, SchemaOptions};
use costplane_store::duckdb::DuckDbStore;
use costplane_store::{QueryResult, Store};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Args)]
pub struct SqlArgs {
    /// The query, e.g. "SELECT ServiceName, count() FROM otel_traces GROUP BY 1".
    query: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// The running server's HTTP API.
    #[arg(long, env = "COSTPLANE_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Data directory to open read-only when no server answers (embedded store).
    #[arg(long, env = "COSTPLANE_DATA_DIR", default_value = "./costplane-data")]
    data_dir: PathBuf,
    /// Store to query when no server answers: duckdb (the data directory) or clickhouse.
    #[arg(long, env = "COSTPLANE_STORE", default_value = "duckdb")]
    store: StoreKind,
    /// ClickHouse HTTP interface, with --store clickhouse.
    #[arg(long, env = "COSTPLANE_CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123")]
    clickhouse_url: String,
    #[arg(long, env = "COSTPLANE_CLICKHOUSE_USER", default_value = "default")]
    clickhouse_user: String,
    #[arg(long, env = "COSTPLANE_CLICKHOUSE_PASSWORD", hide_env_values = true)]
    clickhouse_password: Option<String>,
    #[arg(long, env = "COSTPLANE_CLICKHOUSE_DATABASE", default_value = "otel")]
    clickhouse_database: String,
    /// An admin API key, when the server has keys configured.
    #[arg(long, env = "COSTPLANE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

pub async fn run(args: SqlArgs) -> anyhow::Result<()> {
    let result = match query_server(&args.server, &args.query, args.api_key.as_deref()).await? {
        Some(result) => result,
        None => match args.store {
            StoreKind::Duckdb => {
                let store = DuckDbStore::open_read_only(&args.data_dir)
                    .with_context(|| format!("no server answered at {}, and the data directory could not be opened", args.server))?;
                store.query(&args.query).await?
            }
            StoreKind::Clickhouse => {
                let config = ClickHouseConfig {
                    url: args.clickhouse_url.clone(),
                    user: args.clickhouse_user.clone(),
                    password: args.clickhouse_password.clone(),
                    schema: SchemaOptions { database: args.clickhouse_database.clone(), ..SchemaOptions::default() },
                    ..ClickHouseConfig::default()
                };
                ClickHouseStore::for_queries(config)?.query(&args.query).await?
            }
        },
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Table => write_table(&mut out, &result)?,
        Format::Csv => write_csv(&mut out, &result)?,
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &to_objects(&result))?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// `Ok(None)` when nothing listens at `server`.
async fn query_server(server: &str, sql: &str, api_key: Option<&str>) -> anyhow::Result<Option<QueryResult>> {
    let url = format!("{}/api/v1/sql", server.trim_end_matches('/'));
    let mut req = reqwest::Client::new().post(&url).json(&serde_json::json!({ "sql": sql }));
    if let Some(key) = api_key {
        req = req.bearer_auth(key);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("querying {url}")),
    };
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.with_context(|| format!("reading the answer of {url}"))?;
    if !status.is_success() {
        let msg = body.get("error").and_then(|m| m.as_str()).unwrap_or("unknown error");
        bail!("the query failed ({status}): {msg}");
    }
    Ok(Some(serde_json::from_value(body).context("the server's answer is not a query result")?))
}

fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "NULL".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn write_table(out: &mut impl Write, r: &QueryResult) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = r.rows.iter().map(|row| row.iter().map(cell).collect()).collect();
    let mut widths: Vec<usize> = r.columns.iter().map(|c| c.chars().count()).collect();
    for row in &rows {
        for (w, v) in widths.iter_mut().zip(row) {
            *w = (*w).max(v.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: &[String]| -> std::io::Result<()> {
        let parts: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        writeln!(out, "{}", parts.join(" | ").trim_end())
    };
    line(out, &r.columns)?;
    writeln!(out, "{}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("-+-"))?;
    for row in &rows {
        line(out, row)?;
    }
    writeln!(out, "({} row{})", rows.len(), if rows.len() == 1 { "" } else { "s" })
}

/// A CSV field: numbers as they are, text escaped against formula injection.
pub fn csv_field(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => csv::text(s),
        other => csv::number(&cell(other)),
    }
}

fn write_csv(out: &mut impl Write, r: &QueryResult) -> std::io::Result<()> {
    let header: Vec<String> = r.columns.iter().map(|c| csv_field(&serde_json::Value::String(c.clone()))).collect();
    writeln!(out, "{}", header.join(","))?;
    for row in &r.rows {
        writeln!(out, "{}", row.iter().map(csv_field).collect::<Vec<_>>().join(","))?;
    }
    Ok(())
}

fn to_objects(r: &QueryResult) -> Vec<serde_json::Map<String, serde_json::Value>> {
    r.rows.iter().map(|row| r.columns.iter().cloned().zip(row.iter().cloned()).collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field(&json!("plain")), "plain");
        assert_eq!(csv_field(&json!("a,b")), "\"a,b\"");
        assert_eq!(csv_field(&json!("say \"hi\"")), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field(&json!("=HYPERLINK(\"x\")")), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field(&json!(-5)), "-5");
        assert_eq!(csv_field(&json!(null)), "NULL");
    }

    #[test]
    fn tables_align_columns() {
        let r = QueryResult {
            columns: vec!["name".into(), "n".into()],
            types: vec!["Utf8".into(), "Int64".into()],
            rows: vec![vec![json!("checkout"), json!(12)]],
            truncated: false,
        };
        let mut out = Vec::new();
        write_table(&mut out, &r).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "name     | n\n---------+---\ncheckout | 12\n(1 row)\n");
    }
}
