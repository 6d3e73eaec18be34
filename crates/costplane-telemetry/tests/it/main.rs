//! costplane-telemetry integration tests: the decoder and converter under
//! random and mutated input (`fuzz.rs`), and the single-pass trace decoder
//! held to the prost path (`wire_spans.rs`).

mod fuzz;
mod wire_spans;
