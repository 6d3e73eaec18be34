//! `costplane import invoice PATH...` and `costplane reconcile`.
//!
//! - `import invoice`: provider cost reports (OpenAI's Costs API JSON or
//!   cost CSV export, Anthropic's cost report JSON or CSV, Anthropic's
//!   messages usage report JSON) into a running server's ledger. Every file
//!   is parsed here first, so a malformed one stops the import before
//!   anything is sent; each file then goes to `POST
//!   /api/v1/import/invoice`, which replaces the days it covers in its
//!   account's scope (re-importing never doubles).
//! - `reconcile`: the server's `GET /api/v1/reconciliation` as a table (or
//!   its JSON with `--json`): estimated against invoiced per provider,
//!   model and day, the drift, and each line's status.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use costplane_invoice::Format;
use serde_json::Value;

#[derive(Args)]
pub struct InvoiceArgs {
    /// Report files (.json, .csv).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The report's shape (default: read from its content): openai-costs-json,
    /// openai-costs-csv, anthropic-cost-json, anthropic-cost-csv, anthropic-usage-json.
    #[arg(long)]
    format: Option<String>,
    /// The provider account (organization) the report is of: re-importing
    /// a report of the same account replaces its days.
    #[arg(long, default_value = "default")]
    account: String,
    /// The tenant every line of the report belongs to (default: none, `unassigned`).
    #[arg(long)]
    tenant: Option<String>,
    #[command(flatten)]
    server: crate::client::ServerArgs,
}

pub async fn import(args: InvoiceArgs) -> anyhow::Result<()> {
    let format = match &args.format {
        None => None,
        Some(f) => {
            Some(Format::parse(f).with_context(|| format!("--format {f:?} is not one of {}", Format::ALL.map(|f| f.name()).join(", ")))?)
        }
    };
    let mut files = Vec::new();
    for p in &args.paths {
        let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        costplane_invoice::parse(format, &p.display().to_string(), &bytes)?;
        files.push((p, bytes));
    }
    let config = args.server.config(Default::default())?;
    let base = args.server.base_url(&config);
    let url = format!("{base}/api/v1/import/invoice");
    let client = reqwest::Client::new();
    for (path, bytes) in files {
        let mut query = vec![("file", path.display().to_string()), ("account", args.account.clone())];
        if let Some(f) = &args.format {
            query.push(("format", f.clone()));
        }
        if let Some(t) = &args.tenant {
            query.push(("tenant", t.clone()));
        }
        let content_type = if bytes.trim_ascii_start().starts_with(b"{") || bytes.trim_ascii_start().starts_with(b"[") {
            "application/json"
        } else {
            "text/csv"
        };
        let req = client.post(&url).query(&query).header(reqwest::header::CONTENT_TYPE, content_type).body(bytes);
        let resp = args.server.authorize(req).send().await.with_context(|| format!("cannot reach {url}; is `costplane serve` running?"))?;
        let (status, answer) = crate::client::costplane_json(resp, &base).await?;
        if !status.is_success() {
            bail!("importing {} failed ({status}): {}", path.display(), answer["error"].as_str().unwrap_or("unknown error"));
        }
        let totals: Vec<String> =
            answer["totals"].as_object().into_iter().flatten().map(|(c, t)| format!("{} {c}", t.as_str().unwrap_or("?"))).collect();
        println!(
            "{}: {} lines ({}) from {} to {} into {}: {}",
            path.display(),
            answer["lines"],
            answer["format"].as_str().unwrap_or("?"),
            answer["from"].as_str().unwrap_or("?"),
            answer["to"].as_str().unwrap_or("?"),
            answer["scope"].as_str().unwrap_or("?"),
            if totals.is_empty() { "no cost".to_owned() } else { totals.join(", ") }
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct ReconcileArgs {
    /// First day, YYYY-MM-DD (default: the first of last month).
    #[arg(long)]
    from: Option<String>,
    /// Day after the last, YYYY-MM-DD (default: tomorrow).
    #[arg(long)]
    to: Option<String>,
    /// Lines by: any of provider, model, day.
    #[arg(long, default_value = "provider,model,day")]
    group_by: String,
    /// Percent of the invoiced amount within which a line is matched (default: the server's).
    #[arg(long)]
    tolerance_percent: Option<String>,
    /// Drift always within tolerance, in the ledger's currency (default: the server's).
    #[arg(long)]
    tolerance_usd: Option<String>,
    /// Print the server's JSON answer.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: crate::client::ServerArgs,
}

pub async fn reconcile(args: ReconcileArgs) -> anyhow::Result<()> {
    let query = [
        ("group_by", Some(args.group_by.clone())),
        ("from", args.from.clone()),
        ("to", args.to.clone()),
        ("tolerance_percent", args.tolerance_percent.clone()),
        ("tolerance_usd", args.tolerance_usd.clone()),
    ];
    let body = args.server.get_json("/api/v1/reconciliation", &query, "reconciliation").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        print!("{}", table(&body));
    }
    Ok(())
}

/// The answer as a table, then the totals and the model mapping.
fn table(body: &Value) -> String {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let mut out = format!(
        "{} to {} ({}), tolerance {}% or {}\n",
        s(&body["from"]),
        s(&body["to"]),
        s(&body["currency"]),
        s(&body["tolerance"]["percent"]),
        s(&body["tolerance"]["usd"])
    );
    out.push_str(&format!(
        "{:<16} {:<28} {:<10} {:<14} {:>12} {:>12} {:>12} {:>8} {:>14}\n",
        "PROVIDER", "MODEL", "DAY", "STATUS", "ESTIMATED", "INVOICED", "DRIFT", "DRIFT%", "UNPRICED TOK"
    ));
    for l in body["lines"].as_array().into_iter().flatten() {
        let model = match l["model"].as_str() {
            Some("") => "(no model)".to_owned(),
            _ => s(&l["model"]),
        };
        out.push_str(&format!(
            "{:<16} {:<28} {:<10} {:<14} {:>12} {:>12} {:>12} {:>8} {:>14}\n",
            s(&l["provider"]),
            model,
            s(&l["day"]),
            s(&l["status"]),
            s(&l["estimated_cost"]),
            s(&l["invoiced_cost"]),
            s(&l["drift"]),
            s(&l["drift_percent"]),
            s(&l["unpriced_tokens"])
        ));
    }
    let t = &body["totals"];
    out.push_str(&format!(
        "total: estimated {} · invoiced {} · drift {} ({}%) · unpriced tokens {}\n",
        s(&t["estimated_cost"]),
        s(&t["invoiced_cost"]),
        s(&t["drift"]),
        s(&t["drift_percent"]),
        s(&t["unpriced_tokens"])
    ));
    for m in body["mapping"].as_array().into_iter().flatten() {
        let names = |v: &Value| v.as_array().into_iter().flatten().filter_map(|n| n.as_str()).collect::<Vec<_>>().join(", ");
        out.push_str(&format!(
            "model {} / {}: spans [{}] · invoices [{}]\n",
            s(&m["provider"]),
            s(&m["model"]),
            names(&m["estimate_models"]),
            names(&m["invoice_models"])
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_lines_totals_and_mapping() {
        let body = serde_json::json!({
            "from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z", "currency": "USD",
            "tolerance": {"percent": "5", "usd": "0.01"},
            "lines": [{"provider": "openai", "model": "", "day": "2026-10-02", "status": "invoiced-only",
                       "estimated_cost": "0", "invoiced_cost": "0.1", "drift": "0.1", "drift_percent": "100", "unpriced_tokens": "0"}],
            "totals": {"estimated_cost": "0", "invoiced_cost": "0.1", "drift": "0.1", "drift_percent": "100", "unpriced_tokens": "0"},
            "mapping": [{"provider": "openai", "model": "gpt-4o", "estimate_models": ["gpt-4o"], "invoice_models": ["gpt-4o-2024-08-06"]}],
        });
        let t = table(&body);
        assert!(t.contains("(no model)") && t.contains("invoiced-only"), "{t}");
        assert!(t.contains("model openai / gpt-4o: spans [gpt-4o] · invoices [gpt-4o-2024-08-06]"), "{t}");
    }
}
