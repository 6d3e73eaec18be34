//! Every query parameter is checked before any work: a corpus of hostile
//! values (huge, negative, overflowing, unicode, empty, reversed, far
//! dates, NaN, 10,000-character strings) sent to every parameter of every
//! GET endpoint, and to the time fields of the JSON writes, through a real
//! server. Each must be answered (never a dropped connection), never 5xx,
//! and refused with 4xx wherever the value is not one the parameter takes;
//! the server must still serve afterwards.

use std::time::Duration;

use costplane_server::Config;
use futures::StreamExt;

use crate::support::{query_encode, raw_request, RunningServer};

/// How a parameter treats the corpus.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// No corpus value is valid: every one is 4xx.
    Strict,
    /// A comma list: valid only when every item is blank.
    List,
    /// Valid only when empty (the default).
    Defaulted,
    /// A boolean: `0` is valid.
    Flag,
    /// Any text is a valid value (a filter): never 5xx.
    Free,
}

use Kind::*;

/// The hostile values, decoded (they are percent-encoded when sent).
fn corpus() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        " ",
        "0h",
        "0d",
        "-0",
        "-1",
        "-1d",
        "-99999999999999d",
        "99999999999999d",
        "1000000000d",
        "9999999999999h",
        "100000000000m",
        "1.5h",
        "+1d",
        " 1d",
        "1 d",
        "0x10",
        "1e309",
        "NaN",
        "nan",
        "inf",
        "-inf",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "18446744073709551616",
        "99999999999999999999999999999",
        "0,8000000000000",
        "8000000000000,0",
        "0,99999999999",
        "1700000000,1600000000",
        "0,0",
        "-1,1",
        ",",
        ",,,",
        "2026-13-01",
        "2026-02-30",
        "0000-00-00",
        "0001-01-01",
        "1969-12-31",
        "9999-12-31",
        "2262-04-12",
        "+275760-09-13",
        "-2026-01-01",
        "2026-10-01T00:00:00+99:00",
        "2026-10-02,2026-10-01",
        "2026-00",
        "9999-12",
        "0000-01",
        "null",
        "[]",
        "{}",
        "' OR 1=1 --",
        "../../etc/passwd",
        "label:",
        "é",
        "1é",
        "éd",
        "💸",
        "1💸",
        "\u{202e}1d",
        "１d",
        "\u{0}",
        "\r\n",
        "<script>alert(1)</script>",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    v.push("a".repeat(10_000));
    v.push("9".repeat(10_000));
    v.push(format!("{}d", "9".repeat(10_000)));
    v.push(format!("{},{}", "1".repeat(5_000), "2".repeat(5_000)));
    v.push("é".repeat(5_000));
    v
}

/// Already-encoded values, sent as they are (broken percent-encoding,
/// invalid UTF-8).
const RAW: &[&str] = &["%FF", "%C3", "%", "%zz", "%C3%A9%C3", "%00%00"];

fn accepted(kind: Kind, value: &str) -> bool {
    match kind {
        Strict => false,
        List => value.split(',').all(|x| x.trim().is_empty()),
        Defaulted => value.is_empty(),
        Flag => value == "0",
        Free => true,
    }
}

/// (path, fixed valid parameters, the parameter under test, its kind).
fn targets() -> Vec<(&'static str, &'static str, &'static str, Kind)> {
    vec![
        ("/api/v1/costs", "", "from", Strict),
        ("/api/v1/costs", "", "to", Strict),
        ("/api/v1/costs", "", "step", Defaulted),
        ("/api/v1/costs", "", "group_by", List),
        ("/api/v1/costs", "", "tenant", Free),
        ("/api/v1/costs", "", "model", Free),
        ("/api/v1/costs", "", "colour", Strict),
        ("/api/v1/costs/unpriced", "", "from", Strict),
        ("/api/v1/costs/unpriced", "", "to", Strict),
        ("/api/v1/costs/unpriced", "", "tenant", Strict),
        ("/api/v1/costs/untagged", "to=2026-11-01", "from", Strict),
        ("/api/v1/costs/untagged", "from=2026-10-01", "to", Strict),
        ("/api/v1/reconciliation", "", "from", Strict),
        ("/api/v1/reconciliation", "", "to", Strict),
        ("/api/v1/reconciliation", "", "group_by", List),
        ("/api/v1/reconciliation", "", "tolerance_percent", Strict),
        ("/api/v1/reconciliation", "", "tolerance_usd", Strict),
        ("/api/v1/reconciliation", "", "colour", Strict),
        ("/api/v1/telemetry-costs", "", "from", Strict),
        ("/api/v1/telemetry-costs", "", "to", Strict),
        ("/api/v1/telemetry-costs", "", "group_by", List),
        ("/api/v1/telemetry-costs", "group_by=service,span_name", "tenant", Free),
        ("/api/v1/telemetry-costs", "", "sample", Strict),
        ("/api/v1/telemetry-costs", "", "retention_days", Strict),
        ("/api/v1/telemetry-costs", "", "colour", Strict),
        ("/api/v1/unit-costs", "", "from", Strict),
        ("/api/v1/unit-costs", "", "to", Strict),
        ("/api/v1/unit-costs", "", "group_by", List),
        ("/api/v1/unit-costs", "group_by=customer", "tenant", Free),
        ("/api/v1/unit-costs", "", "limit", Strict),
        ("/api/v1/unit-costs", "", "colour", Strict),
        ("/api/v1/traces/0af7651916cd43dd8448eb211c80319c/cost", "", "from", Strict),
        ("/api/v1/traces/0af7651916cd43dd8448eb211c80319c/cost", "", "to", Strict),
        ("/api/v1/traces/0af7651916cd43dd8448eb211c80319c/cost", "", "colour", Strict),
        ("/api/costs/export", "", "month", Strict),
        ("/api/costs/export", "month=2026-10", "format", Strict),
        ("/api/v1/allocation", "", "window", Strict),
        ("/api/v1/allocation", "window=7d", "step", Strict),
        ("/api/v1/allocation", "window=30d", "step", Strict),
        ("/api/v1/allocation", "window=7d", "aggregate", Defaulted),
        ("/api/v1/allocation", "window=7d", "accumulate", Flag),
        ("/api/v1/allocation", "window=7d", "includeIdle", Flag),
        ("/api/v1/allocation", "window=7d", "shareIdle", Flag),
        ("/api/v1/allocation", "window=7d", "shareSplit", Strict),
        ("/api/v1/allocation", "window=7d&step=1d", "shareNamespaces", Free),
        ("/api/v1/anomalies", "", "status", Strict),
        ("/api/v1/anomalies", "", "since", Strict),
        ("/api/v1/anomalies", "", "grain", Strict),
        ("/api/v1/anomalies", "", "tenant", Free),
        ("/api/v1/anomalies", "", "colour", Strict),
        ("/api/v1/forecast", "", "days", Strict),
        ("/api/v1/forecast", "", "group_by", List),
        ("/api/v1/forecast", "", "model", Free),
        ("/api/v1/forecasts", "", "days", Strict),
        ("/api/v1/budgets", "", "id", Strict),
        ("/api/v1/budgets/status", "", "tenant", Strict),
        ("/api/v1/budgets/no-such-budget", "", "x", Strict),
        ("/metrics", "", "x", Free),
        ("/healthz", "", "x", Free),
        ("/readyz", "", "x", Free),
        ("/", "", "x", Free),
        ("/ui/app.js", "", "x", Free),
        ("/ui/style.css", "", "x", Free),
    ]
}

/// Whether `path` is an instance of the route pattern `route` (`{id}`
/// matches one segment).
fn instance(path: &str, route: &str) -> bool {
    let (p, r): (Vec<&str>, Vec<&str>) = (path.split('/').collect(), route.split('/').collect());
    p.len() == r.len() && p.iter().zip(&r).all(|(a, b)| a == b || (b.starts_with('{') && !a.is_empty()))
}

/// A GET route added to `api::ROUTES` without parameters in [`targets`]
/// fails here: the corpus covers every GET endpoint.
#[test]
fn the_corpus_covers_every_get_route() {
    let covered: Vec<&str> = targets().iter().map(|t| t.0).collect();
    for route in costplane_server::api::ROUTES.iter().filter_map(|r| r.strip_prefix("GET ")) {
        assert!(covered.iter().any(|p| instance(p, route)), "GET {route} is not in the hostile corpus's targets; add its parameters");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_query_parameters_are_refused_without_harm() {
    let mut server = RunningServer::start(Config::default(), Duration::ZERO, 0).await;
    let addr = server.api;
    let mut requests: Vec<(String, Kind, bool)> = Vec::new();
    for (path, fixed, param, kind) in targets() {
        let sep = if fixed.is_empty() { "" } else { "&" };
        for value in corpus() {
            let ok = accepted(kind, &value);
            requests.push((format!("{path}?{fixed}{sep}{param}={}", query_encode(&value)), kind, ok));
        }
        for raw in RAW {
            requests.push((format!("{path}?{fixed}{sep}{param}={raw}"), kind, kind == Free));
        }
    }
    // Hostile path segments.
    for value in corpus().into_iter().filter(|v| !v.is_empty()) {
        let id = query_encode(&value);
        requests.push((format!("/api/v1/budgets/{id}"), Strict, false));
        requests.push((format!("/api/v1/anomalies/{id}/dismiss"), Strict, false));
        requests.push((format!("/api/v1/traces/{id}/cost"), Strict, false));
    }
    // Reversed and oversized ranges.
    for target in [
        "/api/v1/costs?from=2026-10-02&to=2026-10-01",
        "/api/v1/costs?from=2026-10-01&to=2026-10-01",
        "/api/v1/costs/unpriced?from=2026-10-02&to=2026-10-01",
        "/api/v1/costs/untagged?from=2026-10-02&to=2026-10-01",
        "/api/v1/telemetry-costs?from=2026-10-02&to=2026-10-01",
        "/api/v1/telemetry-costs?from=2020-01-01&to=2026-10-01",
        "/api/v1/unit-costs?from=2026-10-02&to=2026-10-01",
        "/api/v1/unit-costs?from=2020-01-01&to=2026-10-01",
        "/api/v1/traces/0af7651916cd43dd8448eb211c80319c/cost?from=2026-01-01&to=2026-10-01",
        "/api/v1/allocation?window=1700000000,1600000000",
        "/api/v1/allocation?window=0,9000000000&step=1h",
        "/api/v1/allocation?window=1970-01-01T00:00:00Z,2261-12-31T00:00:00Z&step=1h",
        "/api/v1/allocation?window=106000d&step=1h",
        "/api/v1/allocation?window=367d&step=1h",
    ] {
        requests.push((target.to_owned(), Strict, false));
    }
    // The widest valid ranges are served (from the ledger's rows, not one
    // entry per step).
    for target in ["/api/v1/costs?from=1970-01-01&to=2261-12-31&step=hour", "/api/v1/allocation?window=366d&step=1h"] {
        requests.push((target.to_owned(), Free, true));
    }
    let total = requests.len();
    let answers: Vec<_> = futures::stream::iter(requests)
        .map(|(target, kind, ok)| async move {
            // Dismiss is a POST; everything else a GET.
            let (method, body): (&str, &[u8]) = if target.ends_with("/dismiss") { ("POST", br#"{"reason": "x"}"#) } else { ("GET", b"") };
            let answer = raw_request(addr, method, &target, &[("content-type", "application/json")], body).await;
            (target, kind, ok, answer)
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert_eq!(answers.len(), total);
    let mut failures = Vec::new();
    for (target, kind, ok, answer) in answers {
        let shown: String = target.chars().take(160).collect();
        match answer {
            Err(e) => failures.push(format!("{shown}: no answer: {e}")),
            Ok((status, body)) => {
                let body: String = body.chars().take(300).collect();
                if status >= 500 {
                    failures.push(format!("{shown}: {status} {body}"));
                } else if !ok && !(400..500).contains(&status) {
                    failures.push(format!("{shown} ({kind:?}): {status}, not refused: {body}"));
                } else if (400..500).contains(&status) && !body.contains("\"error\"") && status != 404 {
                    failures.push(format!("{shown}: {status} without a message: {body}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {total} requests went wrong:\n{}", failures.len(), failures.join("\n"));
    // Still alive, and still answering real queries.
    let (status, _) = raw_request(addr, "GET", "/healthz", &[], b"").await.unwrap();
    assert_eq!(status, 200);
    let (status, body) = raw_request(addr, "GET", "/api/v1/allocation?window=2d&step=1h", &[], b"").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = raw_request(addr, "GET", "/api/v1/costs?from=2026-10-01&to=2026-11-01&step=day", &[], b"").await.unwrap();
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

/// The messages say what is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_say_what_to_send() {
    let mut server = RunningServer::start(Config::default(), Duration::ZERO, 0).await;
    let addr = server.api;
    for (target, needle) in [
        ("/api/v1/allocation?window=%C3%A9", "is not a window; use today"),
        ("/api/v1/allocation?window=99999999999999d", "is not a duration"),
        ("/api/v1/allocation?window=1000000000d", "is not a duration"),
        ("/api/v1/allocation?window=100000d", "reaches before 1970-01-01"),
        ("/api/v1/allocation?window=0,8000000000000&step=1h", "is not a window"),
        ("/api/v1/allocation?window=400d&step=1h", "at most 8784 are served (api.max_steps)"),
        ("/api/v1/allocation?window=7d&step=90m", "whole hours"),
        ("/api/v1/allocation?window=7d&accumulate=yes", "is not true or false"),
        ("/api/v1/allocation", "window is required"),
        ("/api/v1/costs?to=9999-12-31", "out of range"),
        ("/api/v1/costs?from=0001-01-01", "out of range"),
        ("/api/costs/export?month=9999-12", "out of range"),
        ("/api/costs/export?month=%2B999-01", "is not a month"),
        ("/api/v1/anomalies?since=2262-04-12", "out of range"),
        ("/api/v1/forecast?days=NaN", "is not 1 to 90"),
        ("/api/v1/budgets?x=1", "takes no parameters"),
    ] {
        let (status, body) = raw_request(addr, "GET", target, &[], b"").await.unwrap();
        assert_eq!(status, 400, "{target}: {body}");
        assert!(body.contains(needle), "{target}: {body}");
    }
    // A long value is named by its start and length, not echoed whole.
    let long = format!("/api/v1/allocation?window={}", "a".repeat(10_000));
    let (status, body) = raw_request(addr, "GET", &long, &[], b"").await.unwrap();
    assert_eq!(status, 400);
    assert!(body.len() < 1_000 && body.contains("10000 bytes"), "{body}");
    server.stop().await;
}

/// The time fields of the JSON writes get the same checks; a backfill is
/// bounded by `ledger.lookback_days` unless asked for more, and by 400
/// days always.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_times_in_bodies_and_long_backfills_are_refused() {
    let mut server = RunningServer::start(Config::default(), Duration::ZERO, 0).await;
    let addr = server.api;
    let json = [("content-type", "application/json")];
    for value in corpus() {
        for (path, body) in [
            ("/api/v1/anomalies/backfill", serde_json::json!({ "since": value })),
            ("/api/v1/anomalies/backfill", serde_json::json!({ "since": "2026-10-01", "until": value })),
            ("/api/v1/reprice", serde_json::json!({ "from": value, "to": "2026-10-01" })),
        ] {
            let body = serde_json::to_vec(&body).unwrap();
            let (status, answer) = raw_request(addr, "POST", path, &json, &body).await.unwrap();
            let shown: String = value.chars().take(40).collect();
            assert!((400..500).contains(&status), "{path} {shown:?}: {status} {answer}");
        }
    }
    let day = 86_400;
    let now = chrono::Utc::now().timestamp();
    let at = |secs: i64| chrono::DateTime::from_timestamp(secs, 0).unwrap().to_rfc3339();
    let backfill = |body: serde_json::Value| {
        let body = serde_json::to_vec(&body).unwrap();
        async move { raw_request(addr, "POST", "/api/v1/anomalies/backfill", &json, &body).await.unwrap() }
    };
    // Within ledger.lookback_days (32 by default): done.
    let (status, body) = backfill(serde_json::json!({ "since": at(now - 3 * day) })).await;
    assert_eq!(status, 200, "{body}");
    // Further back: only when asked for, and never past 400 days.
    let (status, body) = backfill(serde_json::json!({ "since": at(now - 40 * day) })).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("ledger.lookback_days (32)") && body.contains("beyond_lookback"), "{body}");
    let (status, body) = backfill(serde_json::json!({ "since": at(now - 40 * day), "beyond_lookback": true })).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = backfill(serde_json::json!({ "since": at(now - 401 * day), "beyond_lookback": true })).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("at most 400 days"), "{body}");
    let (status, body) = backfill(serde_json::json!({ "since": "0001-01-01", "beyond_lookback": true })).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = raw_request(addr, "GET", "/healthz", &[], b"").await.unwrap();
    assert_eq!(status, 200);
    server.stop().await;
}
