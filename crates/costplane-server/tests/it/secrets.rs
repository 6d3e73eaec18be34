//! Notification secrets stay secret: after a budget notifies a webhook, a
//! Slack URL, Alertmanager and a target that keeps failing, neither the
//! server's log (at debug level), nor the configuration's `Debug`, nor the
//! stored notification keys hold the webhook secret or any URL's token.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use costplane_server::Config;
use costplane_store::{RecordTable, Store};
use serde_json::json;

use crate::support::RunningServer;

const SECRET: &str = "webhook-secret-5f3a9c0d1e";
const TOKENS: [&str; 4] = ["hook-token-8d2e41", "slack-token-b7c913", "am-token-44e0aa", "failing-token-09f1c2"];

/// Log lines, collected from the test's thread (where a current-thread
/// runtime runs the whole server).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn no_notification_secret_reaches_the_log_the_config_debug_or_the_keys() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).with_env_filter("debug").finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let hits: Arc<Mutex<Vec<String>>> = Arc::default();
    let receiver = {
        let hits = Arc::clone(&hits);
        axum::Router::new().fallback(move |uri: http::Uri| {
            let hits = Arc::clone(&hits);
            async move {
                hits.lock().unwrap().push(uri.path().to_owned());
                // The failing target is retried, with its failures logged.
                if uri.path().contains("failing") {
                    http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    http::StatusCode::OK
                }
            }
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let mut config = Config::default();
    config.anomalies.interval = "1s".into();
    config.budgets = vec![serde_json::from_value(json!({
        "id": "acme-month", "scope": {"tenant": "acme"}, "period": "month", "amount": "1",
        "thresholds": [{"percent": "50"}],
        "notify": [
            {"kind": "webhook", "url": format!("http://{at}/hooks/{}", TOKENS[0]), "secret": SECRET},
            {"kind": "slack", "url": format!("http://{at}/services/T0/B0/{}", TOKENS[1])},
            {"kind": "alertmanager", "url": format!("http://{at}/{}", TOKENS[2])},
            {"kind": "slack", "url": format!("http://{at}/services/{}?token={}", TOKENS[3], TOKENS[3])},
        ],
    }))
    .unwrap()];
    let debug = format!("{config:?} {:?}", config.budgets[0].notify);
    let mut server = RunningServer::start(config, Duration::ZERO, 0).await;

    crate::support::write_ledger(&server.store.inner, crate::metrics::ledger(&[("acme", "gpt-4o", "10")])).await;
    // Three targets take the event; the fourth refuses it four times.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let seen = hits.lock().unwrap().clone();
        let failing = seen.iter().filter(|p| p.contains("failing")).count();
        if seen.iter().any(|p| p.contains(TOKENS[0]))
            && seen.iter().any(|p| p.contains(TOKENS[1]))
            && seen.iter().any(|p| p.ends_with("/api/v2/alerts"))
            && failing >= 4
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not every target was called: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The failing target's last failure is logged after its last attempt.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let keys: Vec<String> =
        server.store.inner.records(RecordTable::BudgetNotifications).await.unwrap().into_iter().map(|r| r.key).collect();
    server.stop().await;

    let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    // The log did record the deliveries, naming the target by host.
    assert!(log.contains("notification failed; retrying") && log.contains(&format!("http://{at}")), "{log}");
    assert_eq!(keys.len(), 3, "one key per delivered target: {keys:?}");
    for needle in TOKENS.iter().chain([&SECRET]) {
        assert!(!log.contains(needle), "the log shows {needle}:\n{log}");
        assert!(!debug.contains(needle), "the config's Debug shows {needle}: {debug}");
        assert!(!keys.iter().any(|k| k.contains(needle)), "a notification key holds {needle}: {keys:?}");
    }
}
