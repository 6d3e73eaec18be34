//! Errors of the stores, classified by what the caller should do about them.
//!
//! The pipeline retries a write for as long as the error is retryable, and
//! splits a batch to set rows aside only when the store says the data itself
//! is invalid. So a backend reports [`StoreError::Rejected`] only for errors it
//! knows are about the rows (a value that cannot be parsed, converted or
//! stored); every error it does not recognise is retryable, as an outage is:
//! holding a batch costs memory, dropping one loses telemetry and bills.
//!
//! | variant       | retry? | meaning                                                        |
//! |---------------|--------|----------------------------------------------------------------|
//! | `Unavailable` | yes    | an outage or overload that passes on its own                   |
//! | `Unexpected`  | yes    | authentication, permissions, or an error costplane does not know: an operator should look |
//! | `Schema`      | yes    | a table or column is missing or mistyped (fatal at startup)    |
//! | `Rejected`    | no     | the data (for a query: the statement) is invalid               |
//! | `NotReadOnly` | no     | a query that would change the store                            |
//! | `BadCell`     | no     | a stored value costplane cannot read (never read as 0)         |
//! | `UnknownValue`| no     | a stored text outside its column's vocabulary (never a default) |
//! | `Io`          | yes    | local I/O                                                      |

use thiserror::Error;

/// Errors of the stores.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The store cannot be reached or is overloaded (a lock, an outage, a
    /// timeout, too many parts): retry with back-off, quietly.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The store refused the request for a reason that is neither an outage
    /// nor about the data: failed authentication, missing permissions, or an
    /// error costplane does not recognise. Retrying is right (nothing says the
    /// rows are bad, and an operator can fix the cause), but someone should
    /// look: log it loudly.
    #[error("the store failed unexpectedly: {0}")]
    Unexpected(String),
    /// The data (for a write) or the statement (for a query) is invalid, and
    /// retrying it unchanged will fail again.
    #[error("the store refused the request: {0}")]
    Rejected(String),
    /// A query that is not a single read-only statement.
    #[error("{0}")]
    NotReadOnly(String),
    /// The database's tables are not what this version of costplane writes
    /// (a missing table or column, a column of another type, a newer schema
    /// version). Fatal at startup; during writes retryable, since an operator
    /// can fix the schema while costplane holds the batch.
    #[error("{0}")]
    Schema(String),
    /// A stored cell that does not hold what its column promises (money
    /// that is not a decimal). Reads fail with it rather than read the cell
    /// as 0: an operator must look at the row.
    #[error("{table} row {row}: column {column} holds {value}, which is not {expected}; the row must be repaired or removed before it can be read")]
    BadCell { table: &'static str, row: usize, column: &'static str, value: String, expected: &'static str },
    /// A stored text cell outside its column's vocabulary (an `x_Source`
    /// or `ChargeClass` this version of costplane does not know). Reads
    /// fail with it rather than read the row as some default.
    #[error("{table} row {row}: column {column}: {source}; the row must be repaired or removed before it can be read")]
    UnknownValue { table: &'static str, row: usize, column: &'static str, source: costplane_ledger::UnknownValue },
    #[error("store I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A file a read had listed was gone when it was opened: compaction or
    /// retention moved it. Transient: reading again lists what is there now.
    #[error("a segment file vanished while the query listed it (a compaction or retention moved it): {0}")]
    SegmentMoved(String),
}

impl StoreError {
    /// Whether writing the same batch again may succeed: everything but
    /// invalid data and refused queries.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, StoreError::Rejected(_) | StoreError::NotReadOnly(_) | StoreError::BadCell { .. } | StoreError::UnknownValue { .. })
    }

    /// Whether the store said the data itself is invalid: for a write, some
    /// rows of the batch can never be stored, and splitting the batch finds
    /// them.
    pub fn is_invalid_data(&self) -> bool {
        matches!(self, StoreError::Rejected(_))
    }

    /// Whether the failure needs an operator rather than patience
    /// (authentication, schema, an unrecognised error). Such errors are
    /// retryable too; this only says how loudly to report them.
    pub fn needs_attention(&self) -> bool {
        matches!(self, StoreError::Unexpected(_) | StoreError::Schema(_) | StoreError::BadCell { .. } | StoreError::UnknownValue { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_invalid_data_and_refused_queries_are_final() {
        let cases = [
            (StoreError::Unavailable(String::new()), true, false, false),
            (StoreError::Unexpected(String::new()), true, false, true),
            (StoreError::Schema(String::new()), true, false, true),
            (StoreError::Io(std::io::Error::other("disk")), true, false, false),
            (StoreError::SegmentMoved(String::new()), true, false, false),
            (StoreError::Rejected(String::new()), false, true, false),
            (StoreError::NotReadOnly(String::new()), false, false, false),
        ];
        for (e, retryable, invalid, attention) in cases {
            assert_eq!((e.is_retryable(), e.is_invalid_data(), e.needs_attention()), (retryable, invalid, attention), "{e:?}");
        }
    }
}
