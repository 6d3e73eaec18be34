//! Kubernetes samples out of converted OTLP metric points.
//!
//! The gate is the metric name alone (a match on a short static list), so
//! batches without Kubernetes metrics cost one string comparison per point.
//! Both the receivers' underscore names (`k8s.container.cpu_request`,
//! `k8s.node.allocatable_cpu`) and the newer semantic-convention names
//! (`k8s.container.cpu.request`, `k8s.container.cpu.request.desired`,
//! `k8s.node.cpu.allocatable`, `k8s.node.allocatable.cpu`) are accepted.
//! No receiver emits GPU requests; `k8s.container.gpu_request` /
//! `k8s.container.gpu.request` (GPUs) are read when a pipeline adds them.

use costplane_telemetry::model::{Attributes, PointCommon, TelemetryBatch};

/// What a sample measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Cores (`container.cpu.usage`).
    CpuUsage,
    /// Cores.
    CpuRequest,
    /// Bytes (`container.memory.working_set`).
    MemUsage,
    /// Bytes.
    MemRequest,
    /// GPUs.
    GpuRequest,
    /// `k8s.pod.phase` (2 = Running).
    PodPhase,
    /// Cores.
    NodeCpu,
    /// Bytes.
    NodeMem,
    /// Bytes of a volume's capacity.
    VolumeCapacity,
    /// Cumulative bytes of a pod's interface, with a direction.
    Network,
}

/// The kind of a metric name, if Kubernetes allocation reads it.
pub fn kind_of(name: &str) -> Option<Kind> {
    Some(match name {
        "container.cpu.usage" | "container.cpu.utilization" => Kind::CpuUsage,
        "container.memory.working_set" => Kind::MemUsage,
        "k8s.container.cpu_request" | "k8s.container.cpu.request" | "k8s.container.cpu.request.desired" => Kind::CpuRequest,
        "k8s.container.memory_request" | "k8s.container.memory.request" | "k8s.container.memory.request.desired" => Kind::MemRequest,
        "k8s.container.gpu_request" | "k8s.container.gpu.request" => Kind::GpuRequest,
        "k8s.pod.phase" => Kind::PodPhase,
        "k8s.node.allocatable_cpu" | "k8s.node.cpu.allocatable" | "k8s.node.allocatable.cpu" => Kind::NodeCpu,
        "k8s.node.allocatable_memory" | "k8s.node.memory.allocatable" | "k8s.node.allocatable.memory" => Kind::NodeMem,
        "k8s.volume.capacity" => Kind::VolumeCapacity,
        "k8s.pod.network.io" => Kind::Network,
        _ => return None,
    })
}

/// One Kubernetes measurement with the identity it joins on.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub kind: Kind,
    pub time_ns: i64,
    /// Counters only: when the series (re)started.
    pub start_ns: i64,
    pub value: f64,
    pub cluster: String,
    pub tenant: String,
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
    pub node: String,
    /// Volumes: name and type; network: interface and direction.
    pub detail: String,
    pub detail2: String,
    /// Pod labels (`k8s.pod.label.<key>`), sorted.
    pub labels: Vec<(String, String)>,
}

fn attr<'a>(attrs: &'a Attributes, key: &str) -> &'a str {
    attrs.get(key).unwrap_or("")
}

fn sample(kind: Kind, p: &PointCommon, value: f64, cluster: &str, tenant_attribute: &str) -> Sample {
    let r = &p.metric.resource.attributes;
    let (detail, detail2) = match kind {
        Kind::VolumeCapacity => (attr(r, "k8s.volume.name").to_owned(), attr(r, "k8s.volume.type").to_owned()),
        Kind::Network => (attr(&p.attributes, "interface").to_owned(), attr(&p.attributes, "direction").to_owned()),
        _ => (String::new(), String::new()),
    };
    let mut labels: Vec<(String, String)> = r
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("k8s.pod.label.").or_else(|| k.strip_prefix("k8s.pod.labels.")).map(|k| (k.to_owned(), v.to_owned()))
        })
        .collect();
    labels.sort();
    let c = attr(r, "k8s.cluster.name");
    Sample {
        kind,
        time_ns: p.time_unix_ns,
        start_ns: p.start_time_unix_ns,
        value,
        cluster: if c.is_empty() { cluster.to_owned() } else { c.to_owned() },
        tenant: attr(r, tenant_attribute).to_owned(),
        namespace: attr(r, "k8s.namespace.name").to_owned(),
        pod: attr(r, "k8s.pod.name").to_owned(),
        pod_uid: attr(r, "k8s.pod.uid").to_owned(),
        container: attr(r, "k8s.container.name").to_owned(),
        node: attr(r, "k8s.node.name").to_owned(),
        detail,
        detail2,
        labels,
    }
}

/// Every Kubernetes sample of `batch` (gauges and sums; NaN and infinite
/// values are skipped).
pub fn extract(batch: &TelemetryBatch, cluster: &str, tenant_attribute: &str) -> Vec<Sample> {
    let gauges = batch.gauges.iter().map(|g| (&g.common, g.value));
    let sums = batch.sums.iter().map(|s| (&s.common, s.value));
    gauges
        .chain(sums)
        .filter(|(_, v)| v.is_finite())
        .filter_map(|(p, v)| kind_of(&p.metric.name).map(|k| sample(k, p, v, cluster, tenant_attribute)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_and_new_names_map_to_the_same_kind() {
        assert_eq!(kind_of("k8s.container.cpu_request"), Some(Kind::CpuRequest));
        assert_eq!(kind_of("k8s.container.cpu.request"), Some(Kind::CpuRequest));
        assert_eq!(kind_of("k8s.node.allocatable_cpu"), Some(Kind::NodeCpu));
        assert_eq!(kind_of("k8s.node.cpu.allocatable"), Some(Kind::NodeCpu));
        assert_eq!(kind_of("k8s.node.memory.allocatable"), Some(Kind::NodeMem));
        assert_eq!(kind_of("http.server.duration"), None);
    }
}
