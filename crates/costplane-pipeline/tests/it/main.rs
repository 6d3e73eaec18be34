//! Pipeline tests over the real embedded store (DuckDB), with a wrapper that
//! injects the faults a store can show: a panic, an outage, a rejection of
//! one tenant's data, a crash between storing a batch and logging it, an
//! outage long enough to spill the queue to disk; the disk buffer under
//! disk faults; and a model-based test of the buffer.

mod disk_faults;
mod faults;
mod spill;
mod wal_model;
