//! Invoices against estimates.
//!
//! - `POST /api/v1/import/invoice?format=&file=&account=&tenant=` (admin
//!   key): one provider cost report as the body (OpenAI's Costs API JSON or
//!   cost CSV export, Anthropic's cost report JSON or CSV, Anthropic's
//!   messages usage report JSON; `format` names it, or its content does),
//!   parsed completely before anything is written. Its lines land in the
//!   ledger as `x_Source = invoice` rows in the scope
//!   `invoice:<provider>:<account>:<cost|usage>`: one new revision per hour
//!   with rows, and an empty one for every hour of the report's days that
//!   this scope had a revision for, all in one replacement through the
//!   closer ([`Closer::replace_priced`]). Re-importing replaces, never
//!   doubles; other accounts, reports and sources are untouched. `tenant`
//!   tags every line of the report with a tenant (default `unassigned`).
//! - `GET /api/v1/reconciliation?from=&to=&group_by=provider,model,day&
//!   tolerance_percent=&tolerance_usd=`: estimated (the LLM ledger),
//!   invoiced (imported reports and the AI lines of imported FOCUS bills),
//!   drift in money and percent, tokens, unpriced tokens and a status per
//!   line (`costplane_invoice::reconcile`), with the model mapping used.
//!   The store sums each side per provider, model and day
//!   ([`costplane_store::reconcile`]): the rows are never read one by one.
//!   Every parameter is checked before any work. A tenant key sees its own
//!   estimates and only the invoice lines tagged with its tenant.
//!
//! `[billing.reconciliation]` sets the default tolerance
//! ([`ReconciliationSettings`]). `/metrics` carries per provider the
//! estimated, invoiced and drift amounts of the last [`METRICS_DAYS`] closed
//! days that provider's invoices cover ([`provider_drift`], [`render_metrics`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use costplane_invoice::reconcile::{reconcile, Dim, Estimate, Options, Report};
use costplane_invoice::{focus_ai, line_of_sums, Format, Invoice, InvoiceLine};
use costplane_store::reconcile as sums;
use costplane_telemetry::usage::{hour_of, HourState, LedgerReplacement, LedgerRow, CLOSED, DAY_NS};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::config::BillingSection;
use crate::costs::closer::Closer;
use crate::costs::params::{iso, ns, parse_time, shown};
use crate::costs::CostState;
use crate::error::{ApiError, ErrorCode};

/// Largest report accepted through the API.
const MAX_REPORT_BYTES: usize = 256 << 20;

/// The closed days the `/metrics` reconciliation gauges cover.
pub const METRICS_DAYS: u32 = 7;

/// The longest window one reconciliation covers.
pub const MAX_WINDOW_DAYS: i64 = 400;

/// `[billing.reconciliation]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconciliationSettings {
    /// A line within this percent of its invoiced amount is `matched`.
    pub tolerance_percent: Decimal,
    /// A drift up to this amount (ledger currency) is always within tolerance.
    pub tolerance_usd: Decimal,
}

impl Default for ReconciliationSettings {
    fn default() -> Self {
        ReconciliationSettings { tolerance_percent: Decimal::from(5), tolerance_usd: Decimal::new(1, 2) }
    }
}

impl ReconciliationSettings {
    pub fn check(&self) -> Result<(), String> {
        if self.tolerance_percent < Decimal::ZERO || self.tolerance_percent > Decimal::ONE_HUNDRED {
            return Err(format!("billing.reconciliation.tolerance_percent = {} must be from 0 to 100", self.tolerance_percent));
        }
        if self.tolerance_usd < Decimal::ZERO {
            return Err(format!("billing.reconciliation.tolerance_usd = {} must not be negative", self.tolerance_usd));
        }
        Ok(())
    }
}

pub fn router(costs: CostState) -> Router {
    Router::new()
        .route("/api/v1/import/invoice", post(import_invoice).layer(DefaultBodyLimit::max(MAX_REPORT_BYTES)))
        .route("/api/v1/reconciliation", get(reconciliation))
        .with_state(costs)
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidArgument, msg)
}

/// An account or tenant name: 1 to 128 letters, digits, `.`, `_`, `-`.
fn name_param(key: &str, value: &str) -> Result<String, ApiError> {
    let ok = !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(bad(format!("{key}={} is not a name (1 to 128 letters, digits, '.', '_' or '-')", shown(value))))
    }
}

async fn import_invoice(
    State(state): State<CostState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if caller.tenant().is_some() {
        return Err(ApiError::new(ErrorCode::PermissionDenied, "importing invoices needs an admin key"));
    }
    for key in q.keys() {
        if !["format", "file", "account", "tenant"].contains(&key.as_str()) {
            return Err(bad(format!("unknown parameter '{}'; use format, file, account and tenant", crate::costs::params::cut(key))));
        }
    }
    let format = match q.get("format").map(String::as_str) {
        None | Some("") => None,
        Some(f) => Some(
            Format::parse(f)
                .ok_or_else(|| bad(format!("format={} is not one of {}", shown(f), Format::ALL.map(|f| f.name()).join(", "))))?,
        ),
    };
    let file = q.get("file").map(|f| crate::costs::params::cut(f).to_owned()).unwrap_or_else(|| "upload".into());
    let account = match q.get("account") {
        Some(a) => name_param("account", a)?,
        None => "default".into(),
    };
    let tenant = q.get("tenant").map(|t| name_param("tenant", t)).transpose()?;
    let parse_file = file.clone();
    let mut invoice = tokio::task::spawn_blocking(move || costplane_invoice::parse(format, &parse_file, &body))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| bad(e.to_string()))?;
    if invoice.periods.is_empty() {
        return Err(bad(format!("{file}: the report has no time buckets; nothing to import")));
    }
    for l in &mut invoice.lines {
        l.tenant = tenant.clone();
    }
    let currency = state.meter().catalog.currency.clone();
    let rows = costplane_invoice::ledger_rows(&invoice, &account, &currency, &file).map_err(|e| bad(e.to_string()))?;
    let scope = invoice.scope(&account);
    let replacement = replacement(&state.closer, &invoice, &scope, rows).await?;
    let hours = replacement.hours.len();
    state.closer.replace_priced(&replacement).await?;
    let totals: BTreeMap<String, String> = invoice.totals().into_iter().map(|(c, t)| (c, t.normalize().to_string())).collect();
    let from = invoice.periods.iter().map(|p| p.0).min().unwrap_or_default();
    let to = invoice.periods.iter().map(|p| p.1).max().unwrap_or_default();
    tracing::info!(%scope, lines = invoice.lines.len(), hours, "invoice imported");
    Ok(Json(json!({
        "format": invoice.format.name(), "file": file, "scope": scope, "lines": invoice.lines.len(),
        "hours": hours, "from": iso(from), "to": iso(to), "totals": totals,
    }))
    .into_response())
}

/// The revisions an import writes: one per hour with rows, and an empty
/// one for every hour of the report's buckets that the scope had.
async fn replacement(closer: &Closer, invoice: &Invoice, scope: &str, rows: Vec<LedgerRow>) -> Result<LedgerReplacement, ApiError> {
    let mut hours: BTreeMap<i64, Vec<LedgerRow>> = BTreeMap::new();
    for r in rows {
        hours.entry(hour_of(r.charge_period_start_ns)).or_default().push(r);
    }
    for (from, to) in &invoice.periods {
        for s in closer.ledger().hour_states(hour_of(*from), *to).await? {
            if s.scope == scope {
                hours.entry(s.hour_ns).or_default();
            }
        }
    }
    let mut out = LedgerReplacement::default();
    for (hour_ns, mut rows) in hours {
        let revision = costplane_store::ledger::next_revision();
        for r in &mut rows {
            r.revision = revision;
        }
        out.hours.push(HourState {
            hour_ns,
            scope: scope.to_owned(),
            revision,
            status: CLOSED.to_owned(),
            usage_rows: rows.len() as u64,
            price_version: invoice.format.name().to_owned(),
        });
        out.rows.extend(rows);
    }
    Ok(out)
}

/// A reconciliation request, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconcileQuery {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub options: Options,
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists"))
}

/// A tolerance: digits with at most one `.`, from 0 to `max`.
fn tolerance(key: &str, value: &str, max: Decimal) -> Result<Decimal, ApiError> {
    let err = || bad(format!("{key}={} is not a number from 0 to {max}", shown(value)));
    let plain = !value.is_empty()
        && value.len() <= 32
        && value.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && value.bytes().filter(|b| *b == b'.').count() <= 1
        && value.bytes().next().is_some_and(|b| b.is_ascii_digit());
    if !plain {
        return Err(err());
    }
    let d: Decimal = value.parse().map_err(|_| err())?;
    if d > max {
        return Err(err());
    }
    Ok(d)
}

impl ReconcileQuery {
    /// Parses and checks every parameter; `from` defaults to the first day
    /// of last month, `to` to tomorrow (UTC): the last bill and this month.
    pub fn parse(
        params: &HashMap<String, String>,
        now: DateTime<Utc>,
        settings: &ReconciliationSettings,
    ) -> Result<ReconcileQuery, ApiError> {
        const KNOWN: [&str; 5] = ["from", "to", "group_by", "tolerance_percent", "tolerance_usd"];
        for key in params.keys() {
            if !KNOWN.contains(&key.as_str()) {
                return Err(bad(format!("unknown parameter '{}'; use {}", crate::costs::params::cut(key), KNOWN.join(", "))));
            }
        }
        let today = now.date_naive();
        let to = match params.get("to") {
            Some(v) => parse_time("to", v)?,
            None => midnight(today.succ_opt().unwrap_or(today)),
        };
        let from = match params.get("from") {
            Some(v) => parse_time("from", v)?,
            None => {
                let first = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).expect("first of month exists");
                midnight(first.pred_opt().and_then(|d| d.with_day(1)).unwrap_or(first))
            }
        };
        if from >= to {
            return Err(bad(format!("from ({}) must be before to ({})", from.to_rfc3339(), to.to_rfc3339())));
        }
        if (to - from).num_days() > MAX_WINDOW_DAYS {
            return Err(bad(format!(
                "the window is {} days long; at most {MAX_WINDOW_DAYS} are reconciled at once",
                (to - from).num_days()
            )));
        }
        let mut group_by = Vec::new();
        if let Some(list) = params.get("group_by") {
            if list.len() > 64 {
                return Err(bad(format!("group_by={} is not a list of provider, model, day", shown(list))));
            }
            for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let d = Dim::parse(name).ok_or_else(|| bad(format!("group_by={} is not one of provider, model, day", shown(name))))?;
                if !group_by.contains(&d) {
                    group_by.push(d);
                }
            }
        }
        if group_by.is_empty() {
            group_by = Dim::ALL.to_vec();
        }
        let tolerance_percent = match params.get("tolerance_percent") {
            Some(v) => tolerance("tolerance_percent", v, Decimal::ONE_HUNDRED)?,
            None => settings.tolerance_percent,
        };
        let tolerance_usd = match params.get("tolerance_usd") {
            Some(v) => tolerance("tolerance_usd", v, Decimal::from(1_000_000))?,
            None => settings.tolerance_usd,
        };
        Ok(ReconcileQuery { from, to, options: Options { group_by, tolerance_percent, tolerance_usd } })
    }
}

/// The reconciliation of `[from, to)` as `tenant` (or an admin) sees it,
/// from the ledger as it is (the API brings open hours up to date first).
/// The store sums each side per provider, model and day (and what tells
/// them apart: unit, pricing status, token kind, SKU), so the work grows
/// with those groups, never with the ledger's rows
/// ([`costplane_store::reconcile`]).
pub async fn report(state: &CostState, tenant: Option<&str>, from: i64, to: i64, options: &Options) -> Result<Report, ApiError> {
    let ledger = state.ledger();
    // Side by side: the three reads are independent.
    let (llm, invoice, cloud) = tokio::join!(
        sums::estimate_groups(ledger, from, to, tenant),
        sums::invoice_groups(ledger, from, to, tenant),
        sums::bill_groups(ledger, from, to, tenant),
    );
    let estimates: Vec<Estimate> = llm?.iter().map(estimate_of).collect();
    let mut invoices: Vec<_> = invoice?.iter().filter_map(invoice_line_of).collect();
    invoices.extend(cloud?.iter().filter_map(bill_line_of));
    Ok(reconcile(&estimates, &invoices, options))
}

/// The estimate of one day's LLM rows of a span provider, model, unit and status.
fn estimate_of(g: &sums::EstimateGroup) -> Estimate {
    Estimate::of_sums(
        &g.span_provider,
        &g.provider_name,
        &g.model,
        g.day_ns,
        (&g.unit, &g.pricing_status),
        (g.sums.cost, g.sums.quantity.unwrap_or_default()),
    )
}

/// One day's imported invoice rows of an import, model, kind and unit, as a line.
fn invoice_line_of(g: &sums::InvoiceGroup) -> Option<InvoiceLine> {
    let mut l = line_of_sums(&g.import_key, &g.model, &g.usage_type, &g.unit, g.sums.cost, g.sums.quantity.unwrap_or_default())?;
    l.start_ns = g.day_ns;
    l.end_ns = g.day_ns.saturating_add(DAY_NS);
    l.currency = g.currency.clone();
    Some(l)
}

/// One day's rows of a bill's AI SKU, as a line (`None`: no AI line).
fn bill_line_of(g: &sums::BillGroup) -> Option<InvoiceLine> {
    focus_ai::bill_line(&focus_ai::BillLine {
        start_ns: g.day_ns,
        end_ns: g.day_ns.saturating_add(DAY_NS),
        service_name: g.service_name.clone(),
        sku_id: g.sku_id.clone(),
        extra: g.extra.clone(),
        consumed_quantity: g.sums.quantity.unwrap_or_default(),
        consumed_unit: g.unit.clone(),
        cost: g.sums.cost,
        currency: g.currency.clone(),
        project: String::new(),
        tenant: None,
    })
}

fn money(d: Decimal) -> String {
    d.normalize().to_string()
}

fn day(ns: i64) -> String {
    DateTime::from_timestamp_nanos(ns).format("%Y-%m-%d").to_string()
}

/// The JSON answer of a report.
pub fn render(report: &Report, q: &ReconcileQuery, currency: &str) -> Value {
    let lines: Vec<Value> = report
        .lines
        .iter()
        .map(|l| {
            let mut o = serde_json::Map::new();
            if let Some(p) = &l.provider {
                o.insert("provider".into(), json!(p));
            }
            if let Some(m) = &l.model {
                o.insert("model".into(), json!(m));
            }
            if let Some(d) = l.day_ns {
                o.insert("day".into(), json!(day(d)));
            }
            o.insert("status".into(), json!(l.status.as_str()));
            o.insert("estimated_cost".into(), json!(money(l.estimated_cost)));
            o.insert("invoiced_cost".into(), json!(money(l.invoiced_cost)));
            o.insert("drift".into(), json!(money(l.drift)));
            o.insert("drift_percent".into(), json!(l.drift_percent.map(money)));
            o.insert("estimated_tokens".into(), json!(money(l.estimated_tokens)));
            o.insert("invoiced_tokens".into(), json!(l.invoiced_tokens.map(money)));
            o.insert("unpriced_tokens".into(), json!(money(l.unpriced_tokens)));
            o.insert("estimate_models".into(), json!(l.estimate_names));
            o.insert("invoice_models".into(), json!(l.invoice_names));
            Value::Object(o)
        })
        .collect();
    let mapping: Vec<Value> = report
        .mapping
        .iter()
        .map(|m| json!({"provider": m.provider, "model": m.model, "estimate_models": m.estimate_names, "invoice_models": m.invoice_names}))
        .collect();
    let t = &report.totals;
    json!({
        "from": iso(ns(q.from)),
        "to": iso(ns(q.to)),
        "currency": currency,
        "group_by": q.options.group_by.iter().map(|d| d.name()).collect::<Vec<_>>(),
        "tolerance": {"percent": money(q.options.tolerance_percent), "usd": money(q.options.tolerance_usd)},
        "totals": {
            "estimated_cost": money(t.estimated_cost), "invoiced_cost": money(t.invoiced_cost), "drift": money(t.drift),
            "drift_percent": t.drift_percent.map(money), "unpriced_tokens": money(t.unpriced_tokens), "lines": t.lines,
        },
        "lines": lines,
        "mapping": mapping,
    })
}

async fn reconciliation(
    State(state): State<CostState>,
    Extension(caller): Extension<Caller>,
    billing: Option<Extension<Arc<BillingSection>>>,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let settings = billing.map(|Extension(b)| b.reconciliation.clone()).unwrap_or_default();
    let q = ReconcileQuery::parse(&raw, Utc::now(), &settings)?;
    state.fresh().await?;
    let report = report(&state, caller.tenant(), ns(q.from), ns(q.to), &q.options).await?;
    state.count_query(&caller);
    Ok(Json(render(&report, &q, &state.meter().catalog.currency)).into_response())
}

/// Per provider, over the last `days` closed days (UTC days that ended)
/// that the provider's invoices cover: estimated, invoiced, drift, and the
/// largest absolute daily drift percent (what `CostplaneEstimateDrift`
/// watches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderDrift {
    pub provider: String,
    pub estimated: Decimal,
    pub invoiced: Decimal,
    pub drift: Decimal,
    pub max_daily_drift_percent: Decimal,
}

pub async fn provider_drift(state: &CostState, tenant: Option<&str>, now_ns: i64, days: u32) -> Result<Vec<ProviderDrift>, ApiError> {
    let to = costplane_invoice::day_of(now_ns);
    let from = to.saturating_sub(DAY_NS.saturating_mul(i64::from(days)));
    let options = Options { group_by: vec![Dim::Provider, Dim::Day], ..Options::default() };
    let report = report(state, tenant, from, to, &options).await?;
    let mut out: BTreeMap<String, ProviderDrift> = BTreeMap::new();
    // Only days a provider invoiced: a day not billed yet is no drift.
    for l in report.lines.iter().filter(|l| l.status != costplane_invoice::reconcile::Status::EstimatedOnly) {
        let provider = l.provider.clone().unwrap_or_default();
        let e = out.entry(provider.clone()).or_insert_with(|| ProviderDrift {
            provider,
            estimated: Decimal::ZERO,
            invoiced: Decimal::ZERO,
            drift: Decimal::ZERO,
            max_daily_drift_percent: Decimal::ZERO,
        });
        e.estimated += l.estimated_cost;
        e.invoiced += l.invoiced_cost;
        e.drift += l.drift;
        let pct = l.drift_percent.map(|p| p.abs()).unwrap_or(Decimal::ZERO);
        e.max_daily_drift_percent = e.max_daily_drift_percent.max(pct);
    }
    Ok(out.into_values().collect())
}

/// The `/metrics` reconciliation families. `provider` is one of the
/// invoice providers (lines no invoice covers are left out), so the label
/// is bounded.
pub fn render_metrics(out: &mut crate::health::Exposition, drifts: &[ProviderDrift]) {
    use crate::health::Kind;
    let window = format!("the last {METRICS_DAYS} closed days (UTC) the provider's invoices cover");
    type Family = (&'static str, String, fn(&ProviderDrift) -> Decimal);
    let families: [Family; 4] = [
        ("costplane_reconciliation_estimated_usd", format!("LLM cost estimated from spans over {window} (USD)."), |d| d.estimated),
        ("costplane_reconciliation_invoiced_usd", format!("LLM cost the provider invoiced over {window} (USD)."), |d| d.invoiced),
        ("costplane_reconciliation_drift_usd", format!("Invoiced minus estimated over {window} (USD)."), |d| d.drift),
        (
            "costplane_reconciliation_max_daily_drift_percent",
            format!("The largest absolute daily drift of {window}, in percent of the day's invoice."),
            |d| d.max_daily_drift_percent,
        ),
    ];
    for (name, help, value) in families {
        out.family(name, Kind::Gauge, &help);
        for d in drifts {
            out.sample(name, &[("provider", &d.provider)], money(value(d)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use costplane_invoice::TokenKind;

    fn q(pairs: &[(&str, &str)]) -> Result<ReconcileQuery, ApiError> {
        let params = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let now = Utc.with_ymd_and_hms(2026, 3, 15, 12, 0, 0).unwrap();
        ReconcileQuery::parse(&params, now, &ReconciliationSettings::default())
    }

    #[test]
    fn defaults_cover_last_month_and_this_one() {
        let r = q(&[]).unwrap();
        assert_eq!(r.from, Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap());
        assert_eq!(r.to, Utc.with_ymd_and_hms(2026, 3, 16, 0, 0, 0).unwrap());
        assert_eq!(r.options.group_by, Dim::ALL.to_vec());
        assert_eq!(r.options.tolerance_percent, Decimal::from(5));
    }

    /// A FOCUS bill's AI lines (Bedrock, Azure OpenAI, Vertex AI) beside
    /// lines that are no AI's (EC2, Cloud Storage), read through the FOCUS
    /// import and reconciled with spans of the same models.
    #[test]
    fn the_ai_lines_of_a_focus_bill_reconcile() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../costplane-invoice/tests/fixtures/focus_ai.csv");
        let bytes = std::fs::read(path).unwrap();
        let import = costplane_k8s::focus::parse_bytes("focus_ai.csv", &bytes, &Default::default()).unwrap();
        let lines: Vec<_> = import.rows.iter().filter_map(focus_ai::line).collect();
        // Nine bill lines, seven of them AI lines:
        // 1.50 + 0.03 + 2.50 + 10.00 + 0.30 + 2.50 + 0.50 = 17.33.
        assert_eq!(lines.len(), 7);
        assert_eq!(lines.iter().map(|l| l.cost).sum::<Decimal>(), Decimal::new(1733, 2));
        // The last line names its model only in SkuPriceDetails (FOCUS's AI
        // model identity): the import keeps the column, the line reads it.
        let pro = import.rows.last().unwrap();
        assert!(pro.ext.extra.contains(r#""SkuPriceDetails":"{\"ModelDeveloper\""#), "{}", pro.ext.extra);
        let pro = focus_ai::line(pro).unwrap();
        assert_eq!((pro.model.as_str(), pro.kind, pro.tokens), ("gemini-2.5-pro", TokenKind::Output, Some(Decimal::from(50_000))));
        let day = lines[0].start_ns;
        let est = |provider: &str, model: &str, cost: i64, tokens: u64| Estimate {
            provider: provider.into(),
            model: model.into(),
            start_ns: day + 3_600_000_000_000,
            cost: Decimal::new(cost, 2),
            tokens: Decimal::from(tokens),
            unpriced_tokens: Decimal::ZERO,
        };
        let estimates = [
            est("aws.bedrock", "us.anthropic.claude-3-5-sonnet-20241022-v2:0", 150, 600_000),
            est("azure.ai.openai", "gpt-4o", 1250, 2_000_000),
            est("gcp.vertex_ai", "gemini-2.5-flash", 280, 2_000_000),
            // 50,000 output tokens at 10.00 per 1M = 0.50.
            est("gcp.vertex_ai", "gemini-2.5-pro", 50, 50_000),
        ];
        let options = Options { group_by: vec![Dim::Provider, Dim::Model], ..Options::default() };
        let report = reconcile(&estimates, &lines, &options);
        let got: Vec<(String, String, &str, String, Option<String>)> = report
            .lines
            .iter()
            .map(|l| {
                let p = l.provider.clone().unwrap_or_default();
                let m = l.model.clone().unwrap_or_default();
                (p, m, l.status.as_str(), l.invoiced_cost.normalize().to_string(), l.invoiced_tokens.map(|t| t.normalize().to_string()))
            })
            .collect();
        assert_eq!(
            got,
            vec![
                // Bedrock: 1.50 + 0.03 = 1.53 billed against 1.50: 0.03 is 1.96%
                // of 1.53; tokens (500 + 100) × 1K.
                ("aws.bedrock".into(), "claude-3-5-sonnet".into(), "matched", "1.53".into(), Some("600000".into())),
                // Azure: 2.50 + 10.00, (1,000 + 1,000) × 1K tokens.
                ("azure.ai.openai".into(), "gpt-4o".into(), "matched", "12.5".into(), Some("2000000".into())),
                // Vertex: 0.30 + 2.50, (1 + 1) × 1M tokens.
                ("gcp.vertex_ai".into(), "gemini-2-5-flash".into(), "matched", "2.8".into(), Some("2000000".into())),
                // Named by SkuPriceDetails only: 0.50 billed against 0.50, 50,000 tokens.
                ("gcp.vertex_ai".into(), "gemini-2-5-pro".into(), "matched", "0.5".into(), Some("50000".into())),
            ]
        );
        let azure = report.mapping.iter().find(|m| m.provider == "azure.ai.openai").unwrap();
        assert_eq!(azure.invoice_names, ["gpt-4o-0806".to_owned()].into());
    }

    #[test]
    fn the_configured_tolerance_is_checked() {
        let c = crate::Config::from_toml("[billing.reconciliation]\ntolerance_percent = \"2.5\"\n").unwrap();
        assert_eq!(c.billing.reconciliation.tolerance_percent, Decimal::new(25, 1));
        assert_eq!(c.billing.reconciliation.tolerance_usd, Decimal::new(1, 2));
        let e = crate::Config::from_toml("[billing.reconciliation]\ntolerance_percent = \"101\"\n").unwrap_err();
        assert!(e.contains("billing.reconciliation.tolerance_percent = 101"), "{e}");
        let e = crate::Config::from_toml("[billing.reconciliation]\ntolerance_usd = \"-1\"\n").unwrap_err();
        assert!(e.contains("tolerance_usd"), "{e}");
        assert!(crate::Config::from_toml("[billing.reconciliation]\ntolerance = \"1\"\n").is_err());
    }

    #[test]
    fn parameters_are_checked() {
        assert!(q(&[("colour", "red")]).is_err());
        assert!(q(&[("group_by", "tenant")]).is_err());
        assert_eq!(q(&[("group_by", ",")]).unwrap().options.group_by, Dim::ALL.to_vec());
        assert_eq!(q(&[("group_by", "model, provider")]).unwrap().options.group_by, vec![Dim::Model, Dim::Provider]);
        for bad in ["", "-0", "-1", "1e2", "NaN", "0x10", "101", "5%", " 5", "1.2.3"] {
            assert!(q(&[("tolerance_percent", bad)]).is_err(), "{bad:?}");
        }
        assert_eq!(q(&[("tolerance_percent", "2.5")]).unwrap().options.tolerance_percent, Decimal::new(25, 1));
        assert!(q(&[("tolerance_usd", "9223372036854775807")]).is_err());
        assert!(q(&[("from", "2026-03-10"), ("to", "2026-03-01")]).is_err());
        assert!(q(&[("from", "2020-01-01"), ("to", "2026-01-01")]).is_err());
        assert!(name_param("account", "org-acme_1.x").is_ok());
        assert!(name_param("account", "../etc").is_err());
        assert!(name_param("tenant", "").is_err());
    }
}
