//! The span attributes LLM usage is read from, and one pass over a span's
//! attributes that finds all of them ([`UsageAttributes`]).
//!
//! Each field has a list of names, one per convention, the first present
//! one winning (as [`Attributes::get`] finds it: the first entry of that
//! name). Looking each name up in turn decoded a span's whole attribute
//! list about fifty times per LLM call; [`UsageAttributes::of`] walks it
//! once and puts each value in the slot of every list naming it, so the
//! lookups that follow index an array. The result is the same by
//! construction: a slot holds the first entry of its name.

use std::collections::HashMap;
use std::sync::LazyLock;

use costplane_telemetry::Attributes;

/// Attribute names per field, first match wins.
pub(crate) const MODEL: [&str; 7] = [
    "gen_ai.response.model",
    "gen_ai.request.model",
    "llm.response.model",
    "llm.request.model",
    "llm.model_name",
    "cost.model",
    "gen_ai.model",
];
pub(crate) const PROVIDER: [&str; 4] = ["gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system"];
pub(crate) const OPERATION: [&str; 3] = ["gen_ai.operation.name", "llm.request.type", "openinference.span.kind"];
pub(crate) const INPUT: [&str; 5] =
    ["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.usage.prompt_tokens", "llm.token_count.prompt", "cost.tokens.prompt"];
pub(crate) const OUTPUT: [&str; 5] = [
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.usage.completion_tokens",
    "llm.token_count.completion",
    "cost.tokens.completion",
];
pub(crate) const TOTAL: [&str; 3] = ["llm.usage.total_tokens", "llm.token_count.total", "cost.tokens.total"];
pub(crate) const CACHE_READ: [&str; 4] = [
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
    "llm.usage.cache_read_input_tokens",
];
pub(crate) const CACHE_WRITE: [&str; 4] = [
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
    "llm.usage.cache_creation_input_tokens",
];
/// The parts of the cache writes by how long they are kept, under the
/// names of Anthropic's `usage.cache_creation` fields
/// (`ephemeral_5m_input_tokens`, `ephemeral_1h_input_tokens`).
pub(crate) const CACHE_WRITE_5M: [&str; 2] =
    ["gen_ai.usage.cache_creation.ephemeral_5m_input_tokens", "llm.usage.cache_creation.ephemeral_5m_input_tokens"];
pub(crate) const CACHE_WRITE_1H: [&str; 2] =
    ["gen_ai.usage.cache_creation.ephemeral_1h_input_tokens", "llm.usage.cache_creation.ephemeral_1h_input_tokens"];
pub(crate) const REASONING: [&str; 3] =
    ["gen_ai.usage.reasoning.output_tokens", "llm.usage.reasoning_tokens", "llm.token_count.completion_details.reasoning"];
pub const PROVIDED_COST: [&str; 3] = ["gen_ai.usage.cost", "cost.usd", "llm.usage.cost"];
/// Attributes that name what kind of operation a span is.
pub(crate) const KIND: [&str; 4] = ["gen_ai.operation.name", "openinference.span.kind", "traceloop.span.kind", "llm.request.type"];
/// The cache counts under the names of Anthropic's API fields
/// (`cache_read_input_tokens`, `cache_creation_input_tokens`).
pub(crate) const ANTHROPIC_CACHE: [&str; 4] = [
    "gen_ai.usage.cache_read_input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.usage.cache_read_input_tokens",
    "llm.usage.cache_creation_input_tokens",
];

/// A list of names, by its place in [`LISTS`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Field {
    Model,
    Provider,
    Operation,
    Input,
    Output,
    Total,
    CacheRead,
    CacheWrite,
    CacheWrite5m,
    CacheWrite1h,
    Reasoning,
    ProvidedCost,
    Kind,
    AnthropicCache,
}

/// Every list, in [`Field`]'s order.
const LISTS: [&[&str]; 14] = [
    &MODEL,
    &PROVIDER,
    &OPERATION,
    &INPUT,
    &OUTPUT,
    &TOTAL,
    &CACHE_READ,
    &CACHE_WRITE,
    &CACHE_WRITE_5M,
    &CACHE_WRITE_1H,
    &REASONING,
    &PROVIDED_COST,
    &KIND,
    &ANTHROPIC_CACHE,
];

/// How many (list, name) slots there are.
const SLOTS: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < LISTS.len() {
        n += LISTS[i].len();
        i += 1;
    }
    n
};

/// Where each list's slots start, and the slots each name fills (a name
/// can be in several lists: `gen_ai.operation.name` names both the
/// operation and the kind).
struct Index {
    starts: [usize; LISTS.len()],
    slots_of: HashMap<&'static str, Vec<usize>>,
}

static INDEX: LazyLock<Index> = LazyLock::new(|| {
    let mut starts = [0; LISTS.len()];
    let mut slots_of: HashMap<&'static str, Vec<usize>> = HashMap::new();
    let mut slot = 0;
    for (list, names) in LISTS.iter().enumerate() {
        starts[list] = slot;
        for name in names.iter() {
            slots_of.entry(name).or_default().push(slot);
            slot += 1;
        }
    }
    Index { starts, slots_of }
});

/// Whether `key` could be one of the names (they all start so): most of a
/// span's attributes are turned away before hashing.
fn may_be_named(key: &str) -> bool {
    ["gen_ai.", "llm.", "cost.", "openinference.", "traceloop."].iter().any(|p| key.starts_with(p))
}

/// The values of every usage name one span carries.
pub(crate) struct UsageAttributes<'a> {
    values: [Option<&'a str>; SLOTS],
}

impl<'a> UsageAttributes<'a> {
    /// One pass over `attrs`.
    pub fn of(attrs: &'a Attributes) -> UsageAttributes<'a> {
        let index = &*INDEX;
        let mut values = [None; SLOTS];
        for (key, value) in attrs.iter() {
            if !may_be_named(key) {
                continue;
            }
            for &slot in index.slots_of.get(key).map_or(&[][..], Vec::as_slice) {
                // The first entry of a name, as `Attributes::get` reads it.
                values[slot].get_or_insert(value);
            }
        }
        UsageAttributes { values }
    }

    /// Each name of `field` with its value, when present, in the list's order.
    pub fn each(&self, field: Field) -> impl Iterator<Item = (&'static str, Option<&'a str>)> + '_ {
        let start = INDEX.starts[field as usize];
        LISTS[field as usize].iter().enumerate().map(move |(i, name)| (*name, self.values[start + i]))
    }

    /// The first name of `field` present, with its value; `None` when that
    /// value is empty (an empty value hides the names after it).
    pub fn first_named(&self, field: Field) -> Option<(&'static str, &'a str)> {
        self.each(field).find_map(|(name, v)| v.map(|v| (name, v))).filter(|(_, v)| !v.is_empty())
    }

    /// [`UsageAttributes::first_named`]'s value.
    pub fn first(&self, field: Field) -> Option<&'a str> {
        self.first_named(field).map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field, in [`LISTS`]' order.
    const FIELDS: [Field; LISTS.len()] = [
        Field::Model,
        Field::Provider,
        Field::Operation,
        Field::Input,
        Field::Output,
        Field::Total,
        Field::CacheRead,
        Field::CacheWrite,
        Field::CacheWrite5m,
        Field::CacheWrite1h,
        Field::Reasoning,
        Field::ProvidedCost,
        Field::Kind,
        Field::AnthropicCache,
    ];

    fn attrs(pairs: &[(&str, &str)]) -> Attributes {
        pairs.iter().copied().collect()
    }

    /// The one-pass read gives what looking each name up in turn gives.
    #[test]
    fn one_pass_finds_what_lookups_find() {
        let a = attrs(&[
            ("http.route", "/x"),
            ("gen_ai.request.model", "gpt-4o"),
            ("llm.model_name", "other"),
            ("gen_ai.operation.name", "chat"),
            ("gen_ai.usage.input_tokens", ""),
            ("gen_ai.usage.prompt_tokens", "7"),
            ("llm.usage.cache_read_input_tokens", "3"),
        ]);
        let found = UsageAttributes::of(&a);
        for (field, names) in LISTS.iter().enumerate() {
            let looked_up = names.iter().find_map(|k| a.get(k).map(|v| (*k, v))).filter(|(_, v)| !v.is_empty());
            let f = FIELDS[field];
            assert_eq!(found.first_named(f), looked_up, "list {field}");
        }
        // The request model, not the later OpenInference name; the empty
        // input count hides the prompt count after it.
        assert_eq!(found.first(Field::Model), Some("gpt-4o"));
        assert_eq!(found.first(Field::Input), None);
        // One name filling two lists.
        assert_eq!(found.first(Field::Operation), Some("chat"));
        assert_eq!(found.first(Field::Kind), Some("chat"));
        assert_eq!(found.first(Field::AnthropicCache), Some("3"));
    }

    #[test]
    fn every_name_starts_with_a_known_prefix() {
        for name in LISTS.iter().flat_map(|l| l.iter()) {
            assert!(may_be_named(name), "{name}");
        }
    }
}
