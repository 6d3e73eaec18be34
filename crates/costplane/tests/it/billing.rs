//! Figures a platform team invoices from, through `costplane serve` and the
//! cost API: negotiated prices that stay negotiated, token counts read the
//! way each convention means them (`docs/token-rules.md`), and usage that
//! keeps the day its data is stored in (what storage is shared by).

use serde_json::{json, Value};

use crate::support::{wait_until, ServerProcess};

fn now_ns() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

fn attr(key: &str, value: &str) -> Value {
    match value.parse::<u64>() {
        Ok(n) => json!({"key": key, "value": {"intValue": n.to_string()}}),
        Err(_) => json!({"key": key, "value": {"stringValue": value}}),
    }
}

/// One OTLP/JSON request of LLM spans for `tenant`, each given as its
/// attributes, dated now.
fn llm_request(tenant: &str, spans: &[&[(&str, &str)]]) -> Vec<u8> {
    let start = now_ns();
    let spans: Vec<Value> = spans
        .iter()
        .enumerate()
        .map(|(i, attrs)| {
            json!({
                "traceId": format!("{:032x}", 0xb111_0000_u128 + i as u128),
                "spanId": format!("{:016x}", 0xb111_u64 + i as u64),
                "name": "chat",
                "kind": 3,
                "startTimeUnixNano": start.to_string(),
                "endTimeUnixNano": (start + 1_000_000).to_string(),
                "attributes": attrs.iter().map(|(k, v)| attr(k, v)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": [attr("service.name", "chat-api"), attr("tenant.id", tenant)]},
        "scopeSpans": [{"spans": spans}],
    }]})
    .to_string()
    .into_bytes()
}

/// The cost API's figure of one (tenant, model) today, if it has one.
fn cost_of(server: &ServerProcess, tenant: &str, model: &str) -> Option<String> {
    let url = format!("http://{}/api/v1/costs?group_by=tenant,model", server.api);
    let body: Value = reqwest::blocking::get(url).ok()?.json().ok()?;
    body["rows"]
        .as_array()?
        .iter()
        .find(|r| r["tenant"] == tenant && r["model"] == model)
        .and_then(|r| r["cost"].as_str().map(str::to_owned))
}

fn wait_for_cost(server: &ServerProcess, tenant: &str, model: &str, expected: &str) {
    let mut last = None;
    wait_until(
        || {
            last = cost_of(server, tenant, model);
            last.as_deref() == Some(expected)
        },
        &format!("{tenant}/{model} to cost {expected}"),
    );
}

#[test]
fn a_negotiated_price_holds_after_later_catalog_prices() {
    // The shipped catalog prices gpt-4o input at 5.00 from 2024-05-13 and
    // 2.50 from 2024-10-01 (and its 2024-08-06 snapshot at 2.50). The
    // contract: input 2.00 from 2024-06-01, output at list.
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("prices.toml");
    std::fs::write(
        &prices,
        "version = \"contract-1\"\ncurrency = \"USD\"\n[[model]]\nprovider = \"openai\"\nname = \"gpt-4o\"\n  [[model.prices]]\n  effective = \"2024-06-01\"\n  input = \"2.00\"\n",
    )
    .unwrap();
    let server = ServerProcess::start(&["--overrides", prices.to_str().unwrap()]);
    let body = llm_request(
        "contract",
        &[&[
            ("gen_ai.provider.name", "openai"),
            ("gen_ai.request.model", "gpt-4o"),
            ("gen_ai.response.model", "gpt-4o-2024-08-06"),
            ("gen_ai.usage.input_tokens", "1000000"),
            ("gen_ai.usage.output_tokens", "1000"),
        ]],
    );
    assert!(server.export("/v1/traces", "application/json", body).status().is_success());
    // The call reports the dated snapshot (the response model beats the
    // request model), whose shipped entry lists 2.50: the contract for
    // gpt-4o covers it. 1,000,000 × 2.00/1M = 2.00; 1,000 × 10.00/1M = 0.01.
    // The ledger names the model by the entry that priced it: the
    // contract's gpt-4o.
    wait_for_cost(&server, "contract", "gpt-4o", "2.01");
}

#[test]
fn token_counts_are_read_as_each_convention_means_them() {
    let server = ServerProcess::start(&[]);
    let body = llm_request(
        "tokens",
        &[
            // Anthropic's API fields: 10,000 fresh input tokens beside 4,000
            // cache reads (a cache count below the input count).
            &[
                ("gen_ai.system", "anthropic"),
                ("gen_ai.request.model", "claude-3-5-sonnet-20241022"),
                ("gen_ai.usage.prompt_tokens", "10000"),
                ("gen_ai.usage.cache_read_input_tokens", "4000"),
                ("gen_ai.usage.completion_tokens", "100"),
            ],
            // Gemini: 500 candidate tokens and 2,000 thought tokens, apart.
            &[
                ("gen_ai.request.model", "gemini-2.5-flash"),
                ("gen_ai.usage.input_tokens", "1000"),
                ("gen_ai.usage.output_tokens", "500"),
                ("gen_ai.usage.reasoning.output_tokens", "2000"),
            ],
        ],
    );
    assert!(server.export("/v1/traces", "application/json", body).status().is_success());
    // claude-3-5-sonnet (3.00 in, 0.30 cache read, 15.00 out per 1M):
    // 10,000 × 3.00/1M = 0.03; 4,000 × 0.30/1M = 0.0012; 100 × 15/1M =
    // 0.0015; total 0.0327 (billing the cache inside the input would give
    // 0.0207).
    // The ledger names the model by its catalog entry (`claude-3-5-sonnet`).
    wait_for_cost(&server, "tokens", "claude-3-5-sonnet", "0.0327");
    // gemini-2.5-flash (0.30 in, 2.50 out, reasoning at the output rate):
    // 1,000 × 0.30/1M = 0.0003; 500 × 2.50/1M = 0.00125; 2,000 × 2.50/1M =
    // 0.005; total 0.00655 (taking max(output, reasoning) gave 0.0053).
    wait_for_cost(&server, "tokens", "gemini-2.5-flash", "0.00655");
}

/// Cache writes kept for an hour, at their own rate, on either store.
fn one_hour_cache_writes_are_billed_at_their_rate(server: &ServerProcess) {
    let body = llm_request(
        "ttl",
        &[&[
            ("gen_ai.provider.name", "anthropic"),
            ("gen_ai.request.model", "claude-sonnet-4-20250514"),
            ("gen_ai.usage.input_tokens", "10000"),
            ("gen_ai.usage.cache_creation.input_tokens", "3000"),
            ("gen_ai.usage.cache_creation.ephemeral_1h_input_tokens", "2000"),
            ("gen_ai.usage.output_tokens", "500"),
        ]],
    );
    assert!(server.export("/v1/traces", "application/json", body).status().is_success());
    // claude-sonnet-4 (3.00 in, 3.75 per 5-minute and 6.00 per 1-hour
    // cache write, 15.00 out per 1M): 7,000 uncached × 3/1M = 0.021;
    // 1,000 five-minute writes × 3.75/1M = 0.00375; 2,000 one-hour writes
    // × 6/1M = 0.012; 500 × 15/1M = 0.0075; total 0.04425 (all writes at
    // the 5-minute rate would give 0.03825).
    wait_for_cost(server, "ttl", "claude-sonnet-4", "0.04425");
    let rows = server.sql("SELECT CacheWriteTokens AS w, CacheWrite1hTokens AS h FROM costplane_usage_llm WHERE Tenant = 'ttl'");
    assert_eq!((rows[0]["w"].as_u64(), rows[0]["h"].as_u64()), (Some(3000), Some(2000)), "{rows:?}");
    let rows = server.sql(
        "SELECT CAST(ConsumedQuantity AS VARCHAR) AS q, CAST(BilledCost AS VARCHAR) AS c FROM costplane_ledger \
         WHERE x_Tenant = 'ttl' AND x_UsageType = 'cache_write_1h'",
    );
    let cell = |k: &str| rows.first().and_then(|r| r[k].as_str()).map(|v| v.parse::<rust_decimal::Decimal>().unwrap());
    assert_eq!((cell("q"), cell("c")), (Some(2000.into()), Some("0.012".parse().unwrap())), "{rows:?}");
}

#[test]
fn one_hour_cache_writes_are_billed_at_their_rate_embedded() {
    one_hour_cache_writes_are_billed_at_their_rate(&ServerProcess::start(&[]));
}

#[test]
fn one_hour_cache_writes_are_billed_at_their_rate_clickhouse() {
    let target = costplane_testkit::ClickHouseTarget::new();
    one_hour_cache_writes_are_billed_at_their_rate(&ServerProcess::start(&crate::support::clickhouse_args(&target, &[])));
}

/// An exporter that retries after a timeout sends the same span again.
fn a_span_delivered_twice_is_billed_once(server: &ServerProcess) {
    let span: &[(&str, &str)] = &[
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.request.model", "gpt-4o"),
        ("gen_ai.usage.input_tokens", "1000"),
        ("gen_ai.usage.output_tokens", "100"),
    ];
    let body = llm_request("retries", &[span]);
    for _ in 0..2 {
        assert!(server.export("/v1/traces", "application/json", body.clone()).status().is_success());
    }
    wait_until(|| server.count("costplane_usage_llm WHERE Tenant = 'retries'") == 2, "both copies stored as usage");
    // gpt-4o: 1,000 × 2.50/1M + 100 × 10.00/1M = 0.0025 + 0.001 = 0.0035,
    // once (twice would be 0.007).
    wait_for_cost(server, "retries", "gpt-4o", "0.0035");
    for _ in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert_eq!(cost_of(server, "retries", "gpt-4o").as_deref(), Some("0.0035"));
    }
}

#[test]
fn a_span_delivered_twice_is_billed_once_embedded() {
    a_span_delivered_twice_is_billed_once(&ServerProcess::start(&[]));
}

#[test]
fn a_span_delivered_twice_is_billed_once_clickhouse() {
    let target = costplane_testkit::ClickHouseTarget::new();
    a_span_delivered_twice_is_billed_once(&ServerProcess::start(&crate::support::clickhouse_args(&target, &[])));
}

/// One OTLP/JSON request of one span of `trace` for `tenant`, at `at_ns`.
fn span_at(tenant: &str, trace: u128, span: u64, at_ns: u128, attrs: &[(&str, &str)]) -> Vec<u8> {
    json!({"resourceSpans": [{
        "resource": {"attributes": [attr("service.name", "agents"), attr("tenant.id", tenant)]},
        "scopeSpans": [{"spans": [{
            "traceId": format!("{trace:032x}"),
            "spanId": format!("{span:016x}"),
            "name": "agent step",
            "kind": 3,
            "startTimeUnixNano": at_ns.to_string(),
            "endTimeUnixNano": (at_ns + 1_000_000).to_string(),
            "attributes": attrs.iter().map(|(k, v)| attr(k, v)).collect::<Vec<_>>(),
        }]}],
    }]})
    .to_string()
    .into_bytes()
}

/// The cost API's total for `tenant` since `from` (RFC 3339).
fn tenant_total(server: &ServerProcess, tenant: &str, from: &str) -> Option<String> {
    let url = format!("http://{}/api/v1/costs?group_by=tenant&from={from}", server.api);
    let body: Value = reqwest::blocking::get(url).ok()?.json().ok()?;
    body["rows"].as_array()?.iter().find(|r| r["tenant"] == tenant).and_then(|r| r["cost"].as_str().map(str::to_owned))
}

#[test]
fn an_agent_span_and_its_child_call_in_different_hours_are_billed_once() {
    let server = ServerProcess::start(&[]);
    // Two hours that both closed before anything arrives: the agent span at
    // 2 s before the end of the hour three hours ago, its child call 1 s
    // into the next hour.
    const HOUR: u128 = 3_600_000_000_000;
    let now = now_ns();
    let boundary = now - now % HOUR - 2 * HOUR;
    let from = chrono::DateTime::from_timestamp_nanos(i64::try_from(boundary - 2 * HOUR).unwrap()).to_rfc3339();
    let from = from.replace('+', "%2B");
    let agent: &[(&str, &str)] = &[
        ("gen_ai.operation.name", "invoke_agent"),
        ("gen_ai.request.model", "gpt-4o"),
        ("gen_ai.usage.input_tokens", "3000"),
        ("gen_ai.usage.output_tokens", "300"),
    ];
    let child: &[(&str, &str)] = &[
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.request.model", "gpt-4o"),
        ("gen_ai.usage.input_tokens", "1000"),
        ("gen_ai.usage.output_tokens", "100"),
    ];
    // The child alone: 1,000 x 2.50/1M + 100 x 10.00/1M = 0.0025 + 0.001 = 0.0035.
    // The agent alone: 3,000 x 2.50/1M + 300 x 10.00/1M = 0.0075 + 0.003 = 0.0105.
    for (tenant, agent_first) in [("agent-first", true), ("child-first", false)] {
        let trace = if agent_first { 0xa6e1 } else { 0xa6e2 };
        let agent_body = span_at(tenant, trace, 1, boundary - 2_000_000_000, agent);
        let child_body = span_at(tenant, trace, 2, boundary + 1_000_000_000, child);
        let (first, first_cost, second) = if agent_first { (agent_body, "0.0105", child_body) } else { (child_body, "0.0035", agent_body) };
        assert!(server.export("/v1/traces", "application/json", first).status().is_success());
        // The first span's hour is closed and billed before the second arrives.
        let mut last = None;
        wait_until(
            || {
                last = tenant_total(&server, tenant, &from);
                last.as_deref() == Some(first_cost)
            },
            &format!("{tenant}'s first span to be billed {first_cost}"),
        );
        assert!(server.export("/v1/traces", "application/json", second).status().is_success());
        // Whichever came first, the trace costs its model call once: the
        // agent span carries the roll-up of its child and is not billed.
        wait_until(|| tenant_total(&server, tenant, &from).as_deref() == Some("0.0035"), &format!("{tenant} to cost 0.0035"));
        for _ in 0..3 {
            std::thread::sleep(std::time::Duration::from_millis(400));
            assert_eq!(tenant_total(&server, tenant, &from).as_deref(), Some("0.0035"), "{tenant}");
        }
    }
}

/// One request with a span of three days ago (backdated: a collector that
/// was down, a replay) and one of now: ingest is metered at the receive
/// hour for both, and each keeps its own day, the day partition that
/// stores it and whose storage cost it shares.
fn usage_keeps_the_day_the_data_is_stored_in(server: &ServerProcess) {
    const DAY_NS: u128 = 86_400_000_000_000;
    let now = now_ns();
    let then = now - 3 * DAY_NS;
    let span = |trace: u128, at: u128| {
        json!({
            "traceId": format!("{trace:032x}"),
            "spanId": format!("{:016x}", trace as u64),
            "name": "GET /report",
            "kind": 2,
            "startTimeUnixNano": at.to_string(),
            "endTimeUnixNano": (at + 1_000_000).to_string(),
        })
    };
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [attr("service.name", "reports"), attr("tenant.id", "late")]},
        "scopeSpans": [{"spans": [span(0xda70, then), span(0xda71, now)]}],
    }]})
    .to_string()
    .into_bytes();
    assert!(server.export("/v1/traces", "application/json", body).status().is_success());
    let query = "SELECT substr(CAST(EventDay AS VARCHAR), 1, 10) AS day, substr(CAST(Hour AS VARCHAR), 1, 13) AS hour, \
                 sum(Items) AS items FROM costplane_usage_telemetry WHERE Tenant = 'late' AND Signal = 'traces' \
                 GROUP BY day, hour ORDER BY day";
    wait_until(|| server.sql(query).len() == 2, "both days' usage stored");
    let rows = server.sql(query);
    let date = |ns: u128| chrono::DateTime::from_timestamp_nanos(ns as i64).format("%Y-%m-%d").to_string();
    let days: Vec<(String, u64)> = rows.iter().map(|r| (r["day"].as_str().unwrap().to_owned(), r["items"].as_u64().unwrap())).collect();
    assert_eq!(days, [(date(then), 1), (date(now), 1)], "{rows:?}");
    // Both at the request's one receive hour.
    assert_eq!(rows[0]["hour"], rows[1]["hour"], "{rows:?}");
}

#[test]
fn usage_keeps_the_day_the_data_is_stored_in_embedded() {
    usage_keeps_the_day_the_data_is_stored_in(&ServerProcess::start(&[]));
}

#[test]
fn usage_keeps_the_day_the_data_is_stored_in_clickhouse() {
    let target = costplane_testkit::ClickHouseTarget::new();
    usage_keeps_the_day_the_data_is_stored_in(&ServerProcess::start(&crate::support::clickhouse_args(&target, &[])));
}
