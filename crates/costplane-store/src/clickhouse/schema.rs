//! ClickHouse DDL: the OpenTelemetry Collector ClickHouse exporter's tables,
//! column for column, plus what the exporter lacks for production use.
//!
//! - Column names and types match the exporter (v0.151+), so HyperDX/ClickStack
//!   and Grafana's ClickHouse plugin (OTel mode) read the tables unchanged;
//!   `otel_logs` also has `TimestampTime` as an ALIAS for older plugin versions.
//! - `PARTITION BY toDate(...)`, ORDER BY keys for the queries that run
//!   (service, name, time), bloom-filter skip indexes on TraceId and on
//!   attribute keys and values, Delta/ZSTD codecs, a TTL per signal with
//!   `ttl_only_drop_parts`, and an optional hot/cold storage policy.
//! - Cluster mode: `ON CLUSTER`, `ReplicatedMergeTree` tables named `*_local`
//!   and `Distributed` tables with the exporter's names over them, sharded by
//!   deterministic keys so a retried insert splits the same way.
//! - Every non-replicated table keeps a deduplication window, so a retried
//!   insert with the same `insert_deduplication_token` adds nothing.
//!
//! The telemetry tables' columns, codecs, skip indexes and keys come from
//! their one description (`crate::tables`); only the cost, usage and state
//! tables, which have versioned upgrades, are written out here.

use std::fmt::Write as _;

use super::partition::Granularity;
use crate::tables::Signal;

#[cfg(test)]
#[path = "column_order.rs"]
mod column_order;

/// The schema version this binary creates; recorded in
/// `costplane_schema_migrations`.
pub const SCHEMA_VERSION: u32 = 9;

/// What shapes the DDL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaOptions {
    pub database: String,
    pub cluster: Option<String>,
    /// Days to keep each signal; 0 keeps forever.
    pub traces_ttl_days: u32,
    pub logs_ttl_days: u32,
    pub metrics_ttl_days: u32,
    /// A storage policy with a cold volume: parts move there after
    /// `cold_after_days`.
    pub storage_policy: Option<String>,
    pub cold_volume: Option<String>,
    pub cold_after_days: u32,
}

impl Default for SchemaOptions {
    fn default() -> Self {
        SchemaOptions {
            database: "otel".into(),
            cluster: None,
            traces_ttl_days: 7,
            logs_ttl_days: 30,
            metrics_ttl_days: 365,
            storage_policy: None,
            cold_volume: None,
            cold_after_days: 0,
        }
    }
}

/// Quotes an identifier with backticks.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

/// Quotes a string literal.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Columns schema version 3 added to version 2's cost tables.
const V3_COLUMNS: [&str; 8] =
    ["ReceivedAt", "CallKind", "InvalidReason", "x_ChargeStatus", "x_Revision", "x_AllocationRatio", "x_AllocationMethod", "Hour"];

// Step 3 -> 4 only adds the keyed state tables: see `state_tables`.

// ---- Step 4 -> 5: Kubernetes and cloud bills -------------------------------
// Ledger columns of Kubernetes and imported cloud rows (schema version 5)
// are at the ledger's end (`crate::ledger::table`, since 5); the Kubernetes
// usage table is created with the other cost tables.
// ---- end of step 4 -> 5 ----------------------------------------------------

/// Usage rows' write numbers (schema version 6, `crate::write_seq`): the
/// closer reads the usage stored since it last looked. Rows from before
/// read 0.
/// Columns of a table of Kubernetes usage rows (`KubernetesUsage`): the
/// meter's hours and the samples they are made from.
const KUBERNETES_USAGE_COLUMNS: &str = "    Hour DateTime64(9),
    WrittenAt DateTime64(9),
    Cluster LowCardinality(String),
    Kind LowCardinality(String),
    Payload String CODEC(ZSTD(1))";

const V6_COLUMNS: [&str; 1] = ["WriteSeq"];

// Step 6 -> 7 only adds the Kubernetes samples table, created with the
// other cost tables.

/// Of an LLM call's cache writes, those kept for an hour (schema version
/// 8). Rows from before read 0: all their writes are 5-minute ones.
const V8_COLUMNS: [&str; 1] = ["CacheWrite1hTokens"];

/// The UTC day of telemetry usage's own time, the day partition that keeps
/// it (schema version 9): storage is charged by it. Rows from before read
/// their receive day.
const V9_COLUMNS: [&str; 1] = ["EventDay"];

/// (table, columns, time column partitioned by month, ORDER BY, shard key)
/// of the cost tables.
fn cost_tables() -> [(&'static str, String, &'static str, &'static str, &'static str); 6] {
    [
        (
            "costplane_usage_telemetry",
            "    Hour DateTime64(9) CODEC(Delta, ZSTD(1)),
    Tenant LowCardinality(String),
    Project LowCardinality(String),
    Service LowCardinality(String),
    Signal LowCardinality(String),
    Items UInt64,
    Bytes UInt64,
    WriteSeq UInt64,
    EventDay DateTime64(9),
    INDEX idx_write_seq WriteSeq TYPE minmax GRANULARITY 1"
                .to_owned(),
            "Hour",
            "(Tenant, Hour, Project, Service, Signal)",
            "cityHash64(Tenant)",
        ),
        (
            "costplane_usage_llm",
            "    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    Tenant LowCardinality(String),
    Project LowCardinality(String),
    Service LowCardinality(String),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    Provider LowCardinality(String),
    Model LowCardinality(String),
    Operation LowCardinality(String),
    InputTokens UInt64,
    OutputTokens UInt64,
    CacheReadTokens UInt64,
    CacheWriteTokens UInt64,
    ReasoningTokens UInt64,
    ProvidedCost Nullable(Decimal(38, 12)),
    ReceivedAt DateTime64(9),
    Hour DateTime64(9),
    CallKind LowCardinality(String),
    InvalidReason String,
    WriteSeq UInt64,
    CacheWrite1hTokens UInt64,
    INDEX idx_write_seq WriteSeq TYPE minmax GRANULARITY 1"
                .to_owned(),
            "Hour",
            "(Hour, Tenant, Model)",
            "cityHash64(Tenant)",
        ),
        (
            // Schema version 5: the Kubernetes meter's usage (one row per
            // entity, hour and write; see `KubernetesUsage`).
            "costplane_usage_kubernetes",
            KUBERNETES_USAGE_COLUMNS.to_owned(),
            "Hour",
            "(Hour, Cluster, WrittenAt, Kind)",
            "cityHash64(Hour)",
        ),
        (
            // Schema version 7: every accepted Kubernetes sample, written
            // with its request; what a restarted meter is rebuilt from.
            "costplane_usage_k8s_samples",
            KUBERNETES_USAGE_COLUMNS.to_owned(),
            "Hour",
            "(Hour, Cluster, WrittenAt)",
            "cityHash64(Hour)",
        ),
        (
            "costplane_ledger",
            // The ledger's columns come from their one description.
            crate::ledger::table::clickhouse_columns(),
            "ChargePeriodStart",
            "(x_Tenant, ChargePeriodStart, x_Source, x_Project, x_Service)",
            "cityHash64(x_Tenant)",
        ),
        (
            // The current revision of each (hour, scope) of the ledger: the
            // row with the largest Revision. Inserting it is the switch that
            // makes a new revision's rows visible (see `ledger.rs`).
            "costplane_ledger_hours",
            "    Hour DateTime64(9),
    Scope LowCardinality(String),
    Revision UInt64,
    Status LowCardinality(String),
    UsageRows UInt64,
    PriceVersion String"
                .to_owned(),
            "Hour",
            "(Hour, Scope, Revision)",
            "cityHash64(Hour)",
        ),
    ]
}

/// The column definitions (what `CREATE TABLE (...)` lists), the column
/// `PARTITION BY` reads and its granularity, of a table costplane writes:
/// the inserts' partition split and the schema check read them from here.
pub(crate) fn layout(table: &str) -> Option<(String, &'static str, Granularity)> {
    let telemetry = table_specs(&SchemaOptions::default()).into_iter().map(|s| (s.name, s.columns, s.time_column, s.granularity));
    let cost = cost_tables().into_iter().map(|(name, columns, time_column, ..)| (name, columns, time_column, Granularity::Month));
    telemetry.chain(cost).find(|t| t.0 == table).map(|(_, columns, time_column, granularity)| (columns, time_column, granularity))
}

struct TableSpec {
    name: &'static str,
    columns: String,
    /// `PARTITION BY` this column at this granularity.
    time_column: &'static str,
    granularity: Granularity,
    order: &'static str,
    ttl_column: &'static str,
    ttl_days: u32,
    shard_key: &'static str,
}

/// The telemetry tables' DDL parts, from their one description (`crate::tables`).
fn table_specs(o: &SchemaOptions) -> Vec<TableSpec> {
    crate::tables::telemetry_tables()
        .iter()
        .map(|t| TableSpec {
            name: t.name,
            columns: t.clickhouse_columns(),
            time_column: t.time_column,
            granularity: Granularity::Day,
            order: t.order_by,
            ttl_column: t.ttl_column,
            ttl_days: match t.signal {
                Signal::Traces => o.traces_ttl_days,
                Signal::Logs => o.logs_ttl_days,
                Signal::Metrics => o.metrics_ttl_days,
            },
            shard_key: t.shard_key,
        })
        .collect()
}

impl SchemaOptions {
    fn on_cluster(&self) -> String {
        self.cluster.as_deref().map(|c| format!(" ON CLUSTER {}", ident(c))).unwrap_or_default()
    }

    /// The table name inserts and queries use (the Distributed table in
    /// cluster mode).
    pub fn qualified(&self, table: &str) -> String {
        format!("{}.{}", ident(&self.database), ident(table))
    }

    fn storage_table(&self, table: &str) -> String {
        if self.cluster.is_some() {
            format!("{table}_local")
        } else {
            table.to_owned()
        }
    }

    fn engine(&self, table: &str) -> String {
        match &self.cluster {
            Some(_) => {
                format!("ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{}/{}', '{{replica}}')", self.database.replace('\'', ""), table)
            }
            None => "MergeTree".to_owned(),
        }
    }

    fn settings(&self) -> String {
        let mut s = "index_granularity = 8192, ttl_only_drop_parts = 1".to_owned();
        if self.cluster.is_none() {
            // Plain MergeTree deduplicates inserts only within this window.
            s.push_str(", non_replicated_deduplication_window = 1000");
        }
        if let Some(policy) = &self.storage_policy {
            let _ = write!(s, ", storage_policy = {}", literal(policy));
        }
        s
    }

    fn ttl(&self, column: &str, days: u32) -> String {
        let mut parts = Vec::new();
        if let (Some(volume), true) = (&self.cold_volume, self.cold_after_days > 0) {
            parts.push(format!("{column} + toIntervalDay({}) TO VOLUME {}", self.cold_after_days, literal(volume)));
        }
        if days > 0 {
            parts.push(format!("{column} + toIntervalDay({days})"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("TTL {}\n", parts.join(", "))
        }
    }

    /// Schema version 4: the keyed state tables (`records.rs`: budgets,
    /// notifications sent, anomalies, detection progress), where the newest
    /// version of a key wins. New tables only, so a version 3 database
    /// upgrades by creating them (`IF NOT EXISTS`: a no-op later).
    fn state_tables(&self, oc: &str) -> Vec<String> {
        let mut out = Vec::new();
        for table in crate::RecordTable::ALL.map(crate::RecordTable::name) {
            let storage = self.storage_table(table);
            let engine = match &self.cluster {
                Some(_) => format!(
                    "ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/{}/{storage}', '{{replica}}', UpdatedNs)",
                    self.database.replace('\'', "")
                ),
                None => "ReplacingMergeTree(UpdatedNs)".to_owned(),
            };
            out.push(format!(
            "CREATE TABLE IF NOT EXISTS {}{oc} (\n    Key String,\n    Body String,\n    UpdatedNs Int64,\n    Deleted UInt8\n) ENGINE = {engine}\nORDER BY Key",
            self.qualified(&storage)
        ));
            if let Some(cluster) = &self.cluster {
                out.push(format!(
                    "CREATE TABLE IF NOT EXISTS {}{oc} AS {}\nENGINE = Distributed({}, {}, {}, cityHash64(Key))",
                    self.qualified(table),
                    self.qualified(&storage),
                    literal(cluster),
                    literal(&self.database),
                    literal(&storage)
                ));
            }
        }
        out
    }

    /// Every DDL statement, in order, each idempotent (`IF NOT EXISTS`).
    pub fn statements(&self) -> Vec<String> {
        let db = ident(&self.database);
        let oc = self.on_cluster();
        let mut out = vec![format!("CREATE DATABASE IF NOT EXISTS {db}{oc}")];
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {}{oc} (\n    version UInt32,\n    applied_at DateTime DEFAULT now()\n) ENGINE = {}\nORDER BY version",
            self.qualified("costplane_schema_migrations"),
            self.engine("costplane_schema_migrations")
        ));
        for spec in table_specs(self) {
            let storage = self.storage_table(spec.name);
            out.push(format!(
                "CREATE TABLE IF NOT EXISTS {}{oc} (\n{}\n) ENGINE = {}\nPARTITION BY {}\nORDER BY {}\n{}SETTINGS {}",
                self.qualified(&storage),
                spec.columns,
                self.engine(&storage),
                spec.granularity.expression(spec.time_column),
                spec.order,
                self.ttl(spec.ttl_column, spec.ttl_days),
                self.settings()
            ));
            if let Some(cluster) = &self.cluster {
                out.push(format!(
                    "CREATE TABLE IF NOT EXISTS {}{oc} AS {}\nENGINE = Distributed({}, {}, {}, {})",
                    self.qualified(spec.name),
                    self.qualified(&storage),
                    literal(cluster),
                    literal(&self.database),
                    literal(&storage),
                    spec.shard_key
                ));
            }
        }
        // Usage facts and the cost ledger: kept (no TTL), by month.
        let v5: Vec<&str> = crate::ledger::table::added_in(crate::ledger::table::KUBERNETES_VERSION).collect();
        for (name, columns, time_column, order, shard) in cost_tables() {
            let storage = self.storage_table(name);
            let settings = self.settings();
            // The revision table is one partition: inserting a revision
            // switch is then one part, all hours of it at once.
            let partition =
                if name == "costplane_ledger_hours" { "tuple()".to_owned() } else { Granularity::Month.expression(time_column) };
            // Samples are needed only until their hours are closed and
            // stored (a restarted meter reads the last few hours).
            let ttl = if name == "costplane_usage_k8s_samples" { "\nTTL toDateTime(Hour) + INTERVAL 1 DAY" } else { "" };
            out.push(format!(
                "CREATE TABLE IF NOT EXISTS {}{oc} (\n{columns}\n) ENGINE = {}\nPARTITION BY {partition}\nORDER BY {order}{ttl}\nSETTINGS {}",
                self.qualified(&storage),
                self.engine(&storage),
                settings.replace(", ttl_only_drop_parts = 1", "")
            ));
            if let Some(cluster) = &self.cluster {
                out.push(format!(
                    "CREATE TABLE IF NOT EXISTS {}{oc} AS {}\nENGINE = Distributed({}, {}, {}, {shard})",
                    self.qualified(name),
                    self.qualified(&storage),
                    literal(cluster),
                    literal(&self.database),
                    literal(&storage),
                ));
            }
            // Upgrades from schema versions 2, 4, 5, 7 and 8: the columns
            // versions 3, 5, 6, 8 and 9 added (no-ops on tables created above
            // with them).
            for column in columns
                .lines()
                .filter(|l| {
                    V3_COLUMNS
                        .iter()
                        .chain(v5.iter())
                        .chain(V6_COLUMNS.iter())
                        .chain(V8_COLUMNS.iter())
                        .chain(V9_COLUMNS.iter())
                        .any(|c| l.trim_start().starts_with(&format!("{c} ")))
                })
                .filter(|l| !l.trim_start().starts_with("Hour ") || name == "costplane_usage_llm")
            {
                let column = column.trim().trim_end_matches(',');
                // Rows of version 2 read these from what they have: LLM
                // calls are booked at their own hour and are model calls.
                let default = match column.split(' ').next().unwrap_or_default() {
                    "Hour" => " DEFAULT toStartOfHour(Timestamp)",
                    "ReceivedAt" => " DEFAULT Timestamp",
                    "CallKind" => " DEFAULT 'model'",
                    "EventDay" => " DEFAULT toStartOfDay(Hour, 'UTC')",
                    _ => "",
                };
                let column = format!("{column}{default}");
                for table in [Some(storage.clone()), self.cluster.as_ref().map(|_| name.to_owned())].into_iter().flatten() {
                    out.push(format!("ALTER TABLE {}{oc} ADD COLUMN IF NOT EXISTS {column}", self.qualified(&table)));
                }
            }
        }
        out.extend(self.state_tables(&oc));
        // Trace-id lookups: first and last timestamp per trace, kept by a
        // materialized view, so "find this trace" reads a small table.
        let lookup = self.storage_table("otel_traces_trace_id_ts");
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {}{oc} (\n    TraceId String CODEC(ZSTD(1)),\n    Start DateTime CODEC(Delta, ZSTD(1)),\n    End DateTime CODEC(Delta, ZSTD(1)),\n    INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1\n) ENGINE = {}\nPARTITION BY toDate(Start)\nORDER BY (TraceId, Start)\n{}SETTINGS {}",
            self.qualified(&lookup),
            self.engine(&lookup),
            self.ttl("Start", self.traces_ttl_days),
            self.settings()
        ));
        if let Some(cluster) = &self.cluster {
            out.push(format!(
                "CREATE TABLE IF NOT EXISTS {}{oc} AS {}\nENGINE = Distributed({}, {}, {}, cityHash64(TraceId))",
                self.qualified("otel_traces_trace_id_ts"),
                self.qualified(&lookup),
                literal(cluster),
                literal(&self.database),
                literal(&lookup)
            ));
        }
        out.push(format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {}{oc} TO {}\nAS SELECT\n    TraceId,\n    min(Timestamp) AS Start,\n    max(Timestamp) AS End\nFROM {}\nWHERE TraceId != ''\nGROUP BY TraceId",
            self.qualified("otel_traces_trace_id_ts_mv"),
            self.qualified(&lookup),
            self.qualified(&self.storage_table("otel_traces"))
        ));
        out
    }

    /// The DDL as one script, for `costplane schema print`.
    pub fn script(&self) -> String {
        let mut s = format!("-- costplane ClickHouse schema, version {SCHEMA_VERSION}\n\n");
        for stmt in self.statements() {
            s.push_str(&stmt);
            s.push_str(";\n\n");
        }
        let _ = writeln!(s, "INSERT INTO {} (version) VALUES ({SCHEMA_VERSION});", self.qualified("costplane_schema_migrations"));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_node_ddl_has_ttl_indexes_codecs_and_dedup_window() {
        let ddl = SchemaOptions::default().statements().join(";\n");
        assert!(ddl.contains("TTL toDateTime(Timestamp) + toIntervalDay(7)"));
        assert!(ddl.contains("TTL toDateTime(TimeUnix) + toIntervalDay(365)"));
        assert!(ddl.contains("INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1"));
        assert!(ddl.contains("Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1))"));
        assert!(ddl.contains("non_replicated_deduplication_window = 1000"));
        assert!(ddl.contains("TimestampTime DateTime ALIAS toDateTime(Timestamp)"));
        assert!(!ddl.contains("ON CLUSTER"));
        assert!(!ddl.contains("Distributed"));
    }

    #[test]
    fn ttl_zero_means_keep_and_cold_volume_moves_parts() {
        let o = SchemaOptions {
            logs_ttl_days: 0,
            storage_policy: Some("hot_cold".into()),
            cold_volume: Some("cold".into()),
            cold_after_days: 3,
            ..SchemaOptions::default()
        };
        let logs = o.statements().into_iter().find(|s| s.contains("`otel_logs`")).unwrap();
        assert!(logs.contains("TTL toDateTime(Timestamp) + toIntervalDay(3) TO VOLUME 'cold'\n"), "{logs}");
        assert!(logs.contains("storage_policy = 'hot_cold'"));
    }

    #[test]
    fn identifiers_and_literals_are_escaped() {
        assert_eq!(ident("we`ird"), "`we\\`ird`");
        assert_eq!(literal("it's"), "'it\\'s'");
    }
}
