//! Usage facts and cost-ledger rows that travel with a telemetry batch, so a
//! store writes them together with the telemetry they were measured from.
//!
//! Money invariant: every amount is a `Decimal` rounded to
//! [`MONEY_SCALE`] places when the row is made; the stores keep
//! `DECIMAL(38, 12)`, and every sum (API, exports, `/metrics`) adds the same
//! stored values, so they agree to the last digit.

use rust_decimal::Decimal;

/// Decimal places of money in the ledger.
pub const MONEY_SCALE: u32 = 12;

/// Items and bytes of one signal for one (hour, tenant, project, service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryUsage {
    /// Start of the hour, ns since the epoch.
    pub hour_ns: i64,
    pub tenant: String,
    pub project: String,
    pub service: String,
    /// `traces`, `logs` or `metrics`.
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
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    /// A cost the span carried, in the catalog's currency.
    pub provided_cost: Option<Decimal>,
}

/// One LLM call (one span) as stored: who made it, and its usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmUsageRow {
    pub timestamp_ns: i64,
    pub tenant: String,
    pub project: String,
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    pub usage: LlmUsage,
}

/// One row of the cost ledger, in FOCUS terms (plus `x_` columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    pub charge_period_start_ns: i64,
    pub charge_period_end_ns: i64,
    /// Billed = effective = list = contracted for costplane's own pricing.
    pub cost: Decimal,
    pub billing_currency: String,
    /// FOCUS ServiceName: the offering billed (e.g. "OpenAI API", "Telemetry ingest").
    pub service_name: String,
    pub service_category: String,
    pub provider_name: String,
    pub publisher_name: String,
    pub resource_id: String,
    pub resource_name: String,
    pub consumed_quantity: Decimal,
    pub consumed_unit: String,
    pub pricing_quantity: Decimal,
    pub pricing_unit: String,
    pub sku_id: String,
    /// JSON object.
    pub tags: String,
    pub tenant: String,
    pub project: String,
    /// The emitting service (OTel `service.name`).
    pub service: String,
    /// `llm` or `telemetry`.
    pub source: String,
    pub model: String,
    pub operation: String,
    /// For telemetry rows: the signal; for LLM rows: the token kind.
    pub usage_type: String,
    /// `priced`, `provided` or `unpriced`.
    pub pricing_status: String,
    pub price_version: String,
    /// Columns only Kubernetes and imported rows fill (`x_Namespace`, ...,
    /// FOCUS costs that differ from `cost`).
    pub ext: LedgerExt,
}

/// The ledger's Kubernetes and cloud-bill columns. Default: a row of
/// costplane's own pricing (every cost = `cost`, `ChargeCategory` Usage,
/// no Kubernetes identity).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerExt {
    /// FOCUS EffectiveCost / ListCost / ContractedCost when they differ from BilledCost.
    pub effective_cost: Option<Decimal>,
    pub list_cost: Option<Decimal>,
    pub contracted_cost: Option<Decimal>,
    /// FOCUS ChargeCategory (default `Usage`) and ChargeClass (default null).
    pub charge_category: Option<String>,
    pub charge_class: Option<String>,
    /// FOCUS InvoiceIssuerName (default: the provider).
    pub invoice_issuer: Option<String>,
    pub namespace: String,
    pub pod: String,
    pub node: String,
    pub cluster: String,
    pub container: String,
    /// Split rows: the shared namespace (or `__idle__`) the cost came from.
    pub shared_from: String,
    /// Imported rows: provider, billing account and billing period, the
    /// unit a re-import replaces.
    pub import_key: String,
    /// Imported rows: the provider's `x_` columns as a JSON object.
    pub extra: String,
}

/// Everything cost-related a batch carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageRows {
    pub telemetry: Vec<TelemetryUsage>,
    pub llm: Vec<LlmUsageRow>,
    pub ledger: Vec<LedgerRow>,
}

impl UsageRows {
    pub fn is_empty(&self) -> bool {
        self.telemetry.is_empty() && self.llm.is_empty() && self.ledger.is_empty()
    }

    pub fn append(&mut self, mut other: UsageRows) {
        self.telemetry.append(&mut other.telemetry);
        self.llm.append(&mut other.llm);
        self.ledger.append(&mut other.ledger);
    }
}
