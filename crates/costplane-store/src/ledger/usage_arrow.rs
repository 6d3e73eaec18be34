//! LLM usage rows from Arrow record batches: the incremental refresh's
//! read on a backend that returns typed columns (the embedded store), with
//! no JSON cell per value in between. Columns are in [`LlmColumn`]'s order
//! (the select list both readers share) and are cast to the type each
//! field holds;
//! a NULL where a count or time must be, or a cost that does not parse, is
//! a [`StoreError::BadCell`] naming the row and column, as on the JSON path.

use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, UInt64Type};
use costplane_ledger::{CallKind, LlmUsage, LlmUsageRow};
use rust_decimal::Decimal;

use super::llm_columns::LlmColumn;
use crate::StoreError;

const TABLE: &str = "costplane_usage_llm";

fn bad(row: usize, column: &'static str, value: String, expected: &'static str) -> StoreError {
    StoreError::BadCell { table: TABLE, row, column, value, expected }
}

/// One column of a batch, cast to `to`.
fn column(batch: &RecordBatch, c: LlmColumn, to: &DataType) -> Result<ArrayRef, StoreError> {
    let col = batch.columns().get(c.at()).ok_or_else(|| StoreError::Unexpected(format!("{TABLE}: the read has no column {}", c.name())))?;
    if col.data_type() == to {
        return Ok(Arc::clone(col));
    }
    cast(col, to).map_err(|e| StoreError::Unexpected(format!("{TABLE}.{}: cannot read as {to}: {e}", c.name())))
}

/// Every LLM usage row of `batches`, numbered from 0 across them (as the
/// JSON path numbers its rows).
pub(crate) fn llm_rows(batches: &[RecordBatch]) -> Result<Vec<LlmUsageRow>, StoreError> {
    let mut out = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for batch in batches {
        use LlmColumn as C;
        let first = out.len();
        // Each column cast once per batch to the type its field holds,
        // found again by its position.
        let mut cols: Vec<Option<ArrayRef>> = vec![None; LlmColumn::ALL.len()];
        for (group, to) in [
            (&[C::Timestamp, C::ReceivedAt, C::Hour][..], DataType::Int64),
            (
                &[C::InputTokens, C::OutputTokens, C::CacheReadTokens, C::CacheWriteTokens, C::ReasoningTokens, C::CacheWrite1hTokens][..],
                DataType::UInt64,
            ),
            (
                &[
                    C::Tenant,
                    C::Project,
                    C::Service,
                    C::TraceId,
                    C::SpanId,
                    C::Provider,
                    C::Model,
                    C::Operation,
                    C::CallKind,
                    C::InvalidReason,
                    C::ProvidedCost,
                ][..],
                DataType::Utf8,
            ),
        ] {
            for &c in group {
                cols[c.at()] = Some(column(batch, c, &to)?);
            }
        }
        let array = |c: C| cols[c.at()].as_ref().expect("every column read is cast above");
        let int = |c: C, row: usize| -> Result<i64, StoreError> {
            let a = array(c).as_primitive::<Int64Type>();
            if a.is_null(row) {
                return Err(bad(first + row, c.name(), "null".into(), "an integer"));
            }
            Ok(a.value(row))
        };
        let count = |c: C, row: usize| -> Result<u64, StoreError> {
            let a = array(c).as_primitive::<UInt64Type>();
            if a.is_null(row) {
                return Err(bad(first + row, c.name(), "null".into(), "a non-negative integer"));
            }
            Ok(a.value(row))
        };
        // NULL text reads as '' (as `text` reads a JSON null).
        let str_at = |c: C, row: usize| -> &str {
            let a = array(c).as_string::<i32>();
            if a.is_null(row) {
                ""
            } else {
                a.value(row)
            }
        };
        let text = |c: C, row: usize| str_at(c, row).to_owned();
        let cost = array(C::ProvidedCost).as_string::<i32>();
        for row in 0..batch.num_rows() {
            let provided_cost = if cost.is_null(row) {
                None
            } else {
                let v = cost.value(row);
                Some(Decimal::from_str(v.trim()).map_err(|_| bad(first + row, C::ProvidedCost.name(), v.to_owned(), "a decimal"))?)
            };
            let reason = str_at(C::InvalidReason, row);
            out.push(LlmUsageRow {
                timestamp_ns: int(C::Timestamp, row)?,
                received_ns: int(C::ReceivedAt, row)?,
                hour_ns: int(C::Hour, row)?,
                tenant: text(C::Tenant, row),
                project: text(C::Project, row),
                service: text(C::Service, row),
                trace_id: text(C::TraceId, row),
                span_id: text(C::SpanId, row),
                kind: CallKind::parse(str_at(C::CallKind, row)),
                usage: LlmUsage {
                    provider: text(C::Provider, row),
                    model: text(C::Model, row),
                    operation: text(C::Operation, row),
                    input_tokens: count(C::InputTokens, row)?,
                    output_tokens: count(C::OutputTokens, row)?,
                    cache_read_tokens: count(C::CacheReadTokens, row)?,
                    cache_write_tokens: count(C::CacheWriteTokens, row)?,
                    reasoning_tokens: count(C::ReasoningTokens, row)?,
                    cache_write_1h_tokens: count(C::CacheWrite1hTokens, row)?,
                    provided_cost,
                },
                invalid_reason: (!reason.is_empty()).then(|| reason.to_owned()),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Decimal128Array, Int64Array, StringArray, UInt64Array};
    use arrow::datatypes::{Field, Schema};

    /// Two rows as the embedded store returns them: times as BIGINT,
    /// counts as UBIGINT, the cost as DECIMAL(38, 12); `input` is row 1's
    /// input count.
    fn batch(input: Option<u64>) -> RecordBatch {
        let mut fields = Vec::new();
        let mut cols: Vec<ArrayRef> = Vec::new();
        for (i, name) in LlmColumn::ALL.iter().map(|c| c.name()).enumerate() {
            let (ty, col): (DataType, ArrayRef) = match i {
                0 | 1 | 18 => (DataType::Int64, Arc::new(Int64Array::from(vec![7_200_000_000_000, 7_300_000_000_000]))),
                10 => (DataType::UInt64, Arc::new(UInt64Array::from(vec![Some(1000), input]))),
                11..=14 | 19 => (DataType::UInt64, Arc::new(UInt64Array::from(vec![i as u64, 0]))),
                15 => (
                    DataType::Decimal128(38, 12),
                    // 0.25 and NULL (no cost carried).
                    Arc::new(Decimal128Array::from(vec![Some(250_000_000_000), None]).with_precision_and_scale(38, 12).unwrap()),
                ),
                16 => (DataType::Utf8, Arc::new(StringArray::from(vec!["rollup", "model"]))),
                17 => (DataType::Utf8, Arc::new(StringArray::from(vec![None, Some("bad count")]))),
                _ => (DataType::Utf8, Arc::new(StringArray::from(vec![Some(name), None]))),
            };
            fields.push(Field::new(name, ty, true));
            cols.push(col);
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
    }

    #[test]
    fn rows_are_read_from_typed_columns() {
        let rows = llm_rows(&[batch(Some(5))]).unwrap();
        assert_eq!(rows.len(), 2);
        let (a, b) = (&rows[0], &rows[1]);
        assert_eq!((a.timestamp_ns, a.received_ns, a.hour_ns), (7_200_000_000_000, 7_200_000_000_000, 7_200_000_000_000));
        assert_eq!((a.tenant.as_str(), a.usage.model.as_str(), a.kind), ("Tenant", "Model", CallKind::Rollup));
        assert_eq!((a.usage.input_tokens, a.usage.output_tokens, a.usage.cache_write_1h_tokens), (1000, 11, 19));
        assert_eq!(a.usage.provided_cost, Some(Decimal::new(25, 2)));
        assert_eq!(a.invalid_reason, None);
        // NULL text reads '', a NULL cost is none carried.
        assert_eq!((b.tenant.as_str(), b.usage.input_tokens, b.usage.provided_cost), ("", 5, None));
        assert_eq!((b.kind, b.invalid_reason.as_deref()), (CallKind::Model, Some("bad count")));
    }

    #[test]
    fn a_null_count_is_an_error_naming_its_row_and_column_never_zero() {
        // Row numbers run across batches: the second batch's row 1 is row 3.
        match llm_rows(&[batch(Some(1)), batch(None)]) {
            Err(StoreError::BadCell { table: TABLE, row: 3, column: "InputTokens", .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}
