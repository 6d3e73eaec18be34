//! Who may see and change budgets, anomalies and forecasts: tenant keys see
//! their own tenant only, writes need an admin key, configured budgets are
//! read-only through the API.

use std::time::Duration;

use costplane_server::auth::ApiKey;
use costplane_server::insights::config::BudgetConfig;
use costplane_server::Config;
use serde_json::{json, Value};

use crate::support::RunningServer;

const ADMIN: &str = "admin-key-0123456789abcdef";
const ACME: &str = "acme-key-0123456789abcdef";
const GLOBEX: &str = "globex-key-0123456789abcdef";

fn budget(id: &str, tenant: &str) -> BudgetConfig {
    serde_json::from_value(json!({"id": id, "scope": {"tenant": tenant}, "period": "month", "amount": "100"})).unwrap()
}

async fn call(server: &RunningServer, key: Option<&str>, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let c = reqwest::Client::new();
    let url = format!("http://{}{path}", server.api);
    let mut req = match method {
        "GET" => c.get(&url),
        "POST" => c.post(&url),
        _ => c.delete(&url),
    };
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn ids(v: &Value) -> Vec<String> {
    v["budgets"].as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_keys_see_their_own_budgets_anomalies_and_forecasts_only() {
    let mut config = Config::default();
    config.api.keys = vec![
        ApiKey { key: ADMIN.into(), tenant: None, role: Some("admin".into()) },
        ApiKey { key: ACME.into(), tenant: Some("acme".into()), role: None },
        ApiKey { key: GLOBEX.into(), tenant: Some("globex".into()), role: None },
    ];
    config.budgets = vec![budget("acme-month", "acme"), budget("globex-month", "globex")];
    let mut server = RunningServer::start(config, Duration::ZERO, 0).await;

    assert_eq!(call(&server, None, "GET", "/api/v1/budgets", None).await.0, 401);
    let (_, all) = call(&server, Some(ADMIN), "GET", "/api/v1/budgets", None).await;
    assert_eq!(ids(&all), ["acme-month", "globex-month"]);
    let (_, mine) = call(&server, Some(ACME), "GET", "/api/v1/budgets", None).await;
    assert_eq!(ids(&mine), ["acme-month"]);
    let (_, status) = call(&server, Some(GLOBEX), "GET", "/api/v1/budgets/status", None).await;
    assert_eq!(ids(&status), ["globex-month"]);
    assert_eq!(status["budgets"][0]["spent"], "0");
    assert_eq!(call(&server, Some(ACME), "GET", "/api/v1/budgets/globex-month", None).await.0, 404);

    // Writes need an admin key; configured budgets stay as configured.
    let new = json!({"id": "acme-day", "scope": {"tenant": "acme"}, "period": "day", "amount": "3"});
    assert_eq!(call(&server, Some(ACME), "POST", "/api/v1/budgets", Some(new.clone())).await.0, 403);
    assert_eq!(call(&server, Some(ADMIN), "POST", "/api/v1/budgets", Some(new)).await.0, 201);
    let (code, err) = call(&server, Some(ADMIN), "DELETE", "/api/v1/budgets/acme-month", None).await;
    assert_eq!(code, 400);
    assert!(err["error"].as_str().unwrap().contains("config file"), "{err}");
    let (_, mine) = call(&server, Some(ACME), "GET", "/api/v1/budgets", None).await;
    assert_eq!(ids(&mine), ["acme-month", "acme-day"]);

    // Another tenant's anomalies and forecasts are refused, not filtered silently.
    for path in ["/api/v1/anomalies?tenant=globex", "/api/v1/forecast?tenant=globex"] {
        assert_eq!(call(&server, Some(ACME), "GET", path, None).await.0, 403, "{path}");
    }
    let (code, own) = call(&server, Some(ACME), "GET", "/api/v1/anomalies", None).await;
    assert_eq!((code, own["count"].as_u64()), (200, Some(0)));
    let since = json!({"since": (chrono::Utc::now() - chrono::Duration::days(2)).format("%Y-%m-%d").to_string()});
    assert_eq!(call(&server, Some(ACME), "POST", "/api/v1/anomalies/backfill", Some(since.clone())).await.0, 403);
    assert_eq!(call(&server, Some(ADMIN), "POST", "/api/v1/anomalies/backfill", Some(since)).await.0, 200);
    assert_eq!(call(&server, Some(ACME), "POST", "/api/v1/anomalies/nope/dismiss", Some(json!({"reason": "x"}))).await.0, 404);
    let (code, err) = call(&server, Some(ADMIN), "GET", "/api/v1/anomalies?colour=red", None).await;
    assert_eq!(code, 400);
    assert!(err["error"].as_str().unwrap().contains("unknown parameter 'colour'"), "{err}");
    server.stop().await;
}

/// Notifications go to allowed `http(s)` hosts only, and a target that
/// answers with a redirect has refused the event: it is not followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_go_to_allowed_hosts_and_redirects_are_not_followed() {
    use std::sync::{Arc, Mutex};
    let hits: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let hit = |name: &'static str, hits: &Arc<Mutex<Vec<&'static str>>>| {
        let hits = Arc::clone(hits);
        axum::routing::post(move || async move {
            hits.lock().unwrap().push(name);
            "ok"
        })
    };
    let receiver = axum::Router::new()
        .route("/direct", hit("direct", &hits))
        .route("/final", hit("final", &hits))
        .route("/redirect", axum::routing::post(|| async { (http::StatusCode::TEMPORARY_REDIRECT, [(http::header::LOCATION, "/final")]) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let mut config = Config::default();
    config.anomalies.interval = "1s".into();
    config.anomalies.notify_hosts = vec!["127.0.0.1".into()];
    let webhook = |path: &str| json!({"kind": "webhook", "url": format!("http://{at}{path}"), "secret": "0123456789abcdef"});
    config.budgets = vec![serde_json::from_value(json!({
        "id": "acme-month", "scope": {"tenant": "acme"}, "period": "month", "amount": "1",
        "thresholds": [{"percent": "50"}],
        "notify": [webhook("/redirect"), webhook("/direct")],
    }))
    .unwrap()];
    let mut server = RunningServer::start(config, Duration::ZERO, 0).await;

    // Budgets created through the API are held to the same rules.
    for (url, needle) in [
        ("http://hooks.elsewhere.example/x", "notify_hosts"),
        ("file:///etc/passwd", "http:// or https://"),
        ("gopher://127.0.0.1/x", "http:// or https://"),
    ] {
        let b = json!({"id": "b", "period": "day", "amount": "1", "notify": [{"kind": "slack", "url": url}]});
        let (code, err) = call(&server, None, "POST", "/api/v1/budgets", Some(b)).await;
        assert_eq!(code, 400, "{url}: {err}");
        assert!(err["error"].as_str().unwrap().contains(needle), "{url}: {err}");
    }

    crate::support::write_ledger(&server.store.inner, crate::metrics::ledger(&[("acme", "gpt-4o", "10")])).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !hits.lock().unwrap().contains(&"direct") {
        assert!(std::time::Instant::now() < deadline, "the budget's webhook was never called: {:?}", hits.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Evaluations go on every second, retrying the redirecting target.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = hits.lock().unwrap().clone();
    assert!(!seen.contains(&"final"), "a redirect was followed: {seen:?}");
    assert_eq!(seen.iter().filter(|h| **h == "direct").count(), 1, "sent once: {seen:?}");
    server.stop().await;
}
