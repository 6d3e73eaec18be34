//! Kubernetes metering on the ingest path: samples are picked out of each
//! accepted metrics request (a name match per point) and travel in its
//! batch; once the batch is stored they are accumulated per hour by
//! [`costplane_k8s::K8sMeter`], and each closed hour's usage goes to the
//! store's `costplane_usage_kubernetes` through the pipeline's retried
//! write (`submit_internal`). The closer prices the stored usage (scope
//! `kubernetes`); an hour written again (late samples) is priced again.
//!
//! Invariants:
//! - Samples are counted only once stored: a refused request (which the
//!   client resends) or a dead-lettered one is not counted.
//! - Every accepted sample is a row of the request's own batch
//!   (`costplane_usage_k8s_samples`), written through the disk buffer and
//!   exactly once with the request's telemetry; the pipeline hands each
//!   stored batch to [`KubernetesMetering`] ([`StoredObserver`]) in the
//!   order the writes end, replays of the disk buffer first. Before the
//!   pipeline starts, [`KubernetesMetering::rebuild`] feeds the meter the
//!   stored samples of the last hours. The meter counts each sample once
//!   whatever the path (a batch the store held already, a client's retry),
//!   so a restart (kill -9 included) neither loses the part of an hour
//!   before it nor lets a replay across an hour's end cut that hour down to
//!   a fragment.
//! - Hours closed before the pipeline is attached (by the rebuild) are held
//!   and stored once it is.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use costplane_k8s::allocate::HourUsage;
use costplane_k8s::meter::MeterStats;
use costplane_k8s::sample::{screen, Sample};
use costplane_k8s::{K8sMeter, KubernetesConfig, SampleLimits};
use costplane_pipeline::{Pipeline, StoredObserver};
use costplane_store::ledger::Ledger;
use costplane_store::{Store, StoreError};
use costplane_telemetry::usage::{KubernetesUsage, UsageRows};
use costplane_telemetry::{Conversion, TelemetryBatch};
use tokio_util::sync::CancellationToken;

/// The receivers' check of Kubernetes points (`[kubernetes.limits]`), run
/// on the live path and on a replay of the buffered request alike.
#[derive(Debug, Clone)]
pub struct SampleScreen {
    cluster: String,
    tenant_attribute: String,
    limits: SampleLimits,
}

impl SampleScreen {
    pub fn new(c: &KubernetesConfig) -> Self {
        SampleScreen { cluster: c.cluster.clone(), tenant_attribute: c.tenant_attribute.clone(), limits: c.limits.clone() }
    }

    /// Refuses the Kubernetes points no real cluster reports (as rejected
    /// items of `conversion`) and returns the samples of the rest, owned by
    /// `owner` (the ingest key's tenant; empty for open ingest).
    pub fn apply(&self, conversion: &mut Conversion, owner: &str, received_ns: i64) -> Vec<Sample> {
        let batch = &mut conversion.batch;
        if batch.gauges.is_empty() && batch.sums.is_empty() {
            return Vec::new();
        }
        let screened = screen(batch, &self.cluster, &self.tenant_attribute, owner, &self.limits, received_ns);
        if screened.rejected > 0 {
            conversion.reject_accepted(screened.rejected, screened.reasons);
        }
        screened.samples
    }

    /// The stored rows of `samples` (written with their request).
    pub fn rows(&self, samples: &[Sample]) -> Vec<KubernetesUsage> {
        costplane_k8s::samples::encode(samples, &self.cluster)
    }
}

/// How often hours the clock left behind are closed.
const TICK: Duration = Duration::from_secs(15);

/// How often stored samples older than [`KEEP_SAMPLES`] are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Hours of sample time stored samples are kept (a rebuild reads 3).
const KEEP_SAMPLES: i64 = 24;

/// The server's Kubernetes meter.
#[derive(Debug)]
pub struct KubernetesMetering {
    meter: Mutex<K8sMeter>,
    /// Where closed hours are stored; attached once the pipeline runs.
    pipeline: OnceLock<Pipeline>,
    /// Hours closed before the pipeline was attached.
    held: Mutex<Vec<HourUsage>>,
    screen: SampleScreen,
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

impl KubernetesMetering {
    pub fn new(config: KubernetesConfig) -> Arc<Self> {
        let screen = SampleScreen::new(&config);
        Arc::new(KubernetesMetering {
            meter: Mutex::new(K8sMeter::new(config)),
            pipeline: OnceLock::new(),
            held: Mutex::new(Vec::new()),
            screen,
        })
    }

    /// Feeds the meter the stored samples of the newest hours (see the
    /// module header); run before the pipeline starts. Returns how many
    /// samples were read.
    pub async fn rebuild(&self, store: &Arc<dyn Store>) -> Result<usize, StoreError> {
        let rows = Ledger::new(Arc::clone(store)).recent_kubernetes_samples(costplane_k8s::samples::REBUILD_HOURS).await?;
        let samples = costplane_k8s::samples::decode(&rows).map_err(|e| StoreError::Unexpected(e.to_string()))?;
        let n = samples.len();
        if n > 0 {
            let hours = self.lock().observe(samples, now_ns());
            self.book(&hours);
            tracing::info!(samples = n, "kubernetes meter rebuilt from the stored samples of its last hours");
        }
        Ok(n)
    }

    /// Stores closed hours through `pipeline` from now on, and the hours
    /// held until now.
    pub fn attach(&self, pipeline: Pipeline) {
        let _ = self.pipeline.set(pipeline);
        let held = std::mem::take(&mut *self.held.lock().unwrap_or_else(|p| p.into_inner()));
        self.book(&held);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, K8sMeter> {
        self.meter.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the receivers check Kubernetes points against.
    pub fn screen(&self) -> &SampleScreen {
        &self.screen
    }

    /// Adds samples; stores the hours they close.
    fn observe(&self, samples: Vec<Sample>) {
        if samples.is_empty() {
            return;
        }
        let hours = self.lock().observe(samples, now_ns());
        self.book(&hours);
    }

    /// Closes every open hour now; returns the usage rows stored.
    pub fn flush(&self) -> usize {
        let hours = self.lock().flush();
        self.book(&hours)
    }

    pub fn stats(&self) -> MeterStats {
        self.lock().stats.clone()
    }

    fn book(&self, hours: &[HourUsage]) -> usize {
        if hours.is_empty() {
            return 0;
        }
        // One write stamp per call: every row of an hour shares it, and a
        // later write of the same hour has a larger one.
        let written = now_ns();
        let cluster = self.lock().config().cluster.clone();
        let kubernetes: Vec<_> = hours.iter().flat_map(|h| costplane_k8s::usage::encode(h, &cluster, written)).collect();
        let n = kubernetes.len();
        let approx_bytes = kubernetes.iter().map(|r| r.payload.len() + 64).sum();
        let Some(pipeline) = self.pipeline.get() else {
            self.held.lock().unwrap_or_else(|p| p.into_inner()).extend(hours.iter().cloned());
            return n;
        };
        let batch = TelemetryBatch { usage: UsageRows { kubernetes, ..UsageRows::default() }, approx_bytes, ..TelemetryBatch::default() };
        match pipeline.submit_internal(batch) {
            Ok(()) => tracing::debug!(rows = n, hours = hours.len(), "kubernetes usage stored"),
            Err(e) => tracing::error!(error = %e, rows = n, "kubernetes usage could not be queued"),
        }
        n
    }

    /// Closes hours the clock left behind, and deletes stored samples of
    /// hours more than [`KEEP_SAMPLES`] hours before the newest sample
    /// (sample time, not the clock: a backfill of old metrics keeps its
    /// samples until its own hours are done), until `stop`.
    pub fn spawn_ticker(self: &Arc<Self>, store: Arc<dyn Store>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            let mut prune = tokio::time::interval(PRUNE_EVERY);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {
                        let hours = me.lock().close_due(now_ns());
                        me.book(&hours);
                    }
                    _ = prune.tick() => {
                        let newest = me.lock().watermark();
                        if newest == i64::MIN {
                            continue;
                        }
                        let before = newest.div_euclid(costplane_ledger::HOUR_NS).saturating_sub(KEEP_SAMPLES).saturating_mul(costplane_ledger::HOUR_NS);
                        match store.prune_kubernetes_samples(before).await {
                            Ok(n) if n > 0 => tracing::debug!(rows = n, "stored kubernetes samples past their use deleted"),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "deleting old kubernetes samples failed; tried again in an hour"),
                        }
                    }
                }
            }
        })
    }
}

impl StoredObserver for KubernetesMetering {
    fn stored(&self, batch: &TelemetryBatch) {
        let rows = &batch.usage.kubernetes_samples;
        if rows.is_empty() {
            return;
        }
        match costplane_k8s::samples::decode(rows) {
            Ok(samples) => self.observe(samples),
            // Rows this process encoded a moment ago: a failure is a bug,
            // and the stored rows are what the next rebuild reads.
            Err(e) => tracing::error!(error = %e, rows = rows.len(), "kubernetes samples of a stored batch could not be read"),
        }
    }
}
