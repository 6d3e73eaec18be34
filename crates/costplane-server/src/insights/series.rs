//! The one place anomalies, forecasts and budgets read the ledger: hourly
//! cost per group over a window.
//!
//! Everything else in `insights` works on what [`hourly_cost`] returns. It
//! asks the ledger repository ([`Ledger::sum_costs`]) for hourly sums of
//! current revisions, so a repriced or re-closed hour counts once, at its
//! newest figures. Anomalies and forecasts read closed hours only (an open
//! hour's provisional cost is still growing and would look like a drop);
//! budgets also count the open hours' provisional rows.

use std::collections::BTreeMap;

use std::sync::Arc;

use costplane_ledger::{CostFilter, Step, Windows};
use costplane_store::ledger::Ledger;
use costplane_store::{Store, StoreError};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::config::Scope;
use crate::costs::params::Dimension;

pub const HOUR: i64 = 3_600;
const NS: i64 = 1_000_000_000;

/// A group of the ledger anomalies are detected on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Group {
    pub source: String,
    pub tenant: String,
    pub project: String,
    pub service: String,
    pub model: String,
    /// Cloud bills only: the provider's service (FOCUS `ServiceName`), so
    /// that one service's spike is not lost in its account's total. Empty
    /// for costplane's own sources, whose service is a dimension already.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider_service: String,
}

/// The dimensions of a [`Group`], in its field order.
pub const GROUP_DIMS: [Dimension; 6] =
    [Dimension::Source, Dimension::Tenant, Dimension::Project, Dimension::Service, Dimension::Model, Dimension::ProviderService];

/// The source whose groups are split by provider service.
const CLOUD: &str = "cloud";

impl Group {
    pub fn from_values(v: &[String]) -> Group {
        let at = |i: usize| v.get(i).cloned().unwrap_or_default();
        let source = at(0);
        let provider_service = if source == CLOUD { at(5) } else { String::new() };
        Group { source, tenant: at(1), project: at(2), service: at(3), model: at(4), provider_service }
    }

    /// Whether the group is of an imported bill, whose granularity is the
    /// bill's (hourly or daily), not costplane's hour.
    pub fn is_cloud(&self) -> bool {
        self.source == CLOUD
    }

    /// The group as a scope (every field set).
    pub fn scope(&self) -> Scope {
        Scope {
            tenant: Some(self.tenant.clone()),
            project: Some(self.project.clone()),
            service: Some(self.service.clone()),
            model: Some(self.model.clone()),
            source: Some(self.source.clone()),
            provider_service: (!self.provider_service.is_empty()).then(|| self.provider_service.clone()),
        }
    }
}

/// Which ledger rows a series counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hours {
    /// Closed hours only: final figures (anomalies, forecasts' history).
    Closed,
    /// Closed hours and the open hours' provisional rows (budgets: spend
    /// shows before the hour closes).
    WithProvisional,
}

/// Cost per hour of `[from, to)` (Unix seconds, whole hours), per distinct
/// values of `dims`, for ledger rows inside `scope`. Each series has one
/// entry per hour of the window, zero where the ledger has nothing. Reads
/// current revisions only, through the ledger repository.
pub async fn hourly_cost(
    store: &Arc<dyn Store>,
    from: i64,
    to: i64,
    dims: &[Dimension],
    scope: &Scope,
    which: Hours,
) -> Result<BTreeMap<Vec<String>, Vec<Decimal>>, StoreError> {
    let (from, to) = (from.div_euclid(HOUR) * HOUR, to.div_euclid(HOUR) * HOUR);
    let hours = usize::try_from((to - from) / HOUR).unwrap_or(0);
    let mut out: BTreeMap<Vec<String>, Vec<Decimal>> = BTreeMap::new();
    if hours == 0 {
        return Ok(out);
    }
    let filter = filter(from, to, scope, which);
    let sums = Ledger::new(Arc::clone(store)).sum_costs(&filter, dims, Some(Step::Hour)).await?;
    for sum in sums {
        let h = sum.period_ns.unwrap_or(0) / NS;
        let Ok(i) = usize::try_from((h - from) / HOUR) else { continue };
        if i >= hours {
            continue;
        }
        let series = out.entry(sum.dims).or_insert_with(|| vec![Decimal::ZERO; hours]);
        series[i] += sum.cost;
    }
    Ok(out)
}

/// The ledger rows of `[from, to)` (Unix seconds) inside `scope`.
fn filter(from: i64, to: i64, scope: &Scope, which: Hours) -> CostFilter {
    let mut equals: Vec<(Dimension, String)> = scope
        .fields()
        .into_iter()
        .map(|(name, value)| (Dimension::parse(name).expect("scope fields are dimensions"), value.to_owned()))
        .collect();
    if which == Hours::Closed {
        equals.push((Dimension::ChargeStatus, costplane_ledger::CLOSED.to_owned()));
    }
    CostFilter { from_ns: from * NS, to_ns: to * NS, tenant: None, equals }
}

/// Closed cost per value of `dim` inside `scope`, in the window
/// `[start, end)` (`costs[0]`) and in the same window each of `weeks`
/// periods before it (`costs[k]`), a period being the whole weeks that
/// hold the window (one week for a window of up to a week), so that no two
/// windows overlap. One read, one row per value: the hours between the
/// windows are not summed, so a dimension of a hundred thousand values
/// costs a sum per value and window, whatever the weeks between.
pub async fn window_costs(
    store: &Arc<dyn Store>,
    (start, end): (i64, i64),
    weeks: usize,
    dim: Dimension,
    scope: &Scope,
) -> Result<Vec<(String, Vec<Decimal>)>, StoreError> {
    const WEEK: i64 = 7 * 86_400;
    let len = end - start;
    if len <= 0 {
        return Ok(Vec::new());
    }
    let every = (len + WEEK - 1) / WEEK * WEEK;
    let from = start - i64::try_from(weeks).unwrap_or(i64::MAX / every) * every;
    let windows = Windows { len_ns: len * NS, every_ns: every * NS };
    let sums = Ledger::new(Arc::clone(store)).sum_costs_in_windows(&filter(from, end, scope, Hours::Closed), &[dim], windows).await?;
    Ok(sums
        .into_iter()
        .map(|sum| {
            // Window j from `from` is the one k = weeks - j periods back.
            let mut costs = sum.costs;
            costs.reverse();
            costs.resize(weeks + 1, Decimal::ZERO);
            (sum.dims.into_iter().next().unwrap_or_default(), costs)
        })
        .collect())
}

/// [`hourly_cost`] of closed hours per [`Group`].
pub async fn group_series(store: &Arc<dyn Store>, from: i64, to: i64, scope: &Scope) -> Result<BTreeMap<Group, Vec<Decimal>>, StoreError> {
    let mut out: BTreeMap<Group, Vec<Decimal>> = BTreeMap::new();
    for (k, v) in hourly_cost(store, from, to, &GROUP_DIMS, scope, Hours::Closed).await? {
        // Other sources' provider services merge back into their group.
        match out.entry(Group::from_values(&k)) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(v);
            }
            std::collections::btree_map::Entry::Occupied(mut e) => {
                for (sum, x) in e.get_mut().iter_mut().zip(v) {
                    *sum += x;
                }
            }
        }
    }
    Ok(out)
}

/// Whether a bill's series is daily-granular (one charge per day, booked
/// at the day's first hour): it has cost, all of it at 00:00 UTC. (Only
/// bills are asked: a costplane source with spend at midnight only is
/// still hourly.) Its hours are not compared with each other: every other hour
/// is empty by nature. `start` is the series' first hour (Unix seconds).
pub fn is_daily(start: i64, hours: &[Decimal]) -> bool {
    let mut any = false;
    for (i, v) in hours.iter().enumerate() {
        if v.is_zero() {
            continue;
        }
        any = true;
        let at = start + i64::try_from(i).unwrap_or(0) * HOUR;
        if at.rem_euclid(86_400) != 0 {
            return false;
        }
    }
    any
}

/// Sums hourly values into days (`hours` must start at midnight UTC).
pub fn daily(hours: &[Decimal]) -> Vec<Decimal> {
    hours.chunks(24).map(|c| c.iter().sum()).collect()
}
