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
use costplane_k8s::sample::{screen, Sample};
use costplane_k8s::{K8sMeter, KubernetesConfig, SampleLimits};
use costplane_pipeline::Pipeline;
use costplane_telemetry::usage::UsageRows;
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
}

/// How often hours the clock left behind are closed.
const TICK: Duration = Duration::from_secs(15);

/// The server's Kubernetes meter.
#[derive(Debug)]
pub struct KubernetesMetering {
    meter: Mutex<K8sMeter>,
    pipeline: Pipeline,
    screen: SampleScreen,
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

impl KubernetesMetering {
    pub fn new(config: KubernetesConfig, pipeline: Pipeline) -> Arc<Self> {
        let screen = SampleScreen::new(&config);
        Arc::new(KubernetesMetering { meter: Mutex::new(K8sMeter::new(config)), pipeline, screen })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, K8sMeter> {
        self.meter.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the receivers check Kubernetes points against.
    pub fn screen(&self) -> &SampleScreen {
        &self.screen
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
