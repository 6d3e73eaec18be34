//! An hour's metered usage as stored rows and back: one row per container,
//! node, volume, network direction and pod phase, its identity and
//! quantities as JSON (decimals as strings, so nothing is rounded in the
//! store). The meter writes every row of an hour under one `written_ns`;
//! [`decode`] rebuilds the hour from the rows of one write.
//!
//! The stored `Cluster` column is the write's scope ([`write_scope`]): the
//! meter's cluster, and the owner's tenant when the samples came with an
//! ingest key. Each scope's latest write is its hour, and each scope is
//! allocated apart, so owners never replace or share into each other.

use costplane_telemetry::usage::KubernetesUsage;
use serde::{Deserialize, Serialize};

use crate::allocate::{ContainerHour, HourUsage, NetworkHour, NodeHour, VolumeHour};
use crate::K8sError;

#[derive(Serialize, Deserialize)]
struct Container {
    pod_uid: String,
    container: String,
    usage: ContainerHour,
}

#[derive(Serialize, Deserialize)]
struct Node {
    node: String,
    usage: NodeHour,
}

#[derive(Serialize, Deserialize)]
struct Volume {
    pod_uid: String,
    volume: String,
    usage: VolumeHour,
}

#[derive(Serialize, Deserialize)]
struct Network {
    pod_uid: String,
    direction: String,
    usage: NetworkHour,
}

#[derive(Serialize, Deserialize)]
struct Phase {
    pod_uid: String,
    seen: bool,
    running: bool,
}

/// The `Cluster` column of an owner's rows: the meter's cluster alone for
/// open ingest (as rows were always written), else the cluster and the
/// owner's tenant.
pub fn write_scope(cluster: &str, owner: &str) -> String {
    if owner.is_empty() {
        cluster.to_owned()
    } else {
        format!("{cluster} tenant={owner}")
    }
}

/// The rows of one hour's usage, written at `written_ns` by the meter of `cluster`.
pub fn encode(h: &HourUsage, cluster: &str, written_ns: i64) -> Vec<KubernetesUsage> {
    let scope = write_scope(cluster, &h.owner);
    let row = |kind: &str, payload: String| KubernetesUsage {
        hour_ns: h.hour_ns,
        written_ns,
        cluster: scope.clone(),
        kind: kind.to_owned(),
        payload,
    };
    let mut out = Vec::new();
    for ((pod_uid, container), usage) in &h.containers {
        out.push(row("container", json(&Container { pod_uid: pod_uid.clone(), container: container.clone(), usage: usage.clone() })));
    }
    for (node, usage) in &h.nodes {
        out.push(row("node", json(&Node { node: node.clone(), usage: usage.clone() })));
    }
    for ((pod_uid, volume), usage) in &h.volumes {
        out.push(row("volume", json(&Volume { pod_uid: pod_uid.clone(), volume: volume.clone(), usage: usage.clone() })));
    }
    for ((pod_uid, direction), usage) in &h.network {
        out.push(row("network", json(&Network { pod_uid: pod_uid.clone(), direction: direction.clone(), usage: usage.clone() })));
    }
    for (pod_uid, (seen, running)) in &h.phases {
        out.push(row("phase", json(&Phase { pod_uid: pod_uid.clone(), seen: *seen, running: *running })));
    }
    out
}

/// Serializing these plain structs cannot fail; an empty payload would be
/// refused by [`decode`], never read as zero.
fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The hour `hour_ns` rebuilt from stored rows (of one write per cluster).
pub fn decode<'a>(hour_ns: i64, rows: impl IntoIterator<Item = &'a KubernetesUsage>) -> Result<HourUsage, K8sError> {
    let mut h = HourUsage { hour_ns, ..HourUsage::default() };
    for r in rows {
        let bad = |e: serde_json::Error| K8sError::Usage(format!("a stored {} row of hour {hour_ns}: {e}", r.kind));
        match r.kind.as_str() {
            "container" => {
                let c: Container = serde_json::from_str(&r.payload).map_err(bad)?;
                h.containers.insert((c.pod_uid, c.container), c.usage);
            }
            "node" => {
                let n: Node = serde_json::from_str(&r.payload).map_err(bad)?;
                h.nodes.insert(n.node, n.usage);
            }
            "volume" => {
                let v: Volume = serde_json::from_str(&r.payload).map_err(bad)?;
                h.volumes.insert((v.pod_uid, v.volume), v.usage);
            }
            "network" => {
                let n: Network = serde_json::from_str(&r.payload).map_err(bad)?;
                h.network.insert((n.pod_uid, n.direction), n.usage);
            }
            "phase" => {
                let p: Phase = serde_json::from_str(&r.payload).map_err(bad)?;
                h.phases.insert(p.pod_uid, (p.seen, p.running));
            }
            other => return Err(K8sError::Usage(format!("an unknown usage kind {other:?} in hour {hour_ns}"))),
        }
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocate::{Identity, Stream};
    use rust_decimal::Decimal;

    #[test]
    fn an_hour_survives_the_store_exactly() {
        let mut h = HourUsage { hour_ns: 7_200_000_000_000, ..HourUsage::default() };
        let mut c =
            ContainerHour { id: Identity { namespace: "shop".into(), pod: "web".into(), ..Identity::default() }, ..Default::default() };
        // A value with more places than a float keeps.
        c.cpu_request.add(1, "0.123456789012345678".parse::<Decimal>().unwrap());
        c.cpu_request.add(5, Decimal::ONE);
        h.containers.insert(("uid".into(), "main".into()), c);
        h.nodes.insert(
            "n1".into(),
            NodeHour { cluster: "c1".into(), cpu: Stream { sum: Decimal::from(4), n: 1, first: 3, last: 3 }, ..Default::default() },
        );
        h.network.insert(("uid".into(), "transmit".into()), NetworkHour { bytes: Decimal::from(1000), ..Default::default() });
        h.phases.insert("uid".into(), (true, false));
        let rows = encode(&h, "c1", 42);
        assert_eq!(rows.len(), 4);
        assert!(rows.iter().all(|r| r.written_ns == 42 && r.hour_ns == h.hour_ns && r.cluster == "c1"));
        let back = decode(h.hour_ns, &rows).unwrap();
        let c = &back.containers[&("uid".to_owned(), "main".to_owned())];
        assert_eq!(c.cpu_request.sum, "1.123456789012345678".parse::<Decimal>().unwrap());
        assert_eq!((c.cpu_request.n, c.cpu_request.first, c.cpu_request.last), (2, 1, 5));
        assert_eq!(back.nodes["n1"].cpu.sum, Decimal::from(4));
        assert_eq!(back.network[&("uid".to_owned(), "transmit".to_owned())].bytes, Decimal::from(1000));
        assert_eq!(back.phases["uid"], (true, false));
    }

    #[test]
    fn a_damaged_row_is_an_error_not_zero() {
        let mut rows = encode(&HourUsage { hour_ns: 0, ..HourUsage::default() }, "c1", 1);
        rows.push(KubernetesUsage { hour_ns: 0, written_ns: 1, cluster: "c1".into(), kind: "node".into(), payload: "{".into() });
        assert!(matches!(decode(0, &rows), Err(K8sError::Usage(_))));
    }
}
