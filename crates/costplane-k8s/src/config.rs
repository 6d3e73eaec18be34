//! `[kubernetes]` and `[kubernetes.prices]`.
//!
//! Defaults are OpenCost's published defaults (`configs/default.json`,
//! "based on GCP us-central1"): CPU 0.031611 per vCPU-hour (spot
//! 0.006655), RAM 0.004237 per GiB-hour (spot 0.000892), GPU 0.95 per
//! GPU-hour, storage 0.04 per GiB-month (OpenCost's 0.00005479452 per
//! GiB-hour is 0.04 / 730), network egress 0.01 per GiB within a zone or
//! region and 0.12 to the internet. The kubeletstats receiver only knows
//! `receive` / `transmit`, so transmitted bytes are priced at the
//! zone-egress rate unless configured otherwise, and received bytes are
//! free (as on every public cloud).
//!
//! All rates are decimal strings in TOML so they stay exact.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::K8sError;

/// Hours in a month, as OpenCost converts monthly prices (`HoursPerMonth`).
pub const HOURS_PER_MONTH: Decimal = Decimal::from_parts(730, 0, 0, false, 0);

fn d(s: &str) -> Decimal {
    s.parse().expect("a literal decimal")
}

/// How a shared cost is split among the namespaces that receive it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ShareSplit {
    /// Equal parts.
    #[default]
    Even,
    /// In proportion to each namespace's own allocated cost.
    Weighted,
}

impl ShareSplit {
    pub fn as_str(self) -> &'static str {
        match self {
            ShareSplit::Even => "even",
            ShareSplit::Weighted => "weighted",
        }
    }
}

/// `[kubernetes]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// Meter Kubernetes metrics as they arrive.
    pub enabled: bool,
    /// Cluster name when the resource carries no `k8s.cluster.name`.
    pub cluster: String,
    /// Namespaces whose cost is shared among the others (e.g. kube-system).
    pub shared_namespaces: Vec<String>,
    /// How shared namespaces and `share_idle` are split.
    pub share_split: ShareSplit,
    /// Split each node's idle cost among namespaces (weighted) instead of
    /// booking it as `__idle__`.
    pub share_idle: bool,
    /// An hour is closed (and booked) once samples this far past its end
    /// arrive, or once the clock is this far past it and no sample for it
    /// arrived for as long.
    pub close_after_secs: u64,
    /// Assumed sample spacing when a container was seen only once in an
    /// hour (the receivers' default `collection_interval`).
    pub sample_interval_secs: u64,
    /// Resource attribute naming the tenant (as `[cost]` does for telemetry).
    pub tenant_attribute: String,
    /// What one sample may claim (`[kubernetes.limits]`).
    pub limits: SampleLimits,
    pub prices: Prices,
}

/// `[kubernetes.limits]`: the largest values a Kubernetes sample may carry,
/// and how far ahead of its arrival it may be dated. A sample beyond them
/// is refused at the receiver (OTLP partial success, with the reason), so
/// one sender's absurd or future-dated point never reaches the meter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SampleLimits {
    /// Cores one container may request or use.
    pub max_container_cores: u64,
    /// GiB one container may request or use.
    pub max_container_memory_gib: u64,
    /// GPUs one container may request.
    pub max_container_gpus: u64,
    /// Allocatable cores of one node.
    pub max_node_cores: u64,
    /// Allocatable GiB of one node.
    pub max_node_memory_gib: u64,
    /// GiB of one volume.
    pub max_volume_gib: u64,
    /// Seconds a sample may be dated after the time it arrives.
    pub max_future_skew_secs: u64,
}

impl Default for SampleLimits {
    fn default() -> Self {
        // Well above the largest machines sold (AWS u7in-32tb: 896 vCPUs,
        // 32 TiB; 8-GPU nodes) and volumes (64 TiB io2).
        SampleLimits {
            max_container_cores: 1024,
            max_container_memory_gib: 32_768,
            max_container_gpus: 64,
            max_node_cores: 4096,
            max_node_memory_gib: 65_536,
            max_volume_gib: 1_048_576,
            max_future_skew_secs: 300,
        }
    }
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            enabled: true,
            cluster: "default".into(),
            shared_namespaces: vec!["kube-system".into()],
            share_split: ShareSplit::Even,
            share_idle: false,
            close_after_secs: 300,
            sample_interval_secs: 10,
            tenant_attribute: "tenant.id".into(),
            limits: SampleLimits::default(),
            prices: Prices::default(),
        }
    }
}

impl KubernetesConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), K8sError> {
        if self.cluster.is_empty() {
            return Err(K8sError::Config("cluster must not be empty".into()));
        }
        if self.close_after_secs == 0 || self.sample_interval_secs == 0 {
            return Err(K8sError::Config("close_after_secs and sample_interval_secs must be positive".into()));
        }
        if self.sample_interval_secs > 3600 {
            return Err(K8sError::Config("sample_interval_secs must be at most 3600".into()));
        }
        let l = &self.limits;
        for (name, v) in [
            ("max_container_cores", l.max_container_cores),
            ("max_container_memory_gib", l.max_container_memory_gib),
            ("max_container_gpus", l.max_container_gpus),
            ("max_node_cores", l.max_node_cores),
            ("max_node_memory_gib", l.max_node_memory_gib),
            ("max_volume_gib", l.max_volume_gib),
        ] {
            if v == 0 {
                return Err(K8sError::Config(format!("limits.{name} must be positive")));
            }
        }
        self.prices.validate()
    }
}

/// `[kubernetes.prices]`, in the billing currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Prices {
    pub cpu_core_hour: Decimal,
    pub ram_gib_hour: Decimal,
    pub gpu_hour: Decimal,
    pub spot_cpu_core_hour: Decimal,
    pub spot_ram_gib_hour: Decimal,
    /// Default storage price per GiB-month.
    pub storage_gib_month: Decimal,
    /// Per storage class (the volume's `k8s.volume.type`), per GiB-month.
    pub storage_classes: BTreeMap<String, Decimal>,
    pub network: NetworkPrices,
    /// Per node name: overrides of the rates above.
    pub nodes: BTreeMap<String, NodePrices>,
}

impl Default for Prices {
    fn default() -> Self {
        Prices {
            cpu_core_hour: d("0.031611"),
            ram_gib_hour: d("0.004237"),
            gpu_hour: d("0.95"),
            spot_cpu_core_hour: d("0.006655"),
            spot_ram_gib_hour: d("0.000892"),
            storage_gib_month: d("0.04"),
            storage_classes: BTreeMap::new(),
            network: NetworkPrices::default(),
            nodes: BTreeMap::new(),
        }
    }
}

/// `[kubernetes.prices.network]`: per GiB by direction (and destination,
/// when a future source classifies it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkPrices {
    pub receive_gib: Decimal,
    pub transmit_gib: Decimal,
    pub zone_gib: Decimal,
    pub region_gib: Decimal,
    pub internet_gib: Decimal,
}

impl Default for NetworkPrices {
    fn default() -> Self {
        NetworkPrices {
            receive_gib: Decimal::ZERO,
            transmit_gib: d("0.01"),
            zone_gib: d("0.01"),
            region_gib: d("0.01"),
            internet_gib: d("0.12"),
        }
    }
}

/// `[kubernetes.prices.nodes."<node>"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NodePrices {
    pub cpu_core_hour: Option<Decimal>,
    pub ram_gib_hour: Option<Decimal>,
    pub gpu_hour: Option<Decimal>,
    /// A spot node: the spot rates apply unless the node sets its own.
    pub spot: bool,
}

/// The rates in force on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRates {
    pub cpu_core_hour: Decimal,
    pub ram_gib_hour: Decimal,
    pub gpu_hour: Decimal,
}

impl Prices {
    fn validate(&self) -> Result<(), K8sError> {
        let n = &self.network;
        let mut all = vec![
            ("cpu_core_hour", self.cpu_core_hour),
            ("ram_gib_hour", self.ram_gib_hour),
            ("gpu_hour", self.gpu_hour),
            ("spot_cpu_core_hour", self.spot_cpu_core_hour),
            ("spot_ram_gib_hour", self.spot_ram_gib_hour),
            ("storage_gib_month", self.storage_gib_month),
            ("network.receive_gib", n.receive_gib),
            ("network.transmit_gib", n.transmit_gib),
            ("network.zone_gib", n.zone_gib),
            ("network.region_gib", n.region_gib),
            ("network.internet_gib", n.internet_gib),
        ];
        all.extend(self.storage_classes.values().map(|v| ("storage_classes", *v)));
        for p in self.nodes.values() {
            all.extend([p.cpu_core_hour, p.ram_gib_hour, p.gpu_hour].into_iter().flatten().map(|v| ("nodes", v)));
        }
        match all.into_iter().find(|(_, v)| v.is_sign_negative()) {
            Some((k, v)) => Err(K8sError::Config(format!("prices.{k} = {v} is negative"))),
            None => Ok(()),
        }
    }

    /// CPU, RAM and GPU rates of `node`.
    pub fn node(&self, node: &str) -> NodeRates {
        let o = self.nodes.get(node).cloned().unwrap_or_default();
        let (cpu, ram) = if o.spot { (self.spot_cpu_core_hour, self.spot_ram_gib_hour) } else { (self.cpu_core_hour, self.ram_gib_hour) };
        NodeRates {
            cpu_core_hour: o.cpu_core_hour.unwrap_or(cpu),
            ram_gib_hour: o.ram_gib_hour.unwrap_or(ram),
            gpu_hour: o.gpu_hour.unwrap_or(self.gpu_hour),
        }
    }

    /// Storage rate per GiB-hour for a volume type (class).
    pub fn storage_gib_hour(&self, class: &str) -> Decimal {
        self.storage_classes.get(class).copied().unwrap_or(self.storage_gib_month) / HOURS_PER_MONTH
    }

    /// Network rate per GiB for a direction.
    pub fn network_gib(&self, direction: &str) -> Decimal {
        match direction {
            "receive" => self.network.receive_gib,
            _ => self.network.transmit_gib,
        }
    }

    /// A short fingerprint of the rates, stored as the rows' price version.
    pub fn version(&self) -> String {
        format!(
            "k8s:{}/{}/{}/{}",
            self.cpu_core_hour.normalize(),
            self.ram_gib_hour.normalize(),
            self.gpu_hour.normalize(),
            self.storage_gib_month.normalize()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_opencosts() {
        let p = Prices::default();
        assert_eq!(p.cpu_core_hour, d("0.031611"));
        assert_eq!(p.ram_gib_hour, d("0.004237"));
        // 0.04 / 730 = 0.0000547945205479..., OpenCost's 0.00005479452.
        assert_eq!(p.storage_gib_hour("x").round_dp(11), d("0.00005479452"));
    }

    #[test]
    fn node_overrides_and_spot() {
        let cfg: KubernetesConfig = toml::from_str(
            r#"
            [prices]
            cpu_core_hour = "0.05"
            [prices.nodes.a]
            spot = true
            [prices.nodes.b]
            ram_gib_hour = "0.01"
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.prices.node("a").cpu_core_hour, d("0.006655"));
        assert_eq!(cfg.prices.node("b").cpu_core_hour, d("0.05"));
        assert_eq!(cfg.prices.node("b").ram_gib_hour, d("0.01"));
        assert_eq!(cfg.prices.node("c").ram_gib_hour, d("0.004237"));
    }

    #[test]
    fn unknown_keys_and_negative_prices_are_refused() {
        assert!(toml::from_str::<KubernetesConfig>("[prices]\ncpu = \"1\"").is_err());
        let cfg: KubernetesConfig = toml::from_str("[prices]\ncpu_core_hour = \"-1\"").unwrap();
        assert!(cfg.validate().is_err());
    }
}
