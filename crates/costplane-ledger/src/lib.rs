//! costplane-ledger: usage facts and cost-ledger rows, the types every layer
//! shares. Pure data: no I/O, no pricing (that is `costplane-cost`), no SQL
//! (that is the ledger repository in `costplane-store`).
//!
//! # Usage first, money second
//! Receivers record **usage** ([`UsageRows`]) with the telemetry it was
//! measured from, in the same retried store write. **Money** ([`LedgerRow`])
//! is made later, per hour, by the closer: it reads an hour's usage, prices
//! it and replaces that hour's ledger rows in one step (a new *revision*).
//!
//! # The one rounding rule
//! Money is `Decimal`, rounded **once per ledger row** to [`MONEY_SCALE`]
//! (12) decimal places, **half-even** ([`round_money`]), when the row is
//! made. Both stores keep `Decimal(38, 12)` and never round again; every
//! sum (API, chargeback CSV, FOCUS export, `/metrics`) adds the same stored
//! values exactly, so they agree to the last digit.

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};

mod kinds;
mod row;
pub use kinds::{ChargeClass, ChargeStatus, PricingStatus, Source, UnknownValue, UsageType};
pub use row::{LedgerExt, LedgerRow, LedgerRowBuilder, DEFAULT_CHARGE_CATEGORY};

/// Decimal places of money in the ledger.
pub const MONEY_SCALE: u32 = 12;

/// The ledger's one rounding rule: 12 places, half-even.
pub fn round_money(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(MONEY_SCALE, RoundingStrategy::MidpointNearestEven)
}

/// One hour in nanoseconds.
pub const HOUR_NS: i64 = 3_600_000_000_000;
/// One day in nanoseconds.
pub const DAY_NS: i64 = 24 * HOUR_NS;

/// The start of the hour holding `ns`, without overflow for any `i64`.
pub fn hour_of(ns: i64) -> i64 {
    // Saturating: the hour of i64::MIN starts before i64::MIN.
    ns.saturating_sub(ns.rem_euclid(HOUR_NS))
}

/// The start of the UTC day holding `ns` (before 1970 too).
pub fn day_of(ns: i64) -> i64 {
    ns.saturating_sub(ns.rem_euclid(DAY_NS))
}

/// Items and bytes of one signal for one (hour, event day, tenant,
/// project, service). The hour is the hour the data was **received**
/// (ingest is billed by receive time: backdated or replayed data cannot
/// change a closed hour's key, and client clocks do not matter). The event
/// day is the UTC day of the items' own time, the day partition both stores
/// keep them in: what they cost to store is charged to whoever sent that
/// day's data, whenever they sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryUsage {
    /// Start of the receive hour, ns since the epoch.
    pub hour_ns: i64,
    /// Start of the UTC day of the items' own time (a span's or log's
    /// `Timestamp`, a point's `TimeUnix`), ns since the epoch; for API
    /// queries, which are not stored, the receive day.
    pub event_day_ns: i64,
    pub tenant: String,
    pub project: String,
    pub service: String,
    /// `traces`, `logs`, `metrics` or `queries`.
    pub signal: &'static str,
    pub items: u64,
    pub bytes: u64,
}

/// Token usage of one LLM call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LlmUsage {
    pub provider: String,
    pub model: String,
    pub operation: String,
    /// All input tokens, cached ones included.
    pub input_tokens: u64,
    /// All output tokens, reasoning ones included.
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    /// All cache writes, 1-hour ones included.
    pub cache_write_tokens: u64,
    /// Of the cache writes, those kept for an hour (Anthropic's 1-hour
    /// TTL, billed at its own rate); the rest are 5-minute writes.
    pub cache_write_1h_tokens: u64,
    pub reasoning_tokens: u64,
    /// A cost the span carried, in the catalog's currency.
    pub provided_cost: Option<Decimal>,
}

/// What kind of span carried LLM usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub enum CallKind {
    /// A model call (GenAI operations chat, text_completion,
    /// generate_content, embeddings; OpenInference LLM, EMBEDDING), or a
    /// span that names no operation: billed.
    #[default]
    Model,
    /// An agent, chain, workflow or tool span: its usage is usually the
    /// roll-up of its children's, billed only when no model-call span of
    /// the same trace carries usage.
    Rollup,
}

impl CallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Model => "model",
            CallKind::Rollup => "rollup",
        }
    }

    pub fn parse(s: &str) -> CallKind {
        if s == "rollup" {
            CallKind::Rollup
        } else {
            CallKind::Model
        }
    }
}

/// One LLM call (one span) as stored: who made it, when, and its usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmUsageRow {
    /// The span's own (event) time, as sent: never shifted.
    pub timestamp_ns: i64,
    /// When costplane received it.
    pub received_ns: i64,
    /// The hour the call is booked in: its event hour when the event time
    /// is within the accepted window around the receive time, else the
    /// receive hour (and `invalid_reason` says why).
    pub hour_ns: i64,
    pub tenant: String,
    pub project: String,
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    pub kind: CallKind,
    pub usage: LlmUsage,
    /// Why the call cannot be priced (unreadable counts, a timestamp
    /// outside the window): booked at zero with this reason.
    pub invalid_reason: Option<String>,
}

/// Usage facts a batch carries, written with its telemetry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageRows {
    pub telemetry: Vec<TelemetryUsage>,
    pub llm: Vec<LlmUsageRow>,
    pub kubernetes: Vec<KubernetesUsage>,
    /// Kubernetes samples as they arrived, one row each, stored with the
    /// request they came in so that the meter can be rebuilt from them
    /// after a restart: the same columns as [`KubernetesUsage`], with
    /// `written_ns` the sample's time, `kind` = `sample` and `payload` the
    /// sample itself (see `costplane-k8s`'s `samples`).
    pub kubernetes_samples: Vec<KubernetesUsage>,
}

/// One metered Kubernetes entity (a container, node, volume or pod's
/// network) of one hour, as the meter wrote it. The meter writes every
/// entity of an hour again when late samples change it, under a larger
/// `written_ns`: the hour's usage is the rows of its latest write per
/// cluster, and the added rows change the hour's count, so the closer
/// prices it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesUsage {
    pub hour_ns: i64,
    /// When the meter wrote this hour (ns); one value per write.
    pub written_ns: i64,
    pub cluster: String,
    /// `container`, `node`, `volume` or `network`.
    pub kind: String,
    /// The entity's identity and quantities as JSON, exact decimals as
    /// strings (owned by `costplane-k8s`).
    pub payload: String,
}

impl UsageRows {
    pub fn is_empty(&self) -> bool {
        self.telemetry.is_empty() && self.llm.is_empty() && self.kubernetes.is_empty() && self.kubernetes_samples.is_empty()
    }

    pub fn append(&mut self, mut other: UsageRows) {
        self.telemetry.append(&mut other.telemetry);
        self.llm.append(&mut other.llm);
        self.kubernetes.append(&mut other.kubernetes);
        self.kubernetes_samples.append(&mut other.kubernetes_samples);
    }

    /// Telemetry usage with one row per (hour, event day, tenant, project,
    /// service, signal), in key order: what a store writes for a batch of many
    /// requests. Deterministic, so a replayed batch writes the same rows.
    /// LLM usage stays one row per call: pricing tiers apply per request
    /// and roll-up spans are decided per trace.
    pub fn aggregated_telemetry(&self) -> Vec<TelemetryUsage> {
        // (hour, event day, tenant, project, service, signal) -> (items, bytes)
        type Key<'a> = (i64, i64, &'a str, &'a str, &'a str, &'static str);
        let mut merged: BTreeMap<Key<'_>, (u64, u64)> = BTreeMap::new();
        for u in &self.telemetry {
            let e = merged.entry((u.hour_ns, u.event_day_ns, &u.tenant, &u.project, &u.service, u.signal)).or_default();
            e.0 = e.0.saturating_add(u.items);
            e.1 = e.1.saturating_add(u.bytes);
        }
        merged
            .into_iter()
            .map(|((hour_ns, event_day_ns, tenant, project, service, signal), (items, bytes))| TelemetryUsage {
                hour_ns,
                event_day_ns,
                tenant: tenant.to_owned(),
                project: project.to_owned(),
                service: service.to_owned(),
                signal,
                items,
                bytes,
            })
            .collect()
    }
}

/// [`ChargeStatus::Provisional`] as the revision table stores it.
pub const PROVISIONAL: &str = ChargeStatus::Provisional.as_str();
/// [`ChargeStatus::Closed`] as the revision table stores it.
pub const CLOSED: &str = ChargeStatus::Closed.as_str();

/// Scopes an hour is closed in, each with its own revision: LLM usage,
/// telemetry usage (ingest and queries), storage (one "hour" per day).
/// New sources (Kubernetes, cloud bills) add their own scope.
pub mod scope {
    pub const LLM: &str = "llm";
    pub const TELEMETRY: &str = "telemetry";
    pub const STORAGE: &str = "storage";
    /// Kubernetes allocation, priced from the meter's usage.
    pub const KUBERNETES: &str = "kubernetes";
    /// Imported cloud bills: `cloud:<provider>:<account>`, one revision per
    /// charge day.
    pub const CLOUD_PREFIX: &str = "cloud:";
    /// Not a ledger scope: marks a month whose export was served to an
    /// admin (every tenant's rows).
    pub const EXPORT: &str = "export";
    /// Not a ledger scope: `export:<tenant>` marks a month whose export was
    /// served to that tenant's key (its rows only).
    pub const EXPORT_PREFIX: &str = "export:";
}

/// The current revision of one (hour, scope) of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourState {
    pub hour_ns: i64,
    pub scope: String,
    pub revision: u64,
    /// [`PROVISIONAL`] or [`CLOSED`].
    pub status: String,
    /// Usage rows the revision was computed from.
    pub usage_rows: u64,
    pub price_version: String,
}

/// A new revision of some (hour, scope)s: the rows replace, as one step
/// readers see whole, every row of the previous revisions of those
/// (hour, scope)s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerReplacement {
    pub hours: Vec<HourState>,
    /// Rows, each with `revision` equal to its (hour, scope)'s new revision.
    pub rows: Vec<LedgerRow>,
}

/// A dimension of the ledger one can group or filter by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    Tenant,
    Project,
    Service,
    Model,
    Operation,
    Source,
    Provider,
    /// The provider's service (FOCUS `ServiceName`: "Amazon EC2", the
    /// models of an LLM provider, "Kubernetes").
    ProviderService,
    /// The provider's resource (FOCUS `ResourceId`: an instance, a bucket);
    /// empty for costplane's own rows.
    Resource,
    /// The provider's SKU (FOCUS `SkuId`).
    Sku,
    /// Token kind (LLM) or signal (telemetry): the ledger's usage type.
    UsageType,
    /// The telemetry signal (`traces`, `logs`, `metrics`, `queries`,
    /// `storage`); empty for other sources.
    Signal,
    /// The consumed unit (tokens, bytes, ...): group by it to see quantities.
    Unit,
    PricingStatus,
    ChargeStatus,
    Currency,
}

impl Dimension {
    /// The dimensions the cost API accepts.
    pub const API: [Dimension; 16] = [
        Dimension::Currency,
        Dimension::Tenant,
        Dimension::Project,
        Dimension::Service,
        Dimension::Model,
        Dimension::Operation,
        Dimension::Source,
        Dimension::Provider,
        Dimension::ProviderService,
        Dimension::Resource,
        Dimension::Sku,
        Dimension::UsageType,
        Dimension::Signal,
        Dimension::Unit,
        Dimension::PricingStatus,
        Dimension::ChargeStatus,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dimension::Tenant => "tenant",
            Dimension::Project => "project",
            Dimension::Service => "service",
            Dimension::Model => "model",
            Dimension::Operation => "operation",
            Dimension::Source => "source",
            Dimension::Provider => "provider",
            Dimension::ProviderService => "provider_service",
            Dimension::Resource => "resource",
            Dimension::Sku => "sku",
            Dimension::UsageType => "usage_type",
            Dimension::Signal => "signal",
            Dimension::Unit => "unit",
            Dimension::PricingStatus => "pricing_status",
            Dimension::ChargeStatus => "charge_status",
            Dimension::Currency => "currency",
        }
    }

    pub fn parse(s: &str) -> Option<Dimension> {
        Dimension::API.into_iter().find(|d| d.name() == s)
    }
}

/// Time buckets of a cost series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Hour,
    Day,
    Month,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Hour => "hour",
            Step::Day => "day",
            Step::Month => "month",
        }
    }
}

/// Windows of one length repeating at a fixed period from a read's start:
/// `[from + j·every, from + j·every + len)` for every `j ≥ 0` that starts
/// before the read's end (comparing a window with the same window in past
/// weeks in one read, without reading the hours between).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub len_ns: i64,
    /// At least `len_ns`, so that no row falls in two windows.
    pub every_ns: i64,
}

/// The cost of each of a read's [`Windows`] for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSums {
    /// Values of the group-by dimensions, in their order.
    pub dims: Vec<String>,
    /// Window `j`'s cost (`j` counted from the read's start).
    pub costs: Vec<Decimal>,
}

/// Which ledger rows a read covers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CostFilter {
    /// `[from_ns, to_ns)` of `ChargePeriodStart`.
    pub from_ns: i64,
    pub to_ns: i64,
    /// A tenant-scoped caller sees its own tenant only.
    pub tenant: Option<String>,
    /// Dimension = value conditions (providers match case-insensitively).
    pub equals: Vec<(Dimension, String)>,
}

/// One grouped sum of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostSum {
    /// The bucket's start, when a step was asked for.
    pub period_ns: Option<i64>,
    /// Values of the group-by dimensions, in their order.
    pub dims: Vec<String>,
    pub cost: Decimal,
    /// The quantity, when every row of the group has the same unit.
    pub quantity: Option<Decimal>,
    /// That unit, or `None` when units are mixed.
    pub unit: Option<String>,
    /// Ledger rows summed.
    pub rows: u64,
}
