//! Ad-hoc SQL from users (`/api/v1/sql`, `costplane sql`) on the embedded store.
//!
//! Invariants, each enforced by DuckDB itself rather than by looking at
//! keywords (a keyword test let `WITH x AS (SELECT 1) DELETE ...` and
//! `EXPLAIN ANALYZE DELETE ...` through):
//! - **One SELECT statement, by DuckDB's parser.** The user's text is never
//!   prepared as SQL of its own: it is bound as a parameter of DuckDB's
//!   `query()` table function (`SELECT * FROM query($1)`), whose binder
//!   parses it and accepts exactly one statement of type SELECT (which
//!   covers `FROM t`, `WITH ... SELECT`, `DESCRIBE`, `SHOW`, `SUMMARIZE`,
//!   `VALUES`). Several statements, `DELETE` under a `WITH`, `EXPLAIN
//!   ANALYZE`, `SET`, `PRAGMA`, `CALL`, `ATTACH`, `COPY`, `INSTALL`, `LOAD`,
//!   DML and DDL are other statement types and are refused before anything
//!   runs. (duckdb-rs's `prepare` would *execute* every statement of a
//!   multi-statement text but the last, so user text never reaches it.)
//! - **A read-only transaction, rolled back.** The statement runs inside
//!   `BEGIN TRANSACTION READ ONLY`, so anything that still tries to write
//!   (an `EXPLAIN ANALYZE` of a write, a table function that writes) fails
//!   in DuckDB's transaction manager, and the transaction is rolled back
//!   whatever happens.
//! - **No files, no network.** The database is opened with
//!   `enable_external_access = false`: `read_csv('/etc/passwd')`, `COPY`,
//!   `ATTACH` of a file and extension installs fail in the engine.
//! - **Bounded.** Results stream and stop at the row limit (the answer says
//!   it was truncated); a timer interrupts the query at the timeout. Ad-hoc
//!   queries run on their own connection, one at a time, so a slow one never
//!   holds the connection that the cost API and `/metrics` read through.

use crate::StoreError;

/// The only SQL the ad-hoc path prepares; the user's text is its parameter.
const WRAPPER: &str = "SELECT * FROM query($1)";

/// Runs the user's statement in a read-only transaction that is rolled
/// back, streaming at most `max_rows` rows.
pub(super) fn run_read_only(
    conn: &duckdb::Connection,
    sql: &str,
    max_rows: usize,
) -> Result<(Vec<::arrow::record_batch::RecordBatch>, ::arrow::datatypes::SchemaRef, bool), StoreError> {
    conn.execute_batch("BEGIN TRANSACTION READ ONLY").map_err(super::db_err)?;
    let result = (|| {
        let mut stmt = conn.prepare(WRAPPER).map_err(refused)?;
        let mut stream = stmt.stream_arrow([sql]).map_err(refused)?;
        let schema = stream.get_schema();
        let (mut batches, mut rows, mut truncated) = (Vec::new(), 0usize, false);
        for batch in stream.by_ref() {
            let batch = batch.map_err(refused)?;
            if rows + batch.num_rows() > max_rows {
                batches.push(batch.slice(0, max_rows - rows));
                truncated = true;
                break;
            }
            rows += batch.num_rows();
            batches.push(batch);
        }
        Ok((batches, schema, truncated))
    })();
    // Whatever ran, nothing of it stays.
    let _ = conn.execute_batch("ROLLBACK");
    result
}

fn refused(e: duckdb::Error) -> StoreError {
    let text = e.to_string();
    if text.contains("Expected a single SELECT statement") || text.contains("not supported in query() function") {
        // DuckDB's caret points into the wrapper, not the user's text: cut it.
        let reason = text.split("\n\n").next().unwrap_or(&text);
        StoreError::NotReadOnly(format!(
            "only read-only statements are allowed: one SELECT (or FROM, WITH ... SELECT, DESCRIBE, SHOW, SUMMARIZE) ({reason})"
        ))
    } else if text.contains("read-only mode") {
        StoreError::NotReadOnly(format!("the statement tried to write: {text}"))
    } else if text.contains("INTERRUPT") || text.contains("nterrupted") {
        StoreError::Unavailable(format!("the query was stopped at the time limit: {text}"))
    } else {
        super::errors::read_error_text(text)
    }
}
