//! `costplane reprice --from DATE --to DATE [--dry-run] [--in-place]`: asks
//! the running server to price the closed hours of a window again with the
//! prices loaded now (the server holds the store and the closer; repricing
//! goes through its API so it never races with closing).
//!
//! - `--dry-run` prints the change per source, model and tenant and writes
//!   nothing.
//! - A month already exported gets correction rows (`ChargeClass =
//!   Correction`) beside the rows as exported, so a re-export shows what
//!   changed; `--in-place` replaces its rows instead.
//! - Telemetry rates (`[cost]` in the config file) are read again too.

use anyhow::{bail, Context};
use clap::Args;

#[derive(Args)]
pub struct RepriceArgs {
    /// First day of the window, YYYY-MM-DD (or RFC 3339).
    #[arg(long)]
    from: String,
    /// Day after the window, YYYY-MM-DD (or RFC 3339).
    #[arg(long)]
    to: String,
    /// Print the change per source, model and tenant; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replace exported months' rows instead of adding correction rows.
    #[arg(long)]
    in_place: bool,
    /// The running server, as every client subcommand finds it (`--config`,
    /// `--http-addr`, `--server`, `--api-key`: an admin key when keys are
    /// configured).
    #[command(flatten)]
    server: crate::client::ServerArgs,
}

pub async fn run(args: RepriceArgs) -> anyhow::Result<()> {
    let config = args.server.config(Default::default())?;
    let base = args.server.base_url(&config);
    let url = format!("{base}/api/v1/reprice");
    let body = serde_json::json!({ "from": args.from, "to": args.to, "dry_run": args.dry_run, "in_place": args.in_place });
    let req = args.server.authorize(reqwest::Client::new().post(&url).json(&body));
    let resp = req.send().await.with_context(|| format!("cannot reach {url}; is `costplane serve` running?"))?;
    let (status, body) = crate::client::costplane_json(resp, &base).await?;
    if !status.is_success() {
        bail!("repricing failed ({status}): {}", body["error"].as_str().unwrap_or("unknown error"));
    }
    print!("{}", render(&body));
    Ok(())
}

/// The server's report as text.
fn render(body: &serde_json::Value) -> String {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    let mut out = format!(
        "{} {} closed hours ({} usage rows) from {} to {} with catalog {} and {}\n",
        if body["dry_run"].as_bool() == Some(true) { "would reprice" } else { "repriced" },
        body["hours"],
        body["usage_rows"],
        s(&body["from"]),
        s(&body["to"]),
        s(&body["catalog_version"]),
        s(&body["telemetry_version"]),
    );
    if body["open_hours_skipped"].as_u64().unwrap_or(0) > 0 {
        out.push_str(&format!("{} open hours left alone (they close with the new prices)\n", body["open_hours_skipped"]));
    }
    if body["corrected_hours"].as_u64().unwrap_or(0) > 0 {
        out.push_str(&format!("{} hours of exported months written as correction rows\n", body["corrected_hours"]));
    }
    out.push_str(&format!("cost before {} · after {} · change {}\n", s(&body["cost_before"]), s(&body["cost_after"]), s(&body["change"])));
    let changes = body["changes"].as_array().cloned().unwrap_or_default();
    if !changes.is_empty() {
        out.push_str(&format!("{:<10} {:<32} {:<20} {:>16} {:>16} {:>16}\n", "source", "model", "tenant", "before", "after", "change"));
        for c in &changes {
            out.push_str(&format!(
                "{:<10} {:<32} {:<20} {:>16} {:>16} {:>16}\n",
                s(&c["source"]),
                s(&c["model"]),
                s(&c["tenant"]),
                s(&c["before"]),
                s(&c["after"]),
                s(&c["change"])
            ));
        }
    }
    out
}
