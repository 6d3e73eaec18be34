//! The cost API and exports, read from the ledger.
//!
//! - `GET /api/v1/costs`: costs over a window, by step and dimensions.
//! - `GET /api/v1/costs/unpriced`: usage no price covered, with its tokens.
//! - `GET /api/costs/export?month=YYYY-MM`: the telemetry chargeback CSV
//!   (plus LLM spend, `kind` column); `&format=focus`: the ledger as FOCUS CSV.
//! - `POST /api/v1/reprice`: recompute LLM ledger rows of a window.
//!
//! Money: sums are computed by the store over the same `DECIMAL(38, 12)`
//! rows for every endpoint and rendered from `Decimal` with trailing zeros
//! trimmed, so the API and both exports agree to the last digit. Tenant API
//! keys add a `x_Tenant = <their tenant>` condition to every query.

pub mod focus;
pub mod metrics;
pub mod params;

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use costplane_cost::Meter;
use costplane_store::{Param, Params, Store};
use costplane_telemetry::usage::{LlmUsage, LlmUsageRow, UsageRows};
use costplane_telemetry::TelemetryBatch;
use http::header;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use self::params::{iso, ns, parse_month, parse_time, CostQuery, Step};
use crate::auth::Caller;
use crate::csv;
use crate::error::{ApiError, ErrorCode};

#[derive(Clone)]
pub struct CostState {
    pub store: Arc<dyn Store>,
    /// Reloaded by `reprice` so a changed override file takes effect.
    pub cost_config: crate::config::CostSection,
    pub meter: Arc<Meter>,
    /// Where query usage goes (with the telemetry, so it is stored alike).
    pub pipeline: costplane_pipeline::Pipeline,
}

impl CostState {
    /// Counts one API query for the caller's tenant. Metering never fails
    /// the query: a full queue only costs the count.
    pub fn count_query(&self, caller: &Caller) {
        let tenant = caller.tenant().unwrap_or(costplane_cost::meter::UNASSIGNED);
        let usage = self.meter.queries(tenant, 1);
        let batch = TelemetryBatch { usage, approx_bytes: 512, ..TelemetryBatch::default() };
        if let Err(e) = self.pipeline.submit_internal(batch) {
            tracing::debug!(error = %e, "query not metered");
        }
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Internal, e.to_string())
}

/// A decimal from a store cell (text or number), exact.
pub fn decimal(v: &Value) -> Decimal {
    match v {
        Value::String(s) => Decimal::from_str(s).unwrap_or_default(),
        Value::Number(n) => Decimal::from_str(&n.to_string()).unwrap_or_default(),
        _ => Decimal::ZERO,
    }
}

fn money(d: Decimal) -> String {
    d.normalize().to_string()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `WHERE` conditions shared by every ledger query.
fn ledger_where(p: &mut Params, dialect: costplane_store::Dialect, from: i64, to: i64, caller: &Caller) -> String {
    let col = dialect.ns("ChargePeriodStart");
    let mut w = format!("{col} >= {} AND {col} < {}", p.add(Param::Int(from)), p.add(Param::Int(to)));
    if let Some(tenant) = caller.tenant() {
        w.push_str(&format!(" AND x_Tenant = {}", p.add(Param::Str(tenant.to_owned()))));
    }
    w
}

pub async fn costs(
    State(state): State<CostState>,
    Extension(caller): Extension<Caller>,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let q = CostQuery::parse(&raw, chrono::Utc::now())?;
    let dialect = state.store.dialect();
    let mut p = Params::new(dialect);
    let mut filter = ledger_where(&mut p, dialect, ns(q.from), ns(q.to), &caller);
    for (d, v) in &q.filters {
        let placeholder = p.add(Param::Str(v.clone()));
        filter.push_str(&format!(" AND {}", d.matches(&placeholder)));
    }
    let mut select = vec![];
    let mut group = vec![];
    if let Some(step) = q.step {
        select.push(format!("{} AS period", dialect.trunc_ns(step.name(), "ChargePeriodStart")));
        group.push("period".to_owned());
    }
    for d in &q.group_by {
        select.push(format!("{} AS {}", d.column(), d.name()));
        group.push(d.name().to_owned());
    }
    select.push("sum(BilledCost) AS cost".into());
    select.push("sum(ConsumedQuantity) AS quantity".into());
    // Quantities of different units (tokens, bytes, queries) never add up:
    // a row's quantity is shown only when all its ledger rows share a unit.
    select.push("min(ConsumedUnit) AS unit_min".into());
    select.push("max(ConsumedUnit) AS unit_max".into());
    let mut sql = format!("SELECT {} FROM costplane_ledger WHERE {filter}", select.join(", "));
    if !group.is_empty() {
        sql.push_str(&format!(" GROUP BY {0} ORDER BY {0}", group.join(", ")));
    }
    let result = state.store.query_with(&sql, &p.values).await?;
    state.count_query(&caller);
    let mut total = Decimal::ZERO;
    let mut rows = Vec::new();
    for r in &result.rows {
        if r.iter().rev().take(4).all(Value::is_null) {
            continue; // an ungrouped sum over no rows
        }
        let mut obj = serde_json::Map::new();
        let mut i = 0;
        if q.step.is_some() {
            obj.insert("period_start".into(), json!(iso(r[0].as_i64().unwrap_or(0))));
            i = 1;
        }
        for d in &q.group_by {
            obj.insert(d.name().into(), json!(text(&r[i])));
            i += 1;
        }
        let cost = decimal(&r[i]);
        total += cost;
        obj.insert("cost".into(), json!(money(cost)));
        let (unit_min, unit_max) = (text(&r[i + 2]), text(&r[i + 3]));
        if unit_min == unit_max {
            obj.insert("quantity".into(), json!(money(decimal(&r[i + 1]))));
            obj.insert("unit".into(), json!(unit_min));
        } else {
            obj.insert("quantity".into(), Value::Null);
            obj.insert("unit".into(), json!("mixed; add group_by=unit to see quantities"));
        }
        rows.push(Value::Object(obj));
    }
    Ok(Json(json!({
        "from": iso(ns(q.from)),
        "to": iso(ns(q.to)),
        "step": q.step.map(Step::name),
        "group_by": q.group_by.iter().map(|d| d.name()).collect::<Vec<_>>(),
        "currency": state.meter.catalog.currency,
        "total": money(total),
        "rows": rows,
    }))
    .into_response())
}

pub async fn unpriced(
    State(state): State<CostState>,
    Extension(caller): Extension<Caller>,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    for key in raw.keys() {
        if key != "from" && key != "to" {
            return Err(ApiError::new(ErrorCode::InvalidArgument, format!("unknown parameter '{key}'; use from and to")));
        }
    }
    let q = CostQuery::parse(&raw, chrono::Utc::now())?;
    let dialect = state.store.dialect();
    let mut p = Params::new(dialect);
    let filter = ledger_where(&mut p, dialect, ns(q.from), ns(q.to), &caller);
    let sql = format!(
        "SELECT x_Tenant, x_Project, x_Service, ProviderName, x_Model, x_UsageType, sum(ConsumedQuantity) AS tokens \
         FROM costplane_ledger WHERE {filter} AND x_PricingStatus = 'unpriced' \
         GROUP BY x_Tenant, x_Project, x_Service, ProviderName, x_Model, x_UsageType ORDER BY x_Model, x_Tenant, x_UsageType"
    );
    let result = state.store.query_with(&sql, &p.values).await?;
    state.count_query(&caller);
    let rows: Vec<Value> = result
        .rows
        .iter()
        .map(|r| {
            json!({
                "tenant": text(&r[0]), "project": text(&r[1]), "service": text(&r[2]), "provider": text(&r[3]),
                "model": text(&r[4]), "token_type": text(&r[5]), "tokens": money(decimal(&r[6])),
            })
        })
        .collect();
    Ok(Json(json!({ "from": iso(ns(q.from)), "to": iso(ns(q.to)), "rows": rows })).into_response())
}

pub async fn export(
    State(state): State<CostState>,
    Extension(caller): Extension<Caller>,
    billing: Option<Extension<Arc<crate::config::BillingSection>>>,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    for key in raw.keys() {
        if key != "month" && key != "format" {
            return Err(ApiError::new(ErrorCode::InvalidArgument, format!("unknown parameter '{key}'; use month and format")));
        }
    }
    let month = raw.get("month").ok_or_else(|| ApiError::new(ErrorCode::InvalidArgument, "month is required, e.g. ?month=2026-10"))?;
    let (from, to) = parse_month(month)?;
    let format = raw.get("format").map(String::as_str).unwrap_or("csv");
    if format == "csv" || format == "focus" {
        state.count_query(&caller);
    }
    let scope =
        caller.tenant().map(|t| format!("-{}", t.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"))).unwrap_or_default();
    let (body, name) = match format {
        "csv" => (chargeback_stream(state, caller, ns(from), ns(to)), format!("costplane-chargeback-{month}{scope}.csv")),
        "focus" => {
            let billing = billing.map(|Extension(b)| (*b).clone()).unwrap_or_default();
            let ctx = focus::Context { billing, period_start: from, period_end: to };
            (focus::stream(state, caller, ctx), format!("costplane-focus-{month}{scope}.csv"))
        }
        other => {
            return Err(ApiError::new(ErrorCode::InvalidArgument, format!("format={other:?} is not csv or focus")));
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        body,
    )
        .into_response())
}

type Chunk = Result<String, ApiError>;

/// The chargeback CSV: one row per tenant, project, service and signal
/// (telemetry: items, bytes, ingest + storage cost), then LLM spend per
/// tenant, project, service and model. Aggregated rows: small even for big months.
fn chargeback_stream(state: CostState, caller: Caller, from: i64, to: i64) -> Body {
    let stream = futures::stream::once(async move {
        let dialect = state.store.dialect();
        let mut out =
            csv::line(&["kind", "tenant", "project", "service", "signal", "model", "items", "bytes", "tokens", "cost"].map(String::from));
        // Telemetry: usage facts and their ledger cost.
        let mut p = Params::new(dialect);
        let hour = dialect.ns("Hour");
        let mut filter = format!("{hour} >= {} AND {hour} < {}", p.add(Param::Int(from)), p.add(Param::Int(to)));
        if let Some(t) = caller.tenant() {
            filter.push_str(&format!(" AND Tenant = {}", p.add(Param::Str(t.to_owned()))));
        }
        let usage = state
            .store
            .query_with(
                &format!(
                    "SELECT Tenant, Project, Service, Signal, sum(Items), sum(Bytes) FROM costplane_usage_telemetry \
                     WHERE {filter} GROUP BY Tenant, Project, Service, Signal ORDER BY Tenant, Project, Service, Signal"
                ),
                &p.values,
            )
            .await?;
        let mut p = Params::new(dialect);
        let lw = ledger_where(&mut p, dialect, from, to, &caller);
        let ledger = state
            .store
            .query_with(
                &format!(
                    "SELECT x_Tenant, x_Project, x_Service, x_UsageType, x_Model, sum(BilledCost), sum(ConsumedQuantity), x_Source \
                     FROM costplane_ledger WHERE {lw} GROUP BY x_Tenant, x_Project, x_Service, x_UsageType, x_Model, x_Source \
                     ORDER BY x_Tenant, x_Project, x_Service, x_Model"
                ),
                &p.values,
            )
            .await?;
        let mut ingest: HashMap<(String, String, String, String), Decimal> = HashMap::new();
        let mut llm: BTreeMap<(String, String, String, String), (Decimal, Decimal)> = BTreeMap::new();
        for r in &ledger.rows {
            let key = (text(&r[0]), text(&r[1]), text(&r[2]));
            if text(&r[7]) == "telemetry" {
                *ingest.entry((key.0, key.1, key.2, text(&r[3]))).or_default() += decimal(&r[5]);
            } else {
                let e = llm.entry((key.0, key.1, key.2, text(&r[4]))).or_default();
                e.0 += decimal(&r[6]);
                e.1 += decimal(&r[5]);
            }
        }
        let gib = Decimal::from(1_073_741_824u64);
        let storage_rate = state.meter.rates.storage_per_gib_month;
        // Storage: the month's ingested bytes kept for the month, shrunk by
        // the table's compression ratio where the store reports it
        // (ClickHouse's system.parts); otherwise the bytes as sent.
        let ratios: HashMap<String, Decimal> = if storage_rate.is_zero() {
            HashMap::new()
        } else {
            state
                .store
                .compression_ratios()
                .await?
                .into_iter()
                .filter_map(|(signal, r)| Decimal::from_f64_retain(r).map(|d| (signal, d.round_dp(6))))
                .collect()
        };
        for r in &usage.rows {
            let key = (text(&r[0]), text(&r[1]), text(&r[2]), text(&r[3]));
            let bytes = decimal(&r[5]);
            let ratio = ratios.get(&key.3).copied().unwrap_or(Decimal::ONE);
            let storage = (bytes * ratio / gib * storage_rate).round_dp(costplane_telemetry::usage::MONEY_SCALE);
            let cost = ingest.get(&key).copied().unwrap_or_default() + storage;
            out.push_str(&csv::line(&[
                csv::text("telemetry"),
                csv::text(&key.0),
                csv::text(&key.1),
                csv::text(&key.2),
                csv::text(&key.3),
                String::new(),
                csv::number(&text(&r[4])),
                csv::number(&text(&r[5])),
                String::new(),
                csv::number(&money(cost)),
            ]));
        }
        for ((tenant, project, service, model), (tokens, cost)) in llm {
            out.push_str(&csv::line(&[
                csv::text("llm"),
                csv::text(&tenant),
                csv::text(&project),
                csv::text(&service),
                String::new(),
                csv::text(&model),
                String::new(),
                String::new(),
                csv::number(&money(tokens)),
                csv::number(&money(cost)),
            ]));
        }
        Ok::<String, ApiError>(out)
    });
    Body::from_stream(stream)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepriceRequest {
    from: String,
    to: String,
}

/// Recomputes the LLM ledger rows of `[from, to)` from stored usage with
/// the current catalog (reloaded, so a changed override file counts).
pub async fn reprice(
    State(state): State<CostState>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::new(ErrorCode::PermissionDenied, "repricing needs an admin API key"));
    }
    let req: RepriceRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(ErrorCode::InvalidArgument, format!("expected {{\"from\": \"YYYY-MM-DD\", \"to\": \"YYYY-MM-DD\"}}: {e}"))
    })?;
    let (from, to) = (parse_time("from", &req.from)?, parse_time("to", &req.to)?);
    if from >= to {
        return Err(ApiError::new(ErrorCode::InvalidArgument, "from must be before to"));
    }
    // Whole hours only: a ledger row covers an hour.
    let hour = 3_600_000_000_000i64;
    let (from_ns, to_ns) = (ns(from).div_euclid(hour) * hour, ns(to).div_euclid(hour) * hour);
    let meter = Meter {
        catalog: Arc::new(costplane_cost::Catalog::load(state.cost_config.price_overrides.as_deref()).map_err(internal)?),
        ..(*state.meter).clone()
    };
    let dialect = state.store.dialect();
    let before = sum_llm(&state, from_ns, to_ns).await?;
    let mut p = Params::new(dialect);
    let ts = dialect.ns("Timestamp");
    let sql = format!(
        "SELECT {ts}, Tenant, Project, Service, TraceId, SpanId, Provider, Model, Operation, InputTokens, OutputTokens, \
         CacheReadTokens, CacheWriteTokens, ReasoningTokens, ProvidedCost FROM costplane_usage_llm \
         WHERE {ts} >= {} AND {ts} < {}",
        p.add(Param::Int(from_ns)),
        p.add(Param::Int(to_ns))
    );
    let usage = state.store.query_with(&sql, &p.values).await?;
    let count = |v: &Value| v.as_u64().unwrap_or(0);
    let rows: Vec<LlmUsageRow> = usage
        .rows
        .iter()
        .map(|r| LlmUsageRow {
            timestamp_ns: r[0].as_i64().unwrap_or(0),
            tenant: text(&r[1]),
            project: text(&r[2]),
            service: text(&r[3]),
            trace_id: text(&r[4]),
            span_id: text(&r[5]),
            usage: LlmUsage {
                provider: text(&r[6]),
                model: text(&r[7]),
                operation: text(&r[8]),
                input_tokens: count(&r[9]),
                output_tokens: count(&r[10]),
                cache_read_tokens: count(&r[11]),
                cache_write_tokens: count(&r[12]),
                reasoning_tokens: count(&r[13]),
                provided_cost: (!r[14].is_null()).then(|| decimal(&r[14])),
            },
        })
        .collect();
    let ledger = meter.llm_ledger(&rows);
    state.store.delete_ledger("llm", from_ns, to_ns).await?;
    if !ledger.is_empty() {
        let batch = TelemetryBatch { id: rand::random(), usage: UsageRows { ledger, ..UsageRows::default() }, ..TelemetryBatch::default() };
        state.store.write(&batch).await?;
    }
    let after = sum_llm(&state, from_ns, to_ns).await?;
    tracing::info!(from = %iso(from_ns), to = %iso(to_ns), usage_rows = rows.len(), before = %money(before), after = %money(after), "repriced");
    Ok(Json(json!({
        "from": iso(from_ns),
        "to": iso(to_ns),
        "usage_rows": rows.len(),
        "catalog_version": meter.catalog.version,
        "cost_before": money(before),
        "cost_after": money(after),
        "change": money(after - before),
    }))
    .into_response())
}

async fn sum_llm(state: &CostState, from: i64, to: i64) -> Result<Decimal, ApiError> {
    let dialect = state.store.dialect();
    let mut p = Params::new(dialect);
    let lw = ledger_where(&mut p, dialect, from, to, &Caller::Admin);
    let r =
        state.store.query_with(&format!("SELECT sum(BilledCost) FROM costplane_ledger WHERE {lw} AND x_Source = 'llm'"), &p.values).await?;
    Ok(r.rows.first().and_then(|row| row.first()).map(decimal).unwrap_or_default())
}
