//! One row of the cost ledger ([`LedgerRow`]), and the one way rows are
//! made ([`LedgerRow::builder`]): every source (LLM and telemetry pricing,
//! storage, Kubernetes allocation, imported bills and invoices) states what
//! it knows and the builder fills the rest with the same FOCUS defaults.
//! The writers (Arrow, RowBinary, the FOCUS export) read the cost columns
//! and the defaulted FOCUS columns through the row's methods, so a default
//! is decided here and nowhere else.

use rust_decimal::Decimal;

use crate::kinds::{ChargeClass, ChargeStatus, PricingStatus, Source, UsageType};

/// FOCUS `ChargeCategory` of a row that does not say otherwise: costplane
/// prices usage.
pub const DEFAULT_CHARGE_CATEGORY: &str = "Usage";

/// One row of the cost ledger, in FOCUS terms (plus `x_` columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    pub charge_period_start_ns: i64,
    pub charge_period_end_ns: i64,
    /// Billed = effective = list = contracted for costplane's own pricing.
    pub cost: Decimal,
    pub billing_currency: String,
    /// FOCUS ChargeClass: `None`, or `Correction` for a row that corrects
    /// an already exported period.
    pub charge_class: Option<ChargeClass>,
    /// FOCUS ServiceName: the offering billed (e.g. "OpenAI models", "Telemetry ingest").
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
    pub source: Source,
    pub model: String,
    pub operation: String,
    /// For telemetry rows: the signal (or `storage`); for LLM rows: the token kind.
    pub usage_type: UsageType,
    pub pricing_status: PricingStatus,
    pub price_version: String,
    /// Provisional while the hour is open, then closed.
    pub charge_status: ChargeStatus,
    /// The revision of the hour this row belongs to (set by the repository).
    pub revision: u64,
    /// A measured ratio the cost was apportioned with (storage: stored
    /// bytes per ingested byte; a tenant's share), when there is one.
    pub allocation_ratio: Option<Decimal>,
    /// How the cost was measured or apportioned, when not plain usage × price.
    pub allocation_method: String,
    /// Columns only Kubernetes and imported rows fill (`x_Namespace`, ...,
    /// FOCUS costs that differ from `cost`).
    pub ext: LedgerExt,
}

/// The ledger's Kubernetes and cloud-bill columns (schema version 5).
/// Default: a row of costplane's own pricing (every cost = `cost`,
/// `ChargeCategory` Usage, no Kubernetes identity).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerExt {
    /// FOCUS EffectiveCost / ListCost / ContractedCost when they differ from BilledCost.
    pub effective_cost: Option<Decimal>,
    pub list_cost: Option<Decimal>,
    pub contracted_cost: Option<Decimal>,
    /// FOCUS ChargeCategory (default [`DEFAULT_CHARGE_CATEGORY`]).
    pub charge_category: Option<String>,
    /// FOCUS InvoiceIssuerName (default: the provider).
    pub invoice_issuer: Option<String>,
    pub namespace: String,
    pub pod: String,
    pub node: String,
    pub cluster: String,
    pub container: String,
    /// Split rows: the shared namespace (or `__idle__`) the cost came from.
    pub shared_from: String,
    /// Imported rows: provider, billing account and billing period.
    pub import_key: String,
    /// Imported rows: the provider's `x_` columns as a JSON object.
    pub extra: String,
}

impl LedgerRow {
    /// Starts a row of `source` for the charge period `[start_ns, end_ns)`.
    pub fn builder(source: Source, start_ns: i64, end_ns: i64) -> LedgerRowBuilder {
        LedgerRowBuilder {
            row: LedgerRow {
                charge_period_start_ns: start_ns,
                charge_period_end_ns: end_ns,
                cost: Decimal::ZERO,
                billing_currency: String::new(),
                charge_class: None,
                service_name: String::new(),
                service_category: String::new(),
                provider_name: String::new(),
                publisher_name: String::new(),
                resource_id: String::new(),
                resource_name: String::new(),
                consumed_quantity: Decimal::ZERO,
                consumed_unit: String::new(),
                pricing_quantity: Decimal::ZERO,
                pricing_unit: String::new(),
                sku_id: String::new(),
                tags: String::new(),
                tenant: String::new(),
                project: String::new(),
                service: String::new(),
                source,
                model: String::new(),
                operation: String::new(),
                usage_type: UsageType::Other,
                pricing_status: PricingStatus::Priced,
                price_version: String::new(),
                charge_status: ChargeStatus::Closed,
                revision: 0,
                allocation_ratio: None,
                allocation_method: String::new(),
                ext: LedgerExt::default(),
            },
            pricing_set: false,
            publisher_set: false,
        }
    }

    /// A row of only the labels cost counters book under (source, usage
    /// type, service, tenant, project, provider, model, pricing status), at
    /// zero cost and quantity: what a replacement too large to hold is
    /// booked by, summed per label set (see [`LedgerRow::booked_labels`]).
    pub fn booking(r: &LedgerRow) -> LedgerRow {
        LedgerRow::booked_labels(
            r.source,
            r.usage_type.clone(),
            [&r.service, &r.tenant, &r.project, &r.provider_name, &r.model].map(|s| s.to_owned()),
            r.pricing_status,
        )
    }

    /// A booking row ([`LedgerRow::booking`]) from its labels:
    /// `[service, tenant, project, provider, model]`.
    pub fn booked_labels(source: Source, usage_type: UsageType, labels: [String; 5], pricing_status: PricingStatus) -> LedgerRow {
        let [service, tenant, project, provider_name, model] = labels;
        let mut row = LedgerRow::builder(source, 0, 0).build();
        row.usage_type = usage_type;
        row.pricing_status = pricing_status;
        (row.service, row.tenant, row.project, row.provider_name, row.model) = (service, tenant, project, provider_name, model);
        row
    }

    /// The row's identity within its hour, for diffs between revisions.
    pub fn key(&self) -> String {
        [
            self.source.as_str(),
            &self.tenant,
            &self.project,
            &self.service,
            &self.model,
            &self.operation,
            self.usage_type.as_str(),
            &self.sku_id,
            self.pricing_status.as_str(),
            &self.tags,
        ]
        .join("\u{1f}")
    }

    /// FOCUS EffectiveCost: the bill's own when it differs, else the cost.
    pub fn effective_cost(&self) -> Decimal {
        self.ext.effective_cost.unwrap_or(self.cost)
    }

    /// FOCUS ListCost: the bill's own when it differs, else the cost.
    pub fn list_cost(&self) -> Decimal {
        self.ext.list_cost.unwrap_or(self.cost)
    }

    /// FOCUS ContractedCost: the bill's own when it differs, else the cost.
    pub fn contracted_cost(&self) -> Decimal {
        self.ext.contracted_cost.unwrap_or(self.cost)
    }

    /// FOCUS ChargeCategory: the bill's own, else [`DEFAULT_CHARGE_CATEGORY`].
    pub fn charge_category(&self) -> &str {
        self.ext.charge_category.as_deref().unwrap_or(DEFAULT_CHARGE_CATEGORY)
    }

    /// FOCUS InvoiceIssuerName: the bill's own, else the provider.
    pub fn invoice_issuer(&self) -> &str {
        self.ext.invoice_issuer.as_deref().unwrap_or(&self.provider_name)
    }
}

/// A [`LedgerRow`] being made. What is not set keeps the FOCUS defaults:
/// no charge class, `PricingQuantity`/`PricingUnit` equal to the consumed
/// ones, publisher = provider, `priced`, `closed`, revision 0 (the
/// repository sets it), no allocation, no Kubernetes or import columns.
#[derive(Debug, Clone)]
#[must_use = "a row is made by `build`"]
pub struct LedgerRowBuilder {
    row: LedgerRow,
    pricing_set: bool,
    publisher_set: bool,
}

impl LedgerRowBuilder {
    /// BilledCost (and, unless [`LedgerRowBuilder::ext`] says otherwise,
    /// every other cost) in `currency`.
    pub fn cost(mut self, cost: Decimal, currency: impl Into<String>) -> Self {
        self.row.cost = cost;
        self.row.billing_currency = currency.into();
        self
    }

    /// FOCUS ServiceName and ServiceCategory.
    pub fn service(mut self, name: impl Into<String>, category: impl Into<String>) -> Self {
        self.row.service_name = name.into();
        self.row.service_category = category.into();
        self
    }

    /// FOCUS ProviderName (and PublisherName, unless set apart).
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.row.provider_name = provider.into();
        self
    }

    /// FOCUS PublisherName when it is not the provider.
    pub fn publisher(mut self, publisher: impl Into<String>) -> Self {
        self.row.publisher_name = publisher.into();
        self.publisher_set = true;
        self
    }

    /// FOCUS ResourceId and ResourceName.
    pub fn resource(mut self, id: impl Into<String>, name: impl Into<String>) -> Self {
        self.row.resource_id = id.into();
        self.row.resource_name = name.into();
        self
    }

    /// FOCUS ConsumedQuantity and ConsumedUnit (also the pricing ones,
    /// unless set apart).
    pub fn consumed(mut self, quantity: Decimal, unit: impl Into<String>) -> Self {
        self.row.consumed_quantity = quantity;
        self.row.consumed_unit = unit.into();
        self
    }

    /// FOCUS PricingQuantity and PricingUnit when they are not the consumed ones.
    pub fn pricing(mut self, quantity: Decimal, unit: impl Into<String>) -> Self {
        self.row.pricing_quantity = quantity;
        self.row.pricing_unit = unit.into();
        self.pricing_set = true;
        self
    }

    pub fn sku(mut self, sku: impl Into<String>) -> Self {
        self.row.sku_id = sku.into();
        self
    }

    /// FOCUS Tags, a JSON object.
    pub fn tags(mut self, tags: impl Into<String>) -> Self {
        self.row.tags = tags.into();
        self
    }

    /// Who the cost is charged to: `x_Tenant`, `x_Project`, `x_Service`.
    pub fn owner(mut self, tenant: impl Into<String>, project: impl Into<String>, service: impl Into<String>) -> Self {
        self.row.tenant = tenant.into();
        self.row.project = project.into();
        self.row.service = service.into();
        self
    }

    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.row.model = model.into();
        self
    }

    pub fn operation(mut self, operation: impl Into<String>) -> Self {
        self.row.operation = operation.into();
        self
    }

    pub fn usage_type(mut self, usage_type: UsageType) -> Self {
        self.row.usage_type = usage_type;
        self
    }

    /// How the cost was obtained, and the prices' version.
    pub fn priced(mut self, status: PricingStatus, price_version: impl Into<String>) -> Self {
        self.row.pricing_status = status;
        self.row.price_version = price_version.into();
        self
    }

    pub fn charge_status(mut self, status: ChargeStatus) -> Self {
        self.row.charge_status = status;
        self
    }

    pub fn charge_class(mut self, class: Option<ChargeClass>) -> Self {
        self.row.charge_class = class;
        self
    }

    /// `x_AllocationRatio` and `x_AllocationMethod` of an apportioned cost.
    pub fn allocation(mut self, ratio: Option<Decimal>, method: impl Into<String>) -> Self {
        self.row.allocation_ratio = ratio;
        self.row.allocation_method = method.into();
        self
    }

    /// The Kubernetes and imported-bill columns.
    pub fn ext(mut self, ext: LedgerExt) -> Self {
        self.row.ext = ext;
        self
    }

    /// The row, with the defaults filled.
    pub fn build(mut self) -> LedgerRow {
        if !self.pricing_set {
            self.row.pricing_quantity = self.row.consumed_quantity;
            self.row.pricing_unit = self.row.consumed_unit.clone();
        }
        if !self.publisher_set {
            self.row.publisher_name = self.row.provider_name.clone();
        }
        self.row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_fills_focus_defaults_once() {
        let r = LedgerRow::builder(Source::Invoice, 0, 10)
            .cost(Decimal::new(125, 2), "USD")
            .provider("OpenAI")
            .consumed(Decimal::from(2000), "Tokens")
            .usage_type(UsageType::Input)
            .build();
        // Pricing follows consumption, the publisher the provider, and the
        // other costs the billed one, when nothing else was said.
        assert_eq!((r.pricing_quantity, r.pricing_unit.as_str()), (Decimal::from(2000), "Tokens"));
        assert_eq!(r.publisher_name, "OpenAI");
        assert_eq!((r.effective_cost(), r.list_cost(), r.contracted_cost()), (r.cost, r.cost, r.cost));
        assert_eq!((r.charge_category(), r.invoice_issuer()), ("Usage", "OpenAI"));
        assert_eq!((r.pricing_status, r.charge_status, r.charge_class, r.revision), (PricingStatus::Priced, ChargeStatus::Closed, None, 0));

        let apart = LedgerRow::builder(Source::Llm, 0, 10)
            .provider("OpenAI")
            .publisher("Azure")
            .consumed(Decimal::from(2000), "Tokens")
            .pricing(Decimal::new(2, 3), "1M Tokens")
            .ext(LedgerExt { list_cost: Some(Decimal::ONE), ..LedgerExt::default() })
            .build();
        assert_eq!((apart.publisher_name.as_str(), apart.pricing_unit.as_str()), ("Azure", "1M Tokens"));
        assert_eq!((apart.list_cost(), apart.effective_cost()), (Decimal::ONE, Decimal::ZERO));
    }
}
