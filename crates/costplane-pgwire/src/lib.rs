//! costplane's PostgreSQL wire endpoint: psql, Grafana's PostgreSQL
//! datasource, psycopg, node-postgres and BI tools read the store as if it
//! were a PostgreSQL server.
//!
//! The protocol (startup, TLS, cleartext password, simple and extended
//! query, cancel requests) lives here; everything that touches data goes
//! through one narrow trait, [`SqlBackend`], so this crate knows no store.
//!
//! Invariants:
//! - **Read-only.** Every statement a client sends is either answered here
//!   without data (transaction control, `SET`, `SHOW`, `DISCARD`, the
//!   catalog questions psql asks for `\d`), or handed to
//!   [`SqlBackend::query`], whose engine must refuse anything but one
//!   read-only statement (the embedded store hands the text to DuckDB's
//!   `query()` in a read-only transaction). Nothing here decides by
//!   keywords what may write; `BEGIN`/`COMMIT` open nothing.
//! - **Authenticated, then scoped.** A connection runs queries only after
//!   [`SqlBackend::authenticate`] turned its user and password into a
//!   [`Principal`]; every query carries that principal, and the backend
//!   scopes what it sees (a tenant key sees its tenant's rows only).
//! - **Parameters are values.** `$1`... of the extended protocol are turned
//!   into quoted SQL literals by a lexer that skips strings, quoted
//!   identifiers and comments ([`sql::bind_parameters`]); a value can never
//!   end its literal.
//! - **Bounded.** Row limits and statement timeouts are the backend's; a
//!   cancel request ends the client's wait for the running query. A
//!   connection is closed when its login does not complete in time or it
//!   stays idle too long between statements ([`Deadlines`]).

mod catalog;
mod deadline;
pub mod sql;
mod types;
mod wire;

use std::net::IpAddr;

pub use deadline::Deadlines;
pub use types::PgType;
pub use wire::{serve, TlsSource};

/// Errors a client sees (as an `ErrorResponse` with a SQLSTATE).
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// Wrong user or password (SQLSTATE 28P01).
    #[error("password authentication failed for user \"{0}\"")]
    Auth(String),
    /// The statement would write, or is not one statement (25006).
    #[error("{0}")]
    ReadOnly(String),
    /// The engine refused or failed the query (42000 class).
    #[error("{0}")]
    Query(String),
    /// The store is unavailable or the query hit its time limit (57014).
    #[error("{0}")]
    Unavailable(String),
    /// A parameter or value could not be encoded (22000 class).
    #[error("{0}")]
    Value(String),
}

impl PgError {
    /// The SQLSTATE code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            PgError::Auth(_) => "28P01",
            PgError::ReadOnly(_) => "25006",
            PgError::Query(_) => "42000",
            PgError::Unavailable(_) => "57014",
            PgError::Value(_) => "22023",
        }
    }
}

/// Who a connection is, as decided by [`SqlBackend::authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The API key's name (logs only; never the key).
    pub name: String,
    /// `Some` for a tenant key: its queries see that tenant's rows only.
    pub tenant: Option<String>,
}

/// One result column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: PgType,
}

/// A query's answer: columns, and rows of text cells in PostgreSQL's text
/// form for the column's type (`None` is NULL). Numeric cells are exact
/// decimal text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// What the endpoint needs of a store. One implementation per store, in
/// the server; tests implement it over fixed tables.
#[async_trait::async_trait]
pub trait SqlBackend: Send + Sync + 'static {
    /// The principal for `user` and `password` connecting from `peer`, or
    /// [`PgError::Auth`].
    async fn authenticate(&self, user: &str, password: &str, peer: IpAddr) -> Result<Principal, PgError>;

    /// Runs one read-only statement for `principal`, within the backend's
    /// row limit and timeout.
    async fn query(&self, principal: &Principal, sql: &str) -> Result<Rows, PgError>;

    /// The columns `sql` would answer, without reading its rows.
    async fn describe(&self, principal: &Principal, sql: &str) -> Result<Vec<Column>, PgError>;

    /// The tables and views `principal` can read: (schema, name, is_view).
    async fn relations(&self, principal: &Principal) -> Result<Vec<(String, String, bool)>, PgError>;

    /// What `SELECT version()` answers after the PostgreSQL version.
    fn engine(&self) -> String;
}
