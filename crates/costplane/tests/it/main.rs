//! End-to-end tests of the `costplane` binary: each starts the real server
//! on free loopback ports with its own data directory.

mod anomalies;
mod bad_input;
mod bench;
mod billing;
mod budgets;
mod buffer_enospc;
mod cli_manners;
mod clickhouse_e2e;
mod clickhouse_outage;
mod deadletter_keys;
mod durability;
mod focus_import;
mod focus_roundtrip;
mod focus_scale;
mod kubernetes;
mod kubernetes_restart;
mod kubernetes_tenants;
mod kubernetes_volumes;
mod otlp_rust;
mod reconcile;
mod shutdown;
mod sql_cli;
mod support;
