//! Both encoders against the one table description (`crate::tables`).
//!
//! Sample rows, every value distinct, go through the RowBinary encoder and
//! the Arrow builders. The RowBinary bytes are decoded by walking the
//! described columns and types (so a column out of order, missing, extra,
//! or of another width fails to decode or leaves bytes over); the Arrow
//! batch must carry the derived schema. Then the two decodings must agree
//! value for value: the Arrow side is read by column name and the RowBinary
//! side by position, so a swap in either one shows up, and spot checks tie
//! the values to the rows' fields.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int32Type, TimestampNanosecondType, UInt32Type, UInt64Type, UInt8Type};
use arrow::record_batch::RecordBatch;
use costplane_telemetry::model::*;

use crate::clickhouse::rowbinary;
use crate::duckdb::arrow as arrow_rows;
use crate::tables::{described, ColumnType};

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Map(Vec<(String, String)>),
    List(Vec<Value>),
    Struct(Vec<Value>),
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let out: [u8; N] = self.buf[self.at..self.at + N].try_into().unwrap();
        self.at += N;
        out
    }

    fn uleb(&mut self) -> usize {
        let (mut n, mut shift) = (0usize, 0);
        loop {
            let [byte] = self.take::<1>();
            n |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return n;
            }
            shift += 7;
        }
    }

    fn string(&mut self) -> String {
        let len = self.uleb();
        let s = std::str::from_utf8(&self.buf[self.at..self.at + len]).unwrap().to_owned();
        self.at += len;
        s
    }

    fn value(&mut self, ty: ColumnType) -> Value {
        match ty {
            ColumnType::TimestampNs => Value::Int(i64::from_le_bytes(self.take())),
            ColumnType::String | ColumnType::LowCardinalityString => Value::Str(self.string()),
            ColumnType::Attributes => Value::Map((0..self.uleb()).map(|_| (self.string(), self.string())).collect()),
            ColumnType::U8 => Value::UInt(u64::from(self.take::<1>()[0])),
            ColumnType::U32 => Value::UInt(u64::from(u32::from_le_bytes(self.take()))),
            ColumnType::U64 => Value::UInt(u64::from_le_bytes(self.take())),
            ColumnType::I32 => Value::Int(i64::from(i32::from_le_bytes(self.take()))),
            ColumnType::F64 => Value::Float(f64::from_le_bytes(self.take())),
            ColumnType::Bool => Value::Bool(self.take::<1>()[0] != 0),
            ColumnType::ListU64 => Value::List((0..self.uleb()).map(|_| self.value(ColumnType::U64)).collect()),
            ColumnType::ListF64 => Value::List((0..self.uleb()).map(|_| self.value(ColumnType::F64)).collect()),
            // `Nested` is inserted as one array per field, in field order.
            ColumnType::Nested(fields) => {
                let per_field: Vec<Vec<Value>> = fields.iter().map(|f| (0..self.uleb()).map(|_| self.value(f.ty)).collect()).collect();
                let n = per_field[0].len();
                assert!(per_field.iter().all(|v| v.len() == n), "a Nested column's arrays differ in length");
                Value::List((0..n).map(|i| Value::Struct(per_field.iter().map(|v| v[i].clone()).collect())).collect())
            }
            ColumnType::ClickHouseAlias { .. } => unreachable!("aliases are not inserted"),
        }
    }
}

/// Rows of (column, value) from RowBinary bytes, read as `table` describes.
fn decode_rowbinary(table: &str, bytes: &[u8]) -> Vec<Vec<(String, Value)>> {
    let mut r = Reader { buf: bytes, at: 0 };
    let mut rows = Vec::new();
    while r.at < bytes.len() {
        rows.push(described(table).stored_columns().map(|c| (c.name.to_owned(), r.value(c.ty))).collect());
    }
    assert_eq!(r.at, bytes.len(), "{table}: the last row overran the body");
    rows
}

fn arrow_value(array: &dyn Array, i: usize) -> Value {
    match array.data_type() {
        DataType::Utf8 => Value::Str(array.as_string::<i32>().value(i).to_owned()),
        DataType::Timestamp(..) => Value::Int(array.as_primitive::<TimestampNanosecondType>().value(i)),
        DataType::UInt8 => Value::UInt(u64::from(array.as_primitive::<UInt8Type>().value(i))),
        DataType::UInt32 => Value::UInt(u64::from(array.as_primitive::<UInt32Type>().value(i))),
        DataType::UInt64 => Value::UInt(array.as_primitive::<UInt64Type>().value(i)),
        DataType::Int32 => Value::Int(i64::from(array.as_primitive::<Int32Type>().value(i))),
        DataType::Float64 => Value::Float(array.as_primitive::<Float64Type>().value(i)),
        DataType::Boolean => Value::Bool(array.as_boolean().value(i)),
        DataType::Map(..) => {
            let entries = array.as_map().value(i);
            let (keys, values) = (entries.column(0).as_string::<i32>(), entries.column(1).as_string::<i32>());
            Value::Map((0..entries.len()).map(|j| (keys.value(j).to_owned(), values.value(j).to_owned())).collect())
        }
        DataType::List(_) => {
            let items = array.as_list::<i32>().value(i);
            Value::List((0..items.len()).map(|j| arrow_value(&items, j)).collect())
        }
        DataType::Struct(_) => Value::Struct(array.as_struct().columns().iter().map(|c| arrow_value(c, i)).collect()),
        other => panic!("no sample reading for {other}"),
    }
}

/// Rows of (column, value) from a batch, which must carry the derived schema.
fn decode_arrow(table: &str, batch: &RecordBatch) -> Vec<Vec<(String, Value)>> {
    assert_eq!(batch.schema(), described(table).arrow_schema(), "{table}: the batch's schema is not the derived one");
    (0..batch.num_rows())
        .map(|i| {
            described(table).stored_columns().map(|c| (c.name.to_owned(), arrow_value(batch.column_by_name(c.name).unwrap(), i))).collect()
        })
        .collect()
}

/// Decodes both encodings, checks they agree and returns them.
fn both(table: &str, rowbinary: &[u8], batch: &RecordBatch) -> Vec<Vec<(String, Value)>> {
    let from_rowbinary = decode_rowbinary(table, rowbinary);
    let from_arrow = decode_arrow(table, batch);
    assert_eq!(from_rowbinary.len(), 2, "{table}");
    for (rb, ar) in from_rowbinary.iter().zip(&from_arrow) {
        for ((name, a), (_, b)) in rb.iter().zip(ar) {
            assert_eq!(a, b, "{table}.{name}: RowBinary and Arrow disagree");
        }
    }
    from_rowbinary
}

fn get<'a>(row: &'a [(String, Value)], column: &str) -> &'a Value {
    &row.iter().find(|(n, _)| n == column).unwrap_or_else(|| panic!("no column {column}")).1
}

fn s(v: &str) -> Value {
    Value::Str(v.to_owned())
}

/// `attrs(tag)` as the decoder reads a map back.
fn map_of(tag: &str) -> Value {
    Value::Map(attrs(tag).iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
}

fn attrs(tag: &str) -> Attributes {
    Attributes::from([(format!("{tag}.k1"), format!("{tag}.v1")), (format!("{tag}.k2"), format!("{tag}.v2"))])
}

fn resource(n: i64) -> Arc<ResourceInfo> {
    Arc::new(ResourceInfo { service_name: format!("svc{n}"), attributes: attrs("res"), schema_url: format!("res-url{n}") })
}

fn scope(n: i64) -> Arc<ScopeInfo> {
    Arc::new(ScopeInfo {
        name: format!("scope{n}"),
        version: format!("scope-v{n}"),
        attributes: attrs("scope"),
        dropped_attributes_count: 7,
        schema_url: format!("scope-url{n}"),
    })
}

fn span(n: i64) -> SpanRow {
    SpanRow {
        resource: resource(n),
        scope: scope(n),
        timestamp_ns: 1_000 + n,
        trace_id: format!("trace{n}"),
        span_id: format!("span{n}"),
        parent_span_id: format!("parent{n}"),
        trace_state: format!("state{n}"),
        span_name: format!("name{n}"),
        span_kind: "Server",
        span_attributes: attrs("span"),
        duration_ns: 500 + n as u64,
        status_code: "Error",
        status_message: format!("message{n}"),
        events: (0..n).map(|e| SpanEvent { timestamp_ns: 2_000 + e, name: format!("event{e}"), attributes: attrs("event") }).collect(),
        links: vec![SpanLink {
            trace_id: format!("link-trace{n}"),
            span_id: format!("link-span{n}"),
            trace_state: format!("link-state{n}"),
            attributes: attrs("link"),
        }],
        encoded_bytes: 10,
    }
}

fn log(n: i64) -> LogRow {
    LogRow {
        resource: resource(n),
        scope: scope(n),
        timestamp_ns: 3_000 + n,
        trace_id: format!("trace{n}"),
        span_id: format!("span{n}"),
        trace_flags: 1,
        severity_text: "WARN".into(),
        severity_number: 13,
        body: format!("body{n}"),
        log_attributes: attrs("log"),
        event_name: format!("event-name{n}"),
        encoded_bytes: 10,
    }
}

fn common(n: i64) -> PointCommon {
    PointCommon {
        metric: Arc::new(MetricInfo {
            resource: resource(n),
            scope: scope(n),
            name: format!("metric{n}"),
            description: format!("description{n}"),
            unit: format!("unit{n}"),
        }),
        attributes: attrs("point"),
        start_time_unix_ns: 4_000 + n,
        time_unix_ns: 5_000 + n,
        flags: 9,
        encoded_bytes: 10,
    }
}

fn exemplars(n: i64) -> Vec<Exemplar> {
    (0..n)
        .map(|e| Exemplar {
            filtered_attributes: attrs("exemplar"),
            time_unix_ns: 6_000 + e,
            value: 0.25 + e as f64,
            span_id: format!("ex-span{e}"),
            trace_id: format!("ex-trace{e}"),
        })
        .collect()
}

/// The 14 leading metric columns hold the point's own fields.
fn check_metric_prefix(row: &[(String, Value)]) {
    assert_eq!(get(row, "ResourceSchemaUrl"), &s("res-url1"));
    assert_eq!(get(row, "ScopeName"), &s("scope1"));
    assert_eq!(get(row, "ScopeVersion"), &s("scope-v1"));
    assert_eq!(get(row, "ScopeDroppedAttrCount"), &Value::UInt(7));
    assert_eq!(get(row, "ScopeSchemaUrl"), &s("scope-url1"));
    assert_eq!(get(row, "ServiceName"), &s("svc1"));
    assert_eq!(get(row, "MetricName"), &s("metric1"));
    assert_eq!(get(row, "MetricDescription"), &s("description1"));
    assert_eq!(get(row, "MetricUnit"), &s("unit1"));
    assert_eq!(get(row, "StartTimeUnix"), &Value::Int(4_001));
    assert_eq!(get(row, "TimeUnix"), &Value::Int(5_001));
    assert_eq!(get(row, "Attributes"), &map_of("point"));
}

#[test]
fn traces_encode_the_described_columns() {
    let rows = [span(1), span(2)];
    let decoded = both("otel_traces", &rowbinary::traces(&rows), &arrow_rows::traces(&rows).unwrap());
    let row = &decoded[1];
    for (column, expected) in [
        ("TraceId", "trace2"),
        ("SpanId", "span2"),
        ("ParentSpanId", "parent2"),
        ("TraceState", "state2"),
        ("SpanName", "name2"),
        ("SpanKind", "Server"),
        ("ServiceName", "svc2"),
        ("ScopeName", "scope2"),
        ("ScopeVersion", "scope-v2"),
        ("StatusCode", "Error"),
        ("StatusMessage", "message2"),
    ] {
        assert_eq!(get(row, column), &s(expected), "{column}");
    }
    assert_eq!(get(row, "Timestamp"), &Value::Int(1_002));
    assert_eq!(get(row, "Duration"), &Value::UInt(502));
    assert_eq!(get(row, "SpanAttributes"), &map_of("span"));
    let Value::List(events) = get(row, "Events") else { panic!("Events is a list") };
    assert_eq!(events.len(), 2);
    assert_eq!(events[1], Value::Struct(vec![Value::Int(2_001), s("event1"), map_of("event")]));
    assert_eq!(
        get(row, "Links"),
        &Value::List(vec![Value::Struct(vec![s("link-trace2"), s("link-span2"), s("link-state2"), map_of("link")])])
    );
}

#[test]
fn logs_encode_the_described_columns() {
    let rows = [log(1), log(2)];
    let decoded = both("otel_logs", &rowbinary::logs(&rows), &arrow_rows::logs(&rows).unwrap());
    let row = &decoded[0];
    assert_eq!(get(row, "Timestamp"), &Value::Int(3_001));
    assert_eq!(get(row, "TraceFlags"), &Value::UInt(1));
    assert_eq!(get(row, "SeverityNumber"), &Value::UInt(13));
    assert_eq!(get(row, "SeverityText"), &s("WARN"));
    assert_eq!(get(row, "Body"), &s("body1"));
    assert_eq!(get(row, "ResourceSchemaUrl"), &s("res-url1"));
    assert_eq!(get(row, "ScopeSchemaUrl"), &s("scope-url1"));
    assert_eq!(get(row, "ScopeVersion"), &s("scope-v1"));
    assert_eq!(get(row, "ScopeAttributes"), &map_of("scope"));
    assert_eq!(get(row, "LogAttributes"), &map_of("log"));
    assert_eq!(get(row, "EventName"), &s("event-name1"));
}

#[test]
fn gauges_and_sums_encode_the_described_columns() {
    let gauges: Vec<GaugeRow> = (1..=2).map(|n| GaugeRow { common: common(n), value: 1.5 * n as f64, exemplars: exemplars(n) }).collect();
    let decoded = both("otel_metrics_gauge", &rowbinary::gauges(&gauges), &arrow_rows::gauges(&gauges).unwrap());
    check_metric_prefix(&decoded[0]);
    assert_eq!(get(&decoded[0], "Value"), &Value::Float(1.5));
    assert_eq!(get(&decoded[0], "Flags"), &Value::UInt(9));
    assert_eq!(
        get(&decoded[0], "Exemplars"),
        &Value::List(vec![Value::Struct(vec![map_of("exemplar"), Value::Int(6_000), Value::Float(0.25), s("ex-span0"), s("ex-trace0")])])
    );

    let sums: Vec<SumRow> = (1..=2)
        .map(|n| SumRow { common: common(n), value: 2.5, exemplars: exemplars(n), aggregation_temporality: 2, is_monotonic: n == 1 })
        .collect();
    let decoded = both("otel_metrics_sum", &rowbinary::sums(&sums), &arrow_rows::sums(&sums).unwrap());
    check_metric_prefix(&decoded[0]);
    assert_eq!(get(&decoded[0], "AggregationTemporality"), &Value::Int(2));
    assert_eq!(get(&decoded[0], "IsMonotonic"), &Value::Bool(true));
    assert_eq!(get(&decoded[1], "IsMonotonic"), &Value::Bool(false));
}

#[test]
fn histograms_encode_the_described_columns() {
    let rows: Vec<HistogramRow> = (1..=2)
        .map(|n| HistogramRow {
            common: common(n),
            count: 30 + n as u64,
            sum: 12.5,
            bucket_counts: vec![1, 2, 3],
            explicit_bounds: vec![0.5, 1.5],
            exemplars: exemplars(n),
            min: -1.0,
            max: 8.0,
            aggregation_temporality: 1,
        })
        .collect();
    let decoded = both("otel_metrics_histogram", &rowbinary::histograms(&rows), &arrow_rows::histograms(&rows).unwrap());
    let row = &decoded[0];
    check_metric_prefix(row);
    assert_eq!(get(row, "Count"), &Value::UInt(31));
    assert_eq!(get(row, "Sum"), &Value::Float(12.5));
    assert_eq!(get(row, "BucketCounts"), &Value::List(vec![Value::UInt(1), Value::UInt(2), Value::UInt(3)]));
    assert_eq!(get(row, "ExplicitBounds"), &Value::List(vec![Value::Float(0.5), Value::Float(1.5)]));
    assert_eq!(get(row, "Min"), &Value::Float(-1.0));
    assert_eq!(get(row, "Max"), &Value::Float(8.0));
    assert_eq!(get(row, "AggregationTemporality"), &Value::Int(1));
}

#[test]
fn exponential_histograms_encode_the_described_columns() {
    let rows: Vec<ExpHistogramRow> = (1..=2)
        .map(|n| ExpHistogramRow {
            common: common(n),
            count: 40,
            sum: 3.5,
            scale: -3,
            zero_count: 4,
            positive_offset: 5,
            positive_bucket_counts: vec![6, 7],
            negative_offset: -8,
            negative_bucket_counts: vec![9],
            exemplars: exemplars(n),
            min: -2.0,
            max: 2.0,
            aggregation_temporality: 2,
        })
        .collect();
    let decoded = both("otel_metrics_exp_histogram", &rowbinary::exp_histograms(&rows), &arrow_rows::exp_histograms(&rows).unwrap());
    let row = &decoded[0];
    check_metric_prefix(row);
    assert_eq!(get(row, "Scale"), &Value::Int(-3));
    assert_eq!(get(row, "ZeroCount"), &Value::UInt(4));
    assert_eq!(get(row, "PositiveOffset"), &Value::Int(5));
    assert_eq!(get(row, "PositiveBucketCounts"), &Value::List(vec![Value::UInt(6), Value::UInt(7)]));
    assert_eq!(get(row, "NegativeOffset"), &Value::Int(-8));
    assert_eq!(get(row, "NegativeBucketCounts"), &Value::List(vec![Value::UInt(9)]));
}

#[test]
fn summaries_encode_the_described_columns() {
    let rows: Vec<SummaryRow> =
        (1..=2).map(|n| SummaryRow { common: common(n), count: 50, sum: 4.5, quantiles: vec![(0.5, 1.25), (0.99, 7.75)] }).collect();
    let decoded = both("otel_metrics_summary", &rowbinary::summaries(&rows), &arrow_rows::summaries(&rows).unwrap());
    let row = &decoded[0];
    check_metric_prefix(row);
    assert_eq!(get(row, "Count"), &Value::UInt(50));
    assert_eq!(
        get(row, "ValueAtQuantiles"),
        &Value::List(vec![
            Value::Struct(vec![Value::Float(0.5), Value::Float(1.25)]),
            Value::Struct(vec![Value::Float(0.99), Value::Float(7.75)])
        ])
    );
    assert_eq!(get(row, "Flags"), &Value::UInt(9));
}

#[test]
fn a_batch_built_with_other_columns_is_refused() {
    // The builders' names are checked against the description: a batch for
    // `otel_logs` made of trace columns does not build.
    let batch = arrow_rows::traces(&[span(1)]).unwrap();
    let columns = batch.schema().fields().iter().map(|f| f.name().clone()).zip(batch.columns().iter().cloned()).collect::<Vec<_>>();
    let err = arrow_rows::described_batch("otel_logs", columns.iter().map(|(n, a)| (n.as_str(), a.clone())).collect()).unwrap_err();
    assert!(err.to_string().contains("not the described ones"), "{err}");
}
