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

use costplane_ledger::{CostFilter, Step};
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
}

/// The dimensions of a [`Group`], in its field order.
pub const GROUP_DIMS: [Dimension; 5] = [Dimension::Source, Dimension::Tenant, Dimension::Project, Dimension::Service, Dimension::Model];

impl Group {
    pub fn from_values(v: &[String]) -> Group {
        let at = |i: usize| v.get(i).cloned().unwrap_or_default();
        Group { source: at(0), tenant: at(1), project: at(2), service: at(3), model: at(4) }
    }

    /// The group as a scope (every field set).
    pub fn scope(&self) -> Scope {
        Scope {
            tenant: Some(self.tenant.clone()),
            project: Some(self.project.clone()),
            service: Some(self.service.clone()),
            model: Some(self.model.clone()),
            source: Some(self.source.clone()),
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
    let mut equals: Vec<(Dimension, String)> = scope
        .fields()
        .into_iter()
        .map(|(name, value)| (Dimension::parse(name).expect("scope fields are dimensions"), value.to_owned()))
        .collect();
    if which == Hours::Closed {
        equals.push((Dimension::ChargeStatus, costplane_ledger::CLOSED.to_owned()));
    }
    let filter = CostFilter { from_ns: from * NS, to_ns: to * NS, tenant: None, equals };
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

/// [`hourly_cost`] of closed hours per [`Group`].
pub async fn group_series(store: &Arc<dyn Store>, from: i64, to: i64, scope: &Scope) -> Result<BTreeMap<Group, Vec<Decimal>>, StoreError> {
    Ok(hourly_cost(store, from, to, &GROUP_DIMS, scope, Hours::Closed)
        .await?
        .into_iter()
        .map(|(k, v)| (Group::from_values(&k), v))
        .collect())
}

/// Sums hourly values into days (`hours` must start at midnight UTC).
pub fn daily(hours: &[Decimal]) -> Vec<Decimal> {
    hours.chunks(24).map(|c| c.iter().sum()).collect()
}
