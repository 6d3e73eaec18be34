//! OTLP export requests → row batches, with per-item validation.
//!
//! An item (span, log record, metric data point) that breaks a rule is left
//! out and counted; the rest of the request is kept. The caller reports the
//! count and the first reasons to the client as OTLP `partial_success`.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1 as pm;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as pt;

use crate::model::*;
use crate::values::{any_value_into_string, attributes, find_attribute, hex_id};

/// Limits applied to every item. An item over a limit is rejected (not
/// truncated), so that what is stored is always what was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most attributes one item (or its resource, or scope) may carry.
    pub max_attributes: usize,
    /// Longest attribute value, log body or name, in bytes.
    pub max_value_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_attributes: 256, max_value_bytes: 64 * 1024 }
    }
}

/// How many reasons a partial-success message quotes.
pub const MAX_REASONS: usize = 3;

/// The result of converting one export request.
#[derive(Debug, Default)]
pub struct Conversion {
    pub batch: TelemetryBatch,
    pub accepted: u64,
    pub rejected: u64,
    pub reasons: Vec<String>,
}

impl Conversion {
    fn reject(&mut self, reason: String) {
        self.rejected += 1;
        if self.reasons.len() < MAX_REASONS {
            self.reasons.push(reason);
        }
    }

    /// Counts `n` items accepted by decoding as rejected after all (a later
    /// check, e.g. Kubernetes limits), with their reasons.
    pub fn reject_accepted(&mut self, n: u64, reasons: impl IntoIterator<Item = String>) {
        self.accepted = self.accepted.saturating_sub(n);
        self.rejected += n;
        let room = MAX_REASONS.saturating_sub(self.reasons.len());
        self.reasons.extend(reasons.into_iter().take(room));
    }

    /// The OTLP partial-success message, or `None` when nothing was rejected.
    pub fn partial_success_message(&self, signal: Signal) -> Option<String> {
        if self.rejected == 0 {
            return None;
        }
        let total = self.rejected + self.accepted;
        let mut msg = format!("rejected {} of {} {}: ", self.rejected, total, signal.item_name());
        msg.push_str(&self.reasons.join("; "));
        if self.rejected as usize > self.reasons.len() {
            msg.push_str("; ...");
        }
        Some(msg)
    }
}

/// Deepest nesting of arrays and maps inside one attribute value or body.
const MAX_VALUE_DEPTH: usize = 16;

fn check_attributes(kvs: &[KeyValue], what: &str, limits: &Limits) -> Result<(), String> {
    if kvs.len() > limits.max_attributes {
        return Err(format!("{what} has {} attributes, more than the limit of {}", kvs.len(), limits.max_attributes));
    }
    for kv in kvs {
        if kv.key.len() > limits.max_value_bytes {
            return Err(format!("{what} has an attribute key of {} bytes, over the limit of {}", kv.key.len(), limits.max_value_bytes));
        }
        check_value(kv.value.as_ref(), limits, 0).map_err(|e| format!("{what} attribute '{}': {e}", truncate(&kv.key)))?;
    }
    Ok(())
}

/// Every string and bytes field of a value, at any depth, against the
/// limits at its wire length (before rendering), and the element count of
/// every array and map against `max_attributes`.
pub(crate) fn check_value(value: Option<&AnyValue>, limits: &Limits, depth: usize) -> Result<(), String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    let Some(v) = value.and_then(|v| v.value.as_ref()) else { return Ok(()) };
    let over = |kind: &str, n: usize| Err(format!("a {kind} of {n} bytes, over the limit of {}", limits.max_value_bytes));
    match v {
        Value::StringValue(s) if s.len() > limits.max_value_bytes => over("string", s.len()),
        Value::BytesValue(b) if b.len() > limits.max_value_bytes => over("bytes value", b.len()),
        Value::ArrayValue(a) => {
            if depth >= MAX_VALUE_DEPTH {
                return Err(format!("values nested deeper than {MAX_VALUE_DEPTH} levels"));
            }
            if a.values.len() > limits.max_attributes {
                return Err(format!("an array of {} elements, more than the limit of {}", a.values.len(), limits.max_attributes));
            }
            a.values.iter().try_for_each(|item| check_value(Some(item), limits, depth + 1))
        }
        Value::KvlistValue(kv) => {
            if depth >= MAX_VALUE_DEPTH {
                return Err(format!("values nested deeper than {MAX_VALUE_DEPTH} levels"));
            }
            if kv.values.len() > limits.max_attributes {
                return Err(format!("a map of {} entries, more than the limit of {}", kv.values.len(), limits.max_attributes));
            }
            kv.values.iter().try_for_each(|item| {
                if item.key.len() > limits.max_value_bytes {
                    return over("map key", item.key.len());
                }
                check_value(item.value.as_ref(), limits, depth + 1)
            })
        }
        _ => Ok(()),
    }
}

fn check_len(value: &str, what: &str, limits: &Limits) -> Result<(), String> {
    if value.len() > limits.max_value_bytes {
        return Err(format!("{what} is {} bytes, over the limit of {}", value.len(), limits.max_value_bytes));
    }
    Ok(())
}

fn resource_info(resource: Option<&Resource>, schema_url: &str, limits: &Limits) -> Result<Arc<ResourceInfo>, String> {
    resource_info_owned(resource.cloned(), schema_url.to_owned(), limits)
}

fn resource_info_owned(resource: Option<Resource>, schema_url: String, limits: &Limits) -> Result<Arc<ResourceInfo>, String> {
    let kvs = resource.map(|r| r.attributes).unwrap_or_default();
    check_attributes(&kvs, "resource", limits)?;
    check_len(&schema_url, "resource schema_url", limits)?;
    let service_name = find_attribute(&kvs, "service.name").unwrap_or_default();
    Ok(Arc::new(ResourceInfo { service_name, attributes: attributes(&kvs), schema_url }))
}

fn scope_info(scope: Option<&InstrumentationScope>, schema_url: &str, limits: &Limits) -> Result<Arc<ScopeInfo>, String> {
    scope_info_owned(scope.cloned(), schema_url.to_owned(), limits)
}

fn scope_info_owned(scope: Option<InstrumentationScope>, schema_url: String, limits: &Limits) -> Result<Arc<ScopeInfo>, String> {
    let Some(scope) = scope else {
        return Ok(Arc::new(ScopeInfo { schema_url, ..ScopeInfo::default() }));
    };
    check_attributes(&scope.attributes, "scope", limits)?;
    check_len(&scope.name, "scope name", limits)?;
    check_len(&scope.version, "scope version", limits)?;
    check_len(&schema_url, "scope schema_url", limits)?;
    Ok(Arc::new(ScopeInfo {
        name: scope.name,
        version: scope.version,
        attributes: attributes(&scope.attributes),
        dropped_attributes_count: scope.dropped_attributes_count,
        schema_url,
    }))
}

/// The latest time both stores keep, in nanoseconds since 1970:
/// 2099-12-31T23:59:59Z. The columns go further (DuckDB's `TIMESTAMP_NS`
/// and ClickHouse's `DateTime64(9)` to 2262-04-11T23:47:16Z), but the
/// ClickHouse exporter's retention, `TTL toDateTime(Timestamp) +
/// toIntervalDay(n)`, counts in 32-bit seconds, which end at
/// 2106-02-07T06:28:15Z: a row whose expiry falls after that wraps to the
/// past and the next merge deletes it, acknowledged and lost. Up to 2100 a
/// retention of `clickhouse.*_ttl_days` (at most [`MAX_TTL_DAYS`]) fits.
/// The earliest time they hold, 1900-01-01 for ClickHouse, is before
/// anything an unsigned OTLP time can say.
pub const MAX_TIME_NS: u64 = 4_102_444_799_000_000_000;

/// The longest retention in days the ClickHouse store may be given: rows
/// at [`MAX_TIME_NS`] then expire at 2106-01-09, before 32-bit seconds end.
pub const MAX_TTL_DAYS: u32 = 2_200;

/// The range [`check_time`] holds times to, as reasons quote it.
pub const TIME_RANGE: &str = "1900-01-01T00:00:00Z..=2099-12-31T23:59:59Z";

/// A time the stores can hold, or the reason naming `field` and the range.
/// Every time a row keeps goes through here before the row is made, so an
/// item with a time no store can hold is rejected (partial success) rather
/// than accepted and lost or clamped.
pub(crate) fn check_time(nanos: u64, field: &str) -> Result<(), String> {
    if nanos > MAX_TIME_NS {
        return Err(format!("{field} {nanos} is outside the range the stores hold ({TIME_RANGE}); send nanoseconds since 1970-01-01"));
    }
    Ok(())
}

/// Whether `nanos` is a time the stores hold (the fast path's test: it
/// leaves every other item to the general path, which words the reason).
pub(crate) fn time_fits(nanos: u64) -> bool {
    nanos <= MAX_TIME_NS
}

/// A checked time as the rows hold it.
pub(crate) fn ts(nanos: u64) -> i64 {
    // Callers checked the range; clamp rather than wrap all the same.
    i64::try_from(nanos.min(MAX_TIME_NS)).unwrap_or(i64::MAX)
}

pub(crate) fn span_kind(kind: i32) -> &'static str {
    match pt::span::SpanKind::try_from(kind) {
        Ok(pt::span::SpanKind::Internal) => "Internal",
        Ok(pt::span::SpanKind::Server) => "Server",
        Ok(pt::span::SpanKind::Client) => "Client",
        Ok(pt::span::SpanKind::Producer) => "Producer",
        Ok(pt::span::SpanKind::Consumer) => "Consumer",
        _ => "Unspecified",
    }
}

fn status_code(status: Option<&pt::Status>) -> &'static str {
    status.map_or("Unset", |s| status_name(s.code))
}

/// The `StatusCode` column's text for an OTLP status code number.
pub(crate) fn status_name(code: i32) -> &'static str {
    match pt::status::StatusCode::try_from(code) {
        Ok(pt::status::StatusCode::Ok) => "Ok",
        Ok(pt::status::StatusCode::Error) => "Error",
        _ => "Unset",
    }
}

/// Converts a trace export request.
pub fn convert_traces(req: &ExportTraceServiceRequest, limits: &Limits) -> Conversion {
    convert_traces_owned(req.clone(), limits, None)
}

/// Converts a trace export request, moving its names and messages into the
/// rows (attributes are copied into packed lists).
/// `sizes`: each span's encoded length as it arrived (see `wire/mod.rs`);
/// without them (or when they do not match the spans) each span's
/// `encoded_len` is used.
pub fn convert_traces_owned(req: ExportTraceServiceRequest, limits: &Limits, sizes: Option<Vec<u32>>) -> Conversion {
    let total: usize = req.resource_spans.iter().flat_map(|rs| &rs.scope_spans).map(|ss| ss.spans.len()).sum();
    let mut sizes = sizes.filter(|s| s.len() == total).map(Vec::into_iter);
    let mut out = Conversion::default();
    for rs in req.resource_spans {
        let resource = resource_info_owned(rs.resource, rs.schema_url, limits);
        for ss in rs.scope_spans {
            let scope = scope_info_owned(ss.scope, ss.schema_url, limits);
            for (i, span) in ss.spans.into_iter().enumerate() {
                let size = sizes.as_mut().and_then(Iterator::next);
                let checked = match (&resource, &scope) {
                    (Ok(r), Ok(s)) => check_span(&span, limits).map(|ids| (ids, r, s)),
                    (Err(e), _) | (_, Err(e)) => Err(e.clone()),
                };
                match checked {
                    Ok((ids, r, s)) => {
                        let bytes = size.unwrap_or_else(|| encoded_size(&span));
                        let row = span_row(span, ids, r, s, bytes);
                        out.batch.approx_bytes += span_bytes(&row);
                        out.batch.spans.push(row);
                        out.accepted += 1;
                    }
                    Err(e) => out.reject(format!("span {i} ('{}'): {e}", truncate(&span.name))),
                }
            }
        }
    }
    out
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A span's ids (and its links'), checked and hex-encoded: everything
/// about a span that can be refused, decided before anything is moved.
struct SpanIds {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    links: Vec<(String, String)>,
}

fn check_span(span: &pt::Span, limits: &Limits) -> Result<SpanIds, String> {
    let trace_id = hex_id(&span.trace_id, 16, "trace_id", false)?;
    let span_id = hex_id(&span.span_id, 8, "span_id", false)?;
    let parent_span_id = hex_id(&span.parent_span_id, 8, "parent_span_id", true)?;
    check_time(span.start_time_unix_nano, "start_time_unix_nano")?;
    check_time(span.end_time_unix_nano, "end_time_unix_nano")?;
    check_len(&span.name, "name", limits)?;
    check_len(&span.trace_state, "trace_state", limits)?;
    check_len(span.status.as_ref().map_or("", |s| s.message.as_str()), "status message", limits)?;
    check_attributes(&span.attributes, "span", limits)?;
    if span.events.len() > limits.max_attributes || span.links.len() > limits.max_attributes {
        return Err(format!(
            "a span has {} events and {} links, more than the limit of {} each",
            span.events.len(),
            span.links.len(),
            limits.max_attributes
        ));
    }
    for ev in &span.events {
        check_time(ev.time_unix_nano, "event time_unix_nano")?;
        check_len(&ev.name, "event name", limits)?;
        check_attributes(&ev.attributes, "event", limits)?;
    }
    let mut links = Vec::with_capacity(span.links.len());
    for link in &span.links {
        check_len(&link.trace_state, "link trace_state", limits)?;
        check_attributes(&link.attributes, "link", limits)?;
        links.push((hex_id(&link.trace_id, 16, "link trace_id", false)?, hex_id(&link.span_id, 8, "link span_id", false)?));
    }
    Ok(SpanIds { trace_id, span_id, parent_span_id, links })
}

fn span_row(span: pt::Span, ids: SpanIds, resource: &Arc<ResourceInfo>, scope: &Arc<ScopeInfo>, encoded_bytes: u32) -> SpanRow {
    let events = span
        .events
        .into_iter()
        .map(|ev| SpanEvent { timestamp_ns: ts(ev.time_unix_nano), name: ev.name, attributes: attributes(&ev.attributes) })
        .collect();
    let links = span
        .links
        .into_iter()
        .zip(ids.links)
        .map(|(link, (trace_id, span_id))| SpanLink {
            trace_id,
            span_id,
            trace_state: link.trace_state,
            attributes: attributes(&link.attributes),
        })
        .collect();
    let status_code = status_code(span.status.as_ref());
    SpanRow {
        resource: Arc::clone(resource),
        scope: Arc::clone(scope),
        timestamp_ns: ts(span.start_time_unix_nano),
        trace_id: ids.trace_id,
        span_id: ids.span_id,
        parent_span_id: ids.parent_span_id,
        trace_state: span.trace_state,
        span_name: span.name,
        span_kind: span_kind(span.kind),
        span_attributes: attributes(&span.attributes),
        // A span that ends before it starts (clock skew) is kept with a zero duration.
        duration_ns: span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano),
        status_code,
        status_message: span.status.map(|s| s.message).unwrap_or_default(),
        events,
        links,
        encoded_bytes,
    }
}

fn encoded_size(item: &impl prost::Message) -> u32 {
    u32::try_from(item.encoded_len()).unwrap_or(u32::MAX)
}

/// What a span row takes in memory, for the memory budget: the row itself
/// and every allocation it owns, by capacity (the budget is meant to track
/// the process's memory, not the length of the text).
pub(crate) fn span_bytes(row: &SpanRow) -> usize {
    use std::mem::size_of;
    let strings = [&row.trace_id, &row.span_id, &row.parent_span_id, &row.trace_state, &row.span_name, &row.status_message];
    size_of::<SpanRow>()
        + strings.iter().map(|s| allocation_bytes(s.capacity())).sum::<usize>()
        + row.span_attributes.heap_bytes()
        + allocation_bytes(row.events.capacity() * size_of::<SpanEvent>())
        + row.events.iter().map(|e| allocation_bytes(e.name.capacity()) + e.attributes.heap_bytes()).sum::<usize>()
        + allocation_bytes(row.links.capacity() * size_of::<SpanLink>())
        + row
            .links
            .iter()
            .map(|l| {
                [&l.trace_id, &l.span_id, &l.trace_state].iter().map(|s| allocation_bytes(s.capacity())).sum::<usize>()
                    + l.attributes.heap_bytes()
            })
            .sum::<usize>()
}

/// What a log row takes in memory, as [`span_bytes`] counts a span.
pub(crate) fn log_bytes(row: &LogRow) -> usize {
    let strings = [&row.trace_id, &row.span_id, &row.severity_text, &row.body, &row.event_name];
    std::mem::size_of::<LogRow>() + strings.iter().map(|s| allocation_bytes(s.capacity())).sum::<usize>() + row.log_attributes.heap_bytes()
}

/// Converts a logs export request.
pub fn convert_logs(req: &ExportLogsServiceRequest, limits: &Limits) -> Conversion {
    convert_logs_owned(req.clone(), limits, None)
}

/// Converts a logs export request, moving its strings into the rows;
/// `sizes` as for [`convert_traces_owned`].
pub fn convert_logs_owned(req: ExportLogsServiceRequest, limits: &Limits, sizes: Option<Vec<u32>>) -> Conversion {
    let total: usize = req.resource_logs.iter().flat_map(|rl| &rl.scope_logs).map(|sl| sl.log_records.len()).sum();
    let mut sizes = sizes.filter(|s| s.len() == total).map(Vec::into_iter);
    let mut out = Conversion::default();
    for rl in req.resource_logs {
        let resource = resource_info_owned(rl.resource, rl.schema_url, limits);
        for sl in rl.scope_logs {
            let scope = scope_info_owned(sl.scope, sl.schema_url, limits);
            for (i, rec) in sl.log_records.into_iter().enumerate() {
                let size = sizes.as_mut().and_then(Iterator::next);
                let row = match (&resource, &scope) {
                    (Ok(r), Ok(s)) => log_row(rec, r, s, limits, size),
                    (Err(e), _) | (_, Err(e)) => Err(e.clone()),
                };
                match row {
                    Ok(row) => {
                        out.batch.approx_bytes += log_bytes(&row);
                        out.batch.logs.push(row);
                        out.accepted += 1;
                    }
                    Err(e) => out.reject(format!("log record {i}: {e}")),
                }
            }
        }
    }
    out
}

fn log_row(
    rec: opentelemetry_proto::tonic::logs::v1::LogRecord,
    resource: &Arc<ResourceInfo>,
    scope: &Arc<ScopeInfo>,
    limits: &Limits,
    size: Option<u32>,
) -> Result<LogRow, String> {
    check_attributes(&rec.attributes, "log record", limits)?;
    // The body is checked as sent, before rendering, then as rendered.
    check_value(rec.body.as_ref(), limits, 0).map_err(|e| format!("body: {e}"))?;
    check_len(&rec.severity_text, "severity_text", limits)?;
    check_len(&rec.event_name, "event_name", limits)?;
    let severity_number =
        u8::try_from(rec.severity_number).map_err(|_| format!("severity_number {} is outside 0..=24", rec.severity_number))?;
    let trace_id = hex_id(&rec.trace_id, 16, "trace_id", true)?;
    let span_id = hex_id(&rec.span_id, 8, "span_id", true)?;
    let encoded_bytes = size.unwrap_or_else(|| encoded_size(&rec));
    let body = any_value_into_string(rec.body);
    check_len(&body, "body", limits)?;
    // As the Collector's exporter does: a record without a timestamp is
    // stored at its observed time.
    let timestamp = if rec.time_unix_nano != 0 { rec.time_unix_nano } else { rec.observed_time_unix_nano };
    check_time(
        timestamp,
        if rec.time_unix_nano != 0 { "time_unix_nano" } else { "observed_time_unix_nano (the record has no time_unix_nano)" },
    )?;
    Ok(LogRow {
        resource: Arc::clone(resource),
        scope: Arc::clone(scope),
        timestamp_ns: ts(timestamp),
        trace_id,
        span_id,
        trace_flags: (rec.flags & 0xff) as u8,
        severity_text: rec.severity_text,
        severity_number,
        body,
        log_attributes: attributes(&rec.attributes),
        event_name: rec.event_name,
        encoded_bytes,
    })
}

/// Converts a metrics export request; one row per data point.
pub fn convert_metrics(req: &ExportMetricsServiceRequest, limits: &Limits) -> Conversion {
    let mut out = Conversion::default();
    for rm in &req.resource_metrics {
        let resource = resource_info(rm.resource.as_ref(), &rm.schema_url, limits);
        for sm in &rm.scope_metrics {
            let scope = scope_info(sm.scope.as_ref(), &sm.schema_url, limits);
            for metric in &sm.metrics {
                let (resource, scope) = match (&resource, &scope) {
                    (Ok(r), Ok(s)) => (r, s),
                    (Err(e), _) | (_, Err(e)) => {
                        let points = data_point_count(metric).max(1);
                        for _ in 0..points {
                            out.reject(format!("metric '{}': {e}", truncate(&metric.name)));
                        }
                        continue;
                    }
                };
                convert_metric(metric, resource, scope, limits, &mut out);
            }
        }
    }
    out
}

fn data_point_count(metric: &pm::Metric) -> usize {
    match &metric.data {
        Some(pm::metric::Data::Gauge(g)) => g.data_points.len(),
        Some(pm::metric::Data::Sum(s)) => s.data_points.len(),
        Some(pm::metric::Data::Histogram(h)) => h.data_points.len(),
        Some(pm::metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(pm::metric::Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

fn convert_metric(metric: &pm::Metric, resource: &Arc<ResourceInfo>, scope: &Arc<ScopeInfo>, limits: &Limits, out: &mut Conversion) {
    let name = truncate(&metric.name).to_owned();
    if metric.name.is_empty() {
        for _ in 0..data_point_count(metric).max(1) {
            out.reject("a metric has an empty name".to_owned());
        }
        return;
    }
    let Some(data) = &metric.data else {
        out.reject(format!("metric '{name}' has no data (gauge, sum, histogram, exponential histogram or summary)"));
        return;
    };
    let texts = [(&metric.name, "name"), (&metric.description, "description"), (&metric.unit, "unit")];
    if let Some(Err(e)) = texts.iter().map(|(t, what)| check_len(t, what, limits)).find(Result::is_err) {
        for _ in 0..data_point_count(metric).max(1) {
            out.reject(format!("metric '{name}': {e}"));
        }
        return;
    }
    let info = Arc::new(MetricInfo {
        resource: Arc::clone(resource),
        scope: Arc::clone(scope),
        name: metric.name.clone(),
        description: metric.description.clone(),
        unit: metric.unit.clone(),
    });
    let common = |attrs: &[KeyValue], start: u64, time: u64, flags: u32, bytes: u32| -> Result<PointCommon, String> {
        check_time(start, "start_time_unix_nano")?;
        check_time(time, "time_unix_nano")?;
        check_attributes(attrs, "data point", limits)?;
        Ok(PointCommon {
            metric: Arc::clone(&info),
            attributes: attributes(attrs),
            start_time_unix_ns: ts(start),
            time_unix_ns: ts(time),
            flags,
            encoded_bytes: bytes,
        })
    };
    let batch_bytes = |c: &PointCommon, extra: usize| 160 + c.attributes.heap_bytes() + extra;
    macro_rules! push_or_reject {
        ($res:expr, $vec:ident, $extra:expr, $i:expr) => {
            match $res {
                Ok(row) => {
                    out.batch.approx_bytes += batch_bytes(&row.common, $extra(&row));
                    out.batch.$vec.push(row);
                    out.accepted += 1;
                }
                Err(e) => out.reject(format!("metric '{name}' point {}: {e}", $i)),
            }
        };
    }
    match data {
        pm::metric::Data::Gauge(g) => {
            for (i, p) in g.data_points.iter().enumerate() {
                let row = common(&p.attributes, p.start_time_unix_nano, p.time_unix_nano, p.flags, encoded_size(p))
                    .and_then(|c| Ok(GaugeRow { common: c, value: number_value(p), exemplars: exemplars(&p.exemplars)? }));
                push_or_reject!(row, gauges, |r: &GaugeRow| r.exemplars.len() * 96, i);
            }
        }
        pm::metric::Data::Sum(s) => {
            for (i, p) in s.data_points.iter().enumerate() {
                let row = common(&p.attributes, p.start_time_unix_nano, p.time_unix_nano, p.flags, encoded_size(p)).and_then(|c| {
                    Ok(SumRow {
                        common: c,
                        value: number_value(p),
                        exemplars: exemplars(&p.exemplars)?,
                        aggregation_temporality: s.aggregation_temporality,
                        is_monotonic: s.is_monotonic,
                    })
                });
                push_or_reject!(row, sums, |r: &SumRow| r.exemplars.len() * 96, i);
            }
        }
        pm::metric::Data::Histogram(h) => {
            for (i, p) in h.data_points.iter().enumerate() {
                let row = common(&p.attributes, p.start_time_unix_nano, p.time_unix_nano, p.flags, encoded_size(p)).and_then(|c| {
                    if !p.bucket_counts.is_empty() && p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
                        return Err(format!(
                            "{} bucket counts for {} explicit bounds (OTLP needs bounds + 1)",
                            p.bucket_counts.len(),
                            p.explicit_bounds.len()
                        ));
                    }
                    Ok(HistogramRow {
                        common: c,
                        count: p.count,
                        sum: p.sum.unwrap_or(0.0),
                        bucket_counts: p.bucket_counts.clone(),
                        explicit_bounds: p.explicit_bounds.clone(),
                        exemplars: exemplars(&p.exemplars)?,
                        min: p.min.unwrap_or(0.0),
                        max: p.max.unwrap_or(0.0),
                        aggregation_temporality: h.aggregation_temporality,
                    })
                });
                push_or_reject!(
                    row,
                    histograms,
                    |r: &HistogramRow| (r.bucket_counts.len() + r.explicit_bounds.len()) * 8 + r.exemplars.len() * 96,
                    i
                );
            }
        }
        pm::metric::Data::ExponentialHistogram(h) => {
            for (i, p) in h.data_points.iter().enumerate() {
                let row = common(&p.attributes, p.start_time_unix_nano, p.time_unix_nano, p.flags, encoded_size(p)).and_then(|c| {
                    let (po, pc) = p.positive.as_ref().map(|b| (b.offset, b.bucket_counts.clone())).unwrap_or_default();
                    let (no, nc) = p.negative.as_ref().map(|b| (b.offset, b.bucket_counts.clone())).unwrap_or_default();
                    Ok(ExpHistogramRow {
                        common: c,
                        count: p.count,
                        sum: p.sum.unwrap_or(0.0),
                        scale: p.scale,
                        zero_count: p.zero_count,
                        positive_offset: po,
                        positive_bucket_counts: pc,
                        negative_offset: no,
                        negative_bucket_counts: nc,
                        exemplars: exemplars(&p.exemplars)?,
                        min: p.min.unwrap_or(0.0),
                        max: p.max.unwrap_or(0.0),
                        aggregation_temporality: h.aggregation_temporality,
                    })
                });
                push_or_reject!(
                    row,
                    exp_histograms,
                    |r: &ExpHistogramRow| (r.positive_bucket_counts.len() + r.negative_bucket_counts.len()) * 8 + r.exemplars.len() * 96,
                    i
                );
            }
        }
        pm::metric::Data::Summary(s) => {
            for (i, p) in s.data_points.iter().enumerate() {
                let row = common(&p.attributes, p.start_time_unix_nano, p.time_unix_nano, p.flags, encoded_size(p)).map(|c| SummaryRow {
                    common: c,
                    count: p.count,
                    sum: p.sum,
                    quantiles: p.quantile_values.iter().map(|q| (q.quantile, q.value)).collect(),
                });
                push_or_reject!(row, summaries, |r: &SummaryRow| r.quantiles.len() * 16, i);
            }
        }
    }
}

fn number_value(p: &pm::NumberDataPoint) -> f64 {
    match p.value {
        Some(pm::number_data_point::Value::AsDouble(d)) => d,
        Some(pm::number_data_point::Value::AsInt(i)) => i as f64,
        None => 0.0,
    }
}

fn exemplars(exs: &[pm::Exemplar]) -> Result<Vec<Exemplar>, String> {
    exs.iter()
        .map(|e| {
            check_time(e.time_unix_nano, "exemplar time_unix_nano")?;
            Ok(Exemplar {
                filtered_attributes: attributes(&e.filtered_attributes),
                time_unix_ns: ts(e.time_unix_nano),
                value: match e.value {
                    Some(pm::exemplar::Value::AsDouble(d)) => d,
                    Some(pm::exemplar::Value::AsInt(i)) => i as f64,
                    None => 0.0,
                },
                span_id: hex_id(&e.span_id, 8, "exemplar span_id", true)?,
                trace_id: hex_id(&e.trace_id, 16, "exemplar trace_id", true)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue { key: k.into(), value: Some(AnyValue { value: Some(Value::StringValue(v.into())) }), ..Default::default() }
    }

    fn span(attrs: usize, value_len: usize) -> Span {
        Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "s".into(),
            attributes: (0..attrs).map(|i| kv(&format!("k{i}"), &"v".repeat(value_len))).collect(),
            ..Default::default()
        }
    }

    fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource { attributes: vec![kv("service.name", "svc")], ..Default::default() }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn limits_reject_the_item_and_keep_the_rest() {
        let limits = Limits { max_attributes: 4, max_value_bytes: 16 };
        let conv = convert_traces(&request(vec![span(2, 3), span(5, 1), span(1, 17), span(4, 16)]), &limits);
        assert_eq!((conv.accepted, conv.rejected), (2, 2), "{:?}", conv.reasons);
        let msg = conv.partial_success_message(Signal::Traces).unwrap();
        assert!(msg.contains("span 1 ('s'): span has 5 attributes, more than the limit of 4"), "{msg}");
        assert!(msg.contains("span 2 ('s'): span attribute 'k0': a string of 17 bytes, over the limit of 16"), "{msg}");
        assert_eq!(conv.batch.spans.len(), 2);
        assert!(conv.batch.approx_bytes > 0);
    }

    #[test]
    fn limits_apply_at_every_depth_and_to_every_name() {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
        let limits = Limits { max_attributes: 4, max_value_bytes: 16 };
        let val = |v: Value| Some(AnyValue { value: Some(v) });
        let long = || val(Value::StringValue("x".repeat(17)));
        let nested = |inner: Option<AnyValue>| val(Value::ArrayValue(ArrayValue { values: vec![inner.unwrap()] }));
        let with = |value: Option<AnyValue>| {
            let mut s = span(0, 0);
            s.attributes = vec![KeyValue { key: "k".into(), value, ..Default::default() }];
            s
        };
        let mut deep = val(Value::IntValue(1));
        for _ in 0..20 {
            deep = nested(deep);
        }
        let bad = vec![
            // A long string three levels down, in an array in a map.
            with(val(Value::KvlistValue(KeyValueList {
                values: vec![KeyValue { key: "m".into(), value: nested(nested(long())), ..Default::default() }],
            }))),
            with(val(Value::BytesValue(vec![0; 17]))),
            with(val(Value::ArrayValue(ArrayValue { values: vec![AnyValue::default(); 5] }))),
            with(deep),
            Span { events: vec![pt::span::Event { name: "e".repeat(17), ..Default::default() }], ..span(0, 0) },
            Span { status: Some(pt::Status { message: "m".repeat(17), code: 2 }), ..span(0, 0) },
            Span { trace_state: "t".repeat(17), ..span(0, 0) },
        ];
        let n = bad.len() as u64;
        let conv = convert_traces(&request(bad), &limits);
        assert_eq!((conv.accepted, conv.rejected), (0, n), "{:?}", conv.reasons);
        let ok = with(nested(nested(val(Value::StringValue("x".repeat(16))))));
        assert_eq!(convert_traces(&request(vec![ok]), &limits).accepted, 1);
    }

    #[test]
    fn resource_data_is_shared_not_copied() {
        let conv = convert_traces(&request(vec![span(1, 1), span(1, 1)]), &Limits::default());
        assert!(Arc::ptr_eq(&conv.batch.spans[0].resource, &conv.batch.spans[1].resource));
        assert_eq!(conv.batch.spans[0].resource.service_name, "svc");
    }

    #[test]
    fn histogram_points_need_bounds_plus_one_buckets() {
        let metric = pm::Metric {
            name: "latency".into(),
            data: Some(pm::metric::Data::Histogram(pm::Histogram {
                data_points: vec![
                    pm::HistogramDataPoint {
                        bucket_counts: vec![1, 2, 3],
                        explicit_bounds: vec![1.0, 5.0],
                        count: 6,
                        ..Default::default()
                    },
                    pm::HistogramDataPoint { bucket_counts: vec![1, 2], explicit_bounds: vec![1.0, 5.0], count: 3, ..Default::default() },
                ],
                aggregation_temporality: 2,
            })),
            ..Default::default()
        };
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![pm::ResourceMetrics {
                scope_metrics: vec![pm::ScopeMetrics { metrics: vec![metric], ..Default::default() }],
                ..Default::default()
            }],
        };
        let conv = convert_metrics(&req, &Limits::default());
        assert_eq!((conv.accepted, conv.rejected), (1, 1));
        assert_eq!(conv.batch.histograms[0].bucket_counts, vec![1, 2, 3]);
        assert!(conv.reasons[0].contains("2 bucket counts for 2 explicit bounds"), "{:?}", conv.reasons);
    }
}
