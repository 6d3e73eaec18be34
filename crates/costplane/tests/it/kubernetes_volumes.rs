//! Kubernetes volumes end to end: `k8s.volume.capacity` shaped as the
//! Collector's kubeletstats receiver sends it (volume group on) for one
//! hour, over OTLP/HTTP to the real binary. Only persistent volumes are
//! charged, each once per hour however many pods mount it.
//!
//! Prices (config): persistentVolumeClaim 73 per GiB-month (/ 730 = 0.1
//! per GiB-hour), awsElasticBlockStore 36.5 (0.05 per GiB-hour), any other
//! type 730 (1 per GiB-hour: a volume wrongly charged shows at once).
//! Samples at :00, :15, :30, :45 make an hour of presence; at :30 and :45
//! half an hour (15 + 15 minutes).
//!
//! - Claim `data` (10 GiB) mounted by shop/web-a all hour and by
//!   shop/web-b from :30: once, the most either saw: max(10 × 1, 10 × 0.5)
//!   = 10 GiB-hours × 0.1 = 1.0, split by hours 1 : 0.5 → web-a
//!   1.0 × 1 / 1.5 = 0.666666666666 (truncated), web-b 0.333333333333;
//!   the remainder 0.000000000001 goes to the larger share: web-a
//!   0.666666666667. GiB-hours likewise: 6.666666666667 and 3.333333333333.
//! - batch/job's inline `awsElasticBlockStore` disk (20 GiB, no claim): its
//!   own, 20 × 1 × 0.05 = 1.0.
//! - web-a's `configMap` (1 GiB) and `emptyDir` (5 GiB) live on the node's
//!   disk: not charged (they would add 1 + 5 = 6).
//!
//! Total 2.0; every sample is stored as telemetry all the same.
//!
//! Then the claim's class price doubles in the config file (146 per
//! GiB-month, 0.2 per GiB-hour): a dry-run reprice reports the claim's
//! 10 GiB-hours × 0.1 more = +1.0 and writes nothing; the reprice writes
//! it (web-a 1.333333333334, web-b 0.666666666666, as above with 2.0).

use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use prost::Message;
use rust_decimal::Decimal;

use crate::kubernetes::{flush, gauge, kv, point, resource, GIB, MIN, T0, V};
use crate::support::{wait_until, ServerProcess};

const KUBELET: &str = "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/kubeletstatsreceiver";

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// One pod's volume: (namespace, pod, volume name, type, claim, GiB, quarters sampled).
type Mount = (&'static str, &'static str, &'static str, &'static str, &'static str, i64, &'static [u64]);

const MOUNTS: [Mount; 5] = [
    ("shop", "web-a", "data", "persistentVolumeClaim", "data", 10, &[0, 1, 2, 3]),
    ("shop", "web-b", "data", "persistentVolumeClaim", "data", 10, &[2, 3]),
    ("shop", "web-a", "cfg", "configMap", "", 1, &[0, 1, 2, 3]),
    ("shop", "web-a", "scratch", "emptyDir", "", 5, &[0, 1, 2, 3]),
    ("batch", "job", "disk", "awsElasticBlockStore", "", 20, &[0, 1, 2, 3]),
];

fn config_text(claim_price: &str) -> String {
    format!(
        "[kubernetes]\ncluster = \"c1\"\n\
         [kubernetes.prices]\nstorage_gib_month = \"730\"\n\
         [kubernetes.prices.storage_classes]\npersistentVolumeClaim = \"{claim_price}\"\nawsElasticBlockStore = \"36.5\"\n\
         [ledger]\nlookback_days = 3650\nrefresh_secs = 1\n"
    )
}

/// Cost per pod of the ledger's volume rows.
fn by_pod(server: &ServerProcess) -> Vec<(String, Decimal)> {
    server
        .sql("SELECT x_Pod AS pod, CAST(sum(BilledCost) AS VARCHAR) AS cost FROM costplane_ledger WHERE x_Source = 'kubernetes' GROUP BY 1 ORDER BY 1")
        .iter()
        .map(|r| (r["pod"].as_str().unwrap().to_owned(), d(r["cost"].as_str().unwrap())))
        .collect()
}

fn scrape(quarter: u64) -> ExportMetricsServiceRequest {
    let t = T0 + quarter * 15 * MIN;
    let resource_metrics: Vec<ResourceMetrics> = MOUNTS
        .iter()
        .filter(|m| m.6.contains(&quarter))
        .map(|(ns, pod, volume, kind, claim, gib, _)| {
            let mut attrs = vec![
                kv("k8s.pod.uid", &format!("uid-{pod}")),
                kv("k8s.pod.name", pod),
                kv("k8s.namespace.name", ns),
                kv("k8s.node.name", "n1"),
                kv("k8s.volume.name", volume),
                kv("k8s.volume.type", kind),
            ];
            if !claim.is_empty() {
                attrs.push(kv("k8s.persistentvolumeclaim.name", claim));
            }
            resource(attrs, KUBELET, vec![gauge("k8s.volume.capacity", "By", point(t, 0, V::I(gib * GIB), vec![]))])
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics }
}

#[test]
fn persistent_volumes_are_charged_once_and_split_among_their_pods() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("costplane.toml");
    std::fs::write(&config, config_text("73")).unwrap();
    let server = ServerProcess::start_in(dir, &["--config", config.to_str().unwrap()]);
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    for q in 0..4 {
        let r = server.export("/v1/metrics", "application/x-protobuf", scrape(q).encode_to_vec());
        assert!(r.status().is_success(), "{}", r.status());
    }
    let r = flush(&client, &server);
    assert_eq!(r["hours_closed"], 1, "{r}");
    wait_until(|| server.count("costplane_ledger WHERE x_Source = 'kubernetes'") > 0, "kubernetes ledger rows");

    let rows = server.sql(
        "SELECT x_Pod AS pod, CAST(BilledCost AS VARCHAR) AS cost, CAST(ConsumedQuantity AS VARCHAR) AS qty, Tags AS tags \
         FROM costplane_ledger WHERE x_Source = 'kubernetes' ORDER BY x_Pod",
    );
    let got: Vec<(String, Decimal, Decimal, String)> = rows
        .iter()
        .map(|r| {
            let tags: serde_json::Value = serde_json::from_str(r["tags"].as_str().unwrap()).unwrap();
            (
                r["pod"].as_str().unwrap().to_owned(),
                d(r["cost"].as_str().unwrap()),
                d(r["qty"].as_str().unwrap()),
                tags["volume"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("job".to_owned(), d("1.0"), d("20"), "disk".to_owned()),
            ("web-a".to_owned(), d("0.666666666667"), d("6.666666666667"), "data".to_owned()),
            ("web-b".to_owned(), d("0.333333333333"), d("3.333333333333"), "data".to_owned()),
        ],
        "{rows:?}"
    );
    assert_eq!(got.iter().map(|r| r.1).sum::<Decimal>(), d("2"), "the claim's 1.0 conserved, plus the disk's 1.0");
    // The volumes that are not charged are telemetry all the same: 4 + 2 +
    // 4 + 4 + 4 = 18 points.
    assert_eq!(server.count("otel_metrics_gauge WHERE MetricName = 'k8s.volume.capacity'"), 18);

    // New prices: a dry run reports the change and writes nothing.
    std::fs::write(&config, config_text("146")).unwrap();
    let before = by_pod(&server);
    let reprice = |dry_run: bool| -> serde_json::Value {
        let r = client
            .post(format!("http://{}/api/v1/reprice", server.api))
            .json(&serde_json::json!({"from": "2026-01-01", "to": "2026-01-02", "dry_run": dry_run}))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        r.json().unwrap()
    };
    let dry = reprice(true);
    assert_eq!((d(dry["cost_before"].as_str().unwrap()), d(dry["change"].as_str().unwrap())), (d("2"), d("1")), "{dry}");
    assert_eq!(by_pod(&server), before, "a dry run writes nothing");
    let done = reprice(false);
    assert_eq!(d(done["change"].as_str().unwrap()), d("1"), "{done}");
    assert_eq!(
        by_pod(&server),
        vec![("job".to_owned(), d("1")), ("web-a".to_owned(), d("1.333333333334")), ("web-b".to_owned(), d("0.666666666666"))]
    );
}
