//! OTLP receivers. Both protocols share [`Ingest`]: decode, validate, hand
//! the rows to the pipeline, and build the (partial-success) answer. Neither
//! receiver knows which store is behind the pipeline.

mod body;
pub mod grpc;
mod grpc_body;
pub mod http;
pub mod inflight;
pub mod keys;
pub mod ratelimit;

use std::sync::Arc;

use costplane_cost::Meter;
use costplane_pipeline::{Pipeline, RequestDecoder, RequestMeta, Sender, Submission};
use costplane_telemetry::{decode_request, Encoding, Limits, Signal, TelemetryBatch};

use costplane_k8s::sample::Sample;

use crate::error::ApiError;
use crate::kubernetes::SampleScreen;

/// What an accepted export request answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOutcome {
    pub accepted: u64,
    pub rejected: u64,
    pub message: Option<String>,
}

/// The shared receive path.
#[derive(Debug, Clone)]
pub struct Ingest {
    pub pipeline: Pipeline,
    pub limits: Limits,
    pub max_body_bytes: usize,
    /// The in-flight request budget (`otlp.max_inflight_mib`): requests
    /// reserve their memory here before reading, inflating and decoding.
    pub inflight: inflight::InflightLimit,
    /// Measures usage and cost of what is accepted.
    pub meter: Option<Arc<Meter>>,
    /// Meters Kubernetes resource use from accepted metrics.
    pub kubernetes: Option<Arc<crate::kubernetes::KubernetesMetering>>,
    /// Ingest keys (none: open ingest).
    pub auth: Arc<keys::IngestAuth>,
    /// Per-tenant rate limits.
    pub rates: Arc<ratelimit::RateLimiter>,
    /// Counts for the periodic log line and first-unpriced-model warnings.
    pub activity: Arc<crate::activity::Activity>,
}

impl Ingest {
    /// Decodes one uncompressed request body and queues its valid items
    /// (with the disk buffer: logs the body first, so an answer of success
    /// means the items will be stored).
    pub fn export(&self, signal: Signal, encoding: Encoding, body: &[u8], sender: Option<Sender>) -> Result<ExportOutcome, ApiError> {
        // Usage is bucketed by this receive time; a replay of the buffered
        // request meters it with the same time (the record keeps it).
        let received_ns = RequestMeta::accepted_now(signal, encoding, String::new()).received_ns;
        let screen = self.kubernetes.as_deref().map(|k| k.screen());
        let conversion = convert(
            signal,
            encoding,
            body,
            &self.limits,
            self.meter.as_deref(),
            Origin { sender: sender.as_ref(), mode: self.auth.mode, received_ns, kubernetes: screen },
        )?;
        if !self.rates.is_off() {
            let tenant = sender.as_ref().map_or_else(|| tenants_of(&conversion.batch), |s| s.tenant.clone());
            self.rates.take(&tenant, conversion.accepted, body.len() as u64)?;
        }
        let message = conversion.partial_success_message(signal);
        if let Some(m) = &message {
            tracing::debug!(%signal, rejected = conversion.rejected, reason = %m, "rejected items in an export request");
        }
        let (accepted, rejected, batch) = (conversion.accepted, conversion.rejected, conversion.batch);
        self.pipeline.record_rejected(signal, rejected);
        let meta = RequestMeta { signal, encoding, received_ns, tenant: tenants_of(&batch), sender };
        // Kubernetes samples travel in the batch; the meter counts them
        // once it is stored.
        self.pipeline.submit(Submission { meta, body, batch })?;
        self.activity.record(signal, accepted);
        Ok(ExportOutcome { accepted, rejected, message })
    }

    /// What decodes buffered requests again (replay, spilled requests):
    /// the same limits and meter as the live path.
    pub fn decoder_for(limits: Limits, meter: Option<Arc<Meter>>, kubernetes: Option<SampleScreen>) -> Arc<dyn RequestDecoder> {
        Arc::new(BufferedRequestDecoder { limits, meter, kubernetes })
    }
}

/// Decodes a request body into rows, pins them to the ingest key's tenant
/// and measures their usage: the one conversion both the live path and the
/// buffer's replay run.
/// Who sent a request and when it arrived: what its rows are pinned to and
/// metered by.
struct Origin<'a> {
    sender: Option<&'a Sender>,
    mode: keys::TenantMode,
    received_ns: i64,
    /// With Kubernetes metering: the check its points pass first.
    kubernetes: Option<&'a SampleScreen>,
}

fn convert(
    signal: Signal,
    encoding: Encoding,
    body: &[u8],
    limits: &Limits,
    meter: Option<&Meter>,
    origin: Origin<'_>,
) -> Result<costplane_telemetry::Conversion, ApiError> {
    let Origin { sender, mode, received_ns, kubernetes } = origin;
    let mut conversion = decode_request(signal, encoding, body, limits)?;
    if let Some(sender) = sender {
        let tenancy = meter.map(|m| m.tenancy.clone()).unwrap_or_default();
        keys::pin(&mut conversion.batch, sender, &tenancy, mode)?;
    }
    // Refused points are neither stored nor metered.
    let owner = sender.map_or("", |s| s.tenant.as_str());
    let samples: Vec<Sample> = kubernetes.map(|k| k.apply(&mut conversion, owner, received_ns)).unwrap_or_default();
    if let Some(meter) = meter {
        let trusted = sender.is_none_or(|s| s.trust_provided_cost);
        conversion.batch.usage = keys::measure(meter, &mut conversion.batch, trusted, received_ns);
    }
    if let Some(k) = kubernetes {
        // Stored with the request, exactly once; metered once stored (see
        // `crate::kubernetes`).
        let rows = k.rows(&samples);
        conversion.batch.approx_bytes += rows.iter().map(|r| r.payload.len() + r.cluster.len() + 64).sum::<usize>();
        conversion.batch.usage.kubernetes_samples = rows;
    }
    Ok(conversion)
}

/// The tenants a request's resources name (from its usage rows), for
/// dead-letter files and their counters.
fn tenants_of(batch: &TelemetryBatch) -> String {
    let mut tenants: Vec<&str> = batch.usage.telemetry.iter().map(|u| u.tenant.as_str()).collect();
    tenants.sort_unstable();
    tenants.dedup();
    match tenants.len() {
        0 => costplane_cost::meter::UNASSIGNED.to_owned(),
        _ => tenants.join(","),
    }
}

/// Decodes and meters a buffered request as [`Ingest::export`] did.
struct BufferedRequestDecoder {
    limits: Limits,
    meter: Option<Arc<Meter>>,
    kubernetes: Option<SampleScreen>,
}

impl RequestDecoder for BufferedRequestDecoder {
    fn decode(&self, meta: &RequestMeta, body: &[u8]) -> Result<TelemetryBatch, String> {
        // The claim was checked when the request was accepted; a replay pins.
        convert(
            meta.signal,
            meta.encoding,
            body,
            &self.limits,
            self.meter.as_deref(),
            Origin {
                sender: meta.sender.as_ref(),
                mode: keys::TenantMode::Override,
                received_ns: meta.received_ns,
                kubernetes: self.kubernetes.as_ref(),
            },
        )
        // Its samples reach the meter when the batch is stored, as the live path's do.
        .map(|c| c.batch)
        .map_err(|e| e.to_string())
    }
}
