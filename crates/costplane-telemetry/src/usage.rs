//! Usage facts that travel with a telemetry batch, so a store writes them
//! together with the telemetry they were measured from. The types live in
//! `costplane-ledger`; this module re-exports them for the batch's users.

pub use costplane_ledger::*;
