//! Metering: usage facts and ledger rows from a batch of telemetry.
//!
//! - Tenant and project come from resource attributes (configurable; by
//!   default `tenant.id` and `service.namespace`), `unassigned` when absent.
//! - Telemetry usage: items and encoded OTLP bytes per hour, tenant,
//!   project, service and signal; priced per GiB ingested.
//! - Queries: each cost/SQL API query is counted for the caller's tenant
//!   (`unassigned` for admin keys), priced per 1,000.
//! - LLM usage: one row per span that carries model or token attributes;
//!   priced by the catalog (see [`crate::llm`]); ledger rows aggregate per
//!   hour, tenant, project, service, provider, model, operation, token kind,
//!   pricing status and reason.
//! - An `invalid` LLM usage (unreadable token counts, above the token limit,
//!   an overflow) is booked at zero cost with its readable tokens and
//!   `pricing_status = "invalid"`; the reason is the `pricing_reason` key
//!   of the row's tags JSON. The ledger row type has no reason column, and
//!   the tags travel with the row to both stores and the FOCUS export
//!   without a schema change.
//! - Repricing from stored usage (`llm_ledger`) finds the rows above the
//!   token limit again; an unreadable count was stored as 0, so that reason
//!   is known only when the span is metered.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::DateTime;
use costplane_telemetry::model::{ResourceInfo, TelemetryBatch};
use costplane_telemetry::usage::{LedgerRow, LlmUsageRow, TelemetryUsage, UsageRows, MONEY_SCALE};
use rust_decimal::Decimal;

use crate::catalog::Catalog;
use crate::llm::{self, PricingStatus};
use crate::model_name::canonical_provider;

pub const UNASSIGNED: &str = "unassigned";
/// The usage "signal" of API queries.
pub const QUERIES: &str = "queries";
const HOUR_NS: i64 = 3_600_000_000_000;
const GIB: Decimal = Decimal::from_parts(1_073_741_824, 0, 0, false, 0);

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

/// Turns batches into usage and ledger rows.
#[derive(Debug, Clone)]
pub struct Meter {
    pub tenancy: Tenancy,
    pub catalog: Arc<Catalog>,
    pub rates: TelemetryRates,
}

fn money(d: Decimal) -> Decimal {
    d.round_dp(MONEY_SCALE)
}

fn hour_of(ns: i64) -> i64 {
    ns.div_euclid(HOUR_NS) * HOUR_NS
}

fn lookup(resource: &ResourceInfo, key: &str) -> String {
    resource
        .attributes
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| UNASSIGNED.to_owned())
}

/// A provider's display name, however the span or the catalog spells it.
fn provider_display(provider: &str) -> String {
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
fn tags(tenant: &str, project: &str, service: &str, pricing_reason: Option<&str>) -> String {
    let mut tags = serde_json::json!({ "tenant": tenant, "project": project, "service": service });
    if let Some(r) = pricing_reason {
        tags["pricing_reason"] = r.into();
    }
    tags.to_string()
}

impl Meter {
    /// Usage and ledger rows for `batch`.
    pub fn measure(&self, batch: &TelemetryBatch) -> UsageRows {
        // Hot path: count per (resource, hour, signal) without allocating;
        // names are resolved once per resource at the end.
        type Key = (*const ResourceInfo, i64, &'static str);
        let mut counts: HashMap<Key, (u64, u64)> = HashMap::new();
        let mut resources: HashMap<*const ResourceInfo, &Arc<ResourceInfo>> = HashMap::new();
        let mut add = |r: &'_ Arc<ResourceInfo>, ts: i64, signal: &'static str, bytes: u32| {
            let e = counts.entry((Arc::as_ptr(r), hour_of(ts), signal)).or_default();
            e.0 += 1;
            e.1 += u64::from(bytes);
        };
        let mut llm_rows = Vec::new();
        let mut invalid = Vec::new();
        for s in &batch.spans {
            add(&s.resource, s.timestamp_ns, "traces", s.encoded_bytes);
            resources.entry(Arc::as_ptr(&s.resource)).or_insert(&s.resource);
            // Cheap gate: only spans with GenAI-looking attributes are parsed.
            let maybe_llm =
                s.span_attributes.iter().any(|(k, _)| k.starts_with("gen_ai.") || k.starts_with("llm.") || k.starts_with("cost."));
            if maybe_llm {
                if let Some(llm::Extracted { usage: u, invalid: why }) = llm::extract(&s.span_name, &s.span_attributes) {
                    invalid.push(why);
                    llm_rows.push(LlmUsageRow {
                        timestamp_ns: s.timestamp_ns,
                        tenant: lookup(&s.resource, &self.tenancy.tenant_attribute),
                        project: lookup(&s.resource, &self.tenancy.project_attribute),
                        service: s.resource.service_name.clone(),
                        trace_id: s.trace_id.clone(),
                        span_id: s.span_id.clone(),
                        usage: u,
                    });
                }
            }
        }
        for l in &batch.logs {
            add(&l.resource, l.timestamp_ns, "logs", l.encoded_bytes);
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
            add(&p.metric.resource, p.time_unix_ns, "metrics", p.encoded_bytes);
            resources.entry(Arc::as_ptr(&p.metric.resource)).or_insert(&p.metric.resource);
        }
        // Resources with the same tenant, project and service merge.
        type Merged = (i64, String, String, String, &'static str);
        let mut merged: BTreeMap<Merged, (u64, u64)> = BTreeMap::new();
        for ((ptr, hour, signal), (items, bytes)) in counts {
            let r = resources[&ptr];
            let key = (
                hour,
                lookup(r, &self.tenancy.tenant_attribute),
                lookup(r, &self.tenancy.project_attribute),
                r.service_name.clone(),
                signal,
            );
            let e = merged.entry(key).or_default();
            e.0 += items;
            e.1 += bytes;
        }
        let telemetry: Vec<TelemetryUsage> = merged
            .into_iter()
            .map(|((hour_ns, tenant, project, service, signal), (items, bytes))| TelemetryUsage {
                hour_ns,
                tenant,
                project,
                service,
                signal,
                items,
                bytes,
            })
            .collect();
        let mut ledger = self.telemetry_ledger(&telemetry);
        ledger.extend(self.llm_ledger_of(llm_rows.iter().zip(invalid.iter().map(Option::as_deref))));
        UsageRows { telemetry, llm: llm_rows, ledger }
    }

    /// Usage of `n` queries a tenant ran through the API, as of now.
    pub fn queries(&self, tenant: &str, n: u64) -> UsageRows {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let telemetry = vec![TelemetryUsage {
            hour_ns: hour_of(now),
            tenant: tenant.to_owned(),
            project: UNASSIGNED.to_owned(),
            service: "costplane-api".to_owned(),
            signal: QUERIES,
            items: n,
            bytes: 0,
        }];
        let ledger = self.telemetry_ledger(&telemetry);
        UsageRows { telemetry, llm: Vec::new(), ledger }
    }

    /// Ledger rows for telemetry usage: ingest priced per GiB, queries per 1,000.
    pub fn telemetry_ledger(&self, usage: &[TelemetryUsage]) -> Vec<LedgerRow> {
        usage
            .iter()
            .map(|u| {
                let gib = Decimal::from(u.bytes) / GIB;
                let thousands = Decimal::from(u.items) / Decimal::from(1000u32);
                let queries = u.signal == QUERIES;
                LedgerRow {
                    charge_period_start_ns: u.hour_ns,
                    charge_period_end_ns: u.hour_ns + HOUR_NS,
                    cost: money(if queries { thousands * self.rates.queries_per_1000 } else { gib * self.rates.ingest_per_gib }),
                    billing_currency: self.catalog.currency.clone(),
                    service_name: if queries { "Telemetry queries" } else { "Telemetry ingest" }.into(),
                    service_category: "Management and Governance".into(),
                    provider_name: "costplane".into(),
                    publisher_name: "costplane".into(),
                    resource_id: format!("{}/{}/{}", u.tenant, u.project, u.service),
                    resource_name: u.service.clone(),
                    consumed_quantity: Decimal::from(if queries { u.items } else { u.bytes }),
                    consumed_unit: if queries { "Queries" } else { "Bytes" }.into(),
                    pricing_quantity: if queries { thousands } else { gib.round_dp(MONEY_SCALE) },
                    pricing_unit: if queries { "1000 Queries" } else { "GiB" }.into(),
                    sku_id: if queries { "telemetry/queries".to_owned() } else { format!("telemetry/ingest/{}", u.signal) },
                    tags: tags(&u.tenant, &u.project, &u.service, None),
                    tenant: u.tenant.clone(),
                    project: u.project.clone(),
                    service: u.service.clone(),
                    source: "telemetry".into(),
                    model: String::new(),
                    operation: if queries { "query" } else { "ingest" }.into(),
                    usage_type: u.signal.into(),
                    pricing_status: "priced".into(),
                    price_version: format!(
                        "telemetry-rates:{}/{}",
                        self.rates.ingest_per_gib.normalize(),
                        self.rates.queries_per_1000.normalize()
                    ),
                    ext: Default::default(),
                }
            })
            .collect()
    }

    /// Ledger rows for LLM usage, aggregated per hour and dimensions.
    pub fn llm_ledger(&self, usage: &[LlmUsageRow]) -> Vec<LedgerRow> {
        self.llm_ledger_of(usage.iter().map(|row| (row, None)))
    }

    /// Ledger rows for LLM usage, each with why it is invalid when its
    /// span's counts could not be read.
    fn llm_ledger_of<'a>(&self, usage: impl Iterator<Item = (&'a LlmUsageRow, Option<&'a str>)>) -> Vec<LedgerRow> {
        type Key = (i64, String, String, String, String, String, String, &'static str, &'static str, Option<String>);
        // Tokens are summed as decimals: a sum of u64 counts can pass u64.
        let mut agg: BTreeMap<Key, (Decimal, Decimal, String)> = BTreeMap::new();
        for (row, invalid) in usage {
            let u = &row.usage;
            let day = DateTime::from_timestamp_nanos(row.timestamp_ns).date_naive();
            let cost = match invalid {
                Some(reason) => llm::invalid(&self.catalog, u, reason),
                None => llm::price(&self.catalog, u, day),
            };
            let provider = if u.provider.is_empty() { cost.provider.clone().unwrap_or_default() } else { u.provider.clone() };
            let key_base = (
                hour_of(row.timestamp_ns),
                row.tenant.clone(),
                row.project.clone(),
                row.service.clone(),
                provider,
                u.model.clone(),
                u.operation.clone(),
            );
            let publisher = cost.provider.clone().unwrap_or_default();
            let new_row = || (Decimal::ZERO, Decimal::ZERO, publisher.clone());
            // A provided cost (or a token-less usage) is one "total" row;
            // a priced, unpriced or invalid one, a row per token kind.
            let parts = if cost.status == PricingStatus::Provided || cost.parts.is_empty() {
                vec![("total", u.input_tokens.saturating_add(u.output_tokens), cost.total)]
            } else {
                cost.parts
            };
            let reason = if cost.status == PricingStatus::Invalid { cost.reason.clone() } else { None };
            for (kind, tokens, amount) in parts {
                let tokens = Decimal::from(tokens);
                let (h, t, p, s, pr, m, o) = key_base.clone();
                let e = agg.entry((h, t, p, s, pr, m, o, kind, cost.status.as_str(), reason.clone())).or_insert_with(new_row);
                if let Some(sum) = e.1.checked_add(amount) {
                    e.0 = e.0.saturating_add(tokens);
                    e.1 = sum;
                    continue;
                }
                // Only provided costs near Decimal's limit get here; the
                // part is kept, unbooked, rather than panicking.
                let (h, t, p, s, pr, m, o) = key_base.clone();
                let why = format!("adding {amount} to this hour's cost of the row overflows");
                let e = agg.entry((h, t, p, s, pr, m, o, kind, PricingStatus::Invalid.as_str(), Some(why))).or_insert_with(new_row);
                e.0 = e.0.saturating_add(tokens);
            }
        }
        agg.into_iter()
            .map(|((hour, tenant, project, service, provider, model, operation, kind, status, reason), (tokens, cost, publisher))| {
                let provider_name = provider_display(&provider);
                LedgerRow {
                    charge_period_start_ns: hour,
                    charge_period_end_ns: hour + HOUR_NS,
                    cost: money(cost),
                    billing_currency: self.catalog.currency.clone(),
                    service_name: format!("{provider_name} models"),
                    service_category: "AI and Machine Learning".into(),
                    publisher_name: if publisher.is_empty() { provider_name.clone() } else { provider_display(&publisher) },
                    provider_name,
                    resource_id: format!("{}/{}/{}", tenant, project, service),
                    resource_name: service.clone(),
                    consumed_quantity: tokens,
                    consumed_unit: "Tokens".into(),
                    pricing_quantity: (tokens / Decimal::from(1_000_000u32)).round_dp(MONEY_SCALE),
                    pricing_unit: "1M Tokens".into(),
                    sku_id: format!("{provider}/{model}/{kind}"),
                    tags: tags(&tenant, &project, &service, reason.as_deref()),
                    tenant,
                    project,
                    service,
                    source: "llm".into(),
                    model,
                    operation,
                    usage_type: kind.into(),
                    pricing_status: status.into(),
                    price_version: self.catalog.version.clone(),
                    ext: Default::default(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use costplane_telemetry::model::{ScopeInfo, SpanRow};
    use std::str::FromStr;

    /// 2026-10-06T10:00:00Z.
    const T: i64 = 1_791_280_800_000_000_000;

    fn meter() -> Meter {
        Meter { tenancy: Tenancy::default(), catalog: Arc::new(Catalog::load(None).unwrap()), rates: TelemetryRates::default() }
    }

    fn span(attrs: &[(&str, &str)]) -> SpanRow {
        SpanRow {
            resource: Arc::new(ResourceInfo {
                service_name: "chat-api".into(),
                attributes: vec![("tenant.id".into(), "acme".into())],
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
        let rows = meter().measure(&TelemetryBatch { spans, ..TelemetryBatch::default() });
        let llm = rows.ledger.iter().filter(|r| r.source == "llm").cloned().collect();
        (rows, llm)
    }

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
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
        let by = |status: &str| llm.iter().filter(|r| r.pricing_status == status).map(|r| r.cost).sum::<Decimal>();
        // Two calls of 1,000 × $5/M + 500 × $15/M = 0.0125 each: 0.025.
        assert_eq!(by("priced"), d("0.025"));
        assert_eq!(by("invalid"), Decimal::ZERO);
        let priced_tags: serde_json::Value =
            serde_json::from_str(&llm.iter().find(|r| r.pricing_status == "priced").unwrap().tags).unwrap();
        assert!(priced_tags.get("pricing_reason").is_none());
    }

    #[test]
    fn repricing_stored_usage_finds_calls_above_the_limit() {
        let m = meter();
        let row = LlmUsageRow {
            timestamp_ns: T,
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
        let ledger = m.llm_ledger(&[row.clone(), row]);
        assert!(ledger.iter().all(|r| r.pricing_status == "invalid" && r.cost.is_zero()), "{ledger:?}");
        // Two calls' tokens summed past u64 without wrapping: 2 × (2^64 - 1) input tokens.
        let input = ledger.iter().find(|r| r.usage_type == "input").unwrap();
        assert_eq!(input.consumed_quantity, d("36893488147419103230"));
        assert!(input.tags.contains("input plus"), "{}", input.tags);
    }

    #[test]
    fn provided_costs_that_overflow_the_hour_are_not_a_panic() {
        let huge = "50000000000000000000000000000";
        let s = span(&[("cost.model", "gpt-4o"), ("cost.tokens.prompt", "10"), ("cost.usd", huge)]);
        let (_, llm) = llm_rows(vec![s.clone(), s]);
        let provided = llm.iter().find(|r| r.pricing_status == "provided").unwrap();
        assert_eq!(provided.cost, d(huge));
        let overflow = llm.iter().find(|r| r.pricing_status == "invalid").unwrap();
        assert_eq!((overflow.cost, overflow.consumed_quantity), (Decimal::ZERO, Decimal::from(10)));
        assert!(overflow.tags.contains("overflows"), "{}", overflow.tags);
    }
}
