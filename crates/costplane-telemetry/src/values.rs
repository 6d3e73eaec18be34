//! Rendering of OTLP `AnyValue`s and ids to the text the tables store.
//!
//! The rules follow the Collector's `pcommon.Value.AsString()` so that rows
//! written by costplane read the same as rows written by the Collector's
//! ClickHouse exporter: strings as is, booleans `true`/`false`, integers in
//! decimal, doubles in their shortest round-trip form, bytes in standard
//! base64, arrays and maps as compact JSON, an empty value as `""`.

use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};

use crate::model::Attributes;

/// Renders a value as the Collector's `AsString` does.
pub fn any_value_to_string(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        // String-table references exist only in the profiles signal, which
        // has the table; in traces, logs and metrics they carry no text.
        None | Some(Value::StringValueStrindex(_)) => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => if *b { "true" } else { "false" }.to_owned(),
        Some(Value::IntValue(i)) => itoa::Buffer::new().format(*i).to_owned(),
        Some(Value::DoubleValue(d)) => format_double(*d),
        Some(Value::BytesValue(b)) => base64::engine::general_purpose::STANDARD.encode(b),
        Some(Value::ArrayValue(_)) | Some(Value::KvlistValue(_)) => any_value_to_json(value).to_string(),
    }
}

pub(crate) fn format_double(d: f64) -> String {
    if d.is_nan() {
        "NaN".to_owned()
    } else if d.is_infinite() {
        if d > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        // The shortest representation that round-trips, without an
        // exponent, as Go's FormatFloat(d, 'f', -1, 64) prints. ryu finds
        // the digits without the formatting machinery; when it chooses an
        // exponent (very large or small values), Rust's Display, which
        // never does, writes them out.
        let mut buf = ryu::Buffer::new();
        let text = buf.format_finite(d);
        if text.contains('e') {
            format!("{d}")
        } else {
            // ryu writes integral values as "5.0"; Go writes "5".
            text.strip_suffix(".0").unwrap_or(text).to_owned()
        }
    }
}

/// Renders a value, taking its string rather than copying it.
pub fn any_value_into_string(value: Option<AnyValue>) -> String {
    match value {
        Some(AnyValue { value: Some(Value::StringValue(s)) }) => s,
        other => any_value_to_string(other.as_ref()),
    }
}

fn any_value_to_json(value: Option<&AnyValue>) -> serde_json::Value {
    use serde_json::Value as J;
    match value.and_then(|v| v.value.as_ref()) {
        None | Some(Value::StringValueStrindex(_)) => J::Null,
        Some(Value::StringValue(s)) => J::String(s.clone()),
        Some(Value::BoolValue(b)) => J::Bool(*b),
        Some(Value::IntValue(i)) => J::from(*i),
        Some(Value::DoubleValue(d)) => serde_json::Number::from_f64(*d).map_or_else(|| J::String(format_double(*d)), J::Number),
        Some(Value::BytesValue(b)) => J::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Some(Value::ArrayValue(a)) => J::Array(a.values.iter().map(|v| any_value_to_json(Some(v))).collect()),
        Some(Value::KvlistValue(kv)) => {
            J::Object(kv.values.iter().map(|item| (item.key.clone(), any_value_to_json(item.value.as_ref()))).collect())
        }
    }
}

/// Converts OTLP key/values to an attribute list; a repeated key keeps its
/// last value (maps in both stores hold a key once), at its first position.
pub fn attributes(kvs: &[KeyValue]) -> Attributes {
    let bytes = kvs.iter().map(|kv| kv.key.len() + 16).sum();
    let mut out = Attributes::with_capacity(kvs.len(), bytes);
    for kv in kvs {
        out.push_with(&kv.key, |buf| render_into(buf, kv.value.as_ref()));
    }
    let mut out = out.dedup();
    out.shrink_to_fit();
    out
}

/// Appends a value's text as [`any_value_to_string`] renders it, without
/// an allocation of its own for strings, booleans and integers.
pub(crate) fn render_into(buf: &mut String, value: Option<&AnyValue>) {
    match value.and_then(|v| v.value.as_ref()) {
        None | Some(Value::StringValueStrindex(_)) => {}
        Some(Value::StringValue(s)) => buf.push_str(s),
        Some(Value::BoolValue(b)) => buf.push_str(if *b { "true" } else { "false" }),
        Some(Value::IntValue(i)) => buf.push_str(itoa::Buffer::new().format(*i)),
        _ => buf.push_str(&any_value_to_string(value)),
    }
}

/// `None` when the `n` keys `key(0..n)` are all distinct (nearly always);
/// otherwise, per entry, the output position of the earlier entry with the
/// same key (`None` for a key's first entry).
///
/// Why two steps: an exact index (hashing and comparing every key) cost
/// more than the rest of a span's conversion. A 64-bit hash of each key,
/// sorted, proves the common case (no two hashes alike, so no two keys
/// alike) without allocating for up to 64 keys; only equal hashes pay for
/// the exact index, which keeps any list linear in its length.
pub(crate) fn duplicate_slots<'a>(n: usize, key: impl Fn(usize) -> &'a str) -> Option<Vec<Option<usize>>> {
    if n < 2 {
        return None;
    }
    const INLINE: usize = 64;
    let mut inline = [0u64; INLINE];
    let mut heap = Vec::new();
    let hashes: &mut [u64] = if n <= INLINE {
        &mut inline[..n]
    } else {
        heap.resize(n, 0);
        &mut heap
    };
    for (i, h) in hashes.iter_mut().enumerate() {
        *h = key_hash(key(i).as_bytes());
    }
    hashes.sort_unstable();
    if hashes.windows(2).all(|w| w[0] != w[1]) {
        return None;
    }
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::with_capacity(n);
    let mut next = 0;
    let slots = (0..n)
        .map(|i| match index.get(key(i)) {
            Some(&first) => Some(first),
            None => {
                index.insert(key(i), next);
                next += 1;
                None
            }
        })
        .collect();
    Some(slots)
}

/// A 64-bit hash of a key, eight bytes per multiply (FNV-1a's byte at a
/// time was a tenth of the trace decoder's time). Equal hashes are only a
/// hint: [`duplicate_slots`] compares the keys themselves.
fn key_hash(key: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (key.len() as u64).wrapping_mul(K);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(word)).wrapping_mul(K).rotate_left(29);
    }
    let rest = chunks.remainder();
    let mut word = [0u8; 8];
    word[..rest.len()].copy_from_slice(rest);
    h = (h ^ u64::from_le_bytes(word)).wrapping_mul(K);
    h ^ (h >> 32)
}

/// Looks up a string attribute without allocating the whole list.
pub fn find_attribute(kvs: &[KeyValue], key: &str) -> Option<String> {
    kvs.iter().rev().find(|kv| kv.key == key).map(|kv| any_value_to_string(kv.value.as_ref()))
}

/// Lowercase hex of an id of the expected width; `Ok("")` for an absent id
/// when `optional`, an error text otherwise.
pub fn hex_id(bytes: &[u8], width: usize, what: &str, optional: bool) -> Result<String, String> {
    if bytes.is_empty() {
        return if optional { Ok(String::new()) } else { Err(format!("{what} is missing")) };
    }
    if bytes.len() != width {
        return Err(format!("{what} must be {width} bytes, got {}", bytes.len()));
    }
    if bytes.iter().all(|b| *b == 0) {
        if optional {
            return Ok(String::new());
        }
        return Err(format!("{what} is all zeroes, which OTLP defines as invalid"));
    }
    Ok(lower_hex(bytes))
}

/// Lowercase hex through a table: `hex::encode` builds its `String` one
/// `char` at a time, which showed up in profiles of the span path.
fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    fn v(value: Value) -> AnyValue {
        AnyValue { value: Some(value) }
    }

    #[test]
    fn renders_scalars_like_the_collector() {
        assert_eq!(any_value_to_string(Some(&v(Value::StringValue("a b".into())))), "a b");
        assert_eq!(any_value_to_string(Some(&v(Value::BoolValue(true)))), "true");
        assert_eq!(any_value_to_string(Some(&v(Value::IntValue(-42)))), "-42");
        assert_eq!(any_value_to_string(Some(&v(Value::DoubleValue(0.25)))), "0.25");
        assert_eq!(any_value_to_string(Some(&v(Value::DoubleValue(1e21)))), "1000000000000000000000");
        assert_eq!(any_value_to_string(Some(&v(Value::BytesValue(vec![1, 2, 3])))), "AQID");
        assert_eq!(any_value_to_string(None), "");
    }

    #[test]
    fn renders_arrays_and_maps_as_json() {
        let arr = v(Value::ArrayValue(ArrayValue { values: vec![v(Value::IntValue(1)), v(Value::StringValue("x".into()))] }));
        assert_eq!(any_value_to_string(Some(&arr)), r#"[1,"x"]"#);
        let map = v(Value::KvlistValue(KeyValueList {
            values: vec![KeyValue { key: "k".into(), value: Some(v(Value::BoolValue(false))), ..Default::default() }],
        }));
        assert_eq!(any_value_to_string(Some(&map)), r#"{"k":false}"#);
    }

    #[test]
    fn doubles_render_as_go_does_whatever_path_finds_the_digits() {
        // (value, Go's strconv.FormatFloat(v, 'f', -1, 64))
        for (d, go) in [
            (5.0, "5"),
            (-0.5, "-0.5"),
            (123.456, "123.456"),
            (1e-7, "0.0000001"),
            (2.5e-10, "0.00000000025"),
            (1e16, "10000000000000000"),
            (0.1 + 0.2, "0.30000000000000004"),
            (0.0, "0"),
        ] {
            assert_eq!(format_double(d), go, "{d:?}");
        }
        assert_eq!(format_double(f64::NAN), "NaN");
        assert_eq!(format_double(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn values_rendered_in_place_read_as_rendered_alone() {
        let values = [
            None,
            Some(v(Value::StringValue("s".into()))),
            Some(v(Value::BoolValue(false))),
            Some(v(Value::IntValue(-42))),
            Some(v(Value::DoubleValue(2.5))),
            Some(v(Value::BytesValue(vec![0, 255]))),
            Some(v(Value::ArrayValue(ArrayValue { values: vec![v(Value::IntValue(1))] }))),
            Some(AnyValue { value: None }),
        ];
        for value in values {
            let mut buf = "prefix".to_owned();
            render_into(&mut buf, value.as_ref());
            assert_eq!(buf, format!("prefix{}", any_value_to_string(value.as_ref())), "{value:?}");
        }
    }

    #[test]
    fn repeated_keys_keep_the_last_value() {
        let kvs = vec![
            KeyValue { key: "a".into(), value: Some(v(Value::IntValue(1))), ..Default::default() },
            KeyValue { key: "a".into(), value: Some(v(Value::IntValue(2))), ..Default::default() },
        ];
        assert_eq!(attributes(&kvs).iter().collect::<Vec<_>>(), [("a", "2")]);
    }

    #[test]
    fn long_lists_deduplicate_alike_and_in_linear_time() {
        let kv = |k: String, i: i64| KeyValue { key: k, value: Some(v(Value::IntValue(i))), ..Default::default() };
        // 40 entries over 20 keys, each key twice: first position, last value.
        let kvs: Vec<KeyValue> = (0..40).map(|i| kv(format!("k{}", i % 20), i)).collect();
        let out = attributes(&kvs);
        assert_eq!(out.len(), 20);
        assert_eq!((out.key(0), out.value(0)), ("k0", "20"));
        assert_eq!((out.key(19), out.value(19)), ("k19", "39"));
        // 200,000 distinct keys: a quadratic scan makes 2e10 comparisons
        // (minutes); the index takes milliseconds.
        let many: Vec<KeyValue> = (0..200_000).map(|i| kv(format!("key-{i}"), i)).collect();
        let t = std::time::Instant::now();
        assert_eq!(attributes(&many).len(), 200_000);
        assert!(t.elapsed() < std::time::Duration::from_secs(3), "took {:?}", t.elapsed());
    }

    #[test]
    fn distinct_keys_keep_their_order_and_a_late_repeat_is_found() {
        let kv = |k: String, i: i64| KeyValue { key: k, value: Some(v(Value::IntValue(i))), ..Default::default() };
        for n in [2_usize, 20, 64, 65, 300] {
            let distinct: Vec<KeyValue> = (0..n).map(|i| kv(format!("attr.{i}"), i as i64)).collect();
            let out = attributes(&distinct);
            assert_eq!(out.len(), n, "{n}");
            assert!(out.iter().enumerate().all(|(i, (k, val))| k == format!("attr.{i}") && val == i.to_string()), "{n}");
            // The last entry repeats the first key: one pair fewer, the first
            // position keeps the last value.
            let mut repeated = distinct;
            repeated.push(kv("attr.0".into(), -1));
            let out = attributes(&repeated);
            assert_eq!(out.len(), n, "{n}");
            assert_eq!((out.key(0), out.value(0)), ("attr.0", "-1"), "{n}");
            assert!(out.iter().enumerate().skip(1).all(|(i, (k, val))| k == format!("attr.{i}") && val == i.to_string()), "{n}");
        }
    }

    #[test]
    fn ids_are_checked_and_hex_encoded() {
        assert_eq!(hex_id(&[0xAB; 8], 8, "span_id", false).unwrap(), "abababababababab");
        assert_eq!(hex_id(&[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef], 8, "span_id", false).unwrap(), "0123456789abcdef");
        assert!(hex_id(&[1, 2, 3], 8, "span_id", false).unwrap_err().contains("must be 8 bytes, got 3"));
        assert!(hex_id(&[0; 16], 16, "trace_id", false).is_err());
        assert_eq!(hex_id(&[], 16, "trace_id", true).unwrap(), "");
    }
}
