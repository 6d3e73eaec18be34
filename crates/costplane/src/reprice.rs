//! `costplane reprice --from DATE --to DATE`: asks the running server to
//! recompute the LLM ledger rows of a window with the current price catalog
//! (the server holds the store; repricing goes through its API).

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
    /// The running server's HTTP API.
    #[arg(long, env = "COSTPLANE_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// An admin API key, when keys are configured.
    #[arg(long, env = "COSTPLANE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

pub async fn run(args: RepriceArgs) -> anyhow::Result<()> {
    let url = format!("{}/api/v1/reprice", args.server.trim_end_matches('/'));
    let mut req = reqwest::Client::new().post(&url).json(&serde_json::json!({ "from": args.from, "to": args.to }));
    if let Some(key) = &args.api_key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.with_context(|| format!("cannot reach {url}; is `costplane serve` running?"))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.context("reading the server's answer")?;
    if !status.is_success() {
        bail!("repricing failed ({status}): {}", body["error"].as_str().unwrap_or("unknown error"));
    }
    println!(
        "repriced {} LLM usage rows from {} to {} with catalog {}",
        body["usage_rows"],
        body["from"].as_str().unwrap_or(""),
        body["to"].as_str().unwrap_or(""),
        body["catalog_version"].as_str().unwrap_or("")
    );
    println!(
        "cost before {} · after {} · change {}",
        body["cost_before"].as_str().unwrap_or("?"),
        body["cost_after"].as_str().unwrap_or("?"),
        body["change"].as_str().unwrap_or("?")
    );
    Ok(())
}
