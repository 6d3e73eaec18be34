//! Kubernetes cost end to end: metrics shaped as the Collector's
//! kubeletstats and k8s_cluster receivers send them (resource attributes,
//! units, gauges vs cumulative sums, a counter reset, old and new metric
//! names) over OTLP/HTTP to the real binary, for two hours and two
//! namespaces plus kube-system; the ledger and `/api/v1/allocation` are
//! checked against figures worked by hand.
//!
//! Prices (config): 0.04 per core-hour, 0.005 per GiB-hour of RAM, 0.01
//! per transmitted GiB, received bytes free. Node n1: 4 cores, 16 GiB.
//! Samples at :00, :15, :30, :45 → each container is present 45 + 15 = 60
//! minutes = 1 hour in each of the two hours.
//!
//! Per hour:
//! - shop/web (team=web): CPU request 0.5 > usage 0.25 → 0.5 × 0.04 = 0.02;
//!   RAM request 1 GiB < usage 2 GiB → 2 × 0.005 = 0.01. Own 0.03.
//! - batch/job (team=data): CPU request 0.25 < usage 1 → 1 × 0.04 = 0.04;
//!   RAM request 2 GiB > usage 1 GiB → 2 × 0.005 = 0.01. Own 0.05.
//! - kube-system/dns: CPU max(0.1, 0.05) × 0.04 = 0.004; RAM max(0.5, 0.25)
//!   GiB × 0.005 = 0.0025. Shared: 0.0065.
//! - Idle n1: CPU 4 × 0.04 = 0.16 − (0.02 + 0.04 + 0.004) = 0.096; RAM
//!   16 × 0.005 = 0.08 − (0.01 + 0.01 + 0.0025) = 0.0575; 0.1535 per hour.
//! - Network, shop/web transmit (cumulative bytes, started hours before):
//!   hour 0: baseline 1000 B at :00, then +1 GiB, +0.5 GiB, +0.5 GiB = 2 GiB
//!   → 0.02. Hour 1: :00 +1 GiB; at :15 the counter restarted (new start
//!   time 01:10) at 0.5 GiB → +0.5 GiB; then +0.5, +0.5 → 2.5 GiB → 0.025.
//!   Received bytes (1 GiB per quarter) cost 0.

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use rust_decimal::Decimal;

use crate::support::{wait_until, ServerProcess};

pub(crate) const T0: u64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
pub(crate) const MIN: u64 = 60_000_000_000;
pub(crate) const GIB: i64 = 1_073_741_824;

pub(crate) fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue { key: k.into(), value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }), ..Default::default() }
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

pub(crate) enum V {
    F(f64),
    I(i64),
}

pub(crate) fn point(t: u64, start: u64, v: V, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: start,
        time_unix_nano: t,
        value: Some(match v {
            V::F(f) => number_data_point::Value::AsDouble(f),
            V::I(i) => number_data_point::Value::AsInt(i),
        }),
        ..Default::default()
    }
}

pub(crate) fn gauge(name: &str, unit: &str, p: NumberDataPoint) -> Metric {
    Metric { name: name.into(), unit: unit.into(), data: Some(metric::Data::Gauge(Gauge { data_points: vec![p] })), ..Default::default() }
}

pub(crate) fn resource(attrs: Vec<KeyValue>, scope: &str, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource { attributes: attrs, ..Default::default() }),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(opentelemetry_proto::tonic::common::v1::InstrumentationScope { name: scope.into(), ..Default::default() }),
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub(crate) struct Pod {
    ns: &'static str,
    name: &'static str,
    team: Option<&'static str>,
    cpu_req: f64,
    cpu_use: f64,
    mem_req: i64,
    mem_use: i64,
}

fn pod_attrs(p: &Pod) -> Vec<KeyValue> {
    let mut a = vec![
        kv("k8s.pod.uid", &format!("uid-{}", p.name)),
        kv("k8s.pod.name", p.name),
        kv("k8s.namespace.name", p.ns),
        kv("k8s.node.name", "n1"),
    ];
    if let Some(t) = p.team {
        a.push(kv("k8s.pod.label.team", t)); // added by the k8sattributes processor
    }
    a
}

/// One scrape at `t` (hour `h`) of both receivers.
pub(crate) fn scrape(h: u64, quarter: u64, pods: &[Pod]) -> ExportMetricsServiceRequest {
    let t = T0 + h * 60 * MIN + quarter * 15 * MIN;
    // The second hour uses the newer semantic-convention names.
    let (cpu_req_name, mem_req_name, node_cpu, node_mem) = if h == 0 {
        ("k8s.container.cpu_request", "k8s.container.memory_request", "k8s.node.allocatable_cpu", "k8s.node.allocatable_memory")
    } else {
        ("k8s.container.cpu.request", "k8s.container.memory.request", "k8s.node.cpu.allocatable", "k8s.node.memory.allocatable")
    };
    let mut rms = vec![resource(
        vec![kv("k8s.node.name", "n1"), kv("k8s.node.uid", "node-uid-1")],
        "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/k8sclusterreceiver",
        vec![gauge(node_cpu, "{cpu}", point(t, 0, V::F(4.0), vec![])), gauge(node_mem, "By", point(t, 0, V::I(16 * GIB), vec![]))],
    )];
    for p in pods {
        let mut container = pod_attrs(p);
        container.push(kv("k8s.container.name", "main"));
        rms.push(resource(
            container.clone(),
            "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/kubeletstatsreceiver",
            vec![
                gauge("container.cpu.usage", "{cpu}", point(t, 0, V::F(p.cpu_use), vec![])),
                gauge("container.memory.working_set", "By", point(t, 0, V::I(p.mem_use), vec![])),
            ],
        ));
        container.push(kv("container.id", &format!("cid-{}", p.name)));
        rms.push(resource(
            container,
            "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/k8sclusterreceiver",
            vec![
                gauge(cpu_req_name, "{cpu}", point(t, 0, V::F(p.cpu_req), vec![])),
                gauge(mem_req_name, "By", point(t, 0, V::I(p.mem_req), vec![])),
                gauge("k8s.pod.phase", "", point(t, 0, V::I(2), vec![])),
            ],
        ));
    }
    // shop/web's cumulative network bytes (kubeletstats pod resource).
    let started = T0 - 5 * 60 * MIN;
    let restarted = T0 + 70 * MIN;
    let (start, tx) = match (h, quarter) {
        (0, q) => (started, 1000 + [0, 2, 3, 4][q as usize] * GIB / 2),
        (1, 0) => (started, 1000 + 6 * GIB / 2),
        (1, q) => (restarted, [0, 1, 2, 3][q as usize] * GIB / 2),
        _ => unreachable!(),
    };
    let rx = (h * 4 + quarter) as i64 * GIB;
    let net = Metric {
        name: "k8s.pod.network.io".into(),
        unit: "By".into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![
                point(t, start, V::I(tx), vec![kv("interface", "eth0"), kv("direction", "transmit")]),
                point(t, started, V::I(rx), vec![kv("interface", "eth0"), kv("direction", "receive")]),
            ],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    rms.push(resource(
        pod_attrs(&pods[0]),
        "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/kubeletstatsreceiver",
        vec![net],
    ));
    ExportMetricsServiceRequest { resource_metrics: rms }
}

pub(crate) fn pods() -> Vec<Pod> {
    vec![
        Pod { ns: "shop", name: "web", team: Some("web"), cpu_req: 0.5, cpu_use: 0.25, mem_req: GIB, mem_use: 2 * GIB },
        Pod { ns: "batch", name: "job", team: Some("data"), cpu_req: 0.25, cpu_use: 1.0, mem_req: 2 * GIB, mem_use: GIB },
        Pod { ns: "kube-system", name: "dns", team: None, cpu_req: 0.1, cpu_use: 0.05, mem_req: GIB / 2, mem_use: GIB / 4 },
    ]
}

fn run(split: &str) -> (ServerProcess, reqwest::blocking::Client) {
    run_with(split, None)
}

/// The configuration of the module header's prices, in `dir`.
pub(crate) fn write_config(dir: &std::path::Path, split: &str) -> std::path::PathBuf {
    let config = dir.join("costplane.toml");
    std::fs::write(
        &config,
        format!(
            "[kubernetes]\ncluster = \"c1\"\nshared_namespaces = [\"kube-system\"]\nshare_split = \"{split}\"\n\
             [kubernetes.prices]\ncpu_core_hour = \"0.04\"\nram_gib_hour = \"0.005\"\n\
             [kubernetes.prices.network]\ntransmit_gib = \"0.01\"\nreceive_gib = \"0\"\n\
             [ledger]\nlookback_days = 3650\nrefresh_secs = 1\n"
        ),
    )
    .unwrap();
    config
}

fn run_with(split: &str, clickhouse: Option<&costplane_testkit::ClickHouseTarget>) -> (ServerProcess, reqwest::blocking::Client) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), split);
    let extra = ["--config", config.to_str().unwrap()];
    let args = match clickhouse {
        Some(target) => crate::support::clickhouse_args(target, &extra),
        None => extra.to_vec(),
    };
    let server = ServerProcess::start_in(dir, &args);
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let pods = pods();
    for h in 0..2 {
        for q in 0..4 {
            let body = scrape(h, q, &pods).encode_to_vec();
            let r = server.export("/v1/metrics", "application/x-protobuf", body);
            assert!(r.status().is_success(), "{}", r.status());
        }
    }
    // Hour 0 closed when 01:15 arrived (5 minutes past its end); the flush
    // stores hour 1's usage and has the closer price both hours (they are
    // 2026-01-01: within the 10-year lookback configured above).
    let r = flush(&client, &server);
    assert_eq!(r["hours_closed"], 2, "{r}");
    assert_eq!(r["counter_resets"], 1, "{r}");
    assert_eq!(r["late_samples"], 0, "{r}");
    (server, client)
}

/// `POST /api/v1/kubernetes/flush`: closes every open hour; the meter's counters.
pub(crate) fn flush(client: &reqwest::blocking::Client, server: &ServerProcess) -> serde_json::Value {
    client
        .post(format!("http://{}/api/v1/kubernetes/flush", server.api))
        .header("content-type", "application/json")
        .send()
        .unwrap()
        .json()
        .unwrap()
}

pub(crate) fn by_namespace(server: &ServerProcess) -> BTreeMap<String, Decimal> {
    server
        .sql("SELECT x_Namespace AS ns, CAST(sum(BilledCost) AS VARCHAR) AS cost FROM costplane_ledger WHERE x_Source = 'kubernetes' GROUP BY 1")
        .iter()
        .map(|r| (r["ns"].as_str().unwrap().to_owned(), d(r["cost"].as_str().unwrap())))
        .collect()
}

pub(crate) fn wait_rows(server: &ServerProcess) {
    wait_until(|| server.count("costplane_ledger WHERE x_Source = 'kubernetes'") > 0, "kubernetes ledger rows");
    // Both hours' rows are queued together by the flush; wait for the last hour.
    wait_until(
        || server.count("costplane_ledger WHERE x_Source = 'kubernetes' AND epoch_ns(ChargePeriodStart) = 1767229200000000000") > 0,
        "the second hour's rows",
    );
}

#[test]
fn kubernetes_cost_per_namespace_idle_and_even_share() {
    let (server, client) = run("even");
    wait_rows(&server);
    let ns = by_namespace(&server);
    // shop: 2 × 0.03 own + 2 × 0.00325 (half of kube-system's 0.0065) +
    // network 0.02 + 0.025 = 0.06 + 0.0065 + 0.045 = 0.1115.
    assert_eq!(ns["shop"], d("0.1115"));
    // batch: 2 × 0.05 + 2 × 0.00325 = 0.1065.
    assert_eq!(ns["batch"], d("0.1065"));
    // Idle: 2 × (0.096 + 0.0575) = 0.307, all on node n1.
    assert_eq!(ns["__idle__"], d("0.307"));
    assert!(!ns.contains_key("kube-system"), "kube-system's cost is shared out: {ns:?}");
    let idle = server.sql(
        "SELECT x_Node AS node, CAST(sum(BilledCost) AS VARCHAR) AS c FROM costplane_ledger WHERE x_Namespace = '__idle__' GROUP BY 1",
    );
    assert_eq!(idle.len(), 1);
    assert_eq!((idle[0]["node"].as_str().unwrap(), d(idle[0]["c"].as_str().unwrap())), ("n1", d("0.307")));
    let shared = server.sql(
        "SELECT CAST(sum(BilledCost) AS VARCHAR) AS c FROM costplane_ledger WHERE x_SharedFrom = 'kube-system' AND x_Source = 'kubernetes'",
    );
    assert_eq!(d(shared[0]["c"].as_str().unwrap()), d("0.013"), "2 × 0.0065");
    // Everything: node cost 2 × (0.16 + 0.08) = 0.48 plus network 0.045.
    assert_eq!(ns.values().sum::<Decimal>(), d("0.525"));

    // The allocation API answers the same per namespace.
    let url = format!(
        "http://{}/api/v1/allocation?window=2026-01-01T00:00:00Z,2026-01-01T02:00:00Z&aggregate=namespace&accumulate=true&includeIdle=true",
        server.api
    );
    let a: serde_json::Value = client.get(url).send().unwrap().json().unwrap();
    assert_eq!(a["code"], 200);
    let set = a["data"][0].as_object().unwrap();
    for (k, v) in &ns {
        assert_eq!(d(set[k]["totalCost"].as_str().unwrap()), *v, "{k}");
    }
    assert_eq!(set.len(), ns.len());
    // shop: 2 × 0.5 core-hours; cpuEfficiency = usage 0.25 / request 0.5.
    assert_eq!(set["shop"]["cpuCoreHours"], "1");
    assert_eq!(set["shop"]["cpuEfficiency"], "0.5");
    assert_eq!(set["shop"]["sharedCost"], "0.0065");
    assert_eq!(set["shop"]["networkCost"], "0.045");
    // RAM byte-hours: 2 GiB × 2 h = 4 × 1073741824.
    assert_eq!(set["shop"]["ramByteHours"], "4294967296");

    // aggregate=label:team equals the ledger grouped by the team label in Tags.
    let rows = server.sql("SELECT Tags AS t, CAST(BilledCost AS VARCHAR) AS c FROM costplane_ledger WHERE x_Source = 'kubernetes' AND x_Namespace <> '__idle__'");
    let mut by_team: std::collections::BTreeMap<String, Decimal> = Default::default();
    for r in &rows {
        let tags: serde_json::Value = serde_json::from_str(r["t"].as_str().unwrap()).unwrap();
        let team = tags["label:team"].as_str().unwrap_or("__unallocated__").to_owned();
        *by_team.entry(team).or_default() += d(r["c"].as_str().unwrap());
    }
    // web: shop's own 0.06 + 0.045; data: batch's own 0.1; the shared
    // rows (namespace level, no pod labels): 0.013.
    assert_eq!(by_team["web"], d("0.105"));
    assert_eq!(by_team["data"], d("0.1"));
    assert_eq!(by_team["__unallocated__"], d("0.013"));
    let url = format!(
        "http://{}/api/v1/allocation?window=2026-01-01T00:00:00Z,2026-01-01T02:00:00Z&aggregate=label:team&accumulate=true",
        server.api
    );
    let a: serde_json::Value = client.get(url).send().unwrap().json().unwrap();
    let set = a["data"][0].as_object().unwrap();
    assert_eq!(set.len(), by_team.len(), "{set:?}");
    for (k, v) in &by_team {
        assert_eq!(d(set[k]["totalCost"].as_str().unwrap()), *v, "{k}");
    }
}

#[test]
fn kubernetes_weighted_share_is_exact() {
    let (server, _client) = run("weighted");
    wait_rows(&server);
    let ns = by_namespace(&server);
    // Own costs per hour, network included: hour 0 shop 0.03 + 0.02 = 0.05,
    // batch 0.05 → equal weights, 0.00325 each. Hour 1 shop 0.03 + 0.025 =
    // 0.055, batch 0.05 (sum 0.105): shop 0.0065 × 0.055 / 0.105 =
    // 0.0034047619047..., batch 0.0065 × 0.05 / 0.105 = 0.0030952380952...,
    // truncated to 12 places 0.003404761904 + 0.003095238095 = 0.006499999999;
    // the remainder 0.000000000001 goes to the larger share (shop):
    // shop 0.003404761905.
    // shop: 0.06 + 0.045 + 0.00325 + 0.003404761905 = 0.111654761905.
    // batch: 0.1 + 0.00325 + 0.003095238095 = 0.106345238095.
    assert_eq!(ns["shop"], d("0.111654761905"));
    assert_eq!(ns["batch"], d("0.106345238095"));
    assert_eq!(ns["shop"] + ns["batch"], d("0.218"), "kube-system's 0.013 conserved");
}

#[test]
fn kubernetes_allocation_on_clickhouse() {
    let target = costplane_testkit::ClickHouseTarget::new();
    let (server, client) = run_with("even", Some(&target));
    // The same hand-worked figures as on DuckDB, read through the
    // allocation API (the rows land after the pipeline's next write).
    let url = format!(
        "http://{}/api/v1/allocation?window=2026-01-01T00:00:00Z,2026-01-01T02:00:00Z&aggregate=namespace&accumulate=true&includeIdle=true",
        server.api
    );
    let totals = || -> BTreeMap<String, Decimal> {
        let a: serde_json::Value = client.get(&url).send().unwrap().json().unwrap();
        a["data"][0]
            .as_object()
            .map(|set| set.iter().map(|(k, v)| (k.clone(), d(v["totalCost"].as_str().unwrap()))).collect())
            .unwrap_or_default()
    };
    let expected: BTreeMap<String, Decimal> =
        [("shop", "0.1115"), ("batch", "0.1065"), ("__idle__", "0.307")].iter().map(|(k, v)| (k.to_string(), d(v))).collect();
    wait_until(|| totals() == expected, "the ClickHouse ledger's allocation to match the hand-worked figures");
}
