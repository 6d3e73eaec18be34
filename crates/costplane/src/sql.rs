//! `costplane sql`: one read-only query against the store.
//!
//! DuckDB lets one process write a file. So while `costplane serve` runs,
//! the query goes through the server (`POST /api/v1/sql`); when no server
//! answers (at `--server`, or the `--http-addr` / `[http] addr` that `serve`
//! was given), the file in `--data-dir` is opened read-only (or,
//! with `--store clickhouse`, ClickHouse is queried directly).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use costplane_server::{csv, Overrides, StoreKind};
use costplane_store::clickhouse::ClickHouseStore;
use costplane_store::duckdb::DuckDbStore;
use costplane_store::{QueryResult, Store};

use crate::client::{costplane_json, ServerArgs};

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
    #[command(flatten)]
    server: ServerArgs,
    /// Data directory to open read-only when no server answers (embedded store). Default ./costplane-data.
    #[arg(long, env = "COSTPLANE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Store to query when no server answers: duckdb (the data directory) or clickhouse.
    #[arg(long, env = "COSTPLANE_STORE")]
    store: Option<StoreKind>,
    /// ClickHouse HTTP interface, with --store clickhouse. Default http://127.0.0.1:8123.
    #[arg(long, env = "COSTPLANE_CLICKHOUSE_URL")]
    clickhouse_url: Option<String>,
    #[arg(long, env = "COSTPLANE_CLICKHOUSE_USER")]
    clickhouse_user: Option<String>,
    #[arg(long, env = "COSTPLANE_CLICKHOUSE_PASSWORD", hide_env_values = true)]
    clickhouse_password: Option<String>,
    #[arg(long, env = "COSTPLANE_CLICKHOUSE_PASSWORD_FILE")]
    clickhouse_password_file: Option<PathBuf>,
    #[arg(long, env = "COSTPLANE_CLICKHOUSE_DATABASE")]
    clickhouse_database: Option<String>,
}

pub async fn run(args: SqlArgs) -> anyhow::Result<()> {
    let config = args.server.config(Overrides {
        data_dir: args.data_dir.clone(),
        store: args.store,
        clickhouse_url: args.clickhouse_url.clone(),
        clickhouse_user: args.clickhouse_user.clone(),
        clickhouse_password: args.clickhouse_password.clone().map(Into::into),
        clickhouse_password_file: args.clickhouse_password_file.clone(),
        clickhouse_database: args.clickhouse_database.clone(),
        ..Overrides::default()
    })?;
    let base = args.server.base_url(&config);
    let result = match query_server(&base, &args.query, &args.server).await? {
        Some(result) => result,
        None => match config.store {
            StoreKind::Duckdb => {
                let store = DuckDbStore::open_read_only(&config.data_dir)
                    .with_context(|| format!("no server answered at {base}, and the data directory could not be opened"))?;
                store.query(&args.query).await?
            }
            StoreKind::Clickhouse => {
                let ch = config.clickhouse.store_config().map_err(anyhow::Error::msg)?;
                ClickHouseStore::for_queries(ch)?.query(&args.query).await?
            }
        },
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Table => write_table(&mut out, &result)?,
        Format::Csv => write_csv(&mut out, &result)?,
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &to_objects(&result)).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `Ok(None)` when nothing listens at `base`.
async fn query_server(base: &str, sql: &str, server: &ServerArgs) -> anyhow::Result<Option<QueryResult>> {
    let url = format!("{base}/api/v1/sql");
    let req = server.authorize(reqwest::Client::new().post(&url).json(&serde_json::json!({ "sql": sql })));
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("querying {url}")),
    };
    let (status, body) = costplane_json(resp, base).await?;
    if !status.is_success() {
        let msg = body.get("error").and_then(|m| m.as_str()).unwrap_or("unknown error");
        bail!("the query failed ({status}): {msg}");
    }
    Ok(Some(serde_json::from_value(body).with_context(|| format!("that is not a costplane server at {base} (no query result)"))?))
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
    out.write_all(csv::line(&header).as_bytes())?;
    for row in &r.rows {
        out.write_all(csv::line(&row.iter().map(csv_field).collect::<Vec<_>>()).as_bytes())?;
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
        let r = QueryResult {
            columns: vec!["a".into(), "b".into(), "c".into(), "d".into(), "e".into(), "f".into()],
            types: vec![String::new(); 6],
            rows: vec![vec![json!("plain"), json!("a,b"), json!("say \"hi\""), json!("=HYPERLINK(\"x\")"), json!(-5), json!(null)]],
            truncated: false,
        };
        let mut out = Vec::new();
        write_csv(&mut out, &r).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a,b,c,d,e,f\nplain,\"a,b\",\"say \"\"hi\"\"\",\"'=HYPERLINK(\"\"x\"\")\",-5,NULL\n");
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
