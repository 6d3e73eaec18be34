//! `costplane anomalies`, `costplane forecast`, `costplane budgets status`:
//! ask the running server (which holds the store and the evaluation state)
//! and print tables.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::Value;

#[derive(Subcommand)]
pub enum Command {
    /// Cost anomalies: open ones by default; --backfill evaluates history again.
    Anomalies(AnomaliesArgs),
    /// Daily spend forecast with 80%/95% bands and the month-end projection.
    Forecast(ForecastArgs),
    /// Budgets.
    #[command(subcommand)]
    Budgets(BudgetsCommand),
}

#[derive(Args)]
pub struct Server {
    /// The running server's HTTP API.
    #[arg(long, env = "COSTPLANE_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// An API key, when keys are configured (admin for --backfill).
    #[arg(long, env = "COSTPLANE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

#[derive(Args)]
pub struct AnomaliesArgs {
    /// Only anomalies still going on or ending after this date (YYYY-MM-DD).
    #[arg(long)]
    since: Option<String>,
    /// open, resolved, dismissed or all.
    #[arg(long, default_value = "open")]
    status: String,
    /// Evaluate every closed hour and day since --since again first.
    #[arg(long, requires = "since")]
    backfill: bool,
    /// Let --backfill reach further back than `ledger.lookback_days` (at
    /// most 400 days).
    #[arg(long, requires = "backfill")]
    beyond_lookback: bool,
    #[command(flatten)]
    server: Server,
}

#[derive(Args)]
pub struct ForecastArgs {
    /// Dimensions to forecast separately, e.g. tenant,model.
    #[arg(long)]
    group_by: Option<String>,
    /// Days ahead to print (1-90).
    #[arg(long, default_value_t = 7)]
    days: usize,
    #[command(flatten)]
    server: Server,
}

#[derive(Subcommand)]
pub enum BudgetsCommand {
    /// Each budget's spend, projection and crossed thresholds this period.
    Status(StatusArgs),
}

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    server: Server,
}

async fn call(server: &Server, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let url = format!("{}{path}", server.server.trim_end_matches('/'));
    let mut req = reqwest::Client::new().request(method, &url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    if let Some(k) = &server.api_key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.with_context(|| format!("cannot reach {url}; is `costplane serve` running?"))?;
    let status = resp.status();
    let body: Value = resp.json().await.context("reading the server's answer")?;
    if !status.is_success() {
        bail!("{path} failed ({status}): {}", body["error"].as_str().unwrap_or("unknown error"));
    }
    Ok(body)
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Prints rows under a header, columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = w[i])).collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

pub async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Anomalies(a) => anomalies(a).await,
        Command::Forecast(f) => forecast(f).await,
        Command::Budgets(BudgetsCommand::Status(s)) => budgets(s).await,
    }
}

async fn anomalies(a: AnomaliesArgs) -> anyhow::Result<()> {
    if a.backfill {
        let since = a.since.clone().unwrap_or_default();
        let r = call(
            &a.server,
            reqwest::Method::POST,
            "/api/v1/anomalies/backfill",
            Some(serde_json::json!({ "since": since, "beyond_lookback": a.beyond_lookback })),
        )
        .await?;
        println!(
            "evaluated {} to {}: {} hourly and {} daily anomalies found",
            s(&r["since"]),
            s(&r["until"]),
            r["anomalies"]["hour"],
            r["anomalies"]["day"]
        );
    }
    let mut path = format!("/api/v1/anomalies?status={}", a.status);
    if let Some(since) = &a.since {
        path.push_str(&format!("&since={since}"));
    }
    let r = call(&a.server, reqwest::Method::GET, &path, None).await?;
    let rows: Vec<Vec<String>> = r["anomalies"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|x| {
            let g = &x["group"];
            let top = x["contributors"]
                .as_array()
                .and_then(|c| c.first())
                .map(|c| format!("{}={} {}", s(&c["dimension"]), s(&c["value"]), s(&c["change"])))
                .unwrap_or_else(|| "-".into());
            vec![
                s(&x["id"]),
                s(&x["status"]),
                s(&x["grain"]),
                s(&x["window_start"]),
                s(&x["window_end"]),
                format!("{}/{}/{}/{}/{}", s(&g["source"]), s(&g["tenant"]), s(&g["project"]), s(&g["service"]), s(&g["model"])),
                s(&x["direction"]),
                s(&x["actual"]),
                s(&x["expected"]),
                s(&x["impact"]),
                x["score"].as_f64().map_or("-".into(), |z| format!("{z:.1}")),
                top,
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "STATUS",
            "GRAIN",
            "FROM",
            "TO",
            "SOURCE/TENANT/PROJECT/SERVICE/MODEL",
            "DIR",
            "ACTUAL",
            "EXPECTED",
            "IMPACT",
            "Z",
            "TOP CONTRIBUTOR",
        ],
        &rows,
    );
    Ok(())
}

async fn forecast(f: ForecastArgs) -> anyhow::Result<()> {
    let mut path = format!("/api/v1/forecast?days={}", f.days);
    if let Some(g) = &f.group_by {
        path.push_str(&format!("&group_by={g}"));
    }
    let r = call(&f.server, reqwest::Method::GET, &path, None).await?;
    let mut rows = Vec::new();
    for g in r["groups"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let name = g["group"]
            .as_object()
            .map(|m| m.values().map(s).collect::<Vec<_>>().join("/"))
            .filter(|n| !n.is_empty())
            .unwrap_or("all".into());
        if let Some(e) = g.get("error") {
            rows.push(vec![name, "-".into(), s(&g["month_to_date"]), "-".into(), "-".into(), "-".into(), s(e)]);
            continue;
        }
        let m = &g["month_end"];
        let next: Vec<String> = g["days"].as_array().map(Vec::as_slice).unwrap_or_default().iter().map(|d| s(&d["mean"])).collect();
        rows.push(vec![
            name,
            s(&g["method"]),
            s(&m["month_to_date"]),
            s(&m["mean"]),
            format!("{}..{}", s(&m["lo80"]), s(&m["hi80"])),
            format!("{}..{}", s(&m["lo95"]), s(&m["hi95"])),
            format!("MAPE {}% · next days {}", s(&g["backtest_mape_pct"]), next.join(" ")),
        ]);
    }
    table(&["GROUP", "METHOD", "MONTH TO DATE", "MONTH END", "80%", "95%", "NOTES"], &rows);
    Ok(())
}

async fn budgets(a: StatusArgs) -> anyhow::Result<()> {
    let r = call(&a.server, reqwest::Method::GET, "/api/v1/budgets/status", None).await?;
    let rows: Vec<Vec<String>> = r["budgets"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|b| {
            let crossed: Vec<String> = b["crossed"].as_array().map(Vec::as_slice).unwrap_or_default().iter().map(s).collect();
            vec![
                s(&b["id"]),
                s(&b["period"]),
                s(&b["period_start"]),
                s(&b["amount"]),
                s(&b["spent"]),
                s(&b["spent_ratio"]),
                format!("{} ({})", s(&b["projected"]), s(&b["projection_method"])),
                if crossed.is_empty() { "-".into() } else { crossed.join(",") },
            ]
        })
        .collect();
    table(&["BUDGET", "PERIOD", "START", "AMOUNT", "SPENT", "RATIO", "PROJECTED", "CROSSED"], &rows);
    Ok(())
}
