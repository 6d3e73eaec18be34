//! `costplane_request_cost_usd{service,route}` on `/metrics`: cost per
//! request of the costliest routes, the month to date (UTC).
//!
//! A summary without quantiles: `_sum` is the cost of a (service, route)'s
//! requests since the start of the month (the API's `cost.total`: LLM, the
//! known part of compute, telemetry) and `_count` their number, so
//! `_sum / _count` is the month's cost per request (the API's
//! `per_request` before its rounding to 12 places). There are no quantiles
//! because cost is attributed to a group of requests, not to one request
//! (a trace's model calls go to every group holding one of its requests).
//! Both fall back at the start of a month, which Prometheus reads as a
//! counter reset.
//!
//! **Bounded.** The `metrics.max_series_per_label` pairs with the highest
//! total cost keep their series (ties by name, as the API sorts); the rest
//! are summed into one `{service="other",route="other"}` series, so the
//! family adds up to the API's total exactly. Values longer than
//! `metrics.max_label_value_bytes` are cut, and pairs equal after the cut
//! summed.
//!
//! **Once per TTL.** The answer is `crate::unit_costs::answer` over the
//! window `GET /api/v1/unit-costs` reads by default (the start of the month
//! to the end of the current hour), made at most once per
//! `metrics.request_cost_ttl` (5 minutes by default: the answer scans the
//! month's spans, so a scrape every 15 s made it the server's largest
//! cost once a month held millions of spans) per caller scope (admin, or one tenant's key, which
//! sees its tenant's requests and money only). A scrape after the TTL gets
//! the last series at once and starts one refresh in the background; only
//! the first scrape of a scope waits. A failed read leaves the family
//! empty (logged), never the scrape failed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{Datelike, TimeZone, Utc};
use costplane_store::unit_costs::UnitDim;
use rust_decimal::Decimal;

use super::{GroupCost, UnitCostsSection};
use crate::auth::Caller;
use crate::costs::metrics::{cut, OTHER};
use crate::costs::CostState;
use crate::health::{Exposition, Kind};

/// The family's name.
pub const FAMILY: &str = "costplane_request_cost_usd";
const HOUR_NS: i64 = 3_600_000_000_000;

/// One series of the family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSeries {
    pub service: String,
    pub route: String,
    pub requests: u64,
    pub cost: Decimal,
}

/// The series of `groups` (keyed service, route; most costly first, as
/// the API sorts them): the first `max_series` pairs keep theirs, the rest
/// are summed into `other`.
pub fn top_routes(groups: &[GroupCost], max_series: usize, max_bytes: usize) -> Vec<RouteSeries> {
    let mut kept: Vec<RouteSeries> = Vec::new();
    let mut index: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut rest = RouteSeries { service: OTHER.into(), route: OTHER.into(), requests: 0, cost: Decimal::ZERO };
    for (i, g) in groups.iter().enumerate() {
        if i >= max_series {
            rest.requests += g.requests;
            rest.cost += g.total();
            continue;
        }
        let part = |k: usize| cut(g.key.get(k).map(String::as_str).unwrap_or_default(), max_bytes).to_owned();
        let (service, route) = (part(0), part(1));
        match index.get(&(service.clone(), route.clone())) {
            // Two pairs equal after the cut are one series.
            Some(&at) => {
                kept[at].requests += g.requests;
                kept[at].cost += g.total();
            }
            None => {
                index.insert((service.clone(), route.clone()), kept.len());
                kept.push(RouteSeries { service, route, requests: g.requests, cost: g.total() });
            }
        }
    }
    if rest.requests > 0 || !rest.cost.is_zero() {
        match kept.iter_mut().find(|s| s.service == OTHER && s.route == OTHER) {
            Some(s) => {
                s.requests += rest.requests;
                s.cost += rest.cost;
            }
            None => kept.push(rest),
        }
    }
    kept
}

/// Writes the family (its header even without series).
pub fn render_series(out: &mut Exposition, series: &[RouteSeries], max_series: usize) {
    out.family(
        FAMILY,
        Kind::Summary,
        &format!(
            "Cost of the month's requests (USD, _sum) and their number (_count) per service and route, since the start of the \
             month (UTC): _sum / _count is the cost per request, as GET /api/v1/unit-costs gives it. The {max_series} routes \
             with the largest cost keep their series (metrics.max_series_per_label); the others are summed into other."
        ),
    );
    for s in series {
        let labels = [("service", s.service.as_str()), ("route", s.route.as_str())];
        out.sample(&format!("{FAMILY}_sum"), &labels, s.cost.normalize());
        out.sample(&format!("{FAMILY}_count"), &labels, s.requests);
    }
}

/// `[start of this month, end of this hour)` in nanoseconds: the window
/// the API answers without from/to.
fn month_to_date(now: chrono::DateTime<Utc>) -> (i64, i64) {
    let start = Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).single().unwrap_or(now);
    let now_ns = now.timestamp_nanos_opt().unwrap_or(i64::MAX);
    let start_ns = start.timestamp_nanos_opt().unwrap_or(0);
    let rest = now_ns.rem_euclid(HOUR_NS);
    (start_ns, if rest == 0 { now_ns } else { now_ns.saturating_add(HOUR_NS - rest) })
}

#[derive(Default)]
struct Slot {
    cached: Mutex<Option<(Arc<Vec<RouteSeries>>, Instant)>>,
    refreshing: AtomicBool,
    /// Serialises the first, synchronous computation.
    first: tokio::sync::Mutex<()>,
}

impl Slot {
    fn current(&self) -> Option<(Arc<Vec<RouteSeries>>, Instant)> {
        self.cached.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn store(&self, series: Vec<RouteSeries>) -> Arc<Vec<RouteSeries>> {
        let series = Arc::new(series);
        *self.cached.lock().unwrap_or_else(PoisonError::into_inner) = Some((Arc::clone(&series), Instant::now()));
        series
    }
}

/// The family's cached series per caller scope.
pub struct RequestCostSeries {
    ttl: Duration,
    max_series: usize,
    max_bytes: usize,
    slots: Mutex<HashMap<Option<String>, Arc<Slot>>>,
}

impl RequestCostSeries {
    pub fn new(ttl: Duration, max_series: usize, max_bytes: usize) -> RequestCostSeries {
        RequestCostSeries { ttl, max_series, max_bytes, slots: Mutex::new(HashMap::new()) }
    }

    async fn compute(&self, state: &CostState, tenant: Option<String>) -> Result<Vec<RouteSeries>, crate::error::ApiError> {
        let (from_ns, to_ns) = month_to_date(Utc::now());
        // Grouped by service and route the customer attribute is never
        // read, so the default section answers as the configured one.
        let answer =
            super::answer(state, &UnitCostsSection::default(), from_ns, to_ns, tenant, vec![UnitDim::Service, UnitDim::Route]).await?;
        Ok(top_routes(&answer.groups, self.max_series, self.max_bytes))
    }

    /// The caller's series: cached, refreshed in the background once older
    /// than the TTL, computed here only when there are none yet.
    async fn get(self: &Arc<Self>, state: &CostState, caller: &Caller) -> Option<Arc<Vec<RouteSeries>>> {
        let tenant = caller.tenant().map(str::to_owned);
        let slot = Arc::clone(self.slots.lock().unwrap_or_else(PoisonError::into_inner).entry(tenant.clone()).or_default());
        if let Some((series, at)) = slot.current() {
            if at.elapsed() >= self.ttl && !slot.refreshing.swap(true, Ordering::AcqRel) {
                let (me, state, slot) = (Arc::clone(self), state.clone(), Arc::clone(&slot));
                tokio::spawn(async move {
                    match me.compute(&state, tenant).await {
                        Ok(series) => {
                            slot.store(series);
                        }
                        Err(e) => tracing::warn!(error = %e.message, "refreshing {FAMILY} failed; serving the last series"),
                    }
                    slot.refreshing.store(false, Ordering::Release);
                });
            }
            return Some(series);
        }
        let _first = slot.first.lock().await;
        if let Some((series, _)) = slot.current() {
            return Some(series);
        }
        match self.compute(state, tenant).await {
            Ok(series) => Some(slot.store(series)),
            Err(e) => {
                tracing::warn!(error = %e.message, "no {FAMILY} series for /metrics");
                None
            }
        }
    }

    /// Writes the family for `caller`.
    pub async fn render(self: &Arc<Self>, out: &mut Exposition, state: &CostState, caller: &Caller) {
        let series = self.get(state, caller).await.unwrap_or_default();
        render_series(out, &series, self.max_series);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Format;
    use std::str::FromStr;

    fn group(service: &str, route: &str, requests: u64, llm: &str) -> GroupCost {
        GroupCost {
            key: vec![service.into(), route.into()],
            requests,
            llm: Decimal::from_str(llm).unwrap(),
            compute: None,
            ..GroupCost::default()
        }
    }

    #[test]
    fn the_costliest_routes_keep_their_series_and_the_rest_sum_into_other() {
        // Sorted as the API sorts: 0.5, 0.25, 0.125, 0.000000000001.
        let groups = [
            group("shop", "/checkout", 4, "0.5"),
            group("shop", "/items/{id}", 10, "0.25"),
            group("recs", "/recommend", 3, "0.125"),
            group("cron", "nightly", 1, "0.000000000001"),
        ];
        let series = top_routes(&groups, 2, 128);
        // other: 3 + 1 = 4 requests, 0.125 + 0.000000000001 = 0.125000000001.
        assert_eq!(
            series.iter().map(|s| (s.service.as_str(), s.route.as_str(), s.requests, s.cost.to_string())).collect::<Vec<_>>(),
            [
                ("shop", "/checkout", 4, "0.5".to_owned()),
                ("shop", "/items/{id}", 10, "0.25".to_owned()),
                (OTHER, OTHER, 4, "0.125000000001".to_owned())
            ]
        );
        // The family adds up to every group's cost.
        let all: Decimal = groups.iter().map(GroupCost::total).sum();
        assert_eq!(series.iter().map(|s| s.cost).sum::<Decimal>(), all);
        // A cap of zero folds everything; a cap above the groups folds nothing.
        assert_eq!(top_routes(&groups, 0, 128).len(), 1);
        assert_eq!(top_routes(&groups, 10, 128).len(), 4);
    }

    #[test]
    fn long_routes_are_cut_and_pairs_equal_after_the_cut_merge() {
        let long = "r".repeat(200);
        let groups = [group("shop", &format!("{long}a"), 1, "1"), group("shop", &format!("{long}b"), 2, "2")];
        let series = top_routes(&groups, 10, 128);
        assert_eq!(series.len(), 1);
        assert_eq!((series[0].route.len(), series[0].requests, series[0].cost), (128, 3, Decimal::from(3)));
    }

    #[test]
    fn the_family_is_a_summary_of_sum_and_count() {
        let mut out = Exposition::new(Format::Text);
        render_series(&mut out, &top_routes(&[group("shop", "/checkout", 3, "0.0120")], 100, 128), 100);
        let text = out.finish();
        assert!(text.contains("# TYPE costplane_request_cost_usd summary\n"), "{text}");
        assert!(text.contains("costplane_request_cost_usd_sum{service=\"shop\",route=\"/checkout\"} 0.012\n"), "{text}");
        assert!(text.contains("costplane_request_cost_usd_count{service=\"shop\",route=\"/checkout\"} 3\n"), "{text}");
    }

    #[test]
    fn the_window_is_the_month_to_the_end_of_the_hour() {
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 10, 30, 0).unwrap();
        let (from, to) = month_to_date(now);
        assert_eq!(from, Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap().timestamp_nanos_opt().unwrap());
        assert_eq!(to, Utc.with_ymd_and_hms(2026, 12, 7, 11, 0, 0).unwrap().timestamp_nanos_opt().unwrap());
    }
}
