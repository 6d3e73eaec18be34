//! costplane-server: the OTLP receivers, the HTTP API and the server's
//! lifecycle (start, serve, drain on shutdown).

pub mod activity;
pub mod api;
pub mod auth;
pub mod config;
pub mod connections;
pub mod costs;
pub mod csv;
mod error;
pub mod health;
pub mod import;
pub mod insights;
pub mod k8s_api;
pub mod kubernetes;
pub mod otlp;
pub mod postgres;
pub mod reconcile;
pub mod secret;
mod server;
pub mod telemetry_costs;
pub mod tls;
pub mod unit_costs;
pub mod web;

pub use config::{Config, Overrides, StoreKind};
pub use error::{ApiError, ErrorCode, ServerError};
pub use server::{open_store, Server};
