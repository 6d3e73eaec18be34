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
use axum::{Extension, Json};
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use costplane_k8s::share::split;
use costplane_k8s::ShareSplit;
use costplane_telemetry::usage::{CostFilter, Dimension, LedgerRow};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::costs::params::{from_unix, iso, ns, parse_time, shown, EARLIEST_SECS, LATEST_SECS};
use crate::costs::CostState;
use crate::error::{ApiError, ErrorCode};
use crate::kubernetes::KubernetesMetering;

const IDLE: &str = "__idle__";
const UNALLOCATED: &str = "__unallocated__";
const GIB: Decimal = Decimal::from_parts(1_073_741_824, 0, 0, false, 0);

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidArgument, m)
}

fn s(d: Decimal) -> String {
    d.normalize().to_string()
}

/// The longest span a window or step may cover: the whole range of times
/// parameters may name.
const MAX_SPAN_SECS: i64 = LATEST_SECS - EARLIEST_SECS;
/// Most entries of `aggregate` and of `shareNamespaces`.
const MAX_AGGREGATE: usize = 16;
const MAX_SHARED_NAMESPACES: usize = 256;
/// The longest `label:<key>` (a Kubernetes label key is at most 317 bytes).
const MAX_LABEL_KEY: usize = 317;

/// `N` followed by `m`, `h` or `d`: N a positive decimal of at most 12
/// digits, the span at most [`MAX_SPAN_SECS`]. Checked arithmetic only.
fn duration(v: &str) -> Option<Duration> {
    let (n, unit) = [('m', 60), ('h', 3_600), ('d', 86_400)].into_iter().find_map(|(c, secs)| v.strip_suffix(c).map(|n| (n, secs)))?;
    if n.is_empty() || n.len() > 12 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = n.parse::<i64>().ok()?.checked_mul(unit)?;
    if secs <= 0 || secs > MAX_SPAN_SECS {
        return None;
    }
    Duration::try_seconds(secs)
}

const WINDOWS: &str = "today, yesterday, week, month, lastmonth, Nm, Nh or Nd (e.g. 7d), or start,end as RFC 3339 times, \
                       dates or Unix seconds";

/// `[start, end)` of an OpenCost window, within [1970-01-01, 2262-01-01].
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
            if v.ends_with(['m', 'h', 'd']) && v.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
                let d = duration(v).ok_or_else(|| {
                    bad(format!("window={} is not a duration: use a positive whole number of m, h or d up to 292 years", shown(v)))
                })?;
                let start = now
                    .checked_sub_signed(d)
                    .filter(|s| s.timestamp() >= EARLIEST_SECS)
                    .ok_or_else(|| bad(format!("window={} reaches before 1970-01-01; use a shorter window", shown(v))))?;
                return Ok((start, now));
            }
            let (a, b) = v.split_once(',').ok_or_else(|| bad(format!("window={} is not a window; use {WINDOWS}", shown(v))))?;
            let t = |x: &str| {
                if !x.is_empty() && x.len() <= 12 && x.bytes().all(|b| b.is_ascii_digit()) {
                    let secs: i64 = x.parse().map_err(|_| bad(format!("window={} is out of range", shown(v))))?;
                    from_unix("window", v, secs)
                } else {
                    parse_time("window", x).map_err(|_| bad(format!("window={} is not a window; use {WINDOWS}", shown(v))))
                }
            };
            let (a, b) = (t(a.trim())?, t(b.trim())?);
            if b <= a {
                return Err(bad(format!("window={} ends before it starts", shown(v))));
            }
            (a, b)
        }
    })
}

/// A step of whole hours (`Nh`, `Nd`).
fn step_of(v: &str) -> Result<Duration, ApiError> {
    duration(v)
        .filter(|d| d.num_seconds() % 3_600 == 0)
        .ok_or_else(|| bad(format!("step={} is not a duration of whole hours (e.g. 1h, 6h, 1d)", shown(v))))
}

type Span = (DateTime<Utc>, DateTime<Utc>);

/// The steps of `[start, end)`, after checking there are at most `max`.
fn steps_of(start: DateTime<Utc>, end: DateTime<Utc>, step: Duration, max: usize) -> Result<Vec<Span>, ApiError> {
    let (span, each) = ((end - start).num_seconds(), step.num_seconds());
    // Both are positive and below 2^34: no overflow.
    let count = (span + each - 1) / each;
    if count > i64::try_from(max).unwrap_or(i64::MAX) {
        return Err(bad(format!(
            "the window and step give {count} steps; at most {max} are served (api.max_steps): use a larger step, a shorter window, \
             or accumulate=true"
        )));
    }
    let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut t = start;
    while t < end {
        let next = t.checked_add_signed(step).map_or(end, |n| n.min(end));
        out.push((t, next));
        t = next;
    }
    Ok(out)
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
                usage_type: r.usage_type.to_string(),
                usage_avg: tag_dec("usage_avg"),
                request_avg: tag_dec("request_avg"),
                labels: tags.into_iter().filter(|(k, _)| k.starts_with("label:")).collect(),
                props,
            }
        })
        .collect())
}

/// A boolean parameter: `true`/`1`, `false`/`0`, absent is false.
fn flag(q: &HashMap<String, String>, k: &str) -> Result<bool, ApiError> {
    match q.get(k).map(String::as_str) {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(v) => Err(bad(format!("{k}={} is not true or false", shown(v)))),
    }
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

pub async fn allocation(
    State(state): State<CostState>,
    Extension(caller): Extension<Caller>,
    bounds: Option<Extension<crate::api::QueryBounds>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let max_steps = bounds.map(|Extension(b)| b.max_steps).unwrap_or(crate::config::DEFAULT_MAX_STEPS);
    let now = Utc::now();
    let (start, end) = window(q.get("window").map(String::as_str).ok_or_else(|| bad(format!("window is required; use {WINDOWS}")))?, now)?;
    let aggregate: Vec<String> = match q.get("aggregate").map(String::as_str).unwrap_or("") {
        "" => ["cluster", "node", "namespace", "pod", "container"].map(String::from).to_vec(),
        "all" => Vec::new(),
        a => {
            let mut list: Vec<String> = Vec::new();
            for x in a.split(',').map(str::trim) {
                let known = ["cluster", "node", "namespace", "pod", "container", "service", "tenant"].contains(&x);
                let label = x.strip_prefix("label:").is_some_and(|k| !k.is_empty() && k.len() <= MAX_LABEL_KEY);
                if !known && !label {
                    return Err(bad(format!(
                        "aggregate={} is not supported; use cluster, node, namespace, pod, container, service, tenant or label:<key>",
                        shown(x)
                    )));
                }
                if !list.iter().any(|y| y == x) {
                    list.push(x.to_owned());
                }
                if list.len() > MAX_AGGREGATE {
                    return Err(bad(format!("aggregate names more than {MAX_AGGREGATE} properties")));
                }
            }
            list
        }
    };
    let accumulate = flag(&q, "accumulate")?;
    let include_idle = flag(&q, "includeIdle")?;
    let share_idle = flag(&q, "shareIdle")?;
    let step = q.get("step").map(String::as_str).map(step_of).transpose()?;
    let shared_ns: std::collections::HashSet<String> =
        q.get("shareNamespaces").map(|v| v.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect()).unwrap_or_default();
    if shared_ns.len() > MAX_SHARED_NAMESPACES {
        return Err(bad(format!("shareNamespaces names more than {MAX_SHARED_NAMESPACES} namespaces")));
    }
    let how = match q.get("shareSplit").map(String::as_str) {
        None | Some("weighted") => ShareSplit::Weighted,
        Some("even") => ShareSplit::Even,
        Some(v) => return Err(bad(format!("shareSplit={} is not even or weighted", shown(v)))),
    };
    // Every parameter is checked, and the steps counted, before anything is read.
    let steps = match (accumulate, step) {
        (false, Some(step)) => steps_of(start, end, step, max_steps)?,
        _ => vec![(start, end)],
    };
    let mut rows = load(&state, &caller, ns(start), ns(end)).await?;
    rows.sort_by_key(|r| r.start);
    let mut data = Vec::new();
    for (a, b) in steps {
        let (a_ns, b_ns) = (ns(a), ns(b));
        let mut sets: BTreeMap<String, Sums> = BTreeMap::new();
        let mut props: BTreeMap<String, BTreeMap<&'static str, String>> = BTreeMap::new();
        // Shared-namespace rows are keyed by their namespace so they can be
        // shared out, whatever the aggregation.
        let (first, last) = (rows.partition_point(|r| r.start < a_ns), rows.partition_point(|r| r.start < b_ns));
        for r in &rows[first..last] {
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

pub async fn untagged(
    State(state): State<CostState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    for key in q.keys() {
        if key != "from" && key != "to" {
            return Err(bad(format!("unknown parameter '{}'; use from and to", crate::costs::params::cut(key))));
        }
    }
    let from = parse_time("from", q.get("from").ok_or_else(|| bad("from is required (YYYY-MM-DD or RFC 3339)"))?)?;
    let to = parse_time("to", q.get("to").ok_or_else(|| bad("to is required (YYYY-MM-DD or RFC 3339)"))?)?;
    if from >= to {
        return Err(bad(format!("from ({}) must be before to ({})", iso(ns(from)), iso(ns(to)))));
    }
    // (source, provider, project) -> (cost, rows)
    let mut groups: BTreeMap<(String, String, String), (Decimal, u64)> = BTreeMap::new();
    for source in ["cloud", "kubernetes"] {
        for r in source_rows(&state, &caller, source, ns(from), ns(to)).await? {
            if r.tenant == "unassigned" || (source == "cloud" && r.service == "unassigned") {
                let g = groups.entry((r.source.to_string(), r.provider_name.clone(), r.project.clone())).or_default();
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

pub async fn flush(
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
    // Samples are metered once stored: what was accepted before this call
    // is written first, then every open hour closed; the hours' usage goes
    // through the pipeline too, and once it is written the closer prices
    // it, so the answer's caller reads the hours booked.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    state.pipeline.wait_stored(deadline).await;
    let rows = k.flush();
    state.pipeline.wait_stored(deadline).await;
    state.closer.refresh_if_older(std::time::Duration::ZERO).await?;
    let st = k.stats();
    Ok(Json(json!({
        "rows": rows,
        "hours_closed": st.hours_closed,
        "samples": st.samples,
        "late_samples": st.late_samples,
        "counter_resets": st.counter_resets,
        "duplicate_samples": st.duplicate_samples,
        "idle_clamps": state.closer.idle_clamps(),
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
    }

    #[test]
    fn windows_parse_with_checked_arithmetic() {
        let (a, b) = window("7d", now()).unwrap();
        assert_eq!((b - a).num_days(), 7);
        let (a, b) = window("1700000000,1700003600", now()).unwrap();
        assert_eq!((a.timestamp(), b.timestamp()), (1_700_000_000, 1_700_003_600));
        assert!(window("2026-10-01,2026-10-02T00:00:00Z", now()).is_ok());
        for bad in [
            "é",
            "1é",
            "éd",
            "99999999999999d",
            "1000000000d",
            "100000d",
            "0d",
            "-1d",
            "1.5h",
            "0,8000000000000",
            "0,99999999999",
            "1700000000,1600000000",
            "-1,1",
            "",
            ",",
            "１d",
        ] {
            assert!(window(bad, now()).is_err(), "{bad}");
        }
    }

    #[test]
    fn steps_are_counted_before_they_are_made() {
        let (a, b) = window("366d", now()).unwrap();
        assert_eq!(steps_of(a, b, step_of("1h").unwrap(), 8_784).unwrap().len(), 8_784);
        let e = steps_of(a, b, step_of("1h").unwrap(), 8_783).unwrap_err();
        assert!(e.message.contains("8784 steps"), "{}", e.message);
        let (a, b) = window("0,9214000000", now()).unwrap();
        assert!(steps_of(a, b, step_of("1h").unwrap(), 100_000).is_err());
        // A last, shorter step ends at the window's end.
        let (a, b) = window("1700000000,1700009000", now()).unwrap();
        let steps = steps_of(a, b, step_of("1h").unwrap(), 10).unwrap();
        assert_eq!(steps.len(), 3);
        assert_eq!(steps[2].1, b);
        for bad in ["90m", "0h", "1m", "9999999999999h", "1 h"] {
            assert!(step_of(bad).is_err(), "{bad}");
        }
    }
}
