//! Budgets: the configured ones and those created through the API, their
//! status in the current period, and notifications when thresholds cross.
//!
//! Once per period, threshold and target: a crossing is identified by
//! (budget id, period start, threshold label), and its delivery to each
//! target is recorded in `costplane_budget_notifications` once that target
//! took it, so it is sent once however often budgets are evaluated, also
//! across restarts; a target that was down is tried again at the next
//! evaluation without repeating the others.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use costplane_insights::budget::{self, Measure, Period};
use costplane_insights::forecast;
use costplane_store::{Record, RecordTable, StoreError};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::json;

use super::config::BudgetConfig;
use super::detect::{iso, now_ns};
use super::notify::{self, Event};
use super::series::{self, Hours, HOUR};
use super::InsightsState;

/// Where a budget is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Config,
    Api,
}

/// Every budget: configured ones first, then those created through the API.
pub async fn all(state: &InsightsState) -> Result<Vec<(BudgetConfig, Origin)>, StoreError> {
    let mut out: Vec<(BudgetConfig, Origin)> = state.budgets.iter().cloned().map(|b| (b, Origin::Config)).collect();
    for r in state.store.records(RecordTable::Budgets).await? {
        match serde_json::from_str::<BudgetConfig>(&r.body) {
            Ok(b) => out.push((b, Origin::Api)),
            Err(e) => tracing::warn!(key = %r.key, error = %e, "unreadable budget record"),
        }
    }
    Ok(out)
}

/// A budget's standing in its current period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetStatus {
    pub id: String,
    pub origin: Origin,
    pub scope: super::config::Scope,
    pub period: Period,
    pub period_start: String,
    pub period_end: String,
    pub amount: Decimal,
    pub spent: Decimal,
    /// spent / amount.
    pub spent_ratio: Decimal,
    /// Projected spend at the period's end.
    pub projected: Decimal,
    /// `forecast` (Holt-Winters) or `run-rate`.
    pub projection_method: &'static str,
    pub projected_low95: Option<Decimal>,
    pub projected_high95: Option<Decimal>,
    pub crossed: Vec<String>,
    pub currency: String,
    #[serde(skip)]
    pub(crate) crossed_thresholds: Vec<budget::Threshold>,
    #[serde(skip)]
    pub(crate) notify: Vec<super::config::Target>,
}

/// The status of `b` at `now`.
pub async fn status(state: &InsightsState, b: &BudgetConfig, origin: Origin, now: DateTime<Utc>) -> Result<BudgetStatus, StoreError> {
    let (start, end) = b.period.bounds(now);
    let now_s = now.timestamp();
    let until = (now_s.div_euclid(HOUR) + 1) * HOUR;
    let spent: Decimal = series::hourly_cost(&state.store, start.timestamp(), until, &[], &b.scope, Hours::WithProvisional)
        .await?
        .values()
        .flat_map(|v| v.iter())
        .sum();
    let mut projected = budget::run_rate(spent, start, end, now);
    let mut method = "run-rate";
    let mut band = (None, None);
    if b.period == Period::Month {
        // Complete days so far, then the forecast of the rest (today included).
        let today = now_s.div_euclid(86_400) * 86_400;
        let history_from = today - 56 * 86_400;
        let hours = series::hourly_cost(&state.store, history_from, today, &[], &b.scope, Hours::WithProvisional).await?;
        let daily = hours.values().next().map(|h| series::daily(h)).unwrap_or_default();
        let first = daily.iter().position(|d| !d.is_zero()).unwrap_or(daily.len());
        let days_left = usize::try_from((end.timestamp() - today) / 86_400).unwrap_or(0);
        if daily.len() - first >= forecast::MIN_HISTORY {
            if let Ok(fc) = forecast::forecast(&daily[first..], days_left.max(1)) {
                let so_far_days = usize::try_from((today - start.timestamp()) / 86_400).unwrap_or(0);
                let so_far: Decimal = daily.iter().rev().take(so_far_days).sum();
                let p = forecast::project(so_far, &fc, days_left);
                projected = p.band.mean;
                band = (Some(p.band.lo95), Some(p.band.hi95));
                method = "forecast";
            }
        }
    }
    let crossed = budget::crossed(b.amount, spent, Some(projected), &b.thresholds);
    Ok(BudgetStatus {
        id: b.id.clone(),
        origin,
        scope: b.scope.clone(),
        period: b.period,
        period_start: iso(start.timestamp()),
        period_end: iso(end.timestamp()),
        amount: b.amount.normalize(),
        spent: spent.normalize(),
        spent_ratio: (spent / b.amount).round_dp(6).normalize(),
        projected: projected.normalize(),
        projection_method: method,
        projected_low95: band.0.map(|d| d.normalize()),
        projected_high95: band.1.map(|d| d.normalize()),
        crossed: crossed.iter().map(budget::Threshold::label).collect(),
        currency: state.currency.clone(),
        crossed_thresholds: crossed,
        notify: b.notify.clone(),
    })
}

/// Every budget's status (for a tenant caller, only budgets scoped to it).
pub async fn statuses(state: &InsightsState, tenant: Option<&str>, now: DateTime<Utc>) -> Result<Vec<BudgetStatus>, StoreError> {
    let mut out = Vec::new();
    for (b, origin) in all(state).await? {
        if tenant.is_some_and(|t| b.scope.tenant.as_deref() != Some(t)) {
            continue;
        }
        out.push(status(state, &b, origin, now).await?);
    }
    Ok(out)
}

/// Evaluates every budget and notifies each new crossing once.
pub async fn evaluate(state: &InsightsState, now: DateTime<Utc>) -> Result<Vec<BudgetStatus>, StoreError> {
    let statuses = statuses(state, None, now).await?;
    let sent: HashSet<String> = state.store.records(RecordTable::BudgetNotifications).await?.into_iter().map(|r| r.key).collect();
    for s in &statuses {
        for t in &s.crossed_thresholds {
            let key = format!("{}|{}|{}", s.id, s.period_start, t.label());
            let (measure, value) = match t.measure {
                Measure::Actual => ("spent", s.spent),
                Measure::Forecast => ("is projected to spend", s.projected),
            };
            let summary = format!(
                "Budget {} ({} {}, {} {}) {measure} {} {} = {}% of its amount: threshold {} crossed",
                s.id,
                s.period.name(),
                s.period_start,
                s.amount,
                s.currency,
                value.round_dp(2),
                s.currency,
                (value * Decimal::ONE_HUNDRED / s.amount).round_dp(1),
                t.label()
            );
            let event = Event {
                alertname: "CostplaneBudgetThreshold",
                severity: if t.percent >= Decimal::ONE_HUNDRED { "critical" } else { "warning" },
                summary,
                data: json!({
                    "budget": s.id, "scope": s.scope, "period": s.period, "period_start": s.period_start,
                    "period_end": s.period_end, "amount": s.amount, "spent": s.spent, "spent_ratio": s.spent_ratio,
                    "projected": s.projected, "projection_method": s.projection_method, "threshold": t.label(),
                    "currency": s.currency,
                }),
                labels: BTreeMap::from([
                    ("budget".to_owned(), s.id.clone()),
                    ("threshold".to_owned(), t.label()),
                    ("period_start".to_owned(), s.period_start.clone()),
                ]),
                link: format!("{}/api/v1/budgets/status", state.public_url),
                starts_at: iso(now.timestamp()),
                ends_at: Some(s.period_end.clone()),
            };
            // Once per target: a target that was down is retried at the
            // next evaluation without repeating the others.
            // A target is named by its position and a digest of its URL
            // (which may carry a token); keys written with the URL itself
            // by earlier versions still count as sent.
            let targets: Vec<(String, Option<String>, Option<&super::config::Target>)> = if s.notify.is_empty() {
                vec![(format!("{key}|log"), None, None)]
            } else {
                s.notify
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let url = t.url().expose();
                        (format!("{key}|{i}:{}", notify::url_digest(url)), Some(format!("{key}|{i}:{url}")), Some(t))
                    })
                    .collect()
            };
            let pending: Vec<_> = targets
                .into_iter()
                .filter(|(k, old, _)| !sent.contains(k) && old.as_ref().is_none_or(|o| !sent.contains(o)))
                .map(|(k, _, t)| (k, t))
                .collect();
            if pending.is_empty() {
                continue;
            }
            notify::log(&event);
            for (k, target) in pending {
                let ok = match target {
                    Some(t) => notify::deliver_to(&state.http, t, &state.anomalies.notify_hosts, &event).await,
                    None => true,
                };
                if ok {
                    let body = json!({ "budget": s.id, "period_start": s.period_start, "threshold": t.label(), "value": value, "sent_at": iso(now.timestamp()) });
                    state.store.put_records(RecordTable::BudgetNotifications, &[Record::new(k, body.to_string(), now_ns())]).await?;
                }
            }
        }
    }
    Ok(statuses)
}
