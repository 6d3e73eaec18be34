//! The LLM load of the benchmarks: every span an LLM call (OTel GenAI
//! attributes: operation, provider, request and response model, input,
//! output and cache-read tokens), five models of two providers, four
//! tenants (`tenant.id` of the resource).
//!
//! A span is shaped like the plain load's (`loadgen::make_request`): 20
//! attributes, a resource of 10, so the two loads differ in what the
//! attributes mean, not in how many there are.
//!
//! Requests are encoded once, as templates; sending one copies the
//! template and overwrites, in place, the fixed-width fields every call
//! must have of its own: trace id, span id (the ledger treats a span id it
//! has seen before in the hour as a copy of that span) and start and end
//! times. Encoding is thus not part of what is measured, and no two calls
//! of a run are alike.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
use prost::Message;
use rand::Rng;

/// Models of the load and their providers (all in the shipped catalog).
pub const MODELS: [(&str, &str); 5] = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4.1-mini"),
    ("anthropic", "claude-sonnet-4"),
    ("anthropic", "claude-3-5-haiku"),
];

/// Tenants of the load (`tenant.id`).
pub const TENANTS: usize = 4;

/// Where one span's own fields sit in a template's bytes.
#[derive(Debug, Clone, Copy)]
struct Slots {
    trace_id: usize,
    span_id: usize,
    start: usize,
    end: usize,
}

/// One encoded request whose calls' ids and times are filled in per send.
#[derive(Debug, Clone)]
pub struct Template {
    body: Vec<u8>,
    slots: Vec<Slots>,
    /// Each call's duration, kept when its start moves.
    durations: Vec<u64>,
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.to_owned())
}

fn int(v: i64) -> any_value::Value {
    any_value::Value::IntValue(v)
}

/// Finds `needle` in `hay` at or after `from`.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

impl Template {
    /// A request of `n` LLM calls billed to tenant `tenant` (0-based).
    pub fn new(n: usize, tenant: usize, rng: &mut impl Rng) -> anyhow::Result<Template> {
        let service = ["chat-api", "summarizer", "support-bot", "search-rag"][tenant % 4];
        let resource = Resource {
            attributes: vec![
                kv("service.name", s(service)),
                kv("service.namespace", s("ai")),
                kv("service.version", s("2.7.1")),
                kv("deployment.environment.name", s("production")),
                kv("tenant.id", s(&format!("tenant-{tenant}"))),
                kv("host.name", s("ip-10-0-3-17")),
                kv("k8s.namespace.name", s("ai")),
                kv("k8s.pod.name", s(&format!("{service}-7c9f8d6b5-x2x4q"))),
                kv("cloud.region", s("eu-west-1")),
                kv("telemetry.sdk.language", s("python")),
            ],
            ..Default::default()
        };
        // Sentinels, random so that each is found once in the encoding.
        let mut marks = Vec::with_capacity(n);
        let mut durations = Vec::with_capacity(n);
        let spans: Vec<Span> = (0..n)
            .map(|i| {
                let (provider, model) = MODELS[i % MODELS.len()];
                let input: i64 = rng.random_range(200..6000);
                let cached = input * rng.random_range(0..60) / 100;
                let output: i64 = rng.random_range(20..1200);
                let trace: [u8; 16] = rng.random();
                let id: [u8; 8] = rng.random();
                let (start, end): (u64, u64) = (rng.random(), rng.random());
                marks.push((trace, id, start, end));
                durations.push(rng.random_range(300_000_000..9_000_000_000));
                Span {
                    trace_id: trace.to_vec(),
                    span_id: id.to_vec(),
                    parent_span_id: rng.random::<[u8; 8]>().to_vec(),
                    name: format!("chat {model}"),
                    kind: span::SpanKind::Client as i32,
                    start_time_unix_nano: start,
                    end_time_unix_nano: end,
                    attributes: vec![
                        kv("gen_ai.operation.name", s("chat")),
                        kv("gen_ai.provider.name", s(provider)),
                        kv("gen_ai.request.model", s(model)),
                        kv("gen_ai.response.model", s(model)),
                        kv("gen_ai.usage.input_tokens", int(input)),
                        kv("gen_ai.usage.output_tokens", int(output)),
                        kv("gen_ai.usage.cache_read.input_tokens", int(cached)),
                        kv("gen_ai.request.max_tokens", int(2048)),
                        kv("gen_ai.request.temperature", any_value::Value::DoubleValue(0.2)),
                        kv("gen_ai.response.finish_reasons", s("stop")),
                        kv("gen_ai.response.id", s(&format!("chatcmpl-{:024x}", rng.random::<u128>() >> 32))),
                        kv("server.address", s(if provider == "openai" { "api.openai.com" } else { "api.anthropic.com" })),
                        kv("server.port", int(443)),
                        kv("enduser.id", s(&format!("user-{}", rng.random_range(0..10_000)))),
                        kv("session.id", s(&format!("{:032x}", rng.random::<u128>()))),
                        kv("app.feature", s(["chat", "summary", "triage", "search"][i % 4])),
                        kv("app.prompt.template", s("answer-v3")),
                        kv("thread.name", s("worker-3")),
                        kv("code.function.name", s("llm.client.complete")),
                        kv("retry.count", int(0)),
                    ],
                    ..Default::default()
                }
            })
            .collect();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope { name: "costplane.bench.llm".into(), version: "1".into(), ..Default::default() }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let body = request.encode_to_vec();
        // Fields follow the span's order in the encoding: trace id, span
        // id, parent, name, kind, start, end; spans follow one another.
        let mut slots = Vec::with_capacity(n);
        let mut at = 0;
        for (trace, id, start, end) in &marks {
            let not_found = || anyhow::anyhow!("a generated LLM span's fields were not found in its encoding");
            let trace_id = find(&body, trace, at).ok_or_else(not_found)?;
            let span_id = find(&body, id, trace_id + 16).ok_or_else(not_found)?;
            let start = find(&body, &start.to_le_bytes(), span_id + 8).ok_or_else(not_found)?;
            let end = find(&body, &end.to_le_bytes(), start + 8).ok_or_else(not_found)?;
            slots.push(Slots { trace_id, span_id, start, end });
            at = end + 8;
        }
        Ok(Template { body, slots, durations })
    }

    /// Calls in the request.
    pub fn calls(&self) -> u64 {
        self.slots.len() as u64
    }

    /// The request with call `j` numbered `first + j` (its span id, and a
    /// trace id of its own, both derived from `run` and the number) and
    /// started at `start_ns(j)`.
    pub fn stamp(&self, run: u64, first: u64, start_ns: impl Fn(u64) -> u64) -> Vec<u8> {
        let mut body = self.body.clone();
        for (j, (slot, duration)) in self.slots.iter().zip(&self.durations).enumerate() {
            let call = first + j as u64;
            let id = (call + 1) ^ (run << 40);
            let trace = (u128::from(run) << 64 | u128::from(call)).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            body[slot.trace_id..slot.trace_id + 16].copy_from_slice(&trace.to_be_bytes());
            body[slot.span_id..slot.span_id + 8].copy_from_slice(&id.to_be_bytes());
            let start = start_ns(j as u64);
            body[slot.start..slot.start + 8].copy_from_slice(&start.to_le_bytes());
            body[slot.end..slot.end + 8].copy_from_slice(&(start + duration).to_le_bytes());
        }
        body
    }
}

/// Templates of `batch` calls: `per_tenant` for each tenant, tenant-major
/// order interleaved (template `i` bills tenant `i % TENANTS`).
pub fn templates(batch: usize, per_tenant: usize, rng: &mut impl Rng) -> anyhow::Result<Vec<Template>> {
    (0..TENANTS * per_tenant.max(1)).map(|i| Template::new(batch, i % TENANTS, rng)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamped_request_carries_its_own_ids_and_times() {
        let mut rng = rand::rng();
        let t = Template::new(7, 2, &mut rng).unwrap();
        let body = t.stamp(3, 100, |j| 1_000_000_000 * (j + 1));
        let req = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let rs = &req.resource_spans[0];
        let tenant = rs.resource.as_ref().unwrap().attributes.iter().find(|a| a.key == "tenant.id").unwrap();
        assert_eq!(tenant.value.as_ref().unwrap().value, Some(s("tenant-2")));
        let spans = &rs.scope_spans[0].spans;
        assert_eq!(spans.len(), 7);
        for (j, sp) in spans.iter().enumerate() {
            // Call 100 + j of run 3: span id (call + 1) ^ (3 << 40).
            assert_eq!(sp.span_id, ((101 + j as u64) ^ (3 << 40)).to_be_bytes());
            assert_eq!(sp.start_time_unix_nano, 1_000_000_000 * (j as u64 + 1));
            assert!(sp.end_time_unix_nano > sp.start_time_unix_nano);
            assert_eq!(sp.attributes.len(), 20);
            assert_eq!(sp.attributes[2].value.as_ref().unwrap().value, Some(s(MODELS[j % 5].1)));
        }
        let ids: std::collections::HashSet<_> = spans.iter().map(|s| s.trace_id.clone()).collect();
        assert_eq!(ids.len(), 7, "a trace id per call");
        // Another stamp of the same template: other ids, same tokens.
        let again = ExportTraceServiceRequest::decode(t.stamp(3, 107, |_| 5).as_slice()).unwrap();
        let other = &again.resource_spans[0].scope_spans[0].spans;
        assert_ne!(other[0].span_id, spans[0].span_id);
        assert_eq!(other[0].attributes[4], spans[0].attributes[4]);
    }
}
