//! `costplane report --month YYYY-MM [--tenant T] --out DIR`: the month's
//! cost report as HTML (charts drawn as inline SVG, no external assets) and
//! as a PDF of that page printed by headless Chromium.
//!
//! Every figure comes from the running server's public API (`/api/v1/costs`,
//! `/api/v1/costs/unpriced`), so the report and the API agree to the last
//! digit: money is shown as the API's decimal text, never recomputed in
//! floating point. Ratios (cost per 1k tokens, month-over-month change) are
//! computed in exact decimals and rounded only for display.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context};
use chrono::{Datelike, NaiveDate};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::client::{costplane_json, ServerArgs};
use crate::report_html::{Page, Series, UnitRoute};

#[derive(Args)]
pub struct ReportArgs {
    /// The month, YYYY-MM.
    #[arg(long)]
    month: String,
    /// Only this tenant's costs (a tenant API key sees only its own anyway).
    #[arg(long)]
    tenant: Option<String>,
    /// Directory for the HTML and PDF files (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// The Chromium (or Chrome) binary that prints the PDF.
    #[arg(long, default_value = "chromium")]
    chromium: String,
    /// Write only the HTML.
    #[arg(long)]
    no_pdf: bool,
    #[command(flatten)]
    server: ServerArgs,
}

fn month_bounds(month: &str) -> anyhow::Result<(NaiveDate, NaiveDate, NaiveDate)> {
    let start = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
        .with_context(|| format!("--month {month:?} is not a month; use YYYY-MM, e.g. 2026-10"))?;
    let next = if start.month() == 12 {
        NaiveDate::from_ymd_opt(start.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(start.year(), start.month() + 1, 1)
    }
    .context("month out of range")?;
    let prev = if start.month() == 1 {
        NaiveDate::from_ymd_opt(start.year() - 1, 12, 1)
    } else {
        NaiveDate::from_ymd_opt(start.year(), start.month() - 1, 1)
    }
    .context("month out of range")?;
    Ok((prev, start, next))
}

struct Api {
    client: reqwest::Client,
    base: String,
    server: ServerArgs,
    tenant: Option<String>,
}

impl Api {
    async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .server
            .authorize(self.client.get(&url).query(query))
            .send()
            .await
            .with_context(|| format!("cannot reach {url}; is `costplane serve` running? (--server / --http-addr)"))?;
        let (status, body) = costplane_json(resp, &self.base).await?;
        if !status.is_success() {
            bail!("{path} failed ({status}): {}", body["error"].as_str().unwrap_or("unknown error"));
        }
        Ok(body)
    }

    async fn costs(&self, from: NaiveDate, to: NaiveDate, extra: &[(&str, &str)]) -> anyhow::Result<Value> {
        let mut q = vec![("from", from.to_string()), ("to", to.to_string())];
        q.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        if let Some(t) = &self.tenant {
            q.push(("tenant", t.clone()));
        }
        self.get("/api/v1/costs", &q).await
    }
}

fn dec(v: &Value) -> Decimal {
    v.as_str().and_then(|s| Decimal::from_str(s).ok()).unwrap_or_default()
}

fn text(v: &Value) -> String {
    v.as_str().map(str::to_owned).unwrap_or_default()
}

/// The month's reconciliation in one sentence, from the API's totals.
fn reconciliation_line(body: &Value) -> String {
    let t = &body["totals"];
    let lines = |status: &str| t["lines"][status].as_u64().unwrap_or(0);
    if lines("matched") + lines("drift") + lines("invoiced-only") == 0 {
        return format!(
            "No invoice covers this month yet (costplane import invoice, or a FOCUS bill); estimated {}.",
            text(&t["estimated_cost"])
        );
    }
    let pct = t["drift_percent"].as_str().map(|p| format!(" ({p}%)")).unwrap_or_default();
    format!(
        "Estimated {} · invoiced {} · drift {}{pct} · providers: {} matched, {} drifting, {} invoiced only, {} not invoiced · unpriced tokens {}",
        text(&t["estimated_cost"]),
        text(&t["invoiced_cost"]),
        text(&t["drift"]),
        lines("matched"),
        lines("drift"),
        lines("invoiced-only"),
        lines("estimated-only"),
        text(&t["unpriced_tokens"]),
    )
}

/// Routes of the month shown in the report.
const UNIT_ROUTES_SHOWN: usize = 10;
/// Groups asked for (by total cost) to rank by cost per request.
const UNIT_GROUPS: &str = "10000";

/// The month's routes with the highest cost per request, from an answer of
/// `/api/v1/unit-costs?group_by=service,route`, as the API's text (compute
/// `unknown` when no request of the route has a known compute cost).
fn unit_routes(body: &Value) -> Vec<UnitRoute> {
    let mut groups: Vec<&Value> = body["groups"].as_array().into_iter().flatten().collect();
    // Exact decimals rank; ties by total cost, then as the API listed them.
    groups.sort_by(|a, b| {
        dec(&b["cost"]["per_request"])
            .cmp(&dec(&a["cost"]["per_request"]))
            .then_with(|| dec(&b["cost"]["total"]).cmp(&dec(&a["cost"]["total"])))
    });
    groups
        .into_iter()
        .take(UNIT_ROUTES_SHOWN)
        .map(|g| {
            let c = &g["cost"];
            UnitRoute {
                service: text(&g["service"]),
                route: text(&g["route"]),
                requests: g["requests"].as_u64().unwrap_or(0).to_string(),
                p50: text(&g["p50_seconds"]),
                p95: text(&g["p95_seconds"]),
                error_ratio: text(&g["error_ratio"]),
                llm: text(&c["llm"]),
                compute: c["compute"].as_str().map_or_else(|| "unknown".to_owned(), str::to_owned),
                telemetry: text(&c["telemetry"]),
                total: text(&c["total"]),
                per_request: text(&c["per_request"]),
            }
        })
        .collect()
}

/// `(name, cost text)` rows of a grouped answer, largest first.
fn ranked(body: &Value, dim: &str) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> =
        body["rows"].as_array().into_iter().flatten().map(|r| (text(&r[dim]), text(&r["cost"]))).collect();
    rows.sort_by(|a, b| Decimal::from_str(&b.1).unwrap_or_default().cmp(&Decimal::from_str(&a.1).unwrap_or_default()));
    rows
}

pub async fn run(args: ReportArgs) -> anyhow::Result<()> {
    let (prev, start, next) = month_bounds(&args.month)?;
    let config = args.server.config(costplane_server::Overrides::default())?;
    let api = Api {
        client: reqwest::Client::new(),
        base: args.server.base_url(&config),
        server: args.server.clone(),
        tenant: args.tenant.clone(),
    };
    let steps = 12u64 + u64::from(!args.no_pdf);
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template("{spinner} report [{bar:30}] {pos}/{len} {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let step = |msg: &'static str| {
        bar.set_message(msg);
        bar.inc(1);
    };

    let total = api.costs(start, next, &[]).await?;
    step("month total");
    let previous = api.costs(prev, start, &[]).await?;
    step("previous month");
    let daily = api.costs(start, next, &[("step", "day")]).await?;
    step("daily trend");
    let by_model = api.costs(start, next, &[("group_by", "model"), ("source", "llm")]).await?;
    step("models");
    let by_operation = api.costs(start, next, &[("group_by", "operation"), ("source", "llm")]).await?;
    step("operations");
    let by_tenant = api.costs(start, next, &[("group_by", "tenant")]).await?;
    step("tenants");
    let by_service = api.costs(start, next, &[("group_by", "service")]).await?;
    step("services");
    let tokens_daily = api.costs(start, next, &[("step", "day"), ("group_by", "usage_type"), ("source", "llm")]).await?;
    step("tokens");
    let by_source = api.costs(start, next, &[("group_by", "source")]).await?;
    step("sources");
    let unpriced = api.get("/api/v1/costs/unpriced", &[("from", start.to_string()), ("to", next.to_string())]).await?;
    step("unpriced usage");
    let mut q = vec![("from", start.to_string()), ("to", next.to_string()), ("group_by", "service,route".to_owned())];
    q.push(("limit", UNIT_GROUPS.to_owned()));
    if let Some(t) = &args.tenant {
        q.push(("tenant", t.clone()));
    }
    let routes = unit_routes(&api.get("/api/v1/unit-costs", &q).await?);
    step("cost per request");
    // Estimates against invoices: all tenants' (or the key's own); a report
    // of one tenant through an admin key leaves it out.
    let reconciliation = match &args.tenant {
        Some(_) => String::new(),
        None => {
            let q = [("from", start.to_string()), ("to", next.to_string()), ("group_by", "provider".to_owned())];
            reconciliation_line(&api.get("/api/v1/reconciliation", &q).await?)
        }
    };
    step("reconciliation");

    let currency = text(&total["currency"]);
    let (this, before) = (dec(&total["total"]), dec(&previous["total"]));
    let change = if before.is_zero() {
        "no costs the month before".to_owned()
    } else {
        let pct = ((this - before) / before * Decimal::ONE_HUNDRED).round_dp(1);
        format!("{}{pct}% against {} ({})", if pct.is_sign_positive() { "+" } else { "" }, prev.format("%Y-%m"), text(&previous["total"]))
    };
    // Every day of the month is on the charts, days without costs as zero.
    let days: Vec<String> = start.iter_days().take_while(|d| *d < next).map(|d| d.to_string()).collect();
    let zeros = || days.iter().map(|d| (d.clone(), Decimal::ZERO)).collect::<BTreeMap<String, Decimal>>();
    let mut daily_costs = zeros();
    for r in daily["rows"].as_array().into_iter().flatten() {
        *daily_costs.entry(text(&r["period_start"]).chars().take(10).collect()).or_default() += dec(&r["cost"]);
    }
    let daily_series: Vec<(String, Decimal)> = daily_costs.into_iter().collect();
    let mut tokens: BTreeMap<String, BTreeMap<String, Decimal>> = BTreeMap::new();
    for r in tokens_daily["rows"].as_array().into_iter().flatten() {
        let day: String = text(&r["period_start"]).chars().take(10).collect();
        *tokens.entry(text(&r["usage_type"])).or_insert_with(zeros).entry(day).or_default() += dec(&r["quantity"]);
    }
    // Efficiency per model: cost per 1k tokens from the same grouped answer.
    let efficiency: Vec<(String, String, String, String)> = by_model["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let (cost, qty) = (dec(&r["cost"]), dec(&r["quantity"]));
            let per_1k =
                if qty.is_zero() { "-".to_owned() } else { (cost / qty * Decimal::ONE_THOUSAND).round_dp(6).normalize().to_string() };
            (text(&r["model"]), text(&r["cost"]), text(&r["quantity"]), per_1k)
        })
        .collect();
    let unpriced_rows: Vec<[String; 5]> = unpriced["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| args.tenant.as_deref().is_none_or(|t| r["tenant"] == t))
        .map(|r| [text(&r["model"]), text(&r["provider"]), text(&r["tenant"]), text(&r["token_type"]), text(&r["tokens"])])
        .collect();

    let page = Page {
        month: args.month.clone(),
        tenant: args.tenant.clone(),
        currency,
        total: text(&total["total"]),
        change,
        daily: daily_series,
        tokens: tokens.into_iter().map(|(kind, days)| Series { name: kind, points: days.into_iter().collect() }).collect(),
        by_model: ranked(&by_model, "model"),
        by_operation: ranked(&by_operation, "operation"),
        by_tenant: ranked(&by_tenant, "tenant"),
        by_service: ranked(&by_service, "service"),
        by_source: ranked(&by_source, "source"),
        efficiency,
        unpriced: unpriced_rows,
        reconciliation,
        unit_routes: routes,
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let stem = match &args.tenant {
        Some(t) => format!("costplane-report-{}-{}", args.month, t.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")),
        None => format!("costplane-report-{}", args.month),
    };
    let html_path = args.out.join(format!("{stem}.html"));
    std::fs::write(&html_path, page.render()).with_context(|| format!("cannot write {}", html_path.display()))?;
    step("HTML written");
    let pdf_path = args.out.join(format!("{stem}.pdf"));
    if !args.no_pdf {
        print_pdf(&args.chromium, &html_path, &pdf_path)?;
        step("PDF printed");
    }
    bar.finish_and_clear();
    println!("{}", html_path.display());
    if !args.no_pdf {
        println!("{}", pdf_path.display());
    }
    Ok(())
}

/// Prints `html` to `pdf` with headless Chromium (a fresh profile, no
/// network beyond the local file).
fn print_pdf(chromium: &str, html: &Path, pdf: &Path) -> anyhow::Result<()> {
    let profile = tempfile::tempdir().context("a temporary browser profile")?;
    let html = std::fs::canonicalize(html)?;
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-pdf-header-footer",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .with_context(|| format!("cannot run {chromium} to print the PDF (install chromium, or pass --chromium PATH or --no-pdf)"))?;
    if !out.status.success() || !pdf.exists() {
        bail!("{chromium} did not print the PDF ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_their_neighbours() {
        let (p, s, n) = month_bounds("2026-01").unwrap();
        assert_eq!((p.to_string(), s.to_string(), n.to_string()), ("2025-12-01".into(), "2026-01-01".into(), "2026-02-01".into()));
        let (_, _, n) = month_bounds("2026-12").unwrap();
        assert_eq!(n.to_string(), "2027-01-01");
        assert!(month_bounds("2026-13").is_err());
        assert!(month_bounds("October").is_err());
    }

    #[test]
    fn routes_rank_by_cost_per_request_with_unknown_compute() {
        // /a: 0.03 over 3 requests = 0.01 each; /b: 0.02 over 1 = 0.02 each;
        // /c ties /a per request with less in total, so it comes after.
        let body = serde_json::json!({"groups": [
            {"service": "shop", "route": "/a", "requests": 3, "p50_seconds": "0.1", "p95_seconds": "0.3", "error_ratio": "0",
             "cost": {"llm": "0.03", "compute": null, "telemetry": "0", "total": "0.03", "per_request": "0.01"}},
            {"service": "shop", "route": "/b", "requests": 1, "p50_seconds": "2", "p95_seconds": "2", "error_ratio": "1",
             "cost": {"llm": "0.01", "compute": "0.01", "telemetry": "0", "total": "0.02", "per_request": "0.02"}},
            {"service": "shop", "route": "/c", "requests": 1, "p50_seconds": "1", "p95_seconds": "1", "error_ratio": "0",
             "cost": {"llm": "0.01", "compute": "0", "telemetry": "0", "total": "0.01", "per_request": "0.01"}},
        ]});
        let rows = unit_routes(&body);
        assert_eq!(rows.iter().map(|r| r.route.as_str()).collect::<Vec<_>>(), ["/b", "/a", "/c"]);
        assert_eq!((rows[1].compute.as_str(), rows[0].compute.as_str(), rows[0].requests.as_str()), ("unknown", "0.01", "1"));
    }

    #[test]
    fn the_reconciliation_line() {
        let body = serde_json::json!({"totals": {"estimated_cost": "3.5", "invoiced_cost": "4.27", "drift": "0.77", "drift_percent": "18.03",
            "unpriced_tokens": "0", "lines": {"matched": 1, "invoiced-only": 1}}});
        assert_eq!(
            reconciliation_line(&body),
            "Estimated 3.5 · invoiced 4.27 · drift 0.77 (18.03%) · providers: 1 matched, 0 drifting, 1 invoiced only, 0 not invoiced · \
             unpriced tokens 0"
        );
        let body = serde_json::json!({"totals": {"estimated_cost": "5", "lines": {"estimated-only": 1}}});
        assert_eq!(
            reconciliation_line(&body),
            "No invoice covers this month yet (costplane import invoice, or a FOCUS bill); estimated 5."
        );
    }
}
