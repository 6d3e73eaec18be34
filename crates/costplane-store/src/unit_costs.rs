//! Cost per request: what the store answers for `GET /api/v1/unit-costs`
//! and `GET /api/v1/traces/{id}/cost`. The money is made from these rows in
//! `costplane_cost::unit` (pure); this module only reads.
//!
//! # What a request is
//! A span with `SpanKind = 'Server'`, or a root span (no parent) of a
//! (tenant, service) that has no server spans in the window. Its tenant is
//! the resource attribute the meter reads (`unassigned` when missing or
//! empty), its route `http.route`, then `rpc.method`, then the span name,
//! its customer the configured span attribute on the request span, else the
//! smallest non-empty value of it on any span of the same trace in the
//! window (the root, an LLM span, a span that got it from baggage), else
//! `(none)`.
//!
//! # Invariants
//! - Every read of spans, logs, usage and the ledger is bounded by the
//!   query's window (LLM usage by one hour more on each side: the calls of a
//!   request that starts at 10:59 may end after 11:00). Bounds are literals
//!   made from validated integers, so DuckDB prunes the days of its
//!   partition views; user text is only ever a bound parameter.
//! - A group's rows never mix tenants' money: a request's LLM calls are
//!   those of its own trace *and* tenant, its telemetry items are counted
//!   per (tenant, service) of the span or log, and Kubernetes cost is read
//!   only for the tenant asked for, when one is.
//! - Copies of an LLM span are billed once (the closer's rule: first
//!   received, then [`crate::ledger::COPY_ORDER`]); a roll-up span (agent,
//!   chain, ...) counts only in a trace without model-call usage.
//! - Percentiles are exact and the same on both stores: the lower nearest
//!   rank (`quantile_disc` on DuckDB, `quantileExactLow` on ClickHouse).

use rust_decimal::Decimal;
use serde_json::Value;

use crate::cost_views::current_rows_sql;
use crate::ledger::{decimal, text, COPY_ORDER};
use crate::{Dialect, Param, Params, Store, StoreError};

/// One hour in nanoseconds.
const HOUR_NS: i64 = 3_600_000_000_000;

/// A dimension requests are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UnitDim {
    Tenant,
    Service,
    Route,
    Operation,
    Customer,
}

impl UnitDim {
    pub const ALL: [UnitDim; 5] = [UnitDim::Tenant, UnitDim::Service, UnitDim::Route, UnitDim::Operation, UnitDim::Customer];

    pub fn name(self) -> &'static str {
        match self {
            UnitDim::Tenant => "tenant",
            UnitDim::Service => "service",
            UnitDim::Route => "route",
            UnitDim::Operation => "operation",
            UnitDim::Customer => "customer",
        }
    }

    pub fn parse(s: &str) -> Option<UnitDim> {
        UnitDim::ALL.into_iter().find(|d| d.name() == s)
    }

    /// The column of the `grouped` relation holding this dimension.
    fn column(self) -> &'static str {
        match self {
            UnitDim::Tenant => "tenant",
            UnitDim::Service => "service",
            UnitDim::Route => "route",
            UnitDim::Operation => "operation",
            UnitDim::Customer => "customer",
        }
    }
}

/// What to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitQuery {
    /// Window `[from, to)`, whole hours (the caller aligns them).
    pub from_ns: i64,
    pub to_ns: i64,
    /// Only this tenant's requests and money.
    pub tenant: Option<String>,
    pub group_by: Vec<UnitDim>,
    /// Only the requests of this trace (the trace cost).
    pub trace_id: Option<String>,
    /// The resource attribute naming a tenant (`cost.tenant_attribute`).
    pub tenant_attribute: String,
    /// The span attribute naming a customer (`unit_costs.customer_attribute`).
    pub customer_attribute: String,
    /// Every input-token count above which some price tier starts, sorted:
    /// calls are summed per tier bucket so each sum prices at one tier.
    pub tier_thresholds: Vec<u64>,
    /// `Limits::max_tokens_per_call` of the catalog.
    pub max_tokens_per_call: u64,
}

/// Requests of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestGroup {
    pub key: Vec<String>,
    pub requests: u64,
    pub errors: u64,
    pub p50_ns: u64,
    pub p95_ns: u64,
    /// Distinct traces of the group's requests.
    pub traces: u64,
}

/// LLM calls of one group that price alike: one provider, model,
/// operation, day, validity and tier bucket. Token counts are the sums of
/// each call's parts as the pricing splits them (uncached input, cache
/// reads, cache writes, non-reasoning output, reasoning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSum {
    pub key: Vec<String>,
    pub provider: String,
    pub model: String,
    pub operation: String,
    pub day_ns: i64,
    /// The reason stored with the calls, when they were booked invalid.
    pub invalid_reason: String,
    /// The calls are above the catalog's per-call token limit.
    pub over_limit: bool,
    /// The sum of the calls' own costs, when they carried one.
    pub provided: Option<Decimal>,
    pub calls: u64,
    pub input: Decimal,
    pub cache_read: Decimal,
    pub cache_write: Decimal,
    pub output: Decimal,
    pub reasoning: Decimal,
    /// The smallest input-token count of the calls: every call of the sum
    /// is in the same tier bucket, so this count selects their tier.
    pub tier_input: u64,
}

/// A group's requests on one pod-hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodShare {
    pub key: Vec<String>,
    /// `namespace/pod` (empty: the requests carry no pod attribute).
    pub pod: String,
    pub hour_ns: i64,
    pub requests: u64,
    /// Summed duration of the group's requests on the pod-hour.
    pub busy_ns: Decimal,
    /// Summed duration of every request the pod served in the hour.
    pub pod_busy_ns: Decimal,
    /// The pod-hour's Kubernetes cost, when the ledger has one.
    pub cost: Option<Decimal>,
}

/// Spans or logs of a group's traces, per (tenant, service, signal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceItems {
    pub key: Vec<String>,
    pub tenant: String,
    pub service: String,
    /// `traces` or `logs`.
    pub signal: String,
    pub items: u64,
}

/// What a (tenant, service, signal)'s telemetry cost in the window, and how
/// many items it was, from the ledger and the usage it was priced from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemCost {
    pub tenant: String,
    pub service: String,
    pub signal: String,
    pub items: u64,
    /// Ingest plus storage cost of the signal in the window.
    pub cost: Decimal,
}

/// One LLM call of a trace, as stored (copies merged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceCall {
    pub timestamp_ns: i64,
    pub tenant: String,
    pub service: String,
    pub span_id: String,
    pub kind: String,
    pub provider: String,
    pub model: String,
    pub operation: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    pub provided_cost: Option<Decimal>,
    pub invalid_reason: String,
}

/// A timestamp literal of `ns` (an integer, never user text).
fn at(dialect: Dialect, ns: i64) -> String {
    let t = chrono::DateTime::from_timestamp_nanos(ns).format("%Y-%m-%d %H:%M:%S%.9f");
    match dialect {
        Dialect::DuckDb => format!("TIMESTAMP_NS '{t}'"),
        Dialect::ClickHouse => format!("toDateTime64('{t}', 9, 'UTC')"),
    }
}

fn between(dialect: Dialect, column: &str, from: i64, to: i64) -> String {
    format!("{column} >= {} AND {column} < {}", at(dialect, from), at(dialect, to))
}

fn quantile(dialect: Dialect, q: &str) -> String {
    match dialect {
        Dialect::DuckDb => format!("quantile_disc(Duration, {q})"),
        Dialect::ClickHouse => format!("quantileExactLow({q})(Duration)"),
    }
}

fn uint(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(|| n.to_string()),
        Value::String(s) => s.parse().map_err(|_| s.clone()),
        other => Err(other.to_string()),
    }
}

fn bad(table: &'static str, row: usize, column: &'static str, value: &Value, expected: &'static str) -> StoreError {
    StoreError::BadCell { table, row, column, value: value.to_string(), expected }
}

/// Reads a non-negative integer cell or says which it was.
fn count(table: &'static str, row: usize, column: &'static str, v: &Value) -> Result<u64, StoreError> {
    uint(v).map_err(|_| bad(table, row, column, v, "a non-negative integer"))
}

fn exact(table: &'static str, row: usize, column: &'static str, v: &Value) -> Result<Decimal, StoreError> {
    decimal(v).ok_or_else(|| bad(table, row, column, v, "a decimal"))
}

fn int(table: &'static str, row: usize, column: &'static str, v: &Value) -> Result<i64, StoreError> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| bad(table, row, column, v, "an integer"))
}

/// The SQL every query starts from: `req` (every tenant's requests in the
/// window, for pod denominators) and `grouped` (the requests asked for,
/// with their dimension columns).
struct Base {
    dialect: Dialect,
    p: Params,
    ctes: String,
    keys: Vec<&'static str>,
    /// The placeholder of the tenant attribute's name.
    tenant_attr: String,
}

impl Base {
    fn new(dialect: Dialect, q: &UnitQuery) -> Base {
        let mut p = Params::new(dialect);
        let tenant_attr = p.add(Param::Str(q.tenant_attribute.clone()));
        let customer_attr = p.add(Param::Str(q.customer_attribute.clone()));
        let window = between(dialect, "Timestamp", q.from_ns, q.to_ns);
        let hour = dialect.trunc_ns("hour", "Timestamp");
        let attr = |map: &str, key: &str| format!("coalesce({map}[{key}], '')");
        let route = format!(
            "coalesce(nullif({}, ''), nullif({}, ''), SpanName)",
            attr("SpanAttributes", "'http.route'"),
            attr("SpanAttributes", "'rpc.method'")
        );
        // The requests asked for; `req` keeps every request of the window,
        // as a pod's busy time counts all of them.
        let mut only = Vec::new();
        if let Some(t) = &q.trace_id {
            only.push(format!("r.TraceId = {}", p.add(Param::Str(t.clone()))));
        }
        if let Some(t) = &q.tenant {
            only.push(format!("r.tenant = {}", p.add(Param::Str(t.clone()))));
        }
        let tenant_filter = if only.is_empty() { String::new() } else { format!(" WHERE {}", only.join(" AND ")) };
        let wants_customer = q.group_by.contains(&UnitDim::Customer);
        // The customer of a trace: read only when asked for (it scans every
        // span's attribute in the window).
        let (customer_cte, customer_join, customer_col) = if wants_customer {
            (
                format!(
                    ", tc AS (SELECT TraceId, min(v) AS customer FROM (SELECT TraceId, {} AS v FROM otel_traces WHERE {window}) s \
                     WHERE v <> '' GROUP BY TraceId)",
                    attr("SpanAttributes", &customer_attr)
                ),
                " LEFT JOIN tc ON tc.TraceId = r.TraceId",
                "coalesce(nullif(r.own_customer, ''), nullif(tc.customer, ''), '(none)')".to_owned(),
            )
        } else {
            (String::new(), "", "''".to_owned())
        };
        let ctes = format!(
            "WITH spans AS (SELECT TraceId, SpanId, ServiceName AS service, SpanName AS operation, {route} AS route, Duration, StatusCode, \
               SpanKind, ParentSpanId, {hour} AS hour, coalesce(nullif({tenant}, ''), 'unassigned') AS tenant, \
               {pod} AS pod_name, {ns} AS namespace, {own} AS own_customer \
               FROM otel_traces WHERE {window} AND (SpanKind = 'Server' OR ParentSpanId = '')), \
             served AS (SELECT DISTINCT tenant, service FROM spans WHERE SpanKind = 'Server'), \
             req AS (SELECT * FROM spans WHERE SpanKind = 'Server' OR (tenant, service) NOT IN (SELECT tenant, service FROM served)){customer_cte}, \
             grouped AS (SELECT r.*, {customer_col} AS customer FROM req r{customer_join}{tenant_filter})",
            tenant = attr("ResourceAttributes", &tenant_attr),
            pod = attr("ResourceAttributes", "'k8s.pod.name'"),
            ns = attr("ResourceAttributes", "'k8s.namespace.name'"),
            own = attr("SpanAttributes", &customer_attr),
        );
        Base { dialect, p, ctes, keys: q.group_by.iter().map(|d| d.column()).collect(), tenant_attr }
    }

    /// `k0, k1, ` for the select list (with the given relation prefix).
    fn select_keys(&self, prefix: &str) -> String {
        self.keys.iter().map(|k| format!("{prefix}{k}, ")).collect()
    }

    /// `GROUP BY` list of the keys followed by `rest`.
    fn group_keys(&self, prefix: &str, rest: &str) -> String {
        let mut all: Vec<String> = self.keys.iter().map(|k| format!("{prefix}{k}")).collect();
        if !rest.is_empty() {
            all.push(rest.to_owned());
        }
        all.join(", ")
    }

    fn key_of(&self, row: &[Value]) -> Vec<String> {
        row[..self.keys.len()].iter().map(text).collect()
    }
}

/// Requests, errors and latency per group.
pub async fn request_groups(store: &dyn Store, q: &UnitQuery) -> Result<Vec<RequestGroup>, StoreError> {
    let b = Base::new(store.dialect(), q);
    let group = b.group_keys("", "");
    let sql = format!(
        "{} SELECT {}count(*), sum(CASE WHEN StatusCode = 'Error' THEN 1 ELSE 0 END), {}, {}, count(DISTINCT TraceId) FROM grouped{}",
        b.ctes,
        b.select_keys(""),
        quantile(b.dialect, "0.5"),
        quantile(b.dialect, "0.95"),
        if group.is_empty() { String::new() } else { format!(" GROUP BY {group}") }
    );
    let r = store.query_with(&sql, &b.p.values).await?;
    let n = b.keys.len();
    let table = "otel_traces";
    r.rows
        .iter()
        .enumerate()
        // Without groups, an empty window still answers one row (of NULL
        // percentiles): no requests, no group.
        .filter(|(_, row)| !matches!(uint(&row[n]), Ok(0)))
        .map(|(i, row)| {
            Ok(RequestGroup {
                key: b.key_of(row),
                requests: count(table, i, "requests", &row[n])?,
                errors: count(table, i, "errors", &row[n + 1])?,
                p50_ns: count(table, i, "Duration", &row[n + 2])?,
                p95_ns: count(table, i, "Duration", &row[n + 3])?,
                traces: count(table, i, "TraceId", &row[n + 4])?,
            })
        })
        .collect()
}

/// The billed LLM calls of each group's traces, summed per pricing class.
pub async fn call_sums(store: &dyn Store, q: &UnitQuery) -> Result<Vec<CallSum>, StoreError> {
    let mut b = Base::new(store.dialect(), q);
    let d = b.dialect;
    let window = between(d, "Timestamp", q.from_ns.saturating_sub(HOUR_NS), q.to_ns.saturating_add(HOUR_NS));
    let limit = b.p.add(Param::UInt(q.max_tokens_per_call));
    // Each call's token parts, as `costplane_cost::llm` splits them (input
    // without cached tokens, output without reasoning, never below 0).
    let dec = |column: &str| format!("CAST({column} AS Decimal(38, 0))");
    let (input, read, write, output, reasoning) =
        (dec("InputTokens"), dec("CacheReadTokens"), dec("CacheWriteTokens"), dec("OutputTokens"), dec("ReasoningTokens"));
    // Each call's token parts, as `costplane_cost::llm` splits them (input
    // without cached tokens, output without reasoning, never below 0), in
    // decimals: a sum of two counts may pass the 64-bit range.
    let parts = [
        format!("sum(CASE WHEN {input} > {read} + {write} THEN {input} - {read} - {write} ELSE 0 END)"),
        format!("sum({read})"),
        format!("sum({write})"),
        format!("sum(CASE WHEN {output} > {reasoning} THEN {output} - {reasoning} ELSE 0 END)"),
        format!("sum({reasoning})"),
    ]
    .join(", ");
    // The limit check of `costplane_cost::llm::price_with`, per call.
    let over = format!("({input} + {output} > {limit} OR {read} > {limit} OR {write} > {limit} OR {reasoning} > {limit})");
    let tiers = if q.tier_thresholds.is_empty() {
        "0".to_owned()
    } else {
        q.tier_thresholds.iter().map(|t| format!("(CASE WHEN InputTokens > {t} THEN 1 ELSE 0 END)")).collect::<Vec<_>>().join(" + ")
    };
    let copies = match d {
        Dialect::DuckDb => format!(
            "SELECT * FROM costplane_usage_llm WHERE {window} AND TraceId IN (SELECT TraceId FROM gt) \
             QUALIFY row_number() OVER (PARTITION BY TraceId, SpanId ORDER BY ReceivedAt, WriteSeq, {COPY_ORDER}) = 1"
        ),
        Dialect::ClickHouse => format!(
            "SELECT * FROM costplane_usage_llm WHERE {window} AND TraceId IN (SELECT TraceId FROM gt) \
             ORDER BY TraceId, SpanId, ReceivedAt, WriteSeq, {COPY_ORDER} LIMIT 1 BY TraceId, SpanId"
        ),
    };
    let sql = format!(
        "{ctes}, gt AS (SELECT DISTINCT {gk}tenant, TraceId FROM grouped), \
         calls AS ({copies}), \
         modeled AS (SELECT DISTINCT TraceId FROM calls WHERE CallKind = 'model' \
           AND (InputTokens > 0 OR OutputTokens > 0 OR ProvidedCost IS NOT NULL)), \
         billed AS (SELECT *, {over} AS over_limit, {tiers} AS bucket FROM calls \
           WHERE CallKind = 'model' OR TraceId NOT IN (SELECT TraceId FROM modeled)) \
         SELECT {sk}c.Provider, c.Model, c.Operation, {day} AS day, c.InvalidReason, c.over_limit, \
           max(CASE WHEN c.ProvidedCost IS NULL THEN 0 ELSE 1 END) AS has_provided, sum(c.ProvidedCost), count(*), {parts}, min(c.InputTokens) \
         FROM gt JOIN billed c ON c.TraceId = gt.TraceId AND c.Tenant = gt.tenant \
         GROUP BY {group} ORDER BY {group}",
        ctes = b.ctes,
        gk = b.select_keys(""),
        sk = b.select_keys("gt."),
        day = d.trunc_ns("day", "c.Timestamp"),
        group = b.group_keys(
            "gt.",
            "c.Provider, c.Model, c.Operation, day, c.InvalidReason, c.over_limit, c.bucket, (CASE WHEN c.ProvidedCost IS NULL THEN 0 ELSE 1 END)"
        ),
    );
    let r = store.query_with(&sql, &b.p.values).await?;
    let n = b.keys.len();
    let table = "costplane_usage_llm";
    r.rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let provided =
                if count(table, i, "ProvidedCost", &row[n + 6])? == 1 { Some(exact(table, i, "ProvidedCost", &row[n + 7])?) } else { None };
            Ok(CallSum {
                key: b.key_of(row),
                provider: text(&row[n]),
                model: text(&row[n + 1]),
                operation: text(&row[n + 2]),
                day_ns: int(table, i, "Timestamp", &row[n + 3])?,
                invalid_reason: text(&row[n + 4]),
                over_limit: matches!(&row[n + 5], Value::Bool(true)) || count(table, i, "over_limit", &row[n + 5]).is_ok_and(|v| v == 1),
                provided,
                calls: count(table, i, "calls", &row[n + 8])?,
                input: exact(table, i, "InputTokens", &row[n + 9])?,
                cache_read: exact(table, i, "CacheReadTokens", &row[n + 10])?,
                cache_write: exact(table, i, "CacheWriteTokens", &row[n + 11])?,
                output: exact(table, i, "OutputTokens", &row[n + 12])?,
                reasoning: exact(table, i, "ReasoningTokens", &row[n + 13])?,
                tier_input: count(table, i, "InputTokens", &row[n + 14])?,
            })
        })
        .collect()
}

/// Each group's requests per pod-hour, with the pod-hour's Kubernetes cost
/// and every request the pod served in that hour (whatever its tenant: the
/// pod's cost is shared by all of them).
pub async fn pod_shares(store: &dyn Store, q: &UnitQuery) -> Result<Vec<PodShare>, StoreError> {
    let mut b = Base::new(store.dialect(), q);
    let d = b.dialect;
    let start = d.ns("ChargePeriodStart");
    let tenant = match &q.tenant {
        Some(t) => format!(" AND x_Tenant = {}", b.p.add(Param::Str(t.clone()))),
        None => String::new(),
    };
    let from = b.p.add(Param::Int(q.from_ns));
    let to = b.p.add(Param::Int(q.to_ns));
    let sql = format!(
        "{ctes}, busy AS (SELECT namespace, pod_name, hour, sum(CAST(Duration AS Decimal(38, 0))) AS total FROM req \
           WHERE pod_name <> '' GROUP BY namespace, pod_name, hour), \
         pods AS (SELECT x_Namespace AS namespace, x_Pod AS pod_name, {start} AS hour, sum(BilledCost) AS cost \
           FROM ({rows}) l WHERE x_Source = 'kubernetes' AND x_Pod <> '' AND {start} >= {from} AND {start} < {to}{tenant} \
           GROUP BY x_Namespace, x_Pod, {start}), \
         by_name AS (SELECT pod_name, hour, sum(cost) AS cost FROM pods GROUP BY pod_name, hour), \
         mine AS (SELECT {gk}namespace, pod_name, hour, count(*) AS requests, sum(CAST(Duration AS Decimal(38, 0))) AS busy \
           FROM grouped GROUP BY {group}) \
         SELECT {mk}m.namespace, m.pod_name, m.hour, m.requests, m.busy, coalesce(b.total, 0), \
           CASE WHEN m.namespace = '' THEN n.cost ELSE p.cost END, \
           CASE WHEN m.namespace = '' THEN (CASE WHEN n.pod_name IS NULL OR n.pod_name = '' THEN 0 ELSE 1 END) \
             ELSE (CASE WHEN p.pod_name IS NULL OR p.pod_name = '' THEN 0 ELSE 1 END) END \
         FROM mine m LEFT JOIN busy b ON b.pod_name = m.pod_name AND b.hour = m.hour AND b.namespace = m.namespace \
         LEFT JOIN pods p ON p.pod_name = m.pod_name AND p.hour = m.hour AND p.namespace = m.namespace \
         LEFT JOIN by_name n ON n.pod_name = m.pod_name AND n.hour = m.hour \
         ORDER BY {order}",
        ctes = b.ctes,
        rows = current_rows_sql(""),
        gk = b.select_keys(""),
        mk = b.select_keys("m."),
        group = b.group_keys("", "namespace, pod_name, hour"),
        order = b.group_keys("m.", "m.namespace, m.pod_name, m.hour"),
    );
    let r = store.query_with(&sql, &b.p.values).await?;
    let n = b.keys.len();
    let table = "otel_traces";
    r.rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let (namespace, pod) = (text(&row[n]), text(&row[n + 1]));
            // ClickHouse fills an unmatched LEFT JOIN with defaults, DuckDB
            // with NULL: the flag says whether a cost row matched.
            let matched = count("costplane_ledger", i, "x_Pod", &row[n + 7])? == 1;
            Ok(PodShare {
                key: b.key_of(row),
                pod: if pod.is_empty() { String::new() } else { format!("{namespace}/{pod}") },
                hour_ns: int(table, i, "Timestamp", &row[n + 2])?,
                requests: count(table, i, "requests", &row[n + 3])?,
                busy_ns: exact(table, i, "Duration", &row[n + 4])?,
                pod_busy_ns: exact(table, i, "Duration", &row[n + 5])?,
                cost: if matched && !pod.is_empty() { Some(exact("costplane_ledger", i, "BilledCost", &row[n + 6])?) } else { None },
            })
        })
        .collect()
}

/// The spans and logs of each group's traces, per (tenant, service,
/// signal). A trace counts once per group however many of the group's
/// requests it holds.
pub async fn trace_items(store: &dyn Store, q: &UnitQuery) -> Result<Vec<TraceItems>, StoreError> {
    let b = Base::new(store.dialect(), q);
    let d = b.dialect;
    let spans = between(d, "Timestamp", q.from_ns, q.to_ns);
    let tenant_of = format!("coalesce(nullif(coalesce(ResourceAttributes[{}], ''), ''), 'unassigned')", b.tenant_attr);
    let sql = format!(
        "{ctes}, gt AS (SELECT DISTINCT {gk}tenant, TraceId FROM grouped), \
         items AS (SELECT TraceId, {tenant_of} AS tenant, ServiceName AS service, 'traces' AS signal FROM otel_traces WHERE {spans} \
           UNION ALL SELECT TraceId, {tenant_of}, ServiceName, 'logs' FROM otel_logs WHERE {spans} AND TraceId <> '') \
         SELECT {sk}i.tenant, i.service, i.signal, count(*) FROM gt JOIN items i ON i.TraceId = gt.TraceId AND i.tenant = gt.tenant \
         GROUP BY {group} ORDER BY {group}",
        ctes = b.ctes,
        gk = b.select_keys(""),
        sk = b.select_keys("gt."),
        group = b.group_keys("gt.", "i.tenant, i.service, i.signal"),
    );
    let r = store.query_with(&sql, &b.p.values).await?;
    let n = b.keys.len();
    r.rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            Ok(TraceItems {
                key: b.key_of(row),
                tenant: text(&row[n]),
                service: text(&row[n + 1]),
                signal: text(&row[n + 2]),
                items: count("otel_traces", i, "items", &row[n + 3])?,
            })
        })
        .collect()
}

/// Telemetry cost (ingest and storage) and items of every (tenant, service,
/// signal) from the window's start to a day after its end: the ledger's
/// rows and the usage they priced.
pub async fn item_costs(store: &dyn Store, q: &UnitQuery) -> Result<Vec<ItemCost>, StoreError> {
    let d = store.dialect();
    let mut p = Params::new(d);
    // Telemetry is billed when it arrives: the rate of a request's spans
    // is read up to a day past the window's end.
    let (from, to) = (p.add(Param::Int(q.from_ns)), p.add(Param::Int(q.to_ns.saturating_add(24 * HOUR_NS))));
    let (hour, start) = (d.ns("Hour"), d.ns("ChargePeriodStart"));
    let tenant = |p: &mut Params, column: &str| match &q.tenant {
        Some(t) => format!(" AND {column} = {}", p.add(Param::Str(t.clone()))),
        None => String::new(),
    };
    let usage_tenant = tenant(&mut p, "Tenant");
    let ledger_tenant = tenant(&mut p, "x_Tenant");
    // Ingest rows name the signal in x_UsageType; storage rows in the SKU.
    let signal = "(CASE WHEN x_UsageType = 'storage' THEN replace(SkuId, 'telemetry/storage/', '') ELSE x_UsageType END)";
    let sql = format!(
        "WITH u AS (SELECT Tenant AS tenant, Service AS service, Signal AS signal, sum(Items) AS items FROM costplane_usage_telemetry \
           WHERE {hour} >= {from} AND {hour} < {to}{usage_tenant} AND Signal IN ('traces', 'logs') GROUP BY Tenant, Service, Signal), \
         c AS (SELECT x_Tenant AS tenant, x_Service AS service, {signal} AS signal, sum(BilledCost) AS cost FROM ({rows}) l \
           WHERE x_Source = 'telemetry' AND {start} >= {from} AND {start} < {to}{ledger_tenant} GROUP BY x_Tenant, x_Service, {signal}) \
         SELECT u.tenant, u.service, u.signal, u.items, c.cost, CASE WHEN c.tenant IS NULL OR c.tenant = '' THEN 0 ELSE 1 END \
         FROM u LEFT JOIN c ON c.tenant = u.tenant AND c.service = u.service AND c.signal = u.signal ORDER BY 1, 2, 3",
        rows = current_rows_sql(""),
    );
    let r = store.query_with(&sql, &p.values).await?;
    r.rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let matched = count("costplane_ledger", i, "x_Tenant", &row[5])? == 1;
            Ok(ItemCost {
                tenant: text(&row[0]),
                service: text(&row[1]),
                signal: text(&row[2]),
                items: count("costplane_usage_telemetry", i, "Items", &row[3])?,
                cost: if matched { exact("costplane_ledger", i, "BilledCost", &row[4])? } else { Decimal::ZERO },
            })
        })
        .collect()
}

/// Every LLM call of one trace in the window (copies merged), in time order.
pub async fn trace_calls(store: &dyn Store, q: &UnitQuery, trace_id: &str) -> Result<Vec<TraceCall>, StoreError> {
    let d = store.dialect();
    let mut p = Params::new(d);
    let trace = p.add(Param::Str(trace_id.to_owned()));
    let window = between(d, "Timestamp", q.from_ns.saturating_sub(HOUR_NS), q.to_ns.saturating_add(HOUR_NS));
    let tenant = match &q.tenant {
        Some(t) => format!(" AND Tenant = {}", p.add(Param::Str(t.clone()))),
        None => String::new(),
    };
    let sql = format!(
        "SELECT {ts}, Tenant, Service, SpanId, CallKind, Provider, Model, Operation, InputTokens, OutputTokens, CacheReadTokens, \
           CacheWriteTokens, ReasoningTokens, ProvidedCost, InvalidReason FROM costplane_usage_llm \
         WHERE TraceId = {trace} AND {window}{tenant} ORDER BY SpanId, ReceivedAt, WriteSeq, {COPY_ORDER}",
        ts = d.ns("Timestamp"),
    );
    let r = store.query_with(&sql, &p.values).await?;
    let table = "costplane_usage_llm";
    let mut out: Vec<TraceCall> = Vec::new();
    for (i, row) in r.rows.iter().enumerate() {
        let span_id = text(&row[3]);
        // Copies of a span sort together; the first is the billed one.
        if !span_id.is_empty() && out.last().is_some_and(|c| c.span_id == span_id) {
            continue;
        }
        out.push(TraceCall {
            timestamp_ns: int(table, i, "Timestamp", &row[0])?,
            tenant: text(&row[1]),
            service: text(&row[2]),
            span_id,
            kind: text(&row[4]),
            provider: text(&row[5]),
            model: text(&row[6]),
            operation: text(&row[7]),
            input_tokens: count(table, i, "InputTokens", &row[8])?,
            output_tokens: count(table, i, "OutputTokens", &row[9])?,
            cache_read_tokens: count(table, i, "CacheReadTokens", &row[10])?,
            cache_write_tokens: count(table, i, "CacheWriteTokens", &row[11])?,
            reasoning_tokens: count(table, i, "ReasoningTokens", &row[12])?,
            provided_cost: if row[13].is_null() { None } else { Some(exact(table, i, "ProvidedCost", &row[13])?) },
            invalid_reason: text(&row[14]),
        });
    }
    out.sort_by_key(|c| c.timestamp_ns);
    Ok(out)
}
