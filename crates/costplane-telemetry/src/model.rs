//! costplane's internal row model: one struct per row of the OpenTelemetry
//! ClickHouse exporter's tables (`otel_traces`, `otel_logs`, `otel_metrics_*`).
//!
//! Invariants every row keeps (the stores rely on them):
//! - ids are lowercase hex strings (`""` when the OTLP item carried none);
//! - timestamps are nanoseconds since the Unix epoch (`i64`, as DuckDB's
//!   `TIMESTAMP_NS` and ClickHouse's `DateTime64(9)` store them);
//! - attribute values are rendered to strings the way the Collector renders
//!   `pcommon.Value.AsString()` (ints in decimal, bytes in base64, arrays and
//!   maps as JSON), so a query sees the same text on either backend;
//! - resource- and scope-level data is shared between the rows of one
//!   resource/scope through `Arc`, so a batch costs memory once per resource.

use std::sync::Arc;

pub use crate::attributes::Attributes;

/// The three OTLP signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    Traces,
    Logs,
    Metrics,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Logs, Signal::Metrics];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }

    /// The unit an OTLP partial-success answer counts for this signal.
    pub fn item_name(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Logs => "log records",
            Signal::Metrics => "data points",
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Resource-level data shared by every row of one OTLP resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceInfo {
    pub service_name: String,
    pub attributes: Attributes,
    pub schema_url: String,
}

/// Scope-level data shared by every row of one instrumentation scope.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScopeInfo {
    pub name: String,
    pub version: String,
    pub attributes: Attributes,
    pub dropped_attributes_count: u32,
    pub schema_url: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpanEvent {
    pub timestamp_ns: i64,
    pub name: String,
    pub attributes: Attributes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpanLink {
    pub trace_id: String,
    pub span_id: String,
    pub trace_state: String,
    pub attributes: Attributes,
}

/// One row of `otel_traces`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRow {
    pub resource: Arc<ResourceInfo>,
    pub scope: Arc<ScopeInfo>,
    pub timestamp_ns: i64,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub trace_state: String,
    pub span_name: String,
    pub span_kind: &'static str,
    pub span_attributes: Attributes,
    pub duration_ns: u64,
    pub status_code: &'static str,
    pub status_message: String,
    pub events: Vec<SpanEvent>,
    pub links: Vec<SpanLink>,
    /// The span's encoded OTLP size, for usage metering.
    pub encoded_bytes: u32,
}

/// One row of `otel_logs`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub resource: Arc<ResourceInfo>,
    pub scope: Arc<ScopeInfo>,
    pub timestamp_ns: i64,
    pub trace_id: String,
    pub span_id: String,
    pub trace_flags: u8,
    pub severity_text: String,
    pub severity_number: u8,
    pub body: String,
    pub log_attributes: Attributes,
    pub event_name: String,
    /// The record's encoded OTLP size, for usage metering.
    pub encoded_bytes: u32,
}

/// Metric-level data shared by every data point of one metric.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricInfo {
    pub resource: Arc<ResourceInfo>,
    pub scope: Arc<ScopeInfo>,
    pub name: String,
    pub description: String,
    pub unit: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub filtered_attributes: Attributes,
    pub time_unix_ns: i64,
    pub value: f64,
    pub span_id: String,
    pub trace_id: String,
}

/// Columns every metric table has after the shared metric info.
#[derive(Debug, Clone, PartialEq)]
pub struct PointCommon {
    pub metric: Arc<MetricInfo>,
    pub attributes: Attributes,
    pub start_time_unix_ns: i64,
    pub time_unix_ns: i64,
    pub flags: u32,
    /// The data point's encoded OTLP size, for usage metering.
    pub encoded_bytes: u32,
}

/// One row of `otel_metrics_gauge`.
#[derive(Debug, Clone, PartialEq)]
pub struct GaugeRow {
    pub common: PointCommon,
    pub value: f64,
    pub exemplars: Vec<Exemplar>,
}

/// One row of `otel_metrics_sum`.
#[derive(Debug, Clone, PartialEq)]
pub struct SumRow {
    pub common: PointCommon,
    pub value: f64,
    pub exemplars: Vec<Exemplar>,
    pub aggregation_temporality: i32,
    pub is_monotonic: bool,
}

/// One row of `otel_metrics_histogram`.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramRow {
    pub common: PointCommon,
    pub count: u64,
    pub sum: f64,
    pub bucket_counts: Vec<u64>,
    pub explicit_bounds: Vec<f64>,
    pub exemplars: Vec<Exemplar>,
    pub min: f64,
    pub max: f64,
    pub aggregation_temporality: i32,
}

/// One row of `otel_metrics_exp_histogram`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpHistogramRow {
    pub common: PointCommon,
    pub count: u64,
    pub sum: f64,
    pub scale: i32,
    pub zero_count: u64,
    pub positive_offset: i32,
    pub positive_bucket_counts: Vec<u64>,
    pub negative_offset: i32,
    pub negative_bucket_counts: Vec<u64>,
    pub exemplars: Vec<Exemplar>,
    pub min: f64,
    pub max: f64,
    pub aggregation_temporality: i32,
}

/// One row of `otel_metrics_summary`.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    pub common: PointCommon,
    pub count: u64,
    pub sum: f64,
    /// (quantile, value) pairs.
    pub quantiles: Vec<(f64, f64)>,
}

/// Rows bound for the store, grouped by table. A batch is what the receivers
/// hand to the pipeline and what the pipeline hands to `Store::write`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TelemetryBatch {
    pub spans: Vec<SpanRow>,
    pub logs: Vec<LogRow>,
    pub gauges: Vec<GaugeRow>,
    pub sums: Vec<SumRow>,
    pub histograms: Vec<HistogramRow>,
    pub exp_histograms: Vec<ExpHistogramRow>,
    pub summaries: Vec<SummaryRow>,
    /// Estimated heap bytes held by the rows; the pipeline's memory limit
    /// counts this figure.
    pub approx_bytes: usize,
    /// Identifies the batch across write retries (stores derive their
    /// deduplication tokens from it); set by the pipeline when it flushes.
    pub id: u64,
    /// Usage measured from these rows, and its cost.
    pub usage: crate::usage::UsageRows,
}

impl TelemetryBatch {
    /// Rows across all tables.
    /// Telemetry rows across all tables (usage rows not counted).
    pub fn rows(&self) -> usize {
        self.spans.len()
            + self.logs.len()
            + self.gauges.len()
            + self.sums.len()
            + self.histograms.len()
            + self.exp_histograms.len()
            + self.summaries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows() == 0 && self.usage.is_empty()
    }

    /// Moves every row of `other` into `self`.
    pub fn append(&mut self, mut other: TelemetryBatch) {
        self.spans.append(&mut other.spans);
        self.logs.append(&mut other.logs);
        self.gauges.append(&mut other.gauges);
        self.sums.append(&mut other.sums);
        self.histograms.append(&mut other.histograms);
        self.exp_histograms.append(&mut other.exp_histograms);
        self.summaries.append(&mut other.summaries);
        self.approx_bytes += other.approx_bytes;
        self.usage.append(other.usage);
    }

    /// Lengths of every row list (the seven telemetry tables, then usage
    /// telemetry, LLM and Kubernetes usage, Kubernetes samples): where one
    /// merged request ends.
    pub fn lens(&self) -> BatchLens {
        BatchLens([
            self.spans.len(),
            self.logs.len(),
            self.gauges.len(),
            self.sums.len(),
            self.histograms.len(),
            self.exp_histograms.len(),
            self.summaries.len(),
            self.usage.telemetry.len(),
            self.usage.llm.len(),
            self.usage.kubernetes.len(),
            self.usage.kubernetes_samples.len(),
        ])
    }

    /// Splits the batch in two at `at` (from [`TelemetryBatch::lens`] of an
    /// earlier state): `self` keeps the rows before, the result holds the
    /// rest. `approx_bytes` is left to the caller, who knows each part's size.
    pub fn split_off(&mut self, at: BatchLens) -> TelemetryBatch {
        let a = at.0;
        TelemetryBatch {
            spans: self.spans.split_off(a[0].min(self.spans.len())),
            logs: self.logs.split_off(a[1].min(self.logs.len())),
            gauges: self.gauges.split_off(a[2].min(self.gauges.len())),
            sums: self.sums.split_off(a[3].min(self.sums.len())),
            histograms: self.histograms.split_off(a[4].min(self.histograms.len())),
            exp_histograms: self.exp_histograms.split_off(a[5].min(self.exp_histograms.len())),
            summaries: self.summaries.split_off(a[6].min(self.summaries.len())),
            approx_bytes: 0,
            id: 0,
            usage: crate::usage::UsageRows {
                telemetry: self.usage.telemetry.split_off(a[7].min(self.usage.telemetry.len())),
                llm: self.usage.llm.split_off(a[8].min(self.usage.llm.len())),
                kubernetes: self.usage.kubernetes.split_off(a[9].min(self.usage.kubernetes.len())),
                kubernetes_samples: self.usage.kubernetes_samples.split_off(a[10].min(self.usage.kubernetes_samples.len())),
            },
        }
    }

    /// Rows per table, named as the tables are.
    pub fn table_counts(&self) -> [(&'static str, usize); 7] {
        [
            ("otel_traces", self.spans.len()),
            ("otel_logs", self.logs.len()),
            ("otel_metrics_gauge", self.gauges.len()),
            ("otel_metrics_sum", self.sums.len()),
            ("otel_metrics_histogram", self.histograms.len()),
            ("otel_metrics_exp_histogram", self.exp_histograms.len()),
            ("otel_metrics_summary", self.summaries.len()),
        ]
    }
}

/// Row-list lengths of a batch; see [`TelemetryBatch::lens`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchLens(pub [usize; 11]);

impl BatchLens {
    /// Element-wise difference (`self` - `earlier`).
    pub fn minus(self, earlier: BatchLens) -> BatchLens {
        let mut out = self.0;
        for (o, e) in out.iter_mut().zip(earlier.0) {
            *o -= e;
        }
        BatchLens(out)
    }
}

/// Heap bytes of one allocation of `capacity` bytes (a string's, say):
/// the capacity and the allocator's header.
pub(crate) fn allocation_bytes(capacity: usize) -> usize {
    if capacity == 0 {
        0
    } else {
        capacity + 16
    }
}
