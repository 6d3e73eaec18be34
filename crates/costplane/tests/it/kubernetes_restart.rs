//! Kubernetes metering across restarts, on the real binary: the two hours
//! of `kubernetes.rs`'s scrapes, with the server killed with SIGKILL twice
//! and the collector re-sending what it sent around each kill, bill exactly
//! what the uninterrupted run bills (the hand-worked figures in
//! `kubernetes.rs`'s header: per hour shop 0.03 own + 0.00325 shared,
//! batch 0.05 + 0.00325, idle 0.1535; network 0.02 in hour 0, 0.025 in hour 1).
//!
//! 1. Hour 0's first half (:00, :15) is acknowledged, then the server is
//!    killed; it restarts on the same data directory.
//! 2. The collector retries :15, sends :30 and :45, then hour 1's :00 and
//!    :15 (which closes hour 0); the server is killed again at once.
//! 3. After the restart the collector replays the minutes around the hour's
//!    end (hour 0's :45, hour 1's :00 and :15), then sends the rest.
//!
//! Without the stored samples, the first restart loses hour 0's first half
//! and the second replaces hour 0 by the fragment of :45 alone.

use std::collections::BTreeMap;

use prost::Message;
use rust_decimal::Decimal;

use crate::kubernetes::{by_namespace, flush, pods, scrape, wait_rows, write_config};
use crate::support::ServerProcess;

fn send(server: &ServerProcess, scrapes: &[(u64, u64)]) {
    let pods = pods();
    for &(h, q) in scrapes {
        let r = server.export("/v1/metrics", "application/x-protobuf", scrape(h, q, &pods).encode_to_vec());
        assert!(r.status().is_success(), "scrape {h}:{q}: {}", r.status());
    }
}

#[test]
fn kubernetes_hours_cut_by_kill_9_and_replays_across_their_end_are_billed_whole() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "even");
    let args = ["--config", config.to_str().unwrap()];

    let server = ServerProcess::start_in(dir, &args);
    send(&server, &[(0, 0), (0, 1)]);
    let dir = server.kill9();

    let server = ServerProcess::start_in(dir, &args);
    send(&server, &[(0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]);
    let dir = server.kill9();

    let server = ServerProcess::start_in(dir, &args);
    send(&server, &[(0, 3), (1, 0), (1, 1), (1, 2), (1, 3)]);
    let client = reqwest::blocking::Client::new();
    let answer = flush(&client, &server);
    // A scrape is 19 samples: 2 of the node, 5 per pod (CPU and memory
    // usage, CPU and memory requests, phase; 3 pods) and shop/web's two
    // network points. The 3 scrapes re-sent after the last restart (hour
    // 0's :45, hour 1's :00 and :15) were acknowledged before it (stored
    // then, or replayed by the disk buffer at the restart), so at least
    // 3 × 19 = 57 samples arrived twice (more when the disk buffer
    // replayed what the store already held).
    let duplicates = answer["duplicate_samples"].as_u64().unwrap();
    assert!(duplicates >= 57, "{answer}");
    assert_eq!(answer["late_samples"], 0, "{answer}");
    wait_rows(&server);

    let expected: BTreeMap<String, Decimal> = [
        // shop: 2 × (0.03 + 0.00325) + 0.02 + 0.025 = 0.1115.
        ("shop", "0.1115"),
        // batch: 2 × (0.05 + 0.00325) = 0.1065.
        ("batch", "0.1065"),
        // idle: 2 × 0.1535 = 0.307.
        ("__idle__", "0.307"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
    .collect();
    crate::support::wait_until(|| by_namespace(&server) == expected, "the ledger to hold both hours whole");
    // Per hour, not only in sum: hour 0 is not a fragment made up by hour 1.
    let hours = server.sql(
        "SELECT epoch_ns(ChargePeriodStart) AS h, CAST(sum(BilledCost) AS VARCHAR) AS c FROM costplane_ledger \
         WHERE x_Source = 'kubernetes' GROUP BY 1 ORDER BY 1",
    );
    let per_hour: Vec<Decimal> = hours.iter().map(|r| r["c"].as_str().unwrap().parse().unwrap()).collect();
    // Hour 0: node 0.24 + network 0.02 = 0.26; hour 1: 0.24 + 0.025 = 0.265.
    assert_eq!(per_hour, vec!["0.26".parse::<Decimal>().unwrap(), "0.265".parse().unwrap()], "{hours:?}");
}
