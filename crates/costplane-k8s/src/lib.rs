//! Kubernetes workload cost from the OTLP metrics costplane receives, and
//! cloud bills from FOCUS files: pure computation, no I/O besides reading
//! the files handed to [`focus`].
//!
//! - [`sample`]: Kubernetes samples out of a converted metrics batch.
//! - [`meter`]: per-hour accumulation as metrics arrive; closes hours.
//! - [`allocate`]: an hour's usage into priced lines (max(request, usage),
//!   idle per node, shared namespaces).
//! - [`share`]: exact even / weighted splits.
//! - [`ledger`]: the adapter from lines to ledger rows.
//! - [`focus`]: FOCUS CSV / CSV.gz parsing into ledger rows (`x_Source = cloud`).

pub mod allocate;
pub mod config;
mod error;
pub mod focus;
pub mod ledger;
pub mod meter;
pub mod sample;
pub mod share;

pub use config::{KubernetesConfig, Prices, ShareSplit};
pub use costplane_telemetry::usage::MONEY_SCALE;
pub use error::K8sError;
pub use meter::K8sMeter;
