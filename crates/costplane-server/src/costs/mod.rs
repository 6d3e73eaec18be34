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

//! The cost API and exports. Handlers parse, authorize and render; every
//! ledger read goes through the ledger repository
//! ([`costplane_store::ledger::Ledger`]), and every ledger write through
//! the closer ([`closer::Closer`]).
//!
//! - `GET /api/v1/costs`: costs over a window, by step and dimensions.
//! - `GET /api/v1/costs/unpriced`: usage no price covered, with its tokens.
//! - `GET /api/costs/export?month=YYYY-MM`: the telemetry chargeback CSV
//!   (plus LLM spend, `kind` column); `&format=focus`: the ledger as FOCUS CSV.
//! - `POST /api/v1/reprice`: price closed hours of a window again.
//! - `POST /api/v1/prices/reload`: load the prices again (also on SIGHUP).
//!
//! Every endpoint shows closed hours and the open ones (`x_ChargeStatus =
//! provisional`), refreshed at most a second before it answers.
//!
//! Money: the one rounding rule of the ledger (12 decimal places,
//! half-even, once per ledger row: see `costplane_ledger`) happens when a
//! row is made. The store sums those `Decimal(38, 12)` values exactly and
//! this module renders the sums from `Decimal` with trailing zeros
//! trimmed, never rounding again, so the API, both exports and `/metrics`
//! agree to the last digit. Tenant API keys add a `x_Tenant = <their
//! tenant>` condition to every read.

pub mod closer;
pub mod focus;
mod incremental;
pub mod metrics;
pub mod params;
pub mod storage;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use costplane_cost::Meter;
use costplane_store::ledger::Ledger;
use costplane_store::Store;
use costplane_telemetry::usage::{CostFilter, Dimension};
use costplane_telemetry::TelemetryBatch;
use http::header;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use self::closer::{Closer, PriceSource, Timing};
use self::params::{iso, ns, parse_month, parse_time, CostQuery, Step};
use crate::auth::Caller;
use crate::csv;
use crate::error::{ApiError, ErrorCode};

pub use costplane_store::ledger::{decimal, text};

#[derive(Clone)]
pub struct CostState {
    pub store: Arc<dyn Store>,
    /// The ledger as requests read it (the closer reads on its own lane).
    ledger: Ledger,
    /// Closes hours, reprices, reloads prices; holds the prices in force.
    pub closer: Arc<Closer>,
    /// Where query usage goes (with the telemetry, so it is stored alike).
    pub pipeline: costplane_pipeline::Pipeline,
}

impl CostState {
    /// Cost endpoints over `store`, with the closer `config` describes.
    pub fn new(store: Arc<dyn Store>, config: &crate::config::Config, pipeline: costplane_pipeline::Pipeline) -> Result<CostState, String> {
        let source = PriceSource {
            cost: config.cost.clone(),
            ledger: config.ledger.clone(),
            kubernetes: config.kubernetes.clone(),
            file: config.source.clone(),
        };
        let meter = Arc::new(source.meter()?);
        let closer = Arc::new(Closer::new(Ledger::for_closer(Arc::clone(&store)), meter, source, Timing::of(&config.ledger)));
        Ok(CostState { ledger: Ledger::new(Arc::clone(&store)), store, closer, pipeline })
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn meter(&self) -> Arc<Meter> {
        self.closer.meter()
    }

    /// Counts one API query for the caller's tenant. Metering never fails
    /// the query: a full queue only costs the count.
    pub fn count_query(&self, caller: &Caller) {
        let tenant = caller.tenant().unwrap_or(costplane_cost::meter::UNASSIGNED);
        let usage = self.meter().queries(tenant, 1);
        let batch = TelemetryBatch { usage, approx_bytes: 512, ..TelemetryBatch::default() };
        if let Err(e) = self.pipeline.submit_internal(batch) {
            tracing::debug!(error = %e, "query not metered");
        }
    }

    /// Brings open hours and due closings up to date before a read.
    pub async fn fresh(&self) -> Result<(), ApiError> {
        self.closer.refresh_if_older(Duration::from_secs(1)).await.map_err(ApiError::from)
    }
}

fn money(d: Decimal) -> String {
    d.normalize().to_string()
}

/// The filter of a caller's read of `[from, to)`.
fn filter(from: i64, to: i64, caller: &Caller, equals: Vec<(Dimension, String)>) -> CostFilter {
    CostFilter { from_ns: from, to_ns: to, tenant: caller.tenant().map(str::to_owned), equals }
}

pub async fn costs(
    State(state): State<CostState>,
    Extension(caller): Extension<Caller>,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let q = CostQuery::parse(&raw, chrono::Utc::now())?;
    state.fresh().await?;
    let f = filter(ns(q.from), ns(q.to), &caller, q.filters.clone());
    let sums = state.ledger().sum_costs(&f, &q.group_by, q.step).await?;
    state.count_query(&caller);
    let mut total = Decimal::ZERO;
    let mut rows = Vec::new();
    for s in sums {
        let mut obj = serde_json::Map::new();
        if let Some(p) = s.period_ns {
            obj.insert("period_start".into(), json!(iso(p)));
        }
        for (d, v) in q.group_by.iter().zip(&s.dims) {
            obj.insert(d.name().into(), json!(v));
        }
        total += s.cost;
        obj.insert("cost".into(), json!(money(s.cost)));
        match (s.quantity, s.unit) {
            (Some(quantity), Some(unit)) => {
                obj.insert("quantity".into(), json!(money(quantity)));
                obj.insert("unit".into(), json!(unit));
            }
            _ => {
                obj.insert("quantity".into(), Value::Null);
                obj.insert("unit".into(), json!("mixed; add group_by=unit to see quantities"));
            }
        }
        rows.push(Value::Object(obj));
    }
    Ok(Json(json!({
        "from": iso(ns(q.from)),
        "to": iso(ns(q.to)),
        "step": q.step.map(Step::name),
        "group_by": q.group_by.iter().map(|d| d.name()).collect::<Vec<_>>(),
        "currency": state.meter().catalog.currency,
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
    state.fresh().await?;
    let f = filter(ns(q.from), ns(q.to), &caller, vec![(Dimension::PricingStatus, "unpriced".to_owned())]);
    let dims = [Dimension::Tenant, Dimension::Project, Dimension::Service, Dimension::Provider, Dimension::Model, Dimension::UsageType];
    let sums = state.ledger().sum_costs(&f, &dims, None).await?;
    state.count_query(&caller);
    let rows: Vec<Value> = sums
        .iter()
        .map(|s| {
            json!({
                "tenant": s.dims[0], "project": s.dims[1], "service": s.dims[2], "provider": s.dims[3],
                "model": s.dims[4], "token_type": s.dims[5], "tokens": s.quantity.map(money),
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
        state.fresh().await?;
        state.count_query(&caller);
        // Later changes to the rows served here write correction rows: an
        // admin's export marks every tenant's rows, a tenant key's its own.
        let marks = state.ledger().exported(ns(from), ns(from) + 1).await?;
        let served = match caller.tenant() {
            Some(t) => marks.covers(ns(from), t),
            None => marks.all(ns(from)),
        };
        if !served {
            if let Err(e) = state.ledger().mark_exported(ns(from), caller.tenant()).await {
                tracing::warn!(error = %e, month, "could not record the export");
            }
        }
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
/// (telemetry: items, bytes, ingest/query + storage cost), then LLM spend
/// per tenant, project, service and model; `charge_status` says whether a
/// line still holds open (provisional) hours. Aggregated rows: small even
/// for big months. Every cost is a sum of ledger rows (storage included):
/// nothing is computed at export time.
fn chargeback_stream(state: CostState, caller: Caller, from: i64, to: i64) -> Body {
    let stream = futures::stream::once(async move {
        let mut out = csv::line(
            &["kind", "tenant", "project", "service", "signal", "model", "items", "bytes", "tokens", "cost", "charge_status"]
                .map(String::from),
        );
        let usage = state.ledger().telemetry_usage(from, to, caller.tenant()).await?;
        let dims = [
            Dimension::Source,
            Dimension::Tenant,
            Dimension::Project,
            Dimension::Service,
            Dimension::UsageType,
            Dimension::Model,
            Dimension::ChargeStatus,
        ];
        let sums = state.ledger().sum_costs(&filter(from, to, &caller, Vec::new()), &dims, None).await?;
        let storage = state
            .ledger()
            .rows(&filter(from, to, &caller, vec![(Dimension::Source, "telemetry".into()), (Dimension::UsageType, "storage".into())]))
            .await?;
        type Key = (String, String, String, String);
        // A line is provisional while any of its hours is open (or its usage
        // is not in the ledger yet).
        #[derive(Default)]
        struct Line {
            items: u64,
            bytes: u64,
            tokens: Decimal,
            cost: Decimal,
            priced: bool,
            provisional: bool,
        }
        let mut telemetry: BTreeMap<Key, Line> = BTreeMap::new();
        let mut llm: BTreeMap<Key, Line> = BTreeMap::new();
        // Kubernetes and cloud lines under their own kind, the usage type
        // (cpu, memory, Usage, Credit, ...) in the signal column.
        let mut other: BTreeMap<(String, Key), Line> = BTreeMap::new();
        for u in usage {
            let e = telemetry.entry((u.tenant, u.project, u.service, u.signal)).or_default();
            e.items += u.items;
            e.bytes += u.bytes;
        }
        for s in sums {
            let [source, tenant, project, service, usage_type, model, status] = <[String; 7]>::try_from(s.dims).unwrap_or_default();
            let e = if source == "llm" {
                let e = llm.entry((tenant, project, service, model)).or_default();
                e.tokens += s.quantity.unwrap_or_default();
                e
            } else if source != "telemetry" {
                other.entry((source, (tenant, project, service, usage_type))).or_default()
            } else if usage_type != "storage" {
                telemetry.entry((tenant, project, service, usage_type)).or_default()
            } else {
                continue;
            };
            e.cost += s.cost;
            e.priced = true;
            e.provisional |= status != costplane_telemetry::usage::CLOSED;
        }
        for r in storage {
            let signal = r.sku_id.rsplit('/').next().unwrap_or_default().to_owned();
            let e = telemetry.entry((r.tenant, r.project, r.service, signal)).or_default();
            e.cost += r.cost;
            e.priced = true;
        }
        let status = |l: &Line| if l.provisional || !l.priced { "provisional" } else { "closed" };
        for ((tenant, project, service, signal), l) in &telemetry {
            out.push_str(&csv::line(&[
                csv::text("telemetry"),
                csv::text(tenant),
                csv::text(project),
                csv::text(service),
                csv::text(signal),
                String::new(),
                csv::number(&l.items.to_string()),
                csv::number(&l.bytes.to_string()),
                String::new(),
                csv::number(&money(l.cost)),
                csv::text(status(l)),
            ]));
        }
        for ((kind, (tenant, project, service, usage_type)), l) in &other {
            out.push_str(&csv::line(&[
                csv::text(kind),
                csv::text(tenant),
                csv::text(project),
                csv::text(service),
                csv::text(usage_type),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                csv::number(&money(l.cost)),
                csv::text(status(l)),
            ]));
        }
        for ((tenant, project, service, model), l) in &llm {
            out.push_str(&csv::line(&[
                csv::text("llm"),
                csv::text(tenant),
                csv::text(project),
                csv::text(service),
                String::new(),
                csv::text(model),
                String::new(),
                String::new(),
                csv::number(&money(l.tokens)),
                csv::number(&money(l.cost)),
                csv::text(status(l)),
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
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    in_place: bool,
}

/// Prices the closed hours of `[from, to)` again from stored usage with the
/// prices loaded now (the override file and config rates are read again).
pub async fn reprice(
    State(state): State<CostState>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::new(ErrorCode::PermissionDenied, "repricing needs an admin API key"));
    }
    let req: RepriceRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidArgument,
            format!("expected {{\"from\": \"YYYY-MM-DD\", \"to\": \"YYYY-MM-DD\", \"dry_run\": false, \"in_place\": false}}: {e}"),
        )
    })?;
    let (from, to) = (parse_time("from", &req.from)?, parse_time("to", &req.to)?);
    if from >= to {
        return Err(ApiError::new(ErrorCode::InvalidArgument, "from must be before to"));
    }
    let report = state.closer.reprice(ns(from), ns(to), req.dry_run, req.in_place).await.map_err(internal)?;
    let mut body = serde_json::to_value(&report).map_err(internal)?;
    body["from"] = json!(iso(ns(from)));
    body["to"] = json!(iso(ns(to)));
    Ok(Json(body).into_response())
}

/// `POST /api/v1/prices/reload`: loads the prices again (the override file
/// and the config file's rates); new usage and open hours use them.
pub async fn reload_prices(State(state): State<CostState>, Extension(caller): Extension<Caller>) -> Result<Response, ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::new(ErrorCode::PermissionDenied, "reloading prices needs an admin API key"));
    }
    let meter = state.closer.reload().await.map_err(internal)?;
    Ok(Json(json!({
        "catalog_version": meter.catalog.version,
        "telemetry_version": meter.telemetry_price_version(),
        "models": meter.catalog.models().len(),
    }))
    .into_response())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Internal, e.to_string())
}
