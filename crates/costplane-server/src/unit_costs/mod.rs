//! Cost per request and per trace.
//!
//! - `GET /api/v1/unit-costs?from=&to=&group_by=service,route&tenant=&limit=`:
//!   per group of requests (see `costplane_store::unit_costs` for what a
//!   request, route and customer are), the requests, errors and latency,
//!   and their cost split into LLM, compute and telemetry ([`money`] has
//!   the rules), per request and per 1,000 requests.
//! - `GET /api/v1/traces/{trace_id}/cost?from=&to=`: one trace's model
//!   calls with their tokens and cost, its compute share per pod-hour, its
//!   spans' and logs' telemetry cost, and the total.
//!
//! Every parameter is checked before any work; windows are whole hours
//! (from is rounded down, to up) of at most [`MAX_WINDOW_DAYS`]; no read of
//! spans is unbounded. A tenant key sees only its tenant's requests and
//! money (`tenant=` naming another tenant is refused).

pub mod metrics;
mod money;
mod params;

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::DateTime;
use costplane_store::unit_costs::{self as store, UnitQuery};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::costs::CostState;
use crate::error::{ApiError, ErrorCode};

pub use money::{GroupCost, UnitCosts};
pub use params::{TraceParams, UnitParams, MAX_WINDOW_DAYS};

/// `[unit_costs]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnitCostsSection {
    /// The span attribute naming the customer a request serves.
    pub customer_attribute: String,
}

impl Default for UnitCostsSection {
    fn default() -> Self {
        UnitCostsSection { customer_attribute: "enduser.id".into() }
    }
}

impl UnitCostsSection {
    pub fn check(&self) -> Result<(), String> {
        let a = &self.customer_attribute;
        if a.is_empty() || a.len() > 256 || a.chars().any(char::is_control) {
            return Err(format!("unit_costs.customer_attribute = {a:?} must be an attribute name of 1 to 256 printable characters"));
        }
        Ok(())
    }
}

/// What the handlers need of the configuration (an extension layered by
/// the server; the defaults when absent).
#[derive(Debug, Clone, Default)]
pub struct UnitCostSettings(pub Arc<UnitCostsSection>);

fn money_text(d: Decimal) -> String {
    d.normalize().to_string()
}

fn opt_money(d: Option<Decimal>) -> Value {
    d.map_or(Value::Null, |d| json!(money_text(d)))
}

fn iso(ns: i64) -> String {
    DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Nanoseconds as exact seconds.
fn seconds(ns: u64) -> String {
    money_text(Decimal::from(ns) / Decimal::from(1_000_000_000u64))
}

fn query_of(state: &CostState, settings: &UnitCostsSection, from_ns: i64, to_ns: i64, tenant: Option<String>) -> UnitQuery {
    let meter = state.meter();
    UnitQuery {
        from_ns,
        to_ns,
        tenant,
        group_by: Vec::new(),
        trace_id: None,
        tenant_attribute: meter.tenancy.tenant_attribute.clone(),
        customer_attribute: settings.customer_attribute.clone(),
        tier_thresholds: meter.catalog.tier_thresholds(),
        max_tokens_per_call: meter.catalog.limits.max_tokens_per_call,
    }
}

/// Reads everything one answer needs and prices it.
async fn unit_costs_of(state: &CostState, q: &UnitQuery) -> Result<(UnitCosts, Vec<store::PodShare>), ApiError> {
    let s = state.store.as_ref();
    let rows = store::read(s, q).await?;
    let rates = store::item_costs(s, q).await?;
    let meter = state.meter();
    Ok((money::assemble(&meter, &rows.requests, &rows.calls, &rows.pods, &rows.items, &rates), rows.pods))
}

/// One answer of `GET /api/v1/unit-costs` over `[from_ns, to_ns)` (whole
/// hours) for `tenant`, grouped by `group_by`: the same reads and rules,
/// for surfaces that show the API's figures without going through HTTP.
pub async fn answer(
    state: &CostState,
    settings: &UnitCostsSection,
    from_ns: i64,
    to_ns: i64,
    tenant: Option<String>,
    group_by: Vec<store::UnitDim>,
) -> Result<UnitCosts, ApiError> {
    let mut q = query_of(state, settings, from_ns, to_ns, tenant);
    q.group_by = group_by;
    unit_costs_of(state, &q).await.map(|(answer, _)| answer)
}

fn group_json(g: &GroupCost, dims: &[store::UnitDim]) -> Value {
    let mut obj = serde_json::Map::new();
    for (d, v) in dims.iter().zip(&g.key) {
        obj.insert(d.name().into(), json!(v));
    }
    obj.insert("requests".into(), json!(g.requests));
    obj.insert("errors".into(), json!(g.errors));
    obj.insert("error_ratio".into(), json!(money_text(g.error_ratio())));
    obj.insert("p50_seconds".into(), json!(seconds(g.p50_ns)));
    obj.insert("p95_seconds".into(), json!(seconds(g.p95_ns)));
    obj.insert("traces".into(), json!(g.traces));
    obj.insert(
        "cost".into(),
        json!({
            "llm": money_text(g.llm),
            "compute": opt_money(g.compute),
            "telemetry": money_text(g.telemetry),
            "total": money_text(g.total()),
            "per_request": money_text(g.per_request()),
            "per_1000_requests": money_text(g.per_1000_requests()),
        }),
    );
    obj.insert("llm".into(), json!({ "calls": g.llm_calls, "unpriced_calls": g.unpriced_calls, "invalid_calls": g.invalid_calls }));
    obj.insert(
        "compute".into(),
        json!({
            "requests_priced": g.compute_requests,
            "requests_unknown": g.requests.saturating_sub(g.compute_requests),
        }),
    );
    obj.insert("telemetry".into(), json!({ "spans": g.spans, "logs": g.logs }));
    Value::Object(obj)
}

/// `GET /api/v1/unit-costs`.
pub async fn unit_costs(
    State(state): State<CostState>,
    Extension(caller): Extension<Caller>,
    settings: Option<Extension<UnitCostSettings>>,
    Query(raw): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let p = UnitParams::parse(&raw, &caller, chrono::Utc::now())?;
    let settings = settings.map(|Extension(s)| s).unwrap_or_default();
    state.fresh().await?;
    let mut q = query_of(&state, &settings.0, p.from_ns, p.to_ns, p.tenant.clone());
    q.group_by = p.group_by.clone();
    let (answer, _) = unit_costs_of(&state, &q).await?;
    state.count_query(&caller);
    let groups: Vec<Value> = answer.groups.iter().take(p.limit).map(|g| group_json(g, &p.group_by)).collect();
    Ok(Json(json!({
        "from": iso(p.from_ns),
        "to": iso(p.to_ns),
        "group_by": p.group_by.iter().map(|d| d.name()).collect::<Vec<_>>(),
        "currency": state.meter().catalog.currency,
        "customer_attribute": settings.0.customer_attribute,
        "groups_total": answer.groups.len(),
        "truncated": answer.groups.len() > p.limit,
        "groups": groups,
    }))
    .into_response())
}

/// `GET /api/v1/traces/{trace_id}/cost`.
pub async fn trace_cost(
    State(state): State<CostState>,
    Extension(caller): Extension<Caller>,
    settings: Option<Extension<UnitCostSettings>>,
    Path(trace_id): Path<String>,
    Query(raw): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let p = TraceParams::parse(&trace_id, &raw, chrono::Utc::now())?;
    let settings = settings.map(|Extension(s)| s).unwrap_or_default();
    state.fresh().await?;
    let mut q = query_of(&state, &settings.0, p.from_ns, p.to_ns, caller.tenant().map(str::to_owned));
    q.trace_id = Some(p.trace_id.clone());
    let s = state.store.as_ref();
    let calls = store::trace_calls(s, &q, &p.trace_id).await?;
    // Requests, pods and telemetry are read over the hours the trace's
    // spans are in, not the whole window.
    if let Some((from_ns, to_ns)) = store::trace_hours(s, &q, &p.trace_id).await? {
        q.from_ns = from_ns;
        q.to_ns = to_ns;
    }
    let (answer, pods) = unit_costs_of(&state, &q).await?;
    state.count_query(&caller);
    let meter = state.meter();
    let priced = money::price_calls(&meter, &calls);
    if calls.is_empty() && answer.groups.is_empty() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "no requests or LLM calls of trace {} between {} and {}; widen from/to if the trace is older",
                p.trace_id,
                iso(p.from_ns),
                iso(p.to_ns)
            ),
        ));
    }
    let total = answer.total();
    let llm: Decimal = priced.iter().filter(|c| c.billed).map(|c| c.cost).sum();
    let telemetry = total.telemetry;
    let compute = total.compute;
    let sum = llm + compute.unwrap_or_default() + telemetry;
    let call_rows: Vec<Value> = priced
        .iter()
        .map(|c| {
            json!({
                "time": iso(c.call.timestamp_ns),
                "span_id": c.call.span_id,
                "tenant": c.call.tenant,
                "service": c.call.service,
                "kind": c.call.kind,
                "provider": c.provider,
                "model": c.model,
                "model_reported": c.call.usage.model,
                "operation": c.call.usage.operation,
                "tokens": {
                    "input": c.call.usage.input_tokens,
                    "output": c.call.usage.output_tokens,
                    "cache_read": c.call.usage.cache_read_tokens,
                    "cache_write": c.call.usage.cache_write_tokens,
                    "cache_write_1h": c.call.usage.cache_write_1h_tokens,
                    "reasoning": c.call.usage.reasoning_tokens,
                },
                "billed": c.billed,
                "pricing_status": c.status,
                "reason": c.reason,
                "cost": money_text(c.cost),
            })
        })
        .collect();
    let pod_rows: Vec<Value> = pods
        .iter()
        .map(|ps| {
            json!({
                "pod": if ps.pod.is_empty() { Value::Null } else { json!(ps.pod) },
                "hour": iso(ps.hour_ns),
                "requests": ps.requests,
                "busy_seconds": money_text(ps.busy_ns / Decimal::from(1_000_000_000u64)),
                "pod_busy_seconds": money_text(ps.pod_busy_ns / Decimal::from(1_000_000_000u64)),
                "pod_cost": opt_money(ps.cost),
                "share": opt_money(money::pod_share(ps)),
            })
        })
        .collect();
    Ok(Json(json!({
        "trace_id": p.trace_id,
        "from": iso(p.from_ns),
        "to": iso(p.to_ns),
        "currency": meter.catalog.currency,
        "requests": total.requests,
        "p50_seconds": seconds(total.p50_ns),
        "calls": call_rows,
        "llm": money_text(llm),
        "compute": opt_money(compute),
        "compute_detail": pod_rows,
        "telemetry": { "spans": total.spans, "logs": total.logs, "cost": money_text(telemetry) },
        "total": money_text(sum),
    }))
    .into_response())
}
