//! `GET /metrics`: the month-to-date cost series, plus costplane's own health.
//!
//! Cost series are sums of the ledger over the current month (UTC), the same
//! stored decimals the API and exports add up, printed exactly. Two things
//! keep them cheap and bounded:
//!
//! - **Bounded labels.** For each of `tenant`, `project`, `service` and
//!   `model`, the `metrics.max_series_per_label` values with the largest cost
//!   this month keep their name; every other value becomes `other`, and the
//!   series that then share their labels are added together. Sums stay exact:
//!   a folded series is the exact decimal sum of the series it replaces, so
//!   all series together still equal the ledger's month to the last digit.
//!   Values longer than `metrics.max_label_value_bytes` are cut (at a
//!   character boundary) before ranking.
//! - **Cached.** The ledger is read at most once per `metrics.cache_ttl` per
//!   caller scope (admin, or one tenant's key). A scrape after the TTL gets
//!   the last series at once and starts one refresh in the background; only
//!   the very first scrape waits for the query. Health series are always
//!   current (they come from memory).
//!
//! There is no cumulative `_total` cost counter: repricing rewrites past
//! ledger rows (a cumulative sum may go down), and folding moves a value
//! between series as the ranking changes, so neither would be monotonic.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use http::header;
use rust_decimal::Decimal;

use super::params::{ns, parse_month};
use super::{money, CostState};
use crate::auth::Caller;
use crate::config::MetricsSection;
use crate::error::ApiError;
use crate::health::{family, label_value, one};

/// The value folded series carry.
pub const OTHER: &str = "other";

/// Label names of `costplane_cost_month_to_date`, in output order.
const LABELS: [&str; 7] = ["tenant", "project", "service", "source", "model", "pricing_status", "currency"];

/// Which of [`LABELS`] are client-controlled, so capped (the others are
/// costplane's own small vocabularies: `llm`/`telemetry`, `priced`/..., the
/// catalog's currency).
const CAPPED: [usize; 4] = [0, 1, 2, 4];

/// One series: its label values (as [`LABELS`]) and its cost.
pub type Series = BTreeMap<[String; 7], Decimal>;

/// Label values as read from the ledger, each row one grouped sum.
#[derive(Debug, Clone, PartialEq)]
pub struct CostRow {
    pub labels: [String; 7],
    pub cost: Decimal,
}

/// What folding did to one capped label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded {
    pub label: &'static str,
    /// Distinct values folded into `other`.
    pub values: usize,
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

/// Caps every client-controlled label at `max_values` values (largest cost
/// first, ties by name) and adds up the series that then coincide. The sum
/// of the result equals the sum of `rows` exactly.
pub fn fold(rows: Vec<CostRow>, max_values: usize, max_bytes: usize) -> (Series, Vec<Folded>) {
    let rows: Vec<CostRow> =
        rows.into_iter().map(|r| CostRow { labels: r.labels.map(|v| cut(&v, max_bytes).to_owned()), cost: r.cost }).collect();
    let mut keep: Vec<Option<HashSet<String>>> = vec![None; LABELS.len()];
    let mut folded = Vec::new();
    for &d in &CAPPED {
        let mut by_value: HashMap<&str, Decimal> = HashMap::new();
        for r in &rows {
            *by_value.entry(&r.labels[d]).or_default() += r.cost;
        }
        let distinct = by_value.len();
        if distinct <= max_values {
            folded.push(Folded { label: LABELS[d], values: 0 });
            continue;
        }
        let mut ranked: Vec<(&str, Decimal)> = by_value.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        keep[d] = Some(ranked.into_iter().take(max_values).map(|(v, _)| v.to_owned()).collect());
        folded.push(Folded { label: LABELS[d], values: distinct - max_values });
    }
    let mut series = Series::new();
    for r in rows {
        let mut labels = r.labels;
        for (d, kept) in keep.iter().enumerate() {
            if let Some(kept) = kept {
                if !kept.contains(&labels[d]) {
                    labels[d] = OTHER.to_owned();
                }
            }
        }
        *series.entry(labels).or_default() += r.cost;
    }
    (series, folded)
}

/// The cost families in the Prometheus text format.
pub fn render(series: &Series, folded: &[Folded], max_values: usize) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "costplane_cost_month_to_date",
        "gauge",
        "Cost in the ledger since the start of the current month (UTC). Per tenant, project, service and model label, \
         values beyond the ones with the largest cost are summed into \"other\".",
    );
    for (labels, cost) in series {
        out.push_str("costplane_cost_month_to_date{");
        for (i, (name, value)) in LABELS.iter().zip(labels).enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(out, "{sep}{name}=\"{}\"", label_value(value));
        }
        let _ = writeln!(out, "}} {}", money(*cost));
    }
    family(
        &mut out,
        "costplane_cost_folded_label_values",
        "gauge",
        &format!(
            "Distinct label values summed into \"other\" in costplane_cost_month_to_date (metrics.max_series_per_label = {max_values})."
        ),
    );
    for f in folded {
        let _ = writeln!(out, "costplane_cost_folded_label_values{{label=\"{}\"}} {}", f.label, f.values);
    }
    out
}

/// Reads the month's ledger sums for `caller` and renders them.
async fn compute(state: &CostState, caller: &Caller, max_values: usize, max_bytes: usize) -> Result<String, ApiError> {
    use chrono::Datelike;
    let now = chrono::Utc::now();
    let (from, to) = parse_month(&format!("{:04}-{:02}", now.year(), now.month()))?;
    let filter = costplane_telemetry::usage::CostFilter {
        from_ns: ns(from),
        to_ns: ns(to),
        tenant: caller.tenant().map(str::to_owned),
        equals: Vec::new(),
    };
    let sums = state.ledger().sum_costs(&filter, &super::closer::METRIC_DIMENSIONS, None).await?;
    let rows = sums
        .into_iter()
        .map(|s| CostRow { labels: std::array::from_fn(|i| s.dims.get(i).cloned().unwrap_or_default()), cost: s.cost })
        .collect();
    let (series, folded) = fold(rows, max_values, max_bytes);
    Ok(render(&series, &folded, max_values))
}

#[derive(Clone)]
struct Cached {
    text: Arc<str>,
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

    fn store(&self, text: String) -> Cached {
        let c = Cached { text: text.into(), at: Instant::now() };
        *self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(c.clone());
        c
    }
}

/// The computed cost series, one entry per caller scope (admin, or a
/// tenant's key: a bounded set, the configured keys).
pub struct MetricsCache {
    ttl: Duration,
    max_values: usize,
    max_bytes: usize,
    slots: Mutex<HashMap<Option<String>, Arc<Slot>>>,
}

impl Default for MetricsCache {
    fn default() -> Self {
        MetricsCache::new(&MetricsSection::default()).expect("the default [metrics] section is valid")
    }
}

impl MetricsCache {
    pub fn new(config: &MetricsSection) -> Result<MetricsCache, String> {
        Ok(MetricsCache {
            ttl: config.cache_ttl()?,
            max_values: config.max_series_per_label,
            max_bytes: config.max_label_value_bytes,
            slots: Mutex::new(HashMap::new()),
        })
    }

    fn slot(&self, caller: &Caller) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(slots.entry(caller.tenant().map(str::to_owned)).or_default())
    }

    /// The caller's cost series: cached, refreshed in the background once
    /// older than the TTL, computed here only when there is none yet.
    async fn get(self: &Arc<Self>, state: &CostState, caller: &Caller) -> Result<Cached, ApiError> {
        let slot = self.slot(caller);
        if let Some(c) = slot.current() {
            if c.at.elapsed() >= self.ttl && !slot.refreshing.swap(true, Ordering::AcqRel) {
                let (cache, state, caller, slot) = (Arc::clone(self), state.clone(), caller.clone(), Arc::clone(&slot));
                tokio::spawn(async move {
                    match compute(&state, &caller, cache.max_values, cache.max_bytes).await {
                        Ok(text) => {
                            slot.store(text);
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
        let text = compute(state, caller, self.max_values, self.max_bytes).await?;
        Ok(slot.store(text))
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

/// `GET /metrics`: Prometheus text. Cost series come from the cache (see
/// the module docs); health series from the pipeline, as of this scrape.
pub async fn metrics(State(s): State<MetricsState>, Extension(caller): Extension<Caller>) -> Result<Response, ApiError> {
    let cached = s.cache.get(&s.costs, &caller).await?;
    let mut out = String::with_capacity(cached.text.len() + 4096);
    out.push_str(&cached.text);
    one(
        &mut out,
        "costplane_cost_series_age_seconds",
        "gauge",
        "Seconds since the cost series above were read from the ledger (they are reused for metrics.cache_ttl).",
        format!("{:.3}", cached.at.elapsed().as_secs_f64()),
    );
    crate::health::write_pipeline_metrics(&mut out, &s.pipeline.stats());
    one(
        &mut out,
        "costplane_inflight_request_bytes",
        "gauge",
        "Bytes reserved by OTLP requests being received, decompressed or decoded (limit: otlp.max_inflight_mib).",
        s.inflight.in_flight_bytes(),
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn row(tenant: &str, model: &str, cost: &str) -> CostRow {
        CostRow { labels: [tenant, "p", "s", "llm", model, "priced", "USD"].map(String::from), cost: Decimal::from_str(cost).unwrap() }
    }

    #[test]
    fn values_past_the_cap_fold_into_other_exactly() {
        // Tenants a 0.5 + 0.25 = 0.75, b 0.1, c 0.000000000001, d 0.2; cap 2
        // keeps a and d; b and c fold: other = 0.100000000001.
        let rows = vec![
            row("a", "m1", "0.5"),
            row("a", "m2", "0.25"),
            row("b", "m1", "0.1"),
            row("c", "m1", "0.000000000001"),
            row("d", "m1", "0.2"),
        ];
        let total: Decimal = rows.iter().map(|r| r.cost).sum();
        let (series, folded) = fold(rows, 2, 128);
        let tenants: HashSet<&str> = series.keys().map(|k| k[0].as_str()).collect();
        assert_eq!(tenants, HashSet::from(["a", "d", OTHER]));
        let other: Decimal = series.iter().filter(|(k, _)| k[0] == OTHER).map(|(_, v)| *v).sum();
        assert_eq!(other, Decimal::from_str("0.100000000001").unwrap());
        assert_eq!(series.values().copied().sum::<Decimal>(), total);
        assert_eq!(folded[0], Folded { label: "tenant", values: 2 });
        // Two models fit under the cap: none folded.
        assert!(series.keys().all(|k| k[4] != OTHER));
    }

    #[test]
    fn ties_rank_by_name_and_a_zero_cap_folds_everything() {
        let (series, _) = fold(vec![row("b", "m", "1"), row("a", "m", "1")], 1, 128);
        assert_eq!(series.keys().map(|k| k[0].as_str()).collect::<Vec<_>>(), vec!["a", OTHER]);
        let (series, _) = fold(vec![row("b", "m", "1"), row("a", "m", "2")], 0, 128);
        assert_eq!(series.len(), 1);
        assert_eq!(series.values().next().unwrap(), &Decimal::from(3));
    }

    #[test]
    fn long_values_are_cut_at_a_character_boundary_and_merged() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        let long = "x".repeat(200);
        let (series, _) = fold(vec![row(&format!("{long}1"), "m", "1"), row(&format!("{long}2"), "m", "2")], 100, 128);
        assert_eq!(series.len(), 1, "two values equal in their first 128 bytes are one series");
        let (labels, cost) = series.into_iter().next().unwrap();
        assert_eq!(labels[0].len(), 128);
        assert_eq!(cost, Decimal::from(3));
    }

    #[test]
    fn rendering_escapes_label_values() {
        let (series, folded) = fold(vec![row("a\"b\\c\n", "m", "1.50")], 100, 128);
        let text = render(&series, &folded, 100);
        assert!(
            text.contains(
                "costplane_cost_month_to_date{tenant=\"a\\\"b\\\\c\\n\",project=\"p\",service=\"s\",source=\"llm\",model=\"m\",pricing_status=\"priced\",currency=\"USD\"} 1.5\n"
            ),
            "{text}"
        );
        assert!(text.contains("costplane_cost_folded_label_values{label=\"tenant\"} 0\n"), "{text}");
    }
}
