//! The ClickHouse store: a single node or a cluster, over ClickHouse's HTTP
//! interface.
//!
//! Write invariants:
//! - One `INSERT ... FORMAT RowBinary` per table per batch (thousands of rows,
//!   about one insert per second per table with the default batching), the
//!   body gzip-compressed unless configured off. No row-per-statement inserts,
//!   so no "Too many parts".
//! - Every insert carries `insert_deduplication_token = <batch id>-<table>`.
//!   The batch id is fixed when the pipeline flushes, so when a write is
//!   retried (whole or after some tables succeeded), ClickHouse drops the
//!   blocks it already has: no duplicates. Plain MergeTree tables keep a
//!   deduplication window for this (`non_replicated_deduplication_window`);
//!   replicated tables deduplicate by default.
//! - Connection failures, timeouts, HTTP 502/503/504 and ClickHouse's
//!   transient error codes are `Unavailable` (the pipeline retries with
//!   back-off); everything else is `Rejected`.
//! - The schema is versioned in `costplane_schema_migrations`; startup applies
//!   missing steps (each DDL is `IF NOT EXISTS`) and refuses a newer schema.

mod rowbinary;
pub mod schema;

use std::io::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use costplane_telemetry::TelemetryBatch;

use crate::{is_read_only_statement, result_cell, Dialect, Param, QueryResult, Store, StoreError};
pub use schema::SchemaOptions;

/// How request bodies are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyCompression {
    #[default]
    Gzip,
    None,
}

/// Connection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseConfig {
    /// e.g. `http://127.0.0.1:8123`
    pub url: String,
    pub user: String,
    pub password: Option<String>,
    pub compression: BodyCompression,
    pub request_timeout: Duration,
    pub schema: SchemaOptions,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            user: "default".into(),
            password: None,
            compression: BodyCompression::Gzip,
            request_timeout: Duration::from_secs(30),
            schema: SchemaOptions::default(),
        }
    }
}

/// ClickHouse's error codes that may pass on their own.
const TRANSIENT_CODES: [u32; 17] = [
    3,    // UNEXPECTED_END_OF_FILE (connection cut mid-body)
    159,  // TIMEOUT_EXCEEDED
    164,  // READONLY (replica in read-only mode)
    202,  // TOO_MANY_SIMULTANEOUS_QUERIES
    203,  // NO_FREE_CONNECTION
    209,  // SOCKET_TIMEOUT
    210,  // NETWORK_ERROR
    236,  // ABORTED
    241,  // MEMORY_LIMIT_EXCEEDED
    242,  // TABLE_IS_READ_ONLY
    252,  // TOO_MANY_PARTS
    285,  // TOO_FEW_LIVE_REPLICAS
    319,  // UNKNOWN_STATUS_OF_INSERT
    425,  // SYSTEM_ERROR
    439,  // CANNOT_SCHEDULE_TASK
    999,  // KEEPER_EXCEPTION
    1000, // POCO_EXCEPTION
];

pub struct ClickHouseStore {
    http: reqwest::Client,
    config: ClickHouseConfig,
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
    /// Connects, then creates or upgrades the schema.
    pub async fn connect(config: ClickHouseConfig) -> Result<Self, StoreError> {
        let store = Self::for_queries(config)?;
        store.ping().await?;
        store.migrate().await?;
        Ok(store)
    }

    /// A client that only reads (no connection check, no schema changes).
    pub fn for_queries(config: ClickHouseConfig) -> Result<Self, StoreError> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(50))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("building the HTTP client failed: {e}")))?;
        Ok(ClickHouseStore { http, config })
    }

    pub fn config(&self) -> &ClickHouseConfig {
        &self.config
    }

    /// Runs one statement. `sql` goes in the body unless `data` is given,
    /// in which case `sql` is the `query` parameter and `data` the body.
    async fn execute(&self, sql: &str, settings: &[(&str, String)], data: Option<Vec<u8>>) -> Result<Vec<u8>, StoreError> {
        let mut params: Vec<(&str, String)> = settings.to_vec();
        let (body, compress) = match data {
            Some(d) => {
                params.push(("query", sql.to_owned()));
                (d, true)
            }
            None => (sql.as_bytes().to_vec(), false),
        };
        let mut req = self.http.post(&self.config.url).query(&params).header("X-ClickHouse-User", &self.config.user);
        if let Some(p) = &self.config.password {
            req = req.header("X-ClickHouse-Key", p);
        }
        let body = if compress && self.config.compression == BodyCompression::Gzip {
            req = req.header("Content-Encoding", "gzip");
            gzip(&body)?
        } else {
            body
        };
        let resp = req.body(body).send().await.map_err(|e| {
            StoreError::Unavailable(format!("cannot reach ClickHouse at {}: {e}", self.config.url))
        })?;
        let status = resp.status();
        let code: Option<u32> = resp
            .headers()
            .get("X-ClickHouse-Exception-Code")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| StoreError::Unavailable(format!("reading ClickHouse's answer failed: {e}")))?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        let message = format!("ClickHouse answered {status}: {}", &text[..text.len().min(2000)]);
        let transient = matches!(status.as_u16(), 502..=504) || code.is_some_and(|c| TRANSIENT_CODES.contains(&c));
        Err(if transient { StoreError::Unavailable(message) } else { StoreError::Rejected(message) })
    }

    fn database_param(&self) -> (&'static str, String) {
        ("database", self.config.schema.database.clone())
    }

    async fn schema_version(&self) -> Result<u32, StoreError> {
        let sql = format!(
            "SELECT max(version) FROM {} FORMAT TabSeparated",
            self.config.schema.qualified("costplane_schema_migrations")
        );
        let out = self.execute(&sql, &[], None).await?;
        let text = String::from_utf8_lossy(&out);
        Ok(text.trim().parse().unwrap_or(0))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let statements = self.config.schema.statements();
        // The database and the migrations table first, to read the version.
        for stmt in &statements[..2] {
            self.execute(stmt, &[], None).await.map_err(schema_error)?;
        }
        let version = self.schema_version().await?;
        if version > schema::SCHEMA_VERSION {
            return Err(StoreError::Schema(format!(
                "the ClickHouse schema in database '{}' is version {version}, newer than the version {} this costplane knows; upgrade costplane",
                self.config.schema.database,
                schema::SCHEMA_VERSION
            )));
        }
        if version == schema::SCHEMA_VERSION {
            return Ok(());
        }
        for stmt in &statements[2..] {
            self.execute(stmt, &[], None).await.map_err(schema_error)?;
        }
        let record = format!(
            "INSERT INTO {} (version) VALUES ({})",
            self.config.schema.qualified("costplane_schema_migrations"),
            schema::SCHEMA_VERSION
        );
        self.execute(&record, &[], None).await?;
        tracing::info!(database = %self.config.schema.database, version = schema::SCHEMA_VERSION, "ClickHouse schema created");
        Ok(())
    }

    async fn insert(&self, table: &str, columns: &str, body: Vec<u8>, batch_id: u64) -> Result<(), StoreError> {
        let sql = format!("INSERT INTO {} ({columns}) FORMAT RowBinary", self.config.schema.qualified(table));
        let mut settings = vec![
            ("insert_deduplicate", "1".to_owned()),
            ("insert_deduplication_token", format!("{batch_id:016x}-{table}")),
            ("async_insert", "0".to_owned()),
        ];
        if self.config.schema.cluster.is_some() {
            // Insert into the shards before answering, so a failure is seen
            // here and retried with the same token.
            settings.push(("distributed_foreground_insert", "1".to_owned()));
        }
        self.execute(&sql, &settings, Some(body)).await.map(|_| ())
    }
}

fn schema_error(e: StoreError) -> StoreError {
    match e {
        StoreError::Rejected(m) => StoreError::Schema(format!("creating the ClickHouse schema failed: {m}")),
        other => other,
    }
}

#[async_trait]
impl Store for ClickHouseStore {
    fn backend(&self) -> &'static str {
        "clickhouse"
    }

    async fn write(&self, batch: &TelemetryBatch) -> Result<(), StoreError> {
        let id = batch.id;
        if !batch.spans.is_empty() {
            self.insert("otel_traces", rowbinary::TRACES_COLUMNS, rowbinary::traces(&batch.spans), id).await?;
        }
        if !batch.logs.is_empty() {
            self.insert("otel_logs", rowbinary::LOGS_COLUMNS, rowbinary::logs(&batch.logs), id).await?;
        }
        if !batch.gauges.is_empty() {
            self.insert("otel_metrics_gauge", &rowbinary::gauge_columns(), rowbinary::gauges(&batch.gauges), id).await?;
        }
        if !batch.sums.is_empty() {
            self.insert("otel_metrics_sum", &rowbinary::sum_columns(), rowbinary::sums(&batch.sums), id).await?;
        }
        if !batch.histograms.is_empty() {
            self.insert("otel_metrics_histogram", &rowbinary::histogram_columns(), rowbinary::histograms(&batch.histograms), id)
                .await?;
        }
        if !batch.exp_histograms.is_empty() {
            self.insert(
                "otel_metrics_exp_histogram",
                &rowbinary::exp_histogram_columns(),
                rowbinary::exp_histograms(&batch.exp_histograms),
                id,
            )
            .await?;
        }
        if !batch.summaries.is_empty() {
            self.insert("otel_metrics_summary", &rowbinary::summary_columns(), rowbinary::summaries(&batch.summaries), id)
                .await?;
        }
        let usage = &batch.usage;
        if !usage.telemetry.is_empty() {
            let body = rowbinary::usage_telemetry(&usage.telemetry);
            self.insert("costplane_usage_telemetry", rowbinary::USAGE_TELEMETRY_COLUMNS, body, id).await?;
        }
        if !usage.llm.is_empty() {
            self.insert("costplane_usage_llm", rowbinary::USAGE_LLM_COLUMNS, rowbinary::usage_llm(&usage.llm), id).await?;
        }
        if !usage.ledger.is_empty() {
            self.insert("costplane_ledger", rowbinary::LEDGER_COLUMNS, rowbinary::ledger(&usage.ledger), id).await?;
        }
        Ok(())
    }

    async fn query(&self, sql: &str) -> Result<QueryResult, StoreError> {
        is_read_only_statement(sql).map_err(StoreError::NotReadOnly)?;
        self.query_with(sql, &[]).await
    }

    fn dialect(&self) -> Dialect {
        Dialect::ClickHouse
    }

    async fn compression_ratios(&self) -> Result<Vec<(String, f64)>, StoreError> {
        // Active parts of this database's telemetry tables (on this node).
        let sql = "SELECT multiIf(startsWith(table, 'otel_traces'), 'traces', startsWith(table, 'otel_logs'), 'logs', 'metrics') AS signal, \
                   sum(data_compressed_bytes), sum(data_uncompressed_bytes) FROM system.parts \
                   WHERE database = {p0:String} AND active AND startsWith(table, 'otel_') AND table NOT LIKE 'otel_traces_trace_id%' \
                   GROUP BY signal";
        let r = self.query_with(sql, &[Param::Str(self.config.schema.database.clone())]).await?;
        Ok(r
            .rows
            .iter()
            .filter_map(|row| {
                let (c, u) = (row.get(1)?.as_f64()?, row.get(2)?.as_f64()?);
                (u > 0.0).then(|| (row[0].as_str().unwrap_or_default().to_owned(), c / u))
            })
            .collect())
    }

    async fn delete_ledger(&self, source: &str, from_ns: i64, to_ns: i64) -> Result<(), StoreError> {
        // A lightweight delete; in cluster mode it runs on the local tables.
        let table = match self.config.schema.cluster {
            Some(_) => "costplane_ledger_local",
            None => "costplane_ledger",
        };
        let on_cluster = self.config.schema.cluster.as_deref().map(|c| format!(" ON CLUSTER {}", schema::ident(c))).unwrap_or_default();
        let sql = format!(
            "DELETE FROM {}{on_cluster} WHERE x_Source = {{p0:String}} AND toUnixTimestamp64Nano(ChargePeriodStart) >= {{p1:Int64}} \
             AND toUnixTimestamp64Nano(ChargePeriodStart) < {{p2:Int64}}",
            self.config.schema.qualified(table)
        );
        let settings = vec![
            ("param_p0", source.to_owned()),
            ("param_p1", from_ns.to_string()),
            ("param_p2", to_ns.to_string()),
        ];
        self.execute(&sql, &settings, None).await.map(|_| ())
    }

    async fn query_with(&self, sql: &str, params: &[Param]) -> Result<QueryResult, StoreError> {
        let mut settings = vec![
            self.database_param(),
            ("default_format", "JSONCompact".to_owned()),
            ("readonly", "2".to_owned()),
            ("output_format_json_quote_64bit_integers", "0".to_owned()),
            // Decimals as strings: money stays exact.
            ("output_format_json_quote_decimals", "1".to_owned()),
        ];
        let names: Vec<String> = (0..params.len()).map(|i| format!("param_p{i}")).collect();
        for (name, p) in names.iter().zip(params) {
            let value = match p {
                Param::Str(s) => s.clone(),
                Param::Int(i) => i.to_string(),
            };
            settings.push((name.as_str(), value));
        }
        let sql = sql.trim().trim_end_matches(';');
        let out = self.execute(sql, &settings, None).await?;
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
        })
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
}
