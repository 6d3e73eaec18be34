//! `GET /metrics`: cost series, budgets, and costplane's own health.
//!
//! Cost families (labels `source`, `cost_type`, `service`, `tenant`,
//! `project`, `provider`, `model`, plus `storage_type` / `direction` where
//! they apply, see [`classify`]):
//!
//! - `costplane_cost_usd_total` (counter): cost booked into the ledger by
//!   this process, added when the store commits the batch that carries the
//!   ledger rows (so retries and replays count once). It starts at zero
//!   with the process, as counters do; `increase()` and `rate()` over it are
//!   the spend of a window, which is what the recording rules and alerts use.
//!   Repricing rewrites past rows and is not a new booking: it does not move
//!   the counter (the month-to-date gauge shows its result).
//! - `costplane_unpriced_tokens_total` (counter): tokens of LLM usage no
//!   price covered, booked the same way.
//! - `costplane_cost_month_to_date_usd` (gauge): the ledger's sum since the
//!   start of the current month (UTC), the same stored decimals the API and
//!   exports add up, printed exactly.
//! - `costplane_budget_monthly_usd` (gauge): `[metrics.budgets]`, so the
//!   budget alert divides one series by another.
//!
//! **Bounded labels.** For `service`, `tenant`, `project`, `provider` and
//! `model`, at most `metrics.max_series_per_label` values keep their name;
//! the others become `other`. The gauge ranks values by this month's cost
//! on every ledger read and sums the folded series exactly. A counter must
//! never move a value between series (Prometheus would read a drop as a
//! reset), so its places are sticky: a value that has its own series keeps
//! it for the life of the process; free places go first to the month's
//! largest values (offered at each ledger read), then to new values as they
//! are booked; once full, further values count as `other`. Values longer
//! than `metrics.max_label_value_bytes` are cut at a character boundary.
//!
//! **Within a second.** Counters and health series come from memory. The
//! ledger (and the store's compression ratios) are read at most once per
//! `metrics.cache_ttl` per caller scope (admin, or one tenant's key); a
//! scrape after the TTL gets the last values at once and starts one refresh
//! in the background; only the very first scrape waits for the query. A
//! tenant's key sees only series whose `tenant` is its own.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use costplane_pipeline::Histogram;

use super::closer::LedgerObserver;
use costplane_telemetry::usage::{CostFilter, Dimension, LedgerRow, PricingStatus};
use http::{header, HeaderMap};
use rust_decimal::Decimal;

use super::params::{ns, parse_month};
use super::{money, CostState};
use crate::auth::Caller;
use crate::config::MetricsSection;
use crate::error::ApiError;
use crate::health::{Exposition, Format, Kind};

/// The value folded series carry.
pub const OTHER: &str = "other";

/// Label names of the cost families, in output order.
pub const LABELS: [&str; 9] = ["source", "cost_type", "service", "tenant", "project", "provider", "model", "storage_type", "direction"];

/// Which of [`LABELS`] are client-controlled, so capped (the others are
/// costplane's own small vocabularies).
const CAPPED: [usize; 5] = [2, 3, 4, 5, 6];
const TENANT: usize = 3;

/// `cost_type` values a ledger row's `x_UsageType` head may name directly
/// (Kubernetes and cloud rows).
const COST_TYPES: [&str; 12] =
    ["llm", "ingest", "storage", "query", "cpu", "memory", "gpu", "volume", "network", "shared", "idle", "cloud"];

/// One series' label values, as [`LABELS`].
pub type Labels = [String; 9];

/// Series and their cost.
pub type Series = BTreeMap<Labels, Decimal>;

/// `(cost_type, storage_type, direction)` of a ledger row. LLM rows are
/// `llm`; telemetry rows are `query` (usage type `queries`), `storage` or
/// `ingest`; other sources name their cost type in the usage type's head,
/// with the storage type or network direction after a slash
/// (`storage/ssd`, `network/egress`); a cloud bill's rows are `cloud`, an
/// imported provider invoice's `invoice`.
pub fn classify(source: &str, usage_type: &str) -> (&'static str, String, String) {
    let (head, detail) = usage_type.split_once('/').unwrap_or((usage_type, ""));
    let cost_type = match source {
        "llm" => "llm",
        "telemetry" => match head {
            costplane_cost::meter::QUERIES => "query",
            "storage" => "storage",
            _ => "ingest",
        },
        _ => COST_TYPES.iter().find(|&&t| t == head).copied().unwrap_or(match source {
            "cloud" => "cloud",
            "invoice" => "invoice",
            _ => OTHER,
        }),
    };
    let storage_type = if matches!(cost_type, "storage" | "volume") { detail } else { "" };
    let direction = if cost_type == "network" { detail } else { "" };
    (cost_type, storage_type.to_owned(), direction.to_owned())
}

/// The labels of a ledger row, before capping.
fn row_labels(source: &str, usage_type: &str, service: &str, tenant: &str, project: &str, provider: &str, model: &str) -> Labels {
    let (cost_type, storage_type, direction) = classify(source, usage_type);
    [source.into(), cost_type.into(), service.into(), tenant.into(), project.into(), provider.into(), model.into(), storage_type, direction]
}

/// Cuts `v` to at most `max` bytes, at a character boundary.
pub fn cut(v: &str, max: usize) -> &str {
    if v.len() <= max {
        return v;
    }
    let mut end = max;
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    &v[..end]
}

/// What folding did to one capped label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded {
    pub label: &'static str,
    /// Distinct values folded into `other`.
    pub values: usize,
}

/// Caps every client-controlled label at `max_values` values (largest cost
/// first, ties by name) and adds up the series that then coincide. The sum
/// of the result equals the sum of `rows` exactly. Also returns the kept
/// values per capped label, largest first.
pub fn fold(rows: Vec<(Labels, Decimal)>, max_values: usize, max_bytes: usize) -> (Series, Vec<Folded>, Vec<Vec<String>>) {
    let rows: Vec<(Labels, Decimal)> = rows.into_iter().map(|(l, c)| (l.map(|v| cut(&v, max_bytes).to_owned()), c)).collect();
    let mut keep: Vec<Option<HashSet<String>>> = vec![None; LABELS.len()];
    let mut folded = Vec::new();
    let mut ranked_kept = Vec::new();
    for &d in &CAPPED {
        let mut by_value: HashMap<&str, Decimal> = HashMap::new();
        for (l, c) in &rows {
            *by_value.entry(&l[d]).or_default() += *c;
        }
        let distinct = by_value.len();
        let mut ranked: Vec<(&str, Decimal)> = by_value.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let kept: Vec<String> = ranked.into_iter().take(max_values).map(|(v, _)| v.to_owned()).collect();
        folded.push(Folded { label: LABELS[d], values: distinct.saturating_sub(max_values) });
        if distinct > max_values {
            keep[d] = Some(kept.iter().cloned().collect());
        }
        ranked_kept.push(kept);
    }
    let mut series = Series::new();
    for (mut labels, cost) in rows {
        for (d, kept) in keep.iter().enumerate() {
            if let Some(kept) = kept {
                if !kept.contains(&labels[d]) {
                    labels[d] = OTHER.to_owned();
                }
            }
        }
        *series.entry(labels).or_default() += cost;
    }
    (series, folded, ranked_kept)
}

/// The cost counters: sticky places per capped label (see the module docs).
pub struct CostCounters {
    cap: usize,
    max_bytes: usize,
    state: Mutex<CounterState>,
}

#[derive(Default)]
struct CounterState {
    /// Values with their own series, per entry of [`CAPPED`].
    placed: [HashSet<String>; 5],
    cost: Series,
    /// `(tenant, service, provider, model)` → tokens.
    unpriced: BTreeMap<[String; 4], Decimal>,
}

impl CounterState {
    fn place(&mut self, slot: usize, value: &str, cap: usize) -> String {
        let placed = &mut self.placed[slot];
        if placed.contains(value) {
            return value.to_owned();
        }
        if placed.len() < cap {
            placed.insert(value.to_owned());
            return value.to_owned();
        }
        OTHER.to_owned()
    }
}

impl CostCounters {
    pub fn new(cap: usize, max_bytes: usize) -> CostCounters {
        CostCounters { cap, max_bytes, state: Mutex::new(CounterState::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CounterState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Gives free places to `ranked` values (per entry of [`CAPPED`],
    /// largest first).
    pub fn offer(&self, ranked: &[Vec<String>]) {
        let mut s = self.lock();
        for (slot, values) in ranked.iter().enumerate().take(CAPPED.len()) {
            for v in values {
                s.place(slot, v, self.cap);
            }
        }
    }

    /// Adds booked ledger rows.
    pub fn book(&self, rows: &[LedgerRow]) {
        let mut s = self.lock();
        for r in rows {
            let raw = row_labels(r.source.as_str(), r.usage_type.as_str(), &r.service, &r.tenant, &r.project, &r.provider_name, &r.model);
            let mut labels = raw.map(|v| cut(&v, self.max_bytes).to_owned());
            for (slot, &d) in CAPPED.iter().enumerate() {
                labels[d] = s.place(slot, &labels[d], self.cap);
            }
            if r.pricing_status == PricingStatus::Unpriced {
                let key = [labels[3].clone(), labels[2].clone(), labels[5].clone(), labels[6].clone()];
                *s.unpriced.entry(key).or_default() += r.consumed_quantity;
            }
            *s.cost.entry(labels).or_default() += r.cost;
        }
    }

    fn render(&self, out: &mut Exposition, tenant: Option<&str>) {
        let s = self.lock();
        out.family(
            "costplane_cost_usd_total",
            Kind::Counter,
            "Cost booked into the ledger by this process (USD), added when the store commits it.",
        );
        for (labels, cost) in s.cost.iter().filter(|(l, _)| tenant.is_none_or(|t| l[TENANT] == t)) {
            out.sample("costplane_cost_usd_total", &present(labels), money(*cost));
        }
        out.family("costplane_unpriced_tokens_total", Kind::Counter, "Tokens of LLM usage no price covered (booked at $0, not as free).");
        for (k, tokens) in s.unpriced.iter().filter(|(k, _)| tenant.is_none_or(|t| k[0] == t)) {
            let labels = [("tenant", k[0].as_str()), ("service", &k[1]), ("provider", &k[2]), ("model", &k[3])];
            out.sample("costplane_unpriced_tokens_total", &labels, money(*tokens));
        }
    }
}

impl LedgerObserver for CostCounters {
    fn booked(&self, rows: &[LedgerRow]) {
        self.book(rows);
    }
}

/// The non-empty labels of a series (an empty label is an absent one).
fn present(labels: &Labels) -> Vec<(&'static str, &str)> {
    LABELS.iter().zip(labels).filter(|(_, v)| !v.is_empty()).map(|(n, v)| (*n, v.as_str())).collect()
}

/// What one ledger read gives.
#[derive(Debug, Clone, Default)]
pub struct LedgerView {
    pub month: Series,
    pub folded: Vec<Folded>,
    /// The ledger's sum over the last 30 days.
    pub last_30_days: Decimal,
    /// Stored bytes per ingested byte, per signal (empty when the store
    /// cannot tell).
    pub compression: Vec<(String, f64)>,
    /// Estimated against invoiced, per provider (`crate::reconcile`).
    pub reconciliation: Vec<crate::reconcile::ProviderDrift>,
}

/// The month-to-date and compression families.
pub fn render_view(out: &mut Exposition, view: &LedgerView, max_values: usize) {
    out.family(
        "costplane_cost_month_to_date_usd",
        Kind::Gauge,
        "Cost in the ledger since the start of the current month (UTC, USD). Per capped label, values beyond the ones with \
         the largest cost are summed into other.",
    );
    for (labels, cost) in &view.month {
        out.sample("costplane_cost_month_to_date_usd", &present(labels), money(*cost));
    }
    out.one(
        "costplane_cost_last_30_days_usd",
        Kind::Gauge,
        "Cost in the ledger over the last 30 days, to the end of the current hour (USD).",
        money(view.last_30_days),
    );
    out.family(
        "costplane_cost_folded_label_values",
        Kind::Gauge,
        &format!(
            "Distinct label values summed into other in costplane_cost_month_to_date_usd (metrics.max_series_per_label = {max_values})."
        ),
    );
    for f in &view.folded {
        out.sample("costplane_cost_folded_label_values", &[("label", f.label)], f.values);
    }
    out.family(
        "costplane_store_compression_ratio",
        Kind::Gauge,
        "Stored (compressed) bytes per uncompressed byte written, by signal, where the store reports it (ClickHouse).",
    );
    for (signal, ratio) in &view.compression {
        out.sample("costplane_store_compression_ratio", &[("signal", signal)], ratio);
    }
    crate::reconcile::render_metrics(out, &view.reconciliation);
}

/// The month's groups `/metrics` labels come from, in `row_labels` order.
const MONTH_DIMENSIONS: [Dimension; 7] = [
    Dimension::Source,
    Dimension::UsageType,
    Dimension::Service,
    Dimension::Tenant,
    Dimension::Project,
    Dimension::Provider,
    Dimension::Model,
];

/// Reads the month's ledger sums for `caller`, and the compression ratios.
async fn compute(
    state: &CostState,
    caller: &Caller,
    max_values: usize,
    max_bytes: usize,
) -> Result<(LedgerView, Vec<Vec<String>>), ApiError> {
    use chrono::Datelike;
    let now = chrono::Utc::now();
    let (from, to) = parse_month(&format!("{:04}-{:02}", now.year(), now.month()))?;
    // The last 30 days, up to the end of the current hour (ledger rows
    // cover whole hours).
    let hour = 3_600_000_000_000i64;
    let end = ns(now).div_euclid(hour) * hour + hour;
    let tenant = caller.tenant().map(str::to_owned);
    let month_filter = CostFilter { from_ns: ns(from), to_ns: ns(to), tenant: tenant.clone(), equals: Vec::new() };
    let days_filter = CostFilter { from_ns: end - 30 * 24 * hour, to_ns: end, tenant, equals: Vec::new() };
    let ledger = state.ledger();
    // The ledger reads of a refresh run side by side: the month's groups,
    // the 30-day sum and the reconciliation's.
    let (sums, days, reconciliation) = tokio::join!(
        ledger.sum_costs(&month_filter, &MONTH_DIMENSIONS, None),
        ledger.sum_costs(&days_filter, &[], None),
        crate::reconcile::provider_drift(state, caller.tenant(), ns(now), crate::reconcile::METRICS_DAYS)
    );
    let (sums, last_30_days) = (sums?, days?.iter().map(|s| s.cost).sum::<Decimal>());
    let rows = sums
        .into_iter()
        .map(|s| {
            let d = |i: usize| s.dims.get(i).map(String::as_str).unwrap_or_default();
            (row_labels(d(0), d(1), d(2), d(3), d(4), d(5), d(6)), s.cost)
        })
        .collect();
    let (month, folded, ranked) = fold(rows, max_values, max_bytes);
    let compression = match state.store.compression_ratios().await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "no compression ratios for /metrics");
            Vec::new()
        }
    };
    let reconciliation = reconciliation.unwrap_or_else(|e| {
        tracing::warn!(error = %e.message, "no reconciliation series for /metrics");
        Vec::new()
    });
    Ok((LedgerView { month, folded, last_30_days, compression, reconciliation }, ranked))
}

#[derive(Clone)]
struct Cached {
    view: Arc<LedgerView>,
    at: Instant,
}

#[derive(Default)]
struct Slot {
    cached: Mutex<Option<Cached>>,
    /// A background refresh is running.
    refreshing: AtomicBool,
    /// Serialises the first, synchronous computation.
    first: tokio::sync::Mutex<()>,
}

impl Slot {
    fn current(&self) -> Option<Cached> {
        self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn store(&self, view: LedgerView) -> Cached {
        let c = Cached { view: Arc::new(view), at: Instant::now() };
        *self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(c.clone());
        c
    }
}

/// The `/metrics` state kept across scrapes: ledger views per caller scope
/// (admin, or a tenant's key: a bounded set, the configured keys), the cost
/// counters, the budgets and the API's query latencies.
pub struct MetricsCache {
    ttl: Duration,
    max_values: usize,
    max_bytes: usize,
    slots: Mutex<HashMap<Option<String>, Arc<Slot>>>,
    pub counters: Arc<CostCounters>,
    /// `(tenant or "*", monthly USD)`.
    budgets: Vec<(String, Decimal)>,
    /// Durations of `/api/...` requests.
    pub query_duration: Histogram,
    /// `costplane_request_cost_usd` (`crate::unit_costs::metrics`).
    pub request_costs: Arc<crate::unit_costs::metrics::RequestCostSeries>,
}

impl Default for MetricsCache {
    fn default() -> Self {
        MetricsCache::new(&MetricsSection::default()).expect("the default [metrics] section is valid")
    }
}

impl MetricsCache {
    pub fn new(config: &MetricsSection) -> Result<MetricsCache, String> {
        let budgets = config
            .budgets
            .iter()
            .map(|(scope, usd)| {
                Decimal::from_str(usd)
                    .map(|d| (scope.clone(), d))
                    .map_err(|e| format!("metrics.budgets.{scope}: {usd:?} is not a decimal: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(MetricsCache {
            ttl: config.cache_ttl()?,
            max_values: config.max_series_per_label,
            max_bytes: config.max_label_value_bytes,
            slots: Mutex::new(HashMap::new()),
            counters: Arc::new(CostCounters::new(config.max_series_per_label, config.max_label_value_bytes)),
            budgets,
            query_duration: Histogram::default(),
            request_costs: Arc::new(crate::unit_costs::metrics::RequestCostSeries::new(
                config.request_cost_ttl()?,
                config.max_series_per_label,
                config.max_label_value_bytes,
            )),
        })
    }

    fn slot(&self, caller: &Caller) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(slots.entry(caller.tenant().map(str::to_owned)).or_default())
    }

    async fn refresh(&self, state: &CostState, caller: &Caller) -> Result<LedgerView, ApiError> {
        let (view, ranked) = compute(state, caller, self.max_values, self.max_bytes).await?;
        if caller.is_admin() {
            self.counters.offer(&ranked);
        }
        Ok(view)
    }

    /// The caller's ledger view: cached, refreshed in the background once
    /// older than the TTL, computed here only when there is none yet.
    async fn get(self: &Arc<Self>, state: &CostState, caller: &Caller) -> Result<Cached, ApiError> {
        let slot = self.slot(caller);
        if let Some(c) = slot.current() {
            if c.at.elapsed() >= self.ttl && !slot.refreshing.swap(true, Ordering::AcqRel) {
                let (cache, state, caller, slot) = (Arc::clone(self), state.clone(), caller.clone(), Arc::clone(&slot));
                tokio::spawn(async move {
                    match cache.refresh(&state, &caller).await {
                        Ok(view) => {
                            slot.store(view);
                        }
                        Err(e) => tracing::warn!(error = %e.message, "refreshing the /metrics cost series failed; serving the last ones"),
                    }
                    slot.refreshing.store(false, Ordering::Release);
                });
            }
            return Ok(c);
        }
        let _first = slot.first.lock().await;
        if let Some(c) = slot.current() {
            return Ok(c);
        }
        let view = self.refresh(state, caller).await?;
        Ok(slot.store(view))
    }

    fn render_budgets(&self, out: &mut Exposition, tenant: Option<&str>) {
        out.family(
            "costplane_budget_monthly_usd",
            Kind::Gauge,
            "Monthly budgets from [metrics.budgets] (USD); tenant=\"*\" is the budget of all tenants together.",
        );
        for (scope, usd) in self.budgets.iter().filter(|(s, _)| tenant.is_none_or(|t| s == t)) {
            out.sample("costplane_budget_monthly_usd", &[("tenant", scope)], money(*usd));
        }
    }
}

/// What `/metrics` reads.
#[derive(Clone)]
pub struct MetricsState {
    pub costs: CostState,
    pub pipeline: costplane_pipeline::Pipeline,
    pub inflight: crate::otlp::inflight::InflightLimit,
    pub cache: Arc<MetricsCache>,
}

/// Observes a request's duration when dropped: with the response body,
/// so streamed exports count until their last byte.
struct QueryTimer {
    cache: Arc<MetricsCache>,
    started: Instant,
}

impl Drop for QueryTimer {
    fn drop(&mut self) {
        self.cache.query_duration.observe(self.started.elapsed());
    }
}

/// Times the API's requests into `costplane_query_duration_seconds`.
pub async fn time_queries(State(cache): State<Arc<MetricsCache>>, req: Request, next: Next) -> Response {
    use http_body_util::BodyExt;
    let timer = QueryTimer { cache, started: Instant::now() };
    let resp = next.run(req).await;
    resp.map(|body| {
        axum::body::Body::new(body.map_frame(move |frame| {
            let _ = &timer;
            frame
        }))
    })
}

/// `GET /metrics`: Prometheus text or OpenMetrics, as `Accept` asks.
pub async fn metrics(
    State(s): State<MetricsState>,
    Extension(caller): Extension<Caller>,
    insights: Option<Extension<Arc<crate::insights::metrics::Gauges>>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let format = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let cached = s.cache.get(&s.costs, &caller).await?;
    let tenant = caller.tenant();
    let mut out = Exposition::new(format);
    s.cache.counters.render(&mut out, tenant);
    render_view(&mut out, &cached.view, s.cache.max_values);
    s.cache.render_budgets(&mut out, tenant);
    s.cache.request_costs.render(&mut out, &s.costs, &caller).await;
    out.one(
        "costplane_cost_series_age_seconds",
        Kind::Gauge,
        "Seconds since the month-to-date series were read from the ledger (they are reused for metrics.cache_ttl).",
        format!("{:.3}", cached.at.elapsed().as_secs_f64()),
    );
    crate::health::write_pipeline_metrics(&mut out, &s.pipeline.stats(), tenant);
    s.costs.closer.write_metrics(&mut out);
    out.family("costplane_query_duration_seconds", Kind::Histogram, "Duration of cost, export and SQL API requests.");
    out.histogram("costplane_query_duration_seconds", &[], &s.cache.query_duration.snapshot());
    out.one(
        "costplane_inflight_request_bytes",
        Kind::Gauge,
        "Bytes reserved by OTLP requests being received, decompressed or decoded (limit: otlp.max_inflight_mib).",
        s.inflight.in_flight_bytes(),
    );
    if let Some(Extension(gauges)) = insights {
        gauges.render(&mut out, &caller);
    }
    crate::health::write_process_metrics(&mut out);
    Ok(([(header::CONTENT_TYPE, format.content_type())], out.finish()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(tenant: &str, model: &str) -> Labels {
        row_labels("llm", "input", "chat", tenant, "p", "OpenAI", model)
    }

    fn d(v: &str) -> Decimal {
        Decimal::from_str(v).unwrap()
    }

    #[test]
    fn cost_types_follow_source_and_usage_type() {
        assert_eq!(classify("llm", "output"), ("llm", String::new(), String::new()));
        assert_eq!(classify("telemetry", "traces").0, "ingest");
        assert_eq!(classify("telemetry", "queries").0, "query");
        assert_eq!(classify("kubernetes", "cpu").0, "cpu");
        assert_eq!(classify("kubernetes", "storage/ssd"), ("storage", "ssd".into(), String::new()));
        assert_eq!(classify("kubernetes", "network/egress"), ("network", String::new(), "egress".into()));
        assert_eq!(classify("cloud", "AmazonEC2").0, "cloud");
        assert_eq!(classify("invoice", "output").0, "invoice");
        assert_eq!(classify("kubernetes", "mystery").0, OTHER);
        // Every usage type Kubernetes allocation books has a cost type.
        use costplane_k8s::allocate::Resource;
        let types: Vec<_> = [
            Resource::Cpu,
            Resource::Ram,
            Resource::Gpu,
            Resource::Volume,
            Resource::NetworkReceive,
            Resource::NetworkTransmit,
            Resource::IdleCpu,
            Resource::IdleRam,
            Resource::Shared,
        ]
        .iter()
        .map(|r| classify("kubernetes", r.as_str()))
        .map(|(t, _, d)| format!("{t}{d}"))
        .collect();
        assert_eq!(types, ["cpu", "memory", "gpu", "volume", "networkreceive", "networktransmit", "idle", "idle", "shared"]);
    }

    #[test]
    fn values_past_the_cap_fold_into_other_exactly() {
        // Tenants a 0.5 + 0.25 = 0.75, b 0.1, c 0.000000000001, d 0.2; cap 2
        // keeps a and d; b and c fold: other = 0.100000000001.
        let rows = vec![
            (labels("a", "m1"), d("0.5")),
            (labels("a", "m2"), d("0.25")),
            (labels("b", "m1"), d("0.1")),
            (labels("c", "m1"), d("0.000000000001")),
            (labels("d", "m1"), d("0.2")),
        ];
        let total: Decimal = rows.iter().map(|r| r.1).sum();
        let (series, folded, ranked) = fold(rows, 2, 128);
        let tenants: HashSet<&str> = series.keys().map(|k| k[TENANT].as_str()).collect();
        assert_eq!(tenants, HashSet::from(["a", "d", OTHER]));
        let other: Decimal = series.iter().filter(|(k, _)| k[TENANT] == OTHER).map(|(_, v)| *v).sum();
        assert_eq!(other, d("0.100000000001"));
        assert_eq!(series.values().copied().sum::<Decimal>(), total);
        assert_eq!(folded[1], Folded { label: "tenant", values: 2 });
        assert_eq!(ranked[1], vec!["a".to_owned(), "d".to_owned()]);
        assert!(series.keys().all(|k| k[6] != OTHER), "two models fit under the cap");
    }

    #[test]
    fn ties_rank_by_name_and_a_zero_cap_folds_everything() {
        let (series, _, _) = fold(vec![(labels("b", "m"), d("1")), (labels("a", "m"), d("1"))], 1, 128);
        assert_eq!(series.keys().map(|k| k[TENANT].as_str()).collect::<Vec<_>>(), vec!["a", OTHER]);
        let (series, _, _) = fold(vec![(labels("b", "m"), d("1")), (labels("a", "m"), d("2"))], 0, 128);
        assert_eq!(series.len(), 1);
        assert_eq!(series.values().next().unwrap(), &Decimal::from(3));
    }

    #[test]
    fn long_values_are_cut_at_a_character_boundary_and_merged() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        let long = "x".repeat(200);
        let (series, _, _) = fold(vec![(labels(&format!("{long}1"), "m"), d("1")), (labels(&format!("{long}2"), "m"), d("2"))], 100, 128);
        assert_eq!(series.len(), 1, "two values equal in their first 128 bytes are one series");
        let (l, cost) = series.into_iter().next().unwrap();
        assert_eq!(l[TENANT].len(), 128);
        assert_eq!(cost, Decimal::from(3));
    }

    fn ledger_row(tenant: &str, cost: &str, status: &str, tokens: u64) -> LedgerRow {
        LedgerRow::builder(costplane_telemetry::usage::Source::Llm, 0, 3_600_000_000_000)
            .cost(d(cost), "USD")
            .service("OpenAI models", "AI and Machine Learning")
            .provider("OpenAI")
            .consumed(Decimal::from(tokens), "Tokens")
            .pricing(Decimal::ZERO, "1M Tokens")
            .tags("{}")
            .owner(tenant, "p", "chat")
            .model("gpt-4o")
            .operation("chat")
            .usage_type(costplane_telemetry::usage::UsageType::Input)
            .priced(PricingStatus::parse(status).unwrap(), "test")
            .build()
    }

    #[test]
    fn counter_places_are_sticky_and_the_rest_is_other() {
        let c = CostCounters::new(2, 128);
        // The month's ranking offers b first; then a is booked: both placed.
        c.offer(&[vec![], vec!["b".into()], vec![], vec![], vec![]]);
        c.book(&[ledger_row("a", "1.5", "priced", 10)]);
        // c finds the places taken: other. a and b keep theirs.
        c.book(&[ledger_row("c", "0.25", "priced", 10), ledger_row("a", "0.5", "priced", 10), ledger_row("b", "2", "priced", 10)]);
        // A later offer cannot move anything: no free place.
        c.offer(&[vec![], vec!["c".into()], vec![], vec![], vec![]]);
        c.book(&[ledger_row("c", "0.75", "unpriced", 1000)]);
        let mut out = Exposition::new(Format::Text);
        c.render(&mut out, None);
        let text = out.finish();
        // a: 1.5 + 0.5 = 2; b: 2; other (c): 0.25 + 0.75 = 1.
        let line = |t: &str, v: &str| {
            format!(
                "costplane_cost_usd_total{{source=\"llm\",cost_type=\"llm\",service=\"chat\",tenant=\"{t}\",project=\"p\",\
                 provider=\"OpenAI\",model=\"gpt-4o\"}} {v}\n"
            )
        };
        for (t, v) in [("a", "2"), ("b", "2"), (OTHER, "1")] {
            assert!(text.contains(&line(t, v)), "{t}: {text}");
        }
        assert!(
            text.contains("costplane_unpriced_tokens_total{tenant=\"other\",service=\"chat\",provider=\"OpenAI\",model=\"gpt-4o\"} 1000\n"),
            "{text}"
        );
        // A tenant's key sees its own series only.
        let mut out = Exposition::new(Format::Text);
        c.render(&mut out, Some("a"));
        let text = out.finish();
        assert!(text.contains(&line("a", "2")) && !text.contains("tenant=\"b\""), "{text}");
    }

    #[test]
    fn fifty_thousand_counter_series_render_well_within_a_second() {
        // 100 tenants x 100 models x 5 projects, all under the cap of 100:
        // 50,000 series, the most one label set of this shape can hold.
        let c = CostCounters::new(100, 128);
        let mut rows = Vec::new();
        for t in 0..100 {
            for m in 0..100 {
                for p in 0..5 {
                    let mut r = ledger_row(&format!("tenant-{t}"), "0.000001", "priced", 1);
                    r.model = format!("model-{m}");
                    r.project = format!("project-{p}");
                    rows.push(r);
                }
            }
        }
        let started = Instant::now();
        c.book(&rows);
        let booked = started.elapsed();
        let started = Instant::now();
        let mut out = Exposition::new(Format::OpenMetrics);
        c.render(&mut out, None);
        let text = out.finish();
        let rendered = started.elapsed();
        assert_eq!(text.lines().filter(|l| l.starts_with("costplane_cost_usd_total{")).count(), 50_000);
        eprintln!("booked 50,000 rows in {booked:?}; rendered 50,000 series ({} bytes) in {rendered:?}", text.len());
        assert!(rendered < Duration::from_millis(500), "{rendered:?}");
    }

    #[test]
    fn rendering_escapes_label_values_and_drops_empty_ones() {
        let (series, folded, _) = fold(vec![(labels("a\"b\\c\n", "m"), d("1.50"))], 100, 128);
        let mut out = Exposition::new(Format::Text);
        let view = LedgerView {
            month: series,
            folded,
            last_30_days: d("12.5"),
            compression: vec![("logs".into(), 0.125)],
            reconciliation: Vec::new(),
        };
        render_view(&mut out, &view, 100);
        let text = out.finish();
        assert!(
            text.contains(
                "costplane_cost_month_to_date_usd{source=\"llm\",cost_type=\"llm\",service=\"chat\",tenant=\"a\\\"b\\\\c\\n\",\
                 project=\"p\",provider=\"OpenAI\",model=\"m\"} 1.5\n"
            ),
            "{text}"
        );
        assert!(text.contains("costplane_cost_folded_label_values{label=\"tenant\"} 0\n"), "{text}");
        assert!(text.contains("costplane_store_compression_ratio{signal=\"logs\"} 0.125\n"), "{text}");
        assert!(text.contains("\ncostplane_cost_last_30_days_usd 12.5\n"), "{text}");
    }
}
