//! costplane-telemetry integration tests: the decoder and converter under
//! random and mutated input (`fuzz.rs`).

mod fuzz;
