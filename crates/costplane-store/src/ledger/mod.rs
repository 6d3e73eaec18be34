//! The ledger repository: every SQL statement that reads or replaces the
//! cost ledger and its usage, beside the schema, for both backends. HTTP
//! handlers, `/metrics`, the closer and repricing call these typed
//! methods; none of them writes ledger SQL.
//!
//! # Revisions: readers see exactly one version of an hour
//! Ledger rows are never updated in place. Each (hour, scope) of the ledger
//! (scopes: `llm`, `telemetry`, `storage`, and later sources of their own)
//! has revisions; `costplane_ledger_hours` lists them and the **largest
//! revision is the current one**. Every read keeps only rows whose
//! `x_Revision` is current ([`Ledger::visible`]). A replacement
//! ([`Store::replace_ledger`]) writes the new rows under fresh revision
//! numbers, *then* the revision entries (the switch), *then* retires the
//! superseded rows and entries:
//! - DuckDB: all three in one transaction.
//! - ClickHouse: the rows (invisible: no entry names their revision yet),
//!   then one INSERT of every entry (one part: the revision table is not
//!   partitioned), then lightweight DELETEs. Killed before the switch, the
//!   new rows stay invisible orphans and the next replacement of that
//!   window deletes them; killed after it, the old rows are invisible and
//!   deleted by the next replacement. Readers never see two revisions of
//!   an hour, nor none.
//!
//! Only one process may replace ledger rows of a store at a time (the
//! server's closer holds a lock that repricing takes too).
//!
//! # Staged revisions: an import larger than memory
//! A bill of millions of rows is written in chunks
//! ([`Store::stage_ledger_rows`]) under revisions no entry lists yet, then
//! switched to in one replacement of its hours alone. Until then its
//! revisions are registered in this process ([`Staging`]): retirement
//! spares them, so the closer's replacements of overlapping hours do not
//! delete an import half written. An import that fails deletes its rows
//! ([`Store::discard_ledger_revisions`]); one killed leaves invisible
//! orphans that the next replacement of their window deletes.
//!
//! # Adding a source (Kubernetes, cloud bills, ...)
//! A source gets a scope of its own (a name in `costplane_ledger_hours`),
//! so its revisions never touch other sources' rows:
//! - usage it meters (e.g. core-seconds per hour) goes in a usage table of
//!   its own, counted per hour in [`Ledger::usage_counts`] and read back in
//!   [`Ledger::usage_of_hour`]; the closer prices it like LLM usage;
//! - costs that arrive already priced (an imported FOCUS bill) can be
//!   written directly as a revision of their (period start, scope) with
//!   [`Ledger::replace_window`]: importing the same bill again replaces it.
//!
//! Rows carry `x_Source` (`kubernetes`, `cloud`), and `x_AllocationRatio` /
//! `x_AllocationMethod` for shared costs split between tenants.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use costplane_ledger::{
    scope, ChargeClass, ChargeStatus, CostFilter, CostSum, Dimension, HourState, KubernetesUsage, LedgerExt, LedgerReplacement, LedgerRow,
    LlmUsageRow, PricingStatus, Source, Step, TelemetryUsage, UnknownValue, UsageType, WindowSums, Windows, DEFAULT_CHARGE_CATEGORY,
    HOUR_NS,
};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::{Dialect, Param, Params, QueryResult, ReadLane, Store, StoreError};

mod llm_columns;
pub mod table;
mod usage;
mod usage_arrow;
pub use usage::NewUsage;
pub(crate) use usage::COPY_ORDER;

pub const LEDGER_TABLE: &str = "costplane_ledger";

/// The most windows one [`Ledger::sum_costs_in_windows`] reads (a column each).
pub const MAX_WINDOWS: i64 = 64;
pub const HOURS_TABLE: &str = "costplane_ledger_hours";

static LAST_REVISION: AtomicU64 = AtomicU64::new(0);

/// A revision number never handed out before by this process, and larger
/// than any handed out by an earlier one (nanoseconds of the clock).
pub fn next_revision() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut last = LAST_REVISION.load(Ordering::SeqCst);
    loop {
        let next = now.max(last + 1);
        match LAST_REVISION.compare_exchange(last, next, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// For crash tests only: `COSTPLANE_TEST_LEDGER_SWITCH_DELAY_MS` holds a
/// replacement of 10 or more hours between writing its rows and switching
/// to them, so a test can kill the process there.
pub(crate) fn test_switch_delay(r: &LedgerReplacement) -> Option<std::time::Duration> {
    let ms: u64 = std::env::var("COSTPLANE_TEST_LEDGER_SWITCH_DELAY_MS").ok()?.parse().ok()?;
    let hours: HashSet<i64> = r.hours.iter().map(|h| h.hour_ns).collect();
    (hours.len() >= 10).then(|| std::time::Duration::from_millis(ms))
}

/// `[first hour, last hour + 1 ns)`: the charge-period starts a replacement
/// covers (every row of an (hour, scope) starts at that hour).
pub fn replacement_window(r: &LedgerReplacement) -> (i64, i64) {
    let from = r.hours.iter().map(|h| h.hour_ns).min().unwrap_or(0);
    let to = r.hours.iter().map(|h| h.hour_ns).max().unwrap_or(0).saturating_add(1);
    (from, to)
}

/// Revisions of imports being written ([`Store::stage_ledger_rows`]) and
/// not switched to yet: retirement spares their rows. Registered before the
/// first row of a revision is written, released after its switch (or its
/// discard). Process-wide, as the rule that one process replaces a store's
/// ledger is.
#[derive(Debug)]
pub struct Staging {
    revisions: Vec<u64>,
}

static STAGED: std::sync::Mutex<std::collections::BTreeSet<u64>> = std::sync::Mutex::new(std::collections::BTreeSet::new());

fn staged() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<u64>> {
    STAGED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Staging {
    pub fn new() -> Staging {
        Staging { revisions: Vec::new() }
    }

    /// A fresh revision, spared by retirement until this staging is dropped.
    pub fn revision(&mut self) -> u64 {
        let r = next_revision();
        staged().insert(r);
        self.revisions.push(r);
        r
    }

    pub fn revisions(&self) -> &[u64] {
        &self.revisions
    }
}

impl Default for Staging {
    fn default() -> Self {
        Staging::new()
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let mut set = staged();
        for r in &self.revisions {
            set.remove(r);
        }
    }
}

/// ` AND x_Revision NOT IN (...)` of the staged revisions (integers this
/// process made, written as literals), or nothing.
fn spare_staged() -> String {
    let set = staged();
    if set.is_empty() {
        return String::new();
    }
    let list: Vec<String> = set.iter().map(u64::to_string).collect();
    format!(" AND x_Revision NOT IN ({})", list.join(", "))
}

/// Deletes the rows of `revisions` in the window bound as parameters 1 and 2
/// (the revisions are integers, written as literals).
pub fn discard_statement(dialect: Dialect, ledger: &str, revisions: &[u64]) -> String {
    let (p1, p2) = window_params(dialect);
    let start = dialect.ns("ChargePeriodStart");
    let list: Vec<String> = revisions.iter().map(u64::to_string).collect();
    format!("DELETE FROM {ledger} WHERE {start} >= {p1} AND {start} < {p2} AND x_Revision IN ({})", list.join(", "))
}

fn window_params(dialect: Dialect) -> (&'static str, &'static str) {
    match dialect {
        Dialect::DuckDb => ("$1", "$2"),
        Dialect::ClickHouse => ("{p0:Int64}", "{p1:Int64}"),
    }
}

/// The statements that retire superseded revisions inside the window
/// bound as parameters 1 and 2 (DuckDB: run in the replacing transaction).
/// Rows of staged revisions ([`Staging`]) are spared.
pub fn retire_statements(dialect: Dialect, ledger: &str, hours: &str) -> Vec<String> {
    let (p1, p2) = window_params(dialect);
    let hour = dialect.ns("Hour");
    let current = format!("SELECT max(Revision) FROM {hours} WHERE {hour} >= {p1} AND {hour} < {p2} GROUP BY Hour, Scope");
    let start = dialect.ns("ChargePeriodStart");
    let spare = spare_staged();
    vec![
        format!("DELETE FROM {ledger} WHERE {start} >= {p1} AND {start} < {p2} AND x_Revision NOT IN ({current}){spare}"),
        format!("DELETE FROM {hours} WHERE {hour} >= {p1} AND {hour} < {p2} AND Revision NOT IN ({current})"),
    ]
}

/// A cell as text (null: empty).
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A cell as an exact decimal (text or number); `None` for anything else,
/// NULL included: callers say which row and column it was
/// ([`StoreError::BadCell`]), never read it as 0.
pub fn decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::String(s) => Decimal::from_str(s.trim()).ok().or_else(|| Decimal::from_scientific(s.trim()).ok()),
        Value::Number(n) => {
            let t = n.to_string();
            Decimal::from_str(&t).ok().or_else(|| Decimal::from_scientific(&t).ok())
        }
        _ => None,
    }
}

/// A money or quantity cell of the ledger, read exactly or refused.
fn money_cell(v: &Value, row: usize, column: &'static str) -> Result<Decimal, StoreError> {
    decimal_cell(LEDGER_TABLE, v, row, column)
}

fn decimal_cell(table: &'static str, v: &Value, row: usize, column: &'static str) -> Result<Decimal, StoreError> {
    decimal(v).ok_or_else(|| StoreError::BadCell { table, row, column, value: v.to_string(), expected: "a decimal" })
}

/// A nullable money cell: NULL is `None`, anything else must be a decimal.
fn opt_money_cell(v: &Value, row: usize, column: &'static str) -> Result<Option<Decimal>, StoreError> {
    if v.is_null() {
        return Ok(None);
    }
    money_cell(v, row, column).map(Some)
}

/// A whole-number cell (a time in ns, a token or row count, a revision),
/// read exactly or refused with its row and column: a count that does not
/// parse is never read as 0 (tokens multiply prices).
pub(crate) fn int_cell(table: &'static str, v: &Value, row: usize, column: &'static str) -> Result<i64, StoreError> {
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.ok_or_else(|| StoreError::BadCell { table, row, column, value: v.to_string(), expected: "an integer" })
}

/// [`int_cell`] for cells that cannot be negative.
pub(crate) fn uint_cell(table: &'static str, v: &Value, row: usize, column: &'static str) -> Result<u64, StoreError> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.ok_or_else(|| StoreError::BadCell { table, row, column, value: v.to_string(), expected: "a non-negative integer" })
}

/// The signals usage rows name, as the static strings the types hold.
pub fn static_signal(s: &str) -> &'static str {
    match s {
        "traces" => "traces",
        "logs" => "logs",
        "metrics" => "metrics",
        "queries" => "queries",
        "storage" => "storage",
        _ => "other",
    }
}

/// The SQL expression of a dimension over ledger columns (the same text on
/// DuckDB and ClickHouse).
pub fn column(d: Dimension) -> &'static str {
    match d {
        Dimension::Tenant => "x_Tenant",
        Dimension::Project => "x_Project",
        Dimension::Service => "x_Service",
        Dimension::Model => "x_Model",
        Dimension::Operation => "x_Operation",
        Dimension::Source => "x_Source",
        Dimension::Provider => "ProviderName",
        Dimension::ProviderService => "ServiceName",
        Dimension::Resource => "ResourceId",
        Dimension::Sku => "SkuId",
        Dimension::UsageType => "x_UsageType",
        Dimension::Signal => "(CASE WHEN x_Source = 'telemetry' THEN x_UsageType ELSE '' END)",
        Dimension::Unit => "ConsumedUnit",
        Dimension::PricingStatus => "x_PricingStatus",
        Dimension::ChargeStatus => "x_ChargeStatus",
        Dimension::Currency => "BillingCurrency",
    }
}

/// A condition that a dimension equals `placeholder`'s value. Providers
/// match case-insensitively (`provider=openai` finds "OpenAI").
pub fn matches(d: Dimension, placeholder: &str) -> String {
    match d {
        Dimension::Provider => format!("lower(ProviderName) = lower({placeholder})"),
        d => format!("{} = {placeholder}", column(d)),
    }
}

/// ` AND x_Source NOT IN (...)`: the sources left out of totals, as stored
/// text from the vocabulary (never from a request).
fn outside_totals() -> String {
    let left_out: Vec<String> = Source::ALL.iter().filter(|s| !s.counts_in_totals()).map(|s| format!("'{}'", s.as_str())).collect();
    if left_out.is_empty() {
        String::new()
    } else {
        format!(" AND x_Source NOT IN ({})", left_out.join(", "))
    }
}

/// Items and bytes of one (tenant, project, service, signal) over a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageTotal {
    pub tenant: String,
    pub project: String,
    pub service: String,
    pub signal: String,
    pub items: u64,
    pub bytes: u64,
}

/// The usage of one (hour, scope), with how many stored rows it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HourUsage {
    pub telemetry: Vec<TelemetryUsage>,
    pub llm: Vec<LlmUsageRow>,
    /// The latest write of each cluster's hour.
    pub kubernetes: Vec<KubernetesUsage>,
    pub rows: u64,
}

/// The ledger repository over a store.
#[derive(Clone)]
pub struct Ledger {
    store: Arc<dyn Store>,
    lane: ReadLane,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("backend", &self.store.backend()).finish()
    }
}

impl Ledger {
    /// The ledger as requests read it.
    pub fn new(store: Arc<dyn Store>) -> Ledger {
        Ledger { store, lane: ReadLane::Serving }
    }

    /// The ledger as the closer reads it: on the store's connections kept
    /// for it (see [`Store::query_on`]).
    pub fn for_closer(store: Arc<dyn Store>) -> Ledger {
        Ledger { store, lane: ReadLane::Closer }
    }

    /// Runs costplane's own SQL on this ledger's read lane.
    async fn read(&self, sql: &str, params: &[Param]) -> Result<QueryResult, StoreError> {
        self.store.query_on(self.lane, sql, params).await
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn dialect(&self) -> Dialect {
        self.store.dialect()
    }

    /// Rows of current revisions only, for charge periods starting in `[from, to)`.
    pub(crate) fn visible(&self, p: &mut Params, from: i64, to: i64) -> String {
        let hour = self.dialect().ns("Hour");
        format!(
            "x_Revision IN (SELECT max(Revision) FROM {HOURS_TABLE} WHERE {hour} >= {} AND {hour} < {} GROUP BY Hour, Scope)",
            p.add(Param::Int(from)),
            p.add(Param::Int(to))
        )
    }

    /// `WHERE` conditions of a filter (period, tenant, equalities, visibility).
    fn conditions(&self, p: &mut Params, f: &CostFilter) -> String {
        let col = self.dialect().ns("ChargePeriodStart");
        let mut w = format!("{col} >= {} AND {col} < {}", p.add(Param::Int(f.from_ns)), p.add(Param::Int(f.to_ns)));
        if let Some(tenant) = &f.tenant {
            w.push_str(&format!(" AND x_Tenant = {}", p.add(Param::Str(tenant.clone()))));
        }
        for (d, v) in &f.equals {
            let placeholder = p.add(Param::Str(v.clone()));
            w.push_str(&format!(" AND {}", matches(*d, &placeholder)));
        }
        if !f.equals.iter().any(|(d, _)| *d == Dimension::Source) {
            // Sources that restate spend other rows count (invoice lines)
            // are read only when asked for by source.
            w.push_str(&outside_totals());
        }
        let visible = self.visible(p, f.from_ns, f.to_ns);
        w.push_str(&format!(" AND {visible}"));
        w
    }

    /// Costs over a window, by step and dimensions: exact sums of the
    /// stored decimals. A group's quantity is given only when all its rows
    /// share one unit (tokens, bytes and queries never add up).
    pub async fn sum_costs(&self, filter: &CostFilter, group_by: &[Dimension], step: Option<Step>) -> Result<Vec<CostSum>, StoreError> {
        let dialect = self.dialect();
        let mut p = Params::new(dialect);
        let w = self.conditions(&mut p, filter);
        let mut select = vec![];
        let mut group = vec![];
        if let Some(step) = step {
            select.push(format!("{} AS period", dialect.trunc_ns(step.name(), "ChargePeriodStart")));
            group.push("period".to_owned());
        }
        for (item, alias) in dimension_columns(group_by) {
            select.push(item);
            group.push(alias);
        }
        select.extend(
            [
                "sum(BilledCost) AS cost",
                "sum(ConsumedQuantity) AS quantity",
                "min(ConsumedUnit) AS unit_min",
                "max(ConsumedUnit) AS unit_max",
                "count(*) AS n",
            ]
            .map(String::from),
        );
        let sql = ledger_select(&select, &w, &group);
        let r = self.read(&sql, &p.values).await?;
        let mut out = Vec::new();
        for (at, row) in r.rows.iter().enumerate() {
            let n = row.len();
            let rows = uint_cell(LEDGER_TABLE, &row[n - 1], at, "count(*)")?;
            if rows == 0 {
                continue; // an ungrouped sum over no rows
            }
            let i = usize::from(step.is_some());
            let period_ns = match step {
                Some(_) => Some(int_cell(LEDGER_TABLE, &row[0], at, "period")?),
                None => None,
            };
            let dims = group_by.iter().enumerate().map(|(k, _)| text(&row[i + k])).collect();
            let (unit_min, unit_max) = (text(&row[n - 3]), text(&row[n - 2]));
            let same = unit_min == unit_max;
            out.push(CostSum {
                period_ns,
                dims,
                cost: money_cell(&row[n - 5], at, "sum(BilledCost)")?,
                // NULL: rows older than the column, no quantity recorded.
                quantity: if same { opt_money_cell(&row[n - 4], at, "sum(ConsumedQuantity)")? } else { None },
                unit: same.then_some(unit_min),
                rows,
            });
        }
        Ok(out)
    }

    /// Cost of each of the `windows` of the filter's period per value of
    /// `group_by`, one row per value (`costs[j]`: window `j` from the
    /// filter's start, zero where the value has no row). Rows between the
    /// windows are not summed. At most [`MAX_WINDOWS`] windows.
    pub async fn sum_costs_in_windows(
        &self,
        filter: &CostFilter,
        group_by: &[Dimension],
        windows: Windows,
    ) -> Result<Vec<WindowSums>, StoreError> {
        let span = filter.to_ns.saturating_sub(filter.from_ns);
        let count = if windows.every_ns > 0 { (span + windows.every_ns - 1) / windows.every_ns } else { 0 };
        if windows.len_ns <= 0 || windows.every_ns < windows.len_ns || !(1..=MAX_WINDOWS).contains(&count) {
            return Err(StoreError::Rejected(format!(
                "cost windows of {} ns every {} ns over {span} ns: a window must be longer than 0 and no longer than its period, \
                 and a read holds 1 to {MAX_WINDOWS} of them",
                windows.len_ns, windows.every_ns
            )));
        }
        let dialect = self.dialect();
        let mut p = Params::new(dialect);
        let mut w = self.conditions(&mut p, filter);
        // Offset from the read's start; the filter keeps it >= 0.
        let from = p.add(Param::Int(filter.from_ns));
        let offset = format!("({} - {from})", dialect.ns("ChargePeriodStart"));
        let every = p.add(Param::Int(windows.every_ns));
        let len = p.add(Param::Int(windows.len_ns));
        w.push_str(&format!(" AND {offset} % {every} < {len}"));
        let window = dialect.int_div(&offset, &every);
        let (mut select, group): (Vec<String>, Vec<String>) = dimension_columns(group_by).into_iter().unzip();
        select.extend((0..count).map(|j| format!("sum(CASE WHEN {window} = {} THEN BilledCost ELSE 0 END) AS w{j}", p.add(Param::Int(j)))));
        let sql = ledger_select(&select, &w, &group);
        let r = self.read(&sql, &p.values).await?;
        let mut out = Vec::with_capacity(r.rows.len());
        for (at, row) in r.rows.iter().enumerate() {
            let n = group_by.len();
            let costs = row[n..].iter().map(|cell| money_cell(cell, at, "window sum")).collect::<Result<Vec<_>, _>>()?;
            out.push(WindowSums { dims: row[..n].iter().map(text).collect(), costs });
        }
        Ok(out)
    }

    /// Ledger rows of a window, in a total order (re-reading a closed
    /// window gives the same rows in the same order: exports are
    /// byte-identical).
    pub async fn rows(&self, filter: &CostFilter) -> Result<Vec<LedgerRow>, StoreError> {
        let dialect = self.dialect();
        let mut p = Params::new(dialect);
        let w = self.conditions(&mut p, filter);
        // Every column of the table's description, times as nanoseconds.
        let cols: Vec<String> =
            table::COLUMNS.iter().map(|c| if c.ty == table::LedgerType::Time { dialect.ns(c.name) } else { c.name.to_owned() }).collect();
        let sql = format!(
            "SELECT {} FROM {LEDGER_TABLE} WHERE {w} ORDER BY ChargePeriodStart, x_Tenant, x_Source, x_Project, x_Service, x_Model, \
             x_Operation, x_UsageType, SkuId, x_PricingStatus, ChargeClass, Tags, BilledCost, ConsumedQuantity",
            cols.join(", ")
        );
        let r = self.read(&sql, &p.values).await?;
        r.rows.iter().enumerate().map(|(i, row)| ledger_row(i, row)).collect()
    }

    /// The rows of `revisions` (charge periods starting in `[from, to)`)
    /// summed per revision and the labels cost counters book under: one
    /// [`LedgerRow::booking`] row each, carrying its revision, summed cost
    /// and consumed quantity. What a replacement too large to hold in memory
    /// (a streamed bill import) is booked from, before and after.
    pub async fn booked_sums(&self, from: i64, to: i64, revisions: &[u64]) -> Result<Vec<LedgerRow>, StoreError> {
        if revisions.is_empty() {
            return Ok(Vec::new());
        }
        let dialect = self.dialect();
        let mut p = Params::new(dialect);
        let start = dialect.ns("ChargePeriodStart");
        let window = format!("{start} >= {} AND {start} < {}", p.add(Param::Int(from)), p.add(Param::Int(to)));
        // Revisions are integers this process read or made: literals.
        let list: Vec<String> = revisions.iter().map(u64::to_string).collect();
        let labels = "x_Revision, x_Source, x_UsageType, x_Service, x_Tenant, x_Project, ProviderName, x_Model, x_PricingStatus";
        let sql = format!(
            "SELECT {labels}, sum(BilledCost), sum(ConsumedQuantity) FROM {LEDGER_TABLE} WHERE {window} AND x_Revision IN ({}) \
             GROUP BY {labels}",
            list.join(", ")
        );
        let r = self.read(&sql, &p.values).await?;
        r.rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let source = vocabulary(i, "x_Source", Source::parse(&text(&row[1])))?;
                let usage_type = vocabulary(i, "x_UsageType", UsageType::parse(source, &text(&row[2])))?;
                let pricing_status = vocabulary(i, "x_PricingStatus", PricingStatus::parse(&text(&row[8])))?;
                let mut booked = LedgerRow::booked_labels(source, usage_type, [3, 4, 5, 6, 7].map(|c| text(&row[c])), pricing_status);
                booked.revision = uint_cell(LEDGER_TABLE, &row[0], i, "x_Revision")?;
                booked.cost = money_cell(&row[9], i, "BilledCost")?;
                booked.consumed_quantity = opt_money_cell(&row[10], i, "ConsumedQuantity")?.unwrap_or_default();
                Ok(booked)
            })
            .collect()
    }

    /// Telemetry usage (items, bytes) per tenant, project, service and
    /// signal over `[from, to)` of receive hours.
    pub async fn telemetry_usage(&self, from: i64, to: i64, tenant: Option<&str>) -> Result<Vec<UsageTotal>, StoreError> {
        let dialect = self.dialect();
        let mut p = Params::new(dialect);
        let hour = dialect.ns("Hour");
        let mut w = format!("{hour} >= {} AND {hour} < {}", p.add(Param::Int(from)), p.add(Param::Int(to)));
        if let Some(t) = tenant {
            w.push_str(&format!(" AND Tenant = {}", p.add(Param::Str(t.to_owned()))));
        }
        let r = self
            .read(
                &format!(
                    "SELECT Tenant, Project, Service, Signal, sum(Items), sum(Bytes) FROM costplane_usage_telemetry \
                     WHERE {w} GROUP BY Tenant, Project, Service, Signal ORDER BY Tenant, Project, Service, Signal"
                ),
                &p.values,
            )
            .await?;
        const TABLE: &str = "costplane_usage_telemetry";
        r.rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                Ok(UsageTotal {
                    tenant: text(&row[0]),
                    project: text(&row[1]),
                    service: text(&row[2]),
                    signal: text(&row[3]),
                    items: uint_cell(TABLE, &row[4], i, "sum(Items)")?,
                    bytes: uint_cell(TABLE, &row[5], i, "sum(Bytes)")?,
                })
            })
            .collect()
    }

    /// Telemetry usage per event day (the UTC day of the items' own time,
    /// the day partition that keeps them), tenant, project, service and
    /// signal, for event days in `[from, to)`, whenever it was received:
    /// whose data each day partition holds. Rows from before event days
    /// were kept count at their receive day.
    pub async fn ingest_by_event_day(&self, from: i64, to: i64) -> Result<Vec<(i64, UsageTotal)>, StoreError> {
        let dialect = self.dialect();
        let mut p = Params::new(dialect);
        let day = dialect.ns("EventDay");
        let sql = format!(
            "SELECT {day} AS d, Tenant, Project, Service, Signal, sum(Items), sum(Bytes) FROM costplane_usage_telemetry \
             WHERE {day} >= {} AND {day} < {} GROUP BY d, Tenant, Project, Service, Signal ORDER BY d, Tenant, Project, Service, Signal",
            p.add(Param::Int(from)),
            p.add(Param::Int(to))
        );
        let r = self.read(&sql, &p.values).await?;
        const TABLE: &str = "costplane_usage_telemetry";
        r.rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                Ok((
                    int_cell(TABLE, &row[0], i, "EventDay")?,
                    UsageTotal {
                        tenant: text(&row[1]),
                        project: text(&row[2]),
                        service: text(&row[3]),
                        signal: text(&row[4]),
                        items: uint_cell(TABLE, &row[5], i, "sum(Items)")?,
                        bytes: uint_cell(TABLE, &row[6], i, "sum(Bytes)")?,
                    },
                ))
            })
            .collect()
    }

    /// The current revision of every (hour, scope) in `[from, to)`.
    pub async fn hour_states(&self, from: i64, to: i64) -> Result<Vec<HourState>, StoreError> {
        let dialect = self.dialect();
        let mut p = Params::new(dialect);
        let hour = dialect.ns("Hour");
        let sql = format!(
            "SELECT {hour}, Scope, Revision, Status, UsageRows, PriceVersion FROM {HOURS_TABLE} h \
             WHERE {hour} >= {a} AND {hour} < {b} AND Revision IN \
             (SELECT max(Revision) FROM {HOURS_TABLE} WHERE {hour} >= {a} AND {hour} < {b} GROUP BY Hour, Scope) ORDER BY 1, 2",
            a = p.add(Param::Int(from)),
            b = p.add(Param::Int(to)),
        );
        let r = self.read(&sql, &p.values).await?;
        r.rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                Ok(HourState {
                    hour_ns: int_cell(HOURS_TABLE, &row[0], i, "Hour")?,
                    scope: text(&row[1]),
                    revision: uint_cell(HOURS_TABLE, &row[2], i, "Revision")?,
                    status: text(&row[3]),
                    usage_rows: uint_cell(HOURS_TABLE, &row[4], i, "UsageRows")?,
                    price_version: text(&row[5]),
                })
            })
            .collect()
    }

    /// Replaces the given (hour, scope)s by their new revisions, as one step
    /// for readers (see the module notes).
    pub async fn replace_window(&self, replacement: &LedgerReplacement) -> Result<(), StoreError> {
        self.store.replace_ledger(replacement).await
    }

    /// Closes (or re-closes) one (hour, scope) with `rows`.
    pub async fn close_hour(&self, state: HourState, mut rows: Vec<LedgerRow>) -> Result<(), StoreError> {
        for r in &mut rows {
            r.revision = state.revision;
        }
        self.replace_window(&LedgerReplacement { hours: vec![state], rows }).await
    }

    /// Records that the month starting at `month_ns` was exported, to an
    /// admin (`tenant` `None`: every tenant's rows) or to one tenant's key:
    /// later changes to those rows write correction rows.
    pub async fn mark_exported(&self, month_ns: i64, tenant: Option<&str>) -> Result<(), StoreError> {
        let state = HourState {
            hour_ns: month_ns,
            scope: match tenant {
                None => scope::EXPORT.to_owned(),
                Some(t) => format!("{}{t}", scope::EXPORT_PREFIX),
            },
            revision: next_revision(),
            status: "exported".to_owned(),
            usage_rows: 0,
            price_version: String::new(),
        };
        self.replace_window(&LedgerReplacement { hours: vec![state], rows: Vec::new() }).await
    }

    /// The exports served of the months starting in `[from, to)`.
    pub async fn exported(&self, from: i64, to: i64) -> Result<ExportMarks, StoreError> {
        let mut marks = ExportMarks::default();
        for s in self.hour_states(from, to).await? {
            if s.scope == scope::EXPORT {
                marks.months.insert(s.hour_ns, None);
            } else if let Some(tenant) = s.scope.strip_prefix(scope::EXPORT_PREFIX) {
                // A month an admin exported (`None`) covers every tenant already.
                if let Some(tenants) = marks.months.entry(s.hour_ns).or_insert_with(|| Some(HashSet::new())) {
                    tenants.insert(tenant.to_owned());
                }
            }
        }
        Ok(marks)
    }
}

/// Which rows of which months were exported: every tenant's (an admin's
/// export) or some tenants' (their keys' exports).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportMarks {
    /// Month start to `None` (every tenant) or the tenants served.
    months: std::collections::HashMap<i64, Option<HashSet<String>>>,
}

impl ExportMarks {
    /// Whether the month starting at `month_ns` was exported to anyone.
    pub fn any(&self, month_ns: i64) -> bool {
        self.months.contains_key(&month_ns)
    }

    /// Whether every tenant's rows of the month were exported (an admin's export).
    pub fn all(&self, month_ns: i64) -> bool {
        matches!(self.months.get(&month_ns), Some(None))
    }

    /// Whether `tenant`'s rows of the month starting at `month_ns` were exported.
    pub fn covers(&self, month_ns: i64, tenant: &str) -> bool {
        match self.months.get(&month_ns) {
            None => false,
            Some(None) => true,
            Some(Some(tenants)) => tenants.contains(tenant),
        }
    }
}

/// A stored text cell read through its vocabulary: a value this version
/// does not know is an error naming the row and column.
fn vocabulary<T>(index: usize, column: &'static str, parsed: Result<T, UnknownValue>) -> Result<T, StoreError> {
    parsed.map_err(|source| StoreError::UnknownValue { table: LEDGER_TABLE, row: index, column, source })
}

/// Each group-by dimension as a select item (`<column> AS d<i>`) and its alias.
fn dimension_columns(group_by: &[Dimension]) -> Vec<(String, String)> {
    group_by.iter().enumerate().map(|(i, d)| (format!("{} AS d{i}", column(*d)), format!("d{i}"))).collect()
}

/// `select` over the ledger rows `w` keeps, grouped and ordered by the
/// aliases `group` when there are any.
fn ledger_select(select: &[String], w: &str, group: &[String]) -> String {
    let mut sql = format!("SELECT {} FROM {LEDGER_TABLE} WHERE {w}", select.join(", "));
    if !group.is_empty() {
        sql.push_str(&format!(" GROUP BY {0} ORDER BY {0}", group.join(", ")));
    }
    sql
}

/// A typed row from cells in the description's order ([`table::names`]),
/// as a read gives them; a cell that does not parse is an error.
pub fn row_from_cells(cells: &[Value]) -> Result<LedgerRow, StoreError> {
    ledger_row(0, cells)
}

fn ledger_row(index: usize, row: &[Value]) -> Result<LedgerRow, StoreError> {
    let at = |name: &str| -> &Value {
        let i = table::COLUMNS.iter().position(|c| c.name == name).expect("a ledger column");
        row.get(i).unwrap_or(&Value::Null)
    };
    let t = |name: &str| text(at(name));
    let money = |name: &'static str| money_cell(at(name), index, name);
    let class = t("ChargeClass");
    let billed = money("BilledCost")?;
    let source = vocabulary(index, "x_Source", Source::parse(&t("x_Source")))?;
    Ok(LedgerRow {
        charge_period_start_ns: int_cell(LEDGER_TABLE, at("ChargePeriodStart"), index, "ChargePeriodStart")?,
        charge_period_end_ns: int_cell(LEDGER_TABLE, at("ChargePeriodEnd"), index, "ChargePeriodEnd")?,
        cost: billed,
        billing_currency: t("BillingCurrency"),
        // NULL: a regular charge.
        charge_class: if class.is_empty() { None } else { Some(vocabulary(index, "ChargeClass", ChargeClass::parse(&class))?) },
        service_name: t("ServiceName"),
        service_category: t("ServiceCategory"),
        provider_name: t("ProviderName"),
        publisher_name: t("PublisherName"),
        resource_id: t("ResourceId"),
        resource_name: t("ResourceName"),
        // Quantities are NULL on rows older than their columns (a store
        // upgraded in place): no quantity was recorded, so none is shown.
        consumed_quantity: opt_money_cell(at("ConsumedQuantity"), index, "ConsumedQuantity")?.unwrap_or_default(),
        consumed_unit: t("ConsumedUnit"),
        pricing_quantity: opt_money_cell(at("PricingQuantity"), index, "PricingQuantity")?.unwrap_or_default(),
        pricing_unit: t("PricingUnit"),
        sku_id: t("SkuId"),
        tags: t("Tags"),
        tenant: t("x_Tenant"),
        project: t("x_Project"),
        service: t("x_Service"),
        source,
        model: t("x_Model"),
        operation: t("x_Operation"),
        usage_type: vocabulary(index, "x_UsageType", UsageType::parse(source, &t("x_UsageType")))?,
        pricing_status: vocabulary(index, "x_PricingStatus", PricingStatus::parse(&t("x_PricingStatus")))?,
        price_version: t("x_PriceVersion"),
        charge_status: vocabulary(index, "x_ChargeStatus", ChargeStatus::parse(&t("x_ChargeStatus")))?,
        revision: uint_cell(LEDGER_TABLE, at("x_Revision"), index, "x_Revision")?,
        allocation_ratio: opt_money_cell(at("x_AllocationRatio"), index, "x_AllocationRatio")?,
        allocation_method: t("x_AllocationMethod"),
        ext: ledger_ext(index, billed, &at, &t)?,
    })
}

/// The version-5 columns of a row read back (costs equal to `BilledCost`
/// and the defaults read as unset, as a row of costplane's own pricing
/// leaves them).
fn ledger_ext<'a>(
    index: usize,
    billed: Decimal,
    at: &dyn Fn(&str) -> &'a Value,
    t: &dyn Fn(&str) -> String,
) -> Result<LedgerExt, StoreError> {
    let differs = |name: &'static str| opt_money_cell(at(name), index, name).map(|d| d.filter(|d| *d != billed));
    let category = t("ChargeCategory");
    let issuer = t("InvoiceIssuerName");
    Ok(LedgerExt {
        effective_cost: differs("EffectiveCost")?,
        list_cost: differs("ListCost")?,
        contracted_cost: differs("ContractedCost")?,
        charge_category: (!category.is_empty() && category != DEFAULT_CHARGE_CATEGORY).then_some(category),
        invoice_issuer: (!issuer.is_empty() && issuer != t("ProviderName")).then_some(issuer),
        namespace: t("x_Namespace"),
        pod: t("x_Pod"),
        node: t("x_Node"),
        cluster: t("x_Cluster"),
        container: t("x_Container"),
        shared_from: t("x_SharedFrom"),
        import_key: t("x_ImportKey"),
        extra: t("x_Extra"),
    })
}

/// The start of the hour after `hour_ns`'s hour.
pub fn hour_end(hour_ns: i64) -> i64 {
    hour_ns.saturating_add(HOUR_NS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row_with(column: &str, value: Value) -> Vec<Value> {
        table::names()
            .map(|c| match c {
                c if c == column => value.clone(),
                "BilledCost" | "ConsumedQuantity" | "PricingQuantity" => json!("1.5"),
                "ChargePeriodStart" | "ChargePeriodEnd" | "x_Revision" => json!(0),
                "x_Source" => json!("llm"),
                "x_UsageType" => json!("input"),
                "x_PricingStatus" => json!("priced"),
                "x_ChargeStatus" => json!("closed"),
                _ => Value::Null,
            })
            .collect()
    }

    #[test]
    fn a_count_cell_that_does_not_parse_is_an_error_never_zero() {
        assert_eq!(uint_cell("t", &json!(12), 0, "InputTokens").unwrap(), 12);
        assert_eq!(uint_cell("t", &json!("12"), 0, "InputTokens").unwrap(), 12);
        assert_eq!(int_cell("t", &json!("-3600"), 0, "Hour").unwrap(), -3600);
        for bad in [json!("12k"), json!(-1), json!(1.5), Value::Null, json!("")] {
            match uint_cell("costplane_usage_llm", &bad, 4, "InputTokens") {
                Err(StoreError::BadCell { table: "costplane_usage_llm", row: 4, column: "InputTokens", .. }) => {}
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(int_cell("t", &json!("soon"), 0, "Hour").is_err());
    }

    #[test]
    fn a_money_cell_that_does_not_parse_is_an_error_never_zero() {
        assert_eq!(ledger_row(0, &row_with("BilledCost", json!("0.000000000001"))).unwrap().cost, Decimal::new(1, 12));
        for (column, bad) in [("BilledCost", json!("1,5")), ("BilledCost", Value::Null), ("PricingQuantity", json!("n/a"))] {
            match ledger_row(7, &row_with(column, bad.clone())) {
                Err(StoreError::BadCell { row: 7, column: c, .. }) => assert_eq!(c, column),
                other => panic!("{column} = {bad}: {other:?}"),
            }
        }
        // A nullable money column may be NULL, but not text.
        assert_eq!(ledger_row(0, &row_with("EffectiveCost", Value::Null)).unwrap().ext.effective_cost, None);
        assert!(ledger_row(0, &row_with("EffectiveCost", json!("x"))).is_err());
    }
}
