//! Anomalies, forecasts and budgets in the server: an evaluation task, the
//! HTTP API, and `/metrics` gauges.
//!
//! The task evaluates when the ledger closes an hour (the closer tells
//! [`CloseTrigger`], a [`LedgerObserver`]), every `[anomalies] interval`
//! besides (budgets then see the open hours' provisional spend), and on
//! backfill requests. Anomalies are detected on closed hours only.
//!
//! - `series.rs` is the only reader of the ledger (hourly cost per group);
//! - `detect.rs` runs detection over closed buckets and keeps anomalies;
//! - `budgets.rs` evaluates budgets and notifies threshold crossings once;
//! - `notify.rs` sends webhooks (HMAC-signed), Alertmanager alerts, Slack;
//! - `api.rs` serves `/api/v1/anomalies`, `/api/v1/forecast`,
//!   `/api/v1/budgets` (CRUD) and `/api/v1/budgets/status`;
//! - `metrics.rs` renders the budget and anomaly gauges.
//!
//! The statistics themselves live in `costplane-insights` (pure).

mod api;
pub mod budgets;
pub mod config;
pub mod detect;
pub mod metrics;
pub mod notify;
pub mod series;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use costplane_store::Store;
use tokio_util::sync::CancellationToken;

use costplane_ledger::{HourState, LedgerRow};
use tokio::sync::Notify;

use crate::costs::closer::LedgerObserver;
use config::{AnomaliesSection, BudgetConfig};

/// What the insights task and handlers share.
#[derive(Clone)]
pub struct InsightsState {
    pub store: Arc<dyn Store>,
    pub anomalies: Arc<AnomaliesSection>,
    /// Budgets from the config file (API-created ones are in the store).
    pub budgets: Arc<Vec<BudgetConfig>>,
    pub http: reqwest::Client,
    /// Base of links in notifications.
    pub public_url: String,
    pub currency: String,
    /// Serializes evaluation runs (periodic, backfill).
    pub run_lock: Arc<tokio::sync::Mutex<()>>,
    pub gauges: Arc<metrics::Gauges>,
    /// `ledger.close_after_secs`: when an hour is due to close.
    pub close_after_secs: i64,
    /// `ledger.lookback_days`: the longest backfill without
    /// `"beyond_lookback": true`.
    pub backfill_days: i64,
    /// Woken when the closer has closed hours.
    pub closed: Arc<Notify>,
    /// The earliest hour (Unix seconds) closed since the last evaluation;
    /// `i64::MAX`: none.
    pub earliest_closed: Arc<AtomicI64>,
    /// The end of the latest hour (Unix seconds) closed since the last
    /// evaluation; `i64::MIN`: none. With `earliest_closed`, the window
    /// evaluated again: an imported month of last spring is looked at, not
    /// everything from then to now.
    pub latest_closed: Arc<AtomicI64>,
}

/// Wakes the evaluation task when the closer writes closed revisions
/// (first closings and re-closings with late usage alike). One wake-up
/// covers any number of closings before the task gets to run.
pub struct CloseTrigger {
    wake: Arc<Notify>,
    earliest: Arc<AtomicI64>,
    latest: Arc<AtomicI64>,
}

impl LedgerObserver for CloseTrigger {
    fn booked(&self, _rows: &[LedgerRow]) {}

    fn closed(&self, hours: &[HourState]) {
        if let Some(first) = hours.iter().map(|h| h.hour_ns.div_euclid(1_000_000_000)).min() {
            self.earliest.fetch_min(first, Ordering::SeqCst);
        }
        if let Some(last) = hours.iter().map(|h| h.hour_ns.div_euclid(1_000_000_000)).max() {
            self.latest.fetch_max(last.saturating_add(3600), Ordering::SeqCst);
        }
        self.wake.notify_one();
    }
}

impl InsightsState {
    pub fn new(config: &crate::Config, store: Arc<dyn Store>, currency: String) -> InsightsState {
        let public_url =
            config.anomalies.public_url.clone().unwrap_or_else(|| format!("http://{}", config.http.addr)).trim_end_matches('/').to_owned();
        InsightsState {
            store,
            anomalies: Arc::new(config.anomalies.clone()),
            budgets: Arc::new(config.budgets.clone()),
            http: notify::client(),
            public_url,
            currency,
            run_lock: Arc::new(tokio::sync::Mutex::new(())),
            gauges: Arc::new(metrics::Gauges::default()),
            close_after_secs: i64::try_from(config.ledger.close_after_secs).unwrap_or(i64::MAX / 2),
            backfill_days: i64::try_from(config.ledger.lookback_days).unwrap_or(i64::MAX).min(api::MAX_BACKFILL_DAYS),
            closed: Arc::new(Notify::new()),
            earliest_closed: Arc::new(AtomicI64::new(i64::MAX)),
            latest_closed: Arc::new(AtomicI64::new(i64::MIN)),
        }
    }

    /// The observer to register with the closer.
    pub fn close_trigger(&self) -> Arc<dyn LedgerObserver> {
        Arc::new(CloseTrigger {
            wake: Arc::clone(&self.closed),
            earliest: Arc::clone(&self.earliest_closed),
            latest: Arc::clone(&self.latest_closed),
        })
    }

    /// One evaluation: closed buckets, then budgets; gauges refreshed.
    pub async fn evaluate(&self) {
        let _guard = self.run_lock.lock().await;
        let now = chrono::Utc::now();
        // Hours closed before the detection's progress had late usage:
        // their buckets are evaluated again.
        let earliest = self.earliest_closed.swap(i64::MAX, Ordering::SeqCst);
        let latest = self.latest_closed.swap(i64::MIN, Ordering::SeqCst);
        let reclosed = (earliest != i64::MAX).then_some((earliest, latest.max(earliest)));
        if let Err(e) = detect::step(self, now.timestamp(), reclosed).await {
            if let Some((from, to)) = reclosed {
                self.earliest_closed.fetch_min(from, Ordering::SeqCst);
                self.latest_closed.fetch_max(to, Ordering::SeqCst);
            }
            tracing::warn!(error = %e, "anomaly detection failed; retried at the next interval");
        }
        match budgets::evaluate(self, now).await {
            Ok(statuses) => self.gauges.set_budgets(statuses),
            Err(e) => tracing::warn!(error = %e, "budget evaluation failed; retried at the next interval"),
        }
        match detect::load(self).await {
            Ok(all) => self.gauges.set_anomalies(&all),
            Err(e) => tracing::warn!(error = %e, "reading anomalies for /metrics failed"),
        }
    }
}

/// Runs [`InsightsState::evaluate`] now, whenever hours close, and every
/// `[anomalies] interval`, until `stop`.
pub fn spawn(state: InsightsState, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    let every = crate::config::parse_duration(&state.anomalies.interval).unwrap_or(Duration::from_secs(300));
    tokio::spawn(async move {
        if !state.anomalies.enabled {
            return;
        }
        loop {
            state.evaluate().await;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
                _ = state.closed.notified() => {}
            }
        }
    })
}

/// The insights API's routes, added to the API listener's (which layers
/// authentication and the browser guard over all of them).
pub(crate) fn routes(routes: crate::api::Routes, state: &InsightsState) -> crate::api::Routes {
    routes
        .at("GET /api/v1/anomalies", api::anomalies, state)
        .at("POST /api/v1/anomalies/backfill", api::backfill, state)
        .at("POST /api/v1/anomalies/{id}/dismiss", api::dismiss, state)
        .at("GET /api/v1/forecast", api::forecast, state)
        .at("GET /api/v1/forecasts", api::forecast, state)
        .at("GET /api/v1/budgets", api::list_budgets, state)
        .at("POST /api/v1/budgets", api::create_budget, state)
        .at("GET /api/v1/budgets/status", api::budget_status, state)
        .at("GET /api/v1/budgets/{id}", api::get_budget, state)
        .at("PUT /api/v1/budgets/{id}", api::update_budget, state)
        .at("DELETE /api/v1/budgets/{id}", api::delete_budget, state)
}
