//! costplane-cost: turning usage into money.
//!
//! - [`catalog`]: the versioned price catalog (shipped, plus user overrides);
//! - [`model_name`]: model-name normalization for catalog matching;
//! - [`overrides`]: user price override files (partial entries, numbers);
//! - [`llm`]: LLM token usage from span attributes, and its price;
//! - [`meter`]: usage from batches, ledger rows from usage;
//! - [`aggregate`]: an hour's priced usage, added a fact at a time;
//! - [`telemetry_costs`]: what telemetry costs to keep, and what-ifs.
//!
//! Money is `rust_decimal::Decimal` end to end.

pub mod aggregate;
pub mod catalog;
mod error;
pub mod llm;
pub mod meter;
pub mod model_name;
pub mod overrides;
pub mod telemetry_costs;
mod usage_names;

pub use catalog::Catalog;
pub use error::CostError;
pub use meter::{Meter, TelemetryRates, Tenancy};
