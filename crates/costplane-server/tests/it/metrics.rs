//! `/metrics` cost series through `Router::oneshot` over a real DuckDB store
//! that counts the ledger queries it answers: bounded labels, exact sums,
//! label escaping, and the cache.

use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use chrono::{Datelike, TimeZone, Utc};
use costplane_pipeline::{BufferConfig, Pipeline, PipelineConfig};
use costplane_server::api::{router_with, ApiState};
use costplane_server::auth::ApiKey;
use costplane_server::config::MetricsSection;
use costplane_server::costs::closer::LedgerObserver;
use costplane_server::costs::metrics::{CostCounters, MetricsCache};
use costplane_server::costs::CostState;
use costplane_server::otlp::inflight::InflightLimit;
use costplane_store::duckdb::DuckDbStore;
use costplane_store::Store;
use costplane_telemetry::usage::{ChargeStatus, LedgerRow, PricingStatus, Source, UsageType};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use rust_decimal::Decimal;
use tower::ServiceExt;

use crate::support::WrappedStore;

struct App {
    router: axum::Router,
    counters: Arc<CostCounters>,
    store: Arc<WrappedStore>,
    _dir: tempfile::TempDir,
}

impl App {
    async fn new(metrics: MetricsSection, keys: Vec<ApiKey>) -> App {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(WrappedStore::new(DuckDbStore::open(dir.path()).unwrap(), Duration::ZERO, 0));
        let dyn_store: Arc<dyn Store> = store.clone();
        let config = PipelineConfig { dead_letter_dir: dir.path().join("dead-letter"), ..PipelineConfig::default() };
        let decoder = costplane_server::otlp::Ingest::decoder_for(costplane_telemetry::Limits::default(), None, None);
        let handle = Pipeline::start(config, dyn_store.clone(), BufferConfig::Memory, decoder).unwrap();
        let costs = CostState::new(Arc::clone(&dyn_store), &costplane_server::Config::default(), handle.pipeline().clone()).unwrap();
        let api = ApiState { pipeline: handle.pipeline().clone(), store: dyn_store, inflight: InflightLimit::new(1 << 20) };
        let cache = Arc::new(MetricsCache::new(&metrics).unwrap());
        let counters = Arc::clone(&cache.counters);
        let router = router_with(api, costs, keys, cache);
        std::mem::forget(handle); // the writer task lives as long as the runtime
        App { router, counters, store, _dir: dir }
    }

    async fn get(&self, uri: &str, key: Option<&str>) -> String {
        self.get_with(uri, key, None).await.1
    }

    /// GET with an optional `Accept`; answers (content type, body).
    async fn get_with(&self, uri: &str, key: Option<&str>, accept: Option<&str>) -> (String, String) {
        let mut req = Request::builder().uri(uri);
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let resp = self.router.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
        let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        (ct, String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap())
    }

    /// Writes ledger rows (tenant, model, cost) in the current hour.
    async fn bill(&self, rows: &[(&str, &str, &str)]) {
        crate::support::write_ledger(&self.store.inner, ledger(rows)).await;
    }

    /// Hands ledger rows to the cost counters as the closer does when it
    /// books an hour (the closer's own increase logic is tested beside it).
    async fn book(&self, rows: &[(&str, &str, &str)]) {
        self.counters.booked(&ledger(rows));
    }

    fn ledger_queries(&self) -> u64 {
        self.store.ledger_queries.load(Ordering::SeqCst)
    }
}

/// Ledger rows (tenant, model, cost) in the current hour.
pub fn ledger(rows: &[(&str, &str, &str)]) -> Vec<LedgerRow> {
    let now = Utc::now().timestamp_nanos_opt().unwrap();
    let hour = 3_600_000_000_000i64;
    let start = now - now.rem_euclid(hour);
    rows.iter()
        .map(|(tenant, model, cost)| {
            let status = if *cost == "0" { PricingStatus::Unpriced } else { PricingStatus::Priced };
            LedgerRow::builder(Source::Llm, start, start + hour)
                .cost(Decimal::from_str(cost).unwrap(), "USD")
                .service("OpenAI API", "AI and Machine Learning")
                .provider("openai")
                .consumed(Decimal::ONE, "Tokens")
                .sku(format!("openai/{model}/input"))
                .tags("{}")
                .owner(*tenant, "web", "chat")
                .model(*model)
                .operation("chat")
                .usage_type(UsageType::Input)
                .priced(status, "test")
                .charge_status(ChargeStatus::Provisional)
                .build()
        })
        .collect()
}

fn section(max_series_per_label: usize, cache_ttl: &str) -> MetricsSection {
    // Every family on one TTL here, the request-cost series included.
    MetricsSection { max_series_per_label, cache_ttl: cache_ttl.into(), request_cost_ttl: cache_ttl.into(), ..MetricsSection::default() }
}

/// `(labels, value)` of every `costplane_cost_month_to_date_usd` sample, with
/// label values unescaped.
fn cost_samples(text: &str) -> Vec<(Vec<(String, String)>, Decimal)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("costplane_cost_month_to_date_usd{") else { continue };
        let (labels, value) = rest.rsplit_once("} ").unwrap();
        let mut parsed = Vec::new();
        let mut chars = labels.chars().peekable();
        while chars.peek().is_some() {
            let name: String = chars.by_ref().take_while(|&c| c != '=').collect();
            assert_eq!(chars.next(), Some('"'), "{line}");
            let mut v = String::new();
            loop {
                match chars.next().unwrap() {
                    '\\' => match chars.next().unwrap() {
                        'n' => v.push('\n'),
                        c @ ('\\' | '"') => v.push(c),
                        c => panic!("bad escape \\{c} in {line}"),
                    },
                    '"' => break,
                    '\n' => panic!("raw newline in {line}"),
                    c => v.push(c),
                }
            }
            parsed.push((name, v));
            if chars.peek() == Some(&',') {
                chars.next();
            }
        }
        out.push((parsed, Decimal::from_str(value).unwrap()));
    }
    out
}

fn label<'a>(labels: &'a [(String, String)], name: &str) -> &'a str {
    &labels.iter().find(|(n, _)| n == name).unwrap().1
}

/// The month's total from the cost API, over the whole month.
async fn api_month_total(app: &App, key: Option<&str>) -> Decimal {
    let now = Utc::now();
    let from = Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).unwrap();
    let to = if now.month() == 12 {
        Utc.with_ymd_and_hms(now.year() + 1, 1, 1, 0, 0, 0).unwrap()
    } else {
        Utc.with_ymd_and_hms(now.year(), now.month() + 1, 1, 0, 0, 0).unwrap()
    };
    let body = app.get(&format!("/api/v1/costs?from={}&to={}", from.format("%Y-%m-%d"), to.format("%Y-%m-%d")), key).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    Decimal::from_str(v["total"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn tenants_past_the_cap_fold_into_other_and_the_sum_stays_exact() {
    let app = App::new(section(2, "1h"), vec![]).await;
    // Month to date per tenant: acme 1.5 + 0.25 = 1.75, globex 0.8, hooli 0.3,
    // umbrella 0.3, initech 0.000000000001. With a cap of 2, acme and globex
    // keep their names; hooli, umbrella and initech become one series,
    // other = 0.3 + 0.3 + 0.000000000001 = 0.600000000001. All series:
    // 1.5 + 0.25 + 0.8 + 0.600000000001 = 3.150000000001, the ledger's total.
    app.bill(&[
        ("acme", "gpt-4o", "1.5"),
        ("acme", "claude-sonnet-4", "0.25"),
        ("globex", "gpt-4o", "0.8"),
        ("hooli", "gpt-4o", "0.3"),
        ("umbrella", "gpt-4o", "0.1"),
    ])
    .await;
    // Same series twice: sums across writes too.
    app.bill(&[("umbrella", "gpt-4o", "0.2"), ("initech", "gpt-4o", "0.000000000001")]).await;

    let text = app.get("/metrics", None).await;
    let samples = cost_samples(&text);
    let tenants: std::collections::BTreeSet<&str> = samples.iter().map(|(l, _)| label(l, "tenant")).collect();
    assert_eq!(tenants, ["acme", "globex", "other"].into(), "{text}");
    assert_eq!(tenants.len(), 2 + 1);
    let other: Decimal = samples.iter().filter(|(l, _)| label(l, "tenant") == "other").map(|(_, v)| *v).sum();
    assert_eq!(other, Decimal::from_str("0.600000000001").unwrap(), "{text}");
    // Two models fit under the cap: kept as they are.
    let models: std::collections::BTreeSet<&str> = samples.iter().map(|(l, _)| label(l, "model")).collect();
    assert_eq!(models, ["claude-sonnet-4", "gpt-4o"].into());
    assert_eq!(samples.len(), 4, "{text}");
    // Exact: all series together equal the API's total for the month.
    let sum: Decimal = samples.iter().map(|(_, v)| *v).sum();
    assert_eq!(sum, Decimal::from_str("3.150000000001").unwrap());
    assert_eq!(sum, api_month_total(&app, None).await);
    assert!(text.contains("costplane_cost_folded_label_values{label=\"tenant\"} 3\n"), "{text}");
    assert!(text.contains("costplane_cost_folded_label_values{label=\"model\"} 0\n"), "{text}");
    // The pipeline's series are still there.
    assert!(text.contains("\ncostplane_store_up "), "{text}");
    assert!(text.contains("\ncostplane_inflight_request_bytes 0\n"), "{text}");
}

#[tokio::test]
async fn many_tenants_give_cap_plus_one_values() {
    let app = App::new(section(5, "1h"), vec![]).await;
    // 40 tenants, tenant i costing i + 0.000000000001: the five dearest
    // (t35..t39) stay, 35 fold.
    let rows: Vec<(String, String)> = (0..40).map(|i| (format!("t{i:02}"), format!("{i}.000000000001"))).collect();
    let refs: Vec<(&str, &str, &str)> = rows.iter().map(|(t, c)| (t.as_str(), "gpt-4o", c.as_str())).collect();
    app.bill(&refs).await;
    let samples = cost_samples(&app.get("/metrics", None).await);
    let tenants: std::collections::BTreeSet<&str> = samples.iter().map(|(l, _)| label(l, "tenant")).collect();
    assert_eq!(tenants, ["other", "t35", "t36", "t37", "t38", "t39"].into());
    // 0 + 1 + ... + 34 = 595, plus 35 x 0.000000000001.
    let other: Decimal = samples.iter().filter(|(l, _)| label(l, "tenant") == "other").map(|(_, v)| *v).sum();
    assert_eq!(other, Decimal::from_str("595.000000000035").unwrap());
    assert_eq!(samples.iter().map(|(_, v)| *v).sum::<Decimal>(), api_month_total(&app, None).await);
}

#[tokio::test]
async fn label_values_are_escaped_and_cut() {
    let app = App::new(section(100, "1h"), vec![]).await;
    let long = "é".repeat(100); // 200 bytes
    app.bill(&[("a\"b\\c\n", "gpt-4o", "1.25"), (&long, "gpt-4o", "2")]).await;
    let text = app.get("/metrics", None).await;
    assert!(
        text.contains(
            "costplane_cost_month_to_date_usd{source=\"llm\",cost_type=\"llm\",service=\"chat\",tenant=\"a\\\"b\\\\c\\n\",\
             project=\"web\",provider=\"openai\",model=\"gpt-4o\"} 1.25\n"
        ),
        "{text}"
    );
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.split_once(' ').is_some(), "every sample is one line: {line:?}");
    }
    let samples = cost_samples(&text);
    let tenants: Vec<&str> = samples.iter().map(|(l, _)| label(l, "tenant")).collect();
    assert!(tenants.contains(&"a\"b\\c\n"), "{tenants:?}");
    // Cut to 128 bytes at a character boundary: 64 two-byte characters.
    assert!(tenants.contains(&"é".repeat(64).as_str()), "{tenants:?}");
}

/// Ledger reads of one refresh: the month's groups, the 30-day sum, the
/// reconciliation's three (estimates, invoices, cloud AI lines), and the
/// request-cost series' two (requests with their pods' cost, then the
/// telemetry cost per item).
const QUERIES_PER_REFRESH: u64 = 7;

#[tokio::test]
async fn a_scrape_within_the_ttl_reads_no_ledger() {
    let app = App::new(section(100, "1h"), vec![]).await;
    app.bill(&[("acme", "gpt-4o", "1")]).await;
    let first = app.get("/metrics", None).await;
    assert_eq!(app.ledger_queries(), QUERIES_PER_REFRESH);
    app.bill(&[("acme", "gpt-4o", "2")]).await;
    for _ in 0..5 {
        let again = app.get("/metrics", None).await;
        assert_eq!(cost_samples(&again), cost_samples(&first), "served from the cache");
    }
    assert_eq!(app.ledger_queries(), QUERIES_PER_REFRESH, "five more scrapes, no more queries");
    assert_eq!(cost_samples(&first)[0].1, Decimal::ONE);
}

#[tokio::test]
async fn an_expired_cache_is_refreshed_off_the_scrape() {
    let app = App::new(section(100, "100ms"), vec![]).await;
    app.bill(&[("acme", "gpt-4o", "1")]).await;
    // A ledger that takes 2 s to sum.
    app.store.ledger_query_delay_ms.store(2_000, Ordering::SeqCst);
    let started = Instant::now();
    let first = app.get("/metrics", None).await; // no series yet: this one waits
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(cost_samples(&first)[0].1, Decimal::ONE);
    app.bill(&[("acme", "gpt-4o", "2")]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Expired: the scrape gets the last series at once; one refresh starts.
    for _ in 0..3 {
        let started = Instant::now();
        let stale = app.get("/metrics", None).await;
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
        assert_eq!(cost_samples(&stale)[0].1, Decimal::ONE);
    }
    // The refresh tasks run their queries (the request-cost series' two one
    // after the other, 2 s each here): one refresh for three scrapes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.ledger_queries() < 2 * QUERIES_PER_REFRESH && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.ledger_queries(), 2 * QUERIES_PER_REFRESH, "one refresh for three scrapes");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = app.get("/metrics", None).await;
        if cost_samples(&text)[0].1 == Decimal::from(3) {
            break;
        }
        assert!(Instant::now() < deadline, "the refresh never landed: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn tenant_keys_get_their_own_series() {
    let keys = vec![
        ApiKey { key: "admin-0123456789abcdef".into(), tenant: None, role: Some("admin".into()) },
        ApiKey { key: "acme-0123456789abcdef".into(), tenant: Some("acme".into()), role: None },
    ];
    let app = App::new(section(100, "1h"), keys).await;
    app.bill(&[("acme", "gpt-4o", "1"), ("globex", "gpt-4o", "2")]).await;
    let admin = cost_samples(&app.get("/metrics", Some("admin-0123456789abcdef")).await);
    assert_eq!(admin.len(), 2);
    let acme = cost_samples(&app.get("/metrics", Some("acme-0123456789abcdef")).await);
    assert_eq!(acme.len(), 1);
    assert_eq!(label(&acme[0].0, "tenant"), "acme");
    assert_eq!(acme[0].1, api_month_total(&app, Some("acme-0123456789abcdef")).await);
}

#[test]
fn the_metrics_section_is_read_and_checked() {
    let config = costplane_server::Config::from_toml("[metrics]\nmax_series_per_label = 5\ncache_ttl = \"1m\"\n").unwrap();
    assert_eq!(config.metrics.max_series_per_label, 5);
    assert_eq!(config.metrics.cache_ttl().unwrap(), Duration::from_secs(60));
    let err = costplane_server::Config::from_toml("[metrics]\ncache_ttl = \"soon\"\n").unwrap_err();
    assert!(err.contains("metrics.cache_ttl"), "{err}");
    // Cost per request scans the month's spans: made every 5 minutes unless set.
    assert_eq!(config.metrics.request_cost_ttl().unwrap(), Duration::from_secs(300));
    let config = costplane_server::Config::from_toml("[metrics]\nrequest_cost_ttl = \"30s\"\n").unwrap();
    assert_eq!(config.metrics.request_cost_ttl().unwrap(), Duration::from_secs(30));
    let err = costplane_server::Config::from_toml("[metrics]\nrequest_cost_ttl = \"hourly\"\n").unwrap_err();
    assert!(err.contains("metrics.request_cost_ttl"), "{err}");
    let err = costplane_server::Config::from_toml("[metrics]\nmax_label_value_bytes = 0\n").unwrap_err();
    assert!(err.contains("metrics.max_label_value_bytes"), "{err}");
    let err = costplane_server::Config::from_toml("[metrics]\nmax_series = 5\n").unwrap_err();
    assert!(err.contains("unknown field `max_series`"), "{err}");
}

/// The value of the one sample starting with `prefix` (name and labels).
fn value_of(text: &str, prefix: &str) -> Decimal {
    let mut found = text.lines().filter_map(|l| l.strip_prefix(prefix)).map(|v| Decimal::from_str(v.trim()).unwrap());
    let v = found.next().unwrap_or_else(|| panic!("no {prefix} in {text}"));
    assert!(found.next().is_none(), "{prefix} twice");
    v
}

#[tokio::test]
async fn booked_rows_feed_the_counters_in_both_formats() {
    let app = App::new(section(100, "1h"), vec![]).await;
    // Booked by the closer: acme 1.25 + 0.5 = 1.75 on gpt-4o; globex
    // an unpriced row ($0) of 1 token (the helper's rows consume 1 unit).
    app.book(&[("acme", "gpt-4o", "1.25"), ("globex", "mystery-1", "0")]).await;
    app.book(&[("acme", "gpt-4o", "0.5")]).await;
    // Written around the closer: in the ledger (month to date), not booked.
    app.bill(&[("acme", "gpt-4o", "10")]).await;

    let (ct, text) = app.get_with("/metrics", None, Some("text/plain;version=0.0.4")).await;
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let acme = "costplane_cost_usd_total{source=\"llm\",cost_type=\"llm\",service=\"chat\",tenant=\"acme\",project=\"web\",\
                provider=\"openai\",model=\"gpt-4o\"} ";
    assert_eq!(value_of(&text, acme), Decimal::from_str("1.75").unwrap(), "{text}");
    assert_eq!(
        value_of(&text, "costplane_unpriced_tokens_total{tenant=\"globex\",service=\"chat\",provider=\"openai\",model=\"mystery-1\"} "),
        Decimal::ONE
    );
    // Month to date is the ledger's: only the 10 written to it (the booked
    // rows went to the counters alone).
    let month: Decimal = cost_samples(&text).iter().filter(|(l, _)| label(l, "tenant") == "acme").map(|(_, v)| *v).sum();
    assert_eq!(month, Decimal::from(10));
    // All in this hour, so also the last 30 days.
    assert_eq!(value_of(&text, "costplane_cost_last_30_days_usd "), Decimal::from(10));
    assert!(text.contains("# TYPE costplane_cost_usd_total counter\n"), "{text}");
    assert!(text.contains("# TYPE costplane_store_write_duration_seconds histogram\n"), "{text}");
    assert!(text.contains("\nprocess_cpu_seconds_total "), "{text}");
    assert!(!text.contains("# EOF"));

    // What Prometheus asks for: OpenMetrics, counters named without _total.
    let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (ct, om) = app.get_with("/metrics", None, Some(prom)).await;
    assert!(ct.starts_with("application/openmetrics-text; version=1.0.0"), "{ct}");
    assert!(om.contains("# TYPE costplane_cost_usd counter\n"), "{om}");
    assert_eq!(value_of(&om, acme), Decimal::from_str("1.75").unwrap());
    assert!(om.ends_with("# EOF\n"), "{om}");
}

#[tokio::test]
async fn budgets_and_api_latency_are_exposed() {
    let mut config = section(100, "1h");
    config.budgets.insert("acme".into(), "500".into());
    config.budgets.insert("*".into(), "2000.50".into());
    let app = App::new(config, vec![]).await;
    app.get("/api/v1/costs?from=2026-01-01&to=2026-01-02", None).await;
    let text = app.get("/metrics", None).await;
    assert_eq!(value_of(&text, "costplane_budget_monthly_usd{tenant=\"acme\"} "), Decimal::from(500));
    assert_eq!(value_of(&text, "costplane_budget_monthly_usd{tenant=\"*\"} "), Decimal::from_str("2000.5").unwrap());
    // One API request timed; /metrics itself is not an API query.
    assert_eq!(value_of(&text, "costplane_query_duration_seconds_count "), Decimal::ONE, "{text}");
    let err = costplane_server::Config::from_toml("[metrics.budgets]\nacme = \"lots\"\n").unwrap_err();
    assert!(err.contains("metrics.budgets.acme"), "{err}");
}
