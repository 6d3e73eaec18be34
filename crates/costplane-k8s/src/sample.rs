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
//!
//! Samples are untrusted input that moves money, so [`screen`] refuses,
//! before anything is stored or metered, every Kubernetes point that is
//! negative, not finite, beyond `[kubernetes.limits]`, or dated further
//! ahead of its arrival than the allowed skew: the receiver answers those
//! as OTLP partial success. Each sample carries its `owner`: the ingest
//! key's tenant when the request came with one. The meter keeps each
//! owner's usage apart (see [`crate::meter`]), so one key's metrics can
//! never join, share into or idle against another's.

use costplane_telemetry::model::{Attributes, PointCommon, TelemetryBatch};

use crate::config::SampleLimits;

/// What a sample measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    pub kind: Kind,
    pub time_ns: i64,
    /// Counters only: when the series (re)started.
    pub start_ns: i64,
    pub value: f64,
    pub cluster: String,
    /// The ingest key's tenant the sample arrived under; empty for open
    /// ingest (one operator's metrics).
    pub owner: String,
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
    /// Volumes: the persistent volume claim (`k8s.persistentvolumeclaim.name`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub claim: String,
}

/// `k8s.volume.type`s of volumes that are disks of their own, billed by
/// the cloud apart from the node: a claim, or (with the receiver's
/// `extra_metadata_labels: [k8s.volume.type]`) the claim's underlying
/// volume source. Every other type (`emptyDir`, `configMap`, `secret`,
/// `hostPath`, `downwardAPI`, `projected`) lives on the node's own disk,
/// which the node's price already covers.
const PERSISTENT_VOLUME_TYPES: [&str; 4] = ["persistentVolumeClaim", "awsElasticBlockStore", "gcePersistentDisk", "glusterfs"];

/// Whether a volume of `kind` (its `k8s.volume.type`) with `claim` is a
/// persistent volume, the only volumes that are charged (as OpenCost does).
pub fn is_persistent_volume(kind: &str, claim: &str) -> bool {
    !claim.is_empty() || PERSISTENT_VOLUME_TYPES.contains(&kind)
}

fn attr<'a>(attrs: &'a Attributes, key: &str) -> &'a str {
    attrs.get(key).unwrap_or("")
}

fn sample(kind: Kind, p: &PointCommon, value: f64, cluster: &str, tenant_attribute: &str, owner: &str) -> Sample {
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
        owner: owner.to_owned(),
        tenant: attr(r, tenant_attribute).to_owned(),
        namespace: attr(r, "k8s.namespace.name").to_owned(),
        pod: attr(r, "k8s.pod.name").to_owned(),
        pod_uid: attr(r, "k8s.pod.uid").to_owned(),
        container: attr(r, "k8s.container.name").to_owned(),
        node: attr(r, "k8s.node.name").to_owned(),
        claim: if kind == Kind::VolumeCapacity { attr(r, "k8s.persistentvolumeclaim.name").to_owned() } else { String::new() },
        detail,
        detail2,
        labels,
    }
}

/// What [`screen`] kept and refused.
#[derive(Debug, Default)]
pub struct Screened {
    /// The samples of the points kept.
    pub samples: Vec<Sample>,
    /// Points refused (and removed from the batch).
    pub rejected: u64,
    /// Why, one line per refused point (the first few).
    pub reasons: Vec<String>,
}

/// Reasons kept per request: what a partial-success answer quotes.
use costplane_telemetry::convert::MAX_REASONS;

const GIB: f64 = 1_073_741_824.0;

/// Why a sample's value is not one a real object can have, if it is not.
fn out_of_bounds(kind: Kind, value: f64, limits: &SampleLimits) -> Option<String> {
    if !value.is_finite() {
        return Some(format!("{value} is not a finite number"));
    }
    if value < 0.0 {
        return Some(format!("{value} is negative"));
    }
    let (max, unit, what) = match kind {
        Kind::CpuUsage | Kind::CpuRequest => (limits.max_container_cores as f64, 1.0, "limits.max_container_cores"),
        Kind::MemUsage | Kind::MemRequest => (limits.max_container_memory_gib as f64, GIB, "limits.max_container_memory_gib"),
        Kind::GpuRequest => (limits.max_container_gpus as f64, 1.0, "limits.max_container_gpus"),
        Kind::NodeCpu => (limits.max_node_cores as f64, 1.0, "limits.max_node_cores"),
        Kind::NodeMem => (limits.max_node_memory_gib as f64, GIB, "limits.max_node_memory_gib"),
        Kind::VolumeCapacity => (limits.max_volume_gib as f64, GIB, "limits.max_volume_gib"),
        Kind::PodPhase => (5.0, 1.0, "the highest pod phase (5, Unknown)"),
        // A cumulative byte counter: any non-negative value.
        Kind::Network => return None,
    };
    (value / unit > max).then(|| format!("{value} is above {what} ({max})"))
}

/// Refuses the Kubernetes points of `batch` that no real cluster reports
/// (see the module header), removing them from the batch, and returns the
/// samples of the rest, owned by `owner`. Points of other metrics pass
/// untouched. `received_ns` is the request's arrival (kept by the disk
/// buffer, so a replay screens the same way).
pub fn screen(
    batch: &mut TelemetryBatch,
    cluster: &str,
    tenant_attribute: &str,
    owner: &str,
    limits: &SampleLimits,
    received_ns: i64,
) -> Screened {
    let mut out = Screened::default();
    let skew_ns = i64::try_from(limits.max_future_skew_secs).unwrap_or(i64::MAX).saturating_mul(1_000_000_000);
    let latest = received_ns.saturating_add(skew_ns);
    let mut check = |p: &PointCommon, value: f64| -> bool {
        let Some(kind) = kind_of(&p.metric.name) else { return true };
        let why = out_of_bounds(kind, value, limits).or_else(|| {
            (p.time_unix_ns > latest).then(|| {
                format!(
                    "dated {} s after it arrived, more than limits.max_future_skew_secs ({})",
                    (p.time_unix_ns - received_ns) / 1_000_000_000,
                    limits.max_future_skew_secs
                )
            })
        });
        match why {
            None => {
                let s = sample(kind, p, value, cluster, tenant_attribute, owner);
                // Kept as telemetry; metered only when it is a disk of its own.
                if s.kind != Kind::VolumeCapacity || is_persistent_volume(&s.detail2, &s.claim) {
                    out.samples.push(s);
                }
                true
            }
            Some(why) => {
                out.rejected += 1;
                if out.reasons.len() < MAX_REASONS {
                    out.reasons.push(format!("Kubernetes metric {}: {why}", p.metric.name));
                }
                false
            }
        }
    };
    batch.gauges.retain(|g| check(&g.common, g.value));
    batch.sums.retain(|s| check(&s.common, s.value));
    out
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
