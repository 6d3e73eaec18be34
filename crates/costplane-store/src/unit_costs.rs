//! Cost per request: what the store answers for `GET /api/v1/unit-costs`
//! and `GET /api/v1/traces/{id}/cost`. This module only reads; the server's
//! unit-cost module makes the money from its rows (LLM sums priced with
//! `costplane_cost::llm::price_summed`). One answer is one statement
//! ([`read`]) plus the small ledger read of [`item_costs`].
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

use costplane_ledger::LlmUsage;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::cost_views::current_rows_sql;
use crate::ledger::{decimal, int_cell, text, uint_cell, COPY_ORDER};
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
    /// All cache writes, 1-hour ones included.
    pub cache_write: Decimal,
    pub cache_write_1h: Decimal,
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
    pub usage: LlmUsage,
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

fn bad(table: &'static str, row: usize, column: &'static str, value: &Value, expected: &'static str) -> StoreError {
    StoreError::BadCell { table, row, column, value: value.to_string(), expected }
}

fn exact(table: &'static str, row: usize, column: &'static str, v: &Value) -> Result<Decimal, StoreError> {
    decimal(v).ok_or_else(|| bad(table, row, column, v, "a decimal"))
}

/// Value columns of each branch of [`read`]'s one statement.
const VALUES: usize = 16;

/// What [`read`] returns: every row the money of a unit-cost answer is made
/// from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitRows {
    pub requests: Vec<RequestGroup>,
    pub calls: Vec<CallSum>,
    pub pods: Vec<PodShare>,
    pub items: Vec<TraceItems>,
}

/// One statement builds all four results over one read of the window's
/// spans: `spans` (every span of the window, with the attributes read
/// once), `req` (every tenant's requests: a pod's busy time counts all of
/// them) and `grouped` (the requests asked for, with their dimensions).
/// On DuckDB those are `MATERIALIZED`, so the Parquet segments are read
/// once per answer; ClickHouse reads its columns again where they are
/// used, which it does fast.
struct Statement {
    dialect: Dialect,
    p: Params,
    ctes: Vec<String>,
    keys: Vec<&'static str>,
    branches: Vec<String>,
}

impl Statement {
    fn new(dialect: Dialect, q: &UnitQuery) -> Statement {
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
        let mut only = Vec::new();
        if let Some(t) = &q.trace_id {
            only.push(format!("r.TraceId = {}", p.add(Param::Str(t.clone()))));
        }
        if let Some(t) = &q.tenant {
            only.push(format!("r.tenant = {}", p.add(Param::Str(t.clone()))));
        }
        let only = if only.is_empty() { String::new() } else { format!(" WHERE {}", only.join(" AND ")) };
        let (customer_join, customer_col) = if q.group_by.contains(&UnitDim::Customer) {
            (" LEFT JOIN tc ON tc.TraceId = r.TraceId", "coalesce(nullif(r.own_customer, ''), nullif(tc.customer, ''), '(none)')")
        } else {
            ("", "''")
        };
        let mut st =
            Statement { dialect, p, ctes: Vec::new(), keys: q.group_by.iter().map(|d| d.column()).collect(), branches: Vec::new() };
        st.cte(
            "spans",
            true,
            format!(
                "SELECT TraceId, ServiceName AS service, SpanName AS operation, {route} AS route, Duration, StatusCode, SpanKind, \
                 ParentSpanId, {hour} AS hour, coalesce(nullif({tenant}, ''), 'unassigned') AS tenant, {pod} AS pod_name, \
                 {ns} AS namespace, {own} AS own_customer FROM otel_traces WHERE {window}",
                tenant = attr("ResourceAttributes", &tenant_attr),
                pod = attr("ResourceAttributes", "'k8s.pod.name'"),
                ns = attr("ResourceAttributes", "'k8s.namespace.name'"),
                own = attr("SpanAttributes", &customer_attr),
            ),
        );
        st.cte("served", false, "SELECT DISTINCT tenant, service FROM spans WHERE SpanKind = 'Server'".into());
        st.cte(
            "req",
            true,
            "SELECT * FROM spans WHERE SpanKind = 'Server' \
             OR (ParentSpanId = '' AND (tenant, service) NOT IN (SELECT tenant, service FROM served))"
                .into(),
        );
        if !customer_join.is_empty() {
            st.cte(
                "tc",
                false,
                // Only the traces of requests that do not name their
                // customer themselves are looked into.
                "SELECT TraceId, min(own_customer) AS customer FROM spans WHERE own_customer <> '' \
                 AND TraceId IN (SELECT TraceId FROM req WHERE own_customer = '') GROUP BY TraceId"
                    .into(),
            );
        }
        st.cte("grouped", true, format!("SELECT r.*, {customer_col} AS customer FROM req r{customer_join}{only}"));
        st.cte("gt", true, format!("SELECT DISTINCT {}tenant, TraceId FROM grouped", st.select_keys("")));
        st
    }

    fn cte(&mut self, name: &str, materialized: bool, body: String) {
        let how = if materialized && self.dialect == Dialect::DuckDb { "MATERIALIZED " } else { "" };
        self.ctes.push(format!("{name} AS {how}({body})"));
    }

    /// A branch of the answer: rows of `kind` with the group's keys (`prefix`
    /// names their relation) and up to [`VALUES`] values, each as text.
    fn branch(&mut self, kind: &str, prefix: &str, values: &[&str], rest: &str) {
        let text = |e: &str| match self.dialect {
            Dialect::DuckDb => format!("CAST({e} AS VARCHAR)"),
            Dialect::ClickHouse => format!("CAST({e} AS Nullable(String))"),
        };
        let mut cols = vec![format!("'{kind}'")];
        cols.extend(self.keys.iter().map(|k| text(&format!("{prefix}{k}"))));
        cols.extend(values.iter().map(|v| text(v)));
        cols.extend((values.len()..VALUES).map(|_| text("NULL")));
        self.branches.push(format!("SELECT {} {rest}", cols.join(", ")));
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

    fn sql(&self) -> String {
        format!("WITH {} {}", self.ctes.join(", "), self.branches.join(" UNION ALL "))
    }
}

/// Requests, errors and latency per group.
fn request_branch(st: &mut Statement) {
    let group = st.group_keys("", "");
    let (p50, p95) = (quantile(st.dialect, "0.5"), quantile(st.dialect, "0.95"));
    let rest = format!("FROM grouped{}", if group.is_empty() { String::new() } else { format!(" GROUP BY {group}") });
    st.branch(
        "r",
        "",
        &["count(*)", "sum(CASE WHEN StatusCode = 'Error' THEN 1 ELSE 0 END)", &p50, &p95, "count(DISTINCT TraceId)"],
        &rest,
    );
}

/// The billed LLM calls of each group's traces, summed per pricing class.
fn call_branch(st: &mut Statement, q: &UnitQuery) {
    let d = st.dialect;
    let window = between(d, "Timestamp", q.from_ns.saturating_sub(HOUR_NS), q.to_ns.saturating_add(HOUR_NS));
    let limit = st.p.add(Param::UInt(q.max_tokens_per_call));
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
        format!("sum({})", dec("CacheWrite1hTokens")),
        format!("sum(CASE WHEN {output} > {reasoning} THEN {output} - {reasoning} ELSE 0 END)"),
        format!("sum({reasoning})"),
    ];
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
    st.cte("calls", true, copies);
    st.cte(
        "modeled",
        false,
        "SELECT DISTINCT TraceId FROM calls WHERE CallKind = 'model' AND (InputTokens > 0 OR OutputTokens > 0 OR ProvidedCost IS NOT NULL)"
            .into(),
    );
    st.cte(
        "billed",
        false,
        format!(
            "SELECT *, CASE WHEN {over} THEN 1 ELSE 0 END AS over_limit, {tiers} AS bucket, \
             CASE WHEN ProvidedCost IS NULL THEN 0 ELSE 1 END AS has_provided, {day} AS day \
             FROM calls WHERE CallKind = 'model' OR TraceId NOT IN (SELECT TraceId FROM modeled)",
            day = d.trunc_ns("day", "Timestamp")
        ),
    );
    let group = st.group_keys("gt.", "c.Provider, c.Model, c.Operation, c.day, c.InvalidReason, c.over_limit, c.bucket, c.has_provided");
    let rest = format!("FROM gt JOIN billed c ON c.TraceId = gt.TraceId AND c.Tenant = gt.tenant GROUP BY {group}");
    let mut values = vec!["c.Provider", "c.Model", "c.Operation", "c.day", "c.InvalidReason", "c.over_limit", "c.has_provided"];
    values.extend(["sum(c.ProvidedCost)", "count(*)"]);
    let parts: Vec<String> = parts.iter().map(|e| e.replace("CAST(", "CAST(c.")).collect();
    let min_input = "min(c.InputTokens)".to_owned();
    let all: Vec<&str> = values.into_iter().chain(parts.iter().map(String::as_str)).chain([min_input.as_str()]).collect();
    st.branch("c", "gt.", &all, &rest);
}

/// Each group's requests per pod-hour, with the pod-hour's Kubernetes cost
/// and every request the pod served in that hour (whatever its tenant: the
/// pod's cost is shared by all of them).
fn pod_branch(st: &mut Statement, q: &UnitQuery) {
    let start = st.dialect.ns("ChargePeriodStart");
    let tenant = match &q.tenant {
        Some(t) => format!(" AND x_Tenant = {}", st.p.add(Param::Str(t.clone()))),
        None => String::new(),
    };
    let from = st.p.add(Param::Int(q.from_ns));
    let to = st.p.add(Param::Int(q.to_ns));
    st.cte(
        "busy",
        false,
        "SELECT namespace, pod_name, hour, sum(CAST(Duration AS Decimal(38, 0))) AS total FROM req \
         WHERE pod_name <> '' GROUP BY namespace, pod_name, hour"
            .into(),
    );
    st.cte(
        "pods",
        false,
        format!(
            "SELECT x_Namespace AS namespace, x_Pod AS pod_name, {start} AS hour, sum(BilledCost) AS cost \
             FROM ({rows}) l WHERE x_Source = 'kubernetes' AND x_Pod <> '' AND {start} >= {from} AND {start} < {to}{tenant} \
             GROUP BY x_Namespace, x_Pod, {start}",
            rows = current_rows_sql(""),
        ),
    );
    st.cte("by_name", false, "SELECT pod_name, hour, sum(cost) AS cost FROM pods GROUP BY pod_name, hour".into());
    let group = st.group_keys("", "namespace, pod_name, hour");
    st.cte(
        "mine",
        false,
        format!(
            "SELECT {}namespace, pod_name, hour, count(*) AS requests, sum(CAST(Duration AS Decimal(38, 0))) AS busy \
             FROM grouped GROUP BY {group}",
            st.select_keys("")
        ),
    );
    // ClickHouse fills an unmatched LEFT JOIN with defaults, DuckDB with
    // NULL: the flag says whether a cost row matched.
    let cost = "CASE WHEN m.namespace = '' THEN n.cost ELSE p.cost END";
    let matched = "CASE WHEN m.namespace = '' THEN (CASE WHEN n.pod_name IS NULL OR n.pod_name = '' THEN 0 ELSE 1 END) \
                   ELSE (CASE WHEN p.pod_name IS NULL OR p.pod_name = '' THEN 0 ELSE 1 END) END";
    let rest = "FROM mine m LEFT JOIN busy b ON b.pod_name = m.pod_name AND b.hour = m.hour AND b.namespace = m.namespace \
                LEFT JOIN pods p ON p.pod_name = m.pod_name AND p.hour = m.hour AND p.namespace = m.namespace \
                LEFT JOIN by_name n ON n.pod_name = m.pod_name AND n.hour = m.hour";
    st.branch("p", "m.", &["m.namespace", "m.pod_name", "m.hour", "m.requests", "m.busy", "coalesce(b.total, 0)", cost, matched], rest);
}

/// The spans and logs of each group's traces, per (tenant, service,
/// signal). A trace counts once per group however many of the group's
/// requests it holds.
fn item_branch(st: &mut Statement, q: &UnitQuery) {
    let logs = between(st.dialect, "Timestamp", q.from_ns, q.to_ns);
    // The tenant attribute's name is the statement's first parameter.
    let tenant_attr = st.dialect.param(0, &Param::Str(String::new()));
    st.cte(
        "items",
        false,
        format!(
            // Counted per trace first: a trace meets each of its group's
            // entries once, not once per span.
            "SELECT TraceId, tenant, service, 'traces' AS signal, count(*) AS n FROM spans GROUP BY TraceId, tenant, service UNION ALL \
             SELECT TraceId, {tenant}, ServiceName, 'logs', count(*) FROM otel_logs WHERE {logs} AND TraceId <> '' \
             GROUP BY TraceId, {tenant}, ServiceName",
            tenant = format!("coalesce(nullif(coalesce(ResourceAttributes[{tenant_attr}], ''), ''), 'unassigned')"),
        ),
    );
    let group = st.group_keys("gt.", "i.tenant, i.service, i.signal");
    let rest = format!("FROM gt JOIN items i ON i.TraceId = gt.TraceId AND i.tenant = gt.tenant GROUP BY {group}");
    st.branch("i", "gt.", &["i.tenant", "i.service", "i.signal", "sum(i.n)"], &rest);
}

/// Everything a unit-cost answer is made from, in one statement.
pub async fn read(store: &dyn Store, q: &UnitQuery) -> Result<UnitRows, StoreError> {
    let mut st = Statement::new(store.dialect(), q);
    request_branch(&mut st);
    call_branch(&mut st, q);
    pod_branch(&mut st, q);
    item_branch(&mut st, q);
    let r = store.query_with(&st.sql(), &st.p.values).await?;
    let n = st.keys.len();
    let mut out = UnitRows::default();
    for (i, row) in r.rows.iter().enumerate() {
        let key: Vec<String> = row[1..=n].iter().map(text).collect();
        let v = &row[n + 1..];
        match text(&row[0]).as_str() {
            "r" => {
                let table = "otel_traces";
                // Without groups, an empty window still answers one row (of
                // NULL percentiles): no requests, no group.
                let requests = uint_cell(table, &v[0], i, "requests")?;
                if requests == 0 {
                    continue;
                }
                out.requests.push(RequestGroup {
                    key,
                    requests,
                    errors: uint_cell(table, &v[1], i, "errors")?,
                    p50_ns: uint_cell(table, &v[2], i, "Duration")?,
                    p95_ns: uint_cell(table, &v[3], i, "Duration")?,
                    traces: uint_cell(table, &v[4], i, "TraceId")?,
                });
            }
            "c" => {
                let table = "costplane_usage_llm";
                let provided =
                    if uint_cell(table, &v[6], i, "ProvidedCost")? == 1 { Some(exact(table, i, "ProvidedCost", &v[7])?) } else { None };
                out.calls.push(CallSum {
                    key,
                    provider: text(&v[0]),
                    model: text(&v[1]),
                    operation: text(&v[2]),
                    day_ns: int_cell(table, &v[3], i, "Timestamp")?,
                    invalid_reason: text(&v[4]),
                    over_limit: uint_cell(table, &v[5], i, "over_limit")? == 1,
                    provided,
                    calls: uint_cell(table, &v[8], i, "calls")?,
                    input: exact(table, i, "InputTokens", &v[9])?,
                    cache_read: exact(table, i, "CacheReadTokens", &v[10])?,
                    cache_write: exact(table, i, "CacheWriteTokens", &v[11])?,
                    cache_write_1h: exact(table, i, "CacheWrite1hTokens", &v[12])?,
                    output: exact(table, i, "OutputTokens", &v[13])?,
                    reasoning: exact(table, i, "ReasoningTokens", &v[14])?,
                    tier_input: uint_cell(table, &v[15], i, "InputTokens")?,
                });
            }
            "p" => {
                let table = "otel_traces";
                let (namespace, pod) = (text(&v[0]), text(&v[1]));
                let matched = uint_cell("costplane_ledger", &v[7], i, "x_Pod")? == 1;
                out.pods.push(PodShare {
                    key,
                    pod: if pod.is_empty() { String::new() } else { format!("{namespace}/{pod}") },
                    hour_ns: int_cell(table, &v[2], i, "Timestamp")?,
                    requests: uint_cell(table, &v[3], i, "requests")?,
                    busy_ns: exact(table, i, "Duration", &v[4])?,
                    pod_busy_ns: exact(table, i, "Duration", &v[5])?,
                    cost: if matched && !pod.is_empty() { Some(exact("costplane_ledger", i, "BilledCost", &v[6])?) } else { None },
                });
            }
            "i" => out.items.push(TraceItems {
                key,
                tenant: text(&v[0]),
                service: text(&v[1]),
                signal: text(&v[2]),
                items: uint_cell("otel_traces", &v[3], i, "items")?,
            }),
            other => return Err(StoreError::Unexpected(format!("unit-cost row of unknown kind {other:?}"))),
        }
    }
    Ok(out)
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
            let matched = uint_cell("costplane_ledger", &row[5], i, "x_Tenant")? == 1;
            Ok(ItemCost {
                tenant: text(&row[0]),
                service: text(&row[1]),
                signal: text(&row[2]),
                items: uint_cell("costplane_usage_telemetry", &row[3], i, "Items")?,
                cost: if matched { exact("costplane_ledger", i, "BilledCost", &row[4])? } else { Decimal::ZERO },
            })
        })
        .collect()
}

/// The whole hours that hold the spans of one trace in the window, if any:
/// a trace's cost reads those hours only (its pods' other requests are in
/// them too).
pub async fn trace_hours(store: &dyn Store, q: &UnitQuery, trace_id: &str) -> Result<Option<(i64, i64)>, StoreError> {
    let d = store.dialect();
    let mut p = Params::new(d);
    let trace = p.add(Param::Str(trace_id.to_owned()));
    let sql = format!(
        "SELECT min({ts}), max({ts}), count(*) FROM otel_traces WHERE TraceId = {trace} AND {window}",
        ts = d.ns("Timestamp"),
        window = between(d, "Timestamp", q.from_ns, q.to_ns)
    );
    let r = store.query_with(&sql, &p.values).await?;
    let Some(row) = r.rows.first() else { return Ok(None) };
    if uint_cell("otel_traces", &row[2], 0, "count")? == 0 {
        return Ok(None);
    }
    let first = int_cell("otel_traces", &row[0], 0, "Timestamp")?;
    let last = int_cell("otel_traces", &row[1], 0, "Timestamp")?;
    let from = first - first.rem_euclid(HOUR_NS);
    let to = (last - last.rem_euclid(HOUR_NS)).saturating_add(HOUR_NS);
    Ok(Some((from.max(q.from_ns), to.min(q.to_ns))))
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
           CacheWriteTokens, ReasoningTokens, ProvidedCost, InvalidReason, CacheWrite1hTokens FROM costplane_usage_llm \
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
            timestamp_ns: int_cell(table, &row[0], i, "Timestamp")?,
            tenant: text(&row[1]),
            service: text(&row[2]),
            span_id,
            kind: text(&row[4]),
            usage: LlmUsage {
                provider: text(&row[5]),
                model: text(&row[6]),
                operation: text(&row[7]),
                input_tokens: uint_cell(table, &row[8], i, "InputTokens")?,
                output_tokens: uint_cell(table, &row[9], i, "OutputTokens")?,
                cache_read_tokens: uint_cell(table, &row[10], i, "CacheReadTokens")?,
                cache_write_tokens: uint_cell(table, &row[11], i, "CacheWriteTokens")?,
                cache_write_1h_tokens: uint_cell(table, &row[15], i, "CacheWrite1hTokens")?,
                reasoning_tokens: uint_cell(table, &row[12], i, "ReasoningTokens")?,
                provided_cost: if row[13].is_null() { None } else { Some(exact(table, i, "ProvidedCost", &row[13])?) },
            },
            invalid_reason: text(&row[14]),
        });
    }
    out.sort_by_key(|c| c.timestamp_ns);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query() -> UnitQuery {
        UnitQuery {
            from_ns: 1_764_547_200_000_000_000,
            to_ns: 1_764_633_600_000_000_000,
            tenant: Some("acme'; DROP TABLE otel_traces; --".into()),
            group_by: vec![UnitDim::Service, UnitDim::Route, UnitDim::Customer],
            trace_id: None,
            tenant_attribute: "tenant.id".into(),
            customer_attribute: "enduser.id' OR '1'='1".into(),
            tier_thresholds: vec![128_000, 200_000],
            max_tokens_per_call: 100_000_000,
        }
    }

    fn statement(dialect: Dialect) -> Statement {
        let mut q = query();
        // `COSTPLANE_PRINT_UNIT_SQL=service,route` prints the statement of that grouping.
        if let Some(dims) = std::env::var("COSTPLANE_PRINT_UNIT_SQL").ok().filter(|v| !v.is_empty()) {
            q.group_by = dims.split(',').filter_map(UnitDim::parse).collect();
        }
        let mut st = Statement::new(dialect, &q);
        request_branch(&mut st);
        call_branch(&mut st, &q);
        pod_branch(&mut st, &q);
        item_branch(&mut st, &q);
        st
    }

    #[test]
    fn user_text_reaches_the_statement_only_as_parameters() {
        for dialect in [Dialect::DuckDb, Dialect::ClickHouse] {
            let st = statement(dialect);
            let sql = st.sql();
            if std::env::var_os("COSTPLANE_PRINT_UNIT_SQL").is_some() {
                println!("{sql}\n{:?}", st.p.values);
            }
            assert!(!sql.contains("DROP TABLE") && !sql.contains("'1'='1"), "{sql}");
            assert!(st.p.values.contains(&Param::Str("acme'; DROP TABLE otel_traces; --".into())));
            assert!(st.p.values.contains(&Param::Str("enduser.id' OR '1'='1".into())));
            assert_eq!(st.branches.len(), 4);
            // The window bounds are literals of whole times, the same on every read of spans.
            assert!(sql.contains("2025-12-01 00:00:00.000000000"), "{sql}");
        }
    }

    #[test]
    fn spans_are_read_once_on_duckdb() {
        let sql = statement(Dialect::DuckDb).sql();
        assert_eq!(sql.matches("FROM otel_traces").count(), 1, "{sql}");
        assert!(sql.contains("spans AS MATERIALIZED ("), "{sql}");
    }
}
