//! costplane-telemetry integration tests: the decoder and converter under
//! random and mutated input (`fuzz.rs`), and the single-pass trace and log
//! decoders held to the prost path (`wire_spans.rs`, `wire_logs.rs`).

mod fuzz;
mod wire_logs;
mod wire_spans;
