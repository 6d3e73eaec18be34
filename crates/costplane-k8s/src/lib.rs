//! Kubernetes workload cost from the OTLP metrics costplane receives, and
//! cloud bills from FOCUS files: pure computation, no I/O besides reading
//! the files handed to [`focus`].
//!
//! - [`sample`]: Kubernetes samples out of a converted metrics batch.
//! - [`meter`]: per-hour accumulation as metrics arrive; closes hours into usage.
//! - [`samples`]: accepted samples as stored rows, what a restarted meter is rebuilt from.
//! - [`usage`]: an hour's usage as stored rows (the ledger's usage table) and back.
//! - [`allocate`]: an hour's usage into priced lines (max(request, usage),
//!   idle per node, shared namespaces).
//! - [`share`]: exact even / weighted splits.
//! - [`ledger`]: the adapter from lines to ledger rows.
//! - [`focus`]: FOCUS CSV / CSV.gz parsing into ledger rows (`x_Source = cloud`).

pub mod allocate;
pub mod config;
mod error;
pub mod focus;
mod focus_parquet;
pub mod ledger;
pub mod meter;
pub mod sample;
pub mod samples;
pub mod share;
pub mod usage;

pub use config::{KubernetesConfig, Prices, SampleLimits, ShareSplit};
pub use costplane_telemetry::usage::MONEY_SCALE;
pub use error::K8sError;
pub use meter::K8sMeter;

use costplane_telemetry::usage::{KubernetesUsage, LedgerRow};

/// Prices one stored hour of Kubernetes usage (the closer's `kubernetes`
/// scope): allocation, idle per node (clamps counted in `stats`), shared
/// splits, as ledger rows with `x_Source = kubernetes`. The rows of each
/// write scope ([`usage::write_scope`]: one owner's) are allocated apart.
pub fn price_hour(
    hour_ns: i64,
    rows: &[KubernetesUsage],
    cfg: &KubernetesConfig,
    currency: &str,
    charge_status: costplane_telemetry::usage::ChargeStatus,
    stats: &mut allocate::AllocationStats,
) -> Result<Vec<LedgerRow>, K8sError> {
    // Each write scope (an owner's usage) is allocated apart.
    let mut scopes: std::collections::BTreeMap<&str, Vec<&KubernetesUsage>> = std::collections::BTreeMap::new();
    for r in rows {
        scopes.entry(r.cluster.as_str()).or_default().push(r);
    }
    let mut lines = Vec::new();
    for scoped in scopes.values() {
        let usage = usage::decode(hour_ns, scoped.iter().copied())?;
        lines.extend(allocate::allocate(&usage, cfg, stats));
    }
    Ok(ledger::rows(&lines, currency, &cfg.prices.version(), charge_status))
}
