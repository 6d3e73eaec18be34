//! Samples as stored rows and back: each sample the receivers accept is
//! written with the request it came in (the store's
//! `costplane_usage_k8s_samples`), through the disk buffer and exactly
//! once like the request's telemetry, so that a restarted meter can be
//! rebuilt from what was acknowledged instead of from what arrives after
//! the restart (see [`crate::meter`]).
//!
//! A row has the columns of an hour's usage row: `hour_ns` the sample's
//! hour, `written_ns` its time, `cluster` the owner's write scope
//! ([`crate::usage::write_scope`]), `kind` = [`KIND`], and the sample as
//! JSON. A row that does not read back is an error naming it, never a
//! sample of value 0.

use costplane_telemetry::usage::KubernetesUsage;

use crate::allocate::HOUR_NS;
use crate::sample::Sample;
use crate::usage::write_scope;
use crate::K8sError;

/// The `Kind` column of sample rows.
pub const KIND: &str = "sample";

/// Hours of sample time before the newest stored sample that a restarted
/// meter reads again: the hour still open, the one before it (closed
/// `close_after_secs` after its end, perhaps not yet stored) and one more
/// for the counters' previous values.
pub const REBUILD_HOURS: i64 = 3;

/// The stored rows of `samples`, received by the meter of `cluster`.
pub fn encode(samples: &[Sample], cluster: &str) -> Vec<KubernetesUsage> {
    samples
        .iter()
        .map(|s| KubernetesUsage {
            hour_ns: s.time_ns.div_euclid(HOUR_NS) * HOUR_NS,
            written_ns: s.time_ns,
            cluster: write_scope(cluster, &s.owner),
            kind: KIND.to_owned(),
            // Plain data: serializing cannot fail; an empty payload would
            // be refused by `decode`.
            payload: serde_json::to_string(s).unwrap_or_default(),
        })
        .collect()
}

/// The samples of stored rows, in time order.
pub fn decode(rows: &[KubernetesUsage]) -> Result<Vec<Sample>, K8sError> {
    let mut out = rows
        .iter()
        .map(|r| {
            if r.kind != KIND {
                return Err(K8sError::Usage(format!("a sample row of kind {:?} (hour {})", r.kind, r.hour_ns)));
            }
            serde_json::from_str::<Sample>(&r.payload)
                .map_err(|e| K8sError::Usage(format!("a stored sample of hour {} at {}: {e}", r.hour_ns, r.written_ns)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|s| s.time_ns);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Kind;

    fn sample(owner: &str, t: i64, value: f64) -> Sample {
        Sample {
            kind: Kind::Network,
            time_ns: t,
            start_ns: 5,
            value,
            cluster: "c1".into(),
            owner: owner.into(),
            tenant: "acme".into(),
            namespace: "shop".into(),
            pod: "web".into(),
            pod_uid: "uid-1".into(),
            container: String::new(),
            node: "n1".into(),
            detail: "eth0".into(),
            detail2: "transmit".into(),
            labels: vec![("team".into(), "web".into())],
            claim: String::new(),
        }
    }

    #[test]
    fn samples_survive_the_store_exactly_and_in_time_order() {
        let samples = vec![sample("acme", 2 * HOUR_NS + 7, 1_073_741_824.5), sample("", HOUR_NS - 1, 0.1)];
        let rows = encode(&samples, "c1");
        assert_eq!((rows[0].hour_ns, rows[0].written_ns, rows[0].cluster.as_str()), (2 * HOUR_NS, 2 * HOUR_NS + 7, "c1 tenant=acme"));
        assert_eq!((rows[1].hour_ns, rows[1].cluster.as_str()), (0, "c1"));
        let back = decode(&rows).unwrap();
        assert_eq!(back, vec![samples[1].clone(), samples[0].clone()]);
    }

    #[test]
    fn a_damaged_row_is_an_error_not_a_zero_sample() {
        let mut rows = encode(&[sample("", 1, 2.0)], "c1");
        rows[0].payload.truncate(10);
        assert!(matches!(decode(&rows), Err(K8sError::Usage(_))));
        let mut rows = encode(&[sample("", 1, 2.0)], "c1");
        rows[0].kind = "node".into();
        assert!(matches!(decode(&rows), Err(K8sError::Usage(_))));
    }
}
