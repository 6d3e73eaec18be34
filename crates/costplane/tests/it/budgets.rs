//! Budgets end to end on the real binary: spend that crosses 90% of a
//! budget notifies a real HTTP receiver exactly once, with a valid
//! HMAC-SHA256 signature, also across a restart; the same alert reaches a
//! real Alertmanager (Debian's `prometheus-alertmanager`) through its
//! `/api/v2/alerts` API.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::{wait_until, ServerProcess};

const SECRET: &str = "budget-hook-secret-0123";

/// One request the receiver got: its headers (lower-cased names) and body.
pub type Received = Arc<Mutex<Vec<(Vec<(String, String)>, Vec<u8>)>>>;

/// A minimal HTTP/1.1 server that records every request and answers 200.
pub fn receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Received = Arc::default();
    let store = Arc::clone(&got);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.trim_end().split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
            }
            let len: usize = headers.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            store.lock().unwrap().push((headers, body));
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, got)
}

/// HMAC-SHA256 (RFC 2104), written here independently of the server's.
fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let inner = Sha256::new().chain_update(k.map(|b| b ^ 0x36)).chain_update(msg).finalize();
    let outer = Sha256::new().chain_update(k.map(|b| b ^ 0x5c)).chain_update(inner).finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Debian's Alertmanager on free ports, no clustering, its own storage.
struct Alertmanager {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    fn start() -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, "route:\n  receiver: default\nreceivers:\n  - name: default\n").unwrap();
        let port = free_port();
        let bin = ["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("prometheus-alertmanager is not installed; scripts/test.sh installs it (apt-get install prometheus-alertmanager)");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start alertmanager");
        let url = format!("http://127.0.0.1:{port}");
        let ready = format!("{url}/-/ready");
        wait_until(|| reqwest::blocking::get(&ready).is_ok_and(|r| r.status().is_success()), "Alertmanager to be ready");
        Alertmanager { child, url, _dir: dir }
    }

    fn alerts(&self) -> Vec<Value> {
        let r: Value = reqwest::blocking::get(format!("{}/api/v2/alerts", self.url)).unwrap().json().unwrap();
        r.as_array().unwrap().clone()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One LLM span of tenant acme carrying its own cost (`cost.usd` beats the
/// catalog), timestamped now.
fn send_cost(server: &ServerProcess, usd: &str, n: u32) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "chatbot"}},
            {"key": "tenant.id", "value": {"stringValue": "acme"}},
        ]},
        "scopeSpans": [{"spans": [{
            "traceId": format!("{:032x}", 0xabc0 + n), "spanId": format!("{:016x}", 0x10 + n), "name": "chat", "kind": 3,
            "startTimeUnixNano": (now - 1_000_000).to_string(), "endTimeUnixNano": now.to_string(),
            "attributes": [
                // A model no price covers: the span's own cost is what it cost
                // (cost.provided_cost = "when_unpriced").
                {"key": "cost.model", "value": {"stringValue": "house-model-1"}},
                {"key": "cost.usd", "value": {"stringValue": usd}},
            ],
        }]}],
    }]});
    let r = server.export("/v1/traces", "application/json", body.to_string().into_bytes());
    assert!(r.status().is_success(), "{}", r.text().unwrap());
}

fn status(server: &ServerProcess) -> Value {
    let r: Value = reqwest::blocking::get(format!("http://{}/api/v1/budgets/status", server.api)).unwrap().json().unwrap();
    r["budgets"][0].clone()
}

#[test]
fn crossing_ninety_percent_notifies_once_with_a_valid_signature_also_across_a_restart() {
    let (hook, got) = receiver();
    let am = Alertmanager::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("costplane.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[anomalies]
interval = "1s"

[[budgets]]
id = "acme-monthly"
scope = {{ tenant = "acme" }}
period = "month"
amount = "100"
thresholds = [{{ percent = "90" }}]
notify = [
  {{ kind = "webhook", url = "{hook}", secret = "{SECRET}" }},
  {{ kind = "alertmanager", url = "{}" }},
]
"#,
            am.url
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap().to_owned();
    let mut server = ServerProcess::start_in(tempfile::tempdir().unwrap(), &["--config", &config_arg]);

    // $45 of $100 is 45%: below the only threshold.
    send_cost(&server, "45", 1);
    wait_until(|| status(&server)["spent"] == "45", "the first $45 in the budget's spend");
    std::thread::sleep(Duration::from_millis(2_500));
    assert!(got.lock().unwrap().is_empty(), "notified below the threshold");

    // $45 + $46 = $91: 91% >= 90%.
    send_cost(&server, "46", 2);
    wait_until(|| got.lock().unwrap().len() == 1, "the 90% notification");
    // Several more evaluations (one a second) send nothing new.
    std::thread::sleep(Duration::from_millis(3_500));
    assert_eq!(got.lock().unwrap().len(), 1, "one crossing, one notification");
    let s = status(&server);
    assert_eq!((s["spent"].as_str(), s["spent_ratio"].as_str()), (Some("91"), Some("0.91")));
    assert_eq!(s["crossed"], json!(["90%-actual"]));

    {
        let requests = got.lock().unwrap();
        let (headers, body) = &requests[0];
        let signature = headers.iter().find(|(k, _)| k == "x-costplane-signature").map(|(_, v)| v.clone()).expect("signed");
        assert_eq!(signature, format!("sha256={}", hmac_hex(SECRET.as_bytes(), body)));
        assert_ne!(signature, format!("sha256={}", hmac_hex(b"another-secret-0000000", body)));
        let event: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(event["event"], "CostplaneBudgetThreshold");
        assert_eq!(event["data"]["budget"], "acme-monthly");
        assert_eq!(event["data"]["threshold"], "90%-actual");
        assert_eq!(event["data"]["spent"], "91");
        assert_eq!(event["data"]["amount"], "100");
        assert!(event["link"].as_str().unwrap().ends_with("/api/v1/budgets/status"), "{event}");
    }

    // Alertmanager took the same alert through /api/v2/alerts.
    let alerts = am.alerts();
    let ours: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["labels"]["alertname"] == "CostplaneBudgetThreshold" && a["labels"]["budget"] == "acme-monthly")
        .collect();
    assert_eq!(ours.len(), 1, "{alerts:#?}");
    assert_eq!(ours[0]["labels"]["threshold"], "90%-actual");
    assert_eq!(ours[0]["status"]["state"], "active");
    assert!(ours[0]["annotations"]["summary"].as_str().unwrap().contains("91"), "{:?}", ours[0]);

    // A restart of the binary on the same data: the crossing is remembered.
    assert!(server.terminate().success());
    let data = std::mem::replace(&mut server.data_dir, tempfile::tempdir().unwrap());
    let server = ServerProcess::start_in(data, &["--config", &config_arg]);
    let started = Instant::now();
    wait_until(|| status(&server)["crossed"] == json!(["90%-actual"]), "the restarted server to evaluate the budget");
    std::thread::sleep(Duration::from_millis(3_000).saturating_sub(started.elapsed()).max(Duration::from_millis(2_000)));
    assert_eq!(got.lock().unwrap().len(), 1, "the restart sent the notification again:\n{}", server.log_text());

    // /metrics carries the budget's gauges.
    let metrics = reqwest::blocking::get(format!("http://{}/metrics", server.api)).unwrap().text().unwrap();
    assert!(metrics.contains("costplane_budget_usd{budget=\"acme-monthly\",period=\"month\"} 100"), "{metrics}");
    assert!(metrics.contains("costplane_budget_spent_ratio{budget=\"acme-monthly\",period=\"month\"} 0.91"), "{metrics}");
}
