//! One bill import being written, whatever its size: its rows go to the
//! ledger in chunks as they are parsed, under revisions no reader sees
//! ([`costplane_store::ledger::Staging`]), and the import becomes visible
//! in one switch when it is committed.
//!
//! Invariants:
//! - Memory holds one chunk of rows ([`CHUNK_ROWS`]) and, per (scope,
//!   charge hour), a revision and the sums the cost counters book: never a
//!   file's rows.
//! - One revision per (scope, charge hour) for the whole import, whichever
//!   of its files a row came from: the files of one bill replace its periods
//!   together.
//! - Nothing is visible before the commit's switch; an import that fails
//!   (a bad cell, a currency without a rate, a store error) deletes what it
//!   staged, and the caller drops it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use costplane_k8s::focus::{self, ImportOptions, Summary, Totals};
use costplane_k8s::K8sError;
use costplane_store::ledger::{next_revision, Ledger, Staging};
use costplane_telemetry::usage::{hour_of, HourState, LedgerRow, CLOSED, HOUR_NS};
use serde_json::json;

use crate::config::BillingSection;
use crate::costs::closer::Closer;
use crate::error::{ApiError, ErrorCode};

/// Rows written to the store at a time.
pub const CHUNK_ROWS: usize = 2048;

/// How often a long import logs how far it got.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// What a file is read with besides its path.
#[derive(Debug, Clone)]
pub struct FileInput {
    /// The name errors give.
    pub label: String,
    pub path: PathBuf,
    pub options: ImportOptions,
    /// The ledger's currency and the configured rates into it.
    pub currency: String,
    pub billing: std::sync::Arc<BillingSection>,
}

/// A staged (scope, charge hour): its revision, rows and price version.
#[derive(Debug)]
struct StagedHour {
    revision: u64,
    rows: u64,
    price_version: String,
}

/// An import being written (see the module notes).
#[derive(Debug, Default)]
pub struct StagedImport {
    staging: Staging,
    hours: BTreeMap<(String, i64), StagedHour>,
    summary: Summary,
    /// After conversion into the ledger's currency.
    totals: Totals,
    /// The distinct label sets the cost counters book under
    /// ([`LedgerRow::booking`] rows), by key: few (sources, tenants,
    /// services), however many rows.
    labels: HashMap<String, (usize, LedgerRow)>,
    /// Per (revision, label set): the summed cost and consumed quantity (a
    /// revision is one scope's charge hour).
    booked: HashMap<(u64, usize), (rust_decimal::Decimal, rust_decimal::Decimal)>,
}

impl StagedImport {
    pub fn files(&self) -> usize {
        self.summary.files.len()
    }

    pub fn rows(&self) -> u64 {
        self.summary.rows
    }

    /// Gives `row` the revision of its (scope, charge hour) and counts it.
    fn add(&mut self, row: &mut LedgerRow) {
        let scope = scope_of_row(row);
        let hour = hour_of(row.charge_period_start_ns);
        let staging = &mut self.staging;
        let staged = self.hours.entry((scope.clone(), hour)).or_insert_with(|| StagedHour {
            revision: staging.revision(),
            rows: 0,
            price_version: row.price_version.clone(),
        });
        staged.rows += 1;
        row.revision = staged.revision;
        self.totals.add(row);
        let booking = LedgerRow::booking(row);
        let next = self.labels.len();
        let label = self.labels.entry(booking.key()).or_insert((next, booking)).0;
        let sums = self.booked.entry((staged.revision, label)).or_default();
        sums.0 += row.cost;
        sums.1 += row.consumed_quantity;
    }

    /// One booking row per (revision, label set), with its sums.
    fn booking(&mut self) -> Vec<LedgerRow> {
        let labels: HashMap<usize, LedgerRow> = std::mem::take(&mut self.labels).into_values().collect();
        std::mem::take(&mut self.booked)
            .into_iter()
            .map(|((revision, label), (cost, quantity))| LedgerRow {
                revision,
                cost,
                consumed_quantity: quantity,
                ..labels[&label].clone()
            })
            .collect()
    }

    /// `[first staged hour, last staged hour + 1 h)`.
    fn window(&self) -> Option<(i64, i64)> {
        let first = self.hours.keys().map(|(_, h)| *h).min()?;
        let last = self.hours.keys().map(|(_, h)| *h).max()?;
        Some((first, last.saturating_add(HOUR_NS)))
    }

    /// Parses `input` and stages its rows in the ledger, a chunk at a time.
    /// On an error the import is no longer whole: [`StagedImport::discard`] it.
    pub async fn add_file(mut self, ledger: &Ledger, input: FileInput) -> (StagedImport, Result<(), ApiError>) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<LedgerRow>>(2);
        let label = input.label.clone();
        let parse = tokio::task::spawn_blocking(move || {
            let label = input.label.clone();
            let stopped = || K8sError::Read { file: label.clone(), message: "the import stopped".into() };
            let mut chunk: Vec<LedgerRow> = Vec::with_capacity(CHUNK_ROWS);
            let result = focus::parse_file(&input.label, &input.path, &input.options, &mut |mut row: LedgerRow| {
                to_ledger_currency(&mut row, &input.currency, &input.billing)
                    .map_err(|e| K8sError::Read { file: label.clone(), message: e.message })?;
                self.add(&mut row);
                chunk.push(row);
                if chunk.len() >= CHUNK_ROWS {
                    tx.blocking_send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_ROWS))).map_err(|_| stopped())?;
                }
                Ok(())
            });
            let result = result.and_then(|summary| {
                if !chunk.is_empty() {
                    tx.blocking_send(chunk).map_err(|_| stopped())?;
                }
                Ok(summary)
            });
            (self, result)
        });
        let mut written = Ok(());
        let (mut rows, mut logged) = (0u64, std::time::Instant::now());
        while let Some(chunk) = rx.recv().await {
            if let Err(e) = ledger.store().stage_ledger_rows(&chunk, next_revision()).await {
                written = Err(ApiError::from(e));
                break;
            }
            rows += chunk.len() as u64;
            if logged.elapsed() >= PROGRESS_EVERY {
                tracing::info!(file = %label, rows, "bill import: rows staged so far");
                logged = std::time::Instant::now();
            }
        }
        // The parse stops at its next chunk if the store failed.
        drop(rx);
        let (mut staged, parsed) = match parse.await {
            Ok(done) => done,
            Err(e) => return (StagedImport::default(), Err(ApiError::new(ErrorCode::Internal, format!("the import task failed: {e}")))),
        };
        let result = match (written, parsed) {
            (Err(e), _) => Err(e),
            (Ok(()), Err(e)) => Err(ApiError::new(ErrorCode::InvalidArgument, e.to_string())),
            (Ok(()), Ok(summary)) => {
                staged.summary.merge(summary);
                Ok(())
            }
        };
        (staged, result)
    }

    /// Deletes every row staged so far (an import that failed or was
    /// dropped); logged, not answered, when the store refuses.
    pub async fn discard(&self, ledger: &Ledger) {
        if let Some((from, to)) = self.window() {
            if let Err(e) = ledger.store().discard_ledger_revisions(from, to, self.staging.revisions()).await {
                tracing::warn!(error = %e, "could not delete the rows of a dropped bill import; the next replacement of its hours deletes them");
            }
        }
    }

    /// Switches the ledger to the staged rows: one new revision per (scope,
    /// charge hour) with rows, and an empty one per hour of the import's
    /// billing periods that holds a revision but no row of it now. Answers
    /// what was imported.
    pub async fn commit(mut self, closer: &Closer) -> Result<serde_json::Value, ApiError> {
        let mut hours: Vec<HourState> = self
            .hours
            .iter()
            .map(|((scope, hour_ns), s)| HourState {
                hour_ns: *hour_ns,
                scope: scope.clone(),
                revision: s.revision,
                status: CLOSED.to_owned(),
                usage_rows: s.rows,
                price_version: s.price_version.clone(),
            })
            .collect();
        for (scope, from, to) in &self.summary.periods {
            for s in closer.ledger().hour_states(*from, *to).await? {
                if &s.scope == scope && !self.hours.contains_key(&(s.scope.clone(), s.hour_ns)) {
                    hours.push(HourState { revision: next_revision(), status: CLOSED.to_owned(), usage_rows: 0, ..s });
                }
            }
        }
        hours.sort_by(|a, b| (a.hour_ns, &a.scope).cmp(&(b.hour_ns, &b.scope)));
        hours.dedup_by(|a, b| a.hour_ns == b.hour_ns && a.scope == b.scope);
        let booking = self.booking();
        if let Err(e) = closer.switch_staged(hours, booking).await {
            self.discard(closer.ledger()).await;
            return Err(e.into());
        }
        let totals: BTreeMap<String, serde_json::Value> = self
            .totals
            .0
            .iter()
            .map(|(p, (billed, effective))| {
                (p.clone(), json!({"billed_cost": billed.normalize().to_string(), "effective_cost": effective.normalize().to_string()}))
            })
            .collect();
        let hours = self.hours.len();
        Ok(json!({
            "files": self.summary.files,
            "rows": self.summary.rows,
            "hours": hours,
            "replaced": self.summary.keys,
            "totals": totals,
        }))
    }
}

/// The ledger scope of an imported row (from its import key).
fn scope_of_row(r: &LedgerRow) -> String {
    let mut parts = r.ext.import_key.splitn(3, '|');
    let provider = parts.next().unwrap_or_default();
    let account = parts.next().unwrap_or_default();
    focus::scope_of(provider, account)
}

/// Brings a row into the ledger's currency: a row already in it stays as it
/// is; a row in a currency with a rate in `[billing.exchange_rates]` has its
/// four costs converted (rounded to the ledger's 12 places) and keeps its
/// original currency, amount and rate in `x_Extra`; any other currency
/// refuses the whole import, so a EUR bill is never summed into USD totals.
pub fn to_ledger_currency(r: &mut LedgerRow, ledger: &str, billing: &BillingSection) -> Result<(), ApiError> {
    let currency = r.billing_currency.trim().to_ascii_uppercase();
    if currency == ledger.to_ascii_uppercase() {
        return Ok(());
    }
    let Some(rate) = billing.exchange_rates.get(&currency).copied() else {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!(
                "the bill is in {shown}, the ledger in {ledger}: add [billing.exchange_rates] {shown} = \"<{ledger} per {shown}>\" \
                 to the configuration, or export the bill in {ledger}",
                shown = if currency.is_empty() { "an unnamed currency".to_owned() } else { currency.clone() }
            ),
        ));
    };
    let convert = |d: rust_decimal::Decimal| costplane_telemetry::usage::round_money(d * rate);
    let mut extra: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&r.ext.extra).unwrap_or_default();
    extra.insert("x_OriginalCurrency".into(), currency.clone().into());
    extra.insert("x_OriginalBilledCost".into(), r.cost.normalize().to_string().into());
    extra.insert("x_ExchangeRate".into(), rate.normalize().to_string().into());
    r.ext.extra = serde_json::Value::Object(extra).to_string();
    r.cost = convert(r.cost);
    for c in [&mut r.ext.effective_cost, &mut r.ext.list_cost, &mut r.ext.contracted_cost].into_iter().flatten() {
        *c = convert(*c);
    }
    r.billing_currency = ledger.to_owned();
    Ok(())
}
