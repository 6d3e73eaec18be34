//! Readers shared by the signal decoders: field payloads by wire type, the
//! container levels (resource, scope), attribute lists and `AnyValue`s.
//! Each answers `None` where the general path must decide (see the
//! invariant in `wire/mod.rs`).

use std::sync::Arc;

use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use prost::Message;

use super::{Fields, Payload};
use crate::convert::{check_value, Conversion, Limits};
use crate::model::{Attributes, ResourceInfo, ScopeInfo};
use crate::values::{any_value_to_string, format_double};

pub(super) fn bytes(p: Payload<'_>) -> Option<&[u8]> {
    match p {
        Payload::Bytes(b) => Some(b),
        _ => None,
    }
}

pub(super) fn varint(p: Payload<'_>) -> Option<u64> {
    match p {
        Payload::Varint(v) => Some(v),
        _ => None,
    }
}

pub(super) fn fixed64(p: Payload<'_>) -> Option<u64> {
    match p {
        Payload::Fixed64(v) => Some(v),
        _ => None,
    }
}

pub(super) fn fixed32(p: Payload<'_>) -> Option<u32> {
    match p {
        Payload::Fixed32(v) => Some(v),
        _ => None,
    }
}

/// A string field: valid UTF-8 (as prost demands of every occurrence) and
/// within the value length limit (which the general path applies to every
/// string a row keeps).
pub(super) fn text<'a>(p: Payload<'a>, limits: &Limits) -> Option<&'a str> {
    let b = bytes(p)?;
    if b.len() > limits.max_value_bytes {
        return None;
    }
    std::str::from_utf8(b).ok()
}

/// Records the one occurrence of a singular message field.
pub(super) fn once<'a>(slot: &mut Option<&'a [u8]>, p: Payload<'a>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(bytes(p)?);
    Some(())
}

/// The two container levels share one layout: the resource (or scope) in
/// field 1, the items in field 2, the schema URL in field 3. Fields may come
/// in any order and field 1 applies to every item, so this first pass finds
/// fields 1 and 3 (and checks that the items are length-delimited).
fn container_header<'a>(buf: &'a [u8], limits: &Limits) -> Option<(Option<&'a [u8]>, &'a str)> {
    let (mut head, mut schema_url) = (None, "");
    let mut fields = Fields::new(buf);
    while let Some((field, p)) = fields.next()? {
        match field {
            1 => once(&mut head, p)?,
            2 => _ = bytes(p)?,
            3 => schema_url = text(p, limits)?,
            _ => {}
        }
    }
    Some((head, schema_url))
}

/// Walks an export request's levels (request → resource → scope → item),
/// the same for every signal, and calls `item` on each item's bytes with
/// its resource and scope.
pub(super) fn each_record(
    body: &[u8],
    limits: &Limits,
    mut item: impl FnMut(&[u8], &Arc<ResourceInfo>, &Arc<ScopeInfo>, &mut Conversion) -> Option<()>,
) -> Option<Conversion> {
    let mut out = Conversion::default();
    let mut fields = Fields::new(body);
    while let Some((field, payload)) = fields.next()? {
        if field != 1 {
            continue;
        }
        let resource_buf = bytes(payload)?;
        let (resource, schema_url) = container_header(resource_buf, limits)?;
        let resource = Arc::new(resource_info(resource, schema_url, limits)?);
        each_item(resource_buf, |scope_buf| {
            let (scope, schema_url) = container_header(scope_buf, limits)?;
            let scope = Arc::new(scope_info(scope, schema_url, limits)?);
            each_item(scope_buf, |item_buf| item(item_buf, &resource, &scope, &mut out))
        })?;
    }
    Some(out)
}

/// Runs `item` on each field 2 of a container, in order.
fn each_item(buf: &[u8], mut item: impl FnMut(&[u8]) -> Option<()>) -> Option<()> {
    let mut fields = Fields::new(buf);
    while let Some((field, p)) = fields.next()? {
        if field == 2 {
            item(bytes(p)?)?;
        }
    }
    Some(())
}

fn resource_info(buf: Option<&[u8]>, schema_url: &str, limits: &Limits) -> Option<ResourceInfo> {
    let buf = buf.unwrap_or_default();
    let mut attrs = RawAttributes::for_message(buf.len());
    let mut fields = Fields::new(buf);
    while let Some((field, p)) = fields.next()? {
        match field {
            1 => push_attribute(&mut attrs, p, limits)?,
            2 => _ = varint(p)?,
            // Entity references: rare, and stored nowhere; prost checks them.
            3 => return None,
            _ => {}
        }
    }
    let attributes = attrs.finish()?;
    // After `dedup` a key's entry holds its last value, the one the general
    // path's `find_attribute` picks.
    let service_name = attributes.get("service.name").unwrap_or_default().to_owned();
    Some(ResourceInfo { service_name, attributes, schema_url: schema_url.to_owned() })
}

/// An absent scope and an empty one make the same row values.
fn scope_info(buf: Option<&[u8]>, schema_url: &str, limits: &Limits) -> Option<ScopeInfo> {
    let (mut name, mut version, mut dropped) = ("", "", 0);
    let buf = buf.unwrap_or_default();
    let mut attrs = RawAttributes::for_message(buf.len());
    let mut fields = Fields::new(buf);
    while let Some((field, p)) = fields.next()? {
        match field {
            1 => name = text(p, limits)?,
            2 => version = text(p, limits)?,
            3 => push_attribute(&mut attrs, p, limits)?,
            // uint32 on the wire is a varint prost truncates.
            4 => dropped = varint(p)? as u32,
            _ => {}
        }
    }
    Some(ScopeInfo {
        name: name.to_owned(),
        version: version.to_owned(),
        attributes: attrs.finish()?,
        dropped_attributes_count: dropped,
        schema_url: schema_url.to_owned(),
    })
}

/// An attribute list as it arrives: bytes, checked as UTF-8 once the list
/// is complete (one `from_utf8` over the whole list, not two per pair).
pub(super) struct RawAttributes {
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

impl RawAttributes {
    /// For the attributes of a message of `len` bytes: its keys and values
    /// take about that much (less the framing, more where numbers print
    /// longer than they encode), so the buffer rarely grows.
    pub(super) fn for_message(len: usize) -> Self {
        // A pair takes some 30 bytes on the wire; two ends per pair.
        RawAttributes { bytes: Vec::with_capacity(len), ends: Vec::with_capacity(len / 12) }
    }

    pub(super) fn len(&self) -> usize {
        self.ends.len() / 2
    }

    /// Closes a key or a value; `None` past 4 GiB of text (rendering can
    /// make a list longer than the body it came from).
    fn end(&mut self) -> Option<()> {
        self.ends.push(u32::try_from(self.bytes.len()).ok()?);
        Some(())
    }

    /// The list, with the rule for repeated keys applied; `None` when any
    /// key or value is not UTF-8 (prost refuses such a body).
    pub(super) fn finish(self) -> Option<Attributes> {
        let text = String::from_utf8(self.bytes).ok()?;
        // Valid as a whole and cut only at char boundaries: valid piece by piece.
        if !self.ends.iter().all(|&e| text.is_char_boundary(e as usize)) {
            return None;
        }
        let mut attributes = Attributes::from_parts(text, self.ends).dedup();
        // Rows wait in batches: hand back what the list did not use.
        attributes.shrink_to_fit();
        Some(attributes)
    }
}

/// Appends one `KeyValue` as it arrived (`RawAttributes::finish` applies
/// the rule for repeated keys); a list may hold at most `max_attributes`
/// entries, repeats included.
pub(super) fn push_attribute(attrs: &mut RawAttributes, p: Payload<'_>, limits: &Limits) -> Option<()> {
    if attrs.len() == limits.max_attributes {
        return None;
    }
    let (mut key, mut value): (Option<&[u8]>, _) = (None, None);
    let mut fields = Fields::new(bytes(p)?);
    while let Some((field, p)) = fields.next()? {
        match field {
            // A key given twice: prost checks the UTF-8 of both, and only the
            // last would reach the list's check.
            1 if key.is_some() => return None,
            1 => key = Some(limited(p, limits)?),
            2 => once(&mut value, p)?,
            3 => _ = varint(p)?,
            _ => {}
        }
    }
    attrs.bytes.extend_from_slice(key.unwrap_or_default());
    attrs.end()?;
    match value {
        None => {}
        Some(v) => match any_value(v, limits)? {
            Rendered::Text(t) => attrs.bytes.extend_from_slice(t),
            Rendered::Int(i) => attrs.bytes.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
            Rendered::Owned(t) => attrs.bytes.extend_from_slice(t.as_bytes()),
        },
    }
    attrs.end()
}

/// A string field's bytes within the length limit, UTF-8 still unchecked.
pub(super) fn limited<'a>(p: Payload<'a>, limits: &Limits) -> Option<&'a [u8]> {
    bytes(p).filter(|b| b.len() <= limits.max_value_bytes)
}

/// A value's text: bytes of the body (UTF-8 checked with the whole list),
/// an integer still to print, or rendered.
pub(super) enum Rendered<'a> {
    Text(&'a [u8]),
    Int(i64),
    Owned(String),
}

/// Renders an `AnyValue` as `values::any_value_to_string` does.
pub(super) fn any_value<'a>(buf: &'a [u8], limits: &Limits) -> Option<Rendered<'a>> {
    let mut fields = Fields::new(buf);
    let Some((field, p)) = fields.next()? else { return Some(Rendered::Text(&[])) };
    if fields.next()?.is_some() {
        return None;
    }
    match (field, p) {
        (1, p) => Some(Rendered::Text(limited(p, limits)?)),
        (2, Payload::Varint(b)) => Some(Rendered::Text(if b != 0 { b"true" } else { b"false" })),
        (3, Payload::Varint(i)) => Some(Rendered::Int(i as i64)),
        (4, Payload::Fixed64(bits)) => Some(Rendered::Owned(format_double(f64::from_bits(bits)))),
        (5 | 6, Payload::Bytes(_)) => {
            let value = AnyValue::decode(buf).ok()?;
            check_value(Some(&value), limits, 0).ok()?;
            Some(Rendered::Owned(any_value_to_string(Some(&value))))
        }
        (7, Payload::Bytes(b)) if b.len() <= limits.max_value_bytes => {
            Some(Rendered::Owned(base64::engine::general_purpose::STANDARD.encode(b)))
        }
        // A known field with another wire type, an oversized bytes value,
        // or a string-table index.
        (1..=8, _) => None,
        // Only an unknown field: prost leaves the value empty.
        _ => Some(Rendered::Text(&[])),
    }
}
