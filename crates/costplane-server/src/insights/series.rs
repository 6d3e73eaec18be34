//! The one place anomalies, forecasts and budgets read the ledger: hourly
//! cost per group over a window.
//!
//! Everything else in `insights` works on what [`hourly_cost`] returns, so
//! when the ledger gains its own repository (hourly aggregates, closed
//! hours) only this function changes. Today it sums `costplane_ledger`'s
//! `BilledCost` per hour with the same parameterised SQL the cost API uses.

use std::collections::BTreeMap;

use costplane_store::{Param, Params, Store, StoreError};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::config::Scope;
use crate::costs::decimal;
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

/// Cost per hour of `[from, to)` (Unix seconds, whole hours), per distinct
/// values of `dims`, for ledger rows inside `scope`. Each series has one
/// entry per hour of the window, zero where the ledger has nothing.
pub async fn hourly_cost(
    store: &dyn Store,
    from: i64,
    to: i64,
    dims: &[Dimension],
    scope: &Scope,
) -> Result<BTreeMap<Vec<String>, Vec<Decimal>>, StoreError> {
    let (from, to) = (from.div_euclid(HOUR) * HOUR, to.div_euclid(HOUR) * HOUR);
    let hours = usize::try_from((to - from) / HOUR).unwrap_or(0);
    let mut out: BTreeMap<Vec<String>, Vec<Decimal>> = BTreeMap::new();
    if hours == 0 {
        return Ok(out);
    }
    let dialect = store.dialect();
    let mut p = Params::new(dialect);
    let col = dialect.ns("ChargePeriodStart");
    let mut filter = format!("{col} >= {} AND {col} < {}", p.add(Param::Int(from * NS)), p.add(Param::Int(to * NS)));
    for (name, value) in scope.fields() {
        let d = Dimension::parse(name).expect("scope fields are dimensions");
        let placeholder = p.add(Param::Str(value.to_owned()));
        filter.push_str(&format!(" AND {}", d.matches(&placeholder)));
    }
    let mut select = vec![format!("{} AS h", dialect.trunc_ns("hour", "ChargePeriodStart"))];
    let mut group = vec!["h".to_owned()];
    for (i, d) in dims.iter().enumerate() {
        select.push(format!("{} AS d{i}", d.column()));
        group.push(format!("d{i}"));
    }
    select.push("sum(BilledCost) AS cost".into());
    let sql = format!("SELECT {} FROM costplane_ledger WHERE {filter} GROUP BY {}", select.join(", "), group.join(", "));
    let result = store.query_with(&sql, &p.values).await?;
    for row in &result.rows {
        let h = row[0].as_i64().unwrap_or(0) / NS;
        let Ok(i) = usize::try_from((h - from) / HOUR) else { continue };
        if i >= hours {
            continue;
        }
        let key: Vec<String> = (0..dims.len()).map(|k| text(&row[k + 1])).collect();
        let series = out.entry(key).or_insert_with(|| vec![Decimal::ZERO; hours]);
        series[i] += decimal(&row[dims.len() + 1]);
    }
    Ok(out)
}

/// [`hourly_cost`] per [`Group`].
pub async fn group_series(store: &dyn Store, from: i64, to: i64, scope: &Scope) -> Result<BTreeMap<Group, Vec<Decimal>>, StoreError> {
    Ok(hourly_cost(store, from, to, &GROUP_DIMS, scope).await?.into_iter().map(|(k, v)| (Group::from_values(&k), v)).collect())
}

/// Sums hourly values into days (`hours` must start at midnight UTC).
pub fn daily(hours: &[Decimal]) -> Vec<Decimal> {
    hours.chunks(24).map(|c| c.iter().sum()).collect()
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}
