//! `costplane telemetry-costs`: the server's `GET /api/v1/telemetry-costs`
//! as a table (or its JSON with `--json`): what each service's spans (per
//! span name), logs (per severity) or signals cost to ingest and keep per
//! month, and what dropping, sampling or a shorter retention would save.

use clap::Args;
use serde_json::Value;

#[derive(Args)]
pub struct TelemetryCostsArgs {
    /// Start, YYYY-MM-DD or RFC 3339 (default: 30 days before --to).
    #[arg(long)]
    from: Option<String>,
    /// End, exclusive (default: the end of the current hour).
    #[arg(long)]
    to: Option<String>,
    /// service,span_name | service,severity | service,signal.
    #[arg(long, default_value = "service,signal")]
    group_by: String,
    /// Only this tenant (admin keys; a tenant key sees its own tenant).
    #[arg(long)]
    tenant: Option<String>,
    /// What sampling that keeps this fraction (0 to 1) would save.
    #[arg(long)]
    sample: Option<String>,
    /// What a retention of this many days would save.
    #[arg(long)]
    retention_days: Option<String>,
    /// Print the server's JSON answer.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: crate::client::ServerArgs,
}

pub async fn run(args: TelemetryCostsArgs) -> anyhow::Result<()> {
    let query = [
        ("group_by", Some(args.group_by.clone())),
        ("from", args.from.clone()),
        ("to", args.to.clone()),
        ("tenant", args.tenant.clone()),
        ("sample", args.sample.clone()),
        ("retention_days", args.retention_days.clone()),
    ];
    let body = args.server.get_json("/api/v1/telemetry-costs", &query, "telemetry costs").await?;
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
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// The answer as a table: the basis, one line per group, the total.
fn table(body: &Value) -> String {
    let group = body["group_by"][1].as_str().unwrap_or("signal");
    let mut out = format!(
        "{} to {} ({} days; per month = 30 days), {}: ingest {}/GiB, storage {}/GiB-month\n",
        cell(&body["from"]),
        cell(&body["to"]),
        cell(&body["window_days"]),
        cell(&body["currency"]),
        cell(&body["rates"]["ingest_per_gib"]),
        cell(&body["rates"]["storage_per_gib_month"]),
    );
    for s in body["signals"].as_array().into_iter().flatten() {
        let kept = match s["retention_days"].as_u64() {
            Some(0) => "forever".to_owned(),
            _ => format!("{} days", cell(&s["retention_days"])),
        };
        out.push_str(&format!("{}: kept {kept}, {} stored bytes per ingested byte\n", cell(&s["signal"]), cell(&s["stored_per_ingested"])));
    }
    let what_if = &body["what_if"];
    // Grouped by signal, the signal column is the group.
    let group_column = if group == "signal" { String::new() } else { group.to_uppercase() };
    out.push_str(&format!(
        "{:<16} {:<20} {:<7} {:<28} {:>10} {:>14} {:>12} {:>12} {:>12} {:>12} {:>14} {:>14}\n",
        "TENANT",
        "SERVICE",
        "SIGNAL",
        group_column,
        "ITEMS",
        "BYTES",
        "INGEST/MO",
        "STORAGE/MO",
        "TOTAL/MO",
        "DROP SAVES",
        format!("SAMPLE {} SAVES", cell(&what_if["sample"])),
        format!("KEEP {}d SAVES", cell(&what_if["retention_days"])),
    ));
    for r in body["rows"].as_array().into_iter().flatten() {
        let name = match &r[group] {
            _ if group == "signal" => String::new(),
            Value::Null => "(none stored)".to_owned(),
            v => cell(v),
        };
        out.push_str(&format!(
            "{:<16} {:<20} {:<7} {:<28} {:>10} {:>14} {:>12} {:>12} {:>12} {:>12} {:>14} {:>14}\n",
            cell(&r["tenant"]),
            cell(&r["service"]),
            cell(&r["signal"]),
            name,
            cell(&r["items"]),
            cell(&r["bytes"]),
            cell(&r["ingest_per_month"]),
            cell(&r["storage_per_month"]),
            cell(&r["cost_per_month"]),
            cell(&r["saves_per_month"]["drop"]),
            cell(&r["saves_per_month"]["sample"]),
            cell(&r["saves_per_month"]["retention"]),
        ));
    }
    let t = &body["total"];
    out.push_str(&format!(
        "total per month: {} (ingest {}, storage {}) · in the window: ingest {}\n",
        cell(&t["cost_per_month"]),
        cell(&t["ingest_per_month"]),
        cell(&t["storage_per_month"]),
        cell(&t["ingest_cost"]),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_the_basis_groups_and_total() {
        let body = serde_json::json!({
            "from": "2026-11-01T00:00:00Z", "to": "2026-11-04T00:00:00Z", "window_days": "3", "currency": "USD",
            "group_by": ["service", "span_name"],
            "rates": {"ingest_per_gib": "0.5", "storage_per_gib_month": "0.1"},
            "what_if": {"sample": "0.1", "retention_days": 3},
            "signals": [{"signal": "traces", "retention_days": 0, "stored_per_ingested": "0.25"}],
            "rows": [
                {"tenant": "acme", "service": "api", "signal": "traces", "span_name": "GET /a", "items": 2, "bytes": 333,
                 "ingest_per_month": "1.5", "storage_per_month": null, "cost_per_month": "1.5",
                 "saves_per_month": {"drop": "1.5", "sample": "1.35", "retention": null}},
                {"tenant": "acme", "service": "idle", "signal": "traces", "span_name": null, "items": 1, "bytes": 7,
                 "ingest_per_month": "0", "storage_per_month": null, "cost_per_month": "0",
                 "saves_per_month": {"drop": "0", "sample": "0", "retention": null}},
            ],
            "total": {"cost_per_month": "1.5", "ingest_per_month": "1.5", "storage_per_month": null, "ingest_cost": "0.15"},
        });
        let t = table(&body);
        assert!(t.contains("traces: kept forever, 0.25 stored bytes per ingested byte"), "{t}");
        assert!(t.contains("SPAN_NAME") && t.contains("SAMPLE 0.1 SAVES") && t.contains("KEEP 3d SAVES"), "{t}");
        assert!(t.contains("GET /a") && t.contains("1.35") && t.contains("(none stored)"), "{t}");
        assert!(t.contains("total per month: 1.5 (ingest 1.5, storage -)"), "{t}");
    }
}
