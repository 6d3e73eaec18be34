//! Attribute lists packed into one buffer.
//!
//! A span carries some 30 attributes between itself and its resource; held
//! as `(String, String)` pairs that is 60 allocations per span, made on the
//! receive path, freed on the writer's thread, and 3–4 KB of headers and
//! allocator rounding per span while a batch waits. Packed, a list is two
//! allocations: the text of every key and value back to back, and where
//! each one ends.
//!
//! Invariants:
//! - keys are unique within a list: [`Attributes::dedup`] (the decoders,
//!   after pushing what arrived), `FromIterator` and [`Attributes::set`]
//!   keep it; a repeated key keeps its last value at its first position,
//!   which is how both stores' maps hold a key once;
//! - entries keep their order (the Collector's, and the stores' map order);
//! - offsets are `u32`: a list's text is bounded by the request size limit
//!   (at most 256 MiB, rendered to a few times that), far below 4 GiB.

use std::fmt;

/// An ordered list of attribute key/value pairs with unique keys.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// Every key and value, back to back.
    text: String,
    /// The end in `text` of each key and each value, alternately: entry `i`
    /// is the key `ends[2i-1]..ends[2i]` (from 0 for the first) and the
    /// value `ends[2i]..ends[2i+1]`.
    ends: Vec<u32>,
}

impl Attributes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `entries` pairs of `bytes` bytes of text in all.
    pub fn with_capacity(entries: usize, bytes: usize) -> Self {
        Attributes { text: String::with_capacity(bytes), ends: Vec::with_capacity(entries * 2) }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of key and value text.
    #[inline]
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// A list from its parts, as a decoder that validated them builds it:
    /// `ends` ascending, one key end and one value end per entry, each on a
    /// char boundary of `text`, the last at its end. Keys may repeat until
    /// [`Attributes::dedup`].
    pub(crate) fn from_parts(text: String, ends: Vec<u32>) -> Self {
        debug_assert!(ends.len().is_multiple_of(2) && ends.last().map_or(text.is_empty(), |&e| e as usize == text.len()));
        debug_assert!(ends.iter().all(|&e| text.is_char_boundary(e as usize)));
        Attributes { text, ends }
    }

    /// Hands back unused capacity (rows wait in batches).
    pub(crate) fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.ends.shrink_to_fit();
    }

    /// Heap bytes the list holds (capacities and two allocation headers),
    /// for the memory budget.
    pub fn heap_bytes(&self) -> usize {
        crate::model::allocation_bytes(self.text.capacity()) + crate::model::allocation_bytes(self.ends.capacity() * 4)
    }

    fn end_of_text(&self) -> u32 {
        // Lists come from request bodies, and `otlp.max_body_mib` is held
        // to 256 at load: rendered (base64, JSON, printed numbers), a list's
        // text stays far below 4 GiB.
        u32::try_from(self.text.len()).expect("an attribute list under 4 GiB")
    }

    /// Appends a pair without looking for its key: the decoders push what
    /// arrived, then call [`Attributes::dedup`].
    pub(crate) fn push_unchecked(&mut self, key: &str, value: &str) {
        self.text.push_str(key);
        self.ends.push(self.end_of_text());
        self.text.push_str(value);
        self.ends.push(self.end_of_text());
    }

    /// Appends a key, then lets `value` write its value in place (a number
    /// rendered straight into the buffer, say); see [`Attributes::push_unchecked`].
    pub(crate) fn push_with(&mut self, key: &str, value: impl FnOnce(&mut String)) {
        self.text.push_str(key);
        self.ends.push(self.end_of_text());
        value(&mut self.text);
        self.ends.push(self.end_of_text());
    }

    #[inline]
    fn start(&self, slot: usize) -> usize {
        if slot == 0 {
            0
        } else {
            self.ends[slot - 1] as usize
        }
    }

    #[inline]
    fn slot(&self, slot: usize) -> &str {
        &self.text[self.start(slot)..self.ends[slot] as usize]
    }

    /// The key of entry `i`.
    #[inline]
    pub fn key(&self, i: usize) -> &str {
        self.slot(2 * i)
    }

    /// The value of entry `i`.
    #[inline]
    pub fn value(&self, i: usize) -> &str {
        self.slot(2 * i + 1)
    }

    #[inline]
    pub fn iter(&self) -> Iter<'_> {
        Iter { attrs: self, front: 0, back: self.len() }
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Sets `key` to `value`, in place when present, else at the end.
    pub fn set(&mut self, key: &str, value: &str) {
        match self.iter().position(|(k, _)| k == key) {
            Some(i) => *self = self.iter().enumerate().map(|(j, (k, v))| (k, if j == i { value } else { v })).collect(),
            None => self.push_unchecked(key, value),
        }
    }

    /// Keeps the entries for which `keep` answers true, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        if self.iter().all(|(k, v)| keep(k, v)) {
            return;
        }
        let mut out = Attributes::with_capacity(self.len(), self.text.len());
        for (k, v) in self.iter() {
            if keep(k, v) {
                out.push_unchecked(k, v);
            }
        }
        *self = out;
    }

    /// Applies the rule for repeated keys (the last value, at the first
    /// position) to a list pushed as it arrived.
    pub(crate) fn dedup(self) -> Self {
        let Some(slots) = crate::values::duplicate_slots(self.len(), |i| self.key(i)) else { return self };
        let mut out = Attributes::with_capacity(self.len(), self.text.len());
        let mut values: Vec<(usize, usize)> = Vec::with_capacity(self.len());
        for (i, slot) in slots.into_iter().enumerate() {
            match slot {
                Some(first) => values[first].1 = i,
                None => values.push((i, i)),
            }
        }
        for (key_at, value_at) in values {
            out.push_unchecked(self.key(key_at), self.value(value_at));
        }
        out
    }
}

/// The pairs of an [`Attributes`], in order.
#[derive(Clone)]
pub struct Iter<'a> {
    attrs: &'a Attributes,
    front: usize,
    back: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.front == self.back {
            return None;
        }
        let i = self.front;
        self.front += 1;
        Some((self.attrs.key(i), self.attrs.value(i)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.back - self.front;
        (n, Some(n))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.front == self.back {
            return None;
        }
        self.back -= 1;
        Some((self.attrs.key(self.back), self.attrs.value(self.back)))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Attributes {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Collects pairs; a repeated key keeps its last value at its first position.
impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut out = Attributes::new();
        for (k, v) in iter {
            out.push_unchecked(k.as_ref(), v.as_ref());
        }
        out.dedup()
    }
}

/// A fixed list of pairs, as tests and fixtures write them.
impl<K: AsRef<str>, V: AsRef<str>, const N: usize> From<[(K, V); N]> for Attributes {
    fn from(pairs: [(K, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_come_back_in_order_with_empty_keys_and_values() {
        let a: Attributes = [("a", "1"), ("", "x"), ("b", ""), ("ü", "€")].into_iter().collect();
        assert_eq!(a.len(), 4);
        assert_eq!(a.iter().collect::<Vec<_>>(), [("a", "1"), ("", "x"), ("b", ""), ("ü", "€")]);
        assert_eq!(a.iter().next_back(), Some(("ü", "€")));
        assert_eq!(a.get("b"), Some(""));
        assert_eq!(a.get("c"), None);
        assert_eq!(format!("{a:?}"), r#"{"a": "1", "": "x", "b": "", "ü": "€"}"#);
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value_at_its_first_position() {
        let a: Attributes = [("k", "1"), ("j", "2"), ("k", "3"), ("k", "4"), ("j", "5"), ("z", "6")].into_iter().collect();
        assert_eq!(a.iter().collect::<Vec<_>>(), [("k", "4"), ("j", "5"), ("z", "6")]);
    }

    #[test]
    fn set_replaces_in_place_or_appends_and_retain_keeps_order() {
        let mut a: Attributes = [("a", "1"), ("b", "2"), ("c", "3")].into_iter().collect();
        a.set("b", "twenty-two");
        a.set("d", "4");
        assert_eq!(a.iter().collect::<Vec<_>>(), [("a", "1"), ("b", "twenty-two"), ("c", "3"), ("d", "4")]);
        a.retain(|k, _| k != "a" && k != "c");
        assert_eq!(a.iter().collect::<Vec<_>>(), [("b", "twenty-two"), ("d", "4")]);
        assert_eq!(a, [("b", "twenty-two"), ("d", "4")].into_iter().collect());
        a.retain(|_, _| false);
        assert!(a.is_empty());
        assert_eq!(a.text_len(), 0);
    }
}
