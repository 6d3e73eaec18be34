//! The ClickHouse store: a single node or a cluster, over ClickHouse's HTTP
//! interface.
//!
//! Write invariants:
//! - One `INSERT ... FORMAT RowBinary` per table and partition per batch
//!   (thousands of rows, about one insert per second per table with the
//!   default batching), the body zstd-compressed (`Content-Encoding: zstd`;
//!   gzip or none when configured). No
//!   row-per-statement inserts, so no "Too many parts"; no insert spanning
//!   more than one partition, so never more than `max_partitions_per_insert_block`
//!   (a batch of late or replayed rows spread over months still stores).
//! - Usage and ledger rows are inserted after the telemetry they bill, in
//!   the same write: the pipeline retries (and after a crash replays) that
//!   write under the same id until it succeeds, so stored telemetry is
//!   always billed in the end, and a batch whose telemetry is rejected (and
//!   then split in halves under new ids) has billed nothing twice.
//! - Every insert carries `insert_deduplication_token =
//!   <batch id>-<table>-<partition>`. There is no transaction across inserts:
//!   when a write fails part-way, some inserts are stored. The batch id is
//!   fixed when the pipeline flushes and the split is a function of the
//!   rows, so a retry or replay of the same batch sends the same inserts
//!   with the same tokens and ClickHouse drops the ones it already has:
//!   retrying until success stores each row exactly once. Plain MergeTree
//!   tables keep a deduplication window for this
//!   (`non_replicated_deduplication_window`); replicated tables deduplicate
//!   by default.
//! - A write's inserts are encoded and compressed once, off the async
//!   runtime's worker threads (`block_in_place`), and kept until the write
//!   succeeds: a retry of the same batch (same id, same rows) re-sends the
//!   same bodies without encoding them again.
//! - Errors are classified by intent (`errors.rs`): connection failures,
//!   timeouts, HTTP 408/429/5xx and transient codes are `Unavailable`;
//!   authentication, schema problems and unrecognised errors are retryable
//!   too but reported as needing attention (`Unexpected`, `Schema`); only
//!   codes known to mean the inserted values are invalid are `Rejected`.
//! - The schema is versioned in `costplane_schema_migrations`; startup applies
//!   missing steps (each DDL is `IF NOT EXISTS`), refuses a newer schema, and
//!   then checks every table's columns against what the inserts send
//!   (`verify.rs`): a table someone else created with a missing or mistyped
//!   column stops startup with the fix, rather than failing every write.

mod errors;
mod partition;
mod rowbinary;
pub mod schema;
mod tables;
mod verify;
mod views;

use std::collections::HashMap;
use std::io::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use costplane_ledger::{LedgerReplacement, LedgerRow};
use costplane_telemetry::{BatchLens, TelemetryBatch};

use crate::verify::{self as check, FoundColumn};
use crate::{result_cell, Dialect, Param, QueryLimits, QueryResult, Record, RecordTable, Store, StoreError, TelemetrySink};
use errors::Op;
pub use schema::SchemaOptions;

/// How request bodies are compressed. zstd costs the least CPU per byte
/// at a ratio near gzip's; ClickHouse's HTTP interface accepts all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyCompression {
    #[default]
    Zstd,
    Gzip,
    None,
}

impl BodyCompression {
    /// The body as sent, and its `Content-Encoding`.
    fn apply(self, data: Vec<u8>) -> Result<(Bytes, Option<&'static str>), StoreError> {
        Ok(match self {
            BodyCompression::Zstd => (Bytes::from(zstd::bulk::compress(&data, 1)?), Some("zstd")),
            BodyCompression::Gzip => (Bytes::from(gzip(&data)?), Some("gzip")),
            BodyCompression::None => (Bytes::from(data), None),
        })
    }
}

/// One insert of a write: encoded, compressed, with its token.
#[derive(Clone)]
struct Insert {
    table: &'static str,
    token: String,
    body: Bytes,
    encoding: Option<&'static str>,
}

/// The inserts of the last write that did not succeed, kept for its retry.
struct Pending {
    id: u64,
    lens: BatchLens,
    inserts: Vec<Insert>,
}

/// Connection settings. `https://` URLs are verified against the Mozilla
/// root certificates (webpki-roots), plus `ca_file` when given (a private
/// CA). `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ClickHouseConfig {
    /// e.g. `http://127.0.0.1:8123` or `https://host:8443`
    pub url: String,
    pub user: String,
    pub password: Option<String>,
    pub compression: BodyCompression,
    pub request_timeout: Duration,
    pub schema: SchemaOptions,
    /// PEM CA certificate(s) to trust for `https://` besides the public roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("compression", &self.compression)
            .field("request_timeout", &self.request_timeout)
            .field("schema", &self.schema)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            user: "default".into(),
            password: None,
            compression: BodyCompression::Zstd,
            request_timeout: Duration::from_secs(30),
            schema: SchemaOptions::default(),
            ca_file: None,
        }
    }
}

pub struct ClickHouseStore {
    http: reqwest::Client,
    config: ClickHouseConfig,
    pending: std::sync::Mutex<Option<Pending>>,
    /// Write numbers of usage rows (set above the stored ones at connect).
    seqs: std::sync::Arc<crate::write_seq::WriteSeqs>,
}

impl std::fmt::Debug for ClickHouseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseStore").field("url", &self.config.url).field("database", &self.config.schema.database).finish()
    }
}

fn gzip(data: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 4), flate2::Compression::fast());
    enc.write_all(data)?;
    Ok(enc.finish()?)
}

impl ClickHouseStore {
    /// Connects, creates or upgrades the schema, and checks that every table
    /// has the columns costplane inserts.
    pub async fn connect(config: ClickHouseConfig) -> Result<Self, StoreError> {
        let mut store = Self::for_queries(config)?;
        store.ping().await?;
        store.migrate().await?;
        store.create_cost_views().await?;
        store.seqs = crate::write_seq::WriteSeqs::after(store.stored_write_seq().await?);
        Ok(store)
    }

    /// The largest write number of the usage tables (0 for none).
    async fn stored_write_seq(&self) -> Result<u64, StoreError> {
        let (llm, telemetry) =
            (self.config.schema.qualified("costplane_usage_llm"), self.config.schema.qualified("costplane_usage_telemetry"));
        let sql =
            format!("SELECT greatest((SELECT max(WriteSeq) FROM {llm}), (SELECT max(WriteSeq) FROM {telemetry})) FORMAT TabSeparated");
        let out = self.execute(&sql, &[], None, Op::Write).await?;
        let text = String::from_utf8_lossy(&out);
        text.trim().parse().map_err(|e| StoreError::Unexpected(format!("reading the largest stored write number: {e} in {text:?}")))
    }

    /// A client that only reads (no connection check, no schema changes).
    pub fn for_queries(config: ClickHouseConfig) -> Result<Self, StoreError> {
        let mut builder = reqwest::Client::builder().timeout(config.request_timeout).pool_idle_timeout(Duration::from_secs(50));
        if let Some(ca_file) = &config.ca_file {
            let pem = std::fs::read(ca_file)
                .map_err(|e| StoreError::Unavailable(format!("cannot read the ClickHouse CA file {}: {e}", ca_file.display())))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| StoreError::Unavailable(format!("{} holds no usable PEM certificate: {e}", ca_file.display())))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| StoreError::Unavailable(format!("building the HTTP client failed: {e}")))?;
        Ok(ClickHouseStore { http, config, pending: std::sync::Mutex::new(None), seqs: crate::write_seq::WriteSeqs::after(0) })
    }

    pub fn config(&self) -> &ClickHouseConfig {
        &self.config
    }

    /// Runs one statement. `sql` goes in the body unless `data` is given,
    /// in which case `sql` is the `query` parameter and `data` the body.
    /// A failure is classified for `op` (see `errors.rs`).
    /// `data` is the body as sent (already compressed) and its encoding.
    async fn execute(
        &self,
        sql: &str,
        settings: &[(&str, String)],
        data: Option<(Bytes, Option<&'static str>)>,
        op: Op,
    ) -> Result<Vec<u8>, StoreError> {
        let mut params: Vec<(&str, String)> = settings.to_vec();
        let (body, encoding) = match data {
            Some(d) => {
                params.push(("query", sql.to_owned()));
                d
            }
            None => (Bytes::copy_from_slice(sql.as_bytes()), None),
        };
        let mut req = self.http.post(&self.config.url).query(&params).header("X-ClickHouse-User", &self.config.user);
        if let Some(p) = &self.config.password {
            req = req.header("X-ClickHouse-Key", p);
        }
        if let Some(encoding) = encoding {
            req = req.header("Content-Encoding", encoding);
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot reach ClickHouse at {}: {e}", self.config.url)))?;
        let status = resp.status();
        let header_code: Option<u32> =
            resp.headers().get("X-ClickHouse-Exception-Code").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
        let bytes = resp.bytes().await.map_err(|e| StoreError::Unavailable(format!("reading ClickHouse's answer failed: {e}")))?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        let code = header_code.or_else(|| errors::code_in_text(text));
        let kind = errors::classify(status.as_u16(), code, text);
        let cut = (0..=text.len().min(2000)).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        let message = format!("ClickHouse answered {status}: {}", &text[..cut]);
        Err(errors::to_error(kind, op, message))
    }

    fn database_param(&self) -> (&'static str, String) {
        ("database", self.config.schema.database.clone())
    }

    async fn schema_version(&self) -> Result<u32, StoreError> {
        let sql = format!("SELECT max(version) FROM {} FORMAT TabSeparated", self.config.schema.qualified("costplane_schema_migrations"));
        let out = self.execute(&sql, &[], None, Op::Write).await?;
        let text = String::from_utf8_lossy(&out);
        Ok(text.trim().parse().unwrap_or(0))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let statements = self.config.schema.statements();
        // The database and the migrations table first, to read the version.
        for stmt in &statements[..2] {
            self.execute(stmt, &[], None, Op::Write).await.map_err(schema_error)?;
        }
        // 0 for a fresh database, and for one whose tables someone else made.
        let version = self.schema_version().await?;
        if version > schema::SCHEMA_VERSION {
            return Err(StoreError::Schema(format!(
                "the ClickHouse schema in database '{}' is version {version}, newer than the version {} this costplane knows; upgrade costplane",
                self.config.schema.database,
                schema::SCHEMA_VERSION
            )));
        }
        let upgrade = version < schema::SCHEMA_VERSION;
        if upgrade {
            self.create_tables(&statements[2..]).await?;
        }
        // Every start: the tables may be someone else's (kept by IF NOT
        // EXISTS) or changed since.
        let mut problems = self.schema_problems().await?;
        if !upgrade && check::has_missing_table(&problems) {
            // Dropped since the schema was recorded: the DDL creates it again.
            self.create_tables(&statements[2..]).await?;
            problems = self.schema_problems().await?;
        }
        if !problems.is_empty() {
            let o = &self.config.schema;
            return Err(StoreError::Schema(check::report(
                &format!("the ClickHouse database {}", schema::ident(&o.database)),
                &problems,
                &verify::ClickHouseFixes(o),
                "point costplane at a database of its own (--clickhouse-database), where it creates the tables itself",
            )));
        }
        if upgrade {
            // Recorded only once the tables check out, so a failed check is
            // run again (with the DDL) at the next start.
            let record = format!(
                "INSERT INTO {} (version) VALUES ({})",
                self.config.schema.qualified("costplane_schema_migrations"),
                schema::SCHEMA_VERSION
            );
            self.execute(&record, &[], None, Op::Write).await?;
            tracing::info!(database = %self.config.schema.database, version = schema::SCHEMA_VERSION, "ClickHouse schema created");
        }
        Ok(())
    }

    async fn create_tables(&self, statements: &[String]) -> Result<(), StoreError> {
        for stmt in statements {
            self.execute(stmt, &[], None, Op::Write).await.map_err(schema_error)?;
        }
        Ok(())
    }

    /// How the tables differ from what the inserts send.
    async fn schema_problems(&self) -> Result<Vec<check::Problem>, StoreError> {
        let r = self
            .query_with(
                "SELECT table, name, type FROM system.columns WHERE database = {p0:String}",
                &[Param::Str(self.config.schema.database.clone())],
            )
            .await?;
        let mut found: HashMap<String, HashMap<String, FoundColumn>> = HashMap::new();
        for row in &r.rows {
            if let [table, name, ty] = &row[..] {
                let (Some(table), Some(name), Some(ty)) = (table.as_str(), name.as_str(), ty.as_str()) else { continue };
                found.entry(table.to_owned()).or_default().insert(name.to_owned(), FoundColumn { ty: ty.to_owned(), required: false });
            }
        }
        Ok(check::compare(&verify::expected(), &found, verify::normalise))
    }

    async fn insert(&self, table: &str, columns: &str, body: (Bytes, Option<&'static str>), token: String) -> Result<(), StoreError> {
        let sql = format!("INSERT INTO {} ({columns}) FORMAT RowBinary", self.config.schema.qualified(table));
        let mut settings =
            vec![("insert_deduplicate", "1".to_owned()), ("insert_deduplication_token", token), ("async_insert", "0".to_owned())];
        if self.config.schema.cluster.is_some() {
            // Insert into the shards before answering, so a failure is seen
            // here and retried with the same token.
            settings.push(("distributed_foreground_insert", "1".to_owned()));
        }
        self.execute(&sql, &settings, Some(body), Op::Write).await.map(|_| ())
    }

    /// Inserts `rows` into `table`, one insert per partition, each with its
    /// own deduplication token.
    async fn insert_rows<'a, T: Sync>(
        &self,
        table: &'static str,
        rows: &'a [T],
        time_ns: impl Fn(&T) -> i64,
        encode: impl Fn(Vec<&'a T>) -> Vec<u8>,
        batch_id: u64,
    ) -> Result<(), StoreError> {
        let mut inserts = Vec::new();
        self.encode_rows(&mut inserts, table, rows, time_ns, encode, batch_id)?;
        for i in inserts {
            self.insert(i.table, &tables::table(i.table).columns, (i.body, i.encoding), i.token).await?;
        }
        Ok(())
    }

    /// Encodes and compresses the inserts of `rows` (one per partition)
    /// onto `out`.
    fn encode_rows<'a, T>(
        &self,
        out: &mut Vec<Insert>,
        table: &'static str,
        rows: &'a [T],
        time_ns: impl Fn(&T) -> i64,
        encode: impl Fn(Vec<&'a T>) -> Vec<u8>,
        batch_id: u64,
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let spec = tables::table(table);
        let parts = partition::split(rows, spec.granularity, time_ns);
        if parts.len() > 1 {
            tracing::debug!(table, partitions = parts.len(), by = spec.time_column, "the batch spans several partitions; one insert each");
        }
        for (key, part) in parts {
            let (body, encoding) = self.config.compression.apply(encode(part))?;
            out.push(Insert { table, token: partition::dedup_token(batch_id, table, key), body, encoding });
        }
        Ok(())
    }

    /// Every insert of `batch`, in write order (billing last, see
    /// `tables::written`).
    fn encode_batch(&self, batch: &TelemetryBatch, write_seq: u64) -> Result<Vec<Insert>, StoreError> {
        let id = batch.id;
        let mut out = Vec::new();
        self.encode_rows(&mut out, "otel_traces", &batch.spans, |r| r.timestamp_ns, rowbinary::traces, id)?;
        self.encode_rows(&mut out, "otel_logs", &batch.logs, |r| r.timestamp_ns, rowbinary::logs, id)?;
        self.encode_rows(&mut out, "otel_metrics_gauge", &batch.gauges, |r| r.common.time_unix_ns, rowbinary::gauges, id)?;
        self.encode_rows(&mut out, "otel_metrics_sum", &batch.sums, |r| r.common.time_unix_ns, rowbinary::sums, id)?;
        self.encode_rows(&mut out, "otel_metrics_histogram", &batch.histograms, |r| r.common.time_unix_ns, rowbinary::histograms, id)?;
        self.encode_rows(
            &mut out,
            "otel_metrics_exp_histogram",
            &batch.exp_histograms,
            |r| r.common.time_unix_ns,
            rowbinary::exp_histograms,
            id,
        )?;
        self.encode_rows(&mut out, "otel_metrics_summary", &batch.summaries, |r| r.common.time_unix_ns, rowbinary::summaries, id)?;
        let usage = &batch.usage;
        let telemetry = usage.aggregated_telemetry();
        let usage_telemetry = |rows| rowbinary::usage_telemetry(rows, write_seq);
        self.encode_rows(&mut out, "costplane_usage_telemetry", &telemetry, |r| r.hour_ns, usage_telemetry, id)?;
        self.encode_rows(&mut out, "costplane_usage_llm", &usage.llm, |r| r.hour_ns, |rows| rowbinary::usage_llm(rows, write_seq), id)?;
        self.encode_rows(&mut out, "costplane_usage_kubernetes", &usage.kubernetes, |r| r.hour_ns, rowbinary::usage_kubernetes, id)?;
        let samples = &usage.kubernetes_samples;
        self.encode_rows(&mut out, "costplane_usage_k8s_samples", samples, |r| r.hour_ns, rowbinary::usage_kubernetes, id)?;
        Ok(out)
    }

    /// The inserts of `batch`: those kept from a failed attempt at the same
    /// batch (with that attempt's write number), else encoded now with
    /// `write_seq`, off the runtime's worker threads ([`crate::off_worker`]).
    fn inserts_for(&self, batch: &TelemetryBatch, write_seq: u64) -> Result<Vec<Insert>, StoreError> {
        let lens = batch.lens();
        if let Some(p) = self.pending.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if p.id == batch.id && p.lens == lens {
                return Ok(p.inserts.clone());
            }
        }
        let inserts = crate::off_worker(|| self.encode_batch(batch, write_seq))?;
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(Pending { id: batch.id, lens, inserts: inserts.clone() });
        Ok(inserts)
    }
}

fn schema_error(e: StoreError) -> StoreError {
    match e {
        StoreError::Rejected(m) | StoreError::Schema(m) => StoreError::Schema(format!("creating the ClickHouse schema failed: {m}")),
        StoreError::Unexpected(m) => StoreError::Unexpected(format!("creating the ClickHouse schema failed: {m}")),
        other => other,
    }
}

#[async_trait]
impl TelemetrySink for ClickHouseStore {
    fn backend(&self) -> &'static str {
        "clickhouse"
    }

    async fn write(&self, batch: &TelemetryBatch) -> Result<(), StoreError> {
        crate::money::check_rows(&[], &batch.usage.llm)?;
        // Held until the inserts return (see `write_seq`).
        let ticket = self.seqs.begin();
        for i in self.inserts_for(batch, ticket.seq())? {
            self.insert(i.table, &tables::table(i.table).columns, (i.body, i.encoding), i.token).await?;
        }
        // Stored: nothing to keep for a retry.
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.as_ref().is_some_and(|p| p.id == batch.id) {
            *pending = None;
        }
        Ok(())
    }
}

#[async_trait]
impl Store for ClickHouseStore {
    fn write_seqs(&self) -> Option<std::sync::Arc<crate::write_seq::WriteSeqs>> {
        Some(std::sync::Arc::clone(&self.seqs))
    }

    async fn query(&self, sql: &str) -> Result<QueryResult, StoreError> {
        self.query_limited(sql, &QueryLimits::default()).await
    }

    async fn query_limited(&self, sql: &str, limits: &QueryLimits) -> Result<QueryResult, StoreError> {
        // ClickHouse decides: readonly=1 refuses writes, setting changes and
        // table functions (url, s3, remote, file, ...: they need CREATE
        // TEMPORARY TABLE, which readonly=1 withholds); its HTTP interface
        // refuses several statements in one request. Rows past the limit
        // end the query early ('break') and are cut here.
        let bounds = [
            ("readonly", "1".to_owned()),
            ("max_execution_time", limits.timeout.as_secs().max(1).to_string()),
            ("max_result_rows", limits.max_rows.saturating_add(1).to_string()),
            ("result_overflow_mode", "break".to_owned()),
            ("max_memory_usage", limits.max_memory_bytes.to_string()),
        ];
        let mut result =
            match tokio::time::timeout(limits.timeout + std::time::Duration::from_secs(2), self.select(sql, &[], &bounds)).await {
                Ok(r) => r.map_err(|e| match e {
                    StoreError::Unexpected(m) | StoreError::Rejected(m) if m.contains("readonly") || m.contains("READONLY") => {
                        StoreError::NotReadOnly(format!("ClickHouse refused it in read-only mode: {m}"))
                    }
                    other => other,
                })?,
                Err(_) => return Err(StoreError::Unavailable(format!("the query ran past its time limit ({:?})", limits.timeout))),
            };
        if result.rows.len() > limits.max_rows {
            result.rows.truncate(limits.max_rows);
            result.truncated = true;
        }
        Ok(result)
    }

    fn dialect(&self) -> Dialect {
        Dialect::ClickHouse
    }

    async fn compression_ratios(&self) -> Result<Vec<(String, f64)>, StoreError> {
        // Active parts of this database's telemetry tables (on this node).
        let sql =
            "SELECT multiIf(startsWith(table, 'otel_traces'), 'traces', startsWith(table, 'otel_logs'), 'logs', 'metrics') AS signal, \
                   sum(data_compressed_bytes), sum(data_uncompressed_bytes) FROM system.parts \
                   WHERE database = {p0:String} AND active AND startsWith(table, 'otel_') AND table NOT LIKE 'otel_traces_trace_id%' \
                   GROUP BY signal";
        let r = self.query_with(sql, &[Param::Str(self.config.schema.database.clone())]).await?;
        Ok(r.rows
            .iter()
            .filter_map(|row| {
                let (c, u) = (row.get(1)?.as_f64()?, row.get(2)?.as_f64()?);
                (u > 0.0).then(|| (row[0].as_str().unwrap_or_default().to_owned(), c / u))
            })
            .collect())
    }

    async fn stored_bytes(&self) -> Result<Vec<crate::StoredBytes>, StoreError> {
        // Active parts of this database's telemetry tables, per day partition.
        let sql =
            "SELECT multiIf(startsWith(table, 'otel_traces'), 'traces', startsWith(table, 'otel_logs'), 'logs', 'metrics') AS signal, \
                   toUnixTimestamp64Nano(toDateTime64(toDate(partition), 9, 'UTC')) AS day, sum(data_compressed_bytes) FROM system.parts \
                   WHERE database = {p0:String} AND active AND startsWith(table, 'otel_') AND table NOT LIKE 'otel_traces_trace_id%' \
                   AND partition LIKE '____-__-__' GROUP BY signal, day ORDER BY signal, day";
        let r = self.query_with(sql, &[Param::Str(self.config.schema.database.clone())]).await?;
        // Bytes are billed (storage cost): a cell that does not read is an
        // error, never 0 bytes.
        r.rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                Ok(crate::StoredBytes {
                    signal: crate::ledger::text(&row[0]),
                    day_ns: row[1].as_i64(),
                    bytes: crate::ledger::uint_cell("system.parts", &row[2], i, "sum(data_compressed_bytes)")?,
                    method: "clickhouse system.parts data_compressed_bytes of the day's partition",
                })
            })
            .collect()
    }

    async fn replace_ledger(&self, replacement: &LedgerReplacement) -> Result<(), StoreError> {
        if replacement.hours.is_empty() {
            return Ok(());
        }
        crate::money::check_rows(&replacement.rows, &[])?;
        // 1. The new rows: invisible until their revisions are listed.
        let id = replacement.hours.iter().map(|h| h.revision).max().unwrap_or(0);
        self.insert_rows("costplane_ledger", &replacement.rows, |r| r.charge_period_start_ns, rowbinary::ledger, id).await?;
        if let Some(pause) = crate::ledger::test_switch_delay(replacement) {
            tracing::warn!(?pause, "test hook: pausing before the ledger switch");
            tokio::time::sleep(pause).await;
        }
        // 2. The switch: every new revision in one insert (one part).
        let body = self.config.compression.apply(rowbinary::ledger_hours(&replacement.hours))?;
        self.insert("costplane_ledger_hours", rowbinary::LEDGER_HOURS_COLUMNS, body, format!("{id}-costplane_ledger_hours")).await?;
        // 3. Retire what the switch superseded (and orphans of replacements
        // killed before their switch). Readers already skip these rows.
        let (from, to) = crate::ledger::replacement_window(replacement);
        let on_cluster = self.config.schema.cluster.as_deref().map(|c| format!(" ON CLUSTER {}", schema::ident(c))).unwrap_or_default();
        let local = |t: &str| match self.config.schema.cluster {
            Some(_) => self.config.schema.qualified(&format!("{t}_local")),
            None => self.config.schema.qualified(t),
        };
        let statements = crate::ledger::retire_statements(
            Dialect::ClickHouse,
            &format!("{}{on_cluster}", local("costplane_ledger")),
            &format!("{}{on_cluster}", local("costplane_ledger_hours")),
        );
        for sql in statements {
            // The subquery reads the (distributed) revision table.
            let sql = sql.replacen(
                &format!("NOT IN (SELECT max(Revision) FROM {}{on_cluster}", local("costplane_ledger_hours")),
                &format!("NOT IN (SELECT max(Revision) FROM {}", self.config.schema.qualified("costplane_ledger_hours")),
                1,
            );
            let settings = vec![self.database_param(), ("param_p0", from.to_string()), ("param_p1", to.to_string())];
            self.execute(&sql, &settings, None, Op::Write).await?;
        }
        Ok(())
    }

    async fn stage_ledger_rows(&self, rows: &[LedgerRow], batch_id: u64) -> Result<(), StoreError> {
        crate::money::check_rows(rows, &[])?;
        self.insert_rows("costplane_ledger", rows, |r| r.charge_period_start_ns, rowbinary::ledger, batch_id).await
    }

    async fn discard_ledger_revisions(&self, from: i64, to: i64, revisions: &[u64]) -> Result<(), StoreError> {
        if revisions.is_empty() {
            return Ok(());
        }
        let on_cluster = self.config.schema.cluster.as_deref().map(|c| format!(" ON CLUSTER {}", schema::ident(c))).unwrap_or_default();
        let table = match self.config.schema.cluster {
            Some(_) => self.config.schema.qualified("costplane_ledger_local"),
            None => self.config.schema.qualified("costplane_ledger"),
        };
        let sql = crate::ledger::discard_statement(Dialect::ClickHouse, &format!("{table}{on_cluster}"), revisions);
        let settings = vec![self.database_param(), ("param_p0", from.to_string()), ("param_p1", to.to_string())];
        self.execute(&sql, &settings, None, Op::Write).await?;
        Ok(())
    }

    async fn query_with(&self, sql: &str, params: &[Param]) -> Result<QueryResult, StoreError> {
        self.select(sql, params, &[("readonly", "2".to_owned())]).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let url = format!("{}/ping", self.config.url.trim_end_matches('/'));
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot reach ClickHouse at {}: {e}", self.config.url)))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!("ClickHouse at {} answered {} to /ping", self.config.url, resp.status())))
        }
    }

    async fn put_records(&self, table: RecordTable, records: &[Record]) -> Result<(), StoreError> {
        // INSERT ... SELECT with bound parameters: values never become SQL text.
        let sql = format!(
            "INSERT INTO {} (Key, Body, UpdatedNs, Deleted) SELECT {{p0:String}}, {{p1:String}}, {{p2:Int64}}, {{p3:UInt8}}",
            self.config.schema.qualified(table.name())
        );
        for r in records {
            let mut settings = vec![
                ("param_p0", r.key.clone()),
                ("param_p1", r.body.clone()),
                ("param_p2", r.updated_ns.to_string()),
                ("param_p3", u8::from(r.deleted).to_string()),
            ];
            if self.config.schema.cluster.is_some() {
                settings.push(("distributed_foreground_insert", "1".to_owned()));
            }
            self.execute(&sql, &settings, None, Op::Write).await?;
        }
        Ok(())
    }

    async fn records(&self, table: RecordTable) -> Result<Vec<Record>, StoreError> {
        let sql = format!(
            "SELECT Key, argMax(Body, UpdatedNs) AS b, max(UpdatedNs) AS u FROM {} GROUP BY Key \
             HAVING argMax(Deleted, UpdatedNs) = 0 ORDER BY Key",
            self.config.schema.qualified(table.name())
        );
        let r = self.query_with(&sql, &[]).await?;
        Ok(r.rows.iter().map(|row| Record::from_row(row)).collect())
    }
}

impl ClickHouseStore {
    /// Runs a query answering JSONCompact, with `bounds` (readonly and
    /// limits) among its settings.
    async fn select(&self, sql: &str, params: &[Param], bounds: &[(&'static str, String)]) -> Result<QueryResult, StoreError> {
        let mut settings = vec![
            self.database_param(),
            ("default_format", "JSONCompact".to_owned()),
            ("output_format_json_quote_64bit_integers", "0".to_owned()),
            // Decimals as strings: money stays exact.
            ("output_format_json_quote_decimals", "1".to_owned()),
        ];
        settings.extend(bounds.iter().map(|(k, v)| (*k, v.clone())));
        let names: Vec<String> = (0..params.len()).map(|i| format!("param_p{i}")).collect();
        for (name, p) in names.iter().zip(params) {
            let value = match p {
                Param::Str(s) => s.clone(),
                Param::Int(i) => i.to_string(),
                Param::UInt(u) => u.to_string(),
            };
            settings.push((name.as_str(), value));
        }
        let sql = sql.trim().trim_end_matches(';');
        let out = self.execute(sql, &settings, None, Op::Query).await?;
        #[derive(serde::Deserialize)]
        struct Meta {
            name: String,
            #[serde(rename = "type")]
            ty: String,
        }
        #[derive(serde::Deserialize)]
        struct Compact {
            meta: Vec<Meta>,
            data: Vec<Vec<serde_json::Value>>,
        }
        let parsed: Compact = serde_json::from_slice(&out)
            .map_err(|e| StoreError::Rejected(format!("ClickHouse's answer is not JSONCompact (a FORMAT clause in the query?): {e}")))?;
        Ok(QueryResult {
            columns: parsed.meta.iter().map(|m| m.name.clone()).collect(),
            types: parsed.meta.into_iter().map(|m| m.ty).collect(),
            rows: parsed.data.into_iter().map(|row| row.into_iter().map(result_cell).collect()).collect(),
            truncated: false,
        })
    }
}
