//! Kubernetes metering on the ingest path: samples are picked out of each
//! accepted metrics request (a name match per point), accumulated per hour
//! by [`costplane_k8s::K8sMeter`], and closed hours go to the ledger through
//! the pipeline as costplane's own rows (`submit_internal`), never attached
//! to the request's batch: a spilled or replayed request is decoded again
//! without metering, so nothing is booked twice.
//!
//! Samples are added only after the request was accepted, so a refused
//! request (which the client resends) is not counted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use costplane_k8s::meter::MeterStats;
use costplane_k8s::sample::{extract, Sample};
use costplane_k8s::{K8sMeter, KubernetesConfig};
use costplane_pipeline::Pipeline;
use costplane_telemetry::usage::UsageRows;
use costplane_telemetry::TelemetryBatch;
use tokio_util::sync::CancellationToken;

/// How often hours the clock left behind are closed.
const TICK: Duration = Duration::from_secs(15);

/// The server's Kubernetes meter.
#[derive(Debug)]
pub struct KubernetesMetering {
    meter: Mutex<K8sMeter>,
    currency: String,
    price_version: String,
    pipeline: Pipeline,
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

impl KubernetesMetering {
    pub fn new(config: KubernetesConfig, currency: String, pipeline: Pipeline) -> Arc<Self> {
        let price_version = config.prices.version();
        Arc::new(KubernetesMetering { meter: Mutex::new(K8sMeter::new(config)), currency, price_version, pipeline })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, K8sMeter> {
        self.meter.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Kubernetes samples of a decoded batch (cheap when there are none).
    pub fn samples(&self, batch: &TelemetryBatch) -> Vec<Sample> {
        if batch.gauges.is_empty() && batch.sums.is_empty() {
            return Vec::new();
        }
        let (cluster, tenant) = {
            let m = self.lock();
            (m.config().cluster.clone(), m.config().tenant_attribute.clone())
        };
        extract(batch, &cluster, &tenant)
    }

    /// Adds the samples of an accepted request; books hours they close.
    pub fn observe(&self, samples: Vec<Sample>) {
        if samples.is_empty() {
            return;
        }
        let lines = self.lock().observe(samples, now_ns());
        self.book(&lines);
    }

    /// Closes every open hour now; returns the rows booked.
    pub fn flush(&self) -> usize {
        let lines = self.lock().flush();
        self.book(&lines)
    }

    pub fn stats(&self) -> MeterStats {
        self.lock().stats.clone()
    }

    fn book(&self, lines: &[costplane_k8s::allocate::Line]) -> usize {
        if lines.is_empty() {
            return 0;
        }
        let ledger = costplane_k8s::ledger::rows(lines, &self.currency, &self.price_version);
        let n = ledger.len();
        let batch =
            TelemetryBatch { usage: UsageRows { ledger, ..UsageRows::default() }, approx_bytes: n * 512, ..TelemetryBatch::default() };
        match self.pipeline.submit_internal(batch) {
            Ok(()) => tracing::debug!(rows = n, "kubernetes hours booked"),
            Err(e) => tracing::error!(error = %e, rows = n, "kubernetes cost rows could not be queued"),
        }
        n
    }

    /// Closes hours the clock left behind until `stop`.
    pub fn spawn_ticker(self: &Arc<Self>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {
                        let lines = me.lock().close_due(now_ns());
                        me.book(&lines);
                    }
                }
            }
        })
    }
}
