//! Kubernetes and cloud-bill endpoints, read from the ledger:
//! - `GET /api/v1/allocation`: OpenCost's `/allocation` shape
//!   (`{"code","status","data":[{name: {...}}]}`), every amount an exact
//!   decimal string. Parameters: `window` (RFC 3339 or unix pair `a,b`,
//!   `today`, `yesterday`, `week`, `month`, `lastmonth`, `Nh`, `Nd`),
//!   `aggregate` (comma list of cluster, node, namespace, pod, container,
//!   service, tenant, `label:<k>`, or `all`; default cluster, node,
//!   namespace, pod, container), `step` (`Nh` / `Nd`; default the window),
//!   `accumulate`, `includeIdle`, `shareIdle` (weighted),
//!   `shareNamespaces` (comma list) with `shareSplit` (`even` | `weighted`).
//!   Shares use [`costplane_k8s::share::split`], so they conserve exactly.
//! - `GET /api/v1/costs/untagged?from&to`: Kubernetes and cloud cost
//!   without a tenant (`x_Tenant = unassigned`) or, for bills, a service tag.
//! - `POST /api/v1/kubernetes/flush` (admin): stores every open hour's
//!   usage now and has the closer price it before answering.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use costplane_k8s::share::split;
use costplane_k8s::ShareSplit;
use costplane_telemetry::usage::{CostFilter, Dimension, LedgerRow};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::costs::params::{iso, ns, parse_time};
use crate::costs::CostState;
use crate::error::{ApiError, ErrorCode};
use crate::kubernetes::KubernetesMetering;

const IDLE: &str = "__idle__";
const UNALLOCATED: &str = "__unallocated__";
const GIB: Decimal = Decimal::from_parts(1_073_741_824, 0, 0, false, 0);

pub fn router(costs: CostState) -> Router {
    Router::new()
        .route("/api/v1/allocation", get(allocation))
        .route("/api/v1/costs/untagged", get(untagged))
        .route("/api/v1/kubernetes/flush", post(flush))
        .with_state(costs)
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidArgument, m)
}

fn s(d: Decimal) -> String {
    d.normalize().to_string()
}

fn duration(v: &str) -> Option<Duration> {
    let (n, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: i64 = n.parse().ok().filter(|n| *n > 0)?;
    match unit {
        "m" => Some(Duration::minutes(n)),
        "h" => Some(Duration::hours(n)),
        "d" => Some(Duration::days(n)),
        _ => None,
    }
}

/// `[start, end)` of an OpenCost window.
pub fn window(v: &str, now: DateTime<Utc>) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let midnight = |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"));
    let today = midnight(now.date_naive());
    let month_start = |y: i32, m: u32| midnight(NaiveDate::from_ymd_opt(y, m, 1).expect("a month"));
    Ok(match v {
        "today" => (today, today + Duration::days(1)),
        "yesterday" => (today - Duration::days(1), today),
        "week" => (today - Duration::days(i64::from(now.weekday().num_days_from_sunday())), today + Duration::days(1)),
        "month" => (month_start(now.year(), now.month()), today + Duration::days(1)),
        "lastmonth" => {
            let this = month_start(now.year(), now.month());
            let prev = if now.month() == 1 { month_start(now.year() - 1, 12) } else { month_start(now.year(), now.month() - 1) };
            (prev, this)
        }
        _ => {
            if let Some(d) = duration(v) {
                return Ok((now - d, now));
            }
            let (a, b) = v.split_once(',').ok_or_else(|| bad(format!("window={v:?} is not a window")))?;
            let t = |x: &str| match x.parse::<i64>() {
                Ok(secs) => DateTime::from_timestamp(secs, 0).ok_or_else(|| bad(format!("window={v:?} is out of range"))),
                Err(_) => parse_time("window", x),
            };
            let (a, b) = (t(a.trim())?, t(b.trim())?);
            if b <= a {
                return Err(bad(format!("window={v:?} ends before it starts")));
            }
            (a, b)
        }
    })
}

/// One ledger row as the allocation needs it.
struct Row {
    start: i64,
    cost: Decimal,
    quantity: Decimal,
    usage_type: String,
    props: BTreeMap<&'static str, String>,
    labels: Map<String, Value>,
    usage_avg: Decimal,
    request_avg: Decimal,
}

#[derive(Default, Clone)]
struct Sums {
    cpu_core_hours: Decimal,
    cpu_usage_hours: Decimal,
    cpu_request_hours: Decimal,
    cpu_cost: Decimal,
    gpu_hours: Decimal,
    gpu_cost: Decimal,
    ram_byte_hours: Decimal,
    ram_usage_byte_hours: Decimal,
    ram_request_byte_hours: Decimal,
    ram_cost: Decimal,
    pv_byte_hours: Decimal,
    pv_cost: Decimal,
    network_transfer_bytes: Decimal,
    network_receive_bytes: Decimal,
    network_cost: Decimal,
    shared_cost: Decimal,
    idle: bool,
}

impl Sums {
    fn add(&mut self, r: &Row) {
        // Usage and request hours from quantity = max(usage, request) × hours.
        let m = r.usage_avg.max(r.request_avg);
        let (uh, rh) =
            if m > Decimal::ZERO { (r.quantity * r.usage_avg / m, r.quantity * r.request_avg / m) } else { (Decimal::ZERO, Decimal::ZERO) };
        match r.usage_type.as_str() {
            "cpu" | "idle/cpu" => {
                self.cpu_core_hours += r.quantity;
                self.cpu_usage_hours += uh;
                self.cpu_request_hours += rh;
                self.cpu_cost += r.cost;
            }
            "memory" | "idle/memory" => {
                self.ram_byte_hours += r.quantity * GIB;
                self.ram_usage_byte_hours += uh * GIB;
                self.ram_request_byte_hours += rh * GIB;
                self.ram_cost += r.cost;
            }
            "gpu" => {
                self.gpu_hours += r.quantity;
                self.gpu_cost += r.cost;
            }
            "volume" => {
                self.pv_byte_hours += r.quantity * GIB;
                self.pv_cost += r.cost;
            }
            "network/transmit" => {
                self.network_transfer_bytes += r.quantity * GIB;
                self.network_cost += r.cost;
            }
            "network/receive" => {
                self.network_receive_bytes += r.quantity * GIB;
                self.network_cost += r.cost;
            }
            _ => self.shared_cost += r.cost,
        }
    }

    fn total(&self) -> Decimal {
        self.cpu_cost + self.gpu_cost + self.ram_cost + self.pv_cost + self.network_cost + self.shared_cost
    }
}

/// OpenCost's efficiency: usage / request, 1 when used without a request.
fn efficiency(usage: Decimal, request: Decimal, cost: Decimal) -> Decimal {
    if request > Decimal::ZERO {
        usage / request
    } else if usage > Decimal::ZERO && cost > Decimal::ZERO {
        Decimal::ONE
    } else {
        Decimal::ZERO
    }
}

fn key_of(r: &Row, aggregate: &[String]) -> String {
    if r.props.get("namespace").map(String::as_str) == Some(IDLE) {
        return match aggregate.iter().any(|a| a == "node") {
            true => format!("{}/{IDLE}", r.props.get("node").cloned().unwrap_or_default()),
            false => IDLE.to_owned(),
        };
    }
    let parts: Vec<String> = aggregate
        .iter()
        .map(|a| {
            let v = match a.strip_prefix("label:") {
                Some(k) => r.labels.get(&format!("label:{k}")).and_then(|v| v.as_str()).unwrap_or("").to_owned(),
                None => r.props.get(a.as_str()).cloned().unwrap_or_default(),
            };
            if v.is_empty() {
                UNALLOCATED.to_owned()
            } else {
                v
            }
        })
        .collect();
    parts.join("/")
}

/// The visible ledger rows of one source in `[from, to)`, through the
/// ledger repository (current revisions only).
async fn source_rows(state: &CostState, caller: &Caller, source: &str, from: i64, to: i64) -> Result<Vec<LedgerRow>, ApiError> {
    state.fresh().await?;
    let filter = CostFilter {
        from_ns: from,
        to_ns: to,
        tenant: caller.tenant().map(str::to_owned),
        equals: vec![(Dimension::Source, source.to_owned())],
    };
    Ok(state.ledger().rows(&filter).await?)
}

async fn load(state: &CostState, caller: &Caller, from: i64, to: i64) -> Result<Vec<Row>, ApiError> {
    Ok(source_rows(state, caller, "kubernetes", from, to)
        .await?
        .into_iter()
        .map(|r| {
            let tags: Map<String, Value> = serde_json::from_str(&r.tags).unwrap_or_default();
            let tag_dec = |k: &str| tags.get(k).and_then(|v| v.as_str()).and_then(|v| v.parse().ok()).unwrap_or_default();
            let props = BTreeMap::from([
                ("cluster", r.ext.cluster.clone()),
                ("node", r.ext.node.clone()),
                ("namespace", r.ext.namespace.clone()),
                ("pod", r.ext.pod.clone()),
                ("container", r.ext.container.clone()),
                ("service", r.service.clone()),
                ("tenant", r.tenant.clone()),
            ]);
            Row {
                start: r.charge_period_start_ns,
                cost: r.cost,
                quantity: r.consumed_quantity,
                usage_type: r.usage_type.clone(),
                usage_avg: tag_dec("usage_avg"),
                request_avg: tag_dec("request_avg"),
                labels: tags.into_iter().filter(|(k, _)| k.starts_with("label:")).collect(),
                props,
            }
        })
        .collect())
}

fn flag(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "true" || v == "1")
}

/// Moves `from` keys' totals into the `sharedCost` of the others (exact split).
fn share_out(sets: &mut BTreeMap<String, Sums>, from: &[String], how: ShareSplit) {
    let total: Decimal = from.iter().filter_map(|k| sets.get(k)).map(Sums::total).sum();
    let recipients: Vec<(String, Decimal)> =
        sets.iter().filter(|(k, v)| !from.contains(k) && !v.idle).map(|(k, v)| (k.clone(), v.total() - v.shared_cost)).collect();
    let shares = split(total, &recipients, how);
    if shares.is_empty() {
        return;
    }
    for k in from {
        sets.remove(k);
    }
    for (k, amount) in shares {
        if let Some(v) = sets.get_mut(&k) {
            v.shared_cost += amount;
        }
    }
}

async fn allocation(
    State(state): State<CostState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let (start, end) = window(q.get("window").map(String::as_str).ok_or_else(|| bad("window is required"))?, now)?;
    let aggregate: Vec<String> = match q.get("aggregate").map(String::as_str).unwrap_or("") {
        "" => ["cluster", "node", "namespace", "pod", "container"].map(String::from).to_vec(),
        "all" => Vec::new(),
        a => a.split(',').map(|x| x.trim().to_owned()).collect(),
    };
    for a in &aggregate {
        let known = ["cluster", "node", "namespace", "pod", "container", "service", "tenant"].contains(&a.as_str());
        if !known && !a.starts_with("label:") {
            return Err(bad(format!("aggregate={a:?} is not supported")));
        }
    }
    let step = match q.get("step") {
        Some(v) => duration(v).filter(|d| d.num_hours() >= 1).ok_or_else(|| bad(format!("step={v:?} is not a duration of whole hours")))?,
        None => end - start,
    };
    let accumulate = flag(&q, "accumulate");
    let include_idle = flag(&q, "includeIdle");
    let share_idle = flag(&q, "shareIdle");
    let shared_ns: Vec<String> =
        q.get("shareNamespaces").map(|v| v.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect()).unwrap_or_default();
    let how = match q.get("shareSplit").map(String::as_str) {
        None | Some("weighted") => ShareSplit::Weighted,
        Some("even") => ShareSplit::Even,
        Some(v) => return Err(bad(format!("shareSplit={v:?} is not even or weighted"))),
    };
    let rows = load(&state, &caller, ns(start), ns(end)).await?;
    let steps: Vec<(DateTime<Utc>, DateTime<Utc>)> = if accumulate {
        vec![(start, end)]
    } else {
        let mut v = Vec::new();
        let mut t = start;
        while t < end {
            v.push((t, (t + step).min(end)));
            t += step;
        }
        v
    };
    let mut data = Vec::new();
    for (a, b) in steps {
        let (a_ns, b_ns) = (ns(a), ns(b));
        let mut sets: BTreeMap<String, Sums> = BTreeMap::new();
        let mut props: BTreeMap<String, BTreeMap<&'static str, String>> = BTreeMap::new();
        // Shared-namespace rows are keyed by their namespace so they can be
        // shared out, whatever the aggregation.
        for r in rows.iter().filter(|r| r.start >= a_ns && r.start < b_ns) {
            let ns_name = r.props.get("namespace").cloned().unwrap_or_default();
            let key = if shared_ns.contains(&ns_name) { format!("__shared__/{ns_name}") } else { key_of(r, &aggregate) };
            let e = sets.entry(key.clone()).or_default();
            e.idle = ns_name == IDLE;
            e.add(r);
            let p = props.entry(key).or_insert_with(|| r.props.clone());
            p.retain(|k, v| r.props.get(k) == Some(v));
        }
        let idle_keys: Vec<String> = sets.iter().filter(|(_, v)| v.idle).map(|(k, _)| k.clone()).collect();
        if share_idle {
            share_out(&mut sets, &idle_keys, ShareSplit::Weighted);
        } else if !include_idle {
            for k in &idle_keys {
                sets.remove(k);
            }
        }
        let shared_keys: Vec<String> = sets.keys().filter(|k| k.starts_with("__shared__/")).cloned().collect();
        share_out(&mut sets, &shared_keys, how);
        let minutes = Decimal::from((b - a).num_minutes());
        let set: Map<String, Value> = sets
            .iter()
            .map(|(k, v)| {
                let p = props.get(k).cloned().unwrap_or_default();
                let cpu_eff = efficiency(v.cpu_usage_hours, v.cpu_request_hours, v.cpu_cost);
                let ram_eff = efficiency(v.ram_usage_byte_hours, v.ram_request_byte_hours, v.ram_cost);
                let cr = v.cpu_cost + v.ram_cost;
                let total_eff = if cr > Decimal::ZERO { (cpu_eff * v.cpu_cost + ram_eff * v.ram_cost) / cr } else { Decimal::ZERO };
                let hours = minutes / Decimal::from(60);
                let avg = |x: Decimal| if hours > Decimal::ZERO { s((x / hours).round_dp(12)) } else { "0".into() };
                let value = json!({
                    "name": k,
                    "properties": p,
                    "window": {"start": iso(a_ns), "end": iso(b_ns)},
                    "start": iso(a_ns),
                    "end": iso(b_ns),
                    "minutes": s(minutes),
                    "cpuCores": avg(v.cpu_core_hours),
                    "cpuCoreRequestAverage": avg(v.cpu_request_hours),
                    "cpuCoreUsageAverage": avg(v.cpu_usage_hours),
                    "cpuCoreHours": s(v.cpu_core_hours),
                    "cpuCost": s(v.cpu_cost),
                    "cpuEfficiency": s(cpu_eff.round_dp(6)),
                    "gpuHours": s(v.gpu_hours),
                    "gpuCost": s(v.gpu_cost),
                    "ramBytes": avg(v.ram_byte_hours),
                    "ramByteRequestAverage": avg(v.ram_request_byte_hours),
                    "ramByteUsageAverage": avg(v.ram_usage_byte_hours),
                    "ramByteHours": s(v.ram_byte_hours),
                    "ramCost": s(v.ram_cost),
                    "ramEfficiency": s(ram_eff.round_dp(6)),
                    "pvByteHours": s(v.pv_byte_hours),
                    "pvCost": s(v.pv_cost),
                    "networkTransferBytes": s(v.network_transfer_bytes),
                    "networkReceiveBytes": s(v.network_receive_bytes),
                    "networkCost": s(v.network_cost),
                    "loadBalancerCost": "0",
                    "externalCost": "0",
                    "sharedCost": s(v.shared_cost),
                    "totalCost": s(v.total()),
                    "totalEfficiency": s(total_eff.round_dp(6)),
                });
                (k.clone(), value)
            })
            .collect();
        data.push(Value::Object(set));
    }
    Ok(Json(json!({"code": 200, "status": "success", "data": data})).into_response())
}

async fn untagged(
    State(state): State<CostState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let from = parse_time("from", q.get("from").ok_or_else(|| bad("from is required"))?)?;
    let to = parse_time("to", q.get("to").ok_or_else(|| bad("to is required"))?)?;
    // (source, provider, project) -> (cost, rows)
    let mut groups: BTreeMap<(String, String, String), (Decimal, u64)> = BTreeMap::new();
    for source in ["cloud", "kubernetes"] {
        for r in source_rows(&state, &caller, source, ns(from), ns(to)).await? {
            if r.tenant == "unassigned" || (source == "cloud" && r.service == "unassigned") {
                let g = groups.entry((r.source.clone(), r.provider_name.clone(), r.project.clone())).or_default();
                g.0 += r.cost;
                g.1 += 1;
            }
        }
    }
    let mut total = Decimal::ZERO;
    let rows: Vec<Value> = groups
        .into_iter()
        .map(|((source, provider, project), (cost, n))| {
            total += cost;
            json!({"source": source, "provider": provider, "project": project, "cost": s(cost), "rows": n})
        })
        .collect();
    Ok(Json(json!({"from": iso(ns(from)), "to": iso(ns(to)), "total": s(total), "rows": rows})).into_response())
}

async fn flush(
    State(state): State<CostState>,
    Extension(caller): Extension<Caller>,
    k8s: Option<Extension<Option<Arc<KubernetesMetering>>>>,
) -> Result<Response, ApiError> {
    if caller.tenant().is_some() {
        return Err(ApiError::new(ErrorCode::PermissionDenied, "flushing needs an admin key"));
    }
    let Some(Extension(Some(k))) = k8s else {
        return Err(ApiError::new(ErrorCode::NotFound, "kubernetes metering is off"));
    };
    let rows = k.flush();
    // The usage goes through the pipeline; once it is written the closer
    // prices it, so the answer's caller reads the hours booked.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while state.pipeline.queued_bytes() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    state.closer.refresh_if_older(std::time::Duration::ZERO).await?;
    let st = k.stats();
    Ok(Json(json!({
        "rows": rows,
        "hours_closed": st.hours_closed,
        "samples": st.samples,
        "late_samples": st.late_samples,
        "counter_resets": st.counter_resets,
        "idle_clamps": state.closer.idle_clamps(),
    }))
    .into_response())
}
