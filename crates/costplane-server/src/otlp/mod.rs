//! OTLP receivers. Both protocols share [`Ingest`]: decode, validate, hand
//! the rows to the pipeline, and build the (partial-success) answer. Neither
//! receiver knows which store is behind the pipeline.

mod body;
pub mod grpc;
mod grpc_body;
pub mod http;
pub mod inflight;

use std::sync::Arc;

use costplane_cost::Meter;
use costplane_pipeline::Pipeline;
use costplane_telemetry::{decode_request, Encoding, Limits, Signal};

use crate::error::ApiError;

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
}

impl Ingest {
    /// Decodes one uncompressed request body and queues its valid items.
    pub fn export(&self, signal: Signal, encoding: Encoding, body: &[u8]) -> Result<ExportOutcome, ApiError> {
        let conversion = decode_request(signal, encoding, body, &self.limits)?;
        let message = conversion.partial_success_message(signal);
        if let Some(m) = &message {
            tracing::debug!(%signal, rejected = conversion.rejected, reason = %m, "rejected items in an export request");
        }
        let (accepted, rejected) = (conversion.accepted, conversion.rejected);
        let mut batch = conversion.batch;
        if let Some(meter) = &self.meter {
            batch.usage = meter.measure(&batch);
        }
        self.pipeline.submit(batch)?;
        Ok(ExportOutcome { accepted, rejected, message })
    }
}
