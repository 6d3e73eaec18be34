//! Kubernetes cost under ingest keys: what one tenant's metrics can do to
//! another's money. Two keys, acme and globex, send kubeletstats-shaped
//! metrics for the same cluster name (none given: the config's `c1`), the
//! same namespace, pod name and pod uid; acme also sends a `kube-system`
//! namespace (shared), negative, non-finite, absurd and future-dated
//! points. Each tenant must pay exactly its own, worked by hand below.
//!
//! Prices: 0.04 per core-hour, 0.005 per GiB-hour of RAM. Samples at :00,
//! :15, :30, :45 of two hours → each container is present 1 hour per hour.
//!
//! - globex shop/web: CPU max(0.5 request, 0.25 usage) × 0.04 = 0.02; RAM
//!   max(0.5, 0.25) GiB × 0.005 = 0.0025. 0.0225 an hour, 0.045 in all.
//! - acme shop/web (same uid and names as globex's): CPU max(0.25, 0.25) ×
//!   0.04 = 0.01; RAM 0.25 GiB × 0.005 = 0.00125. 0.01125 an hour.
//! - acme kube-system/dns: CPU max(2, 1) × 0.04 = 0.08; RAM max(1, 0.5) GiB
//!   × 0.005 = 0.005. 0.085 an hour, shared among acme's own namespaces
//!   only (shop): acme pays 0.01125 + 0.085 = 0.09625 an hour, 0.1925 in
//!   all, and none of it reaches globex.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use prost::Message;
use rust_decimal::Decimal;

use crate::kubernetes::{flush, gauge, kv, point, resource, GIB, MIN, T0, V};
use crate::support::{wait_until, ServerProcess};

const ACME: &str = "acme-ingest-key-0123456789abcdef";
const GLOBEX: &str = "globex-ingest-key-0123456789abcdef";

struct Container {
    ns: &'static str,
    cpu_req: f64,
    cpu_use: f64,
    /// Bytes.
    mem_req: f64,
    mem_use: f64,
}

/// One scrape of `containers` (all pod `web` / uid `uid-web` but the
/// kube-system one) at quarter `q` of hour `h`.
fn scrape(h: u64, q: u64, containers: &[Container]) -> ExportMetricsServiceRequest {
    let t = T0 + h * 60 * MIN + q * 15 * MIN;
    let rms = containers
        .iter()
        .map(|c| {
            let pod = if c.ns == "kube-system" { "dns" } else { "web" };
            let attrs = vec![
                kv("k8s.pod.uid", &format!("uid-{pod}")),
                kv("k8s.pod.name", pod),
                kv("k8s.namespace.name", c.ns),
                kv("k8s.node.name", "n1"),
                kv("k8s.container.name", "main"),
            ];
            resource(
                attrs,
                "kubeletstats",
                vec![
                    gauge("k8s.container.cpu_request", "{cpu}", point(t, 0, V::F(c.cpu_req), vec![])),
                    gauge("container.cpu.usage", "{cpu}", point(t, 0, V::F(c.cpu_use), vec![])),
                    gauge("k8s.container.memory_request", "By", point(t, 0, V::F(c.mem_req), vec![])),
                    gauge("container.memory.working_set", "By", point(t, 0, V::F(c.mem_use), vec![])),
                ],
            )
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics: rms }
}

fn send(
    client: &reqwest::blocking::Client,
    server: &ServerProcess,
    key: &str,
    body: &ExportMetricsServiceRequest,
) -> ExportMetricsServiceResponse {
    let r = client
        .post(format!("http://{}/v1/metrics", server.otlp_http))
        .header("content-type", "application/x-protobuf")
        .header("authorization", format!("Bearer {key}"))
        .body(body.encode_to_vec())
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    ExportMetricsServiceResponse::decode(r.bytes().unwrap()).unwrap()
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

#[test]
fn one_tenants_kubernetes_metrics_never_move_another_tenants_cost() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("costplane.toml");
    std::fs::write(
        &config,
        format!(
            "[[ingest.keys]]\nkey = \"{ACME}\"\ntenant = \"acme\"\n[[ingest.keys]]\nkey = \"{GLOBEX}\"\ntenant = \"globex\"\n\
             [kubernetes]\ncluster = \"c1\"\nshared_namespaces = [\"kube-system\"]\nshare_idle = true\n\
             [kubernetes.prices]\ncpu_core_hour = \"0.04\"\nram_gib_hour = \"0.005\"\n\
             [ledger]\nlookback_days = 3650\nrefresh_secs = 1\n"
        ),
    )
    .unwrap();
    let server = ServerProcess::start_in(dir, &["--config", config.to_str().unwrap()]);
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let g = GIB as f64;
    let globex = [Container { ns: "shop", cpu_req: 0.5, cpu_use: 0.25, mem_req: 0.5 * g, mem_use: 0.25 * g }];
    let acme = [
        Container { ns: "shop", cpu_req: 0.25, cpu_use: 0.25, mem_req: 0.25 * g, mem_use: 0.25 * g },
        Container { ns: "kube-system", cpu_req: 2.0, cpu_use: 1.0, mem_req: g, mem_use: 0.5 * g },
    ];
    for h in 0..2 {
        for q in 0..4 {
            for r in [send(&client, &server, GLOBEX, &scrape(h, q, &globex)), send(&client, &server, ACME, &scrape(h, q, &acme))] {
                assert!(r.partial_success.as_ref().is_none_or(|p| p.rejected_data_points == 0), "{r:?}");
            }
        }
    }

    // Points no cluster reports: each refused as partial success with its
    // reason, the request's other points kept.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let web = || {
        vec![kv("k8s.pod.uid", "uid-web"), kv("k8s.pod.name", "web"), kv("k8s.namespace.name", "shop"), kv("k8s.container.name", "main")]
    };
    let t = T0 + 30 * MIN;
    let hostile = ExportMetricsServiceRequest {
        resource_metrics: vec![resource(
            web(),
            "kubeletstats",
            vec![
                gauge("k8s.container.cpu_request", "{cpu}", point(t, 0, V::F(-50.0), vec![])),
                gauge("container.memory.working_set", "By", point(t, 0, V::I(-1_000_000_000_000), vec![])),
                gauge("container.cpu.usage", "{cpu}", point(t, 0, V::F(f64::NAN), vec![])),
                gauge("container.cpu.usage", "{cpu}", point(t, 0, V::F(1e12), vec![])),
                // A year ahead: would move the meter's clock and close every hour.
                gauge("container.cpu.usage", "{cpu}", point(now + 365 * 24 * 60 * MIN, 0, V::F(0.1), vec![])),
                gauge("http.server.active_requests", "1", point(t, 0, V::F(-3.0), vec![])),
            ],
        )],
    };
    let r = send(&client, &server, ACME, &hostile);
    let p = r.partial_success.expect("a partial success");
    assert_eq!(p.rejected_data_points, 5, "{p:?}");
    assert!(p.error_message.contains("is negative") && p.error_message.contains("k8s.container.cpu_request"), "{p:?}");

    // The future-dated point never reached the meter, so its clock did not
    // move: nothing was counted late.
    let r = flush(&client, &server);
    assert_eq!(r["late_samples"], 0, "{r}");
    // Two hours for each of the two tenants.
    assert_eq!(r["hours_closed"], 4, "{r}");

    let costs = || -> std::collections::BTreeMap<String, Decimal> {
        server
            .sql("SELECT x_Tenant AS t, CAST(sum(BilledCost) AS VARCHAR) AS c FROM costplane_ledger WHERE x_Source = 'kubernetes' GROUP BY 1")
            .iter()
            .map(|r| (r["t"].as_str().unwrap().to_owned(), d(r["c"].as_str().unwrap())))
            .collect()
    };
    let expected: std::collections::BTreeMap<String, Decimal> =
        [("acme".to_owned(), d("0.1925")), ("globex".to_owned(), d("0.045"))].into_iter().collect();
    wait_until(|| costs() == expected, "each tenant's Kubernetes cost to be its own (acme 0.1925, globex 0.045)");
    let negative = server.count("costplane_ledger WHERE x_Source = 'kubernetes' AND BilledCost < 0");
    assert_eq!(negative, 0);
}
