//! Rows → Arrow record batches, one per table. Telemetry batches carry the
//! schema `crate::tables` derives (each builder's `batch` is
//! `described_batch` for its table); the ledger and usage ones follow
//! `schema.rs`. DuckDB's appender ingests a record batch a vector (2,048
//! rows) at a time, which is its fast bulk path; there is no per-row INSERT.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Decimal128Array, Float64Array, Int32Array, ListArray, MapBuilder, StringArray, StringBuilder,
    StructArray, TimestampNanosecondArray, UInt32Array, UInt64Array, UInt8Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{Field, Float64Type, UInt64Type};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use costplane_telemetry::model::*;
use costplane_telemetry::usage::{LedgerRow, LlmUsageRow, TelemetryUsage, MONEY_SCALE};
use rust_decimal::Decimal;

// Builders are sized before they are filled (one pass to count, one to
// copy): grown as they fill, their buffers were reallocated and copied
// several times per batch, which profiles showed as a tenth of the
// embedded write path.

fn strings<'a>(values: impl Iterator<Item = &'a str> + Clone) -> ArrayRef {
    let (n, bytes) = values.clone().fold((0, 0), |(n, b), s| (n + 1, b + s.len()));
    let mut b = StringBuilder::with_capacity(n, bytes);
    for v in values {
        b.append_value(v);
    }
    Arc::new(b.finish())
}

fn timestamps(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::from(values.collect::<Vec<i64>>()))
}

fn maps<'a>(values: impl Iterator<Item = &'a Attributes> + Clone) -> Result<ArrayRef, ArrowError> {
    let (rows, entries, key_bytes, text_bytes) = values.clone().fold((0, 0, 0, 0), |(r, e, kb, tb), attrs| {
        (r + 1, e + attrs.len(), kb + attrs.iter().map(|(k, _)| k.len()).sum::<usize>(), tb + attrs.text_len())
    });
    let value_bytes = text_bytes - key_bytes;
    let mut b = MapBuilder::with_capacity(
        None,
        StringBuilder::with_capacity(entries, key_bytes),
        StringBuilder::with_capacity(entries, value_bytes),
        rows,
    );
    for attrs in values {
        for (k, v) in attrs {
            b.keys().append_value(k);
            b.values().append_value(v);
        }
        b.append(true)?;
    }
    Ok(Arc::new(b.finish()))
}

fn u64_lists<'a>(values: impl Iterator<Item = &'a Vec<u64>>) -> ArrayRef {
    Arc::new(ListArray::from_iter_primitive::<UInt64Type, _, _>(values.map(|v| Some(v.iter().copied().map(Some).collect::<Vec<_>>()))))
}

fn f64_lists<'a>(values: impl Iterator<Item = &'a Vec<f64>>) -> ArrayRef {
    Arc::new(ListArray::from_iter_primitive::<Float64Type, _, _>(values.map(|v| Some(v.iter().copied().map(Some).collect::<Vec<_>>()))))
}

/// A `STRUCT(...)[]` column from per-row lengths and flattened child columns.
fn struct_list(lengths: impl Iterator<Item = usize>, children: Vec<(&str, ArrayRef)>) -> ArrayRef {
    let offsets = OffsetBuffer::<i32>::from_lengths(lengths);
    let fields: Vec<(Arc<Field>, ArrayRef)> =
        children.into_iter().map(|(name, arr)| (Arc::new(Field::new(name, arr.data_type().clone(), true)), arr)).collect();
    let inner = StructArray::from(fields);
    let item = Arc::new(Field::new("item", inner.data_type().clone(), true));
    Arc::new(ListArray::new(item, offsets, Arc::new(inner), None))
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch, ArrowError> {
    RecordBatch::try_from_iter(columns)
}

/// A telemetry table's batch under the schema its description derives
/// (`crate::tables`): the builders must name the described columns in
/// order, and `RecordBatch::try_new` refuses an array of another type, so
/// a builder that drifts from the description fails rather than writing
/// segments of a different shape.
pub(crate) fn described_batch(table: &str, columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch, ArrowError> {
    let schema = crate::tables::described(table).arrow_schema();
    let names = columns.iter().map(|(name, _)| *name);
    if !names.clone().eq(schema.fields().iter().map(|f| f.name().as_str())) {
        return Err(ArrowError::SchemaError(format!("{table}: built columns {:?} are not the described ones", names.collect::<Vec<_>>())));
    }
    RecordBatch::try_new(schema, columns.into_iter().map(|(_, array)| array).collect())
}

pub fn traces(rows: &[SpanRow]) -> Result<RecordBatch, ArrowError> {
    let batch = |columns: Vec<(&str, ArrayRef)>| described_batch("otel_traces", columns);
    let events: Vec<&SpanEvent> = rows.iter().flat_map(|r| r.events.iter()).collect();
    let links: Vec<&SpanLink> = rows.iter().flat_map(|r| r.links.iter()).collect();
    batch(vec![
        ("Timestamp", timestamps(rows.iter().map(|r| r.timestamp_ns))),
        ("TraceId", strings(rows.iter().map(|r| r.trace_id.as_str()))),
        ("SpanId", strings(rows.iter().map(|r| r.span_id.as_str()))),
        ("ParentSpanId", strings(rows.iter().map(|r| r.parent_span_id.as_str()))),
        ("TraceState", strings(rows.iter().map(|r| r.trace_state.as_str()))),
        ("SpanName", strings(rows.iter().map(|r| r.span_name.as_str()))),
        ("SpanKind", strings(rows.iter().map(|r| r.span_kind))),
        ("ServiceName", strings(rows.iter().map(|r| r.resource.service_name.as_str()))),
        ("ResourceAttributes", maps(rows.iter().map(|r| &r.resource.attributes))?),
        ("ScopeName", strings(rows.iter().map(|r| r.scope.name.as_str()))),
        ("ScopeVersion", strings(rows.iter().map(|r| r.scope.version.as_str()))),
        ("SpanAttributes", maps(rows.iter().map(|r| &r.span_attributes))?),
        ("Duration", Arc::new(rows.iter().map(|r| r.duration_ns).collect::<UInt64Array>())),
        ("StatusCode", strings(rows.iter().map(|r| r.status_code))),
        ("StatusMessage", strings(rows.iter().map(|r| r.status_message.as_str()))),
        (
            "Events",
            struct_list(
                rows.iter().map(|r| r.events.len()),
                vec![
                    ("Timestamp", timestamps(events.iter().map(|e| e.timestamp_ns))),
                    ("Name", strings(events.iter().map(|e| e.name.as_str()))),
                    ("Attributes", maps(events.iter().map(|e| &e.attributes))?),
                ],
            ),
        ),
        (
            "Links",
            struct_list(
                rows.iter().map(|r| r.links.len()),
                vec![
                    ("TraceId", strings(links.iter().map(|l| l.trace_id.as_str()))),
                    ("SpanId", strings(links.iter().map(|l| l.span_id.as_str()))),
                    ("TraceState", strings(links.iter().map(|l| l.trace_state.as_str()))),
                    ("Attributes", maps(links.iter().map(|l| &l.attributes))?),
                ],
            ),
        ),
    ])
}

pub fn logs(rows: &[LogRow]) -> Result<RecordBatch, ArrowError> {
    let batch = |columns: Vec<(&str, ArrayRef)>| described_batch("otel_logs", columns);
    batch(vec![
        ("Timestamp", timestamps(rows.iter().map(|r| r.timestamp_ns))),
        ("TraceId", strings(rows.iter().map(|r| r.trace_id.as_str()))),
        ("SpanId", strings(rows.iter().map(|r| r.span_id.as_str()))),
        ("TraceFlags", Arc::new(rows.iter().map(|r| r.trace_flags).collect::<UInt8Array>())),
        ("SeverityText", strings(rows.iter().map(|r| r.severity_text.as_str()))),
        ("SeverityNumber", Arc::new(rows.iter().map(|r| r.severity_number).collect::<UInt8Array>())),
        ("ServiceName", strings(rows.iter().map(|r| r.resource.service_name.as_str()))),
        ("Body", strings(rows.iter().map(|r| r.body.as_str()))),
        ("ResourceSchemaUrl", strings(rows.iter().map(|r| r.resource.schema_url.as_str()))),
        ("ResourceAttributes", maps(rows.iter().map(|r| &r.resource.attributes))?),
        ("ScopeSchemaUrl", strings(rows.iter().map(|r| r.scope.schema_url.as_str()))),
        ("ScopeName", strings(rows.iter().map(|r| r.scope.name.as_str()))),
        ("ScopeVersion", strings(rows.iter().map(|r| r.scope.version.as_str()))),
        ("ScopeAttributes", maps(rows.iter().map(|r| &r.scope.attributes))?),
        ("LogAttributes", maps(rows.iter().map(|r| &r.log_attributes))?),
        ("EventName", strings(rows.iter().map(|r| r.event_name.as_str()))),
    ])
}

/// The 14 leading columns every metric table shares.
fn metric_columns(points: &[&PointCommon]) -> Result<Vec<(&'static str, ArrayRef)>, ArrowError> {
    let m = |f: fn(&MetricInfo) -> &str| strings(points.iter().map(move |p| f(&p.metric)));
    Ok(vec![
        ("ResourceAttributes", maps(points.iter().map(|p| &p.metric.resource.attributes))?),
        ("ResourceSchemaUrl", m(|i| i.resource.schema_url.as_str())),
        ("ScopeName", m(|i| i.scope.name.as_str())),
        ("ScopeVersion", m(|i| i.scope.version.as_str())),
        ("ScopeAttributes", maps(points.iter().map(|p| &p.metric.scope.attributes))?),
        ("ScopeDroppedAttrCount", Arc::new(points.iter().map(|p| p.metric.scope.dropped_attributes_count).collect::<UInt32Array>())),
        ("ScopeSchemaUrl", m(|i| i.scope.schema_url.as_str())),
        ("ServiceName", m(|i| i.resource.service_name.as_str())),
        ("MetricName", m(|i| i.name.as_str())),
        ("MetricDescription", m(|i| i.description.as_str())),
        ("MetricUnit", m(|i| i.unit.as_str())),
        ("Attributes", maps(points.iter().map(|p| &p.attributes))?),
        ("StartTimeUnix", timestamps(points.iter().map(|p| p.start_time_unix_ns))),
        ("TimeUnix", timestamps(points.iter().map(|p| p.time_unix_ns))),
    ])
}

fn exemplar_column<'a>(per_row: impl Iterator<Item = &'a Vec<Exemplar>> + Clone) -> Result<ArrayRef, ArrowError> {
    let all: Vec<&Exemplar> = per_row.clone().flat_map(|v| v.iter()).collect();
    Ok(struct_list(
        per_row.map(|v| v.len()),
        vec![
            ("FilteredAttributes", maps(all.iter().map(|e| &e.filtered_attributes))?),
            ("TimeUnix", timestamps(all.iter().map(|e| e.time_unix_ns))),
            ("Value", Arc::new(all.iter().map(|e| e.value).collect::<Float64Array>())),
            ("SpanId", strings(all.iter().map(|e| e.span_id.as_str()))),
            ("TraceId", strings(all.iter().map(|e| e.trace_id.as_str()))),
        ],
    ))
}

fn f64s(values: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(values.collect::<Float64Array>())
}

fn u64s(values: impl Iterator<Item = u64>) -> ArrayRef {
    Arc::new(values.collect::<UInt64Array>())
}

fn i32s(values: impl Iterator<Item = i32>) -> ArrayRef {
    Arc::new(values.collect::<Int32Array>())
}

fn u32s(values: impl Iterator<Item = u32>) -> ArrayRef {
    Arc::new(values.collect::<UInt32Array>())
}

pub fn gauges(rows: &[GaugeRow]) -> Result<RecordBatch, ArrowError> {
    let batch = |columns: Vec<(&str, ArrayRef)>| described_batch("otel_metrics_gauge", columns);
    let commons: Vec<&PointCommon> = rows.iter().map(|r| &r.common).collect();
    let mut cols = metric_columns(&commons)?;
    cols.push(("Value", f64s(rows.iter().map(|r| r.value))));
    cols.push(("Flags", u32s(rows.iter().map(|r| r.common.flags))));
    cols.push(("Exemplars", exemplar_column(rows.iter().map(|r| &r.exemplars))?));
    batch(cols)
}

pub fn sums(rows: &[SumRow]) -> Result<RecordBatch, ArrowError> {
    let batch = |columns: Vec<(&str, ArrayRef)>| described_batch("otel_metrics_sum", columns);
    let commons: Vec<&PointCommon> = rows.iter().map(|r| &r.common).collect();
    let mut cols = metric_columns(&commons)?;
    cols.push(("Value", f64s(rows.iter().map(|r| r.value))));
    cols.push(("Flags", u32s(rows.iter().map(|r| r.common.flags))));
    cols.push(("Exemplars", exemplar_column(rows.iter().map(|r| &r.exemplars))?));
    cols.push(("AggregationTemporality", i32s(rows.iter().map(|r| r.aggregation_temporality))));
    cols.push(("IsMonotonic", Arc::new(rows.iter().map(|r| Some(r.is_monotonic)).collect::<BooleanArray>())));
    batch(cols)
}

pub fn histograms(rows: &[HistogramRow]) -> Result<RecordBatch, ArrowError> {
    let batch = |columns: Vec<(&str, ArrayRef)>| described_batch("otel_metrics_histogram", columns);
    let commons: Vec<&PointCommon> = rows.iter().map(|r| &r.common).collect();
    let mut cols = metric_columns(&commons)?;
    cols.push(("Count", u64s(rows.iter().map(|r| r.count))));
    cols.push(("Sum", f64s(rows.iter().map(|r| r.sum))));
    cols.push(("BucketCounts", u64_lists(rows.iter().map(|r| &r.bucket_counts))));
    cols.push(("ExplicitBounds", f64_lists(rows.iter().map(|r| &r.explicit_bounds))));
    cols.push(("Exemplars", exemplar_column(rows.iter().map(|r| &r.exemplars))?));
    cols.push(("Flags", u32s(rows.iter().map(|r| r.common.flags))));
    cols.push(("Min", f64s(rows.iter().map(|r| r.min))));
    cols.push(("Max", f64s(rows.iter().map(|r| r.max))));
    cols.push(("AggregationTemporality", i32s(rows.iter().map(|r| r.aggregation_temporality))));
    batch(cols)
}

pub fn exp_histograms(rows: &[ExpHistogramRow]) -> Result<RecordBatch, ArrowError> {
    let batch = |columns: Vec<(&str, ArrayRef)>| described_batch("otel_metrics_exp_histogram", columns);
    let commons: Vec<&PointCommon> = rows.iter().map(|r| &r.common).collect();
    let mut cols = metric_columns(&commons)?;
    cols.push(("Count", u64s(rows.iter().map(|r| r.count))));
    cols.push(("Sum", f64s(rows.iter().map(|r| r.sum))));
    cols.push(("Scale", i32s(rows.iter().map(|r| r.scale))));
    cols.push(("ZeroCount", u64s(rows.iter().map(|r| r.zero_count))));
    cols.push(("PositiveOffset", i32s(rows.iter().map(|r| r.positive_offset))));
    cols.push(("PositiveBucketCounts", u64_lists(rows.iter().map(|r| &r.positive_bucket_counts))));
    cols.push(("NegativeOffset", i32s(rows.iter().map(|r| r.negative_offset))));
    cols.push(("NegativeBucketCounts", u64_lists(rows.iter().map(|r| &r.negative_bucket_counts))));
    cols.push(("Exemplars", exemplar_column(rows.iter().map(|r| &r.exemplars))?));
    cols.push(("Flags", u32s(rows.iter().map(|r| r.common.flags))));
    cols.push(("Min", f64s(rows.iter().map(|r| r.min))));
    cols.push(("Max", f64s(rows.iter().map(|r| r.max))));
    cols.push(("AggregationTemporality", i32s(rows.iter().map(|r| r.aggregation_temporality))));
    batch(cols)
}

pub fn summaries(rows: &[SummaryRow]) -> Result<RecordBatch, ArrowError> {
    let batch = |columns: Vec<(&str, ArrayRef)>| described_batch("otel_metrics_summary", columns);
    let commons: Vec<&PointCommon> = rows.iter().map(|r| &r.common).collect();
    let mut cols = metric_columns(&commons)?;
    let quantiles: Vec<&(f64, f64)> = rows.iter().flat_map(|r| r.quantiles.iter()).collect();
    cols.push(("Count", u64s(rows.iter().map(|r| r.count))));
    cols.push(("Sum", f64s(rows.iter().map(|r| r.sum))));
    cols.push((
        "ValueAtQuantiles",
        struct_list(
            rows.iter().map(|r| r.quantiles.len()),
            vec![("Quantile", f64s(quantiles.iter().map(|q| q.0))), ("Value", f64s(quantiles.iter().map(|q| q.1)))],
        ),
    ));
    cols.push(("Flags", u32s(rows.iter().map(|r| r.common.flags))));
    batch(cols)
}

/// DECIMAL(38, 12) from exact decimals; a value the column cannot hold
/// exactly is an error (`crate::money`), never stored at another scale.
fn decimals(values: impl Iterator<Item = Option<Decimal>>) -> Result<ArrayRef, ArrowError> {
    let scaled: Vec<Option<i128>> = values
        .map(|v| {
            v.map(|d| {
                crate::money::mantissa_38_12(d)
                    .ok_or_else(|| ArrowError::InvalidArgumentError(format!("{d} does not fit DECIMAL(38, 12) exactly")))
            })
            .transpose()
        })
        .collect::<Result<_, _>>()?;
    Ok(Arc::new(scaled.into_iter().collect::<Decimal128Array>().with_precision_and_scale(38, MONEY_SCALE as i8)?))
}

pub fn usage_telemetry(rows: &[TelemetryUsage]) -> Result<RecordBatch, ArrowError> {
    batch(vec![
        ("Hour", timestamps(rows.iter().map(|r| r.hour_ns))),
        ("Tenant", strings(rows.iter().map(|r| r.tenant.as_str()))),
        ("Project", strings(rows.iter().map(|r| r.project.as_str()))),
        ("Service", strings(rows.iter().map(|r| r.service.as_str()))),
        ("Signal", strings(rows.iter().map(|r| r.signal))),
        ("Items", u64s(rows.iter().map(|r| r.items))),
        ("Bytes", u64s(rows.iter().map(|r| r.bytes))),
        // Set when the write takes its number (`with_write_seq`).
        ("WriteSeq", u64s(rows.iter().map(|_| 0))),
        ("EventDay", timestamps(rows.iter().map(|r| r.event_day_ns))),
    ])
}

pub fn usage_llm(rows: &[LlmUsageRow]) -> Result<RecordBatch, ArrowError> {
    batch(vec![
        ("Timestamp", timestamps(rows.iter().map(|r| r.timestamp_ns))),
        ("Tenant", strings(rows.iter().map(|r| r.tenant.as_str()))),
        ("Project", strings(rows.iter().map(|r| r.project.as_str()))),
        ("Service", strings(rows.iter().map(|r| r.service.as_str()))),
        ("TraceId", strings(rows.iter().map(|r| r.trace_id.as_str()))),
        ("SpanId", strings(rows.iter().map(|r| r.span_id.as_str()))),
        ("Provider", strings(rows.iter().map(|r| r.usage.provider.as_str()))),
        ("Model", strings(rows.iter().map(|r| r.usage.model.as_str()))),
        ("Operation", strings(rows.iter().map(|r| r.usage.operation.as_str()))),
        ("InputTokens", u64s(rows.iter().map(|r| r.usage.input_tokens))),
        ("OutputTokens", u64s(rows.iter().map(|r| r.usage.output_tokens))),
        ("CacheReadTokens", u64s(rows.iter().map(|r| r.usage.cache_read_tokens))),
        ("CacheWriteTokens", u64s(rows.iter().map(|r| r.usage.cache_write_tokens))),
        ("ReasoningTokens", u64s(rows.iter().map(|r| r.usage.reasoning_tokens))),
        ("ProvidedCost", decimals(rows.iter().map(|r| r.usage.provided_cost))?),
        ("ReceivedAt", timestamps(rows.iter().map(|r| r.received_ns))),
        ("Hour", timestamps(rows.iter().map(|r| r.hour_ns))),
        ("CallKind", strings(rows.iter().map(|r| r.kind.as_str()))),
        ("InvalidReason", strings(rows.iter().map(|r| r.invalid_reason.as_deref().unwrap_or("")))),
        // Set when the write takes its number (`with_write_seq`).
        ("WriteSeq", u64s(rows.iter().map(|_| 0))),
        ("CacheWrite1hTokens", u64s(rows.iter().map(|r| r.usage.cache_write_1h_tokens))),
    ])
}

/// The ledger's batch: one array per column of its description
/// (`crate::ledger::table`), in its order.
pub fn ledger(rows: &[LedgerRow]) -> Result<RecordBatch, ArrowError> {
    use crate::ledger::table::{Cell, LedgerType, COLUMNS};
    let mut columns = Vec::with_capacity(COLUMNS.len());
    for c in &COLUMNS {
        let cells: Vec<Cell<'_>> = rows.iter().map(|r| (c.value)(r)).collect();
        // A cell of another type than its column's description is refused,
        // never written as some default (the table's tests rule it out).
        let wrong = |cell: &Cell<'_>| ArrowError::InvalidArgumentError(format!("ledger column {} got {cell:?}", c.name));
        let array = match c.ty {
            LedgerType::Time => timestamps(
                cells
                    .iter()
                    .map(|v| if let Cell::Time(t) = v { Ok(*t) } else { Err(wrong(v)) })
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter(),
            ),
            LedgerType::U64 => u64s(
                cells.iter().map(|v| if let Cell::U64(n) = v { Ok(*n) } else { Err(wrong(v)) }).collect::<Result<Vec<_>, _>>()?.into_iter(),
            ),
            LedgerType::Money => decimals(
                cells
                    .iter()
                    .map(|v| match v {
                        Cell::Money(d) => Ok(Some(*d)),
                        Cell::NullableMoney(d) => Ok(*d),
                        other => Err(wrong(other)),
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter(),
            )?,
            LedgerType::Text => {
                let texts = cells
                    .iter()
                    .map(|v| match v {
                        Cell::Text(s) => Ok(Some(*s)),
                        Cell::NullableText(s) => Ok(*s),
                        other => Err(wrong(other)),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Arc::new(texts.into_iter().collect::<StringArray>()) as ArrayRef
            }
        };
        columns.push((c.name, array));
    }
    batch(columns)
}

pub fn usage_kubernetes(rows: &[costplane_telemetry::usage::KubernetesUsage]) -> Result<RecordBatch, ArrowError> {
    batch(vec![
        ("Hour", timestamps(rows.iter().map(|r| r.hour_ns))),
        ("WrittenAt", timestamps(rows.iter().map(|r| r.written_ns))),
        ("Cluster", strings(rows.iter().map(|r| r.cluster.as_str()))),
        ("Kind", strings(rows.iter().map(|r| r.kind.as_str()))),
        ("Payload", strings(rows.iter().map(|r| r.payload.as_str()))),
    ])
}

pub fn ledger_hours(rows: &[costplane_telemetry::usage::HourState]) -> Result<RecordBatch, ArrowError> {
    batch(vec![
        ("Hour", timestamps(rows.iter().map(|r| r.hour_ns))),
        ("Scope", strings(rows.iter().map(|r| r.scope.as_str()))),
        ("Revision", u64s(rows.iter().map(|r| r.revision))),
        ("Status", strings(rows.iter().map(|r| r.status.as_str()))),
        ("UsageRows", u64s(rows.iter().map(|r| r.usage_rows))),
        ("PriceVersion", strings(rows.iter().map(|r| r.price_version.as_str()))),
    ])
}

/// `batch` with its `WriteSeq` column (when it has one) set to `seq`.
pub fn with_write_seq(batch: RecordBatch, seq: u64) -> Result<RecordBatch, ArrowError> {
    let Ok(at) = batch.schema().index_of("WriteSeq") else { return Ok(batch) };
    let mut columns = batch.columns().to_vec();
    columns[at] = u64s(std::iter::repeat_n(seq, batch.num_rows()));
    RecordBatch::try_new(batch.schema(), columns)
}
