//! Integration tests of the server crate: a real server in-process over a
//! real DuckDB store (wrapped to be slow or flaky where a test needs it),
//! driven by real OTLP/gRPC and OTLP/HTTP requests.

mod api;
mod backpressure;
mod compression;
mod focus_export;
mod guard;
mod hostile;
mod incremental;
mod insights;
mod limits;
mod metrics;
mod secrets;
mod slow_clients;
mod storage_days;
mod support;
mod surfaces;
