//! Accumulates Kubernetes samples per hour as metrics arrive, and hands
//! out each hour's usage when it closes (the server stores it; the ledger's
//! closer prices it). No metric table is read back.
//!
//! Invariants:
//! - An hour is closed in ascending order: when a sample at least
//!   `close_after_secs` past its end arrives (event time), when the clock is
//!   that far past its end and no sample for it arrived for as long, or on
//!   [`K8sMeter::flush`] (shutdown). A closed hour's usage is kept for
//!   [`RETAIN_HOURS`] hours of event time: a late sample for it updates it
//!   and the whole hour is handed out again (the store keeps the latest
//!   write; the changed usage count makes the closer price it again).
//!   Samples older than that are dropped and counted (`late_samples`).
//! - Counters (`k8s.pod.network.io`) keep their last value per series
//!   across hours. A delta is booked in the hour of the later point. A
//!   changed start time or a lower value is a reset: the new value is the
//!   delta (bytes since the restart). A series seen for the first time
//!   counts its whole value only when its start time falls in the same
//!   hour (a pod that started while watched); otherwise it is a baseline.
//! - Each sample's owner (the ingest key's tenant, see
//!   [`crate::sample`]) has hours of its own: an hour is accumulated,
//!   closed, stored and allocated per (hour, owner), so containers, nodes,
//!   shared namespaces and idle of one owner never meet another's, even
//!   under the same cluster, namespace and pod names.
//! - A sample is counted once: one with the identity and time of a sample
//!   already counted in its hour (a client's retry, a replay of the disk
//!   buffer, the rebuild below) is dropped and counted
//!   (`duplicate_samples`), before it can touch a stream or a counter.
//! - State lives in memory, rebuilt after a restart: every accepted sample
//!   is also stored with its request ([`crate::samples`]), and a starting
//!   server feeds the meter the stored samples of the last
//!   [`crate::samples::REBUILD_HOURS`] hours before any other, so an hour
//!   a restart (kill -9 included) cut in two is counted whole, and a
//!   collector that replays the minutes before the restart adds nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use rust_decimal::Decimal;

use crate::allocate::{HourUsage, HOUR_NS};
use crate::config::KubernetesConfig;
use crate::sample::{Kind, Sample};

/// Counters of the meter, for logs and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeterStats {
    pub samples: u64,
    pub late_samples: u64,
    pub counter_resets: u64,
    pub hours_closed: u64,
    /// Samples already counted in their hour (retries, replays).
    pub duplicate_samples: u64,
}

#[derive(Debug, Clone)]
struct Counter {
    start_ns: i64,
    time_ns: i64,
    value: f64,
}

#[derive(Debug)]
struct OpenHour {
    usage: HourUsage,
    /// Wall clock of the last sample, ns.
    touched_ns: i64,
    /// The samples counted, by [`sample_key`].
    seen: HashSet<u64>,
}

#[derive(Debug)]
struct ClosedHour {
    usage: HourUsage,
    /// A late sample changed it since it was last handed out.
    dirty: bool,
    seen: HashSet<u64>,
}

/// A sample's identity and time, hashed: two samples with the same key are
/// the same measurement sent twice.
fn sample_key(s: &Sample) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&s.owner, s.kind, &s.cluster, &s.pod_uid, &s.container, &s.node, &s.detail, &s.detail2, s.time_ns).hash(&mut h);
    h.finish()
}

/// The per-hour accumulator.
/// Hours of event time a closed hour's usage is kept for late samples.
pub const RETAIN_HOURS: i64 = 6;

#[derive(Debug)]
pub struct K8sMeter {
    cfg: KubernetesConfig,
    /// By (hour start, owner).
    hours: BTreeMap<(i64, String), OpenHour>,
    /// Closed hours still accepting late samples.
    closed: BTreeMap<(i64, String), ClosedHour>,
    /// Hours starting before this are closed.
    closed_before: i64,
    watermark: i64,
    /// By (owner, pod uid, interface, direction).
    counters: HashMap<(String, String, String, String), Counter>,
    pub stats: MeterStats,
}

fn hour_of(ns: i64) -> i64 {
    ns.div_euclid(HOUR_NS) * HOUR_NS
}

/// A float as the shortest decimal that reads back as it (exact for the
/// values receivers send: 0.25 cores, 536870912 bytes).
pub fn decimal(v: f64) -> Decimal {
    Decimal::from_str(&v.to_string()).or_else(|_| Decimal::from_scientific(&format!("{v:e}"))).unwrap_or_default()
}

impl K8sMeter {
    pub fn new(cfg: KubernetesConfig) -> Self {
        K8sMeter {
            cfg,
            hours: BTreeMap::new(),
            closed: BTreeMap::new(),
            closed_before: i64::MIN,
            watermark: i64::MIN,
            counters: HashMap::new(),
            stats: MeterStats::default(),
        }
    }

    pub fn config(&self) -> &KubernetesConfig {
        &self.cfg
    }

    /// The newest sample time seen (`i64::MIN` before any).
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    fn close_after_ns(&self) -> i64 {
        i64::try_from(self.cfg.close_after_secs).unwrap_or(i64::MAX / 4).saturating_mul(1_000_000_000)
    }

    /// Adds samples (received at wall clock `now_ns`); returns the usage
    /// of hours the samples' time closed (or late samples changed).
    pub fn observe(&mut self, mut samples: Vec<Sample>, now_ns: i64) -> Vec<HourUsage> {
        // Counter deltas need time order within a batch.
        samples.sort_by_key(|s| s.time_ns);
        for s in samples {
            self.stats.samples += 1;
            let hour = hour_of(s.time_ns);
            let key = (hour, s.owner.clone());
            // Closing stops at the first hour not yet due, so another
            // owner's hour may still be open below `closed_before`.
            let id = sample_key(&s);
            if hour < self.closed_before && !self.hours.contains_key(&key) {
                match self.closed.get(&key) {
                    None => {
                        self.stats.late_samples += 1;
                        continue;
                    }
                    Some(closed) if closed.seen.contains(&id) => {
                        self.stats.duplicate_samples += 1;
                        continue;
                    }
                    Some(_) => {}
                }
                let delta = if s.kind == Kind::Network { self.counter_delta(&s) } else { None };
                if let Some(closed) = self.closed.get_mut(&key) {
                    closed.seen.insert(id);
                    add(&mut closed.usage, &s, delta);
                    closed.dirty = true;
                }
                continue;
            }
            if self.hours.get(&key).is_some_and(|open| open.seen.contains(&id)) {
                self.stats.duplicate_samples += 1;
                continue;
            }
            self.watermark = self.watermark.max(s.time_ns);
            let delta = if s.kind == Kind::Network { self.counter_delta(&s) } else { None };
            let open = self.hours.entry(key).or_insert_with(|| OpenHour {
                usage: HourUsage { hour_ns: hour, owner: s.owner.clone(), ..HourUsage::default() },
                touched_ns: now_ns,
                seen: HashSet::new(),
            });
            open.touched_ns = now_ns;
            open.seen.insert(id);
            add(&mut open.usage, &s, delta);
        }
        let due = self.watermark.saturating_sub(self.close_after_ns());
        self.close_while(|start, _| start + HOUR_NS <= due)
    }

    fn counter_delta(&mut self, s: &Sample) -> Option<Decimal> {
        let key = (s.owner.clone(), s.pod_uid.clone(), s.detail.clone(), s.detail2.clone());
        let delta = match self.counters.get(&key) {
            None => (s.start_ns > 0 && hour_of(s.start_ns) == hour_of(s.time_ns)).then_some(s.value),
            Some(c) if s.time_ns <= c.time_ns => return None,
            Some(c) if (s.start_ns != 0 && s.start_ns != c.start_ns) || s.value < c.value => {
                self.stats.counter_resets += 1;
                Some(s.value)
            }
            Some(c) => Some(s.value - c.value),
        };
        self.counters.insert(key, Counter { start_ns: s.start_ns, time_ns: s.time_ns, value: s.value });
        delta.map(decimal)
    }

    /// Closes hours the clock (`now_ns`) has left behind.
    pub fn close_due(&mut self, now_ns: i64) -> Vec<HourUsage> {
        let after = self.close_after_ns();
        self.close_while(|start, touched| now_ns >= start + HOUR_NS + after && now_ns - touched >= after)
    }

    /// Closes every open hour.
    pub fn flush(&mut self) -> Vec<HourUsage> {
        self.close_while(|_, _| true)
    }

    fn close_while(&mut self, due: impl Fn(i64, i64) -> bool) -> Vec<HourUsage> {
        // Closed hours late samples changed, again.
        let mut out: Vec<HourUsage> = Vec::new();
        for closed in self.closed.values_mut() {
            if std::mem::take(&mut closed.dirty) {
                out.push(closed.usage.clone());
            }
        }
        while let Some(entry) = self.hours.first_entry() {
            if !due(entry.key().0, entry.get().touched_ns) {
                break;
            }
            let (key, open) = entry.remove_entry();
            self.stats.hours_closed += 1;
            self.closed_before = self.closed_before.max(key.0 + HOUR_NS);
            out.push(open.usage.clone());
            self.closed.insert(key, ClosedHour { usage: open.usage, dirty: false, seen: open.seen });
        }
        let keep_from = hour_of(self.watermark).saturating_sub(RETAIN_HOURS * HOUR_NS);
        self.closed.retain(|(h, _), _| *h >= keep_from);
        // Series silent for two hours of event time are forgotten.
        let horizon = self.watermark.saturating_sub(2 * HOUR_NS);
        self.counters.retain(|_, c| c.time_ns >= horizon);
        out
    }
}

fn add(h: &mut HourUsage, s: &Sample, delta: Option<Decimal>) {
    let v = decimal(s.value);
    match s.kind {
        Kind::CpuUsage | Kind::CpuRequest | Kind::MemUsage | Kind::MemRequest | Kind::GpuRequest => {
            let c = h.containers.entry((s.pod_uid.clone(), s.container.clone())).or_default();
            c.id.fill(s);
            let stream = match s.kind {
                Kind::CpuUsage => &mut c.cpu_usage,
                Kind::CpuRequest => &mut c.cpu_request,
                Kind::MemUsage => &mut c.mem_usage,
                Kind::MemRequest => &mut c.mem_request,
                _ => &mut c.gpu_request,
            };
            stream.add(s.time_ns, v);
        }
        Kind::PodPhase => {
            let e = h.phases.entry(s.pod_uid.clone()).or_default();
            e.0 = true;
            e.1 |= s.value == 2.0;
        }
        Kind::NodeCpu | Kind::NodeMem => {
            let n = h.nodes.entry(s.node.clone()).or_default();
            if n.cluster.is_empty() {
                n.cluster.clone_from(&s.cluster);
            }
            if n.tenant.is_empty() {
                n.tenant.clone_from(&s.owner);
            }
            if s.kind == Kind::NodeCpu { &mut n.cpu } else { &mut n.mem }.add(s.time_ns, v);
        }
        Kind::VolumeCapacity => {
            let vol = h.volumes.entry((s.pod_uid.clone(), s.detail.clone())).or_default();
            vol.id.fill(s);
            vol.name.clone_from(&s.detail);
            vol.class.clone_from(&s.detail2);
            vol.claim.clone_from(&s.claim);
            vol.capacity.add(s.time_ns, v);
        }
        Kind::Network => {
            if let Some(d) = delta {
                let n = h.network.entry((s.pod_uid.clone(), s.detail2.clone())).or_default();
                n.id.fill(s);
                n.bytes += d;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocate::{allocate, AllocationStats, Line, Resource, GIB, IDLE};
    use crate::ShareSplit;

    const MIN: i64 = 60_000_000_000;
    const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn s(kind: Kind, minute: i64, value: f64, ns: &str, pod: &str, node: &str) -> Sample {
        Sample {
            kind,
            time_ns: T0 + minute * MIN,
            start_ns: 0,
            value,
            cluster: "c1".into(),
            owner: String::new(),
            tenant: String::new(),
            namespace: ns.into(),
            pod: pod.into(),
            pod_uid: format!("uid-{pod}"),
            container: if pod.is_empty() { String::new() } else { "main".into() },
            node: node.into(),
            detail: String::new(),
            detail2: String::new(),
            labels: Vec::new(),
            claim: String::new(),
        }
    }

    /// Samples at :00, :15, :30, :45 of the hour (one hour of presence).
    fn quarterly(out: &mut Vec<Sample>, kind: Kind, value: f64, ns: &str, pod: &str) {
        for m in [0, 15, 30, 45] {
            out.push(s(kind, m, value, ns, pod, "n1"));
        }
    }

    fn gib(n: f64) -> f64 {
        n * 1_073_741_824.0
    }

    fn cfg(split: ShareSplit) -> KubernetesConfig {
        let mut c = KubernetesConfig::default();
        c.prices.cpu_core_hour = d("0.04");
        c.prices.ram_gib_hour = d("0.005");
        c.share_split = split;
        c
    }

    fn scenario() -> Vec<Sample> {
        let mut v = Vec::new();
        quarterly(&mut v, Kind::NodeCpu, 4.0, "", "");
        quarterly(&mut v, Kind::NodeMem, gib(16.0), "", "");
        // shop/web: request above usage on CPU, below on RAM.
        quarterly(&mut v, Kind::CpuRequest, 0.5, "shop", "web");
        quarterly(&mut v, Kind::CpuUsage, 0.25, "shop", "web");
        quarterly(&mut v, Kind::MemRequest, gib(1.0), "shop", "web");
        quarterly(&mut v, Kind::MemUsage, gib(2.0), "shop", "web");
        // batch/job: the other way round.
        quarterly(&mut v, Kind::CpuRequest, 0.25, "batch", "job");
        quarterly(&mut v, Kind::CpuUsage, 1.0, "batch", "job");
        quarterly(&mut v, Kind::MemRequest, gib(2.0), "batch", "job");
        quarterly(&mut v, Kind::MemUsage, gib(1.0), "batch", "job");
        // kube-system/dns: shared.
        quarterly(&mut v, Kind::CpuRequest, 0.1, "kube-system", "dns");
        quarterly(&mut v, Kind::CpuUsage, 0.05, "kube-system", "dns");
        quarterly(&mut v, Kind::MemRequest, gib(0.5), "kube-system", "dns");
        quarterly(&mut v, Kind::MemUsage, gib(0.25), "kube-system", "dns");
        v
    }

    /// The hours' lines as the closer prices them, and the clamps counted.
    fn price(m: &K8sMeter, hours: Vec<HourUsage>) -> (Vec<Line>, u64) {
        let mut st = AllocationStats::default();
        let lines = hours.iter().flat_map(|h| allocate(h, m.config(), &mut st)).collect();
        (lines, st.idle_clamps)
    }

    fn cost_of(lines: &[Line], ns: &str, r: Resource) -> Decimal {
        lines.iter().filter(|l| l.id.namespace == ns && l.resource == r).map(|l| l.cost).sum()
    }

    #[test]
    fn max_of_request_and_usage_idle_and_even_share() {
        let mut m = K8sMeter::new(cfg(ShareSplit::Even));
        assert!(m.observe(scenario(), 0).is_empty(), "the hour is still open");
        let hours = m.flush();
        let (lines, clamps) = price(&m, hours);
        // shop: CPU max(0.5, 0.25) = 0.5 core × 1 h × 0.04 = 0.02;
        //       RAM max(1, 2) = 2 GiB × 1 h × 0.005 = 0.01.
        assert_eq!(cost_of(&lines, "shop", Resource::Cpu), d("0.02"));
        assert_eq!(cost_of(&lines, "shop", Resource::Ram), d("0.01"));
        // batch: CPU max(0.25, 1) = 1 × 0.04 = 0.04; RAM max(2, 1) = 2 × 0.005 = 0.01.
        assert_eq!(cost_of(&lines, "batch", Resource::Cpu), d("0.04"));
        assert_eq!(cost_of(&lines, "batch", Resource::Ram), d("0.01"));
        // kube-system: 0.1 × 0.04 = 0.004 + 0.5 × 0.005 = 0.0025 → 0.0065,
        // split even: 0.00325 to each of batch and shop; its own lines go.
        assert_eq!(cost_of(&lines, "kube-system", Resource::Cpu), d("0"));
        assert_eq!(cost_of(&lines, "shop", Resource::Shared), d("0.00325"));
        assert_eq!(cost_of(&lines, "batch", Resource::Shared), d("0.00325"));
        // Idle n1: CPU 4 × 0.04 = 0.16 − (0.02 + 0.04 + 0.004) = 0.096;
        //          RAM 16 × 0.005 = 0.08 − (0.01 + 0.01 + 0.0025) = 0.0575.
        assert_eq!(cost_of(&lines, IDLE, Resource::IdleCpu), d("0.096"));
        assert_eq!(cost_of(&lines, IDLE, Resource::IdleRam), d("0.0575"));
        // Conservation: 0.16 + 0.08 = 0.24 node cost = everything booked.
        assert_eq!(lines.iter().map(|l| l.cost).sum::<Decimal>(), d("0.24"));
        assert_eq!(clamps, 0);
    }

    #[test]
    fn weighted_share_goes_by_own_cost() {
        let mut m = K8sMeter::new(cfg(ShareSplit::Weighted));
        m.observe(scenario(), 0);
        let hours = m.flush();
        let (lines, _) = price(&m, hours);
        // Own costs: shop 0.03, batch 0.05 (sum 0.08). 0.0065 × 0.03 / 0.08
        // = 0.0024375; 0.0065 × 0.05 / 0.08 = 0.0040625 (both exact).
        assert_eq!(cost_of(&lines, "shop", Resource::Shared), d("0.0024375"));
        assert_eq!(cost_of(&lines, "batch", Resource::Shared), d("0.0040625"));
    }

    #[test]
    fn share_idle_and_negative_idle_is_clamped_and_counted() {
        let mut c = cfg(ShareSplit::Even);
        c.share_idle = true;
        let mut m = K8sMeter::new(c);
        let mut v = scenario();
        // A node with 0.1 core allocatable but a container on it using 1 core.
        v.push(s(Kind::NodeCpu, 0, 0.1, "", "", "n2"));
        v.push(s(Kind::CpuUsage, 0, 1.0, "shop", "big", "n2"));
        m.observe(v, 0);
        let hours = m.flush();
        let (lines, clamps) = price(&m, hours);
        assert_eq!(clamps, 1);
        assert!(lines.iter().all(|l| l.id.namespace != IDLE));
        // Node n2 seen once: 10 s = 1/360 h. big: 1 core × 1/360 h × 0.04
        // = 0.000111111111 (rounded to 12 places). n2 idle: 0.1 × 1/360 ×
        // 0.04 = 0.0000111... − 0.000111... < 0 → 0 (clamped).
        // Idle of n1 (0.096 + 0.0575 = 0.1535) is shared weighted by own
        // cost: shop 0.03 + 0.000111111111 = 0.030111111111, batch 0.05.
        let shared_idle: Decimal = lines.iter().filter(|l| l.shared_from == IDLE).map(|l| l.cost).sum();
        assert_eq!(shared_idle, d("0.1535"));
        // shop's share: 0.1535 × 0.030111111111 / 0.080111111111, truncated
        // to 12 places; batch (the larger share) gets the rest, remainder
        // included, so the two add up to 0.1535 exactly.
        let share = |ns: &str| lines.iter().find(|l| l.shared_from == IDLE && l.id.namespace == ns).unwrap().cost;
        let shop = (d("0.1535") * d("0.030111111111") / d("0.080111111111")).trunc_with_scale(12);
        assert_eq!(share("shop"), shop);
        assert_eq!(share("batch"), d("0.1535") - shop);
    }

    #[test]
    fn counters_reset_and_are_booked_in_their_hour() {
        let mut m = K8sMeter::new(cfg(ShareSplit::Even));
        let net = |minute: i64, start: i64, bytes: f64| {
            let mut x = s(Kind::Network, minute, bytes, "shop", "web", "n1");
            x.container.clear();
            x.start_ns = start;
            x.detail = "eth0".into();
            x.detail2 = "transmit".into();
            x
        };
        let before = T0 - 5 * HOUR_NS;
        let restart = T0 + 20 * MIN;
        // :00 baseline 1000 B (started hours ago: not booked); :15 +1 GiB;
        // :30 restarted at :20 → 0.5 GiB since the restart; :45 +0.5 GiB.
        // Transmitted 2 GiB × 0.01 = 0.02. Next hour :00 +1 GiB → 0.01.
        let v = vec![
            net(15, before, 1000.0 + gib(1.0)),
            net(0, before, 1000.0),
            net(30, restart, gib(0.5)),
            net(45, restart, gib(1.0)),
            net(60, restart, gib(2.0)),
        ];
        m.observe(v, 0);
        let hours = m.flush();
        let (lines, _) = price(&m, hours);
        let first: Vec<&Line> = lines.iter().filter(|l| l.hour_ns == T0).collect();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].quantity, d("2"));
        assert_eq!(first[0].cost, d("0.02"));
        let second: Vec<&Line> = lines.iter().filter(|l| l.hour_ns == T0 + HOUR_NS).collect();
        assert_eq!(second[0].cost, d("0.01"));
        assert_eq!(m.stats.counter_resets, 1);
    }

    #[test]
    fn hours_close_by_event_time_and_late_samples_are_dropped() {
        let mut m = K8sMeter::new(cfg(ShareSplit::Even));
        m.observe(vec![s(Kind::CpuUsage, 10, 1.0, "shop", "web", "n1")], 0);
        // A sample 5 minutes past the hour's end closes it (close_after 300 s).
        let closed = m.observe(vec![s(Kind::CpuUsage, 65, 1.0, "shop", "web", "n1")], 0);
        assert_eq!(closed.len(), 1, "the first hour");
        let (lines, _) = price(&m, closed);
        assert_eq!(lines.len(), 2, "the first hour's CPU and RAM lines");
        // 1 core × 10 s (seen once) = 1/360 h × 0.04 = 0.000111111111.
        assert_eq!(lines[0].cost, d("0.000111111111"));
        // A late sample of the closed hour: the hour is handed out again,
        // whole: 2 samples 40 minutes apart span 40 + 40 = 80 → 60 minutes:
        // 1 core × 1 h × 0.04.
        let again = m.observe(vec![s(Kind::CpuUsage, 50, 1.0, "shop", "web", "n1")], 0);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].hour_ns, T0);
        let (lines, _) = price(&m, again);
        assert_eq!(lines[0].cost, d("0.04"));
        assert_eq!(m.stats.late_samples, 0);
        // Older than the retention: dropped and counted.
        m.observe(vec![s(Kind::CpuUsage, 10 * 60 + 5, 1.0, "shop", "web", "n1")], 0);
        m.observe(vec![s(Kind::CpuUsage, 20, 1.0, "shop", "web", "n1")], 0);
        assert_eq!(m.stats.late_samples, 1);
        // The clock closes an hour only after it went quiet.
        let now = T0 + 12 * HOUR_NS + 301 * 1_000_000_000;
        m.observe(vec![s(Kind::CpuUsage, 11 * 60 + 10, 1.0, "shop", "web", "n1")], now);
        let _ = m.close_due(now);
        assert!(m.close_due(now).is_empty(), "touched just now");
        assert_eq!(m.close_due(now + 301 * 1_000_000_000).len(), 1);
    }

    #[test]
    fn pending_pods_pay_usage_only() {
        let mut m = K8sMeter::new(cfg(ShareSplit::Even));
        let mut v = Vec::new();
        quarterly(&mut v, Kind::CpuRequest, 2.0, "shop", "web");
        quarterly(&mut v, Kind::CpuUsage, 0.5, "shop", "web");
        quarterly(&mut v, Kind::PodPhase, 1.0, "shop", "web");
        m.observe(v, 0);
        let hours = m.flush();
        let (lines, _) = price(&m, hours);
        // Never Running: 0.5 core (usage) × 1 h × 0.04 = 0.02, not 2 × 0.04.
        assert_eq!(cost_of(&lines, "shop", Resource::Cpu), d("0.02"));
        let _ = GIB;
    }

    /// The scenario's first half, a restart (a new meter rebuilt from the
    /// stored samples, as the server does), a client's retry of the last
    /// samples before the restart, then the second half: the same lines as
    /// one meter fed everything once, including a network counter whose
    /// previous value the rebuilt meter must know.
    #[test]
    fn a_meter_rebuilt_from_stored_samples_counts_retries_and_replays_once() {
        let network = |minute: i64, bytes: f64| {
            let mut n = s(Kind::Network, minute, bytes, "shop", "web", "n1");
            n.container = String::new();
            n.start_ns = T0 - HOUR_NS;
            n.detail = "eth0".into();
            n.detail2 = "transmit".into();
            n
        };
        let mut all = scenario();
        // Baseline at :00 (the series started an hour before), then +1 GiB
        // per quarter: 3 GiB in the hour.
        all.extend([0, 15, 30, 45].iter().enumerate().map(|(i, m)| network(*m, gib(i as f64))));
        let mut c = cfg(ShareSplit::Even);
        c.prices.network.transmit_gib = d("0.01");
        let mut once = K8sMeter::new(c.clone());
        once.observe(all.clone(), 0);
        let hours = once.flush();
        let (expected, _) = price(&once, hours);

        let (first, second): (Vec<Sample>, Vec<Sample>) = all.iter().cloned().partition(|x| x.time_ns < T0 + 30 * MIN);
        let mut before = K8sMeter::new(c.clone());
        before.observe(first.clone(), 0);
        // Killed here: its state is gone; what was stored comes back.
        let stored = crate::samples::decode(&crate::samples::encode(&first, "c1")).unwrap();
        let mut after = K8sMeter::new(c);
        after.observe(stored, 0);
        // The client retries the request of :15, then sends the rest twice.
        let retry: Vec<Sample> = first.iter().filter(|x| x.time_ns == T0 + 15 * MIN).cloned().collect();
        let retried = retry.len() as u64;
        after.observe(retry, 0);
        after.observe(second.clone(), 0);
        after.observe(second.clone(), 0);
        let hours = after.flush();
        let (rebuilt, _) = price(&after, hours);
        assert_eq!(after.stats.duplicate_samples, retried + second.len() as u64);
        let total = |lines: &[Line]| lines.iter().map(|l| l.cost).sum::<Decimal>();
        // Node cost 0.24 (see the first test) + 3 GiB transmitted × 0.01 = 0.27.
        assert_eq!(total(&expected), d("0.27"));
        assert_eq!(total(&rebuilt), d("0.27"));
        assert_eq!(cost_of(&rebuilt, "shop", Resource::NetworkTransmit), d("0.03"));
        for r in [Resource::Cpu, Resource::Ram, Resource::Shared, Resource::IdleCpu, Resource::IdleRam] {
            for ns in ["shop", "batch", IDLE] {
                assert_eq!(cost_of(&rebuilt, ns, r), cost_of(&expected, ns, r), "{ns} {r:?}");
            }
        }
    }
}
