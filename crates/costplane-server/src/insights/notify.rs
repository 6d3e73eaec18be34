//! Sending notifications: signed webhooks, Alertmanager, Slack-compatible
//! webhooks, and always a log line.
//!
//! - Webhook: the event as JSON, with `X-Costplane-Signature: sha256=<hex>`,
//!   the HMAC-SHA256 of the exact body bytes under the target's secret, so a
//!   receiver can check it came from this costplane unaltered.
//! - Alertmanager: `POST <url>/api/v2/alerts` with one alert (labels
//!   `alertname`, `severity` and the event's labels; annotations `summary`,
//!   `description`; `generatorURL` the API link), so Alertmanager's routing,
//!   grouping, silences and receivers apply.
//! - Slack: `{"text": "<summary>"}`.
//!
//! Each delivery is retried with doubling back-off (0.5 s, 1 s, 2 s; four
//! attempts) on connection errors and 5xx/429 answers; other answers are
//! final. Delivery reports success per target, so the caller remembers a
//! notification only once it went out (and retries it later otherwise).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::config::Target;

/// The HTTP client notifications go out with: a 10 s timeout, and
/// redirects are not followed (a target answering 3xx has refused the
/// event), so a webhook cannot bounce the server's requests elsewhere.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("the TLS roots and settings of the notification client load")
}

/// `scheme://host[:port]` of a target URL, for logs: paths and queries of
/// webhook URLs often carry tokens.
pub fn shown(url: &str) -> String {
    crate::secret::SecretUrl::new(url).shown()
}

/// What happened, in every target's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `CostplaneBudgetThreshold` or `CostplaneCostAnomaly`.
    pub alertname: &'static str,
    pub severity: &'static str,
    pub summary: String,
    /// The figures, as the webhook's JSON `data`.
    pub data: Value,
    /// Labels identifying it (budget, threshold, group, ...).
    pub labels: BTreeMap<String, String>,
    pub link: String,
    /// RFC 3339.
    pub starts_at: String,
    pub ends_at: Option<String>,
}

const BLOCK: usize = 64;

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// A short digest of a target's URL, naming it in stored notification
/// keys without keeping the URL (and the token it may carry).
pub fn url_digest(url: &str) -> String {
    hex(&Sha256::digest(url.as_bytes())[..8])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The webhook body.
pub fn webhook_body(e: &Event) -> Value {
    json!({
        "event": e.alertname,
        "severity": e.severity,
        "summary": e.summary,
        "labels": e.labels,
        "data": e.data,
        "link": e.link,
        "starts_at": e.starts_at,
    })
}

/// The Alertmanager API v2 body: a list of one postable alert.
pub fn alertmanager_body(e: &Event) -> Value {
    let mut labels = e.labels.clone();
    labels.insert("alertname".into(), e.alertname.into());
    labels.insert("severity".into(), e.severity.into());
    let mut alert = json!({
        "labels": labels,
        "annotations": { "summary": e.summary, "description": e.data.to_string() },
        "startsAt": e.starts_at,
        "generatorURL": e.link,
    });
    if let Some(end) = &e.ends_at {
        alert["endsAt"] = json!(end);
    }
    json!([alert])
}

/// The log line every event gets, whatever its targets.
pub fn log(event: &Event) {
    tracing::warn!(alert = event.alertname, labels = ?event.labels, link = %event.link, "{}", event.summary);
}

/// Sends `event` to every target (and logs it); true when all took it.
/// Targets whose host `hosts` does not allow are refused (and logged).
pub async fn deliver(http: &reqwest::Client, targets: &[Target], hosts: &[String], event: &Event) -> bool {
    log(event);
    let mut all = true;
    for t in targets {
        all &= deliver_to(http, t, hosts, event).await;
    }
    all
}

/// Sends `event` to one target, with retries; true when it took it.
pub async fn deliver_to(http: &reqwest::Client, target: &Target, hosts: &[String], event: &Event) -> bool {
    if let Err(e) = target.check_url(hosts) {
        tracing::error!(error = %e, alert = event.alertname, "notification not sent; fix the target or anomalies.notify_hosts");
        return false;
    }
    let (url, body, signature) = match target {
        Target::Webhook { url, secret } => {
            let body = serde_json::to_vec(&webhook_body(event)).expect("JSON values serialize");
            let sig = format!("sha256={}", hex(&hmac_sha256(secret.expose().as_bytes(), &body)));
            (url.expose().to_owned(), body, Some(sig))
        }
        Target::Alertmanager { url } => (
            format!("{}/api/v2/alerts", url.expose().trim_end_matches('/')),
            serde_json::to_vec(&alertmanager_body(event)).expect("JSON values serialize"),
            None,
        ),
        Target::Slack { url } => (
            url.expose().to_owned(),
            serde_json::to_vec(&json!({ "text": format!("{} <{}|details>", event.summary, event.link) })).expect("JSON values serialize"),
            None,
        ),
    };
    let ok = post_with_retries(http, &url, body, signature).await;
    if !ok {
        tracing::error!(target = %shown(&url), alert = event.alertname, "notification not delivered; it is retried at the next evaluation");
    }
    ok
}

async fn post_with_retries(http: &reqwest::Client, target: &str, body: Vec<u8>, signature: Option<String>) -> bool {
    let url = shown(target);
    let mut wait = Duration::from_millis(500);
    for attempt in 1..=4 {
        let mut req = http.post(target).header("content-type", "application/json").body(body.clone());
        if let Some(sig) = &signature {
            req = req.header("x-costplane-signature", sig);
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => return true,
            Ok(resp) if !(resp.status().is_server_error() || resp.status().as_u16() == 429) => {
                tracing::error!(%url, status = %resp.status(), "the notification target refused the event");
                return false;
            }
            Ok(resp) => tracing::warn!(%url, status = %resp.status(), attempt, "notification failed; retrying"),
            Err(e) => tracing::warn!(%url, error = %e.without_url(), attempt, "notification failed; retrying"),
        }
        if attempt < 4 {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        // Test case 6: a key longer than the block is hashed first.
        let mac = hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(hex(&mac), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }

    #[test]
    fn alertmanager_alert_carries_name_labels_and_link() {
        let e = Event {
            alertname: "CostplaneBudgetThreshold",
            severity: "warning",
            summary: "s".into(),
            data: json!({"spent": "90"}),
            labels: BTreeMap::from([("budget".to_owned(), "b".to_owned())]),
            link: "http://x/api/v1/budgets/status".into(),
            starts_at: "2026-11-23T00:00:00Z".into(),
            ends_at: None,
        };
        let body = alertmanager_body(&e);
        assert_eq!(body[0]["labels"]["alertname"], "CostplaneBudgetThreshold");
        assert_eq!(body[0]["labels"]["budget"], "b");
        assert_eq!(body[0]["generatorURL"], "http://x/api/v1/budgets/status");
        assert!(body[0].get("endsAt").is_none());
    }
}
