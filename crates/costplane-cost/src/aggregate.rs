//! Priced usage of one hour, added a call (or a batch's telemetry) at a time.
//!
//! The closer prices each usage fact once, when it first sees it, into one
//! of these aggregates; an hour's ledger rows are made from the aggregate
//! whenever they are written ([`Meter::llm_rows`], [`Meter::telemetry_rows`]).
//!
//! # Invariant: adding in any order and any chunking gives the rows of a
//! from-scratch pricing
//! Sums are kept unrounded (exact `Decimal`) per row key, and rounded by the
//! ledger's one rule only when rows are made, so `add(a); add(b)` gives the
//! same rows as pricing `[a, b]` at once ([`Meter::llm_ledger`] is itself
//! `add` over every call, then `llm_rows`). The one exception is a sum that
//! would overflow `Decimal` (only provided costs near its limit): that part
//! is booked `invalid` with the reason, whichever order it came in.

use std::collections::{BTreeMap, BTreeSet};

use chrono::DateTime;
use costplane_telemetry::usage::{
    round_money, ChargeStatus, LedgerRow, LlmUsageRow, PricingStatus, Source, TelemetryUsage, UsageType, HOUR_NS,
};
use rust_decimal::Decimal;

use crate::llm;
use crate::meter::{provider_display, split_provided, tags, Meter, GIB, QUERIES};

/// (hour, tenant, project, service, provider, model, operation, token kind,
/// pricing status, invalid reason): one ledger row each.
type LlmKey = (i64, String, String, String, String, String, String, UsageType, PricingStatus, Option<String>);

/// Tokens, unrounded cost and publisher of one LLM row key, and the names
/// its calls gave the model where they were not the catalog's.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LlmSum {
    tokens: Decimal,
    cost: Decimal,
    publisher: String,
    reported: BTreeSet<String>,
}

/// The priced LLM calls of one hour, per ledger row key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LlmAggregate {
    sums: BTreeMap<LlmKey, LlmSum>,
    /// Calls added.
    calls: u64,
}

impl LlmAggregate {
    /// Calls added so far.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Row keys held (the rows [`Meter::llm_rows`] makes).
    pub fn keys(&self) -> usize {
        self.sums.len()
    }
}

/// (hour, tenant, project, service, signal).
type TelemetryKey = (i64, String, String, String, &'static str);

/// Items and bytes per (hour, tenant, project, service, signal) of one hour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryAggregate {
    sums: BTreeMap<TelemetryKey, (u64, u64)>,
}

impl TelemetryAggregate {
    /// Adds one stored usage row.
    pub fn add(&mut self, u: &TelemetryUsage) {
        let e = self.sums.entry((u.hour_ns, u.tenant.clone(), u.project.clone(), u.service.clone(), u.signal)).or_default();
        e.0 = e.0.saturating_add(u.items);
        e.1 = e.1.saturating_add(u.bytes);
    }

    /// The sums as usage rows, in key order. Ingest is priced by receive
    /// hour, so rows of several event days are summed into one; each
    /// row's `event_day_ns` is its receive day.
    pub fn usage(&self) -> Vec<TelemetryUsage> {
        self.sums
            .iter()
            .map(|((hour_ns, tenant, project, service, signal), (items, bytes))| TelemetryUsage {
                hour_ns: *hour_ns,
                event_day_ns: costplane_telemetry::usage::day_of(*hour_ns),
                tenant: tenant.clone(),
                project: project.clone(),
                service: service.clone(),
                signal,
                items: *items,
                bytes: *bytes,
            })
            .collect()
    }
}

impl Meter {
    /// Prices one LLM call into `agg` (whatever its kind: the caller
    /// decides whether a roll-up is billed).
    pub fn add_llm_call(&self, agg: &mut LlmAggregate, row: &LlmUsageRow) {
        agg.calls += 1;
        let u = &row.usage;
        let day = DateTime::from_timestamp_nanos(row.timestamp_ns).date_naive();
        let cost = match &row.invalid_reason {
            Some(reason) => llm::invalid(&self.catalog, u, reason),
            None => llm::price_with(&self.catalog, u, day, self.provided_cost),
        };
        let provider = if u.provider.is_empty() { cost.provider.clone().unwrap_or_default() } else { u.provider.clone() };
        // One name per model in the ledger: the catalog entry's when the
        // call matched one, the span's otherwise; the span's own name, when
        // it differs, is kept in the row's tags.
        let model = cost.model.clone().unwrap_or_else(|| u.model.clone());
        let reported = (model != u.model).then(|| u.model.clone());
        let key_base = (row.hour_ns, row.tenant.clone(), row.project.clone(), row.service.clone(), provider, model, u.operation.clone());
        let publisher = cost.provider.clone().unwrap_or_default();
        let new_sum = || LlmSum { tokens: Decimal::ZERO, cost: Decimal::ZERO, publisher: publisher.clone(), reported: BTreeSet::new() };
        // A row per token kind; a provided cost is split over the kinds by
        // their tokens (the split of the quantities stays), a token-less
        // usage is one "total" row.
        let parts = if cost.status == PricingStatus::Provided {
            split_provided(cost.total, &cost.parts)
        } else if cost.parts.is_empty() {
            vec![(UsageType::Total, u.input_tokens.saturating_add(u.output_tokens), cost.total)]
        } else {
            cost.parts
        };
        let reason = if cost.status == PricingStatus::Invalid { cost.reason.clone() } else { None };
        for (kind, tokens, amount) in parts {
            // Tokens are summed as decimals: a sum of u64 counts can pass u64.
            let tokens = Decimal::from(tokens);
            let (h, t, p, s, pr, m, o) = key_base.clone();
            let e = agg.sums.entry((h, t, p, s, pr, m, o, kind.clone(), cost.status, reason.clone())).or_insert_with(new_sum);
            if let Some(name) = &reported {
                e.reported.insert(name.clone());
            }
            if let Some(sum) = e.cost.checked_add(amount) {
                e.tokens = e.tokens.saturating_add(tokens);
                e.cost = sum;
                continue;
            }
            // Only provided costs near Decimal's limit get here; the part
            // is kept, unbooked, rather than panicking.
            let (h, t, p, s, pr, m, o) = key_base.clone();
            let why = format!("adding {amount} to this hour's cost of the row overflows");
            let e = agg.sums.entry((h, t, p, s, pr, m, o, kind, PricingStatus::Invalid, Some(why))).or_insert_with(new_sum);
            e.tokens = e.tokens.saturating_add(tokens);
            e.reported.extend(reported.clone());
        }
    }

    /// The ledger rows of an LLM aggregate, each rounded once.
    pub fn llm_rows(&self, agg: &LlmAggregate, charge_status: ChargeStatus) -> Vec<LedgerRow> {
        agg.sums
            .iter()
            .map(|((hour, tenant, project, service, provider, model, operation, kind, status, reason), sum)| {
                let provider_name = provider_display(provider);
                let publisher = if sum.publisher.is_empty() { provider_name.clone() } else { provider_display(&sum.publisher) };
                LedgerRow::builder(Source::Llm, *hour, hour.saturating_add(HOUR_NS))
                    .cost(round_money(sum.cost), self.catalog.currency.clone())
                    .service(format!("{provider_name} models"), "AI and Machine Learning")
                    .provider(provider_name)
                    .publisher(publisher)
                    .resource(format!("{tenant}/{project}/{service}"), service.clone())
                    .consumed(sum.tokens, "Tokens")
                    .pricing(round_money(sum.tokens / Decimal::from(1_000_000u32)), "1M Tokens")
                    .sku(format!("{provider}/{model}/{kind}"))
                    .tags(tags(tenant, project, service, reason.as_deref(), &sum.reported))
                    .owner(tenant.clone(), project.clone(), service.clone())
                    .model(model.clone())
                    .operation(operation.clone())
                    .usage_type(kind.clone())
                    .priced(*status, self.catalog.version.clone())
                    .charge_status(charge_status)
                    .build()
            })
            .collect()
    }

    /// The ledger rows of a telemetry aggregate.
    pub fn telemetry_rows(&self, agg: &TelemetryAggregate, charge_status: ChargeStatus) -> Vec<LedgerRow> {
        self.telemetry_ledger(&agg.usage(), charge_status)
    }

    /// One telemetry usage row priced (ingest per GiB, queries per 1,000).
    pub(crate) fn telemetry_row(&self, u: &TelemetryUsage, version: &str, charge_status: ChargeStatus) -> LedgerRow {
        let gib = Decimal::from(u.bytes) / GIB;
        let thousands = Decimal::from(u.items) / Decimal::from(1000u32);
        let queries = u.signal == QUERIES;
        // checked: a rate near Decimal's limit books 0 rather than panicking.
        let cost = if queries { thousands.checked_mul(self.rates.queries_per_1000) } else { gib.checked_mul(self.rates.ingest_per_gib) };
        let (consumed, unit, pricing, pricing_unit) =
            if queries { (u.items, "Queries", thousands, "1000 Queries") } else { (u.bytes, "Bytes", gib, "GiB") };
        LedgerRow::builder(Source::Telemetry, u.hour_ns, u.hour_ns.saturating_add(HOUR_NS))
            .cost(round_money(cost.unwrap_or_default()), self.catalog.currency.clone())
            .service(if queries { "Telemetry queries" } else { "Telemetry ingest" }, "Management and Governance")
            .provider("costplane")
            .resource(format!("{}/{}/{}", u.tenant, u.project, u.service), u.service.clone())
            .consumed(Decimal::from(consumed), unit)
            .pricing(round_money(pricing), pricing_unit)
            .sku(if queries { "telemetry/queries".to_owned() } else { format!("telemetry/ingest/{}", u.signal) })
            .tags(tags(&u.tenant, &u.project, &u.service, None, &BTreeSet::new()))
            .owner(u.tenant.clone(), u.project.clone(), u.service.clone())
            .operation(if queries { "query" } else { "ingest" })
            .usage_type(UsageType::of_signal(u.signal))
            .priced(if cost.is_some() { PricingStatus::Priced } else { PricingStatus::Invalid }, version)
            .charge_status(charge_status)
            .build()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use costplane_telemetry::usage::{CallKind, LlmUsage, LlmUsageRow, TelemetryUsage};
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    use super::*;
    use crate::{Catalog, TelemetryRates, Tenancy};

    /// 2026-10-06T10:00:00Z.
    const T: i64 = 1_791_280_800_000_000_000;

    fn meter() -> Meter {
        let rates =
            TelemetryRates { ingest_per_gib: Decimal::new(5, 1), storage_per_gib_month: Decimal::ZERO, queries_per_1000: Decimal::ONE };
        Meter::new(Tenancy::default(), Arc::new(Catalog::load(None).unwrap()), rates)
    }

    fn call() -> impl Strategy<Value = LlmUsageRow> {
        let models = prop::sample::select(vec!["gpt-4o", "claude-3-5-sonnet-20241022", "gemini-1.5-pro", "no-such-model", ""]);
        (0..3usize, models, 0u64..3_000_000, 0u64..400_000, 0u64..2_000, 0..4u8, 0..2i64).prop_map(
            |(tenant, model, input, output, cached, extra, hour)| LlmUsageRow {
                timestamp_ns: T + hour * HOUR_NS + 1,
                received_ns: T + hour * HOUR_NS + 2,
                hour_ns: T + hour * HOUR_NS,
                tenant: ["acme", "globex", "initech"][tenant].into(),
                project: "p".into(),
                service: "s".into(),
                trace_id: format!("{input:032x}"),
                span_id: format!("{output:016x}"),
                kind: if extra == 3 { CallKind::Rollup } else { CallKind::Model },
                usage: LlmUsage {
                    provider: String::new(),
                    model: model.into(),
                    operation: "chat".into(),
                    input_tokens: input,
                    output_tokens: output,
                    cache_read_tokens: cached.min(input),
                    cache_write_tokens: 0,
                    cache_write_1h_tokens: 0,
                    reasoning_tokens: 0,
                    // A span's own cost now and then (exact to the cent).
                    provided_cost: (extra == 1).then(|| Decimal::new(i64::try_from(input % 10_000).unwrap(), 2)),
                },
                invalid_reason: (extra == 2 && input % 7 == 0).then(|| "token counts unreadable".to_owned()),
            },
        )
    }

    fn sorted(mut rows: Vec<LedgerRow>) -> Vec<LedgerRow> {
        rows.sort_by_key(|r| (r.charge_period_start_ns, r.key()));
        rows
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Adding calls one chunk at a time, in any order, makes the rows of
        /// pricing them all at once.
        #[test]
        fn llm_calls_added_in_any_order_and_chunks_price_as_one_hour(
            calls in prop::collection::vec(call(), 0..60),
            order in any::<prop::sample::Index>(),
            chunk in 1usize..9,
        ) {
            let m = meter();
            let all = m.llm_ledger(&calls, &|_| true, ChargeStatus::Provisional);
            // A rotation of the calls, added `chunk` at a time, with the rows
            // made (and thrown away) between chunks as a refresh would.
            let mut shuffled = calls.clone();
            if !shuffled.is_empty() {
                let at = order.index(shuffled.len());
                shuffled.rotate_left(at);
                shuffled.reverse();
            }
            let mut agg = LlmAggregate::default();
            for part in shuffled.chunks(chunk) {
                for c in part {
                    m.add_llm_call(&mut agg, c);
                }
                let _ = m.llm_rows(&agg, ChargeStatus::Provisional);
            }
            prop_assert_eq!(agg.calls(), calls.len() as u64);
            prop_assert_eq!(sorted(m.llm_rows(&agg, ChargeStatus::Provisional)), sorted(all));
        }

        /// Telemetry usage rows summed one at a time price as their sums.
        #[test]
        fn telemetry_rows_added_one_at_a_time_price_as_their_sums(
            rows in prop::collection::vec((0..3usize, 0..3usize, 0u64..1_000, 0u64..(1 << 40)), 0..40),
        ) {
            let m = meter();
            let signals = ["traces", "logs", crate::meter::QUERIES];
            let usage: Vec<TelemetryUsage> = rows
                .iter()
                .map(|(t, s, items, bytes)| TelemetryUsage {
                    hour_ns: T,
                    event_day_ns: T - T.rem_euclid(costplane_telemetry::usage::DAY_NS),
                    tenant: ["acme", "globex", "initech"][*t].into(),
                    project: "p".into(),
                    service: "s".into(),
                    signal: signals[*s],
                    items: *items,
                    bytes: *bytes,
                })
                .collect();
            let mut agg = TelemetryAggregate::default();
            for u in usage.iter().rev() {
                agg.add(u);
            }
            // By hand: the sum of each key's items and bytes, priced once.
            let mut sums: BTreeMap<(String, &str), (u64, u64)> = BTreeMap::new();
            for u in &usage {
                let e = sums.entry((u.tenant.clone(), u.signal)).or_default();
                e.0 += u.items;
                e.1 += u.bytes;
            }
            let rows = m.telemetry_rows(&agg, ChargeStatus::Closed);
            prop_assert_eq!(rows.len(), sums.len());
            for r in &rows {
                let (items, bytes) = sums[&(r.tenant.clone(), r.usage_type.as_str())];
                let expected = if r.usage_type == UsageType::Queries {
                    // $1 per 1,000 queries.
                    Decimal::from(items) / Decimal::from(1000)
                } else {
                    // $0.50 per GiB.
                    Decimal::from(bytes) * Decimal::new(5, 1) / Decimal::from(1u64 << 30)
                };
                prop_assert_eq!(r.cost, costplane_telemetry::usage::round_money(expected));
            }
        }
    }
}
