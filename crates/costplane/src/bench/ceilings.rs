//! The ceilings a gateway is compared with, measured on the same requests
//! in the same run, on one core of this process:
//! - OTLP decode only: protobuf → costplane's rows (`decode_request`);
//! - Parquet write only: those rows → Arrow columns shaped like
//!   `otel_traces` → a zstd Parquet file (the `parquet` crate's Arrow
//!   writer), i.e. what storing a span as a Parquet segment costs at least.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use arrow::array::{ArrayRef, ListBuilder, MapBuilder, MapFieldNames, StringBuilder, TimestampNanosecondBuilder, UInt64Builder};
use arrow::record_batch::RecordBatch;
use costplane_telemetry::{decode_request, Attributes, Encoding, Limits, Signal, SpanRow};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// Rows per Arrow batch (and Parquet row group slice) in the write ceiling.
const CHUNK: usize = 8192;

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
/// zstd Parquet file at `path`.
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
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
    let mut writer: Option<ArrowWriter<std::fs::File>> = None;
    for chunk in rows.chunks(CHUNK) {
        let batch = traces_batch(chunk)?;
        if writer.is_none() {
            writer = Some(ArrowWriter::try_new(file.try_clone()?, batch.schema(), Some(props.clone()))?);
        }
        if let Some(w) = writer.as_mut() {
            w.write(&batch)?;
        }
    }
    if let Some(w) = writer {
        w.close()?;
    }
    file.sync_all()?;
    let secs = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(path)?.len();
    Ok(Ceiling { spans: rows.len() as u64, secs, bytes })
}

fn map_builder() -> MapBuilder<StringBuilder, StringBuilder> {
    let names = MapFieldNames { entry: "key_value".into(), key: "key".into(), value: "value".into() };
    MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new())
}

fn push_map(b: &mut MapBuilder<StringBuilder, StringBuilder>, attrs: &Attributes) -> Result<(), arrow::error::ArrowError> {
    for (k, v) in attrs {
        b.keys().append_value(k);
        b.values().append_value(v);
    }
    b.append(true)
}

/// `otel_traces`' columns for `rows`, with the exporter's names and the
/// embedded store's types (nanosecond timestamps, maps of strings, the
/// Nested columns as lists).
fn traces_batch(rows: &[SpanRow]) -> anyhow::Result<RecordBatch> {
    let n = rows.len();
    let mut ts = TimestampNanosecondBuilder::with_capacity(n);
    let mut strings: Vec<StringBuilder> = (0..11).map(|_| StringBuilder::with_capacity(n, n * 16)).collect();
    let mut resource_attrs = map_builder();
    let mut span_attrs = map_builder();
    let mut duration = UInt64Builder::with_capacity(n);
    let mut ev_ts = ListBuilder::new(TimestampNanosecondBuilder::new());
    let mut ev_name = ListBuilder::new(StringBuilder::new());
    let mut ev_attrs = ListBuilder::new(map_builder());
    let mut link_trace = ListBuilder::new(StringBuilder::new());
    let mut link_span = ListBuilder::new(StringBuilder::new());
    let mut link_state = ListBuilder::new(StringBuilder::new());
    let mut link_attrs = ListBuilder::new(map_builder());
    for r in rows {
        ts.append_value(r.timestamp_ns);
        let texts: [&str; 11] = [
            &r.trace_id,
            &r.span_id,
            &r.parent_span_id,
            &r.trace_state,
            &r.span_name,
            r.span_kind,
            &r.resource.service_name,
            &r.scope.name,
            &r.scope.version,
            r.status_code,
            &r.status_message,
        ];
        for (b, t) in strings.iter_mut().zip(texts) {
            b.append_value(t);
        }
        push_map(&mut resource_attrs, &r.resource.attributes)?;
        push_map(&mut span_attrs, &r.span_attributes)?;
        duration.append_value(r.duration_ns);
        for e in &r.events {
            ev_ts.values().append_value(e.timestamp_ns);
            ev_name.values().append_value(&e.name);
            push_map(ev_attrs.values(), &e.attributes)?;
        }
        ev_ts.append(true);
        ev_name.append(true);
        ev_attrs.append(true);
        for l in &r.links {
            link_trace.values().append_value(&l.trace_id);
            link_span.values().append_value(&l.span_id);
            link_state.values().append_value(&l.trace_state);
            push_map(link_attrs.values(), &l.attributes)?;
        }
        link_trace.append(true);
        link_span.append(true);
        link_state.append(true);
        link_attrs.append(true);
    }
    let mut s: Vec<ArrayRef> = strings.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
    let mut take = |i: usize| std::mem::replace(&mut s[i], Arc::new(arrow::array::NullArray::new(0)));
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("Timestamp", Arc::new(ts.finish())),
        ("TraceId", take(0)),
        ("SpanId", take(1)),
        ("ParentSpanId", take(2)),
        ("TraceState", take(3)),
        ("SpanName", take(4)),
        ("SpanKind", take(5)),
        ("ServiceName", take(6)),
        ("ResourceAttributes", Arc::new(resource_attrs.finish())),
        ("ScopeName", take(7)),
        ("ScopeVersion", take(8)),
        ("SpanAttributes", Arc::new(span_attrs.finish())),
        ("Duration", Arc::new(duration.finish())),
        ("StatusCode", take(9)),
        ("StatusMessage", take(10)),
        ("Events.Timestamp", Arc::new(ev_ts.finish())),
        ("Events.Name", Arc::new(ev_name.finish())),
        ("Events.Attributes", Arc::new(ev_attrs.finish())),
        ("Links.TraceId", Arc::new(link_trace.finish())),
        ("Links.SpanId", Arc::new(link_span.finish())),
        ("Links.TraceState", Arc::new(link_state.finish())),
        ("Links.Attributes", Arc::new(link_attrs.finish())),
    ];
    Ok(RecordBatch::try_from_iter(columns)?)
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
        assert_eq!(names.len(), 22);
        assert_eq!(names[0], "Timestamp");
        assert_eq!(names[11], "SpanAttributes");
        let d = decode(&pool, 250).unwrap();
        assert_eq!(d.spans, 300);
    }
}
