use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use costplane_pipeline::StatsSnapshot;
use costplane_server::{Config, Server};
use costplane_store::duckdb::DuckDbStore;
use costplane_store::{Dialect, Param, QueryResult, Store, StoreError, TelemetrySink};
use costplane_telemetry::TelemetryBatch;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A real DuckDB store whose writes take at least `delay`, and whose first
/// `fail_first` writes fail as an outage would. It counts the ledger queries
/// it answers, and makes each wait `ledger_query_delay_ms`.
pub struct WrappedStore {
    pub inner: DuckDbStore,
    pub delay: Duration,
    pub fail_first: u64,
    pub attempts: AtomicU64,
    pub ledger_queries: AtomicU64,
    pub ledger_query_delay_ms: AtomicU64,
}

impl WrappedStore {
    pub fn new(inner: DuckDbStore, delay: Duration, fail_first: u64) -> WrappedStore {
        WrappedStore {
            inner,
            delay,
            fail_first,
            attempts: AtomicU64::new(0),
            ledger_queries: AtomicU64::new(0),
            ledger_query_delay_ms: AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl TelemetrySink for WrappedStore {
    fn backend(&self) -> &'static str {
        "duckdb"
    }

    async fn write(&self, batch: &TelemetryBatch) -> Result<(), StoreError> {
        let n = self.attempts.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        if n < self.fail_first {
            return Err(StoreError::Unavailable("simulated outage".into()));
        }
        self.inner.write(batch).await
    }

    fn max_concurrent_writes(&self) -> usize {
        self.inner.max_concurrent_writes()
    }
}

#[async_trait]
impl Store for WrappedStore {
    async fn query(&self, sql: &str) -> Result<QueryResult, StoreError> {
        self.inner.query(sql).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    fn dialect(&self) -> Dialect {
        self.inner.dialect()
    }

    fn write_seqs(&self) -> Option<Arc<costplane_store::write_seq::WriteSeqs>> {
        self.inner.write_seqs()
    }

    async fn query_with(&self, sql: &str, params: &[Param]) -> Result<QueryResult, StoreError> {
        if sql.contains("costplane_ledger") {
            self.ledger_queries.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(self.ledger_query_delay_ms.load(Ordering::SeqCst))).await;
        }
        self.inner.query_with(sql, params).await
    }

    async fn replace_ledger(&self, replacement: &costplane_telemetry::usage::LedgerReplacement) -> Result<(), StoreError> {
        self.inner.replace_ledger(replacement).await
    }

    async fn stage_ledger_rows(&self, rows: &[costplane_telemetry::usage::LedgerRow], batch_id: u64) -> Result<(), StoreError> {
        self.inner.stage_ledger_rows(rows, batch_id).await
    }

    async fn discard_ledger_revisions(&self, from: i64, to: i64, revisions: &[u64]) -> Result<(), StoreError> {
        self.inner.discard_ledger_revisions(from, to, revisions).await
    }

    async fn put_records(&self, table: costplane_store::RecordTable, records: &[costplane_store::Record]) -> Result<(), StoreError> {
        self.inner.put_records(table, records).await
    }

    async fn records(&self, table: costplane_store::RecordTable) -> Result<Vec<costplane_store::Record>, StoreError> {
        self.inner.records(table).await
    }
}

pub struct RunningServer {
    pub grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub api: SocketAddr,
    pub store: Arc<WrappedStore>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<StatsSnapshot, costplane_server::ServerError>>>,
    _dir: tempfile::TempDir,
}

impl RunningServer {
    pub async fn start(mut config: Config, delay: Duration, fail_first: u64) -> RunningServer {
        // The server's log, shown with a failing test's output.
        let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("info,costplane_pipeline=debug").try_init();
        let dir = tempfile::tempdir().unwrap();
        config.data_dir = dir.path().to_path_buf();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        config.otlp.grpc_addr = any;
        config.otlp.http_addr = any;
        config.http.addr = any;
        let store = Arc::new(WrappedStore::new(DuckDbStore::open(dir.path()).unwrap(), delay, fail_first));
        let server = Server::bind(config, store.clone()).await.unwrap();
        let (grpc, otlp_http, api) = server.local_addrs();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        RunningServer { grpc, otlp_http, api, store, stop: Some(tx), task: Some(task), _dir: dir }
    }

    /// Shuts down (drains) and returns the pipeline's final counters.
    pub async fn stop(&mut self) -> StatsSnapshot {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap()
    }

    pub async fn query_u64(&self, sql: &str) -> u64 {
        let r = self.store.inner.query(sql).await.unwrap();
        r.rows[0][0].as_u64().unwrap()
    }
}

/// An encoded trace export of one span per id (ids must be non-zero: an
/// all-zero id is invalid OTLP), each named `name` and carrying a 1000-byte
/// attribute (about 1.1 KB per span).
pub fn trace_export(name: &str, ids: impl IntoIterator<Item = u64>) -> Vec<u8> {
    let spans = ids
        .into_iter()
        .map(|id| Span {
            trace_id: u128::from(id).to_be_bytes().to_vec(),
            span_id: id.to_be_bytes().to_vec(),
            name: name.to_owned(),
            start_time_unix_nano: 1_700_000_000_000_000_000 + id,
            end_time_unix_nano: 1_700_000_000_000_000_100 + id,
            attributes: vec![KeyValue {
                key: "payload".into(),
                value: Some(AnyValue { value: Some(any_value::Value::StringValue("p".repeat(1000))) }),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans { scope_spans: vec![ScopeSpans { spans, ..Default::default() }], ..Default::default() }],
    }
    .encode_to_vec()
}

/// Writes ledger rows as one new revision of their hours, in a scope of
/// their own (so rows written by earlier calls stay).
pub async fn write_ledger(store: &dyn Store, rows: Vec<costplane_telemetry::usage::LedgerRow>) {
    use costplane_telemetry::usage::{HourState, LedgerReplacement, LedgerRow};
    let scope = format!("test-{}", rand::random::<u32>());
    let mut replacement = LedgerReplacement::default();
    let mut revisions = std::collections::BTreeMap::new();
    for r in &rows {
        revisions.entry(r.charge_period_start_ns).or_insert_with(costplane_store::ledger::next_revision);
    }
    for (hour, revision) in &revisions {
        replacement.hours.push(HourState {
            hour_ns: *hour,
            scope: scope.clone(),
            revision: *revision,
            status: r"closed".into(),
            usage_rows: 0,
            price_version: String::new(),
        });
    }
    replacement.rows = rows.into_iter().map(|r| LedgerRow { revision: revisions[&r.charge_period_start_ns], ..r }).collect();
    store.replace_ledger(&replacement).await.unwrap();
}

/// One HTTP/1.1 request on a connection of its own, sent byte for byte as
/// given (`target` is the request target, already encoded; a `Host` header
/// is added unless `headers` has one), and the answer read to its end:
/// (status, body). `Err` when the server drops the connection without a
/// whole answer (a handler that panicked, say).
pub async fn raw_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut head = format!("{method} {target} HTTP/1.1\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 60 s"))??;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let dropped = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("the connection closed without an answer: {text:?}"));
    let status = text.strip_prefix("HTTP/1.1 ").and_then(|s| s.get(..3)).and_then(|s| s.parse().ok()).ok_or_else(dropped)?;
    let (_, body) = text.split_once("\r\n\r\n").ok_or_else(dropped)?;
    Ok((status, body.to_owned()))
}

/// `value` percent-encoded for a query string (everything but unreserved
/// ASCII is encoded).
pub fn query_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
