//! `[postgres]`: the read-only PostgreSQL endpoint (`costplane-pgwire`)
//! over the embedded store, for psql, Grafana's PostgreSQL datasource and
//! BI tools.
//!
//! - Logins are API keys: the password is the key; the user is `costplane`,
//!   or the key's tenant (tenant keys) or `admin` (admin keys). Keys are
//!   compared in constant time, every key every time.
//! - Without API keys, only loopback clients may log in (any user and
//!   password), unless `api.allow_open_remote` says a proxy guards the port:
//!   the API's rule.
//! - An admin key reads every table and view, as `/api/v1/sql` does; a
//!   tenant key reads the cost views over its own tenant's rows only (its
//!   queries run in a database holding nothing else, see the store's
//!   `duckdb/pg.rs`).
//! - Queries stop at `api.sql_max_rows` rows and `api.sql_timeout`; a
//!   connection whose login does not complete within
//!   `connections.header_read_timeout`, or that stays logged in without a
//!   statement for `postgres.idle_timeout`, is closed.
//! - On ClickHouse there is no endpoint: the same views exist in the
//!   ClickHouse database for Grafana's ClickHouse datasource, and
//!   `postgres.enabled = true` stops startup with that advice.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use costplane_pgwire::{Column, PgError, PgType, Principal, Rows, SqlBackend};
use costplane_store::{QueryLimits, QueryResult, Store, StoreError};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::auth::{constant_time_eq, ApiKey};
use crate::config::{Config, StoreKind};
use crate::error::ServerError;

/// `[postgres]` in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresSection {
    /// Serve the endpoint (default off).
    pub enabled: bool,
    /// Where it listens (default 127.0.0.1:5432).
    pub addr: SocketAddr,
    /// How long a logged-in connection may stay without a statement
    /// running before it is closed (default 30m), as PostgreSQL's
    /// `idle_session_timeout`; the login itself must complete within
    /// `connections.header_read_timeout`.
    #[serde(with = "crate::connections::duration_text")]
    pub idle_timeout: Duration,
}

impl Default for PostgresSection {
    fn default() -> Self {
        PostgresSection { enabled: false, addr: SocketAddr::from(([127, 0, 0, 1], 5432)), idle_timeout: Duration::from_secs(30 * 60) }
    }
}

impl PostgresSection {
    /// Checks the section against the rest of the configuration.
    pub fn validate(&self, config: &Config) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if config.store == StoreKind::Clickhouse {
            return Err("postgres.enabled: the PostgreSQL endpoint serves the embedded store only; on ClickHouse the cost views \
                 (service_costs, pod_costs, ...) are ClickHouse views in costplane's database, for Grafana's ClickHouse \
                 datasource: set postgres.enabled = false"
                .into());
        }
        if config.api.keys.is_empty() && !self.addr.ip().is_loopback() && !config.api.allow_open_remote {
            return Err(format!(
                "the PostgreSQL endpoint would listen on {} without API keys; add [[api.keys]] to the config, \
                 or set api.allow_open_remote = true if a proxy guards it",
                self.addr
            ));
        }
        Ok(())
    }
}

/// The endpoint's backend over the store.
pub struct Backend {
    store: Arc<dyn Store>,
    keys: Arc<Vec<ApiKey>>,
    limits: QueryLimits,
    allow_open_remote: bool,
}

fn pg_error(e: StoreError) -> PgError {
    match e {
        StoreError::NotReadOnly(m) => PgError::ReadOnly(m),
        StoreError::Unavailable(m) => PgError::Unavailable(m),
        other => PgError::Query(other.to_string()),
    }
}

/// A query result as the endpoint's rows: types from the engine's column
/// types, cells as text (decimals and times as the engine wrote them).
fn rows(result: QueryResult) -> Rows {
    use serde_json::Value as J;
    let columns = result
        .columns
        .iter()
        .zip(&result.types)
        .map(|(name, ty)| Column { name: name.clone(), ty: PgType::from_engine_type(ty) })
        .collect();
    let rows = result
        .rows
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|cell| match cell {
                    J::Null => None,
                    J::String(s) => Some(s),
                    J::Bool(b) => Some(b.to_string()),
                    other => Some(other.to_string()),
                })
                .collect()
        })
        .collect();
    Rows { columns, rows }
}

impl Backend {
    fn duckdb(&self) -> Result<&costplane_store::duckdb::DuckDbStore, PgError> {
        self.store.as_duckdb().ok_or_else(|| PgError::Unavailable("the PostgreSQL endpoint serves the embedded store only".into()))
    }
}

#[async_trait::async_trait]
impl SqlBackend for Backend {
    async fn authenticate(&self, user: &str, password: &str, peer: IpAddr) -> Result<Principal, PgError> {
        if self.keys.is_empty() {
            if peer.is_loopback() || self.allow_open_remote {
                return Ok(Principal { name: user.to_owned(), tenant: None });
            }
            return Err(PgError::Auth(user.to_owned()));
        }
        let mut found = None;
        for k in self.keys.iter() {
            if constant_time_eq(k.key.expose().as_bytes(), password.as_bytes()) && found.is_none() {
                found = Some(k);
            }
        }
        let key = found.ok_or_else(|| PgError::Auth(user.to_owned()))?;
        let name = key.tenant.clone().unwrap_or_else(|| "admin".to_owned());
        if user != "costplane" && user != name {
            return Err(PgError::Auth(user.to_owned()));
        }
        Ok(Principal { name, tenant: key.tenant.clone() })
    }

    async fn query(&self, principal: &Principal, sql: &str) -> Result<Rows, PgError> {
        let result = self.duckdb()?.endpoint_query(sql, principal.tenant.as_deref(), &self.limits, false).await.map_err(pg_error)?;
        if result.truncated {
            tracing::info!(principal = %principal.name, max_rows = self.limits.max_rows, "a PostgreSQL query was cut at the row limit");
        }
        Ok(rows(result))
    }

    async fn describe(&self, principal: &Principal, sql: &str) -> Result<Vec<Column>, PgError> {
        let result = self.duckdb()?.endpoint_query(sql, principal.tenant.as_deref(), &self.limits, true).await.map_err(pg_error)?;
        Ok(rows(result).columns)
    }

    async fn relations(&self, principal: &Principal) -> Result<Vec<(String, String, bool)>, PgError> {
        self.duckdb()?.endpoint_relations(principal.tenant.as_deref()).await.map_err(pg_error)
    }

    fn engine(&self) -> String {
        "DuckDB".to_owned()
    }
}

/// Starts the endpoint when configured: binds `postgres.addr` and serves
/// until `stop`.
pub async fn start(
    config: &Config,
    store: Arc<dyn Store>,
    tls: Option<Arc<crate::tls::Tls>>,
    stop: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, ServerError> {
    let section = &config.postgres;
    if !section.enabled {
        return Ok(None);
    }
    section.validate(config).map_err(ServerError::Config)?;
    if store.as_duckdb().is_none() {
        return Err(ServerError::Config("postgres.enabled: the PostgreSQL endpoint serves the embedded store only".into()));
    }
    let listener = tokio::net::TcpListener::bind(section.addr).await.map_err(|e| {
        ServerError::Config(format!(
            "cannot listen on {} for the PostgreSQL endpoint: {e}; is another process using the port? pick another with postgres.addr",
            section.addr
        ))
    })?;
    let backend = Backend {
        store,
        keys: Arc::new(config.api.keys.clone()),
        limits: config.api.query_limits().map_err(ServerError::Config)?,
        allow_open_remote: config.api.allow_open_remote,
    };
    let source: Option<costplane_pgwire::TlsSource> =
        tls.map(|t| Arc::new(move || t.acceptor_for(&[b"postgresql"])) as costplane_pgwire::TlsSource);
    tracing::info!(addr = %section.addr, tls = source.is_some(), keys = config.api.keys.len(), "PostgreSQL endpoint serving (read-only)");
    let deadlines = costplane_pgwire::Deadlines { startup: config.connections.header_read_timeout, idle: section.idle_timeout };
    Ok(Some(tokio::spawn(costplane_pgwire::serve(listener, Arc::new(backend), source, deadlines, stop))))
}
