//! Metering: usage facts from a batch of telemetry, and ledger rows from
//! stored usage.
//!
//! - Tenant and project come from resource attributes (configurable; by
//!   default `tenant.id` and `service.namespace`), `unassigned` when absent.
//! - Telemetry usage: items and encoded OTLP bytes per **receive** hour,
//!   tenant, project, service and signal; priced per GiB ingested. Client
//!   timestamps never pick the hour: backdated data cannot reopen a closed
//!   month, and timestamp 0 or `i64::MAX` are no special case. Each row
//!   also keeps the items' **event day** (the UTC day of their own time,
//!   the day partition the stores keep them in), which storage cost is
//!   shared by; a batch's items of several days make a row per day.
//! - Queries: each cost/SQL API query is counted for the caller's tenant
//!   (`unassigned` for admin keys) in the hour it ran, priced per 1,000.
//! - LLM usage: one row per span that carries model or token attributes,
//!   booked at its **event** hour when the event time is within
//!   [`EventWindow`] of the receive time (default 7 days back, 1 hour
//!   ahead); outside it the call is booked at the receive hour as `invalid`
//!   with the reason (its event time kept, never shifted into the window).
//! - Money is made only when an hour is closed (or shown provisionally):
//!   [`Meter::telemetry_ledger`] and [`Meter::llm_ledger`] turn an hour's
//!   stored usage into ledger rows, one per (hour, tenant, project,
//!   service, provider, model, operation, usage type, pricing status,
//!   reason) at the catalog in force.
//! - An `invalid` LLM usage (unreadable token counts, above the token limit,
//!   outside the time window, an overflow) is booked at zero cost with its
//!   readable tokens and `pricing_status = "invalid"`; the reason is the
//!   `pricing_reason` key of the row's tags JSON.
//! - Agent, chain, workflow and tool spans ([`CallKind::Rollup`]) are billed
//!   only when no model-call span of their trace carries usage; otherwise
//!   they stay in the usage table as information and make no ledger row.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::DateTime;
use costplane_telemetry::model::{ResourceInfo, TelemetryBatch};
use costplane_telemetry::usage::{
    day_of, hour_of, round_money, CallKind, ChargeStatus, LedgerRow, LlmUsageRow, TelemetryUsage, UsageRows, UsageType, DAY_NS, HOUR_NS,
};
use rust_decimal::Decimal;

use crate::aggregate::LlmAggregate;
use crate::catalog::Catalog;
use crate::llm::{self, ProvidedCost};
use crate::model_name::canonical_provider;

pub const UNASSIGNED: &str = "unassigned";
/// The usage "signal" of API queries.
pub const QUERIES: &str = "queries";
pub(crate) const GIB: Decimal = Decimal::from_parts(1_073_741_824, 0, 0, false, 0);

/// Which resource attributes name the tenant and the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenancy {
    pub tenant_attribute: String,
    pub project_attribute: String,
}

impl Default for Tenancy {
    fn default() -> Self {
        Tenancy { tenant_attribute: "tenant.id".into(), project_attribute: "service.namespace".into() }
    }
}

/// What the telemetry platform charges, in the catalog's currency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryRates {
    pub ingest_per_gib: Decimal,
    pub storage_per_gib_month: Decimal,
    pub queries_per_1000: Decimal,
}

/// How far an LLM call's own timestamp may be from its receive time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventWindow {
    pub back_ns: i64,
    pub ahead_ns: i64,
}

impl Default for EventWindow {
    fn default() -> Self {
        EventWindow { back_ns: 7 * DAY_NS, ahead_ns: HOUR_NS }
    }
}

/// Turns batches into usage, and stored usage into ledger rows.
#[derive(Debug, Clone)]
pub struct Meter {
    pub tenancy: Tenancy,
    pub catalog: Arc<Catalog>,
    pub rates: TelemetryRates,
    pub window: EventWindow,
    pub provided_cost: ProvidedCost,
}

fn lookup(resource: &ResourceInfo, key: &str) -> String {
    resource.attributes.get(key).filter(|v| !v.is_empty()).unwrap_or(UNASSIGNED).to_owned()
}

/// A provider's display name, however the span or the catalog spells it.
pub(crate) fn provider_display(provider: &str) -> String {
    match canonical_provider(provider).as_str() {
        "openai" => "OpenAI".into(),
        "anthropic" => "Anthropic".into(),
        "gcp.gemini" | "gcp.vertex_ai" => "Google".into(),
        "mistral_ai" => "Mistral AI".into(),
        "meta" => "Meta".into(),
        "amazon" | "aws.bedrock" => "AWS".into(),
        "azure.ai.openai" | "azure.ai.inference" => "Microsoft".into(),
        "" => "unknown".into(),
        _ => provider.to_owned(),
    }
}

/// The FOCUS-facing tags of a row, with why it is not priced when it is
/// an `invalid` LLM row.
pub(crate) fn tags(
    tenant: &str,
    project: &str,
    service: &str,
    pricing_reason: Option<&str>,
    models_reported: &std::collections::BTreeSet<String>,
) -> String {
    let mut tags = serde_json::json!({ "tenant": tenant, "project": project, "service": service });
    if let Some(r) = pricing_reason {
        tags["pricing_reason"] = r.into();
    }
    // The names the calls gave the model where they were not the one the
    // row shows (`openai/gpt-4o-mini` for `gpt-4o-mini`), as one text
    // (FOCUS tag values are strings), in order, comma-separated.
    if !models_reported.is_empty() {
        tags["models_reported"] = models_reported.iter().map(String::as_str).collect::<Vec<_>>().join(", ").into();
    }
    tags.to_string()
}

/// A span's own cost over its token kinds, by their share of the tokens:
/// each share rounded by the ledger's rule, the last kind taking what is
/// left, so the parts add up to the span's cost exactly.
pub(crate) fn split_provided(total: Decimal, parts: &[(UsageType, u64, Decimal)]) -> Vec<(UsageType, u64, Decimal)> {
    let tokens: u128 = parts.iter().map(|p| u128::from(p.1)).sum();
    if parts.is_empty() || tokens == 0 {
        return vec![(UsageType::Total, 0, total)];
    }
    let all = Decimal::from(tokens);
    let mut left = total;
    let last = parts.len() - 1;
    parts
        .iter()
        .enumerate()
        .map(|(i, (kind, n, _))| {
            let share = if i == last {
                left
            } else {
                let s = total.checked_mul(Decimal::from(*n)).and_then(|x| x.checked_div(all)).map(round_money).unwrap_or_default();
                left = left.checked_sub(s).unwrap_or(left);
                s
            };
            (kind.clone(), *n, share)
        })
        .collect()
}

/// ISO 8601 of a timestamp, for reasons.
fn iso(ns: i64) -> String {
    DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Meter {
    /// A meter with the shipped catalog and default settings.
    pub fn new(tenancy: Tenancy, catalog: Arc<Catalog>, rates: TelemetryRates) -> Meter {
        Meter { tenancy, catalog, rates, window: EventWindow::default(), provided_cost: ProvidedCost::default() }
    }

    /// Usage rows for `batch`, received at `received_ns`.
    pub fn measure(&self, batch: &TelemetryBatch, received_ns: i64) -> UsageRows {
        let hour_ns = hour_of(received_ns);
        // Hot path: count per (resource, signal, event day) without
        // allocating; names are resolved once per resource at the end.
        type Key = (*const ResourceInfo, &'static str, i64);
        let mut counts: HashMap<Key, (u64, u64)> = HashMap::new();
        let mut resources: HashMap<*const ResourceInfo, &Arc<ResourceInfo>> = HashMap::new();
        let mut add = |r: &'_ Arc<ResourceInfo>, signal: &'static str, time_ns: i64, bytes: u32| {
            // The day partition the store keeps the item in (`day_of` of
            // the time column, as both stores split by it).
            let e = counts.entry((Arc::as_ptr(r), signal, day_of(time_ns))).or_default();
            e.0 += 1;
            e.1 += u64::from(bytes);
        };
        let mut llm_rows = Vec::new();
        for s in &batch.spans {
            add(&s.resource, "traces", s.timestamp_ns, s.encoded_bytes);
            resources.entry(Arc::as_ptr(&s.resource)).or_insert(&s.resource);
            // Cheap gate: only spans with GenAI-looking attributes are parsed.
            let maybe_llm =
                s.span_attributes.iter().any(|(k, _)| k.starts_with("gen_ai.") || k.starts_with("llm.") || k.starts_with("cost."));
            if maybe_llm {
                if let Some(llm::Extracted { usage: u, invalid, kind }) = llm::extract(&s.span_name, &s.span_attributes) {
                    let (hour, invalid) = self.booking(s.timestamp_ns, received_ns, invalid);
                    llm_rows.push(LlmUsageRow {
                        timestamp_ns: s.timestamp_ns,
                        received_ns,
                        hour_ns: hour,
                        tenant: lookup(&s.resource, &self.tenancy.tenant_attribute),
                        project: lookup(&s.resource, &self.tenancy.project_attribute),
                        service: s.resource.service_name.clone(),
                        trace_id: s.trace_id.clone(),
                        span_id: s.span_id.clone(),
                        kind,
                        usage: u,
                        invalid_reason: invalid,
                    });
                }
            }
        }
        for l in &batch.logs {
            add(&l.resource, "logs", l.timestamp_ns, l.encoded_bytes);
            resources.entry(Arc::as_ptr(&l.resource)).or_insert(&l.resource);
        }
        let points = batch
            .gauges
            .iter()
            .map(|p| &p.common)
            .chain(batch.sums.iter().map(|p| &p.common))
            .chain(batch.histograms.iter().map(|p| &p.common))
            .chain(batch.exp_histograms.iter().map(|p| &p.common))
            .chain(batch.summaries.iter().map(|p| &p.common));
        for p in points {
            add(&p.metric.resource, "metrics", p.time_unix_ns, p.encoded_bytes);
            resources.entry(Arc::as_ptr(&p.metric.resource)).or_insert(&p.metric.resource);
        }
        let telemetry: Vec<TelemetryUsage> = counts
            .into_iter()
            .map(|((ptr, signal, event_day_ns), (items, bytes))| {
                let r = resources[&ptr];
                TelemetryUsage {
                    hour_ns,
                    event_day_ns,
                    tenant: lookup(r, &self.tenancy.tenant_attribute),
                    project: lookup(r, &self.tenancy.project_attribute),
                    service: r.service_name.clone(),
                    signal,
                    items,
                    bytes,
                }
            })
            .collect();
        // Resources with the same tenant, project and service merge.
        let telemetry = UsageRows { telemetry, ..UsageRows::default() }.aggregated_telemetry();
        UsageRows { telemetry, llm: llm_rows, ..UsageRows::default() }
    }

    /// The hour an LLM call is booked in, and why it is invalid: a call
    /// whose own time is outside the window around its receive time is
    /// booked at the receive hour, invalid, with both times in the reason.
    fn booking(&self, event_ns: i64, received_ns: i64, invalid: Option<String>) -> (i64, Option<String>) {
        let earliest = received_ns.saturating_sub(self.window.back_ns);
        let latest = received_ns.saturating_add(self.window.ahead_ns);
        if (earliest..=latest).contains(&event_ns) {
            return (hour_of(event_ns), invalid);
        }
        let why = format!(
            "the span's time {} is outside the accepted window around its receive time {} ({} h back, {} h ahead); \
             booked at the receive hour, not priced",
            iso(event_ns),
            iso(received_ns),
            self.window.back_ns / HOUR_NS,
            self.window.ahead_ns / HOUR_NS
        );
        let reason = match invalid {
            Some(r) => format!("{r}; {why}"),
            None => why,
        };
        (hour_of(received_ns), Some(reason))
    }

    /// Usage of `n` queries a tenant ran through the API, as of now.
    pub fn queries(&self, tenant: &str, n: u64) -> UsageRows {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let telemetry = vec![TelemetryUsage {
            hour_ns: hour_of(now),
            // Queries are not stored: their day is the day they ran.
            event_day_ns: day_of(now),
            tenant: tenant.to_owned(),
            project: UNASSIGNED.to_owned(),
            service: "costplane-api".to_owned(),
            signal: QUERIES,
            items: n,
            bytes: 0,
        }];
        UsageRows { telemetry, ..UsageRows::default() }
    }

    /// The price version telemetry rows carry: the rates themselves.
    pub fn telemetry_price_version(&self) -> String {
        format!("telemetry-rates:{}/{}", self.rates.ingest_per_gib.normalize(), self.rates.queries_per_1000.normalize())
    }

    /// Ledger rows for an hour's telemetry usage: ingest priced per GiB,
    /// queries per 1,000; `charge_status` provisional or closed.
    pub fn telemetry_ledger(&self, usage: &[TelemetryUsage], charge_status: ChargeStatus) -> Vec<LedgerRow> {
        let version = self.telemetry_price_version();
        usage.iter().map(|u| self.telemetry_row(u, &version, charge_status)).collect()
    }

    /// Ledger rows for an hour's LLM usage. `rollup_billed` says whether a
    /// [`CallKind::Rollup`] call is billed (its trace has no model-call
    /// usage); model calls always are.
    pub fn llm_ledger(
        &self,
        usage: &[LlmUsageRow],
        rollup_billed: &dyn Fn(&LlmUsageRow) -> bool,
        charge_status: ChargeStatus,
    ) -> Vec<LedgerRow> {
        let mut agg = LlmAggregate::default();
        for row in usage {
            if row.kind == CallKind::Rollup && !rollup_billed(row) {
                continue;
            }
            self.add_llm_call(&mut agg, row);
        }
        self.llm_rows(&agg, charge_status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use costplane_telemetry::model::{ScopeInfo, SpanRow};
    use costplane_telemetry::usage::PricingStatus;
    use std::str::FromStr;

    /// 2026-10-06T10:00:00Z.
    const T: i64 = 1_791_280_800_000_000_000;

    fn meter() -> Meter {
        Meter::new(Tenancy::default(), Arc::new(Catalog::load(None).unwrap()), TelemetryRates::default())
    }

    fn span(attrs: &[(&str, &str)]) -> SpanRow {
        SpanRow {
            resource: Arc::new(ResourceInfo {
                service_name: "chat-api".into(),
                attributes: costplane_telemetry::Attributes::from([("tenant.id", "acme")]),
                schema_url: String::new(),
            }),
            scope: Arc::new(ScopeInfo::default()),
            timestamp_ns: T,
            trace_id: "t".into(),
            span_id: "s".into(),
            parent_span_id: String::new(),
            trace_state: String::new(),
            span_name: "chat".into(),
            span_kind: "Client",
            span_attributes: attrs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            duration_ns: 1,
            status_code: "Unset",
            status_message: String::new(),
            events: Vec::new(),
            links: Vec::new(),
            encoded_bytes: 100,
        }
    }

    fn llm_rows(spans: Vec<SpanRow>) -> (UsageRows, Vec<LedgerRow>) {
        let mut m = meter();
        m.provided_cost = ProvidedCost::Prefer;
        let rows = m.measure(&TelemetryBatch { spans, ..TelemetryBatch::default() }, T);
        let llm = m.llm_ledger(&rows.llm, &|_| true, ChargeStatus::Closed);
        (rows, llm)
    }

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    /// `openai/gpt-4o-mini`, `azure/gpt-4o-mini` and `gpt-4o-mini` are one
    /// model: one name in the ledger (the catalog entry's), one row, the
    /// spans' own names kept in its tags; a model no entry matches keeps
    /// the span's name.
    #[test]
    fn every_spelling_of_a_model_is_one_model_in_the_ledger() {
        let call = |model: &str, input: &str| {
            span(&[
                ("gen_ai.provider.name", "openai"),
                ("gen_ai.request.model", model),
                ("gen_ai.usage.input_tokens", input),
                ("gen_ai.usage.output_tokens", "0"),
            ])
        };
        let (_, rows) = llm_rows(vec![
            call("openai/gpt-4o-mini", "1000000"),
            call("gpt-4o-mini", "2000000"),
            call("openai:gpt-4o-mini", "1000000"),
            call("mystery-llm-7b", "10"),
        ]);
        let got: Vec<(&str, &str, Decimal, Decimal)> =
            rows.iter().map(|r| (r.model.as_str(), r.sku_id.as_str(), r.consumed_quantity, r.cost)).collect();
        // gpt-4o-mini at $0.15 per 1M input: (1M + 2M + 1M) x 0.15 = 0.60,
        // one row; the unpriced model keeps its name, at $0.
        assert_eq!(
            got,
            [
                ("gpt-4o-mini", "openai/gpt-4o-mini/input", Decimal::from(4_000_000), Decimal::from_str("0.6").unwrap()),
                ("mystery-llm-7b", "openai/mystery-llm-7b/input", Decimal::from(10), Decimal::ZERO),
            ]
        );
        let tags: serde_json::Value = serde_json::from_str(&rows[0].tags).unwrap();
        assert_eq!(tags["models_reported"], "openai/gpt-4o-mini, openai:gpt-4o-mini");
        let tags: serde_json::Value = serde_json::from_str(&rows[1].tags).unwrap();
        assert!(tags.get("models_reported").is_none(), "{tags}");
    }

    #[test]
    fn unreadable_counts_book_an_invalid_row_with_the_reason_in_its_tags() {
        let (rows, llm) = llm_rows(vec![span(&[
            ("gen_ai.provider.name", "openai"),
            ("gen_ai.request.model", "gpt-4o-2024-05-13"),
            ("gen_ai.usage.input_tokens", "1e30"),
            ("gen_ai.usage.output_tokens", "500"),
        ])]);
        assert_eq!(rows.llm.len(), 1, "the usage is kept");
        assert_eq!(rows.llm[0].usage.output_tokens, 500);
        assert_eq!(llm.len(), 1);
        let r = &llm[0];
        assert_eq!((r.pricing_status.as_str(), r.cost, r.usage_type.as_str()), ("invalid", Decimal::ZERO, "output"));
        assert_eq!(r.consumed_quantity, Decimal::from(500));
        let tags: serde_json::Value = serde_json::from_str(&r.tags).unwrap();
        assert_eq!(tags["pricing_reason"], "gen_ai.usage.input_tokens '1e30' is not a whole number of tokens");
        assert_eq!(tags["tenant"], "acme");
    }

    #[test]
    fn valid_calls_beside_an_invalid_one_are_priced_as_before() {
        let good = [
            ("gen_ai.provider.name", "openai"),
            ("gen_ai.request.model", "gpt-4o-2024-05-13"),
            ("gen_ai.usage.input_tokens", "1000"),
            ("gen_ai.usage.output_tokens", "500"),
        ];
        let mut bad = good;
        bad[2].1 = "12.7";
        let (_, llm) = llm_rows(vec![span(&good), span(&bad), span(&good)]);
        let by = |status: &str| llm.iter().filter(|r| r.pricing_status.as_str() == status).map(|r| r.cost).sum::<Decimal>();
        // Two calls of 1,000 × $5/M + 500 × $15/M = 0.0125 each: 0.025.
        assert_eq!(by("priced"), d("0.025"));
        assert_eq!(by("invalid"), Decimal::ZERO);
        let priced_tags: serde_json::Value =
            serde_json::from_str(&llm.iter().find(|r| r.pricing_status == PricingStatus::Priced).unwrap().tags).unwrap();
        assert!(priced_tags.get("pricing_reason").is_none());
    }

    #[test]
    fn repricing_stored_usage_finds_calls_above_the_limit() {
        let m = meter();
        let row = LlmUsageRow {
            timestamp_ns: T,
            received_ns: T,
            hour_ns: T,
            kind: CallKind::Model,
            invalid_reason: None,
            tenant: "acme".into(),
            project: UNASSIGNED.into(),
            service: "chat-api".into(),
            trace_id: "t".into(),
            span_id: "s".into(),
            usage: llm::LlmUsage {
                provider: "openai".into(),
                model: "gpt-4o".into(),
                input_tokens: u64::MAX,
                output_tokens: u64::MAX,
                ..Default::default()
            },
        };
        let ledger = m.llm_ledger(&[row.clone(), row], &|_| true, ChargeStatus::Closed);
        assert!(ledger.iter().all(|r| r.pricing_status == PricingStatus::Invalid && r.cost.is_zero()), "{ledger:?}");
        // Two calls' tokens summed past u64 without wrapping: 2 × (2^64 - 1) input tokens.
        let input = ledger.iter().find(|r| r.usage_type == UsageType::Input).unwrap();
        assert_eq!(input.consumed_quantity, d("36893488147419103230"));
        assert!(input.tags.contains("input plus"), "{}", input.tags);
    }

    #[test]
    fn provided_costs_the_ledger_cannot_keep_are_invalid_not_a_panic() {
        // Far past DECIMAL(38, 12)'s exact range (and, summed, past Decimal's).
        let huge = "50000000000000000000000000000";
        let s = span(&[("cost.model", "gpt-4o"), ("cost.tokens.prompt", "10"), ("cost.usd", huge)]);
        let (_, llm) = llm_rows(vec![s.clone(), s]);
        assert!(llm.iter().all(|r| r.pricing_status == PricingStatus::Invalid && r.cost.is_zero()), "{llm:?}");
        assert_eq!(llm.iter().map(|r| r.consumed_quantity).sum::<Decimal>(), Decimal::from(20));
        assert!(llm[0].tags.contains("outside what the ledger keeps"), "{}", llm[0].tags);
    }

    fn spans_of_trace(trace: &str, specs: &[(&str, &[(&str, &str)])]) -> Vec<SpanRow> {
        specs
            .iter()
            .map(|(id, attrs)| {
                let mut s = span(attrs);
                s.trace_id = trace.to_owned();
                s.span_id = (*id).to_owned();
                s
            })
            .collect()
    }

    const AGENT: &[(&str, &str)] = &[
        ("gen_ai.operation.name", "invoke_agent"),
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.request.model", "gpt-4o-2024-05-13"),
        ("gen_ai.usage.input_tokens", "3000"),
        ("gen_ai.usage.output_tokens", "1500"),
    ];
    const CHAT: &[(&str, &str)] = &[
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.request.model", "gpt-4o-2024-05-13"),
        ("gen_ai.usage.input_tokens", "1000"),
        ("gen_ai.usage.output_tokens", "500"),
    ];

    #[test]
    fn an_agent_span_with_child_calls_is_billed_once() {
        // One agent span rolling up three chat calls of 1,000 in / 500 out.
        let m = meter();
        let spans = spans_of_trace("trace-1", &[("agent", AGENT), ("c1", CHAT), ("c2", CHAT), ("c3", CHAT)]);
        let rows = m.measure(&TelemetryBatch { spans, ..TelemetryBatch::default() }, T);
        let kinds: Vec<CallKind> = rows.llm.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [CallKind::Rollup, CallKind::Model, CallKind::Model, CallKind::Model]);
        // The closer found model-call usage in trace-1: the agent span is information.
        let ledger = m.llm_ledger(&rows.llm, &|_| false, ChargeStatus::Closed);
        let total: Decimal = ledger.iter().map(|r| r.cost).sum();
        // gpt-4o-2024-05-13 at $5/M in, $15/M out:
        // 3 × (1,000 × 5 / 1M + 500 × 15 / 1M) = 3 × (0.005 + 0.0075) = 0.0375,
        // not 0.0375 + the agent's 3,000 × 5 / 1M + 1,500 × 15 / 1M = 0.0375 more.
        assert_eq!(total, d("0.0375"));
        let tokens: Decimal = ledger.iter().map(|r| r.consumed_quantity).sum();
        assert_eq!(tokens, Decimal::from(4_500), "3 × 1,500 tokens, the agent's 4,500 not added");
    }

    #[test]
    fn an_agent_span_without_child_calls_is_billed() {
        let m = meter();
        let spans = spans_of_trace("trace-2", &[("agent", AGENT)]);
        let rows = m.measure(&TelemetryBatch { spans, ..TelemetryBatch::default() }, T);
        // No model-call span in trace-2 carries usage: the agent's usage is billed.
        let ledger = m.llm_ledger(&rows.llm, &|_| true, ChargeStatus::Closed);
        let total: Decimal = ledger.iter().map(|r| r.cost).sum();
        // 3,000 × $5/M + 1,500 × $15/M = 0.015 + 0.0225 = 0.0375.
        assert_eq!(total, d("0.0375"));
    }

    #[test]
    fn a_call_30_days_old_is_invalid_and_not_shifted() {
        let m = meter();
        let mut s = span(CHAT);
        let thirty_days = 30 * DAY_NS;
        s.timestamp_ns = T - thirty_days;
        let rows = m.measure(&TelemetryBatch { spans: vec![s], ..TelemetryBatch::default() }, T);
        let r = &rows.llm[0];
        // Its own time is kept; it is booked at the receive hour (T is on the hour).
        assert_eq!((r.timestamp_ns, r.received_ns, r.hour_ns), (T - thirty_days, T, T));
        let reason = r.invalid_reason.as_deref().unwrap();
        assert!(reason.contains("2026-09-06T10:00:00Z") && reason.contains("outside the accepted window"), "{reason}");
        let ledger = m.llm_ledger(&rows.llm, &|_| true, ChargeStatus::Closed);
        // Not priced: 1,000 × $5/M + 500 × $15/M = $0.0125 would be its price; it books $0.
        assert!(ledger.iter().all(|l| l.pricing_status == PricingStatus::Invalid && l.cost.is_zero()), "{ledger:?}");
        assert_eq!(ledger.iter().map(|l| l.consumed_quantity).sum::<Decimal>(), Decimal::from(1_500));
        // Within the window (6 days back, or 59 minutes ahead) it is priced at its event hour.
        for offset in [-6 * DAY_NS, 59 * 60 * 1_000_000_000] {
            let mut s = span(CHAT);
            s.timestamp_ns = T + offset;
            let rows = m.measure(&TelemetryBatch { spans: vec![s], ..TelemetryBatch::default() }, T);
            assert_eq!((rows.llm[0].hour_ns, &rows.llm[0].invalid_reason), (hour_of(T + offset), &None));
        }
    }

    #[test]
    fn telemetry_is_bucketed_by_receive_time_whatever_the_timestamps() {
        let m = meter();
        let mut a = span(&[]);
        a.timestamp_ns = 0;
        let mut b = span(&[]);
        b.timestamp_ns = i64::MAX;
        let rows = m.measure(&TelemetryBatch { spans: vec![a, b], ..TelemetryBatch::default() }, T + 5);
        // One receive hour; a row per event day (the day partition each
        // span is stored in: 1970-01-01 and the day of i64::MAX).
        let got: Vec<_> = rows.telemetry.iter().map(|u| (u.hour_ns, u.event_day_ns, u.items, u.bytes)).collect();
        assert_eq!(got, [(T, 0, 1, 100), (T, day_of(i64::MAX), 1, 100)]);
        // Priced by receive hour, the two rows are one sum.
        let mut agg = crate::aggregate::TelemetryAggregate::default();
        rows.telemetry.iter().for_each(|u| agg.add(u));
        let summed: Vec<_> = agg.usage().iter().map(|u| (u.hour_ns, u.items, u.bytes)).collect();
        assert_eq!(summed, [(T, 2, 200)]);
        assert_eq!(hour_of(i64::MAX), i64::MAX - i64::MAX.rem_euclid(HOUR_NS));
        // The hour of i64::MIN starts before it: saturated, never wrapped
        // to a time far in the future.
        assert_eq!(hour_of(i64::MIN), i64::MIN);
    }

    #[test]
    fn provided_costs_follow_the_configured_rule() {
        // gpt-4o-2024-05-13 (catalog: $5/M in, $15/M out) with a span cost of $9.
        let priced_model = [
            ("gen_ai.provider.name", "openai"),
            ("gen_ai.request.model", "gpt-4o-2024-05-13"),
            ("gen_ai.usage.input_tokens", "1000"),
            ("gen_ai.usage.output_tokens", "500"),
            ("gen_ai.usage.cost", "9"),
        ];
        let unknown_model = [("gen_ai.request.model", "house-model-7"), ("gen_ai.usage.input_tokens", "10"), ("gen_ai.usage.cost", "2")];
        let cost_of = |mode: ProvidedCost, attrs: &[(&str, &str)]| {
            let mut m = meter();
            m.provided_cost = mode;
            let rows = m.measure(&TelemetryBatch { spans: vec![span(attrs)], ..TelemetryBatch::default() }, T);
            let ledger = m.llm_ledger(&rows.llm, &|_| true, ChargeStatus::Closed);
            (ledger.iter().map(|r| r.cost).sum::<Decimal>(), ledger[0].pricing_status)
        };
        // when_unpriced (default): the catalog's 1,000 × 5/1M + 500 × 15/1M = 0.0125 wins...
        assert_eq!(cost_of(ProvidedCost::WhenUnpriced, &priced_model), (d("0.0125"), PricingStatus::Priced));
        // ... and the span's $2 fills in for a model no price covers.
        assert_eq!(cost_of(ProvidedCost::WhenUnpriced, &unknown_model), (d("2"), PricingStatus::Provided));
        assert_eq!(cost_of(ProvidedCost::Prefer, &priced_model), (d("9"), PricingStatus::Provided));
        assert_eq!(cost_of(ProvidedCost::Ignore, &priced_model), (d("0.0125"), PricingStatus::Priced));
        assert_eq!(cost_of(ProvidedCost::Ignore, &unknown_model), (Decimal::ZERO, PricingStatus::Unpriced));
        assert_eq!(meter().provided_cost, ProvidedCost::WhenUnpriced);
    }

    #[test]
    fn a_provided_cost_keeps_the_token_split() {
        // A span's own $1 over 2 input and 1 output tokens: 2/3 and 1/3,
        // rounded to 12 places half-even: 0.666666666667 and what is left,
        // 0.333333333333; together exactly $1.
        let parts = split_provided(d("1"), &[(UsageType::Input, 2, Decimal::ZERO), (UsageType::Output, 1, Decimal::ZERO)]);
        assert_eq!(parts, vec![(UsageType::Input, 2, d("0.666666666667")), (UsageType::Output, 1, d("0.333333333333"))]);
        assert_eq!(split_provided(d("0.5"), &[]), vec![(UsageType::Total, 0, d("0.5"))]);
    }
}
