//! The encoded size of every item (span, log record) of a protobuf export
//! request, read from the wire: the length prefix each item arrived with.
//!
//! Usage metering bills ingest by these bytes. Reading them off the body
//! costs a walk over three levels of length prefixes (request → resource →
//! scope → item) that skips every payload, where asking each decoded item
//! for its `encoded_len` walks all of its attributes again. The walk is
//! only an accelerator: when the body does not have the expected shape, or
//! its item count differs from the decoded request's, the caller falls back
//! to `encoded_len`.

/// Field numbers from the request down to the items: `resource_spans` /
/// `resource_logs` (1), `scope_spans` / `scope_logs` (2), `spans` /
/// `log_records` (2).
const PATH: [u64; 3] = [1, 2, 2];

/// The byte length of every item at [`PATH`], in order; `None` for a body
/// that is not well-formed protobuf at those levels.
pub fn item_sizes(body: &[u8]) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    walk(body, 0, &mut out)?;
    Some(out)
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn walk(buf: &[u8], depth: usize, out: &mut Vec<u32>) -> Option<()> {
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (field, wire_type) = (key >> 3, key & 7);
        match wire_type {
            0 => {
                varint(buf, &mut pos)?;
            }
            1 => pos = pos.checked_add(8)?,
            5 => pos = pos.checked_add(4)?,
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let end = pos.checked_add(len)?;
                let inner = buf.get(pos..end)?;
                if field == PATH[depth] {
                    if depth + 1 == PATH.len() {
                        out.push(u32::try_from(len).ok()?);
                    } else {
                        walk(inner, depth + 1, out)?;
                    }
                }
                pos = end;
            }
            // Groups (3, 4) are not in OTLP; anything else is malformed.
            _ => return None,
        }
    }
    (pos == buf.len()).then_some(())
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
