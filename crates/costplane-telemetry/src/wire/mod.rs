//! Reading OTLP protobuf bodies straight off the wire, without building
//! prost's message tree first.
//!
//! - [`Fields`]: the fields of one message in wire order, refusing whatever
//!   prost would refuse, so code built on it is never more lenient.
//! - [`item_sizes`]: the encoded size of every item (span, log record) of an
//!   export request: the length prefix each item arrived with. Usage
//!   metering bills ingest by these bytes. Reading them off the body walks
//!   three levels of length prefixes (request → resource → scope → item)
//!   and skips every payload, where asking each decoded item for its
//!   `encoded_len` walks all of its attributes again. When the body does not
//!   have the expected shape, or its item count differs from the decoded
//!   request's, the caller falls back to `encoded_len`.
//! - [`spans`] and [`logs`]: single-pass decoders of trace and log export
//!   requests, on the readers of `common.rs`.
//!
//! Why: prost first builds the request's message tree (a `String` for every
//! key and value, a `Vec` per attribute list, an `AnyValue` per value), and
//! the conversion then copies those into rows. These decoders read the body
//! once and copy each key and value straight into its row.
//!
//! Invariant: a decoder is an accelerator, never a second set of rules. It
//! answers `None` whenever a body is not the common, fully valid shape, and
//! the caller then takes the prost path (`convert_traces_owned`,
//! `convert_logs_owned`), which decides.
//! `None` covers:
//! - anything prost would refuse (see [`Fields`]), and a field of a known
//!   number with another wire type than its own;
//! - a singular message field given twice (prost merges the two), and an
//!   `AnyValue` with more than one field set (the oneof's last-wins rules);
//! - entity references and string-table index values, which no row stores
//!   (a key's string-table index is skipped, as the general path ignores it);
//! - every item a limit, an id rule or the time range (`convert::check_time`)
//!   rejects, so that partial-success texts are written in one place only.
//!
//! Arrays and maps inside values are decoded by prost and rendered by
//! `values`, as on the general path. Scalars follow the same rendering
//! rules (`format_double`, base64, decimal integers). Property tests hold
//! the two paths to identical conversions on generated and mutated bodies.

use crate::convert::{Conversion, Limits};
use crate::model::Signal;

mod common;
pub mod logs;
pub mod spans;

/// The single-pass decoding of a protobuf request of `signal`, when there
/// is a decoder for it and it takes the body; `None` sends the body to the
/// prost path.
pub fn decode_fast(signal: Signal, body: &[u8], limits: &Limits) -> Option<Conversion> {
    match signal {
        Signal::Traces => spans::decode_traces(body, limits),
        Signal::Logs => logs::decode_logs(body, limits),
        // Five point kinds with exemplars: metrics take the prost path.
        Signal::Metrics => None,
    }
}

/// Field numbers from the request down to the items: `resource_spans` /
/// `resource_logs` (1), `scope_spans` / `scope_logs` (2), `spans` /
/// `log_records` (2).
const PATH: [u32; 3] = [1, 2, 2];

/// The byte length of every item at [`PATH`], in order; `None` for a body
/// that is not well-formed protobuf at those levels.
pub fn item_sizes(body: &[u8]) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    walk(body, 0, &mut out)?;
    Some(out)
}

fn walk(buf: &[u8], depth: usize, out: &mut Vec<u32>) -> Option<()> {
    let mut fields = Fields::new(buf);
    while let Some((field, payload)) = fields.next()? {
        if let (true, Payload::Bytes(inner)) = (field == PATH[depth], payload) {
            if depth + 1 == PATH.len() {
                out.push(u32::try_from(inner.len()).ok()?);
            } else {
                walk(inner, depth + 1, out)?;
            }
        }
    }
    Some(())
}

/// One field's payload, by wire type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Payload<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2: strings, bytes, messages.
    Bytes(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
}

/// The fields of one protobuf message, in wire order.
///
/// `next` answers `None` for anything prost would refuse (a truncated
/// field, a length past the end, a varint over ten bytes, field number 0,
/// a wire type other than 0, 1, 2 and 5: OTLP has no groups), so a caller
/// that bails out on `None` is never more lenient than prost.
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    /// `Some(None)` at the end of the message, `None` when it is malformed.
    #[allow(clippy::should_implement_trait)]
    pub(crate) fn next(&mut self) -> Option<Option<(u32, Payload<'a>)>> {
        if self.pos == self.buf.len() {
            return Some(None);
        }
        let key = self.varint()?;
        let key = u32::try_from(key).ok()?;
        let field = key >> 3;
        if field == 0 {
            return None;
        }
        let payload = match key & 7 {
            0 => Payload::Varint(self.varint()?),
            1 => Payload::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().ok()?)),
            2 => {
                let len = usize::try_from(self.varint()?).ok()?;
                Payload::Bytes(self.take(len)?)
            }
            5 => Payload::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().ok()?)),
            _ => return None,
        };
        Some(Some((field, payload)))
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(len)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn varint(&mut self) -> Option<u64> {
        // Most keys and lengths fit one byte.
        let first = *self.buf.get(self.pos)?;
        if first < 0x80 {
            self.pos += 1;
            return Some(u64::from(first));
        }
        let mut value = 0u64;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos)?;
            self.pos += 1;
            // The tenth byte may only carry the top bit of a u64.
            if i == 9 && byte > 1 {
                return None;
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    fn span(name: &str, attrs: usize) -> Span {
        Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: name.into(),
            attributes: (0..attrs)
                .map(|i| KeyValue {
                    key: format!("k{i}"),
                    value: Some(AnyValue { value: Some(any_value::Value::IntValue(i as i64)) }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn sizes_are_each_items_encoded_length_in_order() {
        let spans = [span("a", 0), span("bb", 3), span("c", 200), span("d", 1)];
        let req = ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![KeyValue { key: "service.name".into(), ..Default::default() }],
                        ..Default::default()
                    }),
                    scope_spans: vec![
                        ScopeSpans { spans: spans[..2].to_vec(), ..Default::default() },
                        ScopeSpans { spans: spans[2..3].to_vec(), schema_url: "s".into(), ..Default::default() },
                    ],
                    schema_url: "u".into(),
                },
                ResourceSpans { scope_spans: vec![ScopeSpans { spans: spans[3..].to_vec(), ..Default::default() }], ..Default::default() },
            ],
        };
        let expected: Vec<u32> = spans.iter().map(|s| s.encoded_len() as u32).collect();
        assert_eq!(item_sizes(&req.encode_to_vec()), Some(expected));
        assert_eq!(item_sizes(&[]), Some(vec![]));
    }

    #[test]
    fn malformed_bodies_give_none() {
        let body = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans: vec![span("a", 2)], ..Default::default() }],
                ..Default::default()
            }],
        }
        .encode_to_vec();
        assert!(item_sizes(&body[..body.len() - 1]).is_none());
        assert!(item_sizes(&[0x0a, 0xff, 0xff]).is_none());
        assert!(item_sizes(&[0x0b]).is_none());
    }
}
