//! HTTP handlers of anomalies, forecasts and budgets. Parameters are strict
//! (unknown ones are refused with the accepted list); tenant API keys see
//! only their tenant's anomalies, forecasts and budgets; writes (budget
//! CRUD, backfill) need an admin key, and dismissing needs an admin key or
//! the anomaly's tenant.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{Datelike, Utc};
use costplane_insights::{forecast, Grain};
use costplane_store::{Record, RecordTable};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};

use super::budgets::{self, Origin};
use super::config::{BudgetConfig, Scope};
use super::detect::{self, iso, now_ns, Status};
use super::series;
use super::InsightsState;
use crate::auth::Caller;
use crate::costs::params::{cut, parse_time, shown, Dimension};
use crate::error::{ApiError, ErrorCode};

/// The longest backfill, even asked for explicitly.
pub const MAX_BACKFILL_DAYS: i64 = 400;

/// The longest value a scope filter (`tenant=...`) may have.
const MAX_VALUE_LEN: usize = 1024;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidArgument, msg)
}

/// Writes carry JSON: any other content type is refused before the body is
/// read (the browser guard refuses it too; this holds for the handler alone).
fn json_only(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::UnsupportedMediaType, format!("send Content-Type: application/json (got '{}')", cut(ct))))
    }
}

fn admin(caller: &Caller, what: &str) -> Result<(), ApiError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::PermissionDenied, format!("{what} needs an admin API key")))
    }
}

fn check_keys(raw: &HashMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    for (k, v) in raw {
        if !allowed.contains(&k.as_str()) {
            return Err(bad(match allowed {
                [] => format!("unknown parameter '{}'; this endpoint takes no parameters", cut(k)),
                _ => format!("unknown parameter '{}'; use {}", cut(k), allowed.join(", ")),
            }));
        }
        if v.len() > MAX_VALUE_LEN {
            return Err(bad(format!("{k} is {} bytes long; at most {MAX_VALUE_LEN} are accepted", v.len())));
        }
    }
    Ok(())
}

const SCOPE_KEYS: [&str; 6] = ["tenant", "project", "service", "model", "source", "provider_service"];

/// Scope filters from the query, with a tenant key's tenant forced.
fn scope_of(raw: &HashMap<String, String>, caller: &Caller) -> Result<Scope, ApiError> {
    let get = |k: &str| raw.get(k).cloned();
    let mut scope = Scope {
        tenant: get("tenant"),
        project: get("project"),
        service: get("service"),
        model: get("model"),
        source: get("source"),
        provider_service: get("provider_service"),
    };
    if let Some(t) = caller.tenant() {
        if scope.tenant.as_deref().is_some_and(|asked| asked != t) {
            return Err(ApiError::new(ErrorCode::PermissionDenied, format!("this API key sees tenant {t:?} only")));
        }
        scope.tenant = Some(t.to_owned());
    }
    Ok(scope)
}

/// `GET /api/v1/anomalies?status=open|resolved|dismissed&since=DATE&grain=hour|day&tenant=...`
pub async fn anomalies(
    State(state): State<InsightsState>,
    Extension(caller): Extension<Caller>,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let mut allowed = vec!["status", "since", "grain"];
    allowed.extend(SCOPE_KEYS);
    check_keys(&raw, &allowed)?;
    let status = match raw.get("status").map(String::as_str) {
        None | Some("all") => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| bad(format!("status={} is not open, resolved, dismissed or all", shown(s))))?),
    };
    let grain = match raw.get("grain").map(String::as_str) {
        None => None,
        Some("hour") => Some(Grain::Hour),
        Some("day") => Some(Grain::Day),
        Some(g) => return Err(bad(format!("grain={} is not hour or day", shown(g)))),
    };
    let since = raw.get("since").map(|s| parse_time("since", s)).transpose()?.map(|t| t.timestamp());
    let scope = scope_of(&raw, &caller)?;
    let mut list: Vec<detect::AnomalyRecord> = detect::load(&state)
        .await?
        .into_iter()
        .filter(|r| status.is_none_or(|s| r.status == s))
        .filter(|r| grain.is_none_or(|g| r.anomaly.grain == g))
        .filter(|r| since.is_none_or(|s| r.anomaly.end > s))
        .filter(|r| scope.contains(&r.group))
        .collect();
    list.sort_by(|a, b| b.anomaly.start.cmp(&a.anomaly.start).then_with(|| a.id.cmp(&b.id)));
    let rows: Vec<Value> = list
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).expect("anomalies serialize");
            v["window_start"] = json!(iso(r.anomaly.start));
            v["window_end"] = json!(iso(r.anomaly.end));
            v
        })
        .collect();
    Ok(Json(json!({ "count": rows.len(), "currency": state.currency, "anomalies": rows })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DismissRequest {
    reason: String,
}

/// `POST /api/v1/anomalies/{id}/dismiss {"reason": "..."}`
pub async fn dismiss(
    State(state): State<InsightsState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    json_only(&headers)?;
    let req: DismissRequest = serde_json::from_slice(&body).map_err(|e| bad(format!("expected {{\"reason\": \"...\"}}: {e}")))?;
    if req.reason.trim().is_empty() {
        return Err(bad("a reason is required"));
    }
    let _guard = state.run_lock.lock().await;
    let mut r = detect::load(&state)
        .await?
        .into_iter()
        .find(|r| r.id == id && caller.tenant().is_none_or(|t| t == r.group.tenant))
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no anomaly {}", shown(&id))))?;
    r.status = Status::Dismissed;
    r.reason = Some(req.reason);
    detect::save(&state, &[&r]).await?;
    Ok(Json(serde_json::to_value(&r).expect("anomalies serialize")).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillRequest {
    since: String,
    #[serde(default)]
    until: Option<String>,
    /// Go further back than `ledger.lookback_days` (up to 400 days).
    #[serde(default)]
    beyond_lookback: bool,
}

/// `POST /api/v1/anomalies/backfill {"since": "YYYY-MM-DD"}`: evaluates
/// every closed hour and day since then again (admin). At most
/// `ledger.lookback_days` unless `"beyond_lookback": true`, and never more
/// than 400 days; the window is checked before anything is read.
pub async fn backfill(
    State(state): State<InsightsState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    admin(&caller, "a backfill")?;
    json_only(&headers)?;
    let req: BackfillRequest = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("expected {{\"since\": \"YYYY-MM-DD\", \"until\": ..., \"beyond_lookback\": false}}: {e}")))?;
    let since = parse_time("since", &req.since)?.timestamp();
    let now = Utc::now().timestamp();
    let until = req.until.as_deref().map(|u| parse_time("until", u)).transpose()?.map_or(now, |t| t.timestamp().min(now));
    if since >= until {
        return Err(bad("since must be before until (and before now)"));
    }
    let days = (until - since).div_euclid(86_400) + i64::from((until - since).rem_euclid(86_400) > 0);
    if req.beyond_lookback {
        if days > MAX_BACKFILL_DAYS {
            return Err(bad(format!("a backfill covers at most {MAX_BACKFILL_DAYS} days, this one {days}; run several")));
        }
    } else if days > state.backfill_days {
        return Err(bad(format!(
            "a backfill covers at most ledger.lookback_days ({}) days, this one {days}; \
             send \"beyond_lookback\": true to go further back (up to {MAX_BACKFILL_DAYS} days)",
            state.backfill_days
        )));
    }
    let _guard = state.run_lock.lock().await;
    let mut found = BTreeMap::new();
    for grain in [Grain::Hour, Grain::Day] {
        let g = grain.seconds();
        let n = detect::run(&state, grain, since.div_euclid(g) * g, until.div_euclid(g) * g).await?;
        found.insert(grain.name(), n);
    }
    if let Ok(all) = detect::load(&state).await {
        state.gauges.set_anomalies(&all);
    }
    Ok(Json(json!({ "since": iso(since), "until": iso(until), "anomalies": found })).into_response())
}

/// `GET /api/v1/forecast?group_by=tenant,model&days=30&<filters>`: daily
/// forecast per group with 80%/95% bands, the month-end projection and the
/// backtest MAPE.
pub async fn forecast(
    State(state): State<InsightsState>,
    Extension(caller): Extension<Caller>,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let mut allowed = vec!["group_by", "days"];
    allowed.extend(SCOPE_KEYS);
    check_keys(&raw, &allowed)?;
    let days: usize = match raw.get("days") {
        None => 30,
        Some(d) => d.parse().ok().filter(|d| (1..=90).contains(d)).ok_or_else(|| bad(format!("days={} is not 1 to 90", shown(d))))?,
    };
    let mut dims = Vec::new();
    for name in raw.get("group_by").map(String::as_str).unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let d = Dimension::parse(name)
            .filter(|d| SCOPE_KEYS.contains(&d.name()) || *d == Dimension::Operation || *d == Dimension::Provider)
            .ok_or_else(|| bad(format!("group_by={} is not one of {}, operation, provider", shown(name), SCOPE_KEYS.join(", "))))?;
        if !dims.contains(&d) {
            dims.push(d);
        }
    }
    let scope = scope_of(&raw, &caller)?;
    let now = Utc::now();
    let today = now.timestamp().div_euclid(86_400) * 86_400;
    let from = today - 56 * 86_400;
    let month_start = {
        let d = now.date_naive();
        chrono::NaiveDate::from_ymd_opt(d.year(), d.month(), 1).expect("the first exists")
    };
    let (_, month_end) = costplane_insights::budget::Period::Month.bounds(now);
    let days_left = usize::try_from((month_end.timestamp() - today) / 86_400).unwrap_or(0);
    let mtd_days =
        usize::try_from((today - month_start.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp()) / 86_400).unwrap_or(0);
    let by = series::hourly_cost(&state.store, from, today, &dims, &scope, series::Hours::Closed).await?;
    let mut groups = Vec::new();
    for (key, hours) in by {
        let daily = series::daily(&hours);
        let mut group = serde_json::Map::new();
        for (d, v) in dims.iter().zip(&key) {
            group.insert(d.name().to_owned(), json!(v));
        }
        let first = daily.iter().position(|d| !d.is_zero()).unwrap_or(daily.len());
        let so_far: Decimal = daily.iter().rev().take(mtd_days).sum::<Decimal>().normalize();
        match forecast::forecast(&daily[first..], days.max(days_left).max(1)) {
            Ok(fc) => {
                let points: Vec<Value> = fc.points[..days]
                    .iter()
                    .map(|p| {
                        let mut v = serde_json::to_value(p.band).expect("bands serialize");
                        v["date"] = json!(iso(today + (p.ahead as i64 - 1) * 86_400)[..10]);
                        v
                    })
                    .collect();
                let projection = forecast::project(so_far, &fc, days_left);
                groups.push(json!({
                    "group": group,
                    "method": fc.method,
                    "backtest_mape_pct": fc.backtest_mape.map(|m| (m * 100.0).round() / 100.0),
                    "backtest_origins": fc.backtest_origins,
                    "month_end": projection,
                    "days": points,
                }));
            }
            Err(e) => groups.push(json!({ "group": group, "error": e.to_string(), "month_to_date": so_far })),
        }
    }
    Ok(Json(json!({
        "from": iso(today),
        "days": days,
        "month_end": iso(month_end.timestamp()),
        "history_from": iso(from),
        "group_by": dims.iter().map(|d| d.name()).collect::<Vec<_>>(),
        "currency": state.currency,
        "note": "history is complete UTC days; month_to_date counts complete days, the forecast covers today onwards",
        "groups": groups,
    }))
    .into_response())
}

fn budget_json(b: &BudgetConfig, origin: Origin) -> Value {
    let mut v = serde_json::to_value(b).expect("budgets serialize");
    // Secrets stay in the server.
    if let Some(targets) = v.get_mut("notify").and_then(Value::as_array_mut) {
        for t in targets {
            if t.get("secret").is_some() {
                t["secret"] = json!("<set>");
            }
        }
    }
    v["origin"] = json!(origin);
    v
}

fn visible(b: &BudgetConfig, caller: &Caller) -> bool {
    caller.tenant().is_none_or(|t| b.scope.tenant.as_deref() == Some(t))
}

pub async fn list_budgets(
    State(state): State<InsightsState>,
    Extension(caller): Extension<Caller>,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    check_keys(&raw, &[])?;
    let list: Vec<Value> =
        budgets::all(&state).await?.iter().filter(|(b, _)| visible(b, &caller)).map(|(b, o)| budget_json(b, *o)).collect();
    Ok(Json(json!({ "budgets": list })).into_response())
}

pub async fn get_budget(
    State(state): State<InsightsState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    check_keys(&raw, &[])?;
    let (b, o) = budgets::all(&state)
        .await?
        .into_iter()
        .find(|(b, _)| b.id == id && visible(b, &caller))
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no budget {}", shown(&id))))?;
    Ok(Json(budget_json(&b, o)).into_response())
}

fn parse_budget(state: &InsightsState, headers: &HeaderMap, body: &[u8]) -> Result<BudgetConfig, ApiError> {
    json_only(headers)?;
    let b: BudgetConfig = serde_json::from_slice(body).map_err(|e| bad(format!("not a budget: {e}")))?;
    b.validate("budget", &state.anomalies.notify_hosts).map_err(bad)?;
    Ok(b)
}

async fn put(state: &InsightsState, b: &BudgetConfig) -> Result<(), ApiError> {
    let body = serde_json::to_string(b).expect("budgets serialize");
    state.store.put_records(RecordTable::Budgets, &[Record::new(&b.id, body, now_ns())]).await?;
    Ok(())
}

pub async fn create_budget(
    State(state): State<InsightsState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    admin(&caller, "creating a budget")?;
    let b = parse_budget(&state, &headers, &body)?;
    if budgets::all(&state).await?.iter().any(|(x, _)| x.id == b.id) {
        return Err(bad(format!("a budget {:?} exists; PUT /api/v1/budgets/{} changes it", b.id, b.id)));
    }
    put(&state, &b).await?;
    Ok((StatusCode::CREATED, Json(budget_json(&b, Origin::Api))).into_response())
}

/// The API budget `id`, or why it cannot be changed.
async fn api_budget(state: &InsightsState, id: &str) -> Result<BudgetConfig, ApiError> {
    match budgets::all(state).await?.into_iter().find(|(b, _)| b.id == id) {
        None => Err(ApiError::new(ErrorCode::NotFound, format!("no budget {}", shown(id)))),
        Some((_, Origin::Config)) => Err(bad(format!("budget {id:?} is defined in the config file; change it there"))),
        Some((b, Origin::Api)) => Ok(b),
    }
}

pub async fn update_budget(
    State(state): State<InsightsState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    admin(&caller, "changing a budget")?;
    let b = parse_budget(&state, &headers, &body)?;
    if b.id != id {
        return Err(bad(format!("the body's id {:?} is not the path's {}", b.id, shown(&id))));
    }
    api_budget(&state, &id).await?;
    put(&state, &b).await?;
    Ok(Json(budget_json(&b, Origin::Api)).into_response())
}

pub async fn delete_budget(
    State(state): State<InsightsState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin(&caller, "deleting a budget")?;
    api_budget(&state, &id).await?;
    state.store.put_records(RecordTable::Budgets, &[Record::tombstone(&id, now_ns())]).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/v1/budgets/status`
pub async fn budget_status(
    State(state): State<InsightsState>,
    Extension(caller): Extension<Caller>,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    check_keys(&raw, &[])?;
    let now = Utc::now();
    let list = budgets::statuses(&state, caller.tenant(), now).await?;
    Ok(Json(json!({ "at": iso(now.timestamp()), "budgets": list })).into_response())
}
