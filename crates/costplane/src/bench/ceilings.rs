//! The ceilings a gateway is compared with, measured on the same requests
//! in the same run, on one core of this process:
//! - OTLP decode only: protobuf → costplane's rows (`decode_request`);
//! - Parquet write only: those rows → the embedded store's `otel_traces`
//!   Arrow columns → a zstd Parquet segment, by the store's own encoder
//!   (`costplane_store::duckdb::write_traces_segment`), i.e. what storing a
//!   span as a segment costs without the gateway around it.

use std::time::Instant;

use anyhow::Context;
use costplane_telemetry::{decode_request, Encoding, Limits, Signal, SpanRow};

/// A ceiling: spans per second on one core, and what it wrote.
#[derive(Debug, Clone, Copy)]
pub struct Ceiling {
    pub spans: u64,
    pub secs: f64,
    /// Bytes written (Parquet), 0 for decode.
    pub bytes: u64,
}

impl Ceiling {
    pub fn rate(&self) -> f64 {
        self.spans as f64 / self.secs.max(1e-9)
    }

    /// CPU seconds per million spans (one core busy throughout).
    pub fn cpu_per_million(&self) -> f64 {
        self.secs / self.spans.max(1) as f64 * 1e6
    }
}

/// Decodes `total` spans' worth of requests from `pool`.
pub fn decode(pool: &[(Vec<u8>, u64)], total: u64) -> anyhow::Result<Ceiling> {
    let limits = Limits::default();
    let started = Instant::now();
    let mut spans = 0u64;
    let mut i = 0;
    while spans < total {
        let conv = decode_request(Signal::Traces, Encoding::Protobuf, &pool[i % pool.len()].0, &limits).context("a generated request")?;
        spans += conv.accepted;
        std::hint::black_box(&conv.batch);
        i += 1;
    }
    Ok(Ceiling { spans, secs: started.elapsed().as_secs_f64(), bytes: 0 })
}

/// Writes `total` spans (decoded from `pool` beforehand, not timed) to a
/// Parquet file at `path`, encoded as the embedded store encodes a segment.
pub fn parquet_write(pool: &[(Vec<u8>, u64)], total: u64, path: &std::path::Path) -> anyhow::Result<Ceiling> {
    let limits = Limits::default();
    let mut rows: Vec<SpanRow> = Vec::with_capacity(total as usize);
    let mut i = 0;
    while (rows.len() as u64) < total {
        let conv = decode_request(Signal::Traces, Encoding::Protobuf, &pool[i % pool.len()].0, &limits).context("a generated request")?;
        rows.extend(conv.batch.spans);
        i += 1;
    }
    let started = Instant::now();
    let bytes = costplane_store::duckdb::write_traces_segment(&rows, path).context("writing the Parquet ceiling's file")?;
    let secs = started.elapsed().as_secs_f64();
    Ok(Ceiling { spans: rows.len() as u64, secs, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parquet_ceiling_writes_every_span_readably() {
        let mut rng = rand::rng();
        let pool = crate::loadgen::request_pool(100, "t", &mut rng);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        // 250 spans asked: three requests of 100 are decoded, all 300 written.
        let c = parquet_write(&pool, 250, &path).unwrap();
        assert_eq!(c.spans, 300);
        assert!(c.bytes > 0 && c.secs > 0.0);
        let reader = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        use parquet::file::reader::FileReader;
        let meta = reader.metadata();
        assert_eq!(meta.file_metadata().num_rows(), 300);
        let names: Vec<&str> = meta.file_metadata().schema_descr().root_schema().get_fields().iter().map(|f| f.name()).collect();
        // otel_traces' 17 columns, Events and Links as lists of structs.
        assert_eq!(names.len(), 17);
        assert_eq!(names[0], "Timestamp");
        assert_eq!(names[11], "SpanAttributes");
        assert_eq!(names[15], "Events");
        let d = decode(&pool, 250).unwrap();
        assert_eq!(d.spans, 300);
    }
}
