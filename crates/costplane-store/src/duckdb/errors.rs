//! What a failed DuckDB call means, from the error type DuckDB puts at the
//! start of its message (`Conversion Error: ...`, `Catalog Error: ...`).
//!
//! Only the types DuckDB raises for values (conversion, invalid input,
//! constraint, out of range) are invalid data; locks, conflicts, I/O and
//! memory pass; missing tables and columns are schema problems; anything
//! else is unexpected and retried.
//!
//! A read that finds a segment file it listed gone (compaction or retention
//! moved it) is `SegmentMoved` and read again ([`retry_vanished`]); other
//! read errors are about the statement (`Rejected`).
//!
//! The appender's errors come without the type (DuckDB's C API hands out
//! the bare message), so [`classify_append`] recognises the messages the
//! appender and its flush raise instead.

use crate::StoreError;

/// DuckDB's error type: the text before ` Error: ` at the start.
fn error_type(text: &str) -> Option<&str> {
    let (kind, _) = text.split_once(" Error: ")?;
    // Types are short words ("Out of Range", "TransactionContext"), never a sentence.
    (kind.len() <= 32 && !kind.contains(':')).then_some(kind)
}

/// Invalid Input errors the appender raises about the table's columns
/// rather than about a value.
fn is_column_mismatch(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    ["appenddatachunk", "column must exist", "column count", "type mismatch in append"].iter().any(|n| lower.contains(n))
}

/// Invalid Input errors about the appender's or connection's state.
fn is_appender_state(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    ["appender", "endrow", "readonly", "read-only", "closed connection"].iter().any(|n| lower.contains(n))
}

/// The error for a failed write-side DuckDB call (appends, DDL, deletes).
pub(crate) fn classify(e: duckdb::Error) -> StoreError {
    classify_text(e.to_string())
}

/// The error for a failed appender call (create, add a column, append,
/// flush).
pub(crate) fn classify_append(e: duckdb::Error) -> StoreError {
    classify_append_text(e.to_string())
}

fn classify_append_text(text: String) -> StoreError {
    if error_type(&text).is_some() {
        return classify_text(text);
    }
    let lower = text.to_ascii_lowercase();
    if is_column_mismatch(&text) {
        StoreError::Schema(text)
    } else if lower.contains("arrow") {
        // The Arrow → DuckDB conversion of costplane's own column types.
        StoreError::Unexpected(text)
    } else if ["constraint failed", "violates", "could not convert", "can't be cast", "out of range", "invalid unicode"]
        .iter()
        .any(|n| lower.contains(n))
    {
        // NOT NULL, CHECK, primary key and unique constraints; casts of values.
        StoreError::Rejected(text)
    } else if lower.contains("could not be found") || lower.contains("does not exist") {
        StoreError::Schema(text)
    } else {
        StoreError::Unexpected(text)
    }
}

pub(crate) fn classify_text(text: String) -> StoreError {
    match error_type(&text) {
        Some("Conversion" | "Constraint" | "Out of Range" | "Divide by Zero") => StoreError::Rejected(text),
        Some("Invalid Input") if is_column_mismatch(&text) => StoreError::Schema(text),
        Some("Invalid Input") if !is_appender_state(&text) => StoreError::Rejected(text),
        Some("Catalog" | "Binder") => StoreError::Schema(text),
        Some("IO" | "Out of Memory" | "INTERRUPT" | "Resource In Use") => StoreError::Unavailable(text),
        // Write-write conflicts between transactions pass when retried.
        Some("TransactionContext") if text.contains("onflict") => StoreError::Unavailable(text),
        _ if text.contains("Could not set lock") || text.contains("Conflicting lock") => StoreError::Unavailable(text),
        _ => StoreError::Unexpected(text),
    }
}

/// Whether DuckDB's message says a Parquet file of the data directory it
/// had listed cannot be opened: a reader of `tables/` that listed a
/// partition just before compaction swapped it, or a query bound to a
/// generation past its grace period. Reading again lists what is there now.
fn is_vanished_segment(text: &str) -> bool {
    error_type(text) == Some("IO")
        && (text.contains("No such file or directory") || text.contains("No files found that match the pattern"))
        && (text.contains("/tables/") || text.contains("/segments/"))
}

/// The error for a failed read-side DuckDB call: a vanished segment is
/// transient (read again); anything else is about the statement.
pub(crate) fn read_error(e: duckdb::Error) -> StoreError {
    read_error_text(e.to_string())
}

pub(crate) fn read_error_text(text: String) -> StoreError {
    if is_vanished_segment(&text) {
        StoreError::SegmentMoved(text)
    } else {
        StoreError::Rejected(text)
    }
}

/// Runs a read, again (at most three more times) while it fails because a
/// segment vanished under it: each run lists the files anew.
pub(crate) fn retry_vanished<T>(mut read: impl FnMut() -> Result<T, StoreError>) -> Result<T, StoreError> {
    let mut again = 0;
    loop {
        match read() {
            Err(StoreError::SegmentMoved(text)) if again < 3 => {
                again += 1;
                tracing::debug!(again, error = %text, "reading again after a segment vanished");
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that `classify` gives each text of `cases` its kind.
    fn check(classify: fn(String) -> StoreError, cases: &[(&str, &str)]) {
        for &(text, expected) in cases {
            let kind = match classify(text.to_owned()) {
                StoreError::Rejected(_) => "data",
                StoreError::Unavailable(_) => "transient",
                StoreError::Schema(_) => "schema",
                StoreError::Unexpected(_) => "unexpected",
                _ => "other",
            };
            assert_eq!(kind, expected, "{text}");
        }
    }

    #[test]
    fn appender_messages_without_a_type_map_to_kinds() {
        let cases = [
            ("Failed to append: CHECK constraint failed on table \"otel_logs\" with expression CHECK((SeverityNumber < 12))", "data"),
            ("Failed to append: NOT NULL constraint failed: otel_logs.Owner", "data"),
            ("Failed to append: Duplicate key \"BatchId: 7\" violates primary key constraint.", "data"),
            ("Could not convert string 'x' to INT32", "data"),
            ("incorrect column count in AppendDataChunk, expected 16, got 15", "schema"),
            ("type mismatch in AppendDataChunk, expected VARCHAR, got INTEGER for column 4", "schema"),
            ("the column must exist in the table", "schema"),
            ("Table 'costplane.main.otel_logs' could not be found", "schema"),
            ("Appender: Attempting to flush data to a closed connection", "unexpected"),
            ("Could not convert Arrow record batch to DuckDB data chunk: unsupported Arrow type", "unexpected"),
            ("IO Error: No space left on device", "transient"),
            ("appender is null", "unexpected"),
        ];
        check(classify_append_text, &cases);
    }

    #[test]
    fn a_vanished_segment_is_read_again_and_other_read_errors_are_not() {
        let gone = "IO Error: Cannot open file \"/tmp/d/tables/otel_traces/date=2030-01-01/c-1-f.parquet\": No such file or directory";
        let glob = "IO Error: No files found that match the pattern \"/tmp/d/segments/otel_traces/date=2030-01-01.g-1-2/*.parquet\"";
        let other_file = "IO Error: Cannot open file \"/etc/x.parquet\": No such file or directory";
        assert!(matches!(read_error_text(gone.into()), StoreError::SegmentMoved(_)));
        assert!(matches!(read_error_text(glob.into()), StoreError::SegmentMoved(_)));
        assert!(matches!(read_error_text(other_file.into()), StoreError::Rejected(_)));
        assert!(matches!(read_error_text("Binder Error: no column x".into()), StoreError::Rejected(_)));
        // Read again until it passes; at most three times more; never for other errors.
        let mut runs = 0;
        assert_eq!(
            retry_vanished(|| {
                runs += 1;
                if runs < 3 {
                    Err(read_error_text(gone.into()))
                } else {
                    Ok(runs)
                }
            })
            .unwrap(),
            3
        );
        runs = 0;
        assert!(retry_vanished(|| -> Result<(), _> {
            runs += 1;
            Err(read_error_text(gone.into()))
        })
        .is_err());
        assert_eq!(runs, 4);
        runs = 0;
        assert!(retry_vanished(|| -> Result<(), _> {
            runs += 1;
            Err(StoreError::Unavailable("the query ran past its time limit".into()))
        })
        .is_err());
        assert_eq!(runs, 1);
    }

    #[test]
    fn error_types_map_to_kinds() {
        let cases = [
            ("Conversion Error: Could not convert string 'x' to INT32", "data"),
            ("Conversion Error: Could not convert string 'Conflict' to INT32", "data"),
            ("Invalid Input Error: Invalid unicode (byte sequence mismatch) detected in segment statistics update", "data"),
            ("Constraint Error: NOT NULL constraint failed: otel_logs.Body", "data"),
            ("Constraint Error: Failed to append: Duplicate key \"BatchId: 7\" violates primary key constraint", "data"),
            ("Out of Range Error: Overflow in multiplication of DECIMAL(38) (1 * 2)", "data"),
            ("Invalid Input Error: incorrect column count in AppendDataChunk, expected 15, got 16", "schema"),
            ("Invalid Input Error: type mismatch in AppendDataChunk, expected VARCHAR, got INTEGER for column 4", "schema"),
            ("Invalid Input Error: the column must exist in the table", "schema"),
            ("Invalid Input Error: Cannot append to a readonly database.", "unexpected"),
            ("Catalog Error: Table with name otel_logs does not exist!", "schema"),
            ("Binder Error: Referenced column \"SeverityText\" not found in FROM clause!", "schema"),
            ("IO Error: Could not write file \"costplane.duckdb.wal\": No space left on device", "transient"),
            ("IO Error: Could not set lock on file \"costplane.duckdb\": Conflicting lock is held", "transient"),
            ("TransactionContext Error: Catalog write-write conflict on create with \"otel_logs\"", "transient"),
            ("TransactionContext Error: Conflict on tuple deletion!", "transient"),
            ("Out of Memory Error: failed to allocate data of size 64.0 MiB (1.9 GiB/2.0 GiB used)", "transient"),
            ("INTERRUPT Error: Interrupted!", "transient"),
            ("INTERNAL Error: Attempted to access index 3 within vector of size 3", "unexpected"),
            ("Not implemented Error: Unsupported type", "unexpected"),
            ("Could not convert Arrow record batch to DuckDB data chunk: unsupported type", "unexpected"),
            ("TransactionContext Error: cannot commit - transaction is aborted", "unexpected"),
            ("something new", "unexpected"),
        ];
        check(classify_text, &cases);
    }
}
