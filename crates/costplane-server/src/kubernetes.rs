//! Kubernetes metering on the ingest path: samples are picked out of each
//! accepted metrics request (a name match per point), accumulated per hour
//! by [`costplane_k8s::K8sMeter`], and each closed hour's usage goes to the
//! store's `costplane_usage_kubernetes` through the pipeline's retried
//! write (`submit_internal`), never attached to the request's batch: a
//! spilled or replayed request is decoded again without metering, so
//! nothing is metered twice. The closer prices the stored usage (scope
//! `kubernetes`); an hour written again (late samples) is priced again.
//!
//! Samples are added only after the request was accepted, so a refused
//! request (which the client resends) is not counted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use costplane_k8s::allocate::HourUsage;
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
    pipeline: Pipeline,
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

impl KubernetesMetering {
    pub fn new(config: KubernetesConfig, pipeline: Pipeline) -> Arc<Self> {
        Arc::new(KubernetesMetering { meter: Mutex::new(K8sMeter::new(config)), pipeline })
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

    /// Adds the samples of an accepted request; stores hours they close.
    pub fn observe(&self, samples: Vec<Sample>) {
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
        let batch = TelemetryBatch { usage: UsageRows { kubernetes, ..UsageRows::default() }, approx_bytes, ..TelemetryBatch::default() };
        match self.pipeline.submit_internal(batch) {
            Ok(()) => tracing::debug!(rows = n, hours = hours.len(), "kubernetes usage stored"),
            Err(e) => tracing::error!(error = %e, rows = n, "kubernetes usage could not be queued"),
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
                        let hours = me.lock().close_due(now_ns());
                        me.book(&hours);
                    }
                }
            }
        })
    }
}
