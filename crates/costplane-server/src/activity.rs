//! What the server tells its log while data flows: one info line per
//! interval (items accepted per signal, rows stored, cost booked), and a
//! warning the first time a model without a price is seen.
//!
//! Items counted here are accepted ones: in the disk buffer, so they will
//! be stored (the buffer's promise); the stored-row delta comes from the
//! pipeline's own counter. Cost booked is the exact decimal sum of the
//! ledger rows metered from accepted requests.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use costplane_pipeline::Pipeline;
use costplane_telemetry::usage::{LedgerRow, PricingStatus};
use costplane_telemetry::Signal;
use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;

/// Most distinct unpriced models remembered (and warned about) per run, so
/// that a client inventing model names cannot grow memory or flood the log.
const MAX_WARNED_MODELS: usize = 1000;

/// What one request books: its cost and the unpriced models it names
/// (model, provider, tenant), taken before the batch moves on.
#[derive(Debug, Default)]
pub struct Booked {
    cost: Decimal,
    unpriced: Vec<(String, String, String)>,
}

impl Booked {
    /// What the closer just booked: its cost, and the models it found
    /// unpriced.
    pub fn of(rows: &[LedgerRow]) -> Booked {
        let mut unpriced: Vec<(String, String, String)> = Vec::new();
        for r in rows.iter().filter(|r| r.pricing_status == PricingStatus::Unpriced && !r.model.is_empty()) {
            if !unpriced.iter().any(|(m, _, _)| *m == r.model) {
                unpriced.push((r.model.clone(), r.provider_name.clone(), r.tenant.clone()));
            }
        }
        Booked { cost: rows.iter().map(|r| r.cost).sum(), unpriced }
    }
}

/// The closer hands what it books here too (cost for the periodic line,
/// unpriced models for their first warning).
impl crate::costs::closer::LedgerObserver for Activity {
    fn booked(&self, rows: &[LedgerRow]) {
        self.record_booked(Booked::of(rows));
    }
}

#[derive(Debug, Default)]
pub struct Activity {
    /// Items accepted per signal (traces, logs, metrics) since the last line.
    items: [AtomicU64; 3],
    cost: Mutex<Decimal>,
    warned: Mutex<HashSet<String>>,
}

fn slot(signal: Signal) -> usize {
    match signal {
        Signal::Traces => 0,
        Signal::Logs => 1,
        Signal::Metrics => 2,
    }
}

/// One interval's figures, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    pub spans: u64,
    pub logs: u64,
    pub points: u64,
    pub cost: Decimal,
}

impl Activity {
    /// Counts an accepted request's items.
    pub fn record(&self, signal: Signal, accepted: u64) {
        self.items[slot(signal)].fetch_add(accepted, Ordering::Relaxed);
    }

    /// Adds booked cost; warns about models seen unpriced for the first time.
    pub fn record_booked(&self, booked: Booked) {
        if !booked.cost.is_zero() {
            *self.cost.lock().unwrap_or_else(|p| p.into_inner()) += booked.cost;
        }
        if booked.unpriced.is_empty() {
            return;
        }
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        for (model, provider, tenant) in booked.unpriced {
            if warned.len() < MAX_WARNED_MODELS && warned.insert(model.clone()) {
                tracing::warn!(
                    %model,
                    %provider,
                    %tenant,
                    "first usage of a model without a price: it is recorded as unpriced usage (never $0). \
                     Run `costplane prices check {model}` to see how the name is matched, and add it to a price override file"
                );
            }
        }
    }

    /// The figures since the last call, reset.
    pub fn take(&self) -> Interval {
        let cost = std::mem::take(&mut *self.cost.lock().unwrap_or_else(|p| p.into_inner()));
        Interval {
            spans: self.items[0].swap(0, Ordering::Relaxed),
            logs: self.items[1].swap(0, Ordering::Relaxed),
            points: self.items[2].swap(0, Ordering::Relaxed),
            cost,
        }
    }
}

/// Logs one line per `every` until `stop`, skipping quiet intervals.
pub fn spawn_reporter(
    activity: Arc<Activity>,
    pipeline: Pipeline,
    currency: String,
    every: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut written = pipeline.stats().written_rows;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let i = activity.take();
            let now = pipeline.stats().written_rows;
            let stored = now.saturating_sub(written);
            written = now;
            if i.spans + i.logs + i.points + stored == 0 && i.cost.is_zero() {
                continue;
            }
            tracing::info!(
                spans = i.spans,
                logs = i.logs,
                metric_points = i.points,
                rows_stored = stored,
                cost_booked = %i.cost.normalize(),
                currency = %currency,
                "ingest in the last {}s",
                every.as_secs()
            );
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use costplane_telemetry::usage::LedgerRow;
    use std::str::FromStr;

    fn row(model: &str, status: &str, cost: &str) -> LedgerRow {
        LedgerRow::builder(costplane_telemetry::usage::Source::Llm, 0, 0)
            .cost(Decimal::from_str(cost).unwrap(), "USD")
            .consumed(Decimal::ONE, "tokens")
            .pricing(Decimal::ONE, "")
            .owner("acme", "", "")
            .model(model)
            .usage_type(costplane_telemetry::usage::UsageType::Input)
            .priced(PricingStatus::parse(status).unwrap(), "")
            .build()
    }

    #[test]
    fn intervals_add_exactly_and_reset() {
        let a = Activity::default();
        a.record(Signal::Traces, 2);
        a.record(Signal::Logs, 5);
        a.record(Signal::Metrics, 7);
        a.record_booked(Booked::of(&[row("gpt-4o", "priced", "0.0035"), row("gpt-4o-mini", "priced", "0.0009")]));
        // 0.0035 + 0.0009 = 0.0044, exactly.
        assert_eq!(a.take(), Interval { spans: 2, logs: 5, points: 7, cost: Decimal::from_str("0.0044").unwrap() });
        assert_eq!(a.take(), Interval { spans: 0, logs: 0, points: 0, cost: Decimal::ZERO });
    }

    #[test]
    fn unpriced_models_are_remembered_once() {
        let a = Activity::default();
        let rows = [row("mystery-7b", "unpriced", "0"), row("mystery-7b", "unpriced", "0")];
        assert_eq!(Booked::of(&rows).unpriced.len(), 1);
        crate::costs::closer::LedgerObserver::booked(&a, &rows);
        crate::costs::closer::LedgerObserver::booked(&a, &rows);
        assert_eq!(a.warned.lock().unwrap().len(), 1);
    }
}
