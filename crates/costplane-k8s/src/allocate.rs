//! One hour's Kubernetes usage and its allocation into cost lines.
//!
//! Rules (OpenCost's, stated here because the tests work them by hand):
//! - Per container and hour: allocated cores = max(average request,
//!   average usage) over the hour's samples; core-hours = that × the
//!   container's hours in the hour. RAM likewise in bytes (priced per GiB,
//!   2^30 bytes). GPU-hours = average GPU request × hours.
//! - A container's hours: its most-sampled stream's first-to-last span plus
//!   one sample spacing ((last − first) / (n − 1)), at most 1; a container
//!   seen once counts `sample_interval_secs`. Samples every 15 minutes at
//!   :00, :15, :30, :45 make 45 + 15 = 60 minutes = 1 hour.
//! - A pod whose `k8s.pod.phase` was seen in the hour but never Running (2)
//!   is charged its usage only, not its requests.
//! - Volumes: persistent volumes only (a claim, or a disk type of its own;
//!   `emptyDir`, `configMap`, `secret` and the like are the node's disk).
//!   Each is charged once per hour, however many pods mount it: the most
//!   GiB-hours any of its pods saw (average capacity in GiB × that pod's
//!   hours) × the storage class's rate (per GiB-month / 730), split among
//!   the pods by their hours.
//! - Network: GiB of the hour's counter deltas × the direction's rate.
//! - Idle per node and resource (CPU, RAM): allocatable × node hours × rate
//!   − the allocated cost of containers on the node, clamped at zero (each
//!   clamp counted). Booked in namespace `__idle__` (to the samples'
//!   owner), or with `share_idle` split weighted among the namespaces of
//!   the node's cluster (`x_SharedFrom = __idle__`).
//! - One [`HourUsage`] holds one owner's samples; owners are allocated
//!   apart (see [`crate::price_hour`]).
//! - Shared namespaces: the hour's cost of each (cluster, shared namespace)
//!   is split among the cluster's other namespaces (even or weighted by
//!   their own allocated cost, see [`crate::share`]); the shared
//!   namespace's own lines are replaced by the split lines. With no other
//!   namespace in the hour, its lines stay as they are.
//! - Every line's cost is rounded half-even to 12 places when made; shared
//!   and idle amounts are sums of those rounded costs, so the ledger total
//!   of an hour equals the sum of its own lines plus idle, exactly.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::config::KubernetesConfig;
use crate::share::split;
use crate::MONEY_SCALE;

pub const HOUR_NS: i64 = 3_600_000_000_000;
pub const GIB: Decimal = Decimal::from_parts(1_073_741_824, 0, 0, false, 0);
pub const IDLE: &str = "__idle__";

/// A running average and the span of its sample times.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stream {
    pub sum: Decimal,
    pub n: u64,
    pub first: i64,
    pub last: i64,
}

impl Stream {
    pub fn add(&mut self, t: i64, v: Decimal) {
        if self.n == 0 {
            self.first = t;
            self.last = t;
        }
        self.first = self.first.min(t);
        self.last = self.last.max(t);
        self.sum += v;
        self.n += 1;
    }

    pub fn avg(&self) -> Decimal {
        if self.n == 0 {
            Decimal::ZERO
        } else {
            self.sum / Decimal::from(self.n)
        }
    }

    /// Nanoseconds the stream covers in its hour (see the module rules).
    pub fn span_ns(&self, single_ns: i64) -> i64 {
        match self.n {
            0 => 0,
            1 => single_ns.min(HOUR_NS),
            n => {
                let d = self.last - self.first;
                (d + d / (n as i64 - 1)).min(HOUR_NS)
            }
        }
    }
}

/// Who a line belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub cluster: String,
    pub tenant: String,
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
    pub node: String,
    pub labels: Vec<(String, String)>,
}

impl Identity {
    /// Fills what is still empty from another sample of the same object.
    pub fn fill(&mut self, s: &crate::sample::Sample) {
        for (mine, theirs) in [
            (&mut self.cluster, &s.cluster),
            (&mut self.tenant, &s.tenant),
            (&mut self.namespace, &s.namespace),
            (&mut self.pod, &s.pod),
            (&mut self.pod_uid, &s.pod_uid),
            (&mut self.container, &s.container),
            (&mut self.node, &s.node),
        ] {
            if mine.is_empty() && !theirs.is_empty() {
                mine.clone_from(theirs);
            }
        }
        if self.labels.is_empty() {
            self.labels.clone_from(&s.labels);
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ContainerHour {
    pub id: Identity,
    pub cpu_usage: Stream,
    pub cpu_request: Stream,
    pub mem_usage: Stream,
    pub mem_request: Stream,
    pub gpu_request: Stream,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct NodeHour {
    pub cluster: String,
    /// The owner of the samples (the ingest key's tenant), who pays the
    /// node's idle; empty for open ingest.
    #[serde(default)]
    pub tenant: String,
    pub cpu: Stream,
    pub mem: Stream,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct VolumeHour {
    pub id: Identity,
    pub name: String,
    pub class: String,
    /// The persistent volume claim the volume is, if any.
    #[serde(default)]
    pub claim: String,
    pub capacity: Stream,
}

impl VolumeHour {
    /// What the volume is billed as once per hour, whichever pods mount
    /// it: a claim by (cluster, namespace, claim); a volume without one
    /// is its pod's own.
    fn billed_as(&self) -> (String, String, String, String) {
        if self.claim.is_empty() {
            (self.id.cluster.clone(), self.id.namespace.clone(), self.id.pod_uid.clone(), self.name.clone())
        } else {
            (self.id.cluster.clone(), self.id.namespace.clone(), String::new(), self.claim.clone())
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct NetworkHour {
    pub id: Identity,
    pub bytes: Decimal,
}

/// Everything measured in one hour.
#[derive(Debug, Clone, Default)]
pub struct HourUsage {
    pub hour_ns: i64,
    /// Whose samples these are (see [`crate::sample::Sample::owner`]).
    pub owner: String,
    /// By (pod uid, container).
    pub containers: BTreeMap<(String, String), ContainerHour>,
    pub nodes: BTreeMap<String, NodeHour>,
    /// By (pod uid, volume name).
    pub volumes: BTreeMap<(String, String), VolumeHour>,
    /// By (pod uid, direction).
    pub network: BTreeMap<(String, String), NetworkHour>,
    /// Pod uid → (phase seen, Running seen).
    pub phases: BTreeMap<String, (bool, bool)>,
}

/// What a line charges for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    Cpu,
    Ram,
    Gpu,
    Volume,
    NetworkReceive,
    NetworkTransmit,
    IdleCpu,
    IdleRam,
    Shared,
}

impl Resource {
    /// The ledger's `x_UsageType`: the `/metrics` cost type, then after a
    /// slash the direction or what idle is of.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Ram => "memory",
            Resource::Gpu => "gpu",
            Resource::Volume => "volume",
            Resource::NetworkReceive => "network/receive",
            Resource::NetworkTransmit => "network/transmit",
            Resource::IdleCpu => "idle/cpu",
            Resource::IdleRam => "idle/memory",
            Resource::Shared => "shared",
        }
    }

    /// The same, typed.
    pub fn usage_type(self) -> costplane_telemetry::usage::UsageType {
        use costplane_telemetry::usage::UsageType;
        match self {
            Resource::Cpu => UsageType::Cpu,
            Resource::Ram => UsageType::Memory,
            Resource::Gpu => UsageType::Gpu,
            Resource::Volume => UsageType::Volume,
            Resource::NetworkReceive => UsageType::NetworkReceive,
            Resource::NetworkTransmit => UsageType::NetworkTransmit,
            Resource::IdleCpu => UsageType::IdleCpu,
            Resource::IdleRam => UsageType::IdleMemory,
            Resource::Shared => UsageType::Shared,
        }
    }

    /// The unit of the line's quantity.
    pub fn unit(self) -> &'static str {
        match self {
            Resource::Cpu | Resource::IdleCpu => "Core-Hours",
            Resource::Ram | Resource::IdleRam | Resource::Volume => "GiB-Hours",
            Resource::Gpu => "GPU-Hours",
            Resource::NetworkReceive | Resource::NetworkTransmit => "GiB",
            Resource::Shared => "Shared Cost",
        }
    }
}

/// One priced line: quantity × rate = cost (before rounding).
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub hour_ns: i64,
    pub id: Identity,
    pub resource: Resource,
    pub quantity: Decimal,
    pub rate: Decimal,
    pub cost: Decimal,
    /// CPU/RAM/GPU: average usage and request (cores, bytes, GPUs).
    pub usage_avg: Decimal,
    pub request_avg: Decimal,
    /// Volume name, or for shared lines the split method.
    pub detail: String,
    /// Shared lines: the namespace (or `__idle__`) the cost came from.
    pub shared_from: String,
}

/// Counters of what allocation had to correct.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllocationStats {
    pub idle_clamps: u64,
}

fn money(d: Decimal) -> Decimal {
    d.round_dp(MONEY_SCALE)
}

fn hours(ns: i64) -> Decimal {
    Decimal::from(ns) / Decimal::from(HOUR_NS)
}

fn line(hour_ns: i64, id: &Identity, resource: Resource, quantity: Decimal, rate: Decimal) -> Line {
    Line {
        hour_ns,
        id: id.clone(),
        resource,
        quantity,
        rate,
        cost: money(quantity * rate),
        usage_avg: Decimal::ZERO,
        request_avg: Decimal::ZERO,
        detail: String::new(),
        shared_from: String::new(),
    }
}

/// Persistent volumes, each once: its GiB-hours are the most any pod
/// mounting it saw (average capacity × that pod's hours), priced at its
/// class's rate, and the cost and quantity are split among the pods by
/// their hours (truncated to 12 places, the remainder to the largest
/// share). Volumes that are not persistent are not charged.
fn volume_lines(h: &HourUsage, cfg: &KubernetesConfig, single: i64) -> Vec<Line> {
    let mut volumes: BTreeMap<(String, String, String, String), Vec<&VolumeHour>> = BTreeMap::new();
    for v in h.volumes.values().filter(|v| crate::sample::is_persistent_volume(&v.class, &v.claim)) {
        volumes.entry(v.billed_as()).or_default().push(v);
    }
    let mut lines = Vec::new();
    for mounts in volumes.values() {
        let gib_hours = |v: &VolumeHour| v.capacity.avg() / GIB * hours(v.capacity.span_ns(single));
        let quantity = mounts.iter().map(|v| gib_hours(v)).max().unwrap_or_default();
        // The class of the mount seen longest (all mounts of a claim name
        // the same one).
        let class = mounts.iter().max_by_key(|v| v.capacity.span_ns(single)).map_or("", |v| v.class.as_str());
        let rate = cfg.prices.storage_gib_hour(class);
        let cost = money(quantity * rate);
        let weights: Vec<(String, Decimal)> = mounts.iter().map(|v| (v.id.pod_uid.clone(), hours(v.capacity.span_ns(single)))).collect();
        let costs = split(cost, &weights, crate::ShareSplit::Weighted);
        let quantities = split(quantity, &weights, crate::ShareSplit::Weighted);
        for ((v, (_, cost)), (_, quantity)) in mounts.iter().zip(costs).zip(quantities) {
            let mut l = line(h.hour_ns, &v.id, Resource::Volume, quantity, rate);
            l.cost = cost;
            l.detail = if v.claim.is_empty() { v.name.clone() } else { v.claim.clone() };
            lines.push(l);
        }
    }
    lines
}

/// Prices and splits one hour.
pub fn allocate(h: &HourUsage, cfg: &KubernetesConfig, stats: &mut AllocationStats) -> Vec<Line> {
    let single = i64::try_from(cfg.sample_interval_secs).unwrap_or(3600) * 1_000_000_000;
    let mut lines = Vec::new();
    // Allocated CPU and RAM cost per node, for idle.
    let mut on_node: BTreeMap<&str, (Decimal, Decimal)> = BTreeMap::new();
    for c in h.containers.values() {
        let streams = [&c.cpu_usage, &c.cpu_request, &c.mem_usage, &c.mem_request, &c.gpu_request];
        let most = streams.iter().max_by_key(|s| s.n).expect("five streams");
        let hrs = hours(most.span_ns(single));
        let (seen, running) = h.phases.get(&c.id.pod_uid).copied().unwrap_or((false, true));
        let requests_count = !seen || running;
        let req = |s: &Stream| if requests_count { s.avg() } else { Decimal::ZERO };
        let rates = cfg.prices.node(&c.id.node);
        let (cpu_req, cpu_use) = (req(&c.cpu_request), c.cpu_usage.avg());
        let (mem_req, mem_use) = (req(&c.mem_request), c.mem_usage.avg());
        let mut cpu = line(h.hour_ns, &c.id, Resource::Cpu, cpu_req.max(cpu_use) * hrs, rates.cpu_core_hour);
        (cpu.usage_avg, cpu.request_avg) = (cpu_use, cpu_req);
        let mut ram = line(h.hour_ns, &c.id, Resource::Ram, mem_req.max(mem_use) / GIB * hrs, rates.ram_gib_hour);
        (ram.usage_avg, ram.request_avg) = (mem_use, mem_req);
        let e = on_node.entry(c.id.node.as_str()).or_default();
        e.0 += cpu.cost;
        e.1 += ram.cost;
        lines.push(cpu);
        lines.push(ram);
        let gpus = req(&c.gpu_request);
        if gpus > Decimal::ZERO {
            let mut gpu = line(h.hour_ns, &c.id, Resource::Gpu, gpus * hrs, rates.gpu_hour);
            gpu.request_avg = gpus;
            lines.push(gpu);
        }
    }
    lines.extend(volume_lines(h, cfg, single));
    for ((_, direction), n) in &h.network {
        let resource = if direction == "receive" { Resource::NetworkReceive } else { Resource::NetworkTransmit };
        lines.push(line(h.hour_ns, &n.id, resource, n.bytes / GIB, cfg.prices.network_gib(direction)));
    }
    let mut idle = Vec::new();
    for (node, n) in &h.nodes {
        let rates = cfg.prices.node(node);
        let id = Identity {
            cluster: n.cluster.clone(),
            tenant: n.tenant.clone(),
            namespace: IDLE.into(),
            pod: IDLE.into(),
            node: node.clone(),
            ..Identity::default()
        };
        let (cpu_alloc, ram_alloc) = on_node.get(node.as_str()).copied().unwrap_or_default();
        let cpu_hrs = n.cpu.avg() * hours(n.cpu.span_ns(single));
        let ram_hrs = n.mem.avg() / GIB * hours(n.mem.span_ns(single));
        for (resource, qty, rate, allocated) in
            [(Resource::IdleCpu, cpu_hrs, rates.cpu_core_hour, cpu_alloc), (Resource::IdleRam, ram_hrs, rates.ram_gib_hour, ram_alloc)]
        {
            if qty.is_zero() {
                continue;
            }
            let mut l = line(h.hour_ns, &id, resource, qty, rate);
            let left = l.cost - allocated;
            if left < Decimal::ZERO {
                stats.idle_clamps += 1;
            }
            l.cost = left.max(Decimal::ZERO);
            // The quantity stays the node's allocatable; the cost is what
            // the workloads left of it.
            idle.push(l);
        }
    }
    if cfg.share_idle {
        // Each cluster's idle among that cluster's namespaces only.
        let mut clusters: Vec<String> = idle.iter().map(|l| l.id.cluster.clone()).collect();
        clusters.sort();
        clusters.dedup();
        for cluster in clusters {
            let (mine, rest): (Vec<Line>, Vec<Line>) = idle.into_iter().partition(|l| l.id.cluster == cluster);
            idle = rest;
            let total: Decimal = mine.iter().map(|l| l.cost).sum();
            let shared = share_among(h.hour_ns, &lines, total, IDLE, cfg, |l| l.id.cluster == cluster);
            if shared.is_empty() {
                lines.extend(mine);
            } else {
                lines.extend(shared);
            }
        }
    } else {
        lines.extend(idle);
    }
    // Shared namespaces, each split among the other namespaces of its cluster.
    for ns in &cfg.shared_namespaces {
        let clusters: Vec<String> = {
            let mut c: Vec<String> = lines.iter().filter(|l| &l.id.namespace == ns).map(|l| l.id.cluster.clone()).collect();
            c.sort();
            c.dedup();
            c
        };
        for cluster in clusters {
            let total: Decimal = lines.iter().filter(|l| &l.id.namespace == ns && l.id.cluster == cluster).map(|l| l.cost).sum();
            let shared = share_among(h.hour_ns, &lines, total, ns, cfg, |l| l.id.cluster == cluster);
            if !shared.is_empty() {
                lines.retain(|l| !(&l.id.namespace == ns && l.id.cluster == cluster));
                lines.extend(shared);
            }
        }
    }
    lines
}

/// Split lines of `total` (from `from`) among the namespaces of `lines`
/// that pass `keep` and are neither shared nor idle, weighted by their own
/// (not shared) cost.
fn share_among(
    hour_ns: i64,
    lines: &[Line],
    total: Decimal,
    from: &str,
    cfg: &KubernetesConfig,
    keep: impl Fn(&Line) -> bool,
) -> Vec<Line> {
    let mut weights: BTreeMap<(String, String), (Decimal, String)> = BTreeMap::new();
    for l in lines.iter().filter(|l| keep(l)) {
        let ns = &l.id.namespace;
        if ns == IDLE || cfg.shared_namespaces.contains(ns) {
            continue;
        }
        let e = weights.entry((ns.clone(), l.id.cluster.clone())).or_insert((Decimal::ZERO, l.id.tenant.clone()));
        if l.resource != Resource::Shared {
            e.0 += l.cost;
        }
    }
    // Idle shares always go by weight (OpenCost has no even idle share).
    let how = if from == IDLE { crate::ShareSplit::Weighted } else { cfg.share_split };
    let keys: Vec<((String, String), String)> = weights.iter().map(|(k, (_, t))| (k.clone(), t.clone())).collect();
    let recipients: Vec<(String, Decimal)> = weights.iter().map(|((ns, _), (w, _))| (ns.clone(), *w)).collect();
    split(total, &recipients, how)
        .into_iter()
        .zip(keys)
        .map(|((ns, amount), ((_, cluster), tenant))| {
            let id = Identity { cluster, tenant, namespace: ns, ..Identity::default() };
            let mut l = line(hour_ns, &id, Resource::Shared, amount, Decimal::ONE);
            l.cost = amount;
            l.detail = how.as_str().into();
            l.shared_from = from.to_owned();
            l
        })
        .collect()
}
