//! A model-based test of the disk buffer over the in-memory filesystem:
//! random sequences of appends, batch intents, commits, fsyncs, injected
//! faults (short and torn writes, ENOSPC, EIO, failed fsyncs and directory
//! syncs), a full disk, process crashes and power losses, each restart
//! checked against a simple model of what the buffer promises:
//!
//! - every acknowledged request that no logged commit covers is replayed,
//!   exactly once, byte for byte, and, when its batch's intent was logged,
//!   in that batch under that id (so the store deduplicates it);
//! - nothing whose commit was logged is replayed after a process crash, nor
//!   after a power loss once an fsync has followed the commit;
//! - a power loss may take only what no fsync covered;
//! - without injected faults, no corruption is ever reported.
//!
//! `COSTPLANE_SOAK=1` runs many more and longer sequences.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use costplane_pipeline::buffer::memfs::{Fault, FsOp, MemFs};
use costplane_pipeline::buffer::{DiskBuffer, DiskBufferConfig, FsyncPolicy, RecordLocation, Recovery, RequestMeta};
use costplane_telemetry::{Encoding, Signal};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

#[derive(Debug, Clone)]
enum Op {
    Append {
        len: usize,
    },
    /// Logs an intent over up to `take` of the oldest unbatched requests.
    Batch {
        take: usize,
    },
    /// Commits one of the logged batches.
    Commit {
        pick: usize,
    },
    Sync,
    Crash,
    PowerLoss {
        seed: u64,
    },
    Inject {
        op: FsOp,
        fault: Fault,
    },
    DiskFull {
        free: u64,
    },
    DiskRoomy,
}

fn op() -> impl Strategy<Value = Op> {
    let fs_op = prop::sample::select(vec![
        FsOp::Append,
        FsOp::SetLen,
        FsOp::SyncData,
        FsOp::SyncDir,
        FsOp::Open,
        FsOp::Read,
        FsOp::List,
        FsOp::Rename,
        FsOp::Remove,
        FsOp::CreateDir,
    ]);
    let fault =
        prop_oneof![Just(Fault::Eio), Just(Fault::NoSpace), (1usize..40).prop_map(Fault::Short), (0usize..40).prop_map(Fault::Torn)];
    prop_oneof![
        30 => (0usize..80).prop_map(|len| Op::Append { len }),
        10 => (1usize..6).prop_map(|take| Op::Batch { take }),
        10 => any::<usize>().prop_map(|pick| Op::Commit { pick }),
        5 => Just(Op::Sync),
        3 => Just(Op::Crash),
        3 => any::<u64>().prop_map(|seed| Op::PowerLoss { seed }),
        8 => (fs_op, fault).prop_map(|(op, fault)| Op::Inject { op, fault }),
        2 => (0u64..300).prop_map(|free| Op::DiskFull { free }),
        2 => Just(Op::DiskRoomy),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Commit {
    No,
    /// Asked for and not written yet (owed): a failed write may still
    /// have left the record whole in the log.
    Owed,
    /// Written to the OS: a process crash keeps it.
    Written,
    /// And fsynced: a power loss keeps it.
    Durable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Must,
    May,
    Never,
}

#[derive(Debug)]
struct Tracked {
    body: Vec<u8>,
    /// The append returned Ok (or a restart found it: it is in the log).
    acked: bool,
    /// Refused, but a failed write could not be cut back out of the log.
    maybe_logged: bool,
    /// An fsync covered its record.
    durable: bool,
    /// This run's record id and location.
    handle: Option<(u64, RecordLocation)>,
    /// The intent naming it was logged (returned Ok).
    batch: Option<u64>,
    /// Intents naming it that failed: they may be in the log anyway.
    maybe_batches: Vec<u64>,
    commit: Commit,
    /// A restart did not find it: it is not in the log.
    gone: bool,
}

impl Tracked {
    fn expect(&self, power_loss: bool) -> Expect {
        match (self.gone, self.commit) {
            (true, _) | (_, Commit::Durable) => Expect::Never,
            (_, Commit::Owed) => Expect::May,
            (_, Commit::Written) if power_loss => Expect::May,
            (_, Commit::Written) => Expect::Never,
            _ if !self.acked && !self.maybe_logged => Expect::Never,
            _ if !self.acked || (power_loss && !self.durable) => Expect::May,
            _ => Expect::Must,
        }
    }
}

struct Harness {
    fs: MemFs,
    config: DiskBufferConfig,
    buf: Option<DiskBuffer>,
    reqs: BTreeMap<u64, Tracked>,
    next_seq: u64,
    next_batch: u64,
    /// Batches whose commit was asked for and not yet written, oldest first.
    owed: Vec<u64>,
}

fn meta(seq: u64) -> RequestMeta {
    RequestMeta { signal: Signal::Logs, encoding: Encoding::Json, received_ns: seq as i64, tenant: format!("t{seq}"), sender: None }
}

fn body(seq: u64, len: usize) -> Vec<u8> {
    let mut b = format!("{seq:08}:").into_bytes();
    b.extend((0..len).map(|i| b'a' + ((seq as usize + i) % 26) as u8));
    b
}

fn seq_of(body: &[u8]) -> u64 {
    std::str::from_utf8(&body[..8]).unwrap().parse().unwrap()
}

impl Harness {
    fn new(fsync: FsyncPolicy, segment_bytes: u64, max_bytes: u64) -> Harness {
        let fs = MemFs::new();
        let config = DiskBufferConfig { dir: "/data/buffer".into(), max_bytes, segment_bytes, fsync };
        let (buf, rec) = DiskBuffer::open_with(config.clone(), Arc::new(fs.clone())).unwrap();
        assert!(rec.requests.is_empty() && rec.batches.is_empty());
        Harness { fs, config, buf: Some(buf), reqs: BTreeMap::new(), next_seq: 1, next_batch: 1, owed: Vec::new() }
    }

    fn buf(&self) -> &DiskBuffer {
        self.buf.as_ref().unwrap()
    }

    /// An fsync of the active segment succeeded: everything written so far
    /// is durable (older segments were synced when closed or opened).
    fn all_durable(&mut self) {
        for t in self.reqs.values_mut() {
            if t.handle.is_some() {
                t.durable = true;
            }
            if t.commit == Commit::Written {
                t.commit = Commit::Durable;
            }
        }
    }

    /// Owed commits the buffer has written since: the oldest ones.
    fn settle(&mut self) {
        let left = self.buf().owed_commits();
        let done: Vec<u64> = self.owed.drain(..self.owed.len() - left).collect();
        for batch in done {
            for t in self.reqs.values_mut().filter(|t| t.batch == Some(batch) && t.commit == Commit::Owed) {
                t.commit = Commit::Written;
            }
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Append { len } => {
                let seq = self.next_seq;
                self.next_seq += 1;
                let body = body(seq, len);
                let cuts_failed = self.fs.fired(FsOp::SetLen);
                let result = self.buf().append_request(&meta(seq), &body);
                let acked = result.is_ok();
                let maybe_logged = !acked && self.fs.fired(FsOp::SetLen) > cuts_failed;
                self.reqs.insert(
                    seq,
                    Tracked {
                        body,
                        acked,
                        maybe_logged,
                        durable: false,
                        handle: result.as_ref().ok().copied(),
                        batch: None,
                        maybe_batches: Vec::new(),
                        commit: Commit::No,
                        gone: false,
                    },
                );
                if acked && self.config.fsync == FsyncPolicy::EveryRequest {
                    self.all_durable();
                }
            }
            Op::Batch { take } => {
                let members: Vec<u64> = self
                    .reqs
                    .iter()
                    .filter(|(_, t)| t.acked && !t.gone && t.batch.is_none() && t.handle.is_some())
                    .map(|(&s, _)| s)
                    .take(take)
                    .collect();
                if members.is_empty() {
                    return;
                }
                let id = self.next_batch;
                self.next_batch += 1;
                let ids: Vec<u64> = members.iter().map(|s| self.reqs[s].handle.unwrap().0).collect();
                let ok = self.buf().append_intent(id, &ids).is_ok();
                for s in &members {
                    let t = self.reqs.get_mut(s).unwrap();
                    if ok {
                        t.batch = Some(id);
                    } else {
                        t.maybe_batches.push(id);
                    }
                }
                self.settle();
                if ok {
                    self.all_durable();
                }
            }
            Op::Commit { pick } => {
                let open: BTreeSet<u64> = self
                    .reqs
                    .values()
                    .filter(|t| t.commit == Commit::No && !t.gone && t.handle.is_some())
                    .filter_map(|t| t.batch)
                    .collect();
                let Some(&batch) = open.iter().nth(pick % open.len().max(1)) else { return };
                let locations: Vec<RecordLocation> = self
                    .reqs
                    .values()
                    .filter(|t| t.batch == Some(batch) && t.commit == Commit::No && !t.gone)
                    .filter_map(|t| t.handle.map(|h| h.1))
                    .collect();
                for t in self.reqs.values_mut().filter(|t| t.batch == Some(batch) && t.commit == Commit::No) {
                    t.commit = Commit::Owed;
                }
                self.owed.push(batch);
                let _ = self.buf().commit(batch, &locations);
                self.settle();
            }
            Op::Sync => {
                let ok = self.buf().sync_if_dirty().is_ok();
                self.settle();
                if ok {
                    self.all_durable();
                }
            }
            Op::Crash => self.restart(None),
            Op::PowerLoss { seed } => self.restart(Some(seed)),
            Op::Inject { op, fault } => self.fs.inject(op, fault),
            Op::DiskFull { free } => self.fs.set_capacity(Some(self.fs.used() + free)),
            Op::DiskRoomy => self.fs.set_capacity(None),
        }
    }

    /// The process dies (and, with a seed, the power goes out), then the
    /// buffer is opened again and what it replays is checked.
    fn restart(&mut self, power_loss: Option<u64>) {
        drop(self.buf.take());
        self.owed.clear();
        if let Some(seed) = power_loss {
            self.fs.power_loss(seed);
        }
        // Faults still queued may fail the open; the operator restarts.
        let (buf, rec) = match DiskBuffer::open_with(self.config.clone(), Arc::new(self.fs.clone())) {
            Ok(opened) => opened,
            Err(_) => {
                self.fs.clear_faults();
                self.fs.set_capacity(None);
                DiskBuffer::open_with(self.config.clone(), Arc::new(self.fs.clone())).unwrap()
            }
        };
        self.fs.clear_faults();
        self.buf = Some(buf);
        self.check(&rec, power_loss.is_some());
    }

    fn check(&mut self, rec: &Recovery, power_loss: bool) {
        let mut seen: BTreeMap<u64, (Option<u64>, (u64, RecordLocation))> = BTreeMap::new();
        let all =
            rec.batches.iter().flat_map(|(b, rs)| rs.iter().map(move |r| (Some(*b), r))).chain(rec.requests.iter().map(|r| (None, r)));
        for (batch, r) in all {
            let (m, body) = self.buf().read_request(r.location).unwrap();
            assert_eq!(m, r.meta);
            let seq = seq_of(&body);
            let t = self.reqs.get(&seq).unwrap_or_else(|| panic!("replayed a request never appended: {seq}"));
            assert_eq!(body, t.body, "request {seq} is replayed byte for byte");
            assert_eq!(m, meta(seq));
            assert!(seen.insert(seq, (batch, (r.record_id, r.location))).is_none(), "request {seq} replayed twice");
            assert_ne!(t.expect(power_loss), Expect::Never, "request {seq} replayed but {t:?}");
            if let Some(b) = t.batch {
                assert_eq!(batch, Some(b), "request {seq} replayed outside its logged batch {b}");
            } else if let Some(b) = batch {
                // A refused record the buffer could not cut back out is
                // voided by a batch of its own, which a failure can leave
                // uncommitted.
                assert!(t.maybe_batches.contains(&b) || t.maybe_logged, "request {seq} replayed in a batch never logged for it: {t:?}");
            }
        }
        for (seq, t) in &mut self.reqs {
            match seen.remove(seq) {
                Some((batch, handle)) => {
                    // In the log now, synced by the open: a request like any other.
                    *t = Tracked {
                        body: std::mem::take(&mut t.body),
                        acked: true,
                        maybe_logged: false,
                        durable: true,
                        handle: Some(handle),
                        batch,
                        maybe_batches: Vec::new(),
                        commit: Commit::No,
                        gone: false,
                    };
                }
                None => {
                    assert_ne!(t.expect(power_loss), Expect::Must, "acknowledged request {seq} was not replayed: {t:?}");
                    t.gone = true;
                    t.handle = None;
                }
            }
        }
    }
}

fn run(fsync: FsyncPolicy, segment_bytes: u64, max_bytes: u64, ops: &[Op]) {
    let mut h = Harness::new(fsync, segment_bytes, max_bytes);
    for op in ops {
        h.apply(op);
    }
    h.apply(&Op::Crash);
    h.apply(&Op::PowerLoss { seed: 7 });
    let faulted = h.fs.faults_fired() > 0 || ops.iter().any(|o| matches!(o, Op::DiskFull { .. }));
    // Without faults nothing is ever corrupt: a clean open reports nothing.
    let (_, rec) = {
        drop(h.buf.take());
        DiskBuffer::open_with(h.config.clone(), Arc::new(h.fs.clone())).unwrap()
    };
    if !faulted {
        assert!(rec.corrupt.is_empty() && rec.truncated.is_empty(), "{:?} {:?}", rec.corrupt, rec.truncated);
    }
}

fn soak() -> bool {
    std::env::var("COSTPLANE_SOAK").is_ok_and(|v| v == "1")
}

#[test]
fn the_buffer_keeps_its_promise_under_crashes_power_loss_and_disk_faults() {
    let (cases, max_ops) = if soak() { (1_000_000, 300) } else { (20_000, 80) };
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let fsync = prop_oneof![Just(FsyncPolicy::EveryRequest), Just(FsyncPolicy::Interval(Duration::from_millis(500)))];
    let strategy = (fsync, 96u64..1024, 1024u64..8192, prop::collection::vec(op(), 1..max_ops));
    runner
        .run(&strategy, |(fsync, segment_bytes, max_bytes, ops)| {
            run(fsync, segment_bytes, max_bytes, &ops);
            Ok(())
        })
        .unwrap();
}
