//! The reconciliation's reads of the ledger (`costplane-server`'s
//! `reconcile.rs`, `costplane-invoice`): the LLM estimates, the imported
//! invoice lines and the AI lines of imported FOCUS bills of a window,
//! summed by the store per UTC day and per what tells a line's provider
//! and model apart. Nothing reads the rows themselves: each answer has one
//! row per group, so a month of hourly rows costs what its groups cost.
//!
//! - Estimates ([`estimate_groups`]): `x_Source = llm`, grouped by the
//!   span's provider (the SkuId's first part, `provider/model/kind`), the
//!   ProviderName, the model, the day, the unit and the pricing status (so
//!   tokens and unpriced tokens are told apart).
//! - Invoice lines ([`invoice_groups`]): `x_Source = invoice`, grouped by
//!   the import key (its first part is the provider), the model, the token
//!   kind, the unit, the currency and the day.
//! - FOCUS bill lines ([`bill_groups`]): `x_Source = cloud` rows of the AI
//!   services only (ServiceName, or Azure's meter subcategory kept in
//!   `x_Extra`, names Bedrock, OpenAI, Foundry, Vertex or the Gemini API: a
//!   superset that `costplane_invoice::focus_ai` narrows), grouped by
//!   ServiceName, SkuId, the kept columns (`x_Extra`, which name the model:
//!   usage type, meter name, ChargeDescription, SkuPriceDetails), the
//!   unit, the currency and the day.
//!
//! Every read keeps the current revision of each (hour, scope) only, as
//! every ledger read does, and a tenant sees its own rows only. Sums are
//! the stores' exact decimal sums.

use costplane_ledger::Source;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::ledger::{decimal, int_cell, text, uint_cell, Ledger, LEDGER_TABLE};
use crate::{Dialect, Param, Params, StoreError};

/// What a group sums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sums {
    /// Σ BilledCost.
    pub cost: Decimal,
    /// Σ ConsumedQuantity (`None`: no row recorded one).
    pub quantity: Option<Decimal>,
    /// How many ledger rows the group holds.
    pub rows: u64,
}

/// LLM estimates of one span provider, model, day, unit and pricing status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EstimateGroup {
    /// The span's provider: the SkuId's part before its first `/`.
    pub span_provider: String,
    pub provider_name: String,
    pub model: String,
    pub day_ns: i64,
    pub unit: String,
    pub pricing_status: String,
    pub sums: Sums,
}

/// Imported invoice lines of one import key, model, token kind, unit,
/// currency and day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceGroup {
    pub import_key: String,
    pub model: String,
    pub usage_type: String,
    pub unit: String,
    pub currency: String,
    pub day_ns: i64,
    pub sums: Sums,
}

/// AI lines of imported FOCUS bills of one service, SKU, kept columns,
/// unit, currency and day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillGroup {
    pub service_name: String,
    pub sku_id: String,
    /// The row's `x_Extra` (a JSON object of the kept FOCUS and provider columns).
    pub extra: String,
    pub unit: String,
    pub currency: String,
    pub day_ns: i64,
    pub sums: Sums,
}

/// ServiceName fragments (lower case) of the AI services whose bill lines
/// are read: the same services `costplane_invoice::focus_ai::provider_of`
/// knows.
const AI_SERVICES: [&str; 6] = ["%bedrock%", "%openai%", "%foundry%", "%vertex%", "%gemini api%", "%generative language%"];

/// The part of `SkuId` before its first `/`.
fn sku_head(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::DuckDb => "split_part(SkuId, '/', 1)",
        Dialect::ClickHouse => "splitByChar('/', toString(SkuId))[1]",
    }
}

/// One answer row: the group's key cells, its day and its sums.
struct Row {
    keys: Vec<String>,
    day_ns: i64,
    sums: Sums,
}

/// `source`'s rows of `[from, to)` (charge period starts), current
/// revisions only, of `tenant` when given, that pass `filter`, summed per
/// `keys` (SQL expressions over ledger columns) and day.
async fn groups(
    ledger: &Ledger,
    source: Source,
    keys: &[&str],
    filter: &str,
    from: i64,
    to: i64,
    tenant: Option<&str>,
) -> Result<Vec<Row>, StoreError> {
    let dialect = ledger.store().dialect();
    let mut p = Params::new(dialect);
    let start = dialect.ns("ChargePeriodStart");
    let (a, b) = (p.add(Param::Int(from)), p.add(Param::Int(to)));
    let mut w = format!("{start} >= {a} AND {start} < {b} AND x_Source = {}", p.add(Param::Str(source.as_str().to_owned())));
    if let Some(t) = tenant {
        w.push_str(&format!(" AND x_Tenant = {}", p.add(Param::Str(t.to_owned()))));
    }
    if !filter.is_empty() {
        w.push_str(&format!(" AND ({filter})"));
    }
    let visible = ledger.visible(&mut p, from, to);
    w.push_str(&format!(" AND {visible}"));
    let mut select: Vec<String> = keys.iter().enumerate().map(|(i, k)| format!("{k} AS g{i}")).collect();
    let mut group: Vec<String> = (0..keys.len()).map(|i| format!("g{i}")).collect();
    select.push(format!("{} AS g_day", dialect.trunc_ns("day", "ChargePeriodStart")));
    group.push("g_day".into());
    select.extend(["sum(BilledCost)", "sum(ConsumedQuantity)", "count(*)"].map(String::from));
    let sql = format!("SELECT {} FROM {LEDGER_TABLE} WHERE {w} GROUP BY {g} ORDER BY {g}", select.join(", "), g = group.join(", "));
    let answer = ledger.store().query_with(&sql, &p.values).await?;
    let n = keys.len();
    answer
        .rows
        .iter()
        .enumerate()
        .map(|(at, row)| {
            let cell = |i: usize| row.get(i).unwrap_or(&Value::Null);
            let bad = |i: usize, column: &'static str| StoreError::BadCell {
                table: LEDGER_TABLE,
                row: at,
                column,
                value: cell(i).to_string(),
                expected: "a decimal",
            };
            let cost = decimal(cell(n + 1)).ok_or_else(|| bad(n + 1, "sum(BilledCost)"))?;
            let quantity = match cell(n + 2) {
                Value::Null => None,
                v => Some(decimal(v).ok_or_else(|| bad(n + 2, "sum(ConsumedQuantity)"))?),
            };
            Ok(Row {
                keys: (0..n).map(|i| text(cell(i))).collect(),
                day_ns: int_cell(LEDGER_TABLE, cell(n), at, "day")?,
                sums: Sums { cost, quantity, rows: uint_cell(LEDGER_TABLE, cell(n + 3), at, "count(*)")? },
            })
        })
        .collect()
}

/// The LLM estimates of `[from, to)`, summed per span provider, model, day,
/// unit and pricing status.
pub async fn estimate_groups(ledger: &Ledger, from: i64, to: i64, tenant: Option<&str>) -> Result<Vec<EstimateGroup>, StoreError> {
    let dialect = ledger.store().dialect();
    let keys = [sku_head(dialect), "ProviderName", "x_Model", "ConsumedUnit", "x_PricingStatus"];
    let rows = groups(ledger, Source::Llm, &keys, "", from, to, tenant).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut k = r.keys.into_iter();
            let mut next = || k.next().unwrap_or_default();
            EstimateGroup {
                span_provider: next(),
                provider_name: next(),
                model: next(),
                unit: next(),
                pricing_status: next(),
                day_ns: r.day_ns,
                sums: r.sums,
            }
        })
        .collect())
}

/// The imported invoice lines of `[from, to)`, summed per import key,
/// model, token kind, unit, currency and day.
pub async fn invoice_groups(ledger: &Ledger, from: i64, to: i64, tenant: Option<&str>) -> Result<Vec<InvoiceGroup>, StoreError> {
    let keys = ["x_ImportKey", "x_Model", "x_UsageType", "ConsumedUnit", "BillingCurrency"];
    let rows = groups(ledger, Source::Invoice, &keys, "", from, to, tenant).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut k = r.keys.into_iter();
            let mut next = || k.next().unwrap_or_default();
            InvoiceGroup {
                import_key: next(),
                model: next(),
                usage_type: next(),
                unit: next(),
                currency: next(),
                day_ns: r.day_ns,
                sums: r.sums,
            }
        })
        .collect())
}

/// The AI lines of imported FOCUS bills of `[from, to)`, summed per
/// service, SKU, kept columns, unit, currency and day.
pub async fn bill_groups(ledger: &Ledger, from: i64, to: i64, tenant: Option<&str>) -> Result<Vec<BillGroup>, StoreError> {
    let mut filter: Vec<String> = AI_SERVICES.iter().map(|s| format!("lower(ServiceName) LIKE '{s}'")).collect();
    // Azure names its AI services in the meter subcategory too (kept in x_Extra).
    filter.push("lower(x_Extra) LIKE '%\"x_skumetersubcategory\":\"%openai%'".into());
    let keys = ["ServiceName", "SkuId", "x_Extra", "ConsumedUnit", "BillingCurrency"];
    let rows = groups(ledger, Source::Cloud, &keys, &filter.join(" OR "), from, to, tenant).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut k = r.keys.into_iter();
            let mut next = || k.next().unwrap_or_default();
            BillGroup {
                service_name: next(),
                sku_id: next(),
                extra: next(),
                unit: next(),
                currency: next(),
                day_ns: r.day_ns,
                sums: r.sums,
            }
        })
        .collect())
}
