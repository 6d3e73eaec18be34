//! The `costplane_ledger` table, described once.
//!
//! Rule: the ledger's columns (names, order, one logical type each, whether
//! NULL is allowed, ClickHouse's `LowCardinality`, the schema version that
//! added them) and the value each takes from a [`LedgerRow`] are written
//! here and nowhere else. Derived from it:
//! - the DuckDB `CREATE TABLE` and the version-5 `ALTER TABLE ... ADD
//!   COLUMN`s (`duckdb/schema.rs`);
//! - the ClickHouse column definitions and the version-5 upgrade
//!   (`clickhouse/schema.rs`);
//! - the Arrow record batch the DuckDB writer appends (`duckdb/arrow.rs`);
//! - the RowBinary encoder and its INSERT column list
//!   (`clickhouse/rowbinary.rs`);
//! - the columns [`super::Ledger::rows`] selects and reads back by name.
//!
//! The FOCUS export (`costplane-server`, `costs/focus.rs`) reads the cells
//! through [`LedgerColumn::value`] too; its own file layout (FOCUS columns
//! first, then the `x_` ones in this order) is held to this description by
//! a test there.
//!
//! Existing stores keep opening: the generated DDL is the text the
//! migrations always ran (tests below compare it with a fresh store's
//! columns), and a column is only ever added at the end, under a new
//! schema version with its own step.

use costplane_ledger::LedgerRow;
use rust_decimal::Decimal;

/// One column's logical type; each store spells it its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerType {
    /// Nanoseconds since the epoch (`TIMESTAMP_NS`, `DateTime64(9)`).
    Time,
    /// Money and quantities: `DECIMAL(38, 12)` on both stores.
    Money,
    Text,
    U64,
}

/// One cell of a row, as the writers take it: a nullable column's cells
/// are the `Nullable` variants, every other column's always hold a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<'a> {
    Time(i64),
    Money(Decimal),
    NullableMoney(Option<Decimal>),
    Text(&'a str),
    NullableText(Option<&'a str>),
    U64(u64),
}

impl Cell<'_> {
    /// The logical type of the cell.
    pub fn ty(&self) -> LedgerType {
        match self {
            Cell::Time(_) => LedgerType::Time,
            Cell::Money(_) | Cell::NullableMoney(_) => LedgerType::Money,
            Cell::Text(_) | Cell::NullableText(_) => LedgerType::Text,
            Cell::U64(_) => LedgerType::U64,
        }
    }

    /// Whether the cell is of a nullable column.
    pub fn nullable(&self) -> bool {
        matches!(self, Cell::NullableMoney(_) | Cell::NullableText(_))
    }
}

/// One column of `costplane_ledger`.
#[derive(Clone, Copy)]
pub struct LedgerColumn {
    pub name: &'static str,
    pub ty: LedgerType,
    /// NULL allowed (ClickHouse `Nullable(...)`); every other column always
    /// holds a value.
    pub nullable: bool,
    /// ClickHouse keeps it as `LowCardinality(String)`.
    pub low_cardinality: bool,
    /// The schema version that added it: 2 and 3 are in the table's
    /// `CREATE`, later ones are added to existing tables by their step.
    pub since: u32,
    /// The column's cell of a row.
    pub value: for<'a> fn(&'a LedgerRow) -> Cell<'a>,
}

impl std::fmt::Debug for LedgerColumn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerColumn").field("name", &self.name).field("ty", &self.ty).finish_non_exhaustive()
    }
}

impl LedgerColumn {
    /// The DuckDB type.
    pub fn duckdb_type(&self) -> &'static str {
        match self.ty {
            LedgerType::Time => "TIMESTAMP_NS",
            LedgerType::Money => "DECIMAL(38, 12)",
            LedgerType::Text => "VARCHAR",
            LedgerType::U64 => "UBIGINT",
        }
    }

    /// The ClickHouse type.
    pub fn clickhouse_type(&self) -> String {
        let base = match self.ty {
            LedgerType::Time => "DateTime64(9)",
            LedgerType::Money => "Decimal(38, 12)",
            LedgerType::Text if self.low_cardinality => "LowCardinality(String)",
            LedgerType::Text => "String",
            LedgerType::U64 => "UInt64",
        };
        if self.nullable {
            format!("Nullable({base})")
        } else {
            base.to_owned()
        }
    }
}

/// The schema version whose step added the Kubernetes and cloud-bill columns.
pub const KUBERNETES_VERSION: u32 = 5;

const fn column(
    name: &'static str,
    ty: LedgerType,
    low_cardinality: bool,
    since: u32,
    value: for<'a> fn(&'a LedgerRow) -> Cell<'a>,
) -> LedgerColumn {
    LedgerColumn { name, ty, nullable: false, low_cardinality, since, value }
}

const fn nullable(mut c: LedgerColumn) -> LedgerColumn {
    c.nullable = true;
    c
}

use LedgerType::{Money, Text, Time, U64};

// (name, type, LowCardinality, since, value): the table's order.
/// The columns of `costplane_ledger`, in the table's order.
pub static COLUMNS: [LedgerColumn; 43] = [
    column("ChargePeriodStart", Time, false, 2, |r| Cell::Time(r.charge_period_start_ns)),
    column("ChargePeriodEnd", Time, false, 2, |r| Cell::Time(r.charge_period_end_ns)),
    column("BilledCost", Money, false, 2, |r| Cell::Money(r.cost)),
    column("EffectiveCost", Money, false, 2, |r| Cell::Money(r.effective_cost())),
    column("ListCost", Money, false, 2, |r| Cell::Money(r.list_cost())),
    column("ContractedCost", Money, false, 2, |r| Cell::Money(r.contracted_cost())),
    column("BillingCurrency", Text, true, 2, |r| Cell::Text(&r.billing_currency)),
    column("ChargeCategory", Text, true, 2, |r| Cell::Text(r.charge_category())),
    nullable(column("ChargeClass", Text, false, 2, |r| Cell::NullableText(r.charge_class.map(|c| c.as_str())))),
    column("ServiceName", Text, true, 2, |r| Cell::Text(&r.service_name)),
    column("ServiceCategory", Text, true, 2, |r| Cell::Text(&r.service_category)),
    column("ProviderName", Text, true, 2, |r| Cell::Text(&r.provider_name)),
    column("PublisherName", Text, true, 2, |r| Cell::Text(&r.publisher_name)),
    column("InvoiceIssuerName", Text, true, 2, |r| Cell::Text(r.invoice_issuer())),
    column("ResourceId", Text, false, 2, |r| Cell::Text(&r.resource_id)),
    column("ResourceName", Text, false, 2, |r| Cell::Text(&r.resource_name)),
    column("ConsumedQuantity", Money, false, 2, |r| Cell::Money(r.consumed_quantity)),
    column("ConsumedUnit", Text, true, 2, |r| Cell::Text(&r.consumed_unit)),
    column("PricingQuantity", Money, false, 2, |r| Cell::Money(r.pricing_quantity)),
    column("PricingUnit", Text, true, 2, |r| Cell::Text(&r.pricing_unit)),
    column("SkuId", Text, false, 2, |r| Cell::Text(&r.sku_id)),
    column("Tags", Text, false, 2, |r| Cell::Text(&r.tags)),
    column("x_Tenant", Text, true, 2, |r| Cell::Text(&r.tenant)),
    column("x_Project", Text, true, 2, |r| Cell::Text(&r.project)),
    column("x_Service", Text, true, 2, |r| Cell::Text(&r.service)),
    column("x_Source", Text, true, 2, |r| Cell::Text(r.source.as_str())),
    column("x_Model", Text, true, 2, |r| Cell::Text(&r.model)),
    column("x_Operation", Text, true, 2, |r| Cell::Text(&r.operation)),
    column("x_UsageType", Text, true, 2, |r| Cell::Text(r.usage_type.as_str())),
    column("x_PricingStatus", Text, true, 2, |r| Cell::Text(r.pricing_status.as_str())),
    column("x_PriceVersion", Text, true, 2, |r| Cell::Text(&r.price_version)),
    column("x_ChargeStatus", Text, true, 3, |r| Cell::Text(r.charge_status.as_str())),
    column("x_Revision", U64, false, 3, |r| Cell::U64(r.revision)),
    nullable(column("x_AllocationRatio", Money, false, 3, |r| Cell::NullableMoney(r.allocation_ratio))),
    column("x_AllocationMethod", Text, true, 3, |r| Cell::Text(&r.allocation_method)),
    column("x_Namespace", Text, true, 5, |r| Cell::Text(&r.ext.namespace)),
    column("x_Pod", Text, false, 5, |r| Cell::Text(&r.ext.pod)),
    column("x_Node", Text, true, 5, |r| Cell::Text(&r.ext.node)),
    column("x_Cluster", Text, true, 5, |r| Cell::Text(&r.ext.cluster)),
    column("x_Container", Text, true, 5, |r| Cell::Text(&r.ext.container)),
    column("x_SharedFrom", Text, true, 5, |r| Cell::Text(&r.ext.shared_from)),
    column("x_ImportKey", Text, true, 5, |r| Cell::Text(&r.ext.import_key)),
    column("x_Extra", Text, false, 5, |r| Cell::Text(&r.ext.extra)),
];

/// The column called `name`.
pub fn column_named(name: &str) -> Option<&'static LedgerColumn> {
    COLUMNS.iter().find(|c| c.name == name)
}

/// The column names, in order: the INSERT list and the read list.
pub fn names() -> impl Iterator<Item = &'static str> {
    COLUMNS.iter().map(|c| c.name)
}

/// The DuckDB `CREATE TABLE` of the columns schema versions 2 and 3 made.
pub fn duckdb_create() -> String {
    let columns: Vec<String> =
        COLUMNS.iter().filter(|c| c.since < KUBERNETES_VERSION).map(|c| format!("    \"{}\" {}", c.name, c.duckdb_type())).collect();
    format!("CREATE TABLE IF NOT EXISTS costplane_ledger (\n{}\n);\n", columns.join(",\n"))
}

/// The DuckDB statements of schema version `version`'s new columns (rows
/// from before read '' in them).
pub fn duckdb_added(version: u32) -> String {
    COLUMNS
        .iter()
        .filter(|c| c.since == version)
        .map(|c| format!("ALTER TABLE costplane_ledger ADD COLUMN IF NOT EXISTS \"{}\" {} DEFAULT '';\n", c.name, c.duckdb_type()))
        .collect()
}

/// The ClickHouse column definitions (what `CREATE TABLE (...)` lists).
pub fn clickhouse_columns() -> String {
    COLUMNS.iter().map(|c| format!("    {} {}", c.name, c.clickhouse_type())).collect::<Vec<_>>().join(",\n")
}

/// Names of the columns schema version `version` added.
pub fn added_in(version: u32) -> impl Iterator<Item = &'static str> {
    COLUMNS.iter().filter(move |c| c.since == version).map(|c| c.name)
}

#[cfg(test)]
mod tests {
    use costplane_ledger::{ChargeClass, LedgerExt, Source};

    use super::*;

    fn sample() -> LedgerRow {
        LedgerRow::builder(Source::Cloud, 1, 2)
            .cost(Decimal::ONE, "USD")
            .charge_class(Some(ChargeClass::Correction))
            .allocation(Some(Decimal::TWO), "m")
            .ext(LedgerExt { effective_cost: Some(Decimal::TEN), ..LedgerExt::default() })
            .build()
    }

    #[test]
    fn every_cell_has_its_column_type_and_nulls_only_where_allowed() {
        let r = sample();
        let mut bare = r.clone();
        bare.charge_class = None;
        bare.allocation_ratio = None;
        for row in [&r, &bare] {
            for c in &COLUMNS {
                let cell = (c.value)(row);
                assert_eq!((cell.ty(), cell.nullable()), (c.ty, c.nullable), "{}", c.name);
            }
        }
        assert_eq!((column_named("EffectiveCost").unwrap().value)(&r), Cell::Money(Decimal::TEN));
        assert_eq!((column_named("ChargeClass").unwrap().value)(&r), Cell::NullableText(Some("Correction")));
        assert_eq!((column_named("x_AllocationRatio").unwrap().value)(&bare), Cell::NullableMoney(None));
    }

    #[test]
    fn names_are_unique_and_columns_only_ever_added_at_the_end() {
        let mut names: Vec<&str> = names().collect();
        assert!(COLUMNS.windows(2).all(|w| w[0].since <= w[1].since), "a later version's column before an earlier one's");
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COLUMNS.len());
        assert_eq!(
            added_in(KUBERNETES_VERSION).collect::<Vec<_>>(),
            ["x_Namespace", "x_Pod", "x_Node", "x_Cluster", "x_Container", "x_SharedFrom", "x_ImportKey", "x_Extra"]
        );
    }

    /// A fresh DuckDB store's table is the description, column for column
    /// (the writer appends Arrow batches by position).
    #[tokio::test]
    async fn a_fresh_duckdb_store_has_the_described_columns_in_order() {
        use crate::Store;
        let dir = tempfile::tempdir().unwrap();
        let store = crate::duckdb::DuckDbStore::open(dir.path()).unwrap();
        let found = store
            .query(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'costplane_ledger' \
                 ORDER BY ordinal_position",
            )
            .await
            .unwrap();
        let found: Vec<(String, String)> =
            found.rows.iter().map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_str().unwrap().replace(' ', ""))).collect();
        let described: Vec<(String, String)> = COLUMNS.iter().map(|c| (c.name.to_owned(), c.duckdb_type().replace(' ', ""))).collect();
        assert_eq!(found, described);
        // What the writer appends has the same names in the same order.
        let appended = crate::duckdb::arrow::ledger(&[sample()]).unwrap();
        let appended: Vec<&str> = appended.schema_ref().fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>();
        assert_eq!(appended, names().collect::<Vec<_>>());
    }
}
