//! The embedded store's side of the PostgreSQL endpoint
//! (`costplane-pgwire`): the cost views, and queries scoped to a principal.
//!
//! Invariants:
//! - **The views live in the store's file** (`cost_views.rs`), created at
//!   every start, so `/api/v1/sql` and `costplane sql` read them too.
//! - **Admin queries run as `/api/v1/sql` runs them** (`adhoc.rs`): one
//!   SELECT by DuckDB's parser, a read-only transaction rolled back, no
//!   file access, the row limit and the timeout.
//! - **A tenant's queries run in a database of its own.** An in-memory
//!   DuckDB (external access off) receives the tenant's current ledger rows
//!   and anomaly records, selected with the tenant as a bound parameter,
//!   and the cost views over them; the statement runs there under the same
//!   read-only rules. Other tenants' rows and the telemetry tables are not
//!   in that database, so no statement can name them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use duckdb::{Config, Connection};

use super::{adhoc, db_err, errors, rows_of, DuckDbStore};
use crate::cost_views::{self, Flavor};
use crate::{QueryLimits, QueryResult, StoreError};

/// Creates (or replaces) the cost views and the `now()` macro.
pub(super) fn install(conn: &Connection) -> Result<(), StoreError> {
    for statement in cost_views::duckdb_statements() {
        conn.execute_batch(&statement).map_err(|e| {
            StoreError::Schema(format!("creating the cost views failed: {e} (in: {})", statement.lines().next().unwrap_or("")))
        })?;
    }
    Ok(())
}

/// A tenant's anomaly records, found by the tenant in the record's group.
const TENANT_ANOMALIES: &str = "SELECT * FROM costplane_anomalies WHERE regexp_extract(\"Body\", '\"tenant\":\"([^\"]*)\"', 1) = ?";

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Copies `select` (with `tenant` bound) from `from` into a new table `table` of `to`.
fn copy_table(from: &Connection, to: &Connection, source: &str, table: &str, select: &str, tenant: &str) -> Result<(), StoreError> {
    let mut columns = from
        .prepare("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position")
        .map_err(db_err)?;
    let columns: Vec<(String, String)> =
        columns.query_map([source], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db_err)?.collect::<Result<_, _>>().map_err(db_err)?;
    if columns.is_empty() {
        return Err(StoreError::Schema(format!("the store has no {source}")));
    }
    let ddl = columns.iter().map(|(name, ty)| format!("{} {ty}", quote_ident(name))).collect::<Vec<_>>().join(", ");
    to.execute_batch(&format!("CREATE TABLE {} ({ddl})", quote_ident(table))).map_err(db_err)?;
    let mut stmt = from.prepare(select).map_err(errors::read_error)?;
    let batches: Vec<_> = stmt.query_arrow([tenant]).map_err(errors::read_error)?.collect();
    let mut appender = to.appender(table).map_err(db_err)?;
    for batch in batches {
        appender.append_record_batch(batch).map_err(db_err)?;
    }
    appender.flush().map_err(db_err)
}

/// The in-memory database a tenant's statement runs in.
fn tenant_database(reader: &Connection, tenant: &str) -> Result<Connection, StoreError> {
    let config = Config::default().enable_external_access(false).and_then(|c| c.enable_autoload_extension(false)).map_err(db_err)?;
    let db = Connection::open_in_memory_with_flags(config).map_err(db_err)?;
    db.execute_batch("SET integer_division = true").map_err(db_err)?;
    copy_table(reader, &db, "costplane_ledger", "costplane_cost_rows", "SELECT * FROM costplane_cost_rows WHERE x_Tenant = ?", tenant)?;
    copy_table(reader, &db, "costplane_anomalies", "costplane_anomalies", TENANT_ANOMALIES, tenant)?;
    db.execute_batch(&cost_views::duckdb_statements()[0]).map_err(db_err)?;
    for statement in cost_views::view_statements(Flavor::DuckDb, "") {
        db.execute_batch(&statement).map_err(db_err)?;
    }
    Ok(db)
}

/// Tables and views (schema, name, is a view) a connection sees, in name order.
fn relations_of(conn: &Connection) -> Result<Vec<(String, String, bool)>, StoreError> {
    let mut stmt = conn
        .prepare(
            // The telemetry tables are views over Parquet files: tables to clients.
            "SELECT table_schema, table_name, table_type = 'VIEW' AND table_name NOT LIKE 'otel\\_%' ESCAPE '\\' FROM information_schema.tables \
             WHERE table_schema NOT IN ('information_schema', 'pg_catalog') AND table_name NOT LIKE 'costplane\\_%' ESCAPE '\\' \
             OR table_name IN ('costplane_ledger', 'costplane_ledger_hours', 'costplane_anomalies') ORDER BY table_name",
        )
        .map_err(db_err)?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(db_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
}

/// Interrupts the statement in DuckDB when dropped before it finished: the
/// client sent a cancel request or went away, or the time limit passed.
/// A statement still waiting for its connection does not start.
struct Stopper {
    handle: Arc<Mutex<Option<Arc<duckdb::InterruptHandle>>>>,
    stopped: Arc<AtomicBool>,
    done: bool,
}

impl Drop for Stopper {
    fn drop(&mut self) {
        if !self.done {
            self.stopped.store(true, Ordering::SeqCst);
            if let Some(handle) = self.handle.lock().ok().and_then(|h| h.clone()) {
                handle.interrupt();
            }
        }
    }
}

impl DuckDbStore {
    /// Runs one read-only statement of the SQL endpoint: as `/api/v1/sql`
    /// does (on the ad-hoc connection) for `tenant = None`, in the tenant's
    /// own database otherwise. With `describe`, only the columns are wanted
    /// (no rows are returned). Dropping the future stops the statement.
    pub async fn endpoint_query(
        &self,
        sql: &str,
        tenant: Option<&str>,
        limits: &QueryLimits,
        describe: bool,
    ) -> Result<QueryResult, StoreError> {
        let max_rows = if describe { 0 } else { limits.max_rows };
        let mut stopper = Stopper { handle: Arc::default(), stopped: Arc::default(), done: false };
        let (slot, stopped) = (Arc::clone(&stopper.handle), Arc::clone(&stopper.stopped));
        let (sql, tenant) = (sql.to_owned(), tenant.map(str::to_owned));
        let (reader, adhoc) = (Arc::clone(&self.reader), Arc::clone(&self.adhoc));
        let task = tokio::task::spawn_blocking(move || {
            let set = |handle| {
                if let Ok(mut slot) = slot.lock() {
                    *slot = Some(handle);
                }
                if stopped.load(Ordering::SeqCst) {
                    return Err(StoreError::Unavailable("the query was cancelled".into()));
                }
                Ok(())
            };
            let (batches, schema, truncated) = match tenant {
                None => {
                    let conn = adhoc.lock().map_err(|_| StoreError::Unavailable("the SQL connection is poisoned".into()))?;
                    set(conn.interrupt_handle())?;
                    // PostgreSQL's integer division for PostgreSQL clients
                    // (7 / 2 = 3), on this connection for this statement.
                    conn.execute_batch("SET integer_division = true").map_err(db_err)?;
                    let result = errors::retry_vanished(|| adhoc::run_read_only(&conn, &sql, max_rows.max(1)));
                    conn.execute_batch("RESET integer_division").map_err(db_err)?;
                    result?
                }
                Some(tenant) => {
                    let db = {
                        let reader = reader.lock().map_err(|_| StoreError::Unavailable("the reader connection is poisoned".into()))?;
                        tenant_database(&reader, &tenant)?
                    };
                    set(db.interrupt_handle())?;
                    adhoc::run_read_only(&db, &sql, max_rows.max(1))?
                }
            };
            let mut result = rows_of(if max_rows == 0 { &[] } else { &batches }, &schema)?;
            result.truncated = truncated && max_rows > 0;
            Ok(result)
        });
        match tokio::time::timeout(limits.timeout, task).await {
            Ok(joined) => {
                stopper.done = true;
                joined.map_err(|e| StoreError::Unavailable(format!("the query task failed: {e}")))?
            }
            // The stopper interrupts it.
            Err(_) => Err(StoreError::Unavailable(format!("the query ran past its time limit ({:?}) and was stopped", limits.timeout))),
        }
    }

    /// The tables and views the SQL endpoint lists for `tenant` (all of the
    /// store's for `None`): (schema, name, is a view).
    pub async fn endpoint_relations(&self, tenant: Option<&str>) -> Result<Vec<(String, String, bool)>, StoreError> {
        let reader = Arc::clone(&self.reader);
        let tenant = tenant.map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            let reader = reader.lock().map_err(|_| StoreError::Unavailable("the reader connection is poisoned".into()))?;
            match tenant {
                None => relations_of(&reader),
                Some(t) => {
                    let db = tenant_database(&reader, &t)?;
                    Ok(relations_of(&db)?.into_iter().filter(|(_, _, view)| *view).collect())
                }
            }
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("the catalog task failed: {e}")))?
    }
}
