//! The money of a group of requests, made from what the store read.
//!
//! # Rules
//! - **LLM**: the model calls of the group's traces (each trace once per
//!   group, its own tenant's calls only), priced with the prices in force
//!   as the ledger prices them (`costplane_cost::llm::price_summed` over
//!   calls that price alike, which equals pricing each call). A roll-up span
//!   counts only in a trace without model-call usage; invalid and unpriced
//!   calls cost nothing here and are counted apart.
//! - **Compute**: each pod-hour's Kubernetes cost (every ledger row of the
//!   pod in that hour) is shared among the requests the pod served in that
//!   hour by their duration: a group's share is cost × the group's summed
//!   duration ÷ the pod-hour's summed duration. Requests without a pod
//!   attribute, or whose pod-hour has no Kubernetes cost, are *unknown*,
//!   not free: a group none of whose requests is priced has no compute
//!   figure (`null`).
//! - **Telemetry**: the ledger's ingest and storage cost of a (tenant,
//!   service, signal) in the window, per item it received; a group's traces
//!   carry that per-item cost for each of their spans and logs.
//! - Each part is rounded once, to the ledger's 12 places (half-even);
//!   per-request figures are the rounded total ÷ requests, rounded again.
//!
//! Groups sort by total cost, highest first, then by key.

use std::collections::{BTreeMap, HashMap};

use chrono::DateTime;
use costplane_cost::llm::{self, LlmUsage, PricingStatus};
use costplane_cost::Meter;
use costplane_store::unit_costs::{CallSum, ItemCost, PodShare, RequestGroup, TraceCall, TraceItems};
use costplane_telemetry::usage::round_money;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

/// The cost of one group of requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupCost {
    pub key: Vec<String>,
    pub requests: u64,
    pub errors: u64,
    pub p50_ns: u64,
    pub p95_ns: u64,
    pub traces: u64,
    pub llm: Decimal,
    pub llm_calls: u64,
    pub unpriced_calls: u64,
    pub invalid_calls: u64,
    /// `None`: no request of the group has a known compute cost.
    pub compute: Option<Decimal>,
    /// Requests whose compute cost is known.
    pub compute_requests: u64,
    pub telemetry: Decimal,
    pub spans: u64,
    pub logs: u64,
}

impl GroupCost {
    pub fn total(&self) -> Decimal {
        self.llm + self.compute.unwrap_or_default() + self.telemetry
    }

    pub fn per_request(&self) -> Decimal {
        if self.requests == 0 {
            return Decimal::ZERO;
        }
        round_money(self.total() / Decimal::from(self.requests))
    }

    pub fn per_1000_requests(&self) -> Decimal {
        if self.requests == 0 {
            return Decimal::ZERO;
        }
        round_money(self.total() * Decimal::from(1000u32) / Decimal::from(self.requests))
    }

    pub fn error_ratio(&self) -> Decimal {
        if self.requests == 0 {
            return Decimal::ZERO;
        }
        (Decimal::from(self.errors) / Decimal::from(self.requests)).round_dp(6)
    }
}

/// Every group, most costly first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitCosts {
    pub groups: Vec<GroupCost>,
}

impl UnitCosts {
    /// The one group of an ungrouped read (or an empty one).
    pub fn total(&self) -> GroupCost {
        self.groups.first().cloned().unwrap_or_default()
    }
}

/// A day's date from its start in nanoseconds.
fn day_of(ns: i64) -> chrono::NaiveDate {
    DateTime::from_timestamp_nanos(ns).date_naive()
}

/// The cost of a sum of calls that price alike, or why it has none.
fn price_sum(meter: &Meter, c: &CallSum) -> Result<Decimal, PricingStatus> {
    if !c.invalid_reason.is_empty() || c.over_limit {
        return Err(PricingStatus::Invalid);
    }
    let count = |d: Decimal| d.to_u64().ok_or(PricingStatus::Invalid);
    // The parts add back to the counts a span reports: input holds the
    // cached tokens, output the reasoning ones.
    let usage = LlmUsage {
        provider: c.provider.clone(),
        model: c.model.clone(),
        operation: c.operation.clone(),
        input_tokens: count(c.input + c.cache_read + c.cache_write)?,
        output_tokens: count(c.output + c.reasoning)?,
        cache_read_tokens: count(c.cache_read)?,
        cache_write_tokens: count(c.cache_write)?,
        cache_write_1h_tokens: count(c.cache_write_1h)?,
        reasoning_tokens: count(c.reasoning)?,
        provided_cost: c.provided,
    };
    let cost = llm::price_summed(&meter.catalog, &usage, c.tier_input, day_of(c.day_ns), meter.provided_cost);
    match cost.status {
        PricingStatus::Priced | PricingStatus::Provided => Ok(cost.total),
        other => Err(other),
    }
}

/// A pod-hour's cost share of a group, when known.
pub fn pod_share(p: &PodShare) -> Option<Decimal> {
    let cost = p.cost?;
    if p.pod.is_empty() || p.pod_busy_ns.is_zero() {
        return None;
    }
    Some(cost * p.busy_ns / p.pod_busy_ns)
}

/// The groups' money from the store's rows.
pub fn assemble(
    meter: &Meter,
    requests: &[RequestGroup],
    calls: &[CallSum],
    pods: &[PodShare],
    items: &[TraceItems],
    rates: &[ItemCost],
) -> UnitCosts {
    let mut groups: BTreeMap<Vec<String>, GroupCost> = BTreeMap::new();
    for r in requests {
        groups.insert(
            r.key.clone(),
            GroupCost {
                key: r.key.clone(),
                requests: r.requests,
                errors: r.errors,
                p50_ns: r.p50_ns,
                p95_ns: r.p95_ns,
                traces: r.traces,
                ..GroupCost::default()
            },
        );
    }
    for c in calls {
        let Some(g) = groups.get_mut(&c.key) else { continue };
        match price_sum(meter, c) {
            Ok(cost) => {
                g.llm += cost;
                g.llm_calls += c.calls;
            }
            Err(PricingStatus::Unpriced) => g.unpriced_calls += c.calls,
            Err(_) => g.invalid_calls += c.calls,
        }
    }
    for p in pods {
        let Some(g) = groups.get_mut(&p.key) else { continue };
        if let Some(share) = pod_share(p) {
            g.compute = Some(g.compute.unwrap_or_default() + share);
            g.compute_requests += p.requests;
        }
    }
    let per_item: HashMap<(&str, &str, &str), &ItemCost> =
        rates.iter().map(|r| ((r.tenant.as_str(), r.service.as_str(), r.signal.as_str()), r)).collect();
    for i in items {
        let Some(g) = groups.get_mut(&i.key) else { continue };
        match i.signal.as_str() {
            "logs" => g.logs += i.items,
            _ => g.spans += i.items,
        }
        if let Some(rate) = per_item.get(&(i.tenant.as_str(), i.service.as_str(), i.signal.as_str())) {
            if rate.items > 0 {
                g.telemetry += rate.cost * Decimal::from(i.items) / Decimal::from(rate.items);
            }
        }
    }
    let mut out: Vec<GroupCost> = groups
        .into_values()
        .map(|mut g| {
            g.llm = round_money(g.llm);
            g.compute = g.compute.map(round_money);
            g.telemetry = round_money(g.telemetry);
            g
        })
        .collect();
    out.sort_by(|a, b| b.total().cmp(&a.total()).then_with(|| a.key.cmp(&b.key)));
    UnitCosts { groups: out }
}

/// One call of a trace with its cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedCall {
    pub call: TraceCall,
    pub provider: String,
    /// The model's name in the ledger (the catalog entry's, else the span's).
    pub model: String,
    /// Whether the ledger bills it (a roll-up of a trace with model calls
    /// is not).
    pub billed: bool,
    pub status: &'static str,
    pub reason: Option<String>,
    pub cost: Decimal,
}

/// Each call of one trace, priced as the ledger prices it.
pub fn price_calls(meter: &Meter, calls: &[TraceCall]) -> Vec<PricedCall> {
    let modeled = calls
        .iter()
        .any(|c| c.kind == "model" && (c.usage.input_tokens > 0 || c.usage.output_tokens > 0 || c.usage.provided_cost.is_some()));
    calls
        .iter()
        .map(|c| {
            let billed = c.kind == "model" || !modeled;
            let usage = &c.usage;
            let (status, reason, cost, provider, model) = if !c.invalid_reason.is_empty() {
                let entry = meter.catalog.lookup_for(&usage.provider, &usage.model).entry.map(|e| e.name.clone());
                (PricingStatus::Invalid, Some(c.invalid_reason.clone()), Decimal::ZERO, usage.provider.clone(), entry)
            } else {
                let priced = llm::price_with(&meter.catalog, usage, day_of(c.timestamp_ns), meter.provided_cost);
                let provider = if usage.provider.is_empty() { priced.provider.clone().unwrap_or_default() } else { usage.provider.clone() };
                (priced.status, priced.reason, priced.total, provider, priced.model)
            };
            PricedCall {
                call: c.clone(),
                provider,
                model: model.unwrap_or_else(|| usage.model.clone()),
                billed,
                status: status.as_str(),
                reason,
                cost: if billed { round_money(cost) } else { Decimal::ZERO },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn share(cost: &str, busy: u64, pod_busy: u64) -> PodShare {
        PodShare {
            key: vec!["a".into()],
            pod: "shop/web-1".into(),
            hour_ns: 0,
            requests: 1,
            busy_ns: Decimal::from(busy),
            pod_busy_ns: Decimal::from(pod_busy),
            cost: Some(d(cost)),
        }
    }

    #[test]
    fn a_pod_hour_is_shared_by_duration() {
        // $0.09 for the hour; the group's requests took 200 ms of the 300 ms
        // the pod served: 0.09 × 200 / 300 = 0.06.
        assert_eq!(pod_share(&share("0.09", 200_000_000, 300_000_000)), Some(d("0.06")));
        // No pod, or no busy time: unknown, not zero.
        let mut p = share("0.09", 0, 0);
        assert_eq!(pod_share(&p), None);
        p.pod_busy_ns = Decimal::ONE;
        p.pod.clear();
        assert_eq!(pod_share(&p), None);
        p.pod = "shop/web-1".into();
        p.cost = None;
        assert_eq!(pod_share(&p), None);
    }

    #[test]
    fn per_request_figures_divide_the_rounded_total() {
        let g = GroupCost { requests: 3, llm: d("0.01"), compute: Some(d("0.002")), telemetry: d("0.0001"), ..GroupCost::default() };
        // 0.01 + 0.002 + 0.0001 = 0.0121; / 3 = 0.004033333333(33...) → 12 places.
        assert_eq!(g.total(), d("0.0121"));
        assert_eq!(g.per_request(), d("0.004033333333"));
        // × 1000 / 3 = 4.033333333333(33...).
        assert_eq!(g.per_1000_requests(), d("4.033333333333"));
    }
}
