//! The single-pass decoder of OTLP trace export requests (protobuf): the
//! spans, their events, links and status; the shared levels are in
//! `common.rs`. See `wire/mod.rs` for the invariant both decoders keep.

use std::sync::Arc;

use super::common::{bytes, each_record, fixed32, fixed64, once, push_attribute, text, varint, RawAttributes};
use super::Fields;
use crate::convert::{span_bytes, span_kind, status_name, time_fits, ts, Conversion, Limits};
use crate::model::{ResourceInfo, ScopeInfo, SpanEvent, SpanLink, SpanRow};
use crate::values::hex_id;

/// Decodes and converts a trace export request in one pass; `None` sends
/// the body to the general path.
pub fn decode_traces(body: &[u8], limits: &Limits) -> Option<Conversion> {
    each_record(body, limits, |buf, resource, scope, out| {
        let row = span(buf, resource, scope, limits)?;
        out.batch.approx_bytes += span_bytes(&row);
        out.batch.spans.push(row);
        out.accepted += 1;
        Some(())
    })
}

fn span(buf: &[u8], resource: &Arc<ResourceInfo>, scope: &Arc<ScopeInfo>, limits: &Limits) -> Option<SpanRow> {
    let (mut trace_id, mut span_id, mut parent): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    let (mut trace_state, mut name, mut kind, mut start, mut end) = ("", "", 0, 0, 0);
    let mut attrs = RawAttributes::for_message(buf.len());
    let (mut events, mut links) = (Vec::new(), Vec::new());
    let mut status = None;
    let mut fields = Fields::new(buf);
    while let Some((field, p)) = fields.next()? {
        match field {
            1 => trace_id = bytes(p)?,
            2 => span_id = bytes(p)?,
            3 => trace_state = text(p, limits)?,
            4 => parent = bytes(p)?,
            5 => name = text(p, limits)?,
            // int32 enums are varints prost truncates.
            6 => kind = varint(p)? as i32,
            7 => start = fixed64(p)?,
            8 => end = fixed64(p)?,
            9 => push_attribute(&mut attrs, p, limits)?,
            10 | 12 | 14 => _ = varint(p)?,
            11 => {
                if events.len() == limits.max_attributes {
                    return None;
                }
                events.push(event(bytes(p)?, limits)?);
            }
            13 => {
                if links.len() == limits.max_attributes {
                    return None;
                }
                links.push(link(bytes(p)?, limits)?);
            }
            15 => once(&mut status, p)?,
            16 => _ = fixed32(p)?,
            _ => {}
        }
    }
    // A time no store holds: the general path rejects the span and says why.
    if !time_fits(start) || !time_fits(end) {
        return None;
    }
    let (status_code, status_message) = match status {
        Some(b) => span_status(b, limits)?,
        None => ("Unset", String::new()),
    };
    Some(SpanRow {
        resource: Arc::clone(resource),
        scope: Arc::clone(scope),
        timestamp_ns: ts(start),
        trace_id: hex_id(trace_id, 16, "trace_id", false).ok()?,
        span_id: hex_id(span_id, 8, "span_id", false).ok()?,
        parent_span_id: hex_id(parent, 8, "parent_span_id", true).ok()?,
        trace_state: trace_state.to_owned(),
        span_name: name.to_owned(),
        span_kind: span_kind(kind),
        span_attributes: attrs.finish()?,
        duration_ns: end.saturating_sub(start),
        status_code,
        status_message,
        events,
        links,
        // The span's length prefix, as `item_sizes` reads it.
        encoded_bytes: u32::try_from(buf.len()).ok()?,
    })
}

fn event(buf: &[u8], limits: &Limits) -> Option<SpanEvent> {
    let (mut time, mut name) = (0, "");
    let mut attrs = RawAttributes::for_message(buf.len());
    let mut fields = Fields::new(buf);
    while let Some((field, p)) = fields.next()? {
        match field {
            1 => time = fixed64(p)?,
            2 => name = text(p, limits)?,
            3 => push_attribute(&mut attrs, p, limits)?,
            4 => _ = varint(p)?,
            _ => {}
        }
    }
    if !time_fits(time) {
        return None;
    }
    Some(SpanEvent { timestamp_ns: ts(time), name: name.to_owned(), attributes: attrs.finish()? })
}

fn link(buf: &[u8], limits: &Limits) -> Option<SpanLink> {
    let (mut trace_id, mut span_id, mut trace_state): (&[u8], &[u8], &str) = (&[], &[], "");
    let mut attrs = RawAttributes::for_message(buf.len());
    let mut fields = Fields::new(buf);
    while let Some((field, p)) = fields.next()? {
        match field {
            1 => trace_id = bytes(p)?,
            2 => span_id = bytes(p)?,
            3 => trace_state = text(p, limits)?,
            4 => push_attribute(&mut attrs, p, limits)?,
            5 => _ = varint(p)?,
            6 => _ = fixed32(p)?,
            _ => {}
        }
    }
    Some(SpanLink {
        trace_id: hex_id(trace_id, 16, "link trace_id", false).ok()?,
        span_id: hex_id(span_id, 8, "link span_id", false).ok()?,
        trace_state: trace_state.to_owned(),
        attributes: attrs.finish()?,
    })
}

fn span_status(buf: &[u8], limits: &Limits) -> Option<(&'static str, String)> {
    let (mut message, mut code) = ("", 0);
    let mut fields = Fields::new(buf);
    while let Some((field, p)) = fields.next()? {
        match field {
            2 => message = text(p, limits)?,
            3 => code = varint(p)? as i32,
            _ => {}
        }
    }
    Some((status_name(code), message.to_owned()))
}
