//! `costplane unit-costs`: the server's `GET /api/v1/unit-costs` as a table
//! (or its JSON with `--json`): per service and route, customer or
//! operation, the requests, their latency and errors, and what one request
//! costs in LLM calls, compute and telemetry.

use clap::Args;
use serde_json::Value;

#[derive(Args)]
pub struct UnitCostsArgs {
    /// Start, YYYY-MM-DD or RFC 3339 (default: the start of the month).
    #[arg(long)]
    from: Option<String>,
    /// End, exclusive (default: now, rounded up to the hour).
    #[arg(long)]
    to: Option<String>,
    /// Any of tenant, service, route, operation, customer.
    #[arg(long, default_value = "service,route")]
    group_by: String,
    /// Only this tenant (admin keys; a tenant key sees its own tenant).
    #[arg(long)]
    tenant: Option<String>,
    /// Most groups listed (most costly first).
    #[arg(long)]
    limit: Option<u32>,
    /// Print the server's JSON answer.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: crate::client::ServerArgs,
}

pub async fn run(args: UnitCostsArgs) -> anyhow::Result<()> {
    let query = [
        ("group_by", Some(args.group_by.clone())),
        ("from", args.from.clone()),
        ("to", args.to.clone()),
        ("tenant", args.tenant.clone()),
        ("limit", args.limit.map(|n| n.to_string())),
    ];
    let body = args.server.get_json("/api/v1/unit-costs", &query, "unit costs").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        print!("{}", table(&body));
    }
    Ok(())
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "unknown".to_owned(),
        other => other.to_string(),
    }
}

/// The answer as a table: one line per group, most costly first.
fn table(body: &Value) -> String {
    let dims: Vec<String> = body["group_by"].as_array().into_iter().flatten().filter_map(|d| d.as_str().map(str::to_owned)).collect();
    let mut out = format!(
        "{} to {}, {} (compute unknown: no Kubernetes cost for the pods)\n",
        cell(&body["from"]),
        cell(&body["to"]),
        cell(&body["currency"])
    );
    let mut head: Vec<String> = dims.iter().map(|d| d.to_uppercase()).collect();
    head.extend(
        ["REQUESTS", "ERRORS", "P50 S", "P95 S", "LLM", "COMPUTE", "TELEMETRY", "TOTAL", "per request", "per 1000"].map(str::to_owned),
    );
    let rows: Vec<Vec<String>> = body["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            let mut row: Vec<String> = dims.iter().map(|d| cell(&g[d.as_str()])).collect();
            let c = &g["cost"];
            row.extend([
                cell(&g["requests"]),
                cell(&g["errors"]),
                cell(&g["p50_seconds"]),
                cell(&g["p95_seconds"]),
                cell(&c["llm"]),
                cell(&c["compute"]),
                cell(&c["telemetry"]),
                cell(&c["total"]),
                cell(&c["per_request"]),
                cell(&c["per_1000_requests"]),
            ]);
            row
        })
        .collect();
    let widths: Vec<usize> =
        (0..head.len()).map(|i| rows.iter().map(|r| r[i].chars().count()).chain([head[i].chars().count()]).max().unwrap_or(0)).collect();
    let line = |cells: &[String]| {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_owned() + "\n"
    };
    out.push_str(&line(&head));
    for r in &rows {
        out.push_str(&line(r));
    }
    if body["truncated"].as_bool() == Some(true) {
        out.push_str(&format!("... {} groups in all; raise --limit to see more\n", cell(&body["groups_total"])));
    }
    out
}
