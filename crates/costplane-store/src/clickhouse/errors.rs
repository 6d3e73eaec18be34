//! What a failed ClickHouse request means, from its HTTP status and
//! ClickHouse's exception code (`X-ClickHouse-Exception-Code`, or the
//! `Code: N.` the error text starts with).
//!
//! The code decides when there is one: ClickHouse answers most exceptions
//! with HTTP 500, so the status alone says little. Without a code (a proxy,
//! a load balancer, ClickHouse Cloud waking up), 408, 429 and 5xx are an
//! outage and anything else is unexpected. Only codes known to be about the
//! inserted values count as invalid data; unknown codes are retried.

use crate::StoreError;

/// The meaning of a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An outage or overload that passes on its own.
    Transient,
    /// The values sent cannot be stored.
    Data,
    /// A table, column or database is missing or different.
    Schema,
    /// Authentication or permissions.
    Auth,
    /// Anything else.
    Unknown,
}

/// What the request was: a write (inserts, DDL, deletes: costplane's own
/// statements) or a query (a statement that may come from a user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Write,
    Query,
}

/// Codes about the inserted values: parsing, conversion, range, size,
/// constraints. Retrying the same rows fails the same way.
const DATA_CODES: [u32; 32] = [
    6,   // CANNOT_PARSE_TEXT
    7,   // INCORRECT_NUMBER_OF_COLUMNS (a row with the wrong number of values)
    19,  // SIZE_OF_FIXED_STRING_DOESNT_MATCH
    25,  // CANNOT_PARSE_ESCAPE_SEQUENCE
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    32,  // ATTEMPT_TO_READ_AFTER_EOF (a row shorter than its columns)
    33,  // CANNOT_READ_ALL_DATA (ditto)
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    128, // TOO_LARGE_ARRAY_SIZE
    130, // CANNOT_READ_ARRAY_FROM_TEXT
    131, // TOO_LARGE_STRING_SIZE
    190, // SIZES_OF_ARRAYS_DONT_MATCH (Nested subcolumns of different lengths)
    321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349, // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    366, // SIZES_OF_NESTED_COLUMNS_ARE_INCONSISTENT
    376, // CANNOT_PARSE_UUID
    395, // FUNCTION_THROW_IF_VALUE_IS_NON_ZERO (a throwIf in a view or constraint)
    407, // DECIMAL_OVERFLOW
    441, // CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING
    467, // CANNOT_PARSE_BOOL
    469, // VIOLATED_CONSTRAINT
    563, // CANNOT_READ_MAP_FROM_TEXT
    632, // UNEXPECTED_DATA_AFTER_PARSED_VALUE
    675, // CANNOT_PARSE_IPV4
    676, // CANNOT_PARSE_IPV6
];

/// Codes of outages and overload, which pass on their own.
const TRANSIENT_CODES: [u32; 38] = [
    3,    // UNEXPECTED_END_OF_FILE (connection cut mid-body)
    159,  // TIMEOUT_EXCEEDED
    173,  // CANNOT_ALLOCATE_MEMORY
    201,  // QUOTA_EXCEEDED (the quota interval ends)
    202,  // TOO_MANY_SIMULTANEOUS_QUERIES
    203,  // NO_FREE_CONNECTION
    209,  // SOCKET_TIMEOUT
    210,  // NETWORK_ERROR
    225,  // NO_ZOOKEEPER
    236,  // ABORTED
    241,  // MEMORY_LIMIT_EXCEEDED
    242,  // TABLE_IS_READ_ONLY (replica lost its Keeper session)
    243,  // NOT_ENOUGH_SPACE
    244,  // UNEXPECTED_ZOOKEEPER_ERROR
    252,  // TOO_MANY_PARTS (merges behind; see `classify` for the partition case)
    254,  // NO_ACTIVE_REPLICAS
    265,  // NO_AVAILABLE_REPLICA
    279,  // ALL_CONNECTION_TRIES_FAILED
    285,  // TOO_FEW_LIVE_REPLICAS
    286,  // UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE
    289,  // REPLICA_IS_NOT_IN_QUORUM
    319,  // UNKNOWN_STATUS_OF_INSERT
    364,  // RECEIVED_ERROR_TOO_MANY_REQUESTS
    369,  // ALL_REPLICAS_ARE_STALE
    373,  // SESSION_IS_LOCKED
    384,  // PART_IS_TEMPORARILY_LOCKED
    394,  // QUERY_WAS_CANCELLED
    415,  // ALL_REPLICAS_LOST
    425,  // SYSTEM_ERROR
    439,  // CANNOT_SCHEDULE_TASK
    473,  // DEADLOCK_AVOIDED
    519,  // NO_REMOTE_SHARD_AVAILABLE
    999,  // KEEPER_EXCEPTION
    1000, // POCO_EXCEPTION
    1017, // ASYNC_INSERT_FLUSH_TIMEOUT
    1019, // QUERY_SLOT_ACQUISITION_TIMEOUT
    1020, // MEMORY_RESERVATION_ACQUISITION_TIMEOUT
    778,  // MEMORY_RESERVATION_FAILED
];

/// Codes of missing or different tables, columns and databases.
const SCHEMA_CODES: [u32; 9] = [
    8,   // THERE_IS_NO_COLUMN
    10,  // NOT_FOUND_COLUMN_IN_BLOCK
    16,  // NO_SUCH_COLUMN_IN_TABLE
    20,  // NUMBER_OF_COLUMNS_DOESNT_MATCH
    47,  // UNKNOWN_IDENTIFIER
    60,  // UNKNOWN_TABLE
    81,  // UNKNOWN_DATABASE
    218, // TABLE_IS_DROPPED
    517, // CANNOT_ASSIGN_ALTER
];

/// Codes of authentication and permissions.
const AUTH_CODES: [u32; 9] = [
    164, // READONLY (the user's profile is read-only)
    192, // UNKNOWN_USER
    193, // WRONG_PASSWORD
    194, // REQUIRED_PASSWORD
    195, // IP_ADDRESS_NOT_ALLOWED
    291, // DATABASE_ACCESS_DENIED
    497, // ACCESS_DENIED
    516, // AUTHENTICATION_FAILED
    673, // RESOURCE_ACCESS_DENIED
];

/// The exception code at the start of ClickHouse's error text (`Code: 60. DB::Exception: ...`).
pub(crate) fn code_in_text(text: &str) -> Option<u32> {
    let rest = text.trim_start().strip_prefix("Code:")?.trim_start();
    let digits = rest.find(|c: char| !c.is_ascii_digit()).map_or(rest, |end| &rest[..end]);
    digits.parse().ok()
}

/// Classifies a failed request by its HTTP status, exception code and text.
pub(crate) fn classify(status: u16, code: Option<u32>, text: &str) -> Kind {
    if let Some(code) = code {
        // An INSERT spanning more partitions than `max_partitions_per_insert_block`
        // shares TOO_MANY_PARTS with "merges are behind", but fails the same way
        // every time: a table partitioned more finely than costplane splits.
        if code == 252 && text.contains("Too many partitions") {
            return Kind::Unknown;
        }
        if DATA_CODES.contains(&code) {
            return Kind::Data;
        }
        if TRANSIENT_CODES.contains(&code) {
            return Kind::Transient;
        }
        if SCHEMA_CODES.contains(&code) {
            return Kind::Schema;
        }
        if AUTH_CODES.contains(&code) {
            return Kind::Auth;
        }
    }
    match status {
        408 | 429 => Kind::Transient,
        // ClickHouse answers unlisted exceptions with 500: with a code, an
        // unknown code is unknown; without one, a 5xx is a server or proxy outage.
        500..=599 if code.is_none() || matches!(status, 502..=504) => Kind::Transient,
        401 | 403 | 407 if code.is_none() => Kind::Auth,
        _ => Kind::Unknown,
    }
}

/// The error for a failed request of kind `kind`.
///
/// Queries keep the meaning they had for their caller: a statement that
/// names an unknown column or fails in any way not known to pass is the
/// statement's fault (`Rejected`); only outages and authentication differ.
pub(crate) fn to_error(kind: Kind, op: Op, message: String) -> StoreError {
    match (kind, op) {
        (Kind::Transient, _) => StoreError::Unavailable(message),
        (Kind::Auth, _) => StoreError::Unexpected(format!("{message} (check the ClickHouse user, password and grants)")),
        (Kind::Data, _) | (Kind::Schema | Kind::Unknown, Op::Query) => StoreError::Rejected(message),
        (Kind::Schema, Op::Write) => StoreError::Schema(message),
        (Kind::Unknown, Op::Write) => StoreError::Unexpected(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_map_to_kinds() {
        use Kind::*;
        let cases: &[(u16, Option<u32>, &str, Kind)] = &[
            // The data itself.
            (400, Some(6), "Code: 6. Cannot parse text", Data),
            (400, Some(27), "", Data),
            (400, Some(38), "", Data),
            (400, Some(41), "", Data),
            (400, Some(72), "", Data),
            (500, Some(33), "Cannot read all data", Data),
            (400, Some(53), "", Data),
            (500, Some(69), "", Data),
            (500, Some(70), "", Data),
            (400, Some(117), "", Data),
            (500, Some(131), "", Data),
            (400, Some(321), "", Data),
            (500, Some(407), "", Data),
            (500, Some(469), "", Data),
            // Outages and overload, with or without a code.
            (500, Some(241), "", Transient),
            (503, Some(209), "", Transient),
            (500, Some(252), "Too many parts (300). Merges are processing significantly slower than inserts", Transient),
            (500, Some(319), "", Transient),
            (500, Some(1000), "", Transient),
            (408, None, "", Transient),
            (429, None, "", Transient),
            (500, None, "", Transient),
            (502, None, "bad gateway", Transient),
            (503, None, "", Transient),
            (504, None, "", Transient),
            (503, Some(4242), "", Transient),
            // Authentication: retried, loudly.
            (403, Some(516), "", Auth),
            (403, Some(497), "", Auth),
            (401, Some(194), "", Auth),
            (401, None, "", Auth),
            (403, None, "", Auth),
            // Schema problems: retried, loudly.
            (404, Some(60), "", Schema),
            (400, Some(16), "", Schema),
            (404, Some(81), "", Schema),
            (404, Some(47), "", Schema),
            // Unknown: retried, loudly.
            (500, Some(252), "Too many partitions for single INSERT block (more than 100)", Unknown),
            (500, Some(49), "LOGICAL_ERROR", Unknown),
            (500, Some(1001), "std::exception", Unknown),
            (500, Some(4242), "", Unknown),
            (400, None, "", Unknown),
            (404, None, "", Unknown),
            (418, None, "", Unknown),
        ];
        for &(status, code, text, kind) in cases {
            assert_eq!(classify(status, code, text), kind, "status {status}, code {code:?}, {text:?}");
        }
    }

    #[test]
    fn lists_do_not_overlap() {
        let lists: [&[u32]; 4] = [&DATA_CODES, &TRANSIENT_CODES, &SCHEMA_CODES, &AUTH_CODES];
        for (i, a) in lists.iter().enumerate() {
            for b in &lists[i + 1..] {
                assert!(a.iter().all(|c| !b.contains(c)), "{a:?} and {b:?} share a code");
            }
        }
    }

    #[test]
    fn writes_retry_all_but_data_and_queries_keep_statement_errors_final() {
        let kinds = [Kind::Transient, Kind::Data, Kind::Schema, Kind::Auth, Kind::Unknown];
        let write: Vec<bool> = kinds.iter().map(|&k| to_error(k, Op::Write, String::new()).is_retryable()).collect();
        assert_eq!(write, [true, false, true, true, true]);
        let write_invalid: Vec<bool> = kinds.iter().map(|&k| to_error(k, Op::Write, String::new()).is_invalid_data()).collect();
        assert_eq!(write_invalid, [false, true, false, false, false]);
        let query: Vec<bool> = kinds.iter().map(|&k| to_error(k, Op::Query, String::new()).is_retryable()).collect();
        assert_eq!(query, [true, false, false, true, false]);
        assert!(matches!(to_error(Kind::Schema, Op::Write, String::new()), StoreError::Schema(_)));
        assert!(matches!(to_error(Kind::Unknown, Op::Write, String::new()), StoreError::Unexpected(_)));
    }

    #[test]
    fn the_code_is_read_from_the_text_when_the_header_is_missing() {
        assert_eq!(code_in_text("Code: 60. DB::Exception: Table x doesn't exist"), Some(60));
        assert_eq!(code_in_text("  Code:241. DB::Exception"), Some(241));
        assert_eq!(code_in_text("Bad Gateway"), None);
        assert_eq!(code_in_text("Code: x"), None);
    }
}
