//! DuckDB DDL for the OpenTelemetry ClickHouse exporter's tables.
//!
//! The telemetry tables' columns are derived from `crate::tables` (their one
//! description) and the ledger's from `crate::ledger::table`; the usage and
//! state tables are written out here, step by step, because their
//! migrations are versioned.
//!
//! Names match the exporter column for column; types are DuckDB's closest:
//! `DateTime64(9)` → `TIMESTAMP_NS`, `Map(LowCardinality(String), String)` →
//! `MAP(VARCHAR, VARCHAR)`, `Nested(...)` → a list of structs (`Events[1].Name`),
//! `Array(T)` → `T[]`. Column order matters: the writer appends Arrow record
//! batches by position (see `arrow.rs`).

/// The schema version this binary writes. Bump it with every change below
/// and add the step to `MIGRATIONS`.
pub const SCHEMA_VERSION: i32 = 9;

/// Steps from version N-1 to N, applied in one transaction each.
pub fn migrations() -> Vec<(i32, String)> {
    vec![
        (1, initial_schema()),
        (2, cost_tables()),
        (3, HOURLY_LEDGER.to_owned()),
        (4, record_tables()),
        (5, kubernetes_v5()),
        (6, WRITE_SEQ_V6.to_owned()),
        (7, kubernetes_usage_table("costplane_usage_k8s_samples")),
        (8, CACHE_WRITE_1H_V8.to_owned()),
        (9, EVENT_DAY_V9.to_owned()),
    ]
}

// ---- Step 8 -> 9: the event day of telemetry usage ------------------------
/// The UTC day of the items' own time: the day partition that keeps them,
/// whose storage is charged to whoever sent that day's data. Rows from
/// before read their receive day (what storage was shared by until then).
const EVENT_DAY_V9: &str = r#"
ALTER TABLE costplane_usage_telemetry ADD COLUMN IF NOT EXISTS "EventDay" TIMESTAMP_NS;
UPDATE costplane_usage_telemetry SET "EventDay" = date_trunc('day', "Hour") WHERE "EventDay" IS NULL;
"#;
// ---- end of step 8 -> 9 ---------------------------------------------------

// ---- Step 7 -> 8: 1-hour cache writes -------------------------------------
/// Of an LLM call's cache writes, those kept for an hour (billed at their
/// own rate). Rows from before read 0: all their writes are 5-minute ones.
const CACHE_WRITE_1H_V8: &str = r#"
ALTER TABLE costplane_usage_llm ADD COLUMN IF NOT EXISTS "CacheWrite1hTokens" UBIGINT DEFAULT 0;
"#;
// ---- end of step 7 -> 8 ---------------------------------------------------

// ---- Step 6 -> 7: Kubernetes samples as received ---------------------------
// Every accepted Kubernetes sample, written with its request in the shape
// of `costplane_usage_kubernetes` (see `costplane_ledger::UsageRows`): what
// a restarted meter is rebuilt from. Pruned after a day.
// ---- end of step 6 -> 7 ---------------------------------------------------

// ---- Step 5 -> 6: write numbers of usage rows ------------------------------
/// Each usage row's write number (`crate::write_seq`): the closer reads the
/// usage stored since it last looked. Rows from before read 0.
const WRITE_SEQ_V6: &str = r#"
ALTER TABLE costplane_usage_telemetry ADD COLUMN IF NOT EXISTS "WriteSeq" UBIGINT DEFAULT 0;
ALTER TABLE costplane_usage_llm ADD COLUMN IF NOT EXISTS "WriteSeq" UBIGINT DEFAULT 0;
"#;
// ---- end of step 5 -> 6 ---------------------------------------------------

// ---- Step 4 -> 5: Kubernetes and cloud bills ------------------------------
/// A table of Kubernetes usage rows (`costplane_ledger::KubernetesUsage`):
/// the meter's hours (`costplane_usage_kubernetes`, one row per entity and
/// hour per write) and, since step 7, the samples they are made from.
fn kubernetes_usage_table(name: &str) -> String {
    format!(
        r#"
CREATE TABLE IF NOT EXISTS {name} (
    "Hour" TIMESTAMP_NS,
    "WrittenAt" TIMESTAMP_NS,
    "Cluster" VARCHAR,
    "Kind" VARCHAR,
    "Payload" VARCHAR
);
"#
    )
}

/// Ledger columns of Kubernetes and imported cloud rows, added at the
/// table's end (existing rows read ''), and the Kubernetes usage table.
fn kubernetes_v5() -> String {
    let mut s = crate::ledger::table::duckdb_added(crate::ledger::table::KUBERNETES_VERSION);
    s.push_str(&kubernetes_usage_table("costplane_usage_kubernetes"));
    s
}
// ---- end of step 4 -> 5 ---------------------------------------------------

/// Version 3: the hourly ledger. LLM usage keeps its receive time, booking
/// hour, call kind and invalid reason; ledger rows carry their hour's
/// revision and charge status; `costplane_ledger_hours` names each
/// (hour, scope)'s current revision. Ledger rows of version 2 are dropped:
/// the closer books every hour again from the stored usage (hours before
/// `ledger.lookback`: `costplane reprice --from .. --to ..`).
const HOURLY_LEDGER: &str = r#"
ALTER TABLE costplane_usage_llm ADD COLUMN IF NOT EXISTS "ReceivedAt" TIMESTAMP_NS;
ALTER TABLE costplane_usage_llm ADD COLUMN IF NOT EXISTS "Hour" TIMESTAMP_NS;
ALTER TABLE costplane_usage_llm ADD COLUMN IF NOT EXISTS "CallKind" VARCHAR;
ALTER TABLE costplane_usage_llm ADD COLUMN IF NOT EXISTS "InvalidReason" VARCHAR;
UPDATE costplane_usage_llm SET "ReceivedAt" = "Timestamp", "Hour" = date_trunc('hour', "Timestamp"), "CallKind" = 'model', "InvalidReason" = '' WHERE "Hour" IS NULL;
ALTER TABLE costplane_ledger ADD COLUMN IF NOT EXISTS "x_ChargeStatus" VARCHAR;
ALTER TABLE costplane_ledger ADD COLUMN IF NOT EXISTS "x_Revision" UBIGINT;
ALTER TABLE costplane_ledger ADD COLUMN IF NOT EXISTS "x_AllocationRatio" DECIMAL(38, 12);
ALTER TABLE costplane_ledger ADD COLUMN IF NOT EXISTS "x_AllocationMethod" VARCHAR;
DELETE FROM costplane_ledger WHERE "x_Revision" IS NULL;
CREATE TABLE IF NOT EXISTS costplane_ledger_hours (
    "Hour" TIMESTAMP_NS,
    "Scope" VARCHAR,
    "Revision" UBIGINT,
    "Status" VARCHAR,
    "UsageRows" UBIGINT,
    "PriceVersion" VARCHAR
);
"#;

/// Usage facts and the FOCUS-aligned cost ledger. Money is DECIMAL(38, 12).
/// The ledger's columns come from their one description
/// (`crate::ledger::table`).
fn cost_tables() -> String {
    let mut s = String::from(USAGE_TABLES_V2);
    s.push_str(&crate::ledger::table::duckdb_create());
    s.push_str(LEDGER_HOURS_V2);
    s
}

const USAGE_TABLES_V2: &str = r#"
CREATE TABLE IF NOT EXISTS costplane_usage_telemetry (
    "Hour" TIMESTAMP_NS,
    "Tenant" VARCHAR,
    "Project" VARCHAR,
    "Service" VARCHAR,
    "Signal" VARCHAR,
    "Items" UBIGINT,
    "Bytes" UBIGINT
);
CREATE TABLE IF NOT EXISTS costplane_usage_llm (
    "Timestamp" TIMESTAMP_NS,
    "Tenant" VARCHAR,
    "Project" VARCHAR,
    "Service" VARCHAR,
    "TraceId" VARCHAR,
    "SpanId" VARCHAR,
    "Provider" VARCHAR,
    "Model" VARCHAR,
    "Operation" VARCHAR,
    "InputTokens" UBIGINT,
    "OutputTokens" UBIGINT,
    "CacheReadTokens" UBIGINT,
    "CacheWriteTokens" UBIGINT,
    "ReasoningTokens" UBIGINT,
    "ProvidedCost" DECIMAL(38, 12),
    "ReceivedAt" TIMESTAMP_NS,
    "Hour" TIMESTAMP_NS,
    "CallKind" VARCHAR,
    "InvalidReason" VARCHAR
);
"#;

const LEDGER_HOURS_V2: &str = r#"CREATE TABLE IF NOT EXISTS costplane_ledger_hours (
    "Hour" TIMESTAMP_NS,
    "Scope" VARCHAR,
    "Revision" UBIGINT,
    "Status" VARCHAR,
    "UsageRows" UBIGINT,
    "PriceVersion" VARCHAR
);
"#;

/// The keyed state tables (`records.rs`): budgets, notifications sent,
/// anomalies, detection progress.
fn record_tables() -> String {
    crate::RecordTable::ALL
        .iter()
        .map(|t| {
            format!(
                "CREATE TABLE IF NOT EXISTS {} (\"Key\" VARCHAR PRIMARY KEY, \"Body\" VARCHAR, \"UpdatedNs\" BIGINT, \"Deleted\" BOOLEAN);\n",
                t.name()
            )
        })
        .collect()
}

/// Version 1: the batch ids written, and the telemetry tables (today the
/// Parquet segments' views hold the rows; these tables are what stores
/// created before the segments have), with the columns `crate::tables`
/// describes.
fn initial_schema() -> String {
    let mut s = String::from(
        r#"
CREATE TABLE IF NOT EXISTS costplane_written_batches (
    "BatchId" UBIGINT PRIMARY KEY,
    "WrittenAtNs" BIGINT
);
"#,
    );
    for table in crate::tables::telemetry_tables() {
        s.push_str(&table.duckdb_create());
    }
    s
}
