//! Integration tests of costplane-k8s on converted telemetry batches (the
//! types the OTLP decoder produces), and a throughput measurement of
//! metering behind `COSTPLANE_BENCH=1`.

use std::sync::Arc;
use std::time::Instant;

use costplane_k8s::allocate::Resource;
use costplane_k8s::sample::screen;
use costplane_k8s::SampleLimits;
use costplane_k8s::{K8sMeter, KubernetesConfig};
use costplane_telemetry::model::{GaugeRow, MetricInfo, PointCommon, ResourceInfo, SpanRow, TelemetryBatch};
use rust_decimal::Decimal;

const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

fn metric(name: &str, attrs: &[(&str, &str)]) -> Arc<MetricInfo> {
    let resource = ResourceInfo { attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..Default::default() };
    Arc::new(MetricInfo { resource: Arc::new(resource), name: name.into(), ..Default::default() })
}

fn gauge(m: &Arc<MetricInfo>, t: i64, value: f64) -> GaugeRow {
    GaugeRow {
        common: PointCommon {
            metric: Arc::clone(m),
            attributes: Default::default(),
            start_time_unix_ns: 0,
            time_unix_ns: t,
            flags: 0,
            encoded_bytes: 0,
        },
        value,
        exemplars: Vec::new(),
    }
}

/// A batch of `pods` containers' usage and requests (two receivers'
/// resources each) at `t`, plus unrelated points to skip.
fn batch(pods: usize, t: i64, metrics: &[Arc<MetricInfo>]) -> TelemetryBatch {
    let mut b = TelemetryBatch::default();
    for p in 0..pods {
        let m = &metrics[p * 5..p * 5 + 5];
        b.gauges.push(gauge(&m[0], t, 0.25));
        b.gauges.push(gauge(&m[1], t, 536_870_912.0));
        b.gauges.push(gauge(&m[2], t, 0.5));
        b.gauges.push(gauge(&m[3], t, 268_435_456.0));
        b.gauges.push(gauge(&m[4], t, 42.0));
    }
    b
}

fn metrics(pods: usize) -> Vec<Arc<MetricInfo>> {
    (0..pods)
        .flat_map(|p| {
            let uid = format!("uid-{p}");
            let name = format!("pod-{p}");
            let kubelet = [
                ("k8s.pod.uid", uid.as_str()),
                ("k8s.pod.name", name.as_str()),
                ("k8s.namespace.name", if p % 2 == 0 { "a" } else { "b" }),
                ("k8s.container.name", "main"),
                ("k8s.node.name", "n1"),
            ];
            [
                metric("container.cpu.usage", &kubelet),
                metric("container.memory.working_set", &kubelet),
                metric("k8s.container.cpu_request", &kubelet),
                metric("k8s.container.memory_request", &kubelet),
                metric("http.server.active_requests", &kubelet),
            ]
        })
        .collect()
}

#[test]
fn converted_batches_meter_per_container() {
    let m = metrics(2);
    let cfg = KubernetesConfig { shared_namespaces: Vec::new(), ..KubernetesConfig::default() };
    let mut meter = K8sMeter::new(cfg.clone());
    for q in 0..4 {
        let mut b = batch(2, T0 + q * 900_000_000_000, &m);
        let samples = screen(&mut b, &cfg.cluster, &cfg.tenant_attribute, "", &SampleLimits::default(), T0 + q * 900_000_000_000).samples;
        assert_eq!(samples.len(), 8, "the unrelated gauge is skipped");
        meter.observe(samples, 0);
    }
    let hours = meter.flush();
    assert_eq!(hours.len(), 1);
    // Through the stored form, as the closer reads it back.
    let rows = costplane_k8s::usage::encode(&hours[0], "c", 1);
    let usage = costplane_k8s::usage::decode(hours[0].hour_ns, &rows).unwrap();
    let lines = costplane_k8s::allocate::allocate(&usage, &cfg, &mut Default::default());
    // Each container: max(0.5 request, 0.25 usage) core × 1 h × 0.031611.
    let cpu: Vec<_> = lines.iter().filter(|l| l.resource == Resource::Cpu).collect();
    assert_eq!(cpu.len(), 2);
    assert!(cpu.iter().all(|l| l.cost == "0.0158055".parse::<Decimal>().unwrap()));
    // RAM: max(0.25, 0.5) GiB × 1 h × 0.004237 = 0.0021185.
    let ram: Vec<_> = lines.iter().filter(|l| l.resource == Resource::Ram).collect();
    assert!(ram.iter().all(|l| l.cost == "0.0021185".parse::<Decimal>().unwrap()));
    // No Kubernetes points: nothing extracted.
    let mut spans = TelemetryBatch { spans: Vec::<SpanRow>::new(), ..TelemetryBatch::default() };
    assert!(screen(&mut spans, "c", "tenant.id", "", &SampleLimits::default(), T0).samples.is_empty());
}

#[test]
fn metering_throughput() {
    if std::env::var("COSTPLANE_BENCH").is_err() {
        return;
    }
    // 1,000 containers scraped every 10 s for an hour: 360 scrapes × 5,000
    // points (4,000 Kubernetes ones).
    let pods = 1000;
    let m = metrics(pods);
    let cfg = KubernetesConfig::default();
    let mut meter = K8sMeter::new(cfg.clone());
    let mut batches: Vec<TelemetryBatch> = (0..360).map(|i| batch(pods, T0 + i * 10_000_000_000, &m)).collect();
    let started = Instant::now();
    let mut points = 0usize;
    for b in &mut batches {
        points += b.gauges.len();
        let samples = screen(b, &cfg.cluster, &cfg.tenant_attribute, "", &cfg.limits, i64::MAX).samples;
        meter.observe(samples, 0);
    }
    let observed = started.elapsed();
    let hours = meter.flush();
    let rows = costplane_k8s::usage::encode(&hours[0], "c", 1);
    let stored = started.elapsed();
    let lines = costplane_k8s::price_hour(
        hours[0].hour_ns,
        &rows,
        &cfg,
        "USD",
        costplane_telemetry::usage::ChargeStatus::Closed,
        &mut Default::default(),
    )
    .unwrap();
    let total = started.elapsed();
    eprintln!(
        "metering: {points} points in {:.3} s ({:.0} points/s), hour closed into {} usage rows in {:.3} s, priced into {} ledger rows in {:.3} s",
        observed.as_secs_f64(),
        points as f64 / observed.as_secs_f64(),
        rows.len(),
        (stored - observed).as_secs_f64(),
        lines.len(),
        (total - stored).as_secs_f64()
    );
}
