//! The closer: turns stored usage into ledger rows, an hour at a time.
//!
//! - Every `ledger.refresh_secs` (and before a cost endpoint answers, at
//!   most once a second) it compares, for every hour of the last
//!   `ledger.lookback_days`, the usage rows stored per (hour, scope) with
//!   the count the hour's current ledger revision was made from. An hour
//!   whose usage changed, or whose end is `ledger.close_after_secs` past,
//!   is priced again with the catalog in force and replaced as one step
//!   ([`Ledger::replace_window`]): `x_ChargeStatus = provisional` while the
//!   hour is open, `closed` after. Late usage for a closed hour (a replay
//!   of the disk buffer, a late LLM span) re-closes that hour from all its
//!   usage: booked once, never dropped, never doubled.
//! - Booked cost is handed to a [`LedgerObserver`] (the `/metrics`
//!   counters) as the increase of each row key over the revision this
//!   process last wrote for its (hour, scope), or over the stored revision
//!   the first time it replaces one: re-closing an hour adds only what is
//!   new, and a decrease (repricing) is left to the gauges.
//! - Storage cost is written once a day (see [`Closer::close_storage`]).
//! - Repricing ([`Closer::reprice`]) and price reloads go through the same
//!   lock as closing, so they never race with it; the ingest path only
//!   records usage, so repricing cannot race with ingest either: usage that
//!   arrives during a reprice changes its hour's count, and the next
//!   refresh re-closes that hour with the (new) prices.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use costplane_cost::aggregate::TelemetryAggregate;
use costplane_cost::meter::EventWindow;
use costplane_cost::Meter;
use costplane_store::ledger::{HourUsage, Ledger, NewUsage};
use costplane_store::StoreError;
use costplane_telemetry::usage::{
    hour_of, round_money, scope, ChargeClass, ChargeStatus, CostFilter, Dimension, HourState, LedgerReplacement, LedgerRow, UsageType,
    HOUR_NS,
};
use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;

use super::incremental::{trace_hash, Applied, Incremental, LlmHour, OpenHour, Priced};

/// Usage rows read at a time by an incremental refresh: writes are taken
/// whole, as many as fit (at least one; a write holds at most about one
/// batch, `pipeline.batch_max_rows`), so what a refresh holds in memory is
/// bounded however much arrived since the last one.
const USAGE_SLICE_ROWS: u64 = 16_384;

/// The last write number of each slice of `writes` ((number, rows), in
/// order): whole writes, at most `max_rows` rows a slice unless one write
/// alone has more.
fn slice_ends(writes: &[(u64, u64)], max_rows: u64) -> Vec<u64> {
    let mut ends = Vec::new();
    let mut rows = 0u64;
    for (i, &(seq, n)) in writes.iter().enumerate() {
        rows = rows.saturating_add(n);
        let next = writes.get(i + 1).map_or(0, |w| w.1);
        if i + 1 == writes.len() || rows.saturating_add(next) > max_rows {
            ends.push(seq);
            rows = 0;
        }
    }
    ends
}
use crate::config::{CostSection, LedgerSection};
use costplane_k8s::KubernetesConfig;

/// When hours close, and how far back late usage is looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub close_after_ns: i64,
    pub refresh: Duration,
    pub lookback_ns: i64,
    /// Open hours priced incrementally (`ledger.incremental`).
    pub incremental: bool,
}

impl Timing {
    pub fn of(s: &LedgerSection) -> Timing {
        let secs = |n: u64| i64::try_from(n).unwrap_or(i64::MAX / 1_000_000_000).saturating_mul(1_000_000_000);
        Timing {
            close_after_ns: secs(s.close_after_secs),
            refresh: Duration::from_secs(s.refresh_secs.max(1)),
            lookback_ns: secs(s.lookback_days.saturating_mul(86_400)),
            incremental: s.incremental,
        }
    }
}

/// Where a price reload reads the configuration from.
#[derive(Debug, Clone)]
pub struct PriceSource {
    pub cost: CostSection,
    pub ledger: LedgerSection,
    /// `[kubernetes]`: prices and splits of the `kubernetes` scope.
    pub kubernetes: KubernetesConfig,
    /// The config file, whose `[cost]` rates are read again on reload.
    pub file: Option<std::path::PathBuf>,
}

impl PriceSource {
    /// The `[kubernetes]` section in force now (read again from the file).
    pub fn kubernetes(&self) -> Result<KubernetesConfig, String> {
        match &self.file {
            Some(path) => Ok(crate::config::Config::load(Some(path)).map_err(|e| e.to_string())?.kubernetes),
            None => Ok(self.kubernetes.clone()),
        }
    }

    /// The meter the configuration describes now.
    pub fn meter(&self) -> Result<Meter, String> {
        let mut cost = self.cost.clone();
        if let Some(path) = &self.file {
            let fresh = crate::config::Config::load(Some(path)).map_err(|e| e.to_string())?;
            cost.ingest_per_gib = fresh.cost.ingest_per_gib;
            cost.storage_per_gib_month = fresh.cost.storage_per_gib_month;
            cost.queries_per_1000 = fresh.cost.queries_per_1000;
            cost.provided_cost = fresh.cost.provided_cost;
        }
        let mut meter = cost.meter()?;
        let hours = |h: u64| i64::try_from(h).unwrap_or(i64::MAX / HOUR_NS).saturating_mul(HOUR_NS);
        meter.window = EventWindow { back_ns: hours(self.ledger.llm_event_back_hours), ahead_ns: hours(self.ledger.llm_event_ahead_hours) };
        Ok(meter)
    }
}

/// One line of a repricing report: the change of one source, model and tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub source: String,
    pub model: String,
    pub tenant: String,
    pub before: String,
    pub after: String,
    pub change: String,
}

/// What a repricing did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RepriceReport {
    pub dry_run: bool,
    pub hours: usize,
    /// Open hours in the window, left alone (they close with the new prices).
    pub open_hours_skipped: usize,
    pub usage_rows: u64,
    pub catalog_version: String,
    pub telemetry_version: String,
    pub cost_before: String,
    pub cost_after: String,
    pub change: String,
    /// Hours of exported months written as correction rows.
    pub corrected_hours: usize,
    pub changes: Vec<Change>,
}

fn money(d: Decimal) -> String {
    d.normalize().to_string()
}

/// The closer.
pub struct Closer {
    ledger: Ledger,
    meter: RwLock<Arc<Meter>>,
    /// `[kubernetes]` in force (reloaded with the prices).
    kubernetes: RwLock<Arc<KubernetesConfig>>,
    /// Idle per node that came out negative and was clamped at zero.
    idle_clamps: std::sync::atomic::AtomicU64,
    source: PriceSource,
    timing: Timing,
    /// Held while closing, repricing or reloading; the time of the last refresh.
    lock: tokio::sync::Mutex<Option<Instant>>,
    observers: RwLock<Vec<Arc<dyn LedgerObserver>>>,
    /// (cost, consumed quantity) per row key of the revision last written,
    /// per (hour, scope).
    booked: std::sync::Mutex<HashMap<(i64, String), HashMap<String, Booked>>>,
    /// Open hours priced incrementally (see `incremental.rs`).
    incremental: std::sync::Mutex<Incremental>,
    stats: RefreshStats,
}

/// What the refreshes did, for `/metrics`.
#[derive(Debug, Default)]
struct RefreshStats {
    refreshes: std::sync::atomic::AtomicU64,
    nanos: std::sync::atomic::AtomicU64,
    scratch_hours: std::sync::atomic::AtomicU64,
    incremental_hours: std::sync::atomic::AtomicU64,
    usage_rows_read: std::sync::atomic::AtomicU64,
}

/// Told how much cost the ledger gained (the `/metrics` cost counters),
/// and which hours it closed (anomaly detection, budgets).
pub trait LedgerObserver: Send + Sync {
    /// `rows` carry, per row key, the increase of `cost` and of
    /// `consumed_quantity` just booked (never negative).
    fn booked(&self, rows: &[LedgerRow]);

    /// The (hour, scope)s whose closed revision was just written: first
    /// closings and re-closings after late usage. Called after the
    /// revisions are visible to readers.
    fn closed(&self, _hours: &[HourState]) {}
}

/// Cost and consumed quantity of one row key.
type Booked = (Decimal, Decimal);

impl std::fmt::Debug for Closer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Closer").field("timing", &self.timing).finish()
    }
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

impl Closer {
    pub fn new(ledger: Ledger, meter: Arc<Meter>, source: PriceSource, timing: Timing) -> Closer {
        Closer {
            ledger,
            meter: RwLock::new(meter),
            kubernetes: RwLock::new(Arc::new(source.kubernetes.clone())),
            idle_clamps: std::sync::atomic::AtomicU64::new(0),
            source,
            timing,
            lock: tokio::sync::Mutex::new(None),
            observers: RwLock::new(Vec::new()),
            booked: std::sync::Mutex::new(HashMap::new()),
            incremental: std::sync::Mutex::new(Incremental::default()),
            stats: RefreshStats::default(),
        }
    }

    /// Adds one more to tell about booked cost.
    pub fn observe(&self, observer: Arc<dyn LedgerObserver>) {
        self.observers.write().unwrap_or_else(|p| p.into_inner()).push(observer);
    }

    /// After `replacement` was written: hands the increase per row key to
    /// the observer. Hours this process has not written before are compared
    /// with their stored rows (read before the replacement).
    fn report_booked(&self, replacement: &LedgerReplacement, mut before: HashMap<(i64, String), HashMap<String, Booked>>) {
        let observers = self.observers.read().unwrap_or_else(|p| p.into_inner()).clone();
        let hour_of_revision: HashMap<u64, (i64, String)> =
            replacement.hours.iter().map(|s| (s.revision, (s.hour_ns, s.scope.clone()))).collect();
        // Per (hour, scope): totals per row key, and one row of each key.
        type HourRows<'a> = (HashMap<String, Booked>, Vec<&'a LedgerRow>);
        let mut fresh: HashMap<(i64, String), HourRows<'_>> = HashMap::new();
        for r in &replacement.rows {
            let Some(k) = hour_of_revision.get(&r.revision) else { continue };
            let (totals, rows) = fresh.entry(k.clone()).or_default();
            let key = r.key();
            if !totals.contains_key(&key) {
                rows.push(r);
            }
            let t = totals.entry(key).or_default();
            t.0 += r.cost;
            t.1 += r.consumed_quantity;
        }
        let mut booked = self.booked.lock().unwrap_or_else(|p| p.into_inner());
        let mut increases = Vec::new();
        for state in &replacement.hours {
            let hour_key = (state.hour_ns, state.scope.clone());
            let (new, rows) = fresh.remove(&hour_key).unwrap_or_default();
            let old = booked.remove(&hour_key).or_else(|| before.remove(&hour_key)).unwrap_or_default();
            for r in rows {
                // Invoice lines restate estimated spend: never counted as booked.
                if !r.source.counts_in_totals() {
                    continue;
                }
                let key = r.key();
                let (now, was) = (new.get(&key).copied().unwrap_or_default(), old.get(&key).copied().unwrap_or_default());
                let (cost, quantity) = ((now.0 - was.0).max(Decimal::ZERO), (now.1 - was.1).max(Decimal::ZERO));
                if cost > Decimal::ZERO || quantity > Decimal::ZERO {
                    increases.push(LedgerRow { cost, consumed_quantity: quantity, ..r.clone() });
                }
            }
            booked.insert(hour_key, new);
        }
        // Hours older than the lookback are never re-closed: forget them.
        let oldest = hour_of(now_ns().saturating_sub(self.timing.lookback_ns));
        booked.retain(|(hour, _), _| *hour >= oldest);
        drop(booked);
        if !increases.is_empty() {
            for o in observers {
                o.booked(&increases);
            }
        }
    }

    /// Cost per row key of the stored revisions of the (hour, scope)s
    /// `replacement` is about to replace that this process has not written
    /// yet (none when nobody observes).
    async fn stored_before(&self, replacement: &LedgerReplacement) -> Result<HashMap<(i64, String), HashMap<String, Booked>>, StoreError> {
        let mut out: HashMap<(i64, String), HashMap<String, Booked>> = HashMap::new();
        if self.observers.read().unwrap_or_else(|p| p.into_inner()).is_empty() {
            return Ok(out);
        }
        let unknown: HashSet<(i64, String)> = {
            let booked = self.booked.lock().unwrap_or_else(|p| p.into_inner());
            replacement.hours.iter().map(|s| (s.hour_ns, s.scope.clone())).filter(|k| !booked.contains_key(k)).collect()
        };
        let (Some(from), Some(to)) = (unknown.iter().map(|k| k.0).min(), unknown.iter().map(|k| k.0).max()) else { return Ok(out) };
        let to = to.saturating_add(HOUR_NS);
        let stored: HashMap<u64, (i64, String)> = self
            .ledger
            .hour_states(from, to)
            .await?
            .into_iter()
            .map(|s| (s.revision, (s.hour_ns, s.scope)))
            .filter(|(_, k)| unknown.contains(k))
            .collect();
        if stored.is_empty() {
            return Ok(out);
        }
        for r in self.ledger.rows(&CostFilter { from_ns: from, to_ns: to, tenant: None, equals: Vec::new() }).await? {
            if let Some(k) = stored.get(&r.revision) {
                let t = out.entry(k.clone()).or_default().entry(r.key()).or_default();
                t.0 += r.cost;
                t.1 += r.consumed_quantity;
            }
        }
        Ok(out)
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The closer's series of `/metrics`.
    pub fn write_metrics(&self, out: &mut crate::health::Exposition) {
        use crate::health::Kind::Counter;
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.stats;
        out.one(
            "costplane_ledger_refreshes_total",
            Counter,
            "Ledger refreshes run (open hours priced, due hours closed).",
            s.refreshes.load(Relaxed),
        );
        let secs = s.nanos.load(Relaxed) as f64 / 1e9;
        out.one("costplane_ledger_refresh_seconds_total", Counter, "Time spent in ledger refreshes.", format!("{secs:.6}"));
        out.family("costplane_ledger_hours_priced_total", Counter, "(Hour, scope)s written by refreshes, by how they were priced.");
        out.sample("costplane_ledger_hours_priced_total", &[("how", "incremental")], s.incremental_hours.load(Relaxed));
        out.sample("costplane_ledger_hours_priced_total", &[("how", "scratch")], s.scratch_hours.load(Relaxed));
        out.one(
            "costplane_ledger_usage_rows_read_total",
            Counter,
            "Usage rows refreshes read to price hours.",
            s.usage_rows_read.load(Relaxed),
        );
    }

    /// Open (hour, scope)s held for incremental pricing.
    pub fn held_hours(&self) -> usize {
        self.incremental.lock().unwrap_or_else(std::sync::PoisonError::into_inner).hours.len()
    }

    /// The meter (prices) in force.
    pub fn meter(&self) -> Arc<Meter> {
        Arc::clone(&self.meter.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Loads the prices again (override file, config rates): new usage,
    /// open hours and hours closed from now on use them; closed hours keep
    /// theirs until repriced.
    pub async fn reload(&self) -> Result<Arc<Meter>, String> {
        let _guard = self.lock.lock().await;
        self.reload_locked()
    }

    /// `[kubernetes]` in force.
    pub fn kubernetes(&self) -> Arc<KubernetesConfig> {
        Arc::clone(&self.kubernetes.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Idle amounts clamped at zero so far (allocation above allocatable).
    pub fn idle_clamps(&self) -> u64 {
        self.idle_clamps.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn reload_locked(&self) -> Result<Arc<Meter>, String> {
        let kubernetes = Arc::new(self.source.kubernetes()?);
        *self.kubernetes.write().unwrap_or_else(std::sync::PoisonError::into_inner) = kubernetes;
        let meter = Arc::new(self.source.meter()?);
        *self.meter.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::clone(&meter);
        // Open hours were priced with the old prices: from scratch next time.
        self.incremental.lock().unwrap_or_else(std::sync::PoisonError::into_inner).reset();
        tracing::info!(catalog = %meter.catalog.version, telemetry = %meter.telemetry_price_version(), "prices reloaded");
        Ok(meter)
    }

    /// Writes revisions of already priced costs (an imported bill) under
    /// the closer's lock, telling the observers what they added.
    pub async fn replace_priced(&self, replacement: &LedgerReplacement) -> Result<(), StoreError> {
        let _guard = self.lock.lock().await;
        let before = self.stored_before(replacement).await?;
        self.ledger.replace_window(replacement).await?;
        self.report_booked(replacement, before);
        // An imported window is looked at for anomalies at once, as hours
        // the closer closed are.
        self.report_closed(replacement);
        Ok(())
    }

    /// Switches the ledger to staged revisions (an imported bill written
    /// in chunks, see `crate::import`): `hours` list them, no rows are
    /// written here. `booking` holds the staged rows summed per (revision,
    /// booking labels) ([`LedgerRow::booking`]); the rows they replace are
    /// summed the same way in the store, so observers are told the increase
    /// without either revision being held in memory.
    pub async fn switch_staged(&self, hours: Vec<HourState>, booking: Vec<LedgerRow>) -> Result<(), StoreError> {
        let _guard = self.lock.lock().await;
        let mut before: HashMap<(i64, String), HashMap<String, Booked>> = HashMap::new();
        let observed = !self.observers.read().unwrap_or_else(|p| p.into_inner()).is_empty();
        let switch = LedgerReplacement { hours, rows: Vec::new() };
        if observed && !switch.hours.is_empty() {
            let (from, to) = costplane_store::ledger::replacement_window(&switch);
            let to = hour_of(to.saturating_sub(1)).saturating_add(HOUR_NS);
            let wanted: HashSet<(i64, &str)> = switch.hours.iter().map(|s| (s.hour_ns, s.scope.as_str())).collect();
            let current: HashMap<u64, (i64, String)> = self
                .ledger
                .hour_states(from, to)
                .await?
                .into_iter()
                .filter(|s| wanted.contains(&(s.hour_ns, s.scope.as_str())))
                .map(|s| (s.revision, (s.hour_ns, s.scope)))
                .collect();
            let revisions: Vec<u64> = current.keys().copied().collect();
            for r in self.ledger.booked_sums(from, to, &revisions).await? {
                if let Some(k) = current.get(&r.revision) {
                    let t = before.entry(k.clone()).or_default().entry(r.key()).or_default();
                    t.0 += r.cost;
                    t.1 += r.consumed_quantity;
                }
            }
        }
        self.ledger.replace_window(&switch).await?;
        let told = LedgerReplacement { hours: switch.hours, rows: booking };
        self.report_booked(&told, before);
        self.report_closed(&told);
        Ok(())
    }

    /// Tells the observers which (hour, scope)s of `replacement` (written)
    /// are closed.
    fn report_closed(&self, replacement: &LedgerReplacement) {
        let closed: Vec<HourState> = replacement.hours.iter().filter(|s| s.status == ChargeStatus::Closed.as_str()).cloned().collect();
        if !closed.is_empty() {
            let observers = self.observers.read().unwrap_or_else(|p| p.into_inner()).clone();
            for o in observers {
                o.closed(&closed);
            }
        }
    }

    /// Runs a refresh unless one finished within `max_age`.
    pub async fn refresh_if_older(&self, max_age: Duration) -> Result<(), StoreError> {
        let mut last = self.lock.lock().await;
        if last.is_some_and(|t| t.elapsed() < max_age) {
            return Ok(());
        }
        self.refresh_locked(now_ns()).await?;
        *last = Some(Instant::now());
        Ok(())
    }

    /// Closes what is due and refreshes open hours, as of `now`.
    pub async fn refresh_at(&self, now: i64) -> Result<usize, StoreError> {
        let mut last = self.lock.lock().await;
        let n = self.refresh_locked(now).await?;
        *last = Some(Instant::now());
        Ok(n)
    }

    /// Refreshes every `ledger.refresh_secs` until `stop`.
    pub fn spawn(self: Arc<Self>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(e) = self.refresh_if_older(Duration::from_millis(500)).await {
                    tracing::warn!(error = %e, "the ledger closer could not refresh; retrying");
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(self.timing.refresh) => {}
                }
            }
        })
    }

    fn status_at(&self, hour_ns: i64, now: i64) -> ChargeStatus {
        let end = hour_ns.saturating_add(HOUR_NS);
        if now >= end.saturating_add(self.timing.close_after_ns) {
            ChargeStatus::Closed
        } else {
            ChargeStatus::Provisional
        }
    }

    async fn refresh_locked(&self, now: i64) -> Result<usize, StoreError> {
        // Taken out while the refresh runs: an error leaves the default (no
        // cursor), and the next refresh prices every hour from scratch.
        let mut inc = std::mem::take(&mut *self.incremental.lock().unwrap_or_else(|p| p.into_inner()));
        let started = Instant::now();
        let result = self.refresh_with(now, &mut inc).await;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.stats.refreshes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.stats.nanos.fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
        if result.is_ok() {
            *self.incremental.lock().unwrap_or_else(|p| p.into_inner()) = inc;
        }
        result
    }

    async fn refresh_with(&self, now: i64, inc: &mut Incremental) -> Result<usize, StoreError> {
        let since = hour_of(now.saturating_sub(self.timing.lookback_ns));
        let states: HashMap<(i64, String), HourState> =
            self.ledger.hour_states(since, i64::MAX).await?.into_iter().map(|s| ((s.hour_ns, s.scope.clone()), s)).collect();
        let meter = self.meter();
        let k8s = self.kubernetes();
        let seqs = if self.timing.incremental { self.ledger.store().write_seqs() } else { None };
        // Hours to price from scratch, and held hours to write again.
        let mut dirty: BTreeSet<(i64, &'static str)> = BTreeSet::new();
        let mut touched: BTreeSet<(i64, &'static str)> = BTreeSet::new();
        // Open hours to hold for incremental pricing without writing them.
        let mut to_hold: Vec<(i64, &'static str)> = Vec::new();
        let upto = seqs.as_ref().map(|s| s.settled());
        let counts = match (upto, inc.cursor) {
            (Some(upto), Some(cursor)) => {
                // A slice of writes at a time: what a refresh holds in
                // memory is bounded by the slice (at most a few batches of
                // rows), not by the traffic since the last refresh.
                let mut applied = Applied::default();
                let writes = self.ledger.writes_since(cursor, upto, since).await?;
                let mut from = cursor;
                for to in slice_ends(&writes, USAGE_SLICE_ROWS) {
                    let new = self.ledger.usage_since(from, to, since).await?;
                    let read = u64::try_from(new.llm.len() + new.telemetry.len()).unwrap_or(u64::MAX);
                    self.stats.usage_rows_read.fetch_add(read, std::sync::atomic::Ordering::Relaxed);
                    self.start_new_hours(&new, from, now, &states, &meter, &k8s, inc, &applied).await?;
                    inc.apply_telemetry(&new.telemetry, &mut applied);
                    inc.apply_llm(&meter, &new.llm, &mut applied);
                    drop(new);
                    // New roll-ups in held hours: is their trace covered?
                    let rollups = std::mem::take(&mut applied.new_rollup_traces);
                    let traces: Vec<String> = rollups.iter().map(|(_, t)| t.clone()).collect::<BTreeSet<_>>().into_iter().collect();
                    if !traces.is_empty() {
                        let covered = self.ledger.traces_with_model_usage(&traces).await?;
                        for (key, trace) in &rollups {
                            if let (true, Some(OpenHour { priced: Priced::Llm(held), .. })) =
                                (covered.contains(trace), inc.hours.get_mut(key))
                            {
                                held.cover(trace);
                            }
                        }
                    }
                    from = to;
                }
                dirty.extend(applied.dirty);
                touched.extend(applied.touched);
                inc.cursor = Some(upto);
                // Only Kubernetes hours are found by counting.
                self.ledger.usage_counts_of(&[scope::KUBERNETES], since, Some(upto)).await?
            }
            _ => {
                // The first refresh (or the first after an error or a
                // reload): every hour is checked against its count.
                inc.reset();
                if upto.is_some() {
                    for (hour, trace) in self.ledger.rollup_hours(since).await? {
                        inc.rollups.entry(trace_hash(&trace)).or_default().insert(hour);
                    }
                }
                let counts = self.ledger.usage_counts(since, upto).await?;
                if upto.is_some() {
                    // Open hours of the incremental scopes are held from now on.
                    for (hour, scope_name, _) in &counts {
                        if *scope_name != scope::KUBERNETES && self.status_at(*hour, now) == ChargeStatus::Provisional {
                            to_hold.push((*hour, scope_name));
                        }
                    }
                }
                inc.cursor = upto;
                counts
            }
        };
        for (hour, scope_name, n) in counts {
            let status = self.status_at(hour, now);
            // An open hour follows the prices in force (after a reload);
            // a closed one keeps its prices until repriced.
            let stale = match states.get(&(hour, scope_name.to_owned())) {
                None => true,
                Some(s) => {
                    s.usage_rows != n
                        || s.status != status.as_str()
                        || (status == ChargeStatus::Provisional && s.price_version != price_version(&meter, &k8s, scope_name))
                }
            };
            if stale {
                dirty.insert((hour, scope_name));
            }
        }
        if inc.cursor.is_some() {
            // Held hours that close now are checked against their stored
            // count; held hours whose stored revision differs are written.
            let held: Vec<(i64, &'static str)> = inc.hours.keys().copied().collect();
            for key in held {
                if dirty.contains(&key) {
                    continue;
                }
                let state = states.get(&(key.0, key.1.to_owned()));
                if self.status_at(key.0, now) == ChargeStatus::Closed {
                    let n = inc.hours.get(&key).map_or(0, |h| h.usage_rows);
                    if self.ledger.usage_count(key.1, key.0, None).await? == n {
                        touched.insert(key);
                    } else {
                        tracing::info!(
                            hour = key.0,
                            scope = key.1,
                            "an hour's stored usage differs from what was read; pricing it from scratch"
                        );
                        dirty.insert(key);
                    }
                } else if state
                    .is_none_or(|s| inc.hours.get(&key).is_some_and(|h| h.usage_rows != s.usage_rows || h.price_version != s.price_version))
                {
                    touched.insert(key);
                }
            }
            // Stored revisions of the incremental scopes not held here
            // whose status or prices are due to change.
            for ((hour, scope_name), s) in &states {
                let key = match scope_name.as_str() {
                    scope::LLM => (*hour, scope::LLM),
                    scope::TELEMETRY => (*hour, scope::TELEMETRY),
                    _ => continue,
                };
                if inc.hours.contains_key(&key) || *hour < since {
                    continue;
                }
                let status = self.status_at(*hour, now);
                if s.status != status.as_str()
                    || (status == ChargeStatus::Provisional && s.price_version != price_version(&meter, &k8s, key.1))
                {
                    dirty.insert(key);
                }
            }
        }
        let mut replacement = LedgerReplacement::default();
        // Hours priced from scratch; a model call found there also decides
        // its trace's roll-ups in other hours, which are priced again too.
        let mut queue: Vec<(i64, &'static str)> = dirty.iter().copied().collect();
        let mut done: BTreeSet<(i64, &'static str)> = BTreeSet::new();
        while let Some(key @ (hour, scope_name)) = queue.pop() {
            if !done.insert(key) {
                continue;
            }
            let status = self.status_at(hour, now);
            let upto_here = if scope_name == scope::KUBERNETES { None } else { inc.cursor };
            let (rows, usage_rows, held, covering) = self.price_scratch(&meter, &k8s, scope_name, hour, status, upto_here).await?;
            self.stats.scratch_hours.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.stats.usage_rows_read.fetch_add(usage_rows, std::sync::atomic::Ordering::Relaxed);
            push_revision(&mut replacement, hour, scope_name, status.as_str(), usage_rows, price_version(&meter, &k8s, scope_name), rows);
            inc.hours.remove(&key);
            if let (Some(held), ChargeStatus::Provisional, Some(_)) = (held, status, inc.cursor) {
                inc.hours.insert(key, held);
            }
            for trace in covering {
                for h in inc.rollups.get(&trace_hash(&trace)).into_iter().flatten() {
                    if !done.contains(&(*h, scope::LLM)) && *h >= since {
                        queue.push((*h, scope::LLM));
                    }
                }
            }
        }
        let dirty = done;
        for key @ (hour, scope_name) in to_hold.iter().filter(|k| !dirty.contains(k)) {
            // Unchanged since stored: read to be held, not written again.
            let (_, usage_rows, held, _) =
                self.price_scratch(&meter, &k8s, scope_name, *hour, ChargeStatus::Provisional, inc.cursor).await?;
            self.stats.usage_rows_read.fetch_add(usage_rows, std::sync::atomic::Ordering::Relaxed);
            if let Some(held) = held {
                inc.hours.insert(*key, held);
            }
        }
        for key @ (hour, scope_name) in touched.difference(&dirty) {
            let status = self.status_at(*hour, now);
            let Some(held) = inc.hours.get(key) else { continue };
            let rows = held.rows(&meter, status);
            self.stats.incremental_hours.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            push_revision(&mut replacement, *hour, scope_name, status.as_str(), held.usage_rows, held.price_version.clone(), rows);
            if status == ChargeStatus::Closed {
                inc.hours.remove(key);
            }
        }
        // Roll-ups are looked for over the lookback only.
        inc.rollups.retain(|_, hours| {
            hours.retain(|h| *h >= since);
            !hours.is_empty()
        });
        self.correct_exported(&mut replacement, &states).await?;
        let storage = self.close_storage(&meter, now, &states).await?;
        for (state, rows) in storage {
            let version = price_version(&meter, &k8s, &state.scope);
            push_revision(&mut replacement, state.hour_ns, &state.scope, &state.status, state.usage_rows, version, rows);
        }
        let n = replacement.hours.len();
        if n > 0 {
            let before = self.stored_before(&replacement).await?;
            self.ledger.replace_window(&replacement).await?;
            self.report_booked(&replacement, before);
            self.report_closed(&replacement);
            tracing::debug!(hours = n, scratch = dirty.len(), incremental = touched.len(), "ledger hours refreshed");
        }
        Ok(n)
    }

    /// Closed hours written again (late usage, a roll-up decided later) in
    /// a month whose export was served keep their rows as exported and get
    /// `ChargeClass = Correction` rows for the difference, so a re-export
    /// reconciles line by line with the first.
    async fn correct_exported(
        &self,
        replacement: &mut LedgerReplacement,
        states: &HashMap<(i64, String), HourState>,
    ) -> Result<(), StoreError> {
        // (new revision, stored revision, hour) of re-closed hours.
        let reclosed: Vec<(u64, u64, i64)> = replacement
            .hours
            .iter()
            .filter(|h| h.status == ChargeStatus::Closed.as_str())
            .filter_map(|h| {
                states
                    .get(&(h.hour_ns, h.scope.clone()))
                    .filter(|s| s.status == ChargeStatus::Closed.as_str())
                    .map(|s| (h.revision, s.revision, h.hour_ns))
            })
            .collect();
        let (Some(from), Some(to)) = (reclosed.iter().map(|r| r.2).min(), reclosed.iter().map(|r| r.2).max()) else { return Ok(()) };
        let exported = self.ledger.exported(month_of(from), to.saturating_add(1)).await?;
        let corrected: Vec<&(u64, u64, i64)> = reclosed.iter().filter(|r| exported.any(month_of(r.2))).collect();
        if corrected.is_empty() {
            return Ok(());
        }
        let stored =
            self.ledger.rows(&CostFilter { from_ns: from, to_ns: to.saturating_add(HOUR_NS), tenant: None, equals: Vec::new() }).await?;
        for (new_revision, old_revision, hour) in corrected {
            let before: Vec<LedgerRow> = stored.iter().filter(|r| r.revision == *old_revision).cloned().collect();
            let (after, rest): (Vec<LedgerRow>, Vec<LedgerRow>) =
                std::mem::take(&mut replacement.rows).into_iter().partition(|r| r.revision == *new_revision);
            replacement.rows = rest;
            let month = month_of(*hour);
            let rows = with_corrections_for(before, after, |tenant| exported.covers(month, tenant));
            tracing::info!(
                hour,
                corrections = rows.iter().filter(|r| r.charge_class.is_some()).count(),
                "an exported hour changed; correction rows added"
            );
            replacement.rows.extend(rows.into_iter().map(|r| LedgerRow { revision: *new_revision, ..r }));
        }
        Ok(())
    }

    /// Holds, empty, every open hour that `new` (usage written after
    /// `from`) is the first usage of: no held state, no stored revision,
    /// no stored row at or before `from`. Such an hour's usage is exactly
    /// what the refresh reads from `from` on, so adding it as it comes is
    /// its from-scratch pricing, and the hour is never read again whole
    /// (which held all its rows at once, however many arrived since the
    /// last refresh).
    #[allow(clippy::too_many_arguments)]
    async fn start_new_hours(
        &self,
        new: &NewUsage,
        from: u64,
        now: i64,
        states: &HashMap<(i64, String), HourState>,
        meter: &Meter,
        k8s: &KubernetesConfig,
        inc: &mut Incremental,
        applied: &Applied,
    ) -> Result<(), StoreError> {
        let keys: BTreeSet<(i64, &'static str)> =
            new.llm.iter().map(|r| (r.hour_ns, scope::LLM)).chain(new.telemetry.iter().map(|u| (u.hour_ns, scope::TELEMETRY))).collect();
        for key @ (hour, scope_name) in keys {
            if inc.hours.contains_key(&key)
                || applied.dirty.contains(&key)
                || states.contains_key(&(hour, scope_name.to_owned()))
                || self.status_at(hour, now) != ChargeStatus::Provisional
                || self.ledger.usage_count(scope_name, hour, Some(from)).await? != 0
            {
                continue;
            }
            let priced = if scope_name == scope::LLM { Priced::Llm(LlmHour::default()) } else { Priced::Telemetry(Default::default()) };
            inc.hours.insert(key, OpenHour { usage_rows: 0, price_version: price_version(meter, k8s, scope_name), priced });
        }
        Ok(())
    }

    /// Ledger rows of one (hour, scope) from its stored usage (LLM and
    /// telemetry rows up to write number `upto`), how many usage rows they
    /// came from, and the hour as held for incremental pricing.
    async fn price_scratch(
        &self,
        meter: &Meter,
        k8s: &KubernetesConfig,
        scope_name: &str,
        hour: i64,
        status: ChargeStatus,
        upto: Option<u64>,
    ) -> Result<(Vec<LedgerRow>, u64, Option<OpenHour>, Vec<String>), StoreError> {
        let usage: HourUsage = self.ledger.usage_of_hour(scope_name, hour, upto).await?;
        let version = price_version(meter, k8s, scope_name);
        // Traces of this hour: their roll-ups elsewhere are decided again.
        let mut covering = Vec::new();
        let held = match scope_name {
            scope::TELEMETRY => {
                let mut agg = TelemetryAggregate::default();
                for u in &usage.telemetry {
                    agg.add(u);
                }
                OpenHour { usage_rows: usage.rows, price_version: version, priced: Priced::Telemetry(agg) }
            }
            scope::LLM => {
                let rollup_traces: Vec<String> = usage
                    .llm
                    .iter()
                    .filter(|r| r.kind == costplane_telemetry::usage::CallKind::Rollup)
                    .map(|r| r.trace_id.clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let covered =
                    if rollup_traces.is_empty() { HashSet::new() } else { self.ledger.traces_with_model_usage(&rollup_traces).await? };
                // Every trace of the hour (not only its model calls': a
                // copy dropped here may be the call that covers a trace).
                covering = usage.llm.iter().filter(|r| !r.trace_id.is_empty()).map(|r| r.trace_id.clone()).collect();
                let llm = LlmHour::from_rows(meter, &usage.llm, &covered);
                OpenHour { usage_rows: usage.rows, price_version: version, priced: Priced::Llm(llm) }
            }
            scope::KUBERNETES => {
                let mut stats = costplane_k8s::allocate::AllocationStats::default();
                let rows = costplane_k8s::price_hour(hour, &usage.kubernetes, k8s, &meter.catalog.currency, status, &mut stats)
                    .map_err(|e| StoreError::Unexpected(e.to_string()))?;
                self.idle_clamps.fetch_add(stats.idle_clamps, std::sync::atomic::Ordering::Relaxed);
                return Ok((rows, usage.rows, None, Vec::new()));
            }
            _ => return Ok((Vec::new(), usage.rows, None, Vec::new())),
        };
        Ok((held.rows(meter, status), usage.rows, Some(held), covering))
    }

    /// Storage cost: once for each ended day without it, the days a stopped
    /// server missed included (see `storage.rs`). Returns the revisions to
    /// write.
    async fn close_storage(
        &self,
        meter: &Meter,
        now: i64,
        states: &HashMap<(i64, String), HourState>,
    ) -> Result<Vec<(HourState, Vec<LedgerRow>)>, StoreError> {
        // Storage is measured once a day; a measurement that fails must not
        // hold up the hourly closing, so it is logged and tried again.
        match super::storage::due(&self.ledger, meter, now, self.timing.close_after_ns, states).await {
            Ok(due) => Ok(due),
            Err(e) => {
                tracing::warn!(error = %e, "measuring stored bytes failed; storage cost is written at a later refresh");
                Ok(Vec::new())
            }
        }
    }

    /// Prices the closed hours of `[from, to)` again with the prices loaded
    /// now (reloaded first). `dry_run`: report the change, write nothing.
    /// Hours of a month already exported get correction rows
    /// (`ChargeClass = Correction`) beside their original rows, unless
    /// `in_place`.
    pub async fn reprice(&self, from: i64, to: i64, dry_run: bool, in_place: bool) -> Result<RepriceReport, String> {
        let _guard = self.lock.lock().await;
        // A dry run prices with what a reload would load, and loads nothing.
        let (meter, k8s) = if dry_run {
            (Arc::new(self.source.meter()?), Arc::new(self.source.kubernetes()?))
        } else {
            (self.reload_locked()?, self.kubernetes())
        };
        let now = now_ns();
        let (from, to) = (hour_of(from), hour_of(to));
        let err = |e: StoreError| e.to_string();
        // Every (hour, scope) of the window with usage (closed or due).
        let counts = self.ledger.usage_counts(from, None).await.map_err(err)?;
        let mut hours: Vec<(i64, &'static str)> = Vec::new();
        let mut open = 0;
        for (hour, scope_name, _) in counts.into_iter().filter(|(h, ..)| *h < to) {
            if self.status_at(hour, now) == ChargeStatus::Closed {
                hours.push((hour, scope_name));
            } else {
                open += 1;
            }
        }
        let exported = self.ledger.exported(month_of(from), to).await.map_err(err)?;
        // The current rows of the window, by (hour, source).
        let current = self.ledger.rows(&CostFilter { from_ns: from, to_ns: to, tenant: None, equals: Vec::new() }).await.map_err(err)?;
        let mut old: HashMap<(i64, String), Vec<LedgerRow>> = HashMap::new();
        for r in current {
            if r.usage_type == UsageType::Storage {
                continue;
            }
            old.entry((r.charge_period_start_ns, r.source.as_str().to_owned())).or_default().push(r);
        }
        let mut changes: BTreeMap<(String, String, String), (Decimal, Decimal)> = BTreeMap::new();
        let mut replacement = LedgerReplacement::default();
        let mut usage_rows = 0;
        let mut corrected = 0;
        for (hour, scope_name) in &hours {
            let (new, n, ..) = self.price_scratch(&meter, &k8s, scope_name, *hour, ChargeStatus::Closed, None).await.map_err(err)?;
            usage_rows += n;
            let before = old.remove(&(*hour, (*scope_name).to_owned())).unwrap_or_default();
            for r in &before {
                changes.entry((r.source.to_string(), r.model.clone(), r.tenant.clone())).or_default().0 += r.cost;
            }
            for r in &new {
                changes.entry((r.source.to_string(), r.model.clone(), r.tenant.clone())).or_default().1 += r.cost;
            }
            let month = month_of(*hour);
            let rows = if exported.any(month) && !in_place {
                corrected += 1;
                with_corrections_for(before, new, |tenant| exported.covers(month, tenant))
            } else {
                new
            };
            push_revision(
                &mut replacement,
                *hour,
                scope_name,
                ChargeStatus::Closed.as_str(),
                n,
                price_version(&meter, &k8s, scope_name),
                rows,
            );
        }
        if !dry_run && !replacement.hours.is_empty() {
            self.ledger.replace_window(&replacement).await.map_err(err)?;
        }
        let (before, after) = changes.values().fold((Decimal::ZERO, Decimal::ZERO), |(b, a), (x, y)| (b + x, a + y));
        let report = RepriceReport {
            dry_run,
            hours: hours.len(),
            open_hours_skipped: open,
            usage_rows,
            catalog_version: meter.catalog.version.clone(),
            telemetry_version: meter.telemetry_price_version(),
            cost_before: money(before),
            cost_after: money(after),
            change: money(after - before),
            corrected_hours: if dry_run { 0 } else { corrected },
            changes: changes
                .into_iter()
                .filter(|(_, (b, a))| b != a)
                .map(|((source, model, tenant), (b, a))| Change {
                    source,
                    model,
                    tenant,
                    before: money(b),
                    after: money(a),
                    change: money(a - b),
                })
                .collect(),
        };
        tracing::info!(dry_run, hours = report.hours, before = %report.cost_before, after = %report.cost_after, "repriced");
        Ok(report)
    }
}

/// The start of the month holding `ns` (UTC).
fn month_of(ns: i64) -> i64 {
    use chrono::Datelike;
    let d = chrono::DateTime::from_timestamp_nanos(ns);
    chrono::NaiveDate::from_ymd_opt(d.year(), d.month(), 1)
        .and_then(|m| m.and_hms_opt(0, 0, 0))
        .and_then(|m| m.and_utc().timestamp_nanos_opt())
        .unwrap_or(0)
}

/// The price version a scope's rows are made with, under `meter` and `k8s`.
fn price_version(meter: &Meter, k8s: &KubernetesConfig, scope_name: &str) -> String {
    match scope_name {
        scope::LLM => meter.catalog.version.clone(),
        scope::KUBERNETES => k8s.prices.version(),
        _ => meter.telemetry_price_version(),
    }
}

/// Adds one (hour, scope)'s new revision and its rows to a replacement.
fn push_revision(
    replacement: &mut LedgerReplacement,
    hour: i64,
    scope_name: &str,
    status: &str,
    usage_rows: u64,
    price_version: String,
    mut rows: Vec<LedgerRow>,
) {
    let revision = costplane_store::ledger::next_revision();
    for r in &mut rows {
        r.revision = revision;
    }
    replacement.hours.push(HourState {
        hour_ns: hour,
        scope: scope_name.to_owned(),
        revision,
        status: status.to_owned(),
        usage_rows,
        price_version,
    });
    replacement.rows.extend(rows);
}

/// The rows of an exported hour after repricing: its rows as exported,
/// then one `Correction` row per key whose cost or quantity changed, for
/// the difference. Their sum is the new price.
/// [`with_corrections`] for the rows of the tenants whose export was
/// served (`exported`); other tenants' rows are replaced as they are.
fn with_corrections_for(before: Vec<LedgerRow>, after: Vec<LedgerRow>, exported: impl Fn(&str) -> bool) -> Vec<LedgerRow> {
    let (kept, _replaced): (Vec<LedgerRow>, Vec<LedgerRow>) = before.into_iter().partition(|r| exported(&r.tenant));
    let (corrected, replacing): (Vec<LedgerRow>, Vec<LedgerRow>) = after.into_iter().partition(|r| exported(&r.tenant));
    let mut out = with_corrections(kept, &corrected);
    out.extend(replacing);
    out
}

fn with_corrections(before: Vec<LedgerRow>, after: &[LedgerRow]) -> Vec<LedgerRow> {
    let mut by_key: BTreeMap<String, (Option<LedgerRow>, Decimal, Decimal, Decimal, Decimal)> = BTreeMap::new();
    for r in &before {
        let e = by_key.entry(r.key()).or_insert_with(|| (None, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO));
        e.1 += r.cost;
        e.3 += r.consumed_quantity;
        if e.0.is_none() {
            e.0 = Some(r.clone());
        }
    }
    for r in after {
        let e = by_key.entry(r.key()).or_insert_with(|| (None, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO));
        e.2 += r.cost;
        e.4 += r.consumed_quantity;
        // The correction carries the new row's price version and names.
        e.0 = Some(r.clone());
    }
    let mut out = before;
    for (_, (template, old_cost, new_cost, old_q, new_q)) in by_key {
        let Some(mut row) = template else { continue };
        if old_cost == new_cost && old_q == new_q {
            continue;
        }
        row.cost = round_money(new_cost - old_cost);
        row.consumed_quantity = new_q - old_q;
        row.pricing_quantity = Decimal::ZERO;
        row.charge_class = Some(ChargeClass::Correction);
        row.charge_status = ChargeStatus::Closed;
        out.push(row);
    }
    out
}

/// The dimensions of `/metrics`' cost series.
pub const METRIC_DIMENSIONS: [Dimension; 7] = [
    Dimension::Tenant,
    Dimension::Project,
    Dimension::Service,
    Dimension::Source,
    Dimension::Model,
    Dimension::PricingStatus,
    Dimension::Currency,
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn slices_hold_whole_writes_up_to_a_row_count() {
        // Writes 1-5 of 4, 4, 3, 9 and 1 rows, at most 8 rows a slice:
        // [1, 2] (8), [3] (3; with 4 it would be 12), [4] (9, one write
        // alone over the bound), [5] (1).
        let writes = [(1, 4), (2, 4), (3, 3), (4, 9), (5, 1)];
        assert_eq!(slice_ends(&writes, 8), [2, 3, 4, 5]);
        assert_eq!(slice_ends(&writes, 100), [5]);
        assert!(slice_ends(&[], 8).is_empty());
    }

    fn row(usage_type: UsageType, cost: &str, tokens: u64, version: &str) -> LedgerRow {
        let sku = format!("acme/acme-internal/{usage_type}");
        let row = LedgerRow::builder(costplane_telemetry::usage::Source::Llm, 0, HOUR_NS)
            .cost(Decimal::from_str(cost).unwrap(), "USD")
            .service("acme models", "AI and Machine Learning")
            .provider("acme")
            .resource("globex/ai/assistant", "assistant")
            .consumed(Decimal::from(tokens), "Tokens")
            .pricing(Decimal::from(tokens) / Decimal::from(1_000_000), "1M Tokens")
            .sku(sku)
            .tags("{}")
            .owner("globex", "ai", "assistant")
            .model("acme-internal")
            .operation("chat")
            .usage_type(usage_type)
            .priced(costplane_telemetry::usage::PricingStatus::Priced, version)
            .build();
        LedgerRow { revision: 1, ..row }
    }

    #[test]
    fn an_exported_hour_keeps_its_rows_and_gets_corrections_for_the_difference() {
        // 500,000 input tokens at $1/M = 0.5 and 250,000 output at $2/M = 0.5,
        // repriced to $2/M and $4/M: 1.0 and 1.0.
        let before = vec![row(UsageType::Input, "0.5", 500_000, "v1"), row(UsageType::Output, "0.5", 250_000, "v1")];
        let after = vec![row(UsageType::Input, "1.0", 500_000, "v2"), row(UsageType::Output, "1.0", 250_000, "v2")];
        let rows = with_corrections(before.clone(), &after);
        assert_eq!(&rows[..2], &before[..], "the rows as exported stay");
        let corrections: Vec<(&str, Decimal, Decimal, &str, Option<&str>)> = rows[2..]
            .iter()
            .map(|r| (r.usage_type.as_str(), r.cost, r.consumed_quantity, r.price_version.as_str(), r.charge_class.map(|c| c.as_str())))
            .collect();
        // +0.5 each (1.0 - 0.5), no change in tokens, at the new version.
        let half = Decimal::from_str("0.5").unwrap();
        assert_eq!(
            corrections,
            [("input", half, Decimal::ZERO, "v2", Some("Correction")), ("output", half, Decimal::ZERO, "v2", Some("Correction"))]
        );
        assert_eq!(rows.iter().map(|r| r.cost).sum::<Decimal>(), Decimal::from(2));
        // Repricing again to the same prices adds nothing more.
        let again = with_corrections(rows.clone(), &after);
        assert_eq!(again, rows);
    }
}
