//! costplane's own health series on `/metrics`: ingest, buffer, store.

use std::fmt::Write as _;

use costplane_pipeline::StatsSnapshot;

/// Writes a family's `# HELP` and `# TYPE` lines.
pub(crate) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

/// Writes a family with one unlabelled sample.
pub(crate) fn one(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Escapes a label value for the Prometheus text format.
pub fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Appends the pipeline's series to `out`.
pub fn write_pipeline_metrics(out: &mut String, s: &StatsSnapshot) {
    one(out, "costplane_ingest_accepted_rows_total", "counter", "Rows accepted into the pipeline.", s.accepted_rows);
    one(out, "costplane_ingest_refused_rows_total", "counter", "Rows refused because the buffer was full (clients retry).", s.refused_rows);
    one(out, "costplane_store_written_rows_total", "counter", "Rows the store committed.", s.written_rows);
    one(
        out,
        "costplane_store_write_errors_total",
        "counter",
        "Failed store write attempts (retried, or the batch was split to isolate bad data).",
        s.write_errors,
    );
    one(out, "costplane_store_write_retries_total", "counter", "Store write attempts that were retried.", s.retries);
    one(out, "costplane_store_write_panics_total", "counter", "Store writes that panicked (retried).", s.write_panics);
    one(out, "costplane_store_write_seconds_total", "counter", "Time spent in successful store writes.", s.write_seconds);
    one(out, "costplane_store_up", "gauge", "1 when the store's last write succeeded.", u8::from(s.store_healthy));
    one(out, "costplane_queue_bytes", "gauge", "Bytes of decoded rows held in memory, waiting for the store.", s.queued_bytes);
    family(out, "costplane_buffer_bytes", "gauge", "Bytes of the disk buffer's segments.");
    let _ = writeln!(out, "costplane_buffer_bytes{{kind=\"{}\"}} {}", s.buffer.kind, s.buffer.bytes);
    one(out, "costplane_buffer_limit_bytes", "gauge", "The buffer's size limit.", s.buffer.limit_bytes);
    one(out, "costplane_buffer_records", "gauge", "Accepted requests not yet stored (or dead-lettered).", s.buffer.records);
    one(out, "costplane_ingest_lag_seconds", "gauge", "Age of the oldest accepted, not yet stored request.", s.buffer.oldest_age_seconds);
    one(
        out,
        "costplane_buffer_replayed_requests_total",
        "counter",
        "Requests replayed from the disk buffer at start.",
        s.replayed_requests,
    );
    family(out, "costplane_dead_letter_items_total", "counter", "Items moved to the dead-letter area, by tenant, signal and reason.");
    for d in &s.dead_letters {
        let _ = writeln!(
            out,
            "costplane_dead_letter_items_total{{tenant=\"{}\",signal=\"{}\",reason=\"{}\"}} {}",
            label_value(&d.tenant),
            label_value(&d.signal),
            label_value(&d.reason),
            d.items
        );
    }
}
