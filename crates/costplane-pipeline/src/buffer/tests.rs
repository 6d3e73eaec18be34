//! Unit tests of the disk buffer, on the real filesystem and on [`MemFs`].

use costplane_telemetry::{Encoding, Signal};

use super::memfs::{Fault, FsOp, MemFs};
use super::*;

fn config(dir: &Path) -> DiskBufferConfig {
    DiskBufferConfig {
        dir: dir.to_owned(),
        max_bytes: 1 << 20,
        segment_bytes: 256,
        fsync: FsyncPolicy::Interval(Duration::from_millis(500)),
    }
}

fn meta(tenant: &str) -> RequestMeta {
    RequestMeta { signal: Signal::Traces, encoding: Encoding::Protobuf, received_ns: 1, tenant: tenant.into(), sender: None }
}

#[test]
fn uncommitted_requests_and_batches_come_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (buf, rec) = DiskBuffer::open(config(dir.path())).unwrap();
    assert!(rec.requests.is_empty() && rec.batches.is_empty());
    let a = buf.append_request(&meta("a"), b"first").unwrap();
    let b = buf.append_request(&meta("b"), b"second").unwrap();
    let c = buf.append_request(&meta("c"), b"third").unwrap();
    let d = buf.append_request(&meta("d"), b"fourth").unwrap();
    buf.append_intent(10, &[a.0, b.0]).unwrap();
    buf.commit(10, &[a.1, b.1]).unwrap();
    buf.append_intent(11, &[c.0]).unwrap();
    drop(buf);

    let (buf, rec) = DiskBuffer::open(config(dir.path())).unwrap();
    assert_eq!(rec.batches.len(), 1);
    assert_eq!(rec.batches[0].0, 11, "an uncommitted batch keeps its id");
    assert_eq!(rec.batches[0].1[0].record_id, c.0);
    assert_eq!(rec.requests.iter().map(|r| r.record_id).collect::<Vec<_>>(), vec![d.0]);
    assert_eq!(buf.read_request(rec.requests[0].location).unwrap(), (meta("d"), b"fourth".to_vec()));
    // New ids continue after the old ones.
    let e = buf.append_request(&meta("e"), b"fifth").unwrap();
    assert!(e.0 > d.0);
}

#[test]
fn a_batch_that_lost_a_request_keeps_its_id_and_ids_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.segment_bytes = 1 << 20;
    let (buf, _) = DiskBuffer::open(cfg.clone()).unwrap();
    let a = buf.append_request(&meta("a"), b"first").unwrap();
    let b = buf.append_request(&meta("b"), b"second").unwrap();
    buf.append_intent(42, &[a.0, b.0, 99]).unwrap();
    drop(buf);
    // Record 99 is named by the intent but its request is gone.
    let (buf, rec) = DiskBuffer::open(cfg).unwrap();
    assert_eq!(rec.batches.len(), 1);
    assert_eq!(rec.batches[0].0, 42, "same id: the store skips what a crashed run already stored under it");
    assert_eq!(rec.batches[0].1.len(), 2);
    let next = buf.append_request(&meta("c"), b"third").unwrap();
    assert!(next.0 > 99, "an id an intent names is not handed out again");
}

#[test]
fn resolved_segments_are_deleted_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let (buf, _) = DiskBuffer::open(config(dir.path())).unwrap();
    let body = vec![b'x'; 300]; // each request fills a segment
    let reqs: Vec<_> = (0..4).map(|i| buf.append_request(&meta(&i.to_string()), &body).unwrap()).collect();
    let files =
        || std::fs::read_dir(dir.path()).unwrap().filter(|e| e.as_ref().unwrap().path().extension() == Some("wal".as_ref())).count();
    assert_eq!(files(), 4);
    // Committing a newer request first deletes nothing: an older one is pending.
    buf.append_intent(2, &[reqs[1].0]).unwrap();
    buf.commit(2, &[reqs[1].1]).unwrap();
    assert_eq!(files(), 4);
    buf.append_intent(1, &[reqs[0].0]).unwrap();
    buf.commit(1, &[reqs[0].1]).unwrap();
    assert_eq!(files(), 2, "the first two segments are resolved");
    assert_eq!(buf.lock().segments.values().map(|s| s.pending).sum::<usize>(), 2);
}

#[test]
fn a_full_buffer_refuses_requests_but_takes_commits() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_bytes = 1000;
    cfg.segment_bytes = 10_000;
    let (buf, _) = DiskBuffer::open(cfg).unwrap();
    let body = vec![b'x'; 400];
    let a = buf.append_request(&meta("a"), &body).unwrap();
    let b = buf.append_request(&meta("b"), &body).unwrap();
    assert!(matches!(buf.append_request(&meta("c"), &body), Err(BufferError::Full { .. })));
    buf.append_intent(5, &[a.0, b.0]).unwrap();
    buf.commit(5, &[a.1, b.1]).unwrap();
    // Everything is resolved but still in the (one, active) segment: the
    // next request closes it, it is deleted, and the request fits.
    buf.append_request(&meta("c"), &body).unwrap();
    assert!(buf.bytes() < 1000, "the resolved segment was deleted ({} bytes left)", buf.bytes());
}

#[test]
fn a_corrupt_tail_is_cut_and_the_intact_records_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.segment_bytes = 1 << 20;
    let (buf, _) = DiskBuffer::open(cfg.clone()).unwrap();
    for i in 0..5 {
        buf.append_request(&meta(&format!("t{i}")), format!("body {i}").as_bytes()).unwrap();
    }
    drop(buf);
    let path = segment_path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    let whole = bytes.len();
    // Flip a byte inside the last record and add a torn half-record.
    bytes[whole - 2] ^= 0xff;
    bytes.extend_from_slice(&[9, 0, 0, 0, 1]);
    std::fs::write(&path, &bytes).unwrap();

    let (_buf, rec) = DiskBuffer::open(cfg).unwrap();
    assert_eq!(rec.requests.len(), 4, "the four intact records are replayed");
    assert_eq!(rec.truncated.len(), 1);
    let (file, offset, why) = &rec.truncated[0];
    assert_eq!(file, &path);
    assert!(*offset > 0 && (*offset as usize) < whole);
    assert!(why.contains("checksum"), "{why}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), *offset);
}

/// Four requests, the third of which gets a flipped bit in its body.
fn segment_with_a_bad_third_record(fs: &MemFs, cfg: &DiskBufferConfig) -> (PathBuf, u64) {
    let (buf, _) = DiskBuffer::open_with(cfg.clone(), Arc::new(fs.clone())).unwrap();
    let locs: Vec<_> = (0..4).map(|i| buf.append_request(&meta(&format!("t{i}")), format!("body {i}").as_bytes()).unwrap().1).collect();
    buf.append_intent(7, &[]).unwrap();
    drop(buf);
    let path = segment_path(&cfg.dir, locs[2].segment);
    let mut bytes = fs.contents(&path).unwrap();
    bytes[(locs[2].offset + locs[2].len - 2) as usize] ^= 0x01;
    fs.overwrite(&path, &bytes).unwrap();
    (path, locs[2].offset)
}

#[test]
fn a_corrupt_record_mid_segment_costs_only_itself_and_is_quarantined_once() {
    let fs = MemFs::new();
    let mut cfg = config(Path::new("/buf"));
    cfg.segment_bytes = 1 << 20;
    let (path, offset) = segment_with_a_bad_third_record(&fs, &cfg);
    let (buf, rec) = DiskBuffer::open_with(cfg.clone(), Arc::new(fs.clone())).unwrap();
    let tenants: Vec<_> = rec.requests.iter().map(|r| r.meta.tenant.as_str()).collect();
    assert_eq!(tenants, ["t0", "t1", "t3"], "the records after the bad one are replayed");
    assert_eq!(buf.read_request(rec.requests[2].location).unwrap().1, b"body 3");
    assert!(rec.truncated.is_empty(), "nothing is cut: {:?}", rec.truncated);
    assert_eq!(rec.corrupt.len(), 1);
    let bad = &rec.corrupt[0];
    assert_eq!((&bad.segment, bad.offset), (&path, offset));
    assert!(bad.why.contains("checksum"), "{}", bad.why);
    let q = bad.quarantined.clone().unwrap();
    assert_eq!(q, Path::new("/buf/quarantine").join(format!("{:020}-{offset:020}.bin", 1)));
    let kept = fs.contents(&q).unwrap();
    assert_eq!(kept.len() as u64, bad.len);
    assert_eq!(&kept[..], &fs.contents(&path).unwrap()[offset as usize..(offset + bad.len) as usize]);
    drop(buf);
    // The next start skips it again and keeps the one copy.
    let (_buf, rec) = DiskBuffer::open_with(cfg, Arc::new(fs.clone())).unwrap();
    assert_eq!(rec.requests.len(), 3);
    assert_eq!(rec.corrupt.len(), 1);
    assert_eq!(fs.list(Path::new("/buf/quarantine")).unwrap().len(), 1);
}

#[test]
fn a_record_of_a_newer_version_refuses_the_open_naming_file_and_writer() {
    let fs = MemFs::new();
    let mut cfg = config(Path::new("/buf"));
    cfg.segment_bytes = 1 << 20;
    let (buf, _) = DiskBuffer::open_with(cfg.clone(), Arc::new(fs.clone())).unwrap();
    buf.append_request(&meta("a"), b"x").unwrap();
    drop(buf);
    // A record of kind 9, framed as a newer version would.
    let path = segment_path(&cfg.dir, 1);
    let mut bytes = fs.contents(&path).unwrap();
    let payload = [9u8, 1, 2, 3, 4, 5, 6, 7, 8];
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    fs.overwrite(&path, &bytes).unwrap();
    // As if a newer costplane had started writing at segment 1 (after the
    // line this version wrote when it started there).
    let mut writers = fs.contents(Path::new("/buf/writers")).unwrap();
    assert_eq!(writers, format!("1 costplane {}\n", env!("CARGO_PKG_VERSION")).as_bytes());
    writers.extend_from_slice(b"1 costplane 9.9.9\n2 costplane 10.0.0\n");
    fs.overwrite(Path::new("/buf/writers"), &writers).unwrap();
    let err = DiskBuffer::open_with(cfg, Arc::new(fs.clone())).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, BufferError::UnknownFormat { .. }), "{msg}");
    assert!(msg.contains("00000000000000000001.wal") && msg.contains("record kind 9"), "{msg}");
    assert!(msg.contains("written by costplane 9.9.9"), "{msg}");
    assert_eq!(fs.contents(&path).unwrap(), bytes, "nothing is cut");
}

#[test]
fn a_new_segment_survives_power_loss_once_synced_in_every_mode() {
    for fsync in [FsyncPolicy::EveryRequest, FsyncPolicy::Interval(Duration::from_secs(1))] {
        let fs = MemFs::new();
        let cfg = DiskBufferConfig { fsync, ..config(Path::new("/buf")) };
        let (buf, _) = DiskBuffer::open_with(cfg.clone(), Arc::new(fs.clone())).unwrap();
        let body = vec![b'x'; 300]; // each request fills a segment
        for i in 0..3 {
            buf.append_request(&meta(&i.to_string()), &body).unwrap();
        }
        buf.sync_if_dirty().unwrap();
        drop(buf);
        fs.power_loss(1);
        let (_buf, rec) = DiskBuffer::open_with(cfg, Arc::new(fs.clone())).unwrap();
        assert_eq!(rec.requests.len(), 3, "{fsync:?}: every synced segment kept its name");
    }
}

#[test]
fn a_failed_directory_sync_refuses_the_request_that_needed_a_new_segment() {
    let fs = MemFs::new();
    let (buf, _) = DiskBuffer::open_with(config(Path::new("/buf")), Arc::new(fs.clone())).unwrap();
    let body = vec![b'x'; 300];
    buf.append_request(&meta("a"), &body).unwrap();
    fs.inject(FsOp::SyncDir, Fault::Eio);
    assert!(matches!(buf.append_request(&meta("b"), &body), Err(BufferError::Io { .. })));
    assert_eq!(fs.list(Path::new("/buf")).unwrap().iter().filter(|n| n.ends_with(".wal")).count(), 1, "no half-made segment");
    buf.append_request(&meta("c"), &body).unwrap();
}

#[test]
fn a_write_or_fsync_failure_refuses_the_request_and_leaves_no_trace() {
    let fs = MemFs::new();
    let mut cfg = config(Path::new("/buf"));
    cfg.segment_bytes = 1 << 20;
    cfg.fsync = FsyncPolicy::EveryRequest;
    let (buf, _) = DiskBuffer::open_with(cfg.clone(), Arc::new(fs.clone())).unwrap();
    buf.append_request(&meta("a"), b"one").unwrap();
    fs.inject(FsOp::Append, Fault::Torn(5));
    assert!(buf.append_request(&meta("torn"), b"two").is_err());
    fs.inject(FsOp::SyncData, Fault::Eio);
    assert!(buf.append_request(&meta("unsynced"), b"three").is_err());
    fs.set_capacity(Some(fs.contents(&segment_path(&cfg.dir, 1)).unwrap().len() as u64 + 20));
    assert!(buf.append_request(&meta("full"), b"four, too long for the disk").is_err());
    fs.set_capacity(None);
    fs.inject(FsOp::Append, Fault::Short(3));
    buf.append_request(&meta("short"), b"five").unwrap();
    drop(buf);
    let (_buf, rec) = DiskBuffer::open_with(cfg, Arc::new(fs.clone())).unwrap();
    let tenants: Vec<_> = rec.requests.iter().map(|r| r.meta.tenant.as_str()).collect();
    assert_eq!(tenants, ["a", "short"]);
    assert!(rec.corrupt.is_empty() && rec.truncated.is_empty());
}

#[test]
fn a_failed_intent_claims_nothing_and_a_failed_commit_is_owed() {
    let fs = MemFs::new();
    let mut cfg = config(Path::new("/buf"));
    cfg.segment_bytes = 1 << 20;
    let (buf, _) = DiskBuffer::open_with(cfg.clone(), Arc::new(fs.clone())).unwrap();
    let a = buf.append_request(&meta("a"), b"one").unwrap();
    fs.inject(FsOp::SyncData, Fault::Eio);
    assert!(buf.append_intent(1, &[a.0]).is_err(), "an intent that is not on disk is an error");
    // Batched again (it was never written under 1): the last intent claims it.
    buf.append_intent(2, &[a.0]).unwrap();
    fs.inject(FsOp::Append, Fault::NoSpace);
    assert!(buf.commit(2, &[a.1]).is_err());
    assert_eq!(buf.owed_commits(), 1);
    drop(buf);
    // Crashed while owing: the batch replays under its own id.
    let (buf, rec) = DiskBuffer::open_with(cfg.clone(), Arc::new(fs.clone())).unwrap();
    assert_eq!(rec.batches.len(), 1);
    assert_eq!(rec.batches[0].0, 2);
    let loc = rec.batches[0].1[0].location;
    fs.inject(FsOp::Append, Fault::Eio);
    assert!(buf.commit(2, &[loc]).is_err());
    // The next sync writes it.
    buf.sync_if_dirty().unwrap();
    assert_eq!(buf.owed_commits(), 0);
    drop(buf);
    let (_buf, rec) = DiskBuffer::open_with(cfg, Arc::new(fs.clone())).unwrap();
    assert!(rec.batches.is_empty() && rec.requests.is_empty());
}

#[test]
fn a_deleted_segment_stays_deleted_after_power_loss() {
    let fs = MemFs::new();
    let cfg = config(Path::new("/buf"));
    let (buf, _) = DiskBuffer::open_with(cfg.clone(), Arc::new(fs.clone())).unwrap();
    let body = vec![b'x'; 300]; // each request fills a segment
    let a = buf.append_request(&meta("a"), &body).unwrap();
    let b = buf.append_request(&meta("b"), &body).unwrap();
    buf.append_intent(1, &[a.0]).unwrap();
    // Deletes segment 1; the commit record itself is not fsynced.
    buf.commit(1, &[a.1]).unwrap();
    assert!(fs.contents(&segment_path(&cfg.dir, a.1.segment)).is_none());
    drop(buf);
    fs.power_loss(3);
    let (_buf, rec) = DiskBuffer::open_with(cfg, Arc::new(fs.clone())).unwrap();
    let ids: Vec<u64> =
        rec.requests.iter().map(|r| r.record_id).chain(rec.batches.iter().flat_map(|(_, rs)| rs.iter().map(|r| r.record_id))).collect();
    assert_eq!(ids, vec![b.0], "the committed request's segment did not come back");
}

#[test]
fn a_refused_request_that_cannot_be_cut_back_is_voided_not_replayed() {
    let modes = [FsyncPolicy::EveryRequest, FsyncPolicy::Interval(Duration::from_secs(1))];
    for (fsync, failed_fsync) in [(modes[0], false), (modes[0], true), (modes[1], false)] {
        let fs = MemFs::new();
        let cfg = DiskBufferConfig { fsync, segment_bytes: 1 << 20, ..config(Path::new("/buf")) };
        let (buf, _) = DiskBuffer::open_with(cfg.clone(), Arc::new(fs.clone())).unwrap();
        buf.append_request(&meta("a"), b"one").unwrap();
        // The whole record lands and the call fails (its body's write, or
        // its fsync), and so does the cut.
        if failed_fsync {
            fs.inject(FsOp::SyncData, Fault::Eio);
        } else {
            fs.inject(FsOp::Append, Fault::Short(usize::MAX));
            fs.inject(FsOp::Append, Fault::Torn(usize::MAX));
        }
        fs.inject(FsOp::SetLen, Fault::Eio);
        assert!(buf.append_request(&meta("refused"), b"two").is_err());
        buf.append_request(&meta("c"), b"three").unwrap();
        drop(buf);
        let (_buf, rec) = DiskBuffer::open_with(cfg, Arc::new(fs.clone())).unwrap();
        let tenants: Vec<_> = rec.requests.iter().map(|r| r.meta.tenant.as_str()).collect();
        assert_eq!(tenants, ["a", "c"], "{fsync:?}, failed fsync: {failed_fsync}");
        assert!(rec.corrupt.is_empty(), "the refused record is whole: {:?}", rec.corrupt);
    }
}
