//! The protocol side: pgwire's handlers over a [`SqlBackend`].
//!
//! A connection authenticates with a cleartext password (over TLS when the
//! server has a certificate); the [`Principal`] the backend returns is kept
//! in the connection's session and handed to every query. Simple queries
//! are split into statements; extended-protocol statements are described
//! and run with their parameters bound as literals. Cancel requests end
//! the client's wait through pgwire's connection manager.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{stream, Sink};
use pgwire::api::auth::cleartext::CleartextPasswordAuth;
use pgwire::api::auth::driver::{AuthDriver, AuthOutcome};
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::{AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DataRowEncoder, DescribePortalResponse, DescribeStatementResponse, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, ConnectionManager, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::deadline::{Deadlines, Watch};
use crate::sql::{self, Bound, Session};
use crate::{catalog, types, Column, PgError, PgType, Principal, Rows, SqlBackend};

/// The TLS acceptor for a new connection (the certificate in force now).
pub type TlsSource = Arc<dyn Fn() -> tokio_rustls::TlsAcceptor + Send + Sync>;

fn wire_error(e: PgError) -> PgWireError {
    match e {
        PgError::Auth(user) => PgWireError::InvalidPassword(user),
        other => PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".to_owned(), other.code().to_owned(), other.to_string()))),
    }
}

/// Serves PostgreSQL clients on `listener` until `stop`, closing each
/// connection that passes one of its `deadlines`.
pub async fn serve(
    listener: TcpListener,
    backend: Arc<dyn SqlBackend>,
    tls: Option<TlsSource>,
    deadlines: Deadlines,
    stop: CancellationToken,
) {
    let manager = Arc::new(ConnectionManager::new());
    let shared = Arc::new(Shared {
        backend: Arc::clone(&backend),
        manager: Arc::clone(&manager),
        parser: Arc::new(Parser),
        cancel: Arc::new(DefaultCancelHandler::new(manager)),
        version: format!("PostgreSQL {} (costplane {}, {})", sql::SERVER_VERSION, env!("CARGO_PKG_VERSION"), backend.engine()),
    });
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a PostgreSQL connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let watch = Arc::new(Watch::new(deadlines));
        let endpoint = Arc::new(Endpoint { shared: Arc::clone(&shared), watch: Arc::clone(&watch) });
        let (acceptor, stop) = (tls.as_ref().map(|t| t()), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                which = watch.expired() => {
                    tracing::debug!(%peer, reason = which, "PostgreSQL connection closed");
                }
                r = pgwire::tokio::process_socket(socket, acceptor, endpoint) => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "PostgreSQL connection ended with an error");
                    }
                }
            }
        });
    }
}

/// What every connection shares.
struct Shared {
    backend: Arc<dyn SqlBackend>,
    manager: Arc<ConnectionManager>,
    parser: Arc<Parser>,
    cancel: Arc<DefaultCancelHandler>,
    version: String,
}

/// One connection's handlers: the shared parts and its own [`Watch`].
struct Endpoint {
    shared: Arc<Shared>,
    watch: Arc<Watch>,
}

impl Endpoint {
    fn handler(&self) -> Arc<Handler> {
        let s = &self.shared;
        Arc::new(Handler { backend: s.backend.clone(), parser: s.parser.clone(), version: s.version.clone(), watch: self.watch.clone() })
    }
}

impl PgWireServerHandlers for Endpoint {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.handler()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.handler()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        let mut params = DefaultServerParameterProvider::default();
        params.server_version = sql::SERVER_VERSION.to_owned();
        params.default_transaction_read_only = true;
        params.time_zone = "UTC".to_owned();
        Arc::new(Startup {
            driver: AuthDriver::new(params).with_connection_manager(self.shared.manager.clone()),
            auth: CleartextPasswordAuth::new(Arc::new(Keys(self.shared.backend.clone()))),
            watch: self.watch.clone(),
        })
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.shared.cancel.clone()
    }
}

/// Passwords checked by the backend; the principal is the identity.
struct Keys(Arc<dyn SqlBackend>);

impl Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys")
    }
}

#[async_trait]
impl AuthSource<Principal> for Keys {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        Err(PgWireError::InvalidPassword(login.user().unwrap_or_default().to_owned()))
    }

    async fn verify_password(&self, login: &LoginInfo, presented: &[u8]) -> PgWireResult<Option<Principal>> {
        let user = login.user().unwrap_or_default();
        let password = std::str::from_utf8(presented).map_err(|_| PgWireError::InvalidPassword(user.to_owned()))?;
        let peer = login.host().parse().map_err(|_| PgWireError::InvalidPassword(user.to_owned()))?;
        match self.0.authenticate(user, password, peer).await {
            Ok(principal) => Ok(Some(principal)),
            Err(e) => {
                tracing::info!(user, %peer, "PostgreSQL login refused");
                Err(wire_error(e))
            }
        }
    }
}

struct Startup {
    driver: AuthDriver<DefaultServerParameterProvider, Principal>,
    auth: CleartextPasswordAuth<Keys>,
    watch: Arc<Watch>,
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let outcome = match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                pgwire::api::auth::protocol_negotiation(client, startup).await?;
                pgwire::api::auth::save_startup_parameters_to_metadata(client, startup);
                let mechanism = AuthMechanismFactory::<Principal>::create(&self.auth);
                self.driver.begin_authentication(client, mechanism).await?
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => self.driver.advance_authentication(client, message).await?,
            _ => return Ok(()),
        };
        if let AuthOutcome::Authenticated { identity, final_message } = outcome {
            let Some(principal) = identity else {
                return Err(PgWireError::InvalidPassword(String::new()));
            };
            client.session_extensions().insert(principal);
            self.driver.complete_authentication(client, final_message).await?;
            self.watch.logged_in();
        }
        Ok(())
    }
}

/// Statements are kept as their text.
#[derive(Debug)]
struct Parser;

#[async_trait]
impl QueryParser for Parser {
    type Statement = String;

    async fn parse_sql<C>(&self, _client: &C, sql: &str, _types: &[Option<Type>]) -> PgWireResult<Option<String>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        Ok(Some(sql.to_owned()))
    }

    fn get_parameter_types(&self, stmt: &String) -> PgWireResult<Vec<Type>> {
        Ok(vec![Type::TEXT; sql::parameter_count(stmt)])
    }

    fn get_result_schema(&self, _stmt: &String, _format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        Ok(Vec::new())
    }
}

struct Handler {
    backend: Arc<dyn SqlBackend>,
    parser: Arc<Parser>,
    /// What `SELECT version()` answers.
    version: String,
    watch: Arc<Watch>,
}

fn principal_of<C: ClientInfo>(client: &C) -> PgWireResult<Arc<Principal>> {
    client.session_extensions().get::<Principal>().ok_or_else(|| wire_error(PgError::Auth(String::new())))
}

/// The rows a Describe of a portal produced, kept for the Execute that
/// follows it (drivers describe, then execute, every portal: the statement
/// runs once).
#[derive(Default)]
struct Described(std::sync::Mutex<Option<(String, Rows)>>);

/// What one statement answers.
enum Answer {
    Tag(Tag, Option<bool>),
    Rows(Rows),
}

impl Handler {
    async fn answer(&self, principal: &Principal, statement: &str) -> Result<Answer, PgError> {
        match sql::session_statement(statement) {
            Session::Begin => Ok(Answer::Tag(Tag::new("BEGIN"), Some(true))),
            Session::End(tag) => Ok(Answer::Tag(Tag::new(tag), Some(false))),
            Session::Tag(tag) => Ok(Answer::Tag(Tag::new(tag), None)),
            Session::Show(name) => {
                let name = if name == "transaction_isolation_level" { "transaction_isolation".to_owned() } else { name };
                let value =
                    sql::setting(&name).ok_or_else(|| PgError::Query(format!("unrecognized configuration parameter \"{name}\"")))?;
                Ok(Answer::Rows(Rows { columns: vec![Column { name, ty: PgType::Text }], rows: vec![vec![Some(value.to_owned())]] }))
            }
            Session::Query if catalog::is_catalog_query(statement) => {
                catalog::answer(self.backend.as_ref(), principal, statement).await.map(Answer::Rows)
            }
            Session::Query => {
                let sql = sql::rewrite(statement, &self.version)?;
                self.backend.query(principal, sql.trim()).await.map(Answer::Rows)
            }
        }
    }

    async fn columns(&self, principal: &Principal, statement: &str) -> Result<Vec<Column>, PgError> {
        match sql::session_statement(statement) {
            Session::Query if catalog::is_catalog_query(statement) => {
                Ok(catalog::answer(self.backend.as_ref(), principal, statement).await?.columns)
            }
            Session::Query => self.backend.describe(principal, sql::rewrite(statement, &self.version)?.trim()).await,
            Session::Show(_) => match self.answer(principal, statement).await? {
                Answer::Rows(rows) => Ok(rows.columns),
                Answer::Tag(..) => Ok(Vec::new()),
            },
            _ => Ok(Vec::new()),
        }
    }
}

fn fields(columns: &[Column], format: &Format) -> Vec<FieldInfo> {
    columns.iter().enumerate().map(|(i, c)| FieldInfo::new(c.name.clone(), None, None, c.ty.pg(), format.format_for(i))).collect()
}

fn query_response(rows: Rows, format: &Format) -> Result<QueryResponse, PgError> {
    let schema = Arc::new(fields(&rows.columns, format));
    let mut encoder = DataRowEncoder::new(Arc::clone(&schema));
    let mut data = Vec::with_capacity(rows.rows.len());
    for row in &rows.rows {
        for (i, column) in rows.columns.iter().enumerate() {
            let cell = row.get(i).and_then(Option::as_deref);
            types::encode(&mut encoder, column.ty, format.format_for(i), cell)?;
        }
        data.push(Ok(encoder.take_row()));
    }
    let mut response = QueryResponse::new(schema, stream::iter(data));
    response.set_command_tag("SELECT");
    Ok(response)
}

fn to_response(answer: Answer, format: &Format) -> Result<Response, PgError> {
    Ok(match answer {
        Answer::Tag(tag, Some(true)) => Response::TransactionStart(tag),
        Answer::Tag(tag, Some(false)) => Response::TransactionEnd(tag),
        Answer::Tag(tag, None) => Response::Execution(tag),
        Answer::Rows(rows) => Response::Query(query_response(rows, format)?),
    })
}

#[async_trait]
impl SimpleQueryHandler for Handler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _running = self.watch.running();
        let principal = principal_of(client)?;
        let mut out = Vec::new();
        for statement in sql::split_statements(query) {
            match self.answer(&principal, &statement).await.and_then(|a| to_response(a, &Format::UnifiedText)) {
                Ok(response) => out.push(response),
                Err(e) => {
                    // Later statements of the text do not run, as in PostgreSQL.
                    out.push(Response::Error(Box::new(match wire_error(e) {
                        PgWireError::UserError(info) => *info,
                        other => ErrorInfo::new("ERROR".to_owned(), "XX000".to_owned(), other.to_string()),
                    })));
                    break;
                }
            }
        }
        if out.is_empty() {
            out.push(Response::EmptyQuery);
        }
        Ok(out)
    }
}

/// The portal's parameters as literals to bind.
fn bound_parameters(portal: &Portal<String>) -> Result<Vec<Bound>, PgError> {
    let bad = |i: usize, e: PgWireError| PgError::Value(format!("parameter ${} could not be read: {e}", i + 1));
    (0..portal.parameter_len())
        .map(|i| {
            let ty = portal.statement.parameter_types.get(i).cloned().flatten().unwrap_or(Type::UNKNOWN);
            let cast = match ty {
                Type::INT2 | Type::INT4 | Type::INT8 => Some("BIGINT"),
                Type::FLOAT4 | Type::FLOAT8 => Some("DOUBLE"),
                Type::BOOL => Some("BOOLEAN"),
                Type::TIMESTAMP | Type::TIMESTAMPTZ => Some("TIMESTAMP"),
                Type::DATE => Some("DATE"),
                _ => None,
            };
            let value = if portal.parameter_format.is_binary(i) {
                match ty {
                    Type::INT2 => portal.parameter::<i16>(i, &ty).map(|v| v.map(|v| v.to_string())),
                    Type::INT4 => portal.parameter::<i32>(i, &ty).map(|v| v.map(|v| v.to_string())),
                    Type::INT8 => portal.parameter::<i64>(i, &ty).map(|v| v.map(|v| v.to_string())),
                    Type::FLOAT4 => portal.parameter::<f32>(i, &ty).map(|v| v.map(|v| v.to_string())),
                    Type::FLOAT8 => portal.parameter::<f64>(i, &ty).map(|v| v.map(|v| v.to_string())),
                    Type::BOOL => portal.parameter::<bool>(i, &ty).map(|v| v.map(|v| v.to_string())),
                    Type::NUMERIC => portal.parameter::<rust_decimal::Decimal>(i, &ty).map(|v| v.map(|v| v.to_string())),
                    Type::TIMESTAMP => portal.parameter::<chrono::NaiveDateTime>(i, &ty).map(|v| v.map(|v| v.to_string())),
                    Type::TIMESTAMPTZ => {
                        portal.parameter::<chrono::DateTime<chrono::FixedOffset>>(i, &ty).map(|v| v.map(|v| v.naive_utc().to_string()))
                    }
                    Type::DATE => portal.parameter::<chrono::NaiveDate>(i, &ty).map(|v| v.map(|v| v.to_string())),
                    _ => portal.parameter::<String>(i, &Type::TEXT),
                }
                .map_err(|e| bad(i, e))?
            } else {
                match portal.parameters.get(i).cloned().flatten() {
                    None => None,
                    Some(bytes) => {
                        Some(String::from_utf8(bytes.to_vec()).map_err(|_| PgError::Value(format!("parameter ${} is not UTF-8", i + 1)))?)
                    }
                }
            };
            Ok(Bound { value, cast })
        })
        .collect()
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = String;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn do_describe_statement<C>(&self, client: &mut C, target: &StoredStatement<String>) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = String>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _running = self.watch.running();
        let principal = principal_of(client)?;
        let count = sql::parameter_count(&target.statement).max(target.parameter_types.len());
        let types: Vec<Type> = (0..count).map(|i| target.parameter_types.get(i).cloned().flatten().unwrap_or(Type::TEXT)).collect();
        // Unbound parameters are NULL while the columns are worked out.
        let nulls = vec![Bound { value: None, cast: None }; count];
        let statement = sql::bind_parameters(&target.statement, &nulls).map_err(wire_error)?;
        let columns = self.columns(&principal, &statement).await.map_err(wire_error)?;
        Ok(DescribeStatementResponse::new(types, fields(&columns, &Format::UnifiedText)))
    }

    async fn do_describe_portal<C>(&self, client: &mut C, portal: &Portal<String>) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = String>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _running = self.watch.running();
        let principal = principal_of(client)?;
        let statement =
            sql::bind_parameters(&portal.statement.statement, &bound_parameters(portal).map_err(wire_error)?).map_err(wire_error)?;
        if sql::session_statement(&statement) == Session::Query {
            let rows = match self.answer(&principal, &statement).await.map_err(wire_error)? {
                Answer::Rows(rows) => rows,
                Answer::Tag(..) => return Ok(DescribePortalResponse::new(Vec::new())),
            };
            let described = fields(&rows.columns, &portal.result_column_format);
            if let Ok(mut slot) = client.session_extensions().get_or_insert_with(Described::default).0.lock() {
                *slot = Some((statement, rows));
            }
            return Ok(DescribePortalResponse::new(described));
        }
        let columns = self.columns(&principal, &statement).await.map_err(wire_error)?;
        Ok(DescribePortalResponse::new(fields(&columns, &portal.result_column_format)))
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<String>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = String>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _running = self.watch.running();
        let principal = principal_of(client)?;
        let statement =
            sql::bind_parameters(&portal.statement.statement, &bound_parameters(portal).map_err(wire_error)?).map_err(wire_error)?;
        if sql::without_comments(&statement).trim().trim_matches(';').trim().is_empty() {
            return Ok(Response::EmptyQuery);
        }
        let described = client.session_extensions().get::<Described>().and_then(|d| d.0.lock().ok().and_then(|mut s| s.take()));
        let answer = match described {
            Some((text, rows)) if text == statement => Answer::Rows(rows),
            _ => self.answer(&principal, &statement).await.map_err(wire_error)?,
        };
        to_response(answer, &portal.result_column_format).map_err(wire_error)
    }
}
