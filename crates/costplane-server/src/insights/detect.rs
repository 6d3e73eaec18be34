//! Detection runs: which buckets are evaluated, how new anomalies join or
//! close the stored ones, and who is told.
//!
//! Invariants:
//! - A bucket is evaluated once the ledger has closed it: it ended
//!   `ledger.close_after_secs` ago and no (hour, scope) of it is still
//!   provisional (the closer may be a refresh behind); the next bucket to evaluate per grain is stored (`InsightsProgress`),
//!   so a restart resumes where the last run stopped and evaluates nothing
//!   twice. `--backfill` evaluates any range again; results overwrite the
//!   figures of the same anomaly (its id is a hash of grain, group and
//!   start) but keep its status, first-seen time and notification flag.
//! - An open anomaly that reaches the start of the newly evaluated buckets
//!   and continues (same group, grain, direction) is extended; one whose
//!   next bucket has been evaluated and is not unusual is resolved.
//! - Runs are serialized (one lock), so periodic runs and backfills never
//!   interleave their read-modify-write of the anomaly table.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use costplane_insights::anomaly::{self, top_contributors, Anomaly, Series};
use costplane_insights::baseline::BaselineConfig;
use costplane_insights::{DetectConfig, Grain};
use costplane_store::{Record, RecordTable, StoreError};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::Scope;
use super::notify::{self, Event};
use super::series::{self, Group, HOUR};
use super::InsightsState;

const NS: i64 = 1_000_000_000;
use crate::costs::params::Dimension;

/// An anomaly's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Open,
    Resolved,
    Dismissed,
}

impl Status {
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "open" => Some(Status::Open),
            "resolved" => Some(Status::Resolved),
            "dismissed" => Some(Status::Dismissed),
            _ => None,
        }
    }
}

/// A stored anomaly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyRecord {
    pub id: String,
    pub group: Group,
    #[serde(flatten)]
    pub anomaly: Anomaly,
    pub status: Status,
    pub first_seen: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub notified: bool,
}

fn anomaly_id(grain: Grain, group: &Group, start: i64) -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{start}",
        grain.name(),
        group.source,
        group.tenant,
        group.project,
        group.service,
        group.model
    ));
    // Cloud groups are per provider service; other groups' ids stay as they were.
    if !group.provider_service.is_empty() {
        h.update(format!("\u{1f}{}", group.provider_service));
    }
    h.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

pub fn iso(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn now_ns() -> i64 {
    Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// Every stored anomaly.
pub async fn load(state: &InsightsState) -> Result<Vec<AnomalyRecord>, StoreError> {
    Ok(state
        .store
        .records(RecordTable::Anomalies)
        .await?
        .iter()
        .filter_map(|r| {
            serde_json::from_str(&r.body).map_err(|e| tracing::warn!(key = %r.key, error = %e, "unreadable anomaly record")).ok()
        })
        .collect())
}

pub async fn save(state: &InsightsState, records: &[&AnomalyRecord]) -> Result<(), StoreError> {
    let at = now_ns();
    let rows: Vec<Record> =
        records.iter().map(|r| Record::new(&r.id, serde_json::to_string(r).expect("anomalies serialize"), at)).collect();
    state.store.put_records(RecordTable::Anomalies, &rows).await
}

fn detect_config(state: &InsightsState, group: &Group) -> DetectConfig {
    let a = &state.anomalies;
    let floor = a.floors.iter().find(|f| f.scope.contains(group)).map_or(a.impact_floor, |f| f.impact_floor);
    DetectConfig { threshold: a.threshold, impact_floor: floor, baseline: BaselineConfig { weeks: a.weeks, ..BaselineConfig::default() } }
}

/// Evaluates the buckets of `grain` in `[from, to)` (Unix seconds, bucket
/// aligned). Returns how many anomalies were opened or extended.
pub async fn run(state: &InsightsState, grain: Grain, from: i64, to: i64) -> Result<usize, StoreError> {
    let g = grain.seconds();
    let (from, to) = (from.div_euclid(g) * g, to.div_euclid(g) * g);
    if from >= to {
        return Ok(0);
    }
    let history = state.anomalies.weeks as i64 * 7 * 86_400;
    let start = from - history;
    let groups = series::group_series(&state.store, start, to, &Scope::default()).await?;
    let mut stored: HashMap<String, AnomalyRecord> = load(state).await?.into_iter().map(|r| (r.id.clone(), r)).collect();
    let mut changed: Vec<String> = Vec::new();
    let now = iso(Utc::now().timestamp());
    for (group, hours) in &groups {
        if grain == Grain::Hour && group.is_cloud() && series::is_daily(start, hours) {
            continue;
        }
        let values = match grain {
            Grain::Hour => hours.clone(),
            Grain::Day => series::daily(hours),
        };
        let s = Series { start, grain, values };
        let first = usize::try_from((from - start) / g).unwrap_or(0);
        let found = anomaly::detect(&s, first, &detect_config(state, group));
        for a in found {
            // Continues an open anomaly of the previous run?
            let previous = stored.values_mut().find(|r| {
                r.status != Status::Resolved
                    && r.group == *group
                    && r.anomaly.grain == grain
                    && r.anomaly.direction == a.direction
                    && r.anomaly.end == a.start
            });
            let id = match previous {
                Some(r) => {
                    let x = &mut r.anomaly;
                    x.end = a.end;
                    x.actual += a.actual;
                    x.expected += a.expected;
                    x.band_low += a.band_low;
                    x.band_high += a.band_high;
                    x.impact = x.actual - x.expected;
                    x.impact_pct = (!x.expected.is_zero()).then(|| (x.impact * Decimal::ONE_HUNDRED / x.expected).round_dp(2).normalize());
                    if a.score.abs() > x.score.abs() {
                        x.score = a.score;
                    }
                    x.ongoing = a.ongoing;
                    r.id.clone()
                }
                None => {
                    let id = anomaly_id(grain, group, a.start);
                    match stored.get_mut(&id) {
                        Some(r) => r.anomaly = Anomaly { contributors: std::mem::take(&mut r.anomaly.contributors), ..a },
                        None => {
                            stored.insert(
                                id.clone(),
                                AnomalyRecord {
                                    id: id.clone(),
                                    group: group.clone(),
                                    anomaly: a,
                                    status: Status::Open,
                                    first_seen: now.clone(),
                                    resolved_at: None,
                                    reason: None,
                                    notified: false,
                                },
                            );
                        }
                    }
                    id
                }
            };
            changed.push(id);
        }
    }
    let opened = changed.len();
    // Money as the ledger would print it: no trailing zeros.
    for id in &changed {
        if let Some(r) = stored.get_mut(id) {
            let x = &mut r.anomaly;
            for d in [&mut x.actual, &mut x.expected, &mut x.band_low, &mut x.band_high, &mut x.impact] {
                *d = d.normalize();
            }
        }
    }
    // Open anomalies whose next bucket was evaluated now (an anomaly ending
    // before `to` did not continue into it) are over.
    for r in stored.values_mut() {
        if r.status == Status::Open && r.anomaly.grain == grain && r.anomaly.end >= from && r.anomaly.end < to {
            r.status = Status::Resolved;
            r.resolved_at = Some(now.clone());
            r.anomaly.ongoing = false;
            changed.push(r.id.clone());
        }
    }
    for id in &changed[..opened] {
        if let Some(r) = stored.get_mut(id) {
            r.anomaly.contributors = contributors(state, &r.group, &r.anomaly).await?;
        }
    }
    changed.sort();
    changed.dedup();
    let records: Vec<&AnomalyRecord> = changed.iter().filter_map(|id| stored.get(id)).collect();
    save(state, &records).await?;
    notify_new(state, changed.iter().filter_map(|id| stored.get(id)).cloned().collect()).await?;
    if opened > 0 {
        tracing::info!(grain = grain.name(), from = %iso(from), to = %iso(to), anomalies = opened, "cost anomalies found");
    }
    Ok(opened)
}

/// Which operation, token kind or provider moved most in the window (for
/// an imported bill: which resource or SKU of the provider's service):
/// actual against the median of the same window in the reference weeks.
async fn contributors(state: &InsightsState, group: &Group, a: &Anomaly) -> Result<Vec<anomaly::Contributor>, StoreError> {
    let mut top = Vec::new();
    let dims = if group.is_cloud() {
        [Dimension::Resource, Dimension::Sku, Dimension::UsageType]
    } else {
        [Dimension::Operation, Dimension::UsageType, Dimension::Provider]
    };
    for dim in dims {
        // Cost per value in the anomaly's window (k = 0) and in the same
        // window k weeks before.
        let by_value = series::window_costs(&state.store, (a.start, a.end), state.anomalies.weeks, dim, &group.scope()).await?;
        if by_value.len() < 2 {
            // One value (a single provider, say) moved by the whole change: it explains nothing.
            continue;
        }
        let items = by_value.into_iter().filter(|(value, _)| !value.is_empty()).map(|(value, costs)| {
            let mut past: Vec<f64> = costs[1..].iter().map(|c| costplane_insights::to_f64(*c)).collect();
            let expected = costplane_insights::money(costplane_insights::baseline::median(&mut past));
            (dim.name().to_owned(), value, costs[0].normalize(), expected.normalize())
        });
        // Each dimension's top few, so a dimension of many values is not
        // held whole while the next is read.
        top.extend(top_contributors(items.collect(), 3));
    }
    Ok(top_contributors(top.into_iter().map(|c| (c.dimension, c.value, c.actual, c.expected)).collect(), 3))
}

/// Tells `[anomalies] notify` about anomalies not yet notified that ended
/// in the last two days, open or already over (an hour's jump that came
/// back is still news); a backfill over old history stays quiet.
async fn notify_new(state: &InsightsState, candidates: Vec<AnomalyRecord>) -> Result<(), StoreError> {
    let recent = Utc::now().timestamp() - 2 * 86_400;
    let mut sent = Vec::new();
    for mut r in candidates {
        if r.notified || r.status == Status::Dismissed || r.anomaly.end < recent {
            continue;
        }
        let a = &r.anomaly;
        let g = &r.group;
        let summary = format!(
            "Cost {} for {}/{}/{}/{} ({}{}): {} {} against {} expected ({}{}), {} to {}",
            a.direction.name(),
            g.tenant,
            g.project,
            g.service,
            if g.model.is_empty() { "-" } else { &g.model },
            g.source,
            if g.provider_service.is_empty() { String::new() } else { format!(", {}", g.provider_service) },
            a.actual.round_dp(2),
            state.currency,
            a.expected.round_dp(2),
            if a.impact >= Decimal::ZERO { "+" } else { "" },
            a.impact.round_dp(2),
            iso(a.start),
            iso(a.end)
        );
        let mut labels = BTreeMap::from([
            ("anomaly_id".to_owned(), r.id.clone()),
            ("grain".to_owned(), a.grain.name().to_owned()),
            ("direction".to_owned(), a.direction.name().to_owned()),
            ("tenant".to_owned(), g.tenant.clone()),
            ("project".to_owned(), g.project.clone()),
            ("service".to_owned(), g.service.clone()),
            ("model".to_owned(), g.model.clone()),
            ("source".to_owned(), g.source.clone()),
        ]);
        if !g.provider_service.is_empty() {
            labels.insert("provider_service".to_owned(), g.provider_service.clone());
        }
        let event = Event {
            alertname: "CostplaneCostAnomaly",
            severity: "warning",
            summary,
            data: serde_json::to_value(&r).expect("anomalies serialize"),
            labels,
            link: format!("{}/api/v1/anomalies?status=open", state.public_url),
            starts_at: iso(a.start),
            ends_at: None,
        };
        if notify::deliver(&state.http, &state.anomalies.notify, &state.anomalies.notify_hosts, &event).await {
            r.notified = true;
            sent.push(r);
        }
    }
    save(state, &sent.iter().collect::<Vec<_>>()).await
}

/// The next bucket of `grain` to evaluate, stored.
pub async fn progress(state: &InsightsState) -> Result<HashMap<String, i64>, StoreError> {
    Ok(state
        .store
        .records(RecordTable::InsightsProgress)
        .await?
        .into_iter()
        .filter_map(|r| Some((r.key, serde_json::from_str::<serde_json::Value>(&r.body).ok()?["next"].as_i64()?)))
        .collect())
}

/// The end of the closed hours from `from`, at most `to` (Unix seconds): the
/// first hour of `[from, to)` the ledger still holds provisional, or `to`.
/// Hours without usage have no revision and count as closed (nothing is
/// coming for them).
async fn closed_until(state: &InsightsState, from: i64, to: i64) -> Result<i64, StoreError> {
    if from >= to {
        return Ok(to);
    }
    let ledger = costplane_store::ledger::Ledger::new(std::sync::Arc::clone(&state.store));
    let open = ledger
        .hour_states(from * NS, to * NS)
        .await?
        .into_iter()
        .filter(|s| s.status != costplane_ledger::CLOSED)
        .map(|s| s.hour_ns.div_euclid(NS))
        .min();
    Ok(open.map_or(to, |h| h.min(to)))
}

/// One step: evaluates again the already evaluated buckets that `reclosed`
/// changes (`[earliest hour, end of the latest hour)` the closer closed
/// again with late usage or an import wrote, if any): the buckets holding
/// those hours and the ones whose history (`[anomalies] weeks`) holds them,
/// not every bucket since (an imported month of last spring would
/// otherwise evaluate everything from then to now); then every closed, not
/// yet evaluated bucket.
pub async fn step(state: &InsightsState, now: i64, reclosed: Option<(i64, i64)>) -> Result<(), StoreError> {
    let progress = progress(state).await?;
    if let Some((from, to)) = reclosed {
        let began = std::time::Instant::now();
        let history = state.anomalies.weeks as i64 * 7 * 86_400;
        for grain in [Grain::Hour, Grain::Day] {
            if let Some(&next) = progress.get(grain.name()) {
                let g = grain.seconds();
                let to = to.saturating_add(history).saturating_add(g - 1).div_euclid(g).saturating_mul(g).min(next);
                if from < to {
                    run(state, grain, from, to).await?;
                }
            }
        }
        // Late usage re-closes hours often and quickly; an imported bill
        // takes minutes, which an operator should see.
        let seconds = began.elapsed().as_secs_f64();
        if seconds >= 1.0 {
            tracing::info!(from = %iso(from), to = %iso(to), seconds, "anomalies evaluated again over re-closed hours");
        } else {
            tracing::debug!(from = %iso(from), to = %iso(to), seconds, "anomalies evaluated again over re-closed hours");
        }
    }
    let due_to = (now - state.close_after_secs).div_euclid(HOUR) * HOUR;
    for grain in [Grain::Hour, Grain::Day] {
        let g = grain.seconds();
        let lookback = i64::from(state.anomalies.initial_lookback_hours) * HOUR;
        let next = progress.get(grain.name()).copied().unwrap_or_else(|| (due_to.div_euclid(g) * g - lookback).div_euclid(g) * g);
        let closed_to = closed_until(state, next, due_to).await?.div_euclid(g) * g;
        if next >= closed_to {
            continue;
        }
        run(state, grain, next, closed_to).await?;
        let body = serde_json::json!({ "next": closed_to }).to_string();
        state.store.put_records(RecordTable::InsightsProgress, &[Record::new(grain.name(), body, now_ns())]).await?;
    }
    Ok(())
}
