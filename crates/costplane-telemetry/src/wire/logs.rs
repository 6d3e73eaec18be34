//! The single-pass decoder of OTLP log export requests (protobuf): the log
//! records; the shared levels are in `common.rs`. See `wire/mod.rs` for the
//! invariant both decoders keep.

use std::sync::Arc;

use super::common::{any_value, bytes, each_record, fixed32, fixed64, once, push_attribute, text, varint, RawAttributes, Rendered};
use super::Fields;
use crate::convert::{log_bytes, time_fits, ts, Conversion, Limits};
use crate::model::{LogRow, ResourceInfo, ScopeInfo};
use crate::values::hex_id;

/// Decodes and converts a log export request in one pass; `None` sends the
/// body to the general path.
pub fn decode_logs(body: &[u8], limits: &Limits) -> Option<Conversion> {
    each_record(body, limits, |buf, resource, scope, out| {
        let row = log_record(buf, resource, scope, limits)?;
        out.batch.approx_bytes += log_bytes(&row);
        out.batch.logs.push(row);
        out.accepted += 1;
        Some(())
    })
}

fn log_record(buf: &[u8], resource: &Arc<ResourceInfo>, scope: &Arc<ScopeInfo>, limits: &Limits) -> Option<LogRow> {
    let (mut time, mut observed, mut severity, mut flags) = (0, 0, 0, 0);
    let (mut severity_text, mut event_name) = ("", "");
    let (mut trace_id, mut span_id): (&[u8], &[u8]) = (&[], &[]);
    let mut body = None;
    let mut attrs = RawAttributes::for_message(buf.len());
    let mut fields = Fields::new(buf);
    while let Some((field, p)) = fields.next()? {
        match field {
            1 => time = fixed64(p)?,
            // int32 enums are varints prost truncates.
            2 => severity = varint(p)? as i32,
            3 => severity_text = text(p, limits)?,
            5 => once(&mut body, p)?,
            6 => push_attribute(&mut attrs, p, limits)?,
            7 => _ = varint(p)?,
            8 => flags = fixed32(p)?,
            9 => trace_id = bytes(p)?,
            10 => span_id = bytes(p)?,
            11 => observed = fixed64(p)?,
            12 => event_name = text(p, limits)?,
            _ => {}
        }
    }
    // As the general path: a record without a timestamp is stored at its
    // observed time; one no store holds is the general path's to reject.
    let time = if time != 0 { time } else { observed };
    if !time_fits(time) {
        return None;
    }
    // The body is rendered, then held to the same length limit as sent.
    let body = match body {
        None => String::new(),
        Some(b) => match any_value(b, limits)? {
            Rendered::Text(t) => std::str::from_utf8(t).ok()?.to_owned(),
            Rendered::Int(i) => itoa::Buffer::new().format(i).to_owned(),
            Rendered::Owned(t) => t,
        },
    };
    if body.len() > limits.max_value_bytes {
        return None;
    }
    Some(LogRow {
        resource: Arc::clone(resource),
        scope: Arc::clone(scope),
        timestamp_ns: ts(time),
        trace_id: hex_id(trace_id, 16, "trace_id", true).ok()?,
        span_id: hex_id(span_id, 8, "span_id", true).ok()?,
        trace_flags: (flags & 0xff) as u8,
        severity_text: severity_text.to_owned(),
        severity_number: u8::try_from(severity).ok()?,
        body,
        log_attributes: attrs.finish()?,
        event_name: event_name.to_owned(),
        // The record's length prefix, as `item_sizes` reads it.
        encoded_bytes: u32::try_from(buf.len()).ok()?,
    })
}
