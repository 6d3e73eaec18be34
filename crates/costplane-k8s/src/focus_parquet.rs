//! FOCUS exports in Parquet (AWS Data Exports and Azure `FocusCost` offer
//! it beside CSV) turned into the same text cells the CSV reader yields, so
//! one parser checks and converts every format and its errors name the same
//! rows and columns.
//!
//! Every column is rendered as text the way the CSV exports spell it:
//! numbers and decimals in plain notation (a Decimal128 keeps all its
//! digits), timestamps as RFC 3339 in UTC, booleans as `true`/`false`, and
//! maps (AWS `Tags`, `x_` maps) or structs as a JSON object. A null is a
//! null cell. Types a bill has no use for (binary, unions) fail the import
//! with the column named.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, MapArray, StructArray};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatchReader;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::ChunkReader;

use crate::K8sError;

/// One cell: `None` = null.
pub(crate) type Cell = Option<String>;

/// A file's data rows as they are read, each a row of cells or the error
/// that stopped the read.
pub(crate) type Rows = Box<dyn Iterator<Item = Result<Vec<Cell>, K8sError>>>;

/// The header and the data rows of a Parquet file, every cell as text,
/// read a record batch at a time (one batch's cells are held, never the
/// file's): `input` is the file itself or its bytes.
pub(crate) fn records<R: ChunkReader + 'static>(file: &str, input: R) -> Result<(Vec<String>, Rows), K8sError> {
    let read_err = |m: String| K8sError::Read { file: file.to_owned(), message: m };
    let reader = ParquetRecordBatchReaderBuilder::try_new(input)
        .map_err(|e| read_err(format!("not a readable Parquet file: {e}")))?
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| read_err(format!("Parquet: {e}")))?;
    let schema = reader.schema();
    let header: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let (file, names) = (file.to_owned(), header.clone());
    let mut seen = 0usize;
    let rows = reader.flat_map(move |batch| -> Vec<Result<Vec<Cell>, K8sError>> {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => return vec![Err(K8sError::Read { file: file.clone(), message: format!("Parquet: {e}") })],
        };
        let first = seen;
        seen += batch.num_rows();
        let mut rows: Vec<Vec<Cell>> = (0..batch.num_rows()).map(|_| Vec::with_capacity(names.len())).collect();
        for (c, column) in batch.columns().iter().enumerate() {
            let text = match column_text(column) {
                Ok(t) => t,
                Err(message) => {
                    return vec![Err(K8sError::Cell { file: file.clone(), row: first + 1, column: names[c].clone(), message })];
                }
            };
            for (r, cell) in text.into_iter().enumerate() {
                rows[r].push(cell);
            }
        }
        rows.into_iter().map(Ok).collect()
    });
    Ok((header, Box::new(rows)))
}

/// Rows per record batch read: a bounded slice of a file of any size.
const BATCH_ROWS: usize = 4096;

/// A column's cells as text.
fn column_text(column: &ArrayRef) -> Result<Vec<Cell>, String> {
    match column.data_type() {
        DataType::Map(_, _) => {
            let map = column.as_map();
            Ok((0..map.len()).map(|i| (!map.is_null(i)).then(|| map_json(map, i).to_string())).collect())
        }
        DataType::Struct(_) => {
            let s = column.as_struct();
            (0..s.len()).map(|i| if s.is_null(i) { Ok(None) } else { struct_json(s, i).map(|v| Some(v.to_string())) }).collect()
        }
        DataType::List(_) | DataType::LargeList(_) => {
            // GCP-style tag arrays of {key, value} structs: a JSON array the
            // CSV path already normalises.
            (0..column.len())
                .map(|i| if column.is_null(i) { Ok(None) } else { value_json(column, i).map(|v| Some(v.to_string())) })
                .collect()
        }
        DataType::Timestamp(_, _) => {
            let ns = arrow::compute::cast(column, &DataType::Timestamp(TimeUnit::Nanosecond, None)).map_err(|e| e.to_string())?;
            let ns = ns.as_primitive::<arrow::datatypes::TimestampNanosecondType>();
            Ok((0..ns.len())
                .map(|i| {
                    (!ns.is_null(i))
                        .then(|| chrono::DateTime::from_timestamp_nanos(ns.value(i)).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                })
                .collect())
        }
        DataType::Binary | DataType::LargeBinary | DataType::FixedSizeBinary(_) | DataType::Union(_, _) => {
            Err(format!("Parquet type {} is not read; a FOCUS column is text, a number, a time or a map", column.data_type()))
        }
        _ => {
            let text = arrow::compute::cast(column, &DataType::Utf8).map_err(|e| format!("cannot read as text: {e}"))?;
            let text = text.as_string::<i32>();
            Ok((0..text.len()).map(|i| (!text.is_null(i)).then(|| text.value(i).to_owned())).collect())
        }
    }
}

fn map_json(map: &MapArray, i: usize) -> serde_json::Value {
    let entries = map.value(i);
    let keys = arrow::compute::cast(entries.column(0), &DataType::Utf8).ok();
    let values = arrow::compute::cast(entries.column(1), &DataType::Utf8).ok();
    let mut out = serde_json::Map::new();
    if let (Some(keys), Some(values)) = (keys, values) {
        let (keys, values) = (keys.as_string::<i32>(), values.as_string::<i32>());
        for j in 0..keys.len() {
            let v = if values.is_null(j) { serde_json::Value::Null } else { values.value(j).into() };
            out.insert(keys.value(j).to_owned(), v);
        }
    }
    serde_json::Value::Object(out)
}

fn struct_json(s: &StructArray, i: usize) -> Result<serde_json::Value, String> {
    let mut out = serde_json::Map::new();
    for (field, column) in s.fields().iter().zip(s.columns()) {
        out.insert(field.name().clone(), if column.is_null(i) { serde_json::Value::Null } else { value_json(column, i)? });
    }
    Ok(serde_json::Value::Object(out))
}

/// One value of any supported column as JSON (nested maps, structs, lists).
fn value_json(column: &ArrayRef, i: usize) -> Result<serde_json::Value, String> {
    if column.is_null(i) {
        return Ok(serde_json::Value::Null);
    }
    match column.data_type() {
        DataType::Map(_, _) => Ok(map_json(column.as_map(), i)),
        DataType::Struct(_) => struct_json(column.as_struct(), i),
        DataType::List(_) => {
            let items: ArrayRef = column.as_list::<i32>().value(i);
            (0..items.len()).map(|j| value_json(&items, j)).collect::<Result<Vec<_>, _>>().map(serde_json::Value::Array)
        }
        DataType::LargeList(_) => {
            let items: ArrayRef = column.as_list::<i64>().value(i);
            (0..items.len()).map(|j| value_json(&items, j)).collect::<Result<Vec<_>, _>>().map(serde_json::Value::Array)
        }
        _ => {
            let one: ArrayRef = Arc::clone(column).slice(i, 1);
            Ok(column_text(&one)?.pop().flatten().map_or(serde_json::Value::Null, serde_json::Value::String))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Decimal128Array, MapBuilder, RecordBatch, StringArray, StringBuilder, TimestampNanosecondArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use rust_decimal::Decimal;

    use crate::focus::{parse_bytes, ImportOptions};

    const HOUR_NS: i64 = 3_600_000_000_000;
    /// 2024-01-05T00:00:00Z
    const JAN_5: i64 = 1_704_412_800_000_000_000;

    /// Two AWS-shaped bill lines as AWS Data Exports writes them to Parquet:
    /// decimal costs, UTC nanosecond times, Tags as a map, an `x_` column.
    fn aws_parquet() -> Vec<u8> {
        let strings = |v: [&str; 2]| Arc::new(StringArray::from(v.to_vec())) as ArrayRef;
        // Decimal128(38, 12): 1.25 and 0.000000000001 (mantissas at scale 12).
        let costs = |v: [i128; 2]| Arc::new(Decimal128Array::from(v.to_vec()).with_precision_and_scale(38, 12).unwrap()) as ArrayRef;
        let times = |v: [i64; 2]| Arc::new(TimestampNanosecondArray::from(v.to_vec()).with_timezone("UTC")) as ArrayRef;
        let mut tags = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        tags.keys().append_value("tenant");
        tags.values().append_value("acme");
        tags.append(true).unwrap();
        tags.append(false).unwrap();
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("BilledCost", costs([1_250_000_000_000, 1])),
            ("EffectiveCost", costs([1_000_000_000_000, 1])),
            ("BillingCurrency", strings(["USD", "USD"])),
            ("ChargePeriodStart", times([JAN_5, JAN_5 + HOUR_NS])),
            ("ChargePeriodEnd", times([JAN_5 + HOUR_NS, JAN_5 + 2 * HOUR_NS])),
            ("BillingPeriodStart", times([1_704_067_200_000_000_000; 2])),
            ("BillingPeriodEnd", times([1_706_745_600_000_000_000; 2])),
            ("ProviderName", strings(["AWS", "AWS"])),
            ("ChargeCategory", strings(["Usage", "Usage"])),
            ("BillingAccountId", strings(["123456789012", "123456789012"])),
            ("Tags", Arc::new(tags.finish()) as ArrayRef),
            ("x_Operation", strings(["RunInstances", "GetObject"])),
        ];
        let schema = Arc::new(Schema::new(columns.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), true)).collect::<Vec<_>>()));
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns.into_iter().map(|(_, a)| a).collect()).unwrap();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        out
    }

    #[test]
    fn an_aws_parquet_export_reads_like_its_csv() {
        let import = parse_bytes("aws.parquet", &aws_parquet(), &ImportOptions::default()).unwrap();
        assert_eq!(import.rows.len(), 2);
        // BilledCost: 1.25 + 0.000000000001 = 1.250000000001;
        // EffectiveCost: 1.00 + 0.000000000001 = 1.000000000001.
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(import.totals()["AWS"], (d("1.250000000001"), d("1.000000000001")));
        let first = &import.rows[0];
        assert_eq!(first.tenant, "acme", "the tenant tag is read from the Tags map");
        assert_eq!(first.tags, r#"{"tenant":"acme"}"#);
        assert_eq!(import.rows[1].tenant, "unassigned", "a null Tags map is no tags");
        // One billing period of one account: one key and one scope.
        assert_eq!(import.keys.len(), 1);
        assert_eq!(import.periods.iter().next().unwrap().0, "cloud:aws:123456789012");
    }

    #[test]
    fn a_column_of_an_unreadable_type_is_named() {
        // Every mandatory column, BilledCost as bytes.
        let text = ["EffectiveCost", "BillingCurrency", "ChargePeriodStart", "ChargePeriodEnd", "BillingPeriodStart", "ProviderName"];
        let mut fields = vec![Field::new("BilledCost", DataType::Binary, false)];
        fields.extend(text.iter().map(|n| Field::new(*n, DataType::Utf8, false)));
        let schema = Arc::new(Schema::new(fields));
        let mut columns: Vec<ArrayRef> = vec![Arc::new(arrow::array::BinaryArray::from(vec![&b"1"[..]]))];
        columns.extend(
            ["1", "USD", "2024-01-05T00:00:00Z", "2024-01-05T01:00:00Z", "2024-01-01", "AWS"]
                .map(|v| Arc::new(StringArray::from(vec![v])) as ArrayRef),
        );
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let err = parse_bytes("bad.parquet", &out, &ImportOptions::default()).unwrap_err().to_string();
        assert!(err.contains("bad.parquet") && err.contains("BilledCost"), "{err}");
    }
}
