//! Server configuration.
//!
//! Layers, later ones winning: built-in defaults → the TOML file given by
//! `--config` → `COSTPLANE_*` environment variables → command-line flags.
//! The binary resolves env and flags together (clap reads both) and applies
//! them with [`Config::apply`]. Unknown keys in the file are errors, so a
//! typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use costplane_cost::{Catalog, Meter, TelemetryRates, Tenancy};
use costplane_pipeline::{BufferConfig, DiskBufferConfig, FsyncPolicy, PipelineConfig, RetryPolicy};
use costplane_store::clickhouse::{BodyCompression, ClickHouseConfig, SchemaOptions};
use costplane_telemetry::Limits;
use serde::{Deserialize, Serialize};

use crate::error::ServerError;

const MIB: usize = 1024 * 1024;

/// Which store backend to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    Duckdb,
    Clickhouse,
}

impl std::str::FromStr for StoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "duckdb" => Ok(StoreKind::Duckdb),
            "clickhouse" => Ok(StoreKind::Clickhouse),
            other => Err(format!("unknown store '{other}'; use duckdb or clickhouse")),
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the embedded store (`costplane.duckdb`) lives.
    pub data_dir: PathBuf,
    pub store: StoreKind,
    pub otlp: OtlpConfig,
    pub http: HttpConfig,
    /// `[connections]`: header-read and idle deadlines on every listener.
    pub connections: crate::connections::ConnectionsSection,
    pub pipeline: PipelineSection,
    pub buffer: BufferSection,
    pub clickhouse: ClickHouseSection,
    /// `[embedded]`: the embedded store's Parquet segments.
    pub embedded: EmbeddedSection,
    pub cost: CostSection,
    pub api: ApiSection,
    pub metrics: MetricsSection,
    pub billing: BillingSection,
    pub anomalies: crate::insights::config::AnomaliesSection,
    pub budgets: Vec<crate::insights::config::BudgetConfig>,
    /// `[ingest]`: ingest keys and per-tenant rate limits.
    pub ingest: crate::otlp::keys::IngestSection,
    /// `[tls]`: certificates for every listener.
    pub tls: crate::tls::TlsSection,
    /// `[postgres]`: the read-only PostgreSQL endpoint.
    pub postgres: crate::postgres::PostgresSection,
    /// `[unit_costs]`: cost per request and customer.
    pub unit_costs: crate::unit_costs::UnitCostsSection,
    pub ledger: LedgerSection,
    pub kubernetes: costplane_k8s::KubernetesConfig,
    /// The file this configuration was read from (price reloads read its
    /// `[cost]` rates again).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[ledger]`: when hours close and how far back the closer looks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSection {
    /// An hour closes this many seconds after its end (default 600).
    pub close_after_secs: u64,
    /// Seconds between two refreshes of the open hours and closings (default 10).
    pub refresh_secs: u64,
    /// Days of usage the closer watches for late arrivals (default 32).
    pub lookback_days: u64,
    /// An LLM call's own time may be this many hours before its receive
    /// time (default 168: 7 days) ...
    pub llm_event_back_hours: u64,
    /// ... or this many hours after it (default 1); outside, the call is
    /// booked `invalid` at its receive hour.
    pub llm_event_ahead_hours: u64,
    /// Price open hours incrementally (default true): each refresh reads
    /// and prices only the usage written since the last one. `false`
    /// prices every changed hour whole at each refresh (the behaviour
    /// before incremental pricing; kept to compare against).
    pub incremental: bool,
}

impl Default for LedgerSection {
    fn default() -> Self {
        LedgerSection {
            close_after_secs: 600,
            refresh_secs: 10,
            lookback_days: 32,
            llm_event_back_hours: 168,
            llm_event_ahead_hours: 1,
            incremental: true,
        }
    }
}

/// `[billing]`: who bills whom, as the FOCUS export names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingSection {
    /// FOCUS `BillingAccountId`: the account the charges are billed to (not empty).
    pub account_id: String,
    /// FOCUS `BillingAccountName` (empty: exported as null).
    pub account_name: String,
    /// FOCUS `InvoiceIssuerName`: who invoices the charges (not empty).
    pub invoice_issuer: String,
    /// `[billing.exchange_rates]`: the ledger currency's amount for one unit
    /// of another currency (`EUR = "1.08"`). An imported bill in a currency
    /// without a rate here is refused, never summed with the ledger's own.
    pub exchange_rates: std::collections::BTreeMap<String, rust_decimal::Decimal>,
    /// `[billing.reconciliation]`: invoices against estimates.
    pub reconciliation: crate::reconcile::ReconciliationSettings,
}

impl Default for BillingSection {
    fn default() -> Self {
        BillingSection {
            account_id: "costplane".into(),
            account_name: "costplane".into(),
            invoice_issuer: "costplane".into(),
            exchange_rates: std::collections::BTreeMap::new(),
            reconciliation: Default::default(),
        }
    }
}

/// `[api]`: access to the HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// `[[api.keys]]` entries: `key` plus `tenant = "..."` or `role = "admin"`.
    pub keys: Vec<crate::auth::ApiKey>,
    /// Serve the API without keys on a non-loopback address anyway.
    pub allow_open_remote: bool,
    /// Most rows `/api/v1/sql` returns (the answer says when it cut).
    pub sql_max_rows: usize,
    /// How long an ad-hoc query may run before it is stopped.
    pub sql_timeout: String,
    /// Most steps (`window` / `step`) one `/api/v1/allocation` answer may
    /// have; more is answered 400 before anything is read.
    pub max_steps: usize,
}

/// The default of `api.max_steps`: a year of hours.
pub const DEFAULT_MAX_STEPS: usize = 8_784;

/// The ceiling of `api.max_steps`.
pub const MAX_STEPS_CEILING: usize = 100_000;

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            keys: Vec::new(),
            allow_open_remote: false,
            sql_max_rows: 10_000,
            sql_timeout: "30s".into(),
            max_steps: DEFAULT_MAX_STEPS,
        }
    }
}

impl ApiSection {
    /// The bounds of `/api/v1/sql` queries.
    pub fn query_limits(&self) -> Result<costplane_store::QueryLimits, String> {
        Ok(costplane_store::QueryLimits {
            max_rows: self.sql_max_rows,
            timeout: parse_duration(&self.sql_timeout).map_err(|e| format!("api.sql_timeout: {e}"))?,
            ..costplane_store::QueryLimits::default()
        })
    }
}

/// `[cost]`: who owns telemetry, and what it costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostSection {
    /// Resource attribute naming the tenant (missing: "unassigned").
    pub tenant_attribute: String,
    /// Resource attribute naming the project (missing: "unassigned").
    pub project_attribute: String,
    /// A price file in the catalog's format whose entries beat the shipped catalog.
    pub price_overrides: Option<PathBuf>,
    /// Telemetry platform rates, decimal strings in the catalog's currency.
    pub ingest_per_gib: String,
    pub storage_per_gib_month: String,
    pub queries_per_1000: String,
    /// How a cost the span carries is used: "prefer" (it beats the
    /// catalog), "ignore", or "when_unpriced" (default: a catalog or
    /// override price wins; the span's cost fills in for unknown models).
    pub provided_cost: String,
}

impl Default for CostSection {
    fn default() -> Self {
        CostSection {
            tenant_attribute: "tenant.id".into(),
            project_attribute: "service.namespace".into(),
            price_overrides: None,
            ingest_per_gib: "0".into(),
            storage_per_gib_month: "0".into(),
            queries_per_1000: "0".into(),
            provided_cost: "when_unpriced".into(),
        }
    }
}

impl CostSection {
    /// The meter this configuration describes (loads the price catalog).
    pub fn meter(&self) -> Result<Meter, String> {
        let rate =
            |name: &str, v: &str| v.trim().parse::<rust_decimal::Decimal>().map_err(|e| format!("cost.{name} '{v}' is not a decimal: {e}"));
        let catalog = Catalog::load(self.price_overrides.as_deref()).map_err(|e| e.to_string())?;
        let provided_cost = costplane_cost::llm::ProvidedCost::parse(&self.provided_cost).ok_or_else(|| {
            format!("cost.provided_cost '{}' is not one of \"prefer\", \"ignore\", \"when_unpriced\"", self.provided_cost)
        })?;
        let mut meter = Meter::new(
            Tenancy { tenant_attribute: self.tenant_attribute.clone(), project_attribute: self.project_attribute.clone() },
            std::sync::Arc::new(catalog),
            TelemetryRates {
                ingest_per_gib: rate("ingest_per_gib", &self.ingest_per_gib)?,
                storage_per_gib_month: rate("storage_per_gib_month", &self.storage_per_gib_month)?,
                queries_per_1000: rate("queries_per_1000", &self.queries_per_1000)?,
            },
        );
        meter.provided_cost = provided_cost;
        Ok(meter)
    }
}

/// `[embedded]`: used when `store = "duckdb"` (the default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedSection {
    /// Days to keep each signal (whole days are removed, as ClickHouse's
    /// TTL drops whole parts); 0 keeps forever.
    pub traces_ttl_days: u32,
    pub logs_ttl_days: u32,
    pub metrics_ttl_days: u32,
    /// How often expired days are removed and small segments merged.
    pub maintenance_interval: String,
    /// Small segments of a day are merged once they add up to this many
    /// MiB or the oldest is `compact_after` old.
    pub compact_target_mib: u64,
    pub compact_after: String,
    /// DuckDB's memory limit in MiB (its buffer pool and query operators;
    /// beyond it DuckDB evicts and spills to disk). 0: DuckDB's own
    /// default, 80% of the machine's memory.
    pub duckdb_memory_limit_mib: u64,
}

impl Default for EmbeddedSection {
    fn default() -> Self {
        let o = costplane_store::duckdb::EmbeddedOptions::default();
        EmbeddedSection {
            traces_ttl_days: o.traces_ttl_days,
            logs_ttl_days: o.logs_ttl_days,
            metrics_ttl_days: o.metrics_ttl_days,
            maintenance_interval: "60s".into(),
            compact_target_mib: o.compact.target_bytes / MIB as u64,
            compact_after: "1h".into(),
            duckdb_memory_limit_mib: o.duckdb_memory_limit_mib,
        }
    }
}

impl EmbeddedSection {
    /// The store's options; errors name the bad key.
    pub fn options(&self) -> Result<costplane_store::duckdb::EmbeddedOptions, String> {
        let interval = parse_duration(&self.maintenance_interval).map_err(|e| format!("embedded.maintenance_interval: {e}"))?;
        let max_age = parse_duration(&self.compact_after).map_err(|e| format!("embedded.compact_after: {e}"))?;
        if interval.is_zero() {
            return Err("embedded.maintenance_interval must be more than 0s".into());
        }
        if self.compact_target_mib == 0 {
            return Err("embedded.compact_target_mib must be at least 1".into());
        }
        Ok(costplane_store::duckdb::EmbeddedOptions {
            traces_ttl_days: self.traces_ttl_days,
            logs_ttl_days: self.logs_ttl_days,
            metrics_ttl_days: self.metrics_ttl_days,
            compact: costplane_store::duckdb::CompactPolicy { target_bytes: self.compact_target_mib.saturating_mul(MIB as u64), max_age },
            maintenance_interval: Some(interval),
            duckdb_memory_limit_mib: self.duckdb_memory_limit_mib,
        })
    }
}

/// `[clickhouse]`: used when `store = "clickhouse"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseSection {
    /// ClickHouse's HTTP interface.
    pub url: String,
    pub user: String,
    pub password: Option<crate::secret::Secret>,
    /// A file holding the password (first line), instead of `password`.
    pub password_file: Option<PathBuf>,
    /// For `https://` URLs: a PEM CA to trust besides the public roots.
    pub ca_file: Option<PathBuf>,
    pub database: String,
    /// Cluster name: ReplicatedMergeTree tables plus Distributed tables, DDL ON CLUSTER.
    pub cluster: Option<String>,
    /// Insert body compression: "zstd" (default), "gzip" or "none".
    pub compression: String,
    pub request_timeout: String,
    /// Days to keep each signal; 0 keeps forever.
    pub traces_ttl_days: u32,
    pub logs_ttl_days: u32,
    pub metrics_ttl_days: u32,
    /// Optional hot/cold storage: the policy, its cold volume, and the age
    /// at which parts move there.
    pub storage_policy: Option<String>,
    pub cold_volume: Option<String>,
    pub cold_after_days: u32,
}

impl Default for ClickHouseSection {
    fn default() -> Self {
        let schema = SchemaOptions::default();
        ClickHouseSection {
            url: "http://127.0.0.1:8123".into(),
            user: "default".into(),
            password: None,
            password_file: None,
            ca_file: None,
            database: schema.database,
            cluster: None,
            compression: "zstd".into(),
            request_timeout: "30s".into(),
            traces_ttl_days: schema.traces_ttl_days,
            logs_ttl_days: schema.logs_ttl_days,
            metrics_ttl_days: schema.metrics_ttl_days,
            storage_policy: None,
            cold_volume: None,
            cold_after_days: 0,
        }
    }
}

impl ClickHouseSection {
    pub fn schema_options(&self) -> SchemaOptions {
        SchemaOptions {
            database: self.database.clone(),
            cluster: self.cluster.clone().filter(|c| !c.is_empty()),
            traces_ttl_days: self.traces_ttl_days,
            logs_ttl_days: self.logs_ttl_days,
            metrics_ttl_days: self.metrics_ttl_days,
            storage_policy: self.storage_policy.clone(),
            cold_volume: self.cold_volume.clone(),
            cold_after_days: self.cold_after_days,
        }
    }

    /// The store's connection settings, reading the password file if set.
    pub fn store_config(&self) -> Result<ClickHouseConfig, String> {
        let password = match (&self.password, &self.password_file) {
            (_, Some(file)) => Some(
                std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read clickhouse.password_file {}: {e}", file.display()))?
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned(),
            ),
            (Some(p), None) => Some(p.expose().to_owned()),
            (None, None) => None,
        };
        let compression = match self.compression.as_str() {
            "zstd" => BodyCompression::Zstd,
            "gzip" => BodyCompression::Gzip,
            "none" => BodyCompression::None,
            other => return Err(format!("clickhouse.compression '{other}' is not zstd, gzip or none")),
        };
        Ok(ClickHouseConfig {
            url: self.url.clone(),
            user: self.user.clone(),
            password,
            compression,
            request_timeout: parse_duration(&self.request_timeout).map_err(|e| format!("clickhouse.request_timeout: {e}"))?,
            schema: self.schema_options(),
            ca_file: self.ca_file.clone(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Largest request body after decompression, in MiB (OTLP recommends 20).
    pub max_body_mib: usize,
    /// Memory that requests being received, decompressed and decoded may
    /// hold at once, in MiB, over both receivers. Over it requests are
    /// refused with HTTP 503 / gRPC UNAVAILABLE (retried by exporters).
    pub max_inflight_mib: usize,
    /// Most attributes per item (span, log record, data point, resource, scope).
    pub max_attributes: usize,
    /// Longest attribute value, name or log body, in bytes.
    pub max_value_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Health, readiness and the query API.
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSection {
    /// Most MiB of accepted, not yet stored telemetry held in memory.
    pub memory_limit_mib: usize,
    pub batch_max_rows: usize,
    /// e.g. "1s", "500ms".
    pub flush_interval: String,
    pub retry_initial_interval: String,
    pub retry_max_interval: String,
    /// Unset (the default): a failing batch is retried for as long as it
    /// takes. Set: after this long its requests go to the dead-letter area.
    pub retry_max_elapsed: Option<String>,
    /// Batches written to the store at the same time.
    pub writers: usize,
    /// How long a shutdown drains before leaving the rest in the disk buffer.
    pub shutdown_timeout: String,
}

/// Where accepted requests wait for the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BufferKind {
    /// A write-ahead log on disk: a crash loses nothing acknowledged.
    #[default]
    Disk,
    /// Memory only: a crash loses what was not yet stored.
    Memory,
}

/// `[buffer]`: the durable buffer between the receivers and the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferSection {
    pub kind: BufferKind,
    /// Most MiB of log segments on disk; past it, clients are asked to retry.
    pub max_mib: u64,
    /// Default: `DATA_DIR/buffer`.
    pub dir: Option<PathBuf>,
    /// How long an acknowledged request may wait for fsync ("0s": fsync
    /// before every answer). Bounds what a power loss can take; a process
    /// crash loses nothing either way.
    pub fsync_interval: String,
    /// Size of one log segment file, in MiB.
    pub segment_mib: u64,
}

impl Default for BufferSection {
    fn default() -> Self {
        BufferSection { kind: BufferKind::Disk, max_mib: 1024, dir: None, fsync_interval: "500ms".into(), segment_mib: 64 }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./costplane-data"),
            store: StoreKind::Duckdb,
            otlp: OtlpConfig::default(),
            http: HttpConfig::default(),
            connections: Default::default(),
            pipeline: PipelineSection::default(),
            buffer: BufferSection::default(),
            clickhouse: ClickHouseSection::default(),
            embedded: EmbeddedSection::default(),
            cost: CostSection::default(),
            api: ApiSection::default(),
            metrics: MetricsSection::default(),
            billing: BillingSection::default(),
            anomalies: Default::default(),
            budgets: Vec::new(),
            ledger: LedgerSection::default(),
            source: None,
            ingest: crate::otlp::keys::IngestSection::default(),
            tls: crate::tls::TlsSection::default(),
            postgres: crate::postgres::PostgresSection::default(),
            unit_costs: crate::unit_costs::UnitCostsSection::default(),
            kubernetes: costplane_k8s::KubernetesConfig::default(),
        }
    }
}

impl Default for OtlpConfig {
    fn default() -> Self {
        let limits = Limits::default();
        OtlpConfig {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 4317)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 4318)),
            max_body_mib: 20,
            // Typical SDK batches (under 1 MiB) reserve under 10 MiB each
            // (body plus decode estimate), so dozens fit; a maximum-size
            // request may take the whole budget, and still passes alone.
            max_inflight_mib: 128,
            max_attributes: limits.max_attributes,
            max_value_bytes: limits.max_value_bytes,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { addr: SocketAddr::from(([127, 0, 0, 1], 8080)) }
    }
}

impl Default for PipelineSection {
    fn default() -> Self {
        PipelineSection {
            memory_limit_mib: 64,
            batch_max_rows: 8192,
            flush_interval: "1s".into(),
            retry_initial_interval: "1s".into(),
            retry_max_interval: "30s".into(),
            retry_max_elapsed: None,
            writers: 2,
            shutdown_timeout: "30s".into(),
        }
    }
}

/// Values from the environment and the command line; `None` leaves the
/// file's (or the default) value alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub store: Option<StoreKind>,
    pub otlp_grpc_addr: Option<SocketAddr>,
    pub otlp_http_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub max_body_mib: Option<usize>,
    pub memory_limit_mib: Option<usize>,
    pub batch_max_rows: Option<usize>,
    pub flush_interval: Option<String>,
    pub clickhouse_url: Option<String>,
    pub clickhouse_user: Option<String>,
    pub clickhouse_password: Option<crate::secret::Secret>,
    pub clickhouse_password_file: Option<PathBuf>,
    pub clickhouse_database: Option<String>,
    pub clickhouse_cluster: Option<String>,
    pub price_overrides: Option<PathBuf>,
}

impl Config {
    /// Defaults, then the file at `path` if given.
    pub fn load(path: Option<&Path>) -> Result<Config, ServerError> {
        let Some(path) = path else { return Ok(Config::default()) };
        let text =
            std::fs::read_to_string(path).map_err(|e| ServerError::Config(format!("cannot read config file {}: {e}", path.display())))?;
        let mut config = Config::from_toml(&text).map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    pub fn from_toml(text: &str) -> Result<Config, String> {
        let mut config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.ingest.resolve_secrets()?;
        config.validate()?;
        Ok(config)
    }

    /// Applies env/flag values over the file's.
    pub fn apply(&mut self, o: Overrides) -> Result<(), ServerError> {
        if let Some(v) = o.data_dir {
            self.data_dir = v;
        }
        if let Some(v) = o.store {
            self.store = v;
        }
        if let Some(v) = o.otlp_grpc_addr {
            self.otlp.grpc_addr = v;
        }
        if let Some(v) = o.otlp_http_addr {
            self.otlp.http_addr = v;
        }
        if let Some(v) = o.http_addr {
            self.http.addr = v;
        }
        if let Some(v) = o.max_body_mib {
            self.otlp.max_body_mib = v;
        }
        if let Some(v) = o.memory_limit_mib {
            self.pipeline.memory_limit_mib = v;
        }
        if let Some(v) = o.batch_max_rows {
            self.pipeline.batch_max_rows = v;
        }
        if let Some(v) = o.flush_interval {
            self.pipeline.flush_interval = v;
        }
        let ch = &mut self.clickhouse;
        if let Some(v) = o.clickhouse_url {
            ch.url = v;
        }
        if let Some(v) = o.clickhouse_user {
            ch.user = v;
        }
        if let Some(v) = o.clickhouse_password {
            ch.password = Some(v);
        }
        if let Some(v) = o.clickhouse_password_file {
            ch.password_file = Some(v);
        }
        if let Some(v) = o.clickhouse_database {
            ch.database = v;
        }
        if let Some(v) = o.clickhouse_cluster {
            ch.cluster = Some(v);
        }
        if let Some(v) = o.price_overrides {
            self.cost.price_overrides = Some(v);
        }
        self.validate().map_err(ServerError::Config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.otlp.max_body_mib == 0 || self.otlp.max_body_mib > 256 {
            return Err(format!("otlp.max_body_mib must be between 1 and 256, got {}", self.otlp.max_body_mib));
        }
        if self.otlp.max_inflight_mib == 0 {
            return Err("otlp.max_inflight_mib must be at least 1".into());
        }
        if self.pipeline.memory_limit_mib == 0 {
            return Err("pipeline.memory_limit_mib must be at least 1".into());
        }
        if self.pipeline.batch_max_rows == 0 {
            return Err("pipeline.batch_max_rows must be at least 1".into());
        }
        crate::auth::validate(&self.api.keys)?;
        crate::insights::config::validate(&self.anomalies, &self.budgets)?;
        self.ingest.validate()?;
        self.tls.validate()?;
        self.postgres.validate(self)?;
        self.unit_costs.check()?;
        self.api.query_limits()?;
        if self.api.sql_max_rows == 0 {
            return Err("api.sql_max_rows must be at least 1".into());
        }
        if self.api.max_steps == 0 || self.api.max_steps > MAX_STEPS_CEILING {
            return Err(format!("api.max_steps must be between 1 and {MAX_STEPS_CEILING}, got {}", self.api.max_steps));
        }
        if self.api.keys.is_empty() && !self.http.addr.ip().is_loopback() && !self.api.allow_open_remote {
            return Err(format!(
                "the API would listen on {} without API keys; add [[api.keys]] to the config, \
                 or set api.allow_open_remote = true if a proxy guards it",
                self.http.addr
            ));
        }
        if self.clickhouse.database.is_empty() {
            return Err("clickhouse.database must not be empty".into());
        }
        let ch = &self.clickhouse;
        for (name, days) in [("traces", ch.traces_ttl_days), ("logs", ch.logs_ttl_days), ("metrics", ch.metrics_ttl_days)] {
            let max = costplane_telemetry::convert::MAX_TTL_DAYS;
            if days > max {
                return Err(format!(
                    "clickhouse.{name}_ttl_days = {days}: at most {max} (ClickHouse computes expiry in 32-bit seconds, \
                     which end in 2106); use 0 to keep {name} forever"
                ));
            }
        }
        if !["zstd", "gzip", "none"].contains(&self.clickhouse.compression.as_str()) {
            return Err(format!("clickhouse.compression '{}' is not zstd, gzip or none", self.clickhouse.compression));
        }
        self.kubernetes.validate().map_err(|e| e.to_string())?;
        if self.billing.account_id.trim().is_empty() {
            return Err("billing.account_id must not be empty (it is FOCUS BillingAccountId)".into());
        }
        if let Some((currency, rate)) = self.billing.exchange_rates.iter().find(|(c, r)| **r <= rust_decimal::Decimal::ZERO || c.len() != 3)
        {
            return Err(format!(
                "billing.exchange_rates.{currency} = {rate}: rates are keyed by ISO 4217 codes (EUR) and must be positive"
            ));
        }
        if self.billing.invoice_issuer.trim().is_empty() {
            return Err("billing.invoice_issuer must not be empty (it is FOCUS InvoiceIssuerName)".into());
        }
        self.billing.reconciliation.check()?;
        parse_duration(&self.clickhouse.request_timeout).map_err(|e| format!("clickhouse.request_timeout: {e}"))?;
        self.metrics.validate()?;
        self.embedded.options()?;
        self.buffer_config()?;
        self.pipeline_config().map(|_| ())
    }

    pub fn max_body_bytes(&self) -> usize {
        self.otlp.max_body_mib.saturating_mul(MIB)
    }

    pub fn max_inflight_bytes(&self) -> usize {
        self.otlp.max_inflight_mib.saturating_mul(MIB)
    }

    pub fn limits(&self) -> Limits {
        Limits { max_attributes: self.otlp.max_attributes, max_value_bytes: self.otlp.max_value_bytes }
    }

    /// The buffer this configuration describes.
    pub fn buffer_config(&self) -> Result<BufferConfig, String> {
        let b = &self.buffer;
        if b.kind == BufferKind::Memory {
            return Ok(BufferConfig::Memory);
        }
        if b.max_mib == 0 || b.segment_mib == 0 {
            return Err("buffer.max_mib and buffer.segment_mib must be at least 1".into());
        }
        let every = parse_duration(&b.fsync_interval).map_err(|e| format!("buffer.fsync_interval: {e}"))?;
        Ok(BufferConfig::Disk(DiskBufferConfig {
            dir: b.dir.clone().unwrap_or_else(|| self.data_dir.join("buffer")),
            max_bytes: b.max_mib.saturating_mul(MIB as u64),
            // At most a quarter of the limit: resolved segments are deleted
            // whole, so a full buffer must consist of several.
            segment_bytes: b.segment_mib.saturating_mul(MIB as u64).min(b.max_mib.saturating_mul(MIB as u64) / 4).max(1),
            fsync: if every.is_zero() { FsyncPolicy::EveryRequest } else { FsyncPolicy::Interval(every) },
        }))
    }

    pub fn pipeline_config(&self) -> Result<PipelineConfig, String> {
        let p = &self.pipeline;
        let field = |name: &str, v: &str| parse_duration(v).map_err(|e| format!("pipeline.{name}: {e}"));
        Ok(PipelineConfig {
            memory_limit_bytes: p.memory_limit_mib.saturating_mul(MIB),
            batch_max_rows: p.batch_max_rows,
            flush_interval: field("flush_interval", &p.flush_interval)?,
            retry: RetryPolicy {
                initial_interval: field("retry_initial_interval", &p.retry_initial_interval)?,
                max_interval: field("retry_max_interval", &p.retry_max_interval)?,
                max_elapsed: p.retry_max_elapsed.as_deref().map(|v| field("retry_max_elapsed", v)).transpose()?,
            },
            writers: p.writers.max(1),
            shutdown_timeout: field("shutdown_timeout", &p.shutdown_timeout)?,
            dead_letter_dir: self.data_dir.join("dead-letter"),
        })
    }
}

/// `[metrics]`: the cost series on `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Per label (service, tenant, project, provider, model): how many
    /// values keep their name (the gauge: those with the largest cost this
    /// month; the counters: see `costs::metrics`); the rest are `other`.
    pub max_series_per_label: usize,
    /// Longest label value, in bytes; longer values are cut.
    pub max_label_value_bytes: usize,
    /// How long the cost series are served before the ledger is read again
    /// (in the background; scrapes meanwhile get the last series).
    pub cache_ttl: String,
    /// How long `costplane_request_cost_usd` is served before it is made
    /// again (in the background, as the cost series). It is the month's
    /// cost per request, read from the month's spans: a scan that grows
    /// with the month, so it is made far less often than the series read
    /// from the ledger.
    pub request_cost_ttl: String,
    /// Monthly budgets in USD (decimal strings) by tenant, `"*"` for all
    /// tenants together: `costplane_budget_monthly_usd`, which the
    /// `CostplaneBudgetThreshold` alert compares month-to-date cost with.
    pub budgets: std::collections::BTreeMap<String, String>,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            max_series_per_label: 100,
            max_label_value_bytes: 128,
            cache_ttl: "15s".into(),
            request_cost_ttl: "5m".into(),
            budgets: std::collections::BTreeMap::new(),
        }
    }
}

impl MetricsSection {
    pub fn cache_ttl(&self) -> Result<Duration, String> {
        parse_duration(&self.cache_ttl).map_err(|e| format!("metrics.cache_ttl: {e}"))
    }

    pub fn request_cost_ttl(&self) -> Result<Duration, String> {
        parse_duration(&self.request_cost_ttl).map_err(|e| format!("metrics.request_cost_ttl: {e}"))
    }

    fn validate(&self) -> Result<(), String> {
        if self.max_label_value_bytes == 0 {
            return Err("metrics.max_label_value_bytes must be at least 1".into());
        }
        for (scope, usd) in &self.budgets {
            match rust_decimal::Decimal::from_str_exact(usd) {
                Ok(d) if !d.is_sign_negative() => {}
                _ => return Err(format!("metrics.budgets.{scope}: {usd:?} is not a non-negative decimal amount")),
            }
        }
        self.request_cost_ttl()?;
        self.cache_ttl().map(|_| ())
    }
}

/// Parses "250ms", "5s", "2m", "1h".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("'{text}' is not a duration such as 500ms, 5s, 2m or 1h"))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("'{text}' is not a duration such as 500ms, 5s, 2m or 1h")),
    };
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_loads_and_equals_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/costplane.example.toml");
        let config = Config::load(Some(&path)).unwrap();
        // The example documents every key with its default value.
        assert_eq!(config, Config { source: Some(path), ..Config::default() });
    }

    #[test]
    fn billing_names_are_read_and_checked() {
        let config =
            Config::from_toml("[billing]\naccount_id = \"acct-1\"\naccount_name = \"\"\ninvoice_issuer = \"Platform team\"\n").unwrap();
        assert_eq!(config.billing.account_id, "acct-1");
        assert_eq!(config.billing.account_name, "");
        assert_eq!(config.billing.invoice_issuer, "Platform team");
        let err = Config::from_toml("[billing]\naccount_id = \" \"\n").unwrap_err();
        assert!(err.contains("billing.account_id"), "{err}");
        let err = Config::from_toml("[billing]\naccount = \"x\"\n").unwrap_err();
        assert!(err.contains("unknown field `account`"), "{err}");
    }

    #[test]
    fn the_example_with_its_api_keys_uncommented_still_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/costplane.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with("[[api.keys]]")
                        || rest.starts_with("key = ")
                        || rest.starts_with("tenant = ")
                        || rest.starts_with("role = ")
                        || rest.starts_with("[[ingest.keys]]")
                        || rest.starts_with("trust_provided_cost = ")
                        || rest.starts_with("project = ") =>
                {
                    rest
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config = Config::from_toml(&uncommented).unwrap();
        assert_eq!(config.api.keys.len(), 2);
        assert_eq!(config.ingest.keys.len(), 2);
        assert_eq!(config.ingest.keys[0].tenant, "acme");
        assert!(config.ingest.keys[1].trust_provided_cost);
        // Secrets never print.
        assert!(!format!("{config:?}").contains(config.ingest.keys[0].key.as_ref().unwrap().expose()));
        assert!(!format!("{config:?}").contains(config.api.keys[0].key.expose()));
        assert!(!config.api.allow_open_remote);
    }

    #[test]
    fn ingest_keys_come_from_files_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("acme.key");
        std::fs::write(&file, "acme-ingest-key-from-file\n").unwrap();
        std::env::set_var("COSTPLANE_TEST_GLOBEX_KEY", "globex-ingest-key-from-env");
        let text = format!(
            "[ingest]\ntenant_mode = \"require_match\"\n[[ingest.keys]]\nkey_file = {:?}\ntenant = \"acme\"\n\
             [[ingest.keys]]\nkey_env = \"COSTPLANE_TEST_GLOBEX_KEY\"\ntenant = \"globex\"\nproject = \"web\"\n",
            file.display().to_string()
        );
        let config = Config::from_toml(&text).unwrap();
        let keys = &config.ingest.keys;
        assert_eq!(keys[0].key.as_ref().unwrap().expose(), "acme-ingest-key-from-file");
        assert_eq!(keys[1].key.as_ref().unwrap().expose(), "globex-ingest-key-from-env");
        assert_eq!(config.ingest.tenant_mode, crate::otlp::keys::TenantMode::RequireMatch);
        let err = Config::from_toml("[[ingest.keys]]\nkey_env = \"COSTPLANE_TEST_NOT_SET\"\ntenant = \"a\"\n").unwrap_err();
        assert!(err.contains("not set"), "{err}");
        let err = Config::from_toml("[[ingest.keys]]\nkey = \"0123456789abcdef0\"\ntenant = \"a\"\ntenantt = 1\n").unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = Config::from_toml("[otlp]\ngrpc_adr = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(err.contains("unknown field `grpc_adr`"), "{err}");
    }

    #[test]
    fn layers_apply_in_order() {
        let mut config = Config::from_toml("data_dir = \"/from/file\"\n[pipeline]\nbatch_max_rows = 10\n").unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/from/file"));
        config
            .apply(Overrides { data_dir: Some("/from/flag".into()), flush_interval: Some("250ms".into()), ..Overrides::default() })
            .unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(config.pipeline.batch_max_rows, 10);
        assert_eq!(config.pipeline_config().unwrap().flush_interval, Duration::from_millis(250));
    }

    #[test]
    fn the_inflight_limit_is_read_and_checked() {
        let config = Config::from_toml("[otlp]\nmax_inflight_mib = 32\n").unwrap();
        assert_eq!(config.max_inflight_bytes(), 32 * MIB);
        let err = Config::from_toml("[otlp]\nmax_inflight_mib = 0\n").unwrap_err();
        assert!(err.contains("otlp.max_inflight_mib must be at least 1"), "{err}");
        // Attribute lists keep 32-bit offsets: bodies stay far below 4 GiB.
        assert!(Config::from_toml("[otlp]\nmax_body_mib = 256\n").is_ok());
        let err = Config::from_toml("[otlp]\nmax_body_mib = 257\n").unwrap_err();
        assert!(err.contains("otlp.max_body_mib must be between 1 and 256, got 257"), "{err}");
    }

    #[test]
    fn clickhouse_retention_stays_inside_32_bit_expiry() {
        assert!(Config::from_toml("[clickhouse]\ntraces_ttl_days = 2200\n").is_ok());
        let err = Config::from_toml("[clickhouse]\nlogs_ttl_days = 3650\n").unwrap_err();
        assert!(err.contains("clickhouse.logs_ttl_days = 3650: at most 2200") && err.contains("use 0 to keep logs forever"), "{err}");
    }

    #[test]
    fn bad_durations_say_what_is_expected() {
        let err = Config::from_toml("[pipeline]\nflush_interval = \"soon\"\n").unwrap_err();
        assert!(err.contains("pipeline.flush_interval") && err.contains("500ms"), "{err}");
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    }
}
