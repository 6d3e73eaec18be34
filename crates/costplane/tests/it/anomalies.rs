//! Anomalies, forecasts and API budgets end to end on the real binary, on
//! both stores: six weeks of daily LLM spend with one injected spike
//! (yesterday), found when the closer closes its hours and again by
//! `costplane anomalies --backfill` with its expected
//! value, impact and top contributor, and sent once to a webhook;
//! dismissing keeps it dismissed across a second backfill; the forecast and
//! budget CLIs print their tables.

use std::process::Command;

use serde_json::{json, Value};

use crate::budgets::receiver;
use crate::support::{clickhouse_args, wait_until, ServerProcess, BIN};

const DAY: u64 = 86_400;

/// A span of tenant acme at `at_secs` carrying `usd` (its own cost).
fn span(at_secs: u64, name: &str, usd: &str, n: u64) -> Value {
    let ns = at_secs * 1_000_000_000;
    json!({
        "traceId": format!("{:032x}", 0x5000 + n), "spanId": format!("{:016x}", 0x100 + n), "name": name, "kind": 3,
        "startTimeUnixNano": ns.to_string(), "endTimeUnixNano": (ns + 1_000_000).to_string(),
        "attributes": [
            // A model no price covers: the span's own cost is what it cost
            // (cost.provided_cost = "when_unpriced").
            {"key": "cost.model", "value": {"stringValue": "house-model-1"}},
            {"key": "cost.usd", "value": {"stringValue": usd}},
        ],
    })
}

fn api(server: &ServerProcess, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let c = reqwest::blocking::Client::new();
    let url = format!("http://{}{path}", server.api);
    let req = match method {
        "GET" => c.get(&url),
        "POST" => c.post(&url),
        "PUT" => c.put(&url),
        _ => c.delete(&url),
    };
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn cli(server: &ServerProcess, args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).args(["--server", &format!("http://{}", server.api)]).output().unwrap();
    assert!(out.status.success(), "costplane {args:?}: {}\n{}", String::from_utf8_lossy(&out.stderr), server.log_text());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_backfill_finds_the_injected_spike_and_nothing_else() {
    backfill_scenario(&[]);
}

#[test]
fn a_backfill_finds_the_injected_spike_on_clickhouse() {
    let target = costplane_testkit::ClickHouseTarget::new();
    backfill_scenario(&clickhouse_args(&target, &[]));
}

fn backfill_scenario(store_args: &[&str]) {
    let (hook, got) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("costplane.toml");
    std::fs::write(
        &config,
        // Hours close at once, and the closer books calls up to 50 days old
        // at their own hour (by default a call over 7 days old is booked
        // invalid at its receive hour, and 32 days are watched).
        format!(
            "[ledger]\nclose_after_secs = 0\nlookback_days = 50\nllm_event_back_hours = 1200\n\
             [anomalies]\nnotify = [{{ kind = \"webhook\", url = \"{hook}\", secret = \"anomaly-hook-secret-01\" }}]\n"
        ),
    )
    .unwrap();
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(store_args);
    let server = ServerProcess::start(&args);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let today = now - now % DAY;
    // Days today-42 .. today at 00:30 UTC: $10 of "chat" each; the spike
    // day (yesterday) adds $40 of "embed": $50 that day. Today's span only
    // once 00:30 has passed (a missing $10 in a closed hour is a real drop).
    let spike_day = today - DAY;
    let first = if now > today + 1_860 { 0 } else { 1 };
    let mut spans: Vec<Value> = (first..=42).map(|k| span(today - k * DAY + 1_800, "chat", "10", k)).collect();
    spans.push(span(spike_day + 1_800, "embed", "40", 100));
    // (43 or 42) x $10 + $40.
    let total = ((43 - first) * 10 + 40).to_string();
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "chatbot"}},
            {"key": "tenant.id", "value": {"stringValue": "acme"}},
        ]},
        "scopeSpans": [{"spans": spans}],
    }]});
    let r = server.export("/v1/traces", "application/json", body.to_string().into_bytes());
    assert!(r.status().is_success());
    let since = chrono::DateTime::from_timestamp((today - 42 * DAY) as i64, 0).unwrap().format("%Y-%m-%d").to_string();
    wait_until(
        || api(&server, "GET", &format!("/api/v1/costs?from={since}"), None).1["total"] == total.as_str(),
        "the six weeks of spend in the ledger",
    );

    // The closer closed those hours (late, all at once): that alone ran
    // detection over them, before any backfill.
    wait_until(
        || api(&server, "GET", "/api/v1/anomalies?grain=day&status=all", None).1["count"] == 1,
        "the spike found when its hours closed",
    );

    let out = cli(&server, &["anomalies", "--backfill", "--since", &since, "--status", "all"]);
    println!("{out}");
    let spike_date = chrono::DateTime::from_timestamp(spike_day as i64, 0).unwrap().format("%Y-%m-%d").to_string();
    assert!(out.contains(&spike_date) && out.contains("spike") && out.contains("operation=embed"), "{out}");

    let (_, daily) = api(&server, "GET", "/api/v1/anomalies?grain=day", None);
    assert_eq!(daily["count"], 1, "{daily:#}");
    let a = &daily["anomalies"][0];
    // Four reference Mondays (or whichever weekday) at $10: expected 10;
    // actual 50; impact 50 - 10 = 40 = 400%.
    assert_eq!(a["window_start"], format!("{spike_date}T00:00:00Z"));
    assert_eq!((a["actual"].as_str(), a["expected"].as_str(), a["impact"].as_str()), (Some("50"), Some("10"), Some("40")));
    assert_eq!(a["impact_pct"], "400");
    assert_eq!(a["direction"], "spike");
    // Today is not closed yet: the daily anomaly may go on.
    assert_eq!(a["status"], "open");
    assert_eq!(
        a["group"],
        json!({"source": "llm", "tenant": "acme", "project": a["group"]["project"], "service": "chatbot", "model": "house-model-1"})
    );
    // Who moved: "embed" went from nothing to $40; "chat" did not move.
    assert_eq!(a["contributors"][0]["dimension"], "operation");
    assert_eq!(a["contributors"][0]["value"], "embed");
    assert_eq!(a["contributors"][0]["change"], "40");
    // The same spike at hourly grain (00:00 against the same weekday's 00:00).
    let (_, hourly) = api(&server, "GET", "/api/v1/anomalies?grain=hour", None);
    assert_eq!(hourly["count"], 1, "{hourly:#}");
    assert_eq!(hourly["anomalies"][0]["window_start"], format!("{spike_date}T00:00:00Z"));
    // The next hour was evaluated and was normal: that one is over.
    assert_eq!(hourly["anomalies"][0]["status"], "resolved");

    // Both were recent, so both were sent to the webhook, once.
    let sent = |got: &crate::budgets::Received| -> Vec<Value> {
        got.lock().unwrap().iter().map(|(_, body)| serde_json::from_slice(body).unwrap()).collect()
    };
    let events = sent(&got);
    assert_eq!(events.len(), 2, "{events:#?}");
    assert!(events.iter().all(|e| e["event"] == "CostplaneCostAnomaly" && e["labels"]["tenant"] == "acme"), "{events:#?}");
    assert!(events.iter().any(|e| e["data"]["id"] == a["id"] && e["data"]["impact"] == "40"), "{events:#?}");

    // Dismissed with a reason; a second backfill keeps it dismissed.
    let id = a["id"].as_str().unwrap().to_owned();
    let (code, _) =
        api(&server, "POST", &format!("/api/v1/anomalies/{id}/dismiss"), Some(json!({"reason": "embedding backfill, planned"})));
    assert_eq!(code, 200);
    cli(&server, &["anomalies", "--backfill", "--since", &since]);
    assert_eq!(sent(&got).len(), 2, "a second backfill notifies nothing again");
    // 60 days back is beyond the 50-day lookback: refused unless asked for.
    let older = chrono::DateTime::from_timestamp((today - 60 * DAY) as i64, 0).unwrap().format("%Y-%m-%d").to_string();
    let server_url = format!("http://{}", server.api);
    let refused = Command::new(BIN).args(["anomalies", "--backfill", "--since", &older, "--server", &server_url]).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("beyond_lookback"), "{}", String::from_utf8_lossy(&refused.stderr));
    cli(&server, &["anomalies", "--backfill", "--beyond-lookback", "--since", &older]);
    assert_eq!(sent(&got).len(), 2, "the longer backfill finds nothing new");
    let (_, dismissed) = api(&server, "GET", "/api/v1/anomalies?status=dismissed", None);
    assert_eq!(dismissed["count"], 1, "{dismissed:#}");
    assert_eq!(dismissed["anomalies"][0]["reason"], "embedding backfill, planned");
    let (code, err) = api(&server, "GET", "/api/v1/anomalies?status=closed", None);
    assert_eq!(code, 400, "{err}");

    // Forecast: one group, 30 days with bands, a month-end projection.
    let (_, fc) = api(&server, "GET", "/api/v1/forecast?group_by=tenant", None);
    let g = &fc["groups"][0];
    assert_eq!(g["group"]["tenant"], "acme", "{fc:#}");
    assert_eq!(g["method"], "holt-winters-weekly");
    assert_eq!(g["days"].as_array().unwrap().len(), 30);
    assert!(g["backtest_mape_pct"].is_number(), "{g:#}");
    let out = cli(&server, &["forecast", "--group-by", "tenant"]);
    assert!(out.contains("acme") && out.contains("MONTH END"), "{out}");

    // API budgets: create, list, change, status, delete.
    let budget = json!({"id": "acme-daily", "scope": {"tenant": "acme"}, "period": "day", "amount": "5"});
    assert_eq!(api(&server, "POST", "/api/v1/budgets", Some(budget.clone())).0, 201);
    assert_eq!(api(&server, "POST", "/api/v1/budgets", Some(budget)).0, 400, "a second create of the same id");
    let (code, err) = api(&server, "POST", "/api/v1/budgets", Some(json!({"id": "x", "period": "year", "amount": "5"})));
    assert_eq!(code, 400, "{err}");
    let (_, list) = api(&server, "GET", "/api/v1/budgets", None);
    assert_eq!(list["budgets"][0]["thresholds"].as_array().unwrap().len(), 4, "default thresholds: {list}");
    let changed = json!({"id": "acme-daily", "scope": {"tenant": "acme"}, "period": "week", "amount": "70"});
    assert_eq!(api(&server, "PUT", "/api/v1/budgets/acme-daily", Some(changed)).0, 200);
    let out = cli(&server, &["budgets", "status"]);
    assert!(out.contains("acme-daily") && out.contains("week") && out.contains("70"), "{out}");
    assert_eq!(api(&server, "DELETE", "/api/v1/budgets/acme-daily", None).0, 204);
    assert_eq!(api(&server, "DELETE", "/api/v1/budgets/acme-daily", None).0, 404);
}

/// A FOCUS CSV row of one day's charge of `resource` of `service` in
/// account 111111111111.
fn bill_row(day: u64, service: &str, resource: &str, cost: &str) -> String {
    use chrono::Datelike;
    let at = |s: u64| chrono::DateTime::from_timestamp(s as i64, 0).unwrap();
    let start = at(day);
    let month = chrono::NaiveDate::from_ymd_opt(start.year(), start.month(), 1).unwrap();
    let next = month.checked_add_months(chrono::Months::new(1)).unwrap();
    let iso = |d: chrono::NaiveDate| format!("{d}T00:00:00Z");
    format!(
        "{cost},111111111111,USD,{},{},Usage,{},{},{cost},{cost},{cost},AWS,AWS,{resource},{service},111111111111",
        iso(next),
        iso(month),
        at(day + DAY).format("%Y-%m-%dT%H:%M:%SZ"),
        start.format("%Y-%m-%dT%H:%M:%SZ"),
    )
}

#[test]
fn an_imported_bill_is_watched_per_service_at_daily_grain() {
    // Six weeks of a daily AWS bill, three services: Amazon EC2 $10 a day
    // (instance i-a $6, instance i-b $4), Amazon S3 $2, AWS Lambda $1;
    // yesterday i-b cost $44, so EC2 $50. Nothing but the import runs
    // detection.
    // Expected: one anomaly, daily, for Amazon EC2: four reference
    // weekdays at $10 → expected 10; actual 50; impact 40 = 400%. Its top
    // contributor is resource i-b: actual 44 against 4 expected (its four
    // reference days), change 40. None at hourly grain: a daily bill's
    // charges sit at 00:00 and every other hour is empty by nature. S3 and
    // Lambda did not move.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("costplane.toml");
    std::fs::write(&config, "[ledger]\nclose_after_secs = 0\nlookback_days = 50\n").unwrap();
    let server = ServerProcess::start(&["--config", config.to_str().unwrap()]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let today = now - now % DAY;
    let mut csv = String::from(
        "BilledCost,BillingAccountId,BillingCurrency,BillingPeriodEnd,BillingPeriodStart,ChargeCategory,ChargePeriodEnd,\
ChargePeriodStart,ContractedCost,EffectiveCost,ListCost,ProviderName,PublisherName,ResourceId,ServiceName,SubAccountId\n",
    );
    for k in 1..=42 {
        let day = today - k * DAY;
        for (service, resource, cost) in [
            ("Amazon EC2", "arn:aws:ec2:i-a", "6"),
            ("Amazon EC2", "arn:aws:ec2:i-b", if k == 1 { "44" } else { "4" }),
            ("Amazon S3", "arn:aws:s3:logs", "2"),
            ("AWS Lambda", "arn:aws:lambda:fn", "1"),
        ] {
            csv.push_str(&bill_row(day, service, resource, cost));
            csv.push('\n');
        }
    }
    let file = dir.path().join("bill.csv");
    std::fs::write(&file, csv).unwrap();
    let out = Command::new(BIN).args(["import", "focus", "--server", &format!("http://{}", server.api)]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    wait_until(|| api(&server, "GET", "/api/v1/anomalies?grain=day&status=all", None).1["count"] == 1, "the spike found after the import");
    let (_, daily) = api(&server, "GET", "/api/v1/anomalies?grain=day&status=all", None);
    let a = &daily["anomalies"][0];
    let spike_date = chrono::DateTime::from_timestamp((today - DAY) as i64, 0).unwrap().format("%Y-%m-%d").to_string();
    assert_eq!(a["window_start"], format!("{spike_date}T00:00:00Z"), "{daily:#}");
    assert_eq!((a["actual"].as_str(), a["expected"].as_str(), a["impact"].as_str()), (Some("50"), Some("10"), Some("40")), "{a:#}");
    assert_eq!(a["direction"], "spike");
    assert_eq!(a["group"]["source"], "cloud", "{a:#}");
    assert_eq!(a["group"]["provider_service"], "Amazon EC2", "{a:#}");
    let top = &a["contributors"][0];
    assert_eq!(
        (top["dimension"].as_str(), top["value"].as_str(), top["actual"].as_str(), top["expected"].as_str(), top["change"].as_str()),
        (Some("resource"), Some("arn:aws:ec2:i-b"), Some("44"), Some("4"), Some("40")),
        "{a:#}"
    );
    // A resource is a dimension of the cost API too: i-b's 42 days are
    // 41 x 4 + 44 = 208.
    let date = |s: u64| chrono::DateTime::from_timestamp(s as i64, 0).unwrap().format("%Y-%m-%d").to_string();
    let query = format!("/api/v1/costs?from={}&to={}&group_by=resource&provider_service=Amazon%20EC2", date(today - 42 * DAY), date(today));
    let (_, by_resource) = api(&server, "GET", &query, None);
    let i_b = by_resource["rows"].as_array().unwrap().iter().find(|r| r["resource"] == "arn:aws:ec2:i-b").cloned();
    assert_eq!(i_b.as_ref().and_then(|r| r["cost"].as_str()), Some("208"), "{by_resource:#}");
    let (_, hourly) = api(&server, "GET", "/api/v1/anomalies?grain=hour&status=all", None);
    assert_eq!(hourly["count"], 0, "{hourly:#}");
    // The service is a filter of the anomaly list and a forecast group.
    let (_, s3) = api(&server, "GET", "/api/v1/anomalies?status=all&provider_service=Amazon%20S3", None);
    assert_eq!(s3["count"], 0, "{s3:#}");
    let (_, fc) = api(&server, "GET", "/api/v1/forecast?group_by=provider_service&source=cloud", None);
    let mut services: Vec<&str> =
        fc["groups"].as_array().unwrap().iter().map(|g| g["group"]["provider_service"].as_str().unwrap()).collect();
    services.sort_unstable();
    assert_eq!(services, ["AWS Lambda", "Amazon EC2", "Amazon S3"], "{fc:#}");
}
