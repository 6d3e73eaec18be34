//! `GET /api/costs/export?month=YYYY-MM&format=focus`: the month's ledger
//! as a FOCUS 1.2 CSV file.
//!
//! Columns: the 21 mandatory FOCUS columns, the conditional ones costplane
//! has data for (consumed quantity, resources, SKUs and unit prices, pricing
//! category, charge frequency, sub-account = tenant, tags) and the
//! recommended ServiceSubcategory, then costplane's own columns, all
//! prefixed `x_` and listed after the FOCUS ones.
//!
//! Cells follow the spec's attributes: a null is an empty cell and only in a
//! nullable column (never `""`, `0` or a placeholder), date/times are UTC
//! `YYYY-MM-DDTHH:mm:ssZ`, charge periods are start-inclusive and
//! end-exclusive inside the billing period (the month), numbers are the
//! ledger's exact decimals, `Tags` is a flat JSON object. Text cells are
//! defused against spreadsheet formulas; numbers and dates never are, so a
//! FOCUS reader parses them as they are.
//!
//! Imported cloud rows (`x_Source = cloud`) export as they came: their own
//! cost columns, charge category, class and frequency, pricing category,
//! billing period, billing account, sub-account, invoice issuer, charge
//! description, SKU price, unit prices, region and commitment-discount
//! columns, kept at import (`x_Extra`); the rules below are for the rows
//! costplane prices itself.
//!
//! Rows no price covered (`x_PricingStatus = unpriced`) stay in the file:
//! FOCUS does not allow null costs, so their BilledCost, EffectiveCost,
//! ListCost and ContractedCost are 0 and `x_PricingStatus` says why. Their
//! ListUnitPrice, ContractedUnitPrice and SkuPriceId are null, as are those
//! of rows whose cost the span carried (`provided`): no unit price is known
//! for them. FOCUS 1.2 asks for these three on every usage row; this is the
//! export's one documented departure, and `PricingCategory` is "Other" on
//! those rows (the spec does not allow it null on usage).

use std::str::FromStr;

use axum::body::Body;
use chrono::{DateTime, Utc};
use costplane_store::ledger::table::{column_named, Cell};
use costplane_telemetry::usage::CostFilter;
use futures::StreamExt as _;
use rust_decimal::Decimal;
use serde_json::Value;

use super::params::{days, iso, ns};
use super::{money, Chunk, CostState};
use crate::auth::Caller;
use crate::config::BillingSection;
use crate::csv;

/// The FOCUS version the export follows.
pub const FOCUS_VERSION: &str = "1.2";

/// How a column's cells are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Decimal,
    DateTime,
    Text,
    Json,
}

/// The export's columns in order: FOCUS first, then costplane's `x_` ones.
pub const COLUMNS: [(&str, Kind); 57] = [
    ("ChargePeriodStart", Kind::DateTime),
    ("ChargePeriodEnd", Kind::DateTime),
    ("BilledCost", Kind::Decimal),
    ("EffectiveCost", Kind::Decimal),
    ("ListCost", Kind::Decimal),
    ("ContractedCost", Kind::Decimal),
    ("BillingCurrency", Kind::Text),
    ("BillingPeriodStart", Kind::DateTime),
    ("BillingPeriodEnd", Kind::DateTime),
    ("BillingAccountId", Kind::Text),
    ("BillingAccountName", Kind::Text),
    ("SubAccountId", Kind::Text),
    ("SubAccountName", Kind::Text),
    ("InvoiceIssuerName", Kind::Text),
    ("ProviderName", Kind::Text),
    ("PublisherName", Kind::Text),
    ("ChargeCategory", Kind::Text),
    ("ChargeClass", Kind::Text),
    ("ChargeDescription", Kind::Text),
    ("ChargeFrequency", Kind::Text),
    ("ServiceName", Kind::Text),
    ("ServiceCategory", Kind::Text),
    ("ServiceSubcategory", Kind::Text),
    ("ResourceId", Kind::Text),
    ("ResourceName", Kind::Text),
    ("ResourceType", Kind::Text),
    ("SkuId", Kind::Text),
    ("SkuPriceId", Kind::Text),
    ("PricingCategory", Kind::Text),
    ("ListUnitPrice", Kind::Decimal),
    ("ContractedUnitPrice", Kind::Decimal),
    ("PricingQuantity", Kind::Decimal),
    ("PricingUnit", Kind::Text),
    ("ConsumedQuantity", Kind::Decimal),
    ("ConsumedUnit", Kind::Text),
    ("RegionId", Kind::Text),
    ("RegionName", Kind::Text),
    ("CommitmentDiscountCategory", Kind::Text),
    ("CommitmentDiscountId", Kind::Text),
    ("CommitmentDiscountName", Kind::Text),
    ("CommitmentDiscountQuantity", Kind::Decimal),
    ("CommitmentDiscountStatus", Kind::Text),
    ("CommitmentDiscountType", Kind::Text),
    ("CommitmentDiscountUnit", Kind::Text),
    ("Tags", Kind::Json),
    ("x_Tenant", Kind::Text),
    ("x_Project", Kind::Text),
    ("x_Service", Kind::Text),
    ("x_Source", Kind::Text),
    ("x_Model", Kind::Text),
    ("x_Operation", Kind::Text),
    ("x_UsageType", Kind::Text),
    ("x_PricingStatus", Kind::Text),
    ("x_PriceVersion", Kind::Text),
    ("x_ChargeStatus", Kind::Text),
    ("x_AllocationRatio", Kind::Decimal),
    ("x_AllocationMethod", Kind::Text),
];

/// The ledger's `x_` columns the file leaves out: the revision (a store
/// detail), and the Kubernetes and import columns (their values are in
/// `Tags`, and an imported row's own columns are written back as they came).
/// Every other ledger column is in the file, the `x_` ones in the ledger's
/// order (a test holds [`COLUMNS`] to the ledger's description).
pub const NOT_EXPORTED: [&str; 9] =
    ["x_Revision", "x_Namespace", "x_Pod", "x_Node", "x_Cluster", "x_Container", "x_SharedFrom", "x_ImportKey", "x_Extra"];

/// FOCUS 1.2 ServiceCategory values.
pub const SERVICE_CATEGORIES: [&str; 19] = [
    "AI and Machine Learning",
    "Analytics",
    "Business Applications",
    "Compute",
    "Databases",
    "Developer Tools",
    "Multicloud",
    "Identity",
    "Integration",
    "Internet of Things",
    "Management and Governance",
    "Media",
    "Migration",
    "Mobile",
    "Networking",
    "Security",
    "Storage",
    "Web",
    "Other",
];

/// ProviderName and PublisherName cannot be null in FOCUS; an LLM call
/// whose provider no attribute named and no catalog entry matched gets this
/// value (its row is also `unpriced`).
pub const UNIDENTIFIED_PROVIDER: &str = "Unidentified provider";

/// What one export needs besides the ledger rows.
#[derive(Debug, Clone)]
pub struct Context {
    pub billing: BillingSection,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
}

/// The header line.
pub fn header() -> String {
    csv::line(&COLUMNS.map(|(name, _)| name.to_owned()))
}

/// The export, read and written a day at a time so memory stays bounded
/// however big the month.
pub fn stream(state: CostState, caller: Caller, ctx: Context) -> Body {
    let ranges = days(ctx.period_start, ctx.period_end);
    let head = futures::stream::once(async move { Ok::<String, crate::error::ApiError>(header()) });
    let rest = futures::stream::iter(ranges).then(move |(a, b)| {
        let (state, caller, ctx) = (state.clone(), caller.clone(), ctx.clone());
        async move { day(&state, &caller, &ctx, a, b).await }
    });
    Body::from_stream(head.chain(rest))
}

async fn day(state: &CostState, caller: &Caller, ctx: &Context, from: i64, to: i64) -> Chunk {
    let filter = CostFilter { from_ns: from, to_ns: to, tenant: caller.tenant().map(str::to_owned), equals: Vec::new() };
    let rows = state.ledger().rows(&filter).await?;
    let mut out = String::new();
    for r in &rows {
        out.push_str(&render(&row(&LedgerRow(r), ctx)));
    }
    Ok(out)
}

/// A typed ledger row read by column name through the ledger's description
/// (`costplane_store::ledger::table`): each cell as the row holds it, money
/// as its `Decimal`.
struct LedgerRow<'a>(&'a costplane_telemetry::usage::LedgerRow);

impl LedgerRow<'_> {
    fn cell(&self, name: &str) -> Cell<'_> {
        (column_named(name).unwrap_or_else(|| panic!("{name} is not a ledger column")).value)(self.0)
    }

    /// A text cell: null when the row holds none or an empty string
    /// (ClickHouse's non-nullable columns store a missing value as "").
    fn text(&self, name: &str) -> Option<String> {
        let text = match self.cell(name) {
            Cell::Text(t) => Some(t.to_owned()),
            Cell::NullableText(t) => t.map(str::to_owned),
            Cell::Money(d) => Some(d.to_string()),
            Cell::NullableMoney(d) => d.map(|d| d.to_string()),
            Cell::U64(n) => Some(n.to_string()),
            Cell::Time(t) => Some(t.to_string()),
        };
        text.filter(|s| !s.trim().is_empty())
    }

    /// A money or count cell; `None` only for a null one.
    fn decimal(&self, name: &str) -> Option<Decimal> {
        match self.cell(name) {
            Cell::Money(d) => Some(d),
            Cell::NullableMoney(d) => d,
            Cell::U64(n) => Some(Decimal::from(n)),
            other => panic!("{name} is a {:?} column, not a number", other.ty()),
        }
    }

    fn time(&self, name: &str) -> i64 {
        match self.cell(name) {
            Cell::Time(t) => t,
            other => panic!("{name} is a {:?} column, not a time", other.ty()),
        }
    }
}

/// A ledger row as FOCUS cells, aligned with [`COLUMNS`] (`None` = null).
fn row(r: &LedgerRow<'_>, ctx: &Context) -> Vec<Option<String>> {
    let status = r.text("x_PricingStatus");
    let priced = status.as_deref() == Some("priced");
    let source = r.text("x_Source").unwrap_or_default();
    let start = r.time("ChargePeriodStart");
    // The four costs are never null in a typed row (EffectiveCost and the
    // like fall back to BilledCost there), so no default is needed here.
    let cost = |name: &str| r.decimal(name).map(money);
    let category = r.text("ServiceCategory").filter(|c| SERVICE_CATEGORIES.contains(&c.as_str())).unwrap_or_else(|| "Other".to_owned());
    let unit_price = if priced { unit_price(r) } else { None };
    let sku = r.text("SkuId");
    let provider = |name: &str| r.text(name).filter(|p| !p.eq_ignore_ascii_case("unknown")).unwrap_or_else(|| UNIDENTIFIED_PROVIDER.into());
    // The ledger names LLM services after their provider ("OpenAI models",
    // "unknown models").
    let service = r.text("ServiceName").map(|s| {
        if source == "llm" && s.to_ascii_lowercase().starts_with("unknown ") {
            format!("{UNIDENTIFIED_PROVIDER} models")
        } else {
            s
        }
    });
    let resource = r.text("ResourceId");
    // What an imported row kept of its file, written back as it came.
    let kept = imported_columns(r, &source);
    let mut cells: Vec<Option<String>> = Vec::with_capacity(COLUMNS.len());
    for (name, _) in COLUMNS {
        if let Some(kept) = &kept {
            if let Some(cell) = imported_cell(r, kept, name) {
                cells.push(cell);
                continue;
            }
        }
        let cell = match name {
            "ChargePeriodStart" => Some(iso(start)),
            "ChargePeriodEnd" => Some(iso(r.time("ChargePeriodEnd"))),
            "BilledCost" | "EffectiveCost" | "ListCost" | "ContractedCost" => cost(name),
            "BillingCurrency" => r.text("BillingCurrency"),
            "BillingPeriodStart" => Some(iso(ns(ctx.period_start))),
            "BillingPeriodEnd" => Some(iso(ns(ctx.period_end))),
            "BillingAccountId" => Some(ctx.billing.account_id.clone()),
            "BillingAccountName" => Some(ctx.billing.account_name.clone()).filter(|s| !s.trim().is_empty()),
            // The tenant is the sub-account the platform bills.
            "SubAccountId" | "SubAccountName" => r.text("x_Tenant"),
            "InvoiceIssuerName" => Some(ctx.billing.invoice_issuer.clone()),
            "ProviderName" | "PublisherName" => Some(provider(name)),
            "ChargeCategory" => Some(r.text("ChargeCategory").unwrap_or_else(|| "Usage".into())),
            "ChargeClass" => r.text("ChargeClass"),
            "ChargeDescription" => Some(description(r, service.as_deref().unwrap_or_default(), &source)),
            "ChargeFrequency" => Some("Usage-Based".into()),
            "ServiceName" => service.clone(),
            "ServiceCategory" => Some(category.clone()),
            "ServiceSubcategory" => Some(subcategory(&category, &source)),
            "ResourceId" => resource.clone(),
            "ResourceName" => r.text("ResourceName"),
            // The resource is the OpenTelemetry service that sent the
            // telemetry or made the LLM calls.
            "ResourceType" => resource.as_ref().map(|_| "Service".to_owned()),
            "SkuId" => sku.clone(),
            // A price point is the SKU at the price version that priced it.
            "SkuPriceId" => match (&sku, r.text("x_PriceVersion")) {
                (Some(s), Some(v)) if priced => Some(format!("{s}@{v}")),
                _ => None,
            },
            "PricingCategory" => Some(if priced { "Standard" } else { "Other" }.to_owned()),
            // costplane prices at its catalog's (or the override file's)
            // rates: the list price is the contracted price.
            "ListUnitPrice" | "ContractedUnitPrice" => unit_price.map(money),
            "PricingQuantity" | "ConsumedQuantity" | "x_AllocationRatio" => r.decimal(name).map(money),
            "PricingUnit" | "ConsumedUnit" => r.text(name),
            // costplane's own charges have no region or commitment discount.
            "RegionId" | "RegionName" => None,
            n if n.starts_with("CommitmentDiscount") => None,
            "Tags" => r.text("Tags").and_then(|t| flat_tags(&t)),
            x => r.text(x),
        };
        cells.push(cell);
    }
    cells
}

/// The FOCUS columns an imported cloud row kept at import (`x_Extra`).
fn imported_columns(r: &LedgerRow<'_>, source: &str) -> Option<serde_json::Map<String, Value>> {
    if source != costplane_k8s::focus::SOURCE.as_str() {
        return None;
    }
    match serde_json::from_str(&r.text("x_Extra").unwrap_or_default()) {
        Ok(Value::Object(m)) => Some(m),
        _ => Some(serde_json::Map::new()),
    }
}

/// An imported row's cell for `name` as its bill gave it: `Some(cell)`
/// (possibly null) for the columns a bill decides, `None` for the columns
/// costplane writes the same way for every row.
fn imported_cell(r: &LedgerRow<'_>, kept: &serde_json::Map<String, Value>, name: &str) -> Option<Option<String>> {
    let kept_text = || kept.get(name).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).filter(|v| !v.trim().is_empty());
    match name {
        "InvoiceIssuerName" => Some(r.text("InvoiceIssuerName").or_else(|| r.text("ProviderName"))),
        "ChargeCategory" | "ChargeClass" | "ServiceName" | "ServiceCategory" | "ProviderName" | "PublisherName" | "SkuId"
        | "ResourceId" | "ResourceName" => Some(r.text(name)),
        // Not null in FOCUS 1.2: a file without one (FOCUS 1.0) gets the
        // "Other (<category>)" of its ServiceCategory, as costplane's rows do.
        "ServiceSubcategory" => kept_text().map(Some),
        n if costplane_k8s::focus::KEPT_COLUMNS.contains(&n) || n.starts_with("BillingPeriod") => Some(kept_text()),
        _ => None,
    }
}

/// The cells as a CSV line: empty for null, text defused, numbers and
/// date/times as they are.
fn render(cells: &[Option<String>]) -> String {
    let out: Vec<String> = COLUMNS
        .iter()
        .zip(cells)
        .map(|((_, kind), cell)| match (cell, kind) {
            (None, _) => String::new(),
            (Some(v), Kind::Decimal | Kind::DateTime) => csv::number(v),
            (Some(v), Kind::Text | Kind::Json) => csv::text(v),
        })
        .collect();
    csv::line(&out)
}

/// The price of one PricingUnit. Telemetry rows carry their rates in the
/// price version (`telemetry-rates:<per GiB>/<per 1000 queries>`); LLM rows
/// (an hour of one model's token kind at one status) divide their cost by
/// their quantity, which gives the catalog price unless tiers mixed within
/// the hour (then their average).
fn unit_price(r: &LedgerRow<'_>) -> Option<Decimal> {
    let quantity = r.decimal("PricingQuantity")?;
    let cost = r.decimal("ListCost")?;
    if let Some(rates) = r.text("x_PriceVersion").as_deref().and_then(|v| v.strip_prefix("telemetry-rates:")) {
        let (ingest, queries) = rates.split_once('/')?;
        let rate = if r.text("x_UsageType").as_deref() == Some("queries") { queries } else { ingest };
        if let Ok(rate) = Decimal::from_str(rate) {
            return Some(rate);
        }
    }
    if let Some(rate) = r.text("x_PriceVersion").as_deref().and_then(|v| v.strip_prefix("storage-rate:")) {
        if let Ok(rate) = Decimal::from_str(rate) {
            return Some(rate);
        }
    }
    if quantity.is_zero() {
        return None;
    }
    cost.checked_div(quantity).map(costplane_telemetry::usage::round_money)
}

fn description(r: &LedgerRow<'_>, service: &str, source: &str) -> String {
    let kind = r.text("x_UsageType");
    match source {
        "llm" => {
            let mut d = format!("{}: {}", service, r.text("x_Model").unwrap_or_else(|| "model not named".into()));
            if let Some(k) = kind {
                d.push_str(&format!(", {k} tokens"));
            }
            if let Some(op) = r.text("x_Operation") {
                d.push_str(&format!(" ({op})"));
            }
            d
        }
        _ => match kind {
            Some(k) => format!("{service}: {k}"),
            None => service.to_owned(),
        },
    }
}

/// FOCUS ServiceSubcategory, under the row's category. LLM calls are
/// "AI and Machine Learning" / "Generative AI". Telemetry ingest, storage
/// and queries are what an observability platform sells: FOCUS files
/// "Observability" (monitoring, logging and tracing) under "Management and
/// Governance", which is why the ledger puts telemetry there rather than in
/// "Storage" (the bytes are kept to be queried as traces, logs and metrics,
/// not sold as storage).
fn subcategory(category: &str, source: &str) -> String {
    match (category, source) {
        ("AI and Machine Learning", "llm") => "Generative AI".into(),
        ("Management and Governance", "telemetry") => "Observability".into(),
        (c, _) => format!("Other ({c})"),
    }
}

/// Tags as a flat JSON object: nested values become their JSON text, a
/// value-less key `true` is kept; anything that is not an object is dropped.
fn flat_tags(raw: &str) -> Option<String> {
    let Value::Object(map) = serde_json::from_str::<Value>(raw).ok()? else {
        return None;
    };
    if map.is_empty() {
        return None;
    }
    let flat: serde_json::Map<String, Value> = map
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Array(_) | Value::Object(_) => Value::String(v.to_string()),
                other => other,
            };
            (k, v)
        })
        .collect();
    Some(Value::Object(flat).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Context {
        let (period_start, period_end) = super::super::params::parse_month("2026-10").unwrap();
        Context { billing: BillingSection::default(), period_start, period_end }
    }

    fn ledger(overrides: &[(&str, Value)]) -> Vec<Value> {
        let hour = 1_791_280_800_000_000_000i64;
        costplane_store::ledger::table::names()
            .map(|c| {
                if let Some((_, v)) = overrides.iter().find(|(n, _)| *n == c) {
                    return v.clone();
                }
                match c {
                    "ChargePeriodStart" => json!(hour),
                    "ChargePeriodEnd" => json!(hour + 3_600_000_000_000),
                    "BilledCost" | "EffectiveCost" | "ListCost" | "ContractedCost" => json!("0.015000000000"),
                    "BillingCurrency" => json!("USD"),
                    "ChargeCategory" => json!("Usage"),
                    "ChargeClass" => Value::Null,
                    "ServiceName" => json!("OpenAI models"),
                    "ServiceCategory" => json!("AI and Machine Learning"),
                    "ProviderName" | "PublisherName" => json!("OpenAI"),
                    "ResourceId" => json!("acme/shop/checkout"),
                    "ResourceName" => json!("checkout"),
                    "ConsumedQuantity" => json!("6000"),
                    "ConsumedUnit" => json!("Tokens"),
                    "PricingQuantity" => json!("0.006000000000"),
                    "PricingUnit" => json!("1M Tokens"),
                    "SkuId" => json!("openai/gpt-4o/input"),
                    "Tags" => json!("{\"tenant\":\"acme\",\"project\":\"shop\",\"service\":\"checkout\"}"),
                    "x_Tenant" => json!("acme"),
                    "x_Project" => json!("shop"),
                    "x_Service" => json!("checkout"),
                    "x_Source" => json!("llm"),
                    "x_Model" => json!("gpt-4o"),
                    "x_Operation" => json!("chat"),
                    "x_UsageType" => json!("input"),
                    "x_PricingStatus" => json!("priced"),
                    "x_PriceVersion" => json!("2026-11-01"),
                    "x_ChargeStatus" => json!("closed"),
                    "x_AllocationRatio" => Value::Null,
                    "x_AllocationMethod" => json!(""),
                    "InvoiceIssuerName" => json!("OpenAI"),
                    "x_Revision" => json!(1),
                    "x_Namespace" | "x_Pod" | "x_Node" | "x_Cluster" | "x_Container" | "x_SharedFrom" | "x_ImportKey" | "x_Extra" => {
                        json!("")
                    }
                    other => panic!("no default for {other}"),
                }
            })
            .collect()
    }

    fn cells(overrides: &[(&str, Value)]) -> std::collections::HashMap<&'static str, Option<String>> {
        let typed = costplane_store::ledger::row_from_cells(&ledger(overrides)).expect("the cells make a ledger row");
        COLUMNS.iter().map(|(n, _)| *n).zip(row(&LedgerRow(&typed), &ctx())).collect()
    }

    #[test]
    fn columns_are_focus_first_then_custom_and_unique() {
        let names: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
        let first_custom = names.iter().position(|n| n.starts_with("x_")).unwrap();
        assert!(names[first_custom..].iter().all(|n| n.starts_with("x_")));
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        for mandatory in [
            "BilledCost",
            "BillingAccountId",
            "BillingAccountName",
            "BillingCurrency",
            "BillingPeriodEnd",
            "BillingPeriodStart",
            "ChargeCategory",
            "ChargeClass",
            "ChargeDescription",
            "ChargePeriodEnd",
            "ChargePeriodStart",
            "ContractedCost",
            "EffectiveCost",
            "InvoiceIssuerName",
            "ListCost",
            "PricingQuantity",
            "PricingUnit",
            "ProviderName",
            "PublisherName",
            "ServiceCategory",
            "ServiceName",
        ] {
            assert!(names.contains(&mandatory), "{mandatory}");
        }
    }

    #[test]
    fn the_files_ledger_columns_follow_the_ledgers_description() {
        use costplane_store::ledger::table::{column_named, names, LedgerType};
        // The x_ columns: the ledger's, in its order, but those left out.
        let exported: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).filter(|n| n.starts_with("x_")).collect();
        let described: Vec<&str> = names().filter(|n| n.starts_with("x_") && !NOT_EXPORTED.contains(n)).collect();
        assert_eq!(exported, described);
        assert!(NOT_EXPORTED.iter().all(|n| column_named(n).is_some()), "a column left out that the ledger does not have");
        // Every ledger column the file has is written as its type.
        for (name, kind) in COLUMNS {
            let Some(c) = column_named(name) else { continue };
            let expected: &[Kind] = match c.ty {
                LedgerType::Time => &[Kind::DateTime],
                LedgerType::Money | LedgerType::U64 => &[Kind::Decimal],
                LedgerType::Text => &[Kind::Text, Kind::Json],
            };
            assert!(expected.contains(&kind), "{name} is {kind:?} in the file, {:?} in the ledger", c.ty);
        }
    }

    #[test]
    fn an_imported_cloud_row_exports_as_it_came() {
        // A credit from an AWS bill: EffectiveCost apart from BilledCost,
        // its own category, frequency, pricing category, billing period,
        // issuer and commitment discount.
        let extra = json!({
            "BillingAccountId": "123456789012", "BillingPeriodStart": "2024-09-01T00:00:00Z",
            "BillingPeriodEnd": "2024-10-01T00:00:00Z", "SubAccountId": "210987654321", "ChargeFrequency": "One-Time",
            "PricingCategory": "Committed", "CommitmentDiscountId": "arn:aws:ec2:sp/abc", "ChargeDescription": "SP credit",
            "ListUnitPrice": "0.0416"
        });
        let c = cells(&[
            ("x_Source", json!("cloud")),
            ("BilledCost", json!("-1.25")),
            ("EffectiveCost", json!("-0.98")),
            ("ListCost", json!("-1.30")),
            ("ContractedCost", json!("-1.25")),
            ("ChargeCategory", json!("Credit")),
            ("InvoiceIssuerName", json!("Amazon Web Services, Inc.")),
            ("ProviderName", json!("AWS")),
            ("x_Extra", json!(extra.to_string())),
        ]);
        let get = |n: &str| c[n].as_deref();
        assert_eq!((get("BilledCost"), get("EffectiveCost"), get("ListCost")), (Some("-1.25"), Some("-0.98"), Some("-1.3")));
        assert_eq!(get("ChargeCategory"), Some("Credit"));
        assert_eq!(get("ChargeFrequency"), Some("One-Time"));
        assert_eq!(get("PricingCategory"), Some("Committed"));
        assert_eq!((get("BillingPeriodStart"), get("BillingPeriodEnd")), (Some("2024-09-01T00:00:00Z"), Some("2024-10-01T00:00:00Z")));
        assert_eq!((get("BillingAccountId"), get("SubAccountId")), (Some("123456789012"), Some("210987654321")));
        assert_eq!(get("InvoiceIssuerName"), Some("Amazon Web Services, Inc."));
        assert_eq!(get("CommitmentDiscountId"), Some("arn:aws:ec2:sp/abc"));
        assert_eq!(get("ChargeDescription"), Some("SP credit"));
        assert_eq!(get("ListUnitPrice"), Some("0.0416"));
        assert_eq!(get("RegionId"), None);
    }

    #[test]
    fn a_priced_llm_row() {
        let c = cells(&[]);
        let get = |n: &str| c[n].as_deref();
        assert_eq!(get("ChargePeriodStart"), Some("2026-10-06T10:00:00Z"));
        assert_eq!(get("ChargePeriodEnd"), Some("2026-10-06T11:00:00Z"));
        assert_eq!(get("BillingPeriodStart"), Some("2026-10-01T00:00:00Z"));
        assert_eq!(get("BillingPeriodEnd"), Some("2026-11-01T00:00:00Z"));
        assert_eq!(get("BilledCost"), Some("0.015"));
        assert_eq!(get("ListUnitPrice"), Some("2.5"));
        assert_eq!(get("ContractedUnitPrice"), Some("2.5"));
        assert_eq!(get("PricingQuantity"), Some("0.006"));
        assert_eq!(get("PricingCategory"), Some("Standard"));
        assert_eq!(get("SkuPriceId"), Some("openai/gpt-4o/input@2026-11-01"));
        assert_eq!(get("ChargeClass"), None);
        assert_eq!(get("ChargeFrequency"), Some("Usage-Based"));
        assert_eq!(get("ServiceSubcategory"), Some("Generative AI"));
        assert_eq!(get("SubAccountId"), Some("acme"));
        assert_eq!(get("BillingAccountId"), Some("costplane"));
        assert_eq!(get("InvoiceIssuerName"), Some("costplane"));
        assert_eq!(get("ChargeDescription"), Some("OpenAI models: gpt-4o, input tokens (chat)"));
    }

    #[test]
    fn unpriced_rows_keep_zero_costs_and_null_prices() {
        let c = cells(&[
            ("x_PricingStatus", json!("unpriced")),
            ("BilledCost", json!("0")),
            ("EffectiveCost", json!("0")),
            ("ListCost", json!("0")),
            ("ContractedCost", json!("0")),
            ("ProviderName", json!("unknown")),
            ("PublisherName", json!("")),
            ("ServiceName", json!("unknown models")),
            ("x_Operation", json!("")),
        ]);
        assert_eq!(c["BilledCost"].as_deref(), Some("0"));
        assert_eq!(c["ListUnitPrice"], None);
        assert_eq!(c["SkuPriceId"], None);
        assert_eq!(c["PricingCategory"].as_deref(), Some("Other"));
        assert_eq!(c["ProviderName"].as_deref(), Some(UNIDENTIFIED_PROVIDER));
        assert_eq!(c["PublisherName"].as_deref(), Some(UNIDENTIFIED_PROVIDER));
        assert_eq!(c["ServiceName"].as_deref(), Some("Unidentified provider models"));
        assert_eq!(c["x_Operation"], None, "an empty store string is a null, not \"\"");
        assert_eq!(c["x_PricingStatus"].as_deref(), Some("unpriced"));
    }

    #[test]
    fn telemetry_rows_take_their_rate_from_the_price_version() {
        let c = cells(&[
            ("x_Source", json!("telemetry")),
            ("ServiceName", json!("Telemetry ingest")),
            ("ServiceCategory", json!("Management and Governance")),
            ("x_Model", json!("")),
            ("x_UsageType", json!("traces")),
            ("x_PriceVersion", json!("telemetry-rates:0.5/2")),
            ("PricingQuantity", json!("0.000001149252")),
            ("ListCost", json!("0.000000574626")),
        ]);
        assert_eq!(c["ListUnitPrice"].as_deref(), Some("0.5"));
        assert_eq!(c["ServiceSubcategory"].as_deref(), Some("Observability"));
        assert_eq!(c["ChargeDescription"].as_deref(), Some("Telemetry ingest: traces"));
        assert_eq!(c["x_Model"], None);
    }

    #[test]
    fn cells_render_text_defused_and_numbers_plain() {
        let overrides = [("x_Tenant", json!("=cmd")), ("BilledCost", json!("-0.5"))];
        let c = cells(&overrides);
        let typed = costplane_store::ledger::row_from_cells(&ledger(&overrides)).unwrap();
        let line = render(&row(&LedgerRow(&typed), &ctx()));
        assert_eq!(c["BilledCost"].as_deref(), Some("-0.5"));
        assert!(line.starts_with("2026-10-06T10:00:00Z,2026-10-06T11:00:00Z,-0.5,"), "{line}");
        assert!(line.contains(",'=cmd,"), "{line}");
    }

    #[test]
    fn tags_are_flattened() {
        assert_eq!(
            flat_tags("{\"a\":{\"b\":1},\"c\":[1],\"d\":true}").as_deref(),
            Some("{\"a\":\"{\\\"b\\\":1}\",\"c\":\"[1]\",\"d\":true}")
        );
        assert_eq!(flat_tags("{}"), None);
        assert_eq!(flat_tags("not json"), None);
    }
}
