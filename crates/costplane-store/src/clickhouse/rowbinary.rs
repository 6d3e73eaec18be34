//! Rows → ClickHouse `RowBinary`, one body per insert (a table's rows of
//! one partition).
//!
//! Format: values back to back in the INSERT's column order; strings and
//! array/map lengths as unsigned LEB128; numbers little-endian;
//! `DateTime64(9)` as Int64 nanoseconds; `Map(K, V)` as a count then key,
//! value pairs; `Bool` as one byte. `Nested` columns are inserted as their
//! flattened subcolumns (`Events.Name` ...), each an `Array`.
//!
//! The telemetry encoders write the columns `crate::tables` describes, in
//! its order (the INSERT names them from there); `column_order.rs` decodes
//! their output by the description to hold them to it.

use costplane_telemetry::model::*;
use costplane_telemetry::usage::{HourState, KubernetesUsage, LedgerRow, LlmUsageRow, TelemetryUsage};
use rust_decimal::Decimal;
use std::sync::Arc;

#[derive(Default)]
pub struct RowBinary {
    pub buf: Vec<u8>,
}

impl RowBinary {
    fn uleb(&mut self, mut n: u64) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.buf.push(byte);
                return;
            }
            self.buf.push(byte | 0x80);
        }
    }

    fn str(&mut self, s: &str) {
        self.uleb(s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }

    fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Decimal(38, 12): the scaled mantissa as Int128. Every write checks
    /// its decimals before encoding (`crate::money::check_rows`), so the
    /// fallback is unreachable; debug builds assert it.
    fn decimal(&mut self, d: Decimal) {
        let m = crate::money::mantissa_38_12(d);
        debug_assert!(m.is_some(), "{d} was not checked to fit DECIMAL(38, 12)");
        self.buf.extend_from_slice(&m.unwrap_or_default().to_le_bytes());
    }

    fn map(&mut self, attrs: &Attributes) {
        self.uleb(attrs.len() as u64);
        for (k, v) in attrs {
            self.str(k);
            self.str(v);
        }
    }

    /// The map of a shared (`Arc`) attribute list: encoded once while
    /// consecutive rows share it (all rows of one resource or scope), then
    /// copied as bytes.
    fn shared_map<T>(&mut self, owner: &Arc<T>, attrs: &Attributes, cache: &mut MapCache<T>) {
        if !cache.owner.as_ref().is_some_and(|o| Arc::ptr_eq(o, owner)) {
            let mut w = RowBinary { buf: std::mem::take(&mut cache.bytes) };
            w.buf.clear();
            w.map(attrs);
            cache.bytes = w.buf;
            cache.owner = Some(Arc::clone(owner));
        }
        self.buf.extend_from_slice(&cache.bytes);
    }

    fn array<T>(&mut self, items: &[T], mut each: impl FnMut(&mut Self, &T)) {
        self.uleb(items.len() as u64);
        for item in items {
            each(self, item);
        }
    }
}

/// The last shared attribute map encoded, and its bytes.
struct MapCache<T> {
    owner: Option<Arc<T>>,
    bytes: Vec<u8>,
}

impl<T> Default for MapCache<T> {
    fn default() -> Self {
        MapCache { owner: None, bytes: Vec::new() }
    }
}

pub fn traces<'a>(rows: impl IntoIterator<Item = &'a SpanRow>) -> Vec<u8> {
    let mut w = RowBinary::default();
    let mut resources = MapCache::default();
    for r in rows {
        w.i64(r.timestamp_ns);
        w.str(&r.trace_id);
        w.str(&r.span_id);
        w.str(&r.parent_span_id);
        w.str(&r.trace_state);
        w.str(&r.span_name);
        w.str(r.span_kind);
        w.str(&r.resource.service_name);
        w.shared_map(&r.resource, &r.resource.attributes, &mut resources);
        w.str(&r.scope.name);
        w.str(&r.scope.version);
        w.map(&r.span_attributes);
        w.u64(r.duration_ns);
        w.str(r.status_code);
        w.str(&r.status_message);
        w.array(&r.events, |w, e| w.i64(e.timestamp_ns));
        w.array(&r.events, |w, e| w.str(&e.name));
        w.array(&r.events, |w, e| w.map(&e.attributes));
        w.array(&r.links, |w, l| w.str(&l.trace_id));
        w.array(&r.links, |w, l| w.str(&l.span_id));
        w.array(&r.links, |w, l| w.str(&l.trace_state));
        w.array(&r.links, |w, l| w.map(&l.attributes));
    }
    w.buf
}

pub fn logs<'a>(rows: impl IntoIterator<Item = &'a LogRow>) -> Vec<u8> {
    let mut w = RowBinary::default();
    let (mut resources, mut scopes) = (MapCache::default(), MapCache::default());
    for r in rows {
        w.i64(r.timestamp_ns);
        w.str(&r.trace_id);
        w.str(&r.span_id);
        w.u8(r.trace_flags);
        w.str(&r.severity_text);
        w.u8(r.severity_number);
        w.str(&r.resource.service_name);
        w.str(&r.body);
        w.str(&r.resource.schema_url);
        w.shared_map(&r.resource, &r.resource.attributes, &mut resources);
        w.str(&r.scope.schema_url);
        w.str(&r.scope.name);
        w.str(&r.scope.version);
        w.shared_map(&r.scope, &r.scope.attributes, &mut scopes);
        w.map(&r.log_attributes);
        w.str(&r.event_name);
    }
    w.buf
}

/// The resource and scope maps last encoded by [`metric_prefix`].
#[derive(Default)]
struct PrefixCaches {
    resources: MapCache<ResourceInfo>,
    scopes: MapCache<ScopeInfo>,
}

fn metric_prefix(w: &mut RowBinary, c: &PointCommon, caches: &mut PrefixCaches) {
    let m = &c.metric;
    w.shared_map(&m.resource, &m.resource.attributes, &mut caches.resources);
    w.str(&m.resource.schema_url);
    w.str(&m.scope.name);
    w.str(&m.scope.version);
    w.shared_map(&m.scope, &m.scope.attributes, &mut caches.scopes);
    w.u32(m.scope.dropped_attributes_count);
    w.str(&m.scope.schema_url);
    w.str(&m.resource.service_name);
    w.str(&m.name);
    w.str(&m.description);
    w.str(&m.unit);
    w.map(&c.attributes);
    w.i64(c.start_time_unix_ns);
    w.i64(c.time_unix_ns);
}

fn exemplars(w: &mut RowBinary, ex: &[Exemplar]) {
    w.array(ex, |w, e| w.map(&e.filtered_attributes));
    w.array(ex, |w, e| w.i64(e.time_unix_ns));
    w.array(ex, |w, e| w.f64(e.value));
    w.array(ex, |w, e| w.str(&e.span_id));
    w.array(ex, |w, e| w.str(&e.trace_id));
}

pub fn gauges<'a>(rows: impl IntoIterator<Item = &'a GaugeRow>) -> Vec<u8> {
    let mut w = RowBinary::default();
    let mut caches = PrefixCaches::default();
    for r in rows {
        metric_prefix(&mut w, &r.common, &mut caches);
        w.f64(r.value);
        w.u32(r.common.flags);
        exemplars(&mut w, &r.exemplars);
    }
    w.buf
}

pub fn sums<'a>(rows: impl IntoIterator<Item = &'a SumRow>) -> Vec<u8> {
    let mut w = RowBinary::default();
    let mut caches = PrefixCaches::default();
    for r in rows {
        metric_prefix(&mut w, &r.common, &mut caches);
        w.f64(r.value);
        w.u32(r.common.flags);
        exemplars(&mut w, &r.exemplars);
        w.i32(r.aggregation_temporality);
        w.u8(u8::from(r.is_monotonic));
    }
    w.buf
}

pub fn histograms<'a>(rows: impl IntoIterator<Item = &'a HistogramRow>) -> Vec<u8> {
    let mut w = RowBinary::default();
    let mut caches = PrefixCaches::default();
    for r in rows {
        metric_prefix(&mut w, &r.common, &mut caches);
        w.u64(r.count);
        w.f64(r.sum);
        w.array(&r.bucket_counts, |w, v| w.u64(*v));
        w.array(&r.explicit_bounds, |w, v| w.f64(*v));
        exemplars(&mut w, &r.exemplars);
        w.u32(r.common.flags);
        w.f64(r.min);
        w.f64(r.max);
        w.i32(r.aggregation_temporality);
    }
    w.buf
}

pub fn exp_histograms<'a>(rows: impl IntoIterator<Item = &'a ExpHistogramRow>) -> Vec<u8> {
    let mut w = RowBinary::default();
    let mut caches = PrefixCaches::default();
    for r in rows {
        metric_prefix(&mut w, &r.common, &mut caches);
        w.u64(r.count);
        w.f64(r.sum);
        w.i32(r.scale);
        w.u64(r.zero_count);
        w.i32(r.positive_offset);
        w.array(&r.positive_bucket_counts, |w, v| w.u64(*v));
        w.i32(r.negative_offset);
        w.array(&r.negative_bucket_counts, |w, v| w.u64(*v));
        exemplars(&mut w, &r.exemplars);
        w.u32(r.common.flags);
        w.f64(r.min);
        w.f64(r.max);
        w.i32(r.aggregation_temporality);
    }
    w.buf
}

pub fn summaries<'a>(rows: impl IntoIterator<Item = &'a SummaryRow>) -> Vec<u8> {
    let mut w = RowBinary::default();
    let mut caches = PrefixCaches::default();
    for r in rows {
        metric_prefix(&mut w, &r.common, &mut caches);
        w.u64(r.count);
        w.f64(r.sum);
        w.array(&r.quantiles, |w, q| w.f64(q.0));
        w.array(&r.quantiles, |w, q| w.f64(q.1));
        w.u32(r.common.flags);
    }
    w.buf
}

pub const USAGE_TELEMETRY_COLUMNS: &str = "Hour, Tenant, Project, Service, Signal, Items, Bytes, WriteSeq, EventDay";

pub fn usage_telemetry<'a>(rows: impl IntoIterator<Item = &'a TelemetryUsage>, write_seq: u64) -> Vec<u8> {
    let mut w = RowBinary::default();
    for r in rows {
        w.i64(r.hour_ns);
        w.str(&r.tenant);
        w.str(&r.project);
        w.str(&r.service);
        w.str(r.signal);
        w.u64(r.items);
        w.u64(r.bytes);
        w.u64(write_seq);
        w.i64(r.event_day_ns);
    }
    w.buf
}

pub const USAGE_LLM_COLUMNS: &str = "Timestamp, Tenant, Project, Service, TraceId, SpanId, Provider, Model, Operation, \
InputTokens, OutputTokens, CacheReadTokens, CacheWriteTokens, ReasoningTokens, ProvidedCost, ReceivedAt, Hour, CallKind, InvalidReason, WriteSeq, \
CacheWrite1hTokens";

pub fn usage_llm<'a>(rows: impl IntoIterator<Item = &'a LlmUsageRow>, write_seq: u64) -> Vec<u8> {
    let mut w = RowBinary::default();
    for r in rows {
        w.i64(r.timestamp_ns);
        let u = &r.usage;
        for s in [&r.tenant, &r.project, &r.service, &r.trace_id, &r.span_id, &u.provider, &u.model, &u.operation] {
            w.str(s);
        }
        for n in [u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens, u.reasoning_tokens] {
            w.u64(n);
        }
        match u.provided_cost {
            None => w.u8(1),
            Some(d) => {
                w.u8(0);
                w.decimal(d);
            }
        }
        w.i64(r.received_ns);
        w.i64(r.hour_ns);
        w.str(r.kind.as_str());
        w.str(r.invalid_reason.as_deref().unwrap_or(""));
        w.u64(write_seq);
        w.u64(u.cache_write_1h_tokens);
    }
    w.buf
}

/// The ledger's INSERT column list: its description's, in order.
pub fn ledger_columns() -> String {
    crate::ledger::table::names().collect::<Vec<_>>().join(", ")
}

/// Ledger rows, each cell as its column's description gives it.
pub fn ledger<'a>(rows: impl IntoIterator<Item = &'a LedgerRow>) -> Vec<u8> {
    use crate::ledger::table::{Cell, COLUMNS};
    let mut w = RowBinary::default();
    for r in rows {
        for c in &COLUMNS {
            // Nullable(T) is a null flag, then T when the flag is 0.
            match (c.value)(r) {
                Cell::Time(t) => w.i64(t),
                Cell::U64(n) => w.u64(n),
                Cell::Money(d) => w.decimal(d),
                Cell::Text(s) => w.str(s),
                Cell::NullableMoney(None) | Cell::NullableText(None) => w.u8(1),
                Cell::NullableMoney(Some(d)) => {
                    w.u8(0);
                    w.decimal(d);
                }
                Cell::NullableText(Some(s)) => {
                    w.u8(0);
                    w.str(s);
                }
            }
        }
    }
    w.buf
}

pub const USAGE_KUBERNETES_COLUMNS: &str = "Hour, WrittenAt, Cluster, Kind, Payload";

pub fn usage_kubernetes<'a>(rows: impl IntoIterator<Item = &'a KubernetesUsage>) -> Vec<u8> {
    let mut w = RowBinary::default();
    for r in rows {
        w.i64(r.hour_ns);
        w.i64(r.written_ns);
        w.str(&r.cluster);
        w.str(&r.kind);
        w.str(&r.payload);
    }
    w.buf
}

pub const LEDGER_HOURS_COLUMNS: &str = "Hour, Scope, Revision, Status, UsageRows, PriceVersion";

pub fn ledger_hours<'a>(rows: impl IntoIterator<Item = &'a HourState>) -> Vec<u8> {
    let mut w = RowBinary::default();
    for r in rows {
        w.i64(r.hour_ns);
        w.str(&r.scope);
        w.u64(r.revision);
        w.str(&r.status);
        w.u64(r.usage_rows);
        w.str(&r.price_version);
    }
    w.buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb128_and_strings() {
        let mut w = RowBinary::default();
        w.uleb(300);
        w.str("ab");
        assert_eq!(w.buf, vec![0xac, 0x02, 2, b'a', b'b']);
    }

    fn span(resource: &Arc<ResourceInfo>, name: &str) -> SpanRow {
        SpanRow {
            resource: Arc::clone(resource),
            scope: Arc::new(ScopeInfo::default()),
            timestamp_ns: 1,
            trace_id: "t".into(),
            span_id: "s".into(),
            parent_span_id: String::new(),
            trace_state: String::new(),
            span_name: name.into(),
            span_kind: "Server",
            span_attributes: costplane_telemetry::Attributes::from([("a", name)]),
            duration_ns: 2,
            status_code: "Unset",
            status_message: String::new(),
            events: vec![],
            links: vec![],
            encoded_bytes: 0,
        }
    }

    #[test]
    fn a_shared_resource_map_encodes_as_if_encoded_per_row() {
        let r1 = Arc::new(ResourceInfo {
            service_name: "a".into(),
            attributes: costplane_telemetry::Attributes::from([("k", "1")]),
            ..Default::default()
        });
        // Equal content, another resource: still encoded on its own.
        let r2 = Arc::new(ResourceInfo {
            service_name: "b".into(),
            attributes: costplane_telemetry::Attributes::from([("k", "22")]),
            ..Default::default()
        });
        let rows = [span(&r1, "x"), span(&r1, "y"), span(&r2, "z"), span(&r1, "w")];
        let one_by_one: Vec<u8> = rows.iter().flat_map(|r| traces([r])).collect();
        assert_eq!(traces(&rows), one_by_one);
        // And the map bytes are where a per-row encoder puts them.
        let mut w = RowBinary::default();
        w.map(&r2.attributes);
        let z = traces([&rows[2]]);
        assert!(z.windows(w.buf.len()).any(|win| win == w.buf.as_slice()));
    }

    #[test]
    fn maps_are_count_then_pairs() {
        let mut w = RowBinary::default();
        w.map(&costplane_telemetry::Attributes::from([("k", "v")]));
        assert_eq!(w.buf, vec![1, 1, b'k', 1, b'v']);
    }

    #[test]
    fn the_clickhouse_insert_list_and_create_follow_the_description() {
        let insert = ledger_columns();
        assert_eq!(insert.split(", ").collect::<Vec<_>>(), crate::ledger::table::names().collect::<Vec<_>>());
        let ddl = crate::ledger::table::clickhouse_columns();
        assert!(
            ddl.starts_with("    ChargePeriodStart DateTime64(9),\n    ChargePeriodEnd DateTime64(9),\n    BilledCost Decimal(38, 12),")
        );
        assert!(ddl.contains("\n    ChargeClass Nullable(String),\n"));
        assert!(ddl.contains("\n    x_AllocationRatio Nullable(Decimal(38, 12)),\n"));
        assert!(ddl.ends_with("\n    x_Extra String"));
    }
}
