//! Dead letters under ingest keys, end to end on ClickHouse's engine: a
//! request the store refused keeps the sender its key pinned, a tenant's
//! `/metrics` scrape names none of another tenant's dead letters, and
//! `costplane deadletter replay` stores each request under the tenant that
//! sent it (never the one its body claims), believing the costs it carries
//! only if that sender's key was trusted with them.

use std::path::Path;
use std::process::{Command, Output};

use costplane_testkit::ClickHouseTarget;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use crate::support::{clickhouse_args, query_clickhouse, wait_until, ServerProcess, BIN};

const ADMIN: &str = "admin-api-key-0123456789";
const ACME_API: &str = "acme-api-key-0123456789";
const ACME_INGEST: &str = "acme-ingest-key-0123456789";
const GLOBEX_INGEST: &str = "globex-ingest-key-0123456789";

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn text(s: &str) -> any_value::Value {
    any_value::Value::StringValue(s.into())
}

/// One span of a model no price covers (`in-house-llm`), carrying its own
/// cost, from a resource that claims `claimed_tenant`.
fn span_request(claimed_tenant: &str, name: &str, cost_usd: &str, id: u8) -> Vec<u8> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let span = Span {
        trace_id: vec![id; 16],
        span_id: vec![id; 8],
        name: name.into(),
        start_time_unix_nano: now - 1_000_000,
        end_time_unix_nano: now,
        attributes: vec![
            kv("cost.model", text("in-house-llm")),
            kv("cost.tokens.prompt", any_value::Value::IntValue(10)),
            kv("cost.tokens.completion", any_value::Value::IntValue(5)),
            kv("cost.usd", text(cost_usd)),
        ],
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", text("assistant")), kv("tenant.id", text(claimed_tenant))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn deadletter(args: &[&str], config: &Path, data_dir: &Path) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("deadletter").args(args).arg("--config").arg(config).arg("--data-dir").arg(data_dir);
    cmd.env_remove("COSTPLANE_INGEST_KEY").output().unwrap()
}

fn printed(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn a_dead_letter_is_replayed_as_its_sender_never_as_its_body_says() {
    let target = ClickHouseTarget::new();
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!(
            "[[api.keys]]\nkey = \"{ADMIN}\"\nrole = \"admin\"\n[[api.keys]]\nkey = \"{ACME_API}\"\ntenant = \"acme\"\n\
             [[ingest.keys]]\nkey = \"{ACME_INGEST}\"\ntenant = \"acme\"\n\
             [[ingest.keys]]\nkey = \"{GLOBEX_INGEST}\"\ntenant = \"globex\"\ntrust_provided_cost = true\n"
        ),
    )
    .unwrap();
    let server = ServerProcess::start(&clickhouse_args(&target, &["--config", config.path().to_str().unwrap(), "--flush-interval", "1s"]));
    let q = |sql: &str| query_clickhouse(&target.url, &target.database, sql);
    // What makes the requests invalid: a constraint their spans break.
    q("ALTER TABLE otel_traces ADD CONSTRAINT no_poison CHECK NOT startsWith(SpanName, 'poison')");
    let client = reqwest::blocking::Client::new();
    let send = |key: &str, body: Vec<u8>| {
        let resp = client
            .post(format!("http://{}/v1/traces", server.otlp_http))
            .bearer_auth(key)
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().unwrap_or_default());
    };
    // Each key claims the other tenant and carries a cost for an unpriced
    // model: acme's key is not trusted with provided costs, globex's is.
    send(ACME_INGEST, span_request("globex", "poison-acme", "0.5", 1));
    send(ACME_INGEST, span_request("globex", "poison-acme-old", "0.25", 2));
    send(GLOBEX_INGEST, span_request("acme", "poison-globex", "0.7", 3));

    let data_dir = server.data_dir.path();
    let letters = || {
        let out = deadletter(&["list", "--json"], config.path(), data_dir);
        assert!(out.status.success(), "{}", printed(&out));
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).collect::<Vec<_>>()
    };
    wait_until(|| letters().len() == 3, "three dead letters");
    let mut senders: Vec<(String, serde_json::Value)> =
        letters().into_iter().map(|l| (l["tenant"].as_str().unwrap().to_owned(), l["sender"].clone())).collect();
    senders.sort_by(|a, b| a.0.cmp(&b.0));
    let key =
        |tenant: &str, trust: bool| serde_json::json!({"ingest": "key", "tenant": tenant, "project": null, "trust_provided_cost": trust});
    assert_eq!(
        senders,
        vec![("acme".to_owned(), key("acme", false)), ("acme".to_owned(), key("acme", false)), ("globex".to_owned(), key("globex", true))]
    );

    // acme's scrape shows its own dead letters and no word of globex.
    let scrape = |key: &str| {
        let resp = client.get(format!("http://{}/metrics", server.api)).bearer_auth(key).send().unwrap();
        assert_eq!(resp.status(), 200);
        resp.text().unwrap()
    };
    let acme_metrics = scrape(ACME_API);
    assert!(
        acme_metrics.contains("costplane_dead_letter_items_total{tenant=\"acme\",signal=\"traces\",reason=\"rejected\"} 2"),
        "{acme_metrics}"
    );
    assert!(!acme_metrics.contains("globex"), "{acme_metrics}");
    assert!(scrape(ADMIN).contains("costplane_dead_letter_items_total{tenant=\"globex\",signal=\"traces\",reason=\"rejected\"} 1"));

    // One of acme's files as costplane wrote them before senders were kept.
    let old = letters().into_iter().find(|l| l["items"] == 1 && l["tenant"] == "acme").unwrap();
    let old_path = old["file"].as_str().unwrap().to_owned();
    let content = std::fs::read(&old_path).unwrap();
    let newline = content.iter().position(|b| *b == b'\n').unwrap();
    let mut header: serde_json::Value = serde_json::from_slice(&content[..newline]).unwrap();
    header.as_object_mut().unwrap().remove("sender");
    let body = &content[newline..];
    std::fs::write(&old_path, [serde_json::to_vec(&header).unwrap().as_slice(), body].concat()).unwrap();

    q("ALTER TABLE otel_traces DROP CONSTRAINT no_poison");
    // globex's key replays globex's request only; acme's wait for acme's key.
    let out = deadletter(
        &["replay", "--otlp-http", &format!("http://{}", server.otlp_http), "--ingest-key", GLOBEX_INGEST],
        config.path(),
        data_dir,
    );
    assert!(out.status.success(), "{}", printed(&out));
    assert!(printed(&out).contains("1 replayed, 2 left for other keys, 0 failed"), "{}", printed(&out));
    // Without a key: the recorded request goes with acme's configured key;
    // the unrecorded one is sent as before (no key: 401), says what to do, stays.
    let out = deadletter(&["replay", "--otlp-http", &format!("http://{}", server.otlp_http)], config.path(), data_dir);
    assert!(!out.status.success(), "{}", printed(&out));
    let said = printed(&out);
    assert!(said.contains("1 replayed, 0 left for other keys, 1 failed"), "{said}");
    assert!(said.contains("does not record which key sent it") && said.contains("--ingest-key <a key of tenant acme>"), "{said}");
    assert!(said.contains("401"), "{said}");
    assert_eq!(letters().len(), 1, "the refused file stays");
    let out = deadletter(
        &["replay", "--otlp-http", &format!("http://{}", server.otlp_http), "--ingest-key", ACME_INGEST, &old_path],
        config.path(),
        data_dir,
    );
    assert!(out.status.success(), "{}", printed(&out));
    assert!(letters().is_empty(), "every replayed file is removed");

    // Stored under the sender's tenant, whatever the body claimed.
    let stored = "SELECT SpanName, ResourceAttributes['tenant.id'] FROM otel_traces ORDER BY SpanName FORMAT CSV";
    wait_until(|| q(stored).lines().count() == 3, "the three replayed spans");
    let want = [("poison-acme", "acme"), ("poison-acme-old", "acme"), ("poison-globex", "globex")];
    assert_eq!(q(stored), want.iter().map(|(n, t)| format!("\"{n}\",\"{t}\"")).collect::<Vec<_>>().join("\n"));
    // Billed to the sender: acme's 0.5 and 0.25 are not believed (the model
    // is unpriced: $0), globex's 0.7 is, and nothing is billed twice (each
    // span's 10 + 5 tokens are counted once).
    let bills = || {
        let resp = client
            .post(format!("http://{}/api/v1/sql", server.api))
            .bearer_auth(ADMIN)
            .json(&serde_json::json!({"sql": "SELECT x_Tenant, sum(ConsumedQuantity), sum(BilledCost) FROM costplane_ledger \
                                              WHERE x_Source = 'llm' GROUP BY x_Tenant ORDER BY x_Tenant"}))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
        let rows = resp.json::<serde_json::Value>().unwrap()["rows"].clone();
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let number = |v: &serde_json::Value| v.as_f64().or_else(|| v.as_str()?.parse().ok()).unwrap();
                format!("{} {} {}", r[0].as_str().unwrap(), number(&r[1]), number(&r[2]))
            })
            .collect::<Vec<_>>()
    };
    let want = ["acme 30 0", "globex 15 0.7"];
    // The ledger closes its hours on its own schedule: wait, then show what differs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while bills() != want && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(bills(), want);
}
