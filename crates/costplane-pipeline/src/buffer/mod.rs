//! The disk buffer: a write-ahead log of accepted requests, so that
//! "accepted" means "will be stored".
//!
//! Layout: `dir/<segment seq, 20 digits>.wal`, each a sequence of records
//! (see [`record`]): the body of every accepted request as received
//! (decompressed), the composition of every batch before it is written
//! (an *intent*), and a *commit* once the store holds the batch (or its bad
//! requests went to the dead-letter area).
//!
//! Invariants:
//! - **Acknowledged after the log.** A request record is written (an OS
//!   write, so a crash of the process loses nothing) before the client is
//!   answered. Power loss can take what was written since the last fsync:
//!   `fsync_interval` bounds that window (0: fsync before every answer).
//! - **Same batch, same id.** The intent is logged before a batch's first
//!   write attempt. A replay re-forms uncommitted batches from their intents
//!   with the same id, so the store's deduplication (DuckDB's written-batch
//!   table, ClickHouse's insert tokens) drops what a crashed run had already
//!   stored: exactly once across crashes.
//! - **Deleted only when resolved, oldest first.** A segment is deleted when
//!   every request in it is committed and every older segment is gone; an
//!   intent is therefore kept as long as any request it names is pending.
//! - **Corruption is cut, never fatal.** Opening scans every segment and
//!   truncates a segment at its first invalid record (a torn tail after a
//!   crash, flipped bits), warning with the file and byte offset; the
//!   records before it are replayed.
//! - **Bounded.** Request records are refused (back-pressure) once the
//!   segments hold `max_bytes`; intents and commits always fit, so a full
//!   buffer can still drain.

pub mod record;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use record::{Record, HEADER_BYTES};
pub use record::{RequestMeta, Sender};
use thiserror::Error;

/// Errors of the disk buffer.
#[derive(Debug, Error)]
pub enum BufferError {
    #[error("the disk buffer is full ({used} of {limit} bytes); retry later")]
    Full { used: u64, limit: u64 },
    #[error("disk buffer I/O error at {path}: {source}; check the disk (space, permissions) under buffer.dir")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the disk buffer record at {path}:{offset} is unreadable: {why}")]
    Corrupt { path: PathBuf, offset: u64, why: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BufferError + '_ {
    move |source| BufferError::Io { path: path.to_owned(), source }
}

/// When the log is forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before every acknowledgement.
    EveryRequest,
    /// In the background, at most this long after a write.
    Interval(Duration),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskBufferConfig {
    pub dir: PathBuf,
    /// Most bytes of segments on disk.
    pub max_bytes: u64,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
}

/// Where a request record lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLocation {
    pub segment: u64,
    pub offset: u64,
    /// Bytes of the whole record, header included.
    pub len: u64,
}

/// A request the log holds that no commit covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRequest {
    pub record_id: u64,
    pub meta: RequestMeta,
    pub location: RecordLocation,
}

/// What opening the buffer found to replay, in log order.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Uncommitted batches: their id and requests, as first composed.
    pub batches: Vec<(u64, Vec<PendingRequest>)>,
    /// Pending requests that no intent names yet.
    pub requests: Vec<PendingRequest>,
    /// Segments cut at an invalid record: file, offset, why.
    pub truncated: Vec<(PathBuf, u64, String)>,
}

struct Segment {
    path: PathBuf,
    bytes: u64,
    /// Requests in this segment not yet committed.
    pending: usize,
}

struct State {
    active: File,
    active_seq: u64,
    segments: BTreeMap<u64, Segment>,
    total_bytes: u64,
    next_record: u64,
}

/// The write-ahead log. Shared by the receivers (append) and the writer
/// (intents, commits, reads of spilled requests).
pub struct DiskBuffer {
    config: DiskBufferConfig,
    state: Mutex<State>,
    dirty: AtomicBool,
}

impl std::fmt::Debug for DiskBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskBuffer").field("dir", &self.config.dir).finish()
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

fn open_append(path: &Path) -> Result<File, BufferError> {
    OpenOptions::new().create(true).append(true).open(path).map_err(io(path))
}

/// Reads one segment's valid records, truncating the file at the first
/// invalid one. Calls `each(record, offset, len)` per record.
fn scan_segment(
    path: &Path,
    truncated: &mut Vec<(PathBuf, u64, String)>,
    mut each: impl FnMut(Record<'_>, u64, u64),
) -> Result<u64, BufferError> {
    let mut bytes = Vec::new();
    File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(io(path))?;
    let mut offset = 0usize;
    while offset < bytes.len() {
        match record::decode(&bytes[offset..]) {
            Ok((rec, n)) => {
                each(rec, offset as u64, n as u64);
                offset += n;
            }
            Err(why) => {
                let reason = why.to_string();
                tracing::warn!(
                    file = %path.display(),
                    offset,
                    cut_bytes = bytes.len() - offset,
                    reason = %reason,
                    "disk buffer: truncating the segment at an invalid record; the records before it are replayed"
                );
                let f = OpenOptions::new().write(true).open(path).map_err(io(path))?;
                f.set_len(offset as u64).map_err(io(path))?;
                f.sync_all().map_err(io(path))?;
                truncated.push((path.to_owned(), offset as u64, reason));
                break;
            }
        }
    }
    Ok(offset as u64)
}

impl DiskBuffer {
    /// Opens (creating) the buffer directory, scans what it holds, and
    /// starts a new segment for this run.
    pub fn open(config: DiskBufferConfig) -> Result<(DiskBuffer, Recovery), BufferError> {
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut seqs: Vec<u64> = std::fs::read_dir(&dir)
            .map_err(io(&dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".wal")?.parse().ok()
            })
            .collect();
        seqs.sort_unstable();

        let mut recovery = Recovery::default();
        let mut requests: Vec<PendingRequest> = Vec::new();
        let mut intents: Vec<(u64, Vec<u64>)> = Vec::new();
        let mut committed: HashSet<u64> = HashSet::new();
        let mut segments = BTreeMap::new();
        let mut max_record = 0u64;
        for &seq in &seqs {
            let path = segment_path(&dir, seq);
            let bytes = scan_segment(&path, &mut recovery.truncated, |rec, offset, len| match rec {
                Record::Request { record_id, meta, .. } => {
                    max_record = max_record.max(record_id);
                    requests.push(PendingRequest { record_id, meta, location: RecordLocation { segment: seq, offset, len } });
                }
                Record::Intent { batch_id, records } => {
                    // Ids named here must not be reused, even when their
                    // request records are gone.
                    max_record = records.iter().copied().fold(max_record, u64::max);
                    intents.push((batch_id, records));
                }
                Record::Commit { batch_id } => {
                    committed.insert(batch_id);
                }
            })?;
            segments.insert(seq, Segment { path, bytes, pending: 0 });
        }

        // Requests of committed batches are done; the rest are replayed, in
        // their batches where an uncommitted intent names them.
        let mut done: HashSet<u64> = HashSet::new();
        for (batch_id, records) in &intents {
            if committed.contains(batch_id) {
                done.extend(records.iter().copied());
            }
        }
        let mut by_id: HashMap<u64, PendingRequest> = HashMap::new();
        let mut order: Vec<u64> = Vec::new();
        for r in requests {
            if !done.contains(&r.record_id) {
                order.push(r.record_id);
                if let Some(s) = segments.get_mut(&r.location.segment) {
                    s.pending += 1;
                }
                by_id.insert(r.record_id, r);
            }
        }
        for (batch_id, records) in intents {
            if committed.contains(&batch_id) {
                continue;
            }
            let found: Vec<PendingRequest> = records.iter().filter_map(|id| by_id.remove(id)).collect();
            if found.is_empty() {
                continue;
            }
            // A batch that lost requests to a truncation keeps its id: if the
            // crashed run stored it, the survivors were stored with it and
            // the store's deduplication skips them; if not, they are stored.
            recovery.batches.push((batch_id, found));
        }
        recovery.requests = order.into_iter().filter_map(|id| by_id.remove(&id)).collect();

        let active_seq = seqs.last().map_or(1, |s| s + 1);
        let active_path = segment_path(&dir, active_seq);
        let active = open_append(&active_path)?;
        segments.insert(active_seq, Segment { path: active_path, bytes: 0, pending: 0 });
        let total_bytes = segments.values().map(|s| s.bytes).sum();
        let buffer = DiskBuffer {
            config,
            state: Mutex::new(State { active, active_seq, segments, total_bytes, next_record: max_record + 1 }),
            dirty: AtomicBool::new(false),
        };
        buffer.delete_resolved(&mut buffer.lock());
        Ok((buffer, recovery))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves whole records or a torn tail,
        // which the next open cuts; carrying on is safe.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes of segments on disk.
    pub fn bytes(&self) -> u64 {
        self.lock().total_bytes
    }

    pub fn max_bytes(&self) -> u64 {
        self.config.max_bytes
    }

    fn write_locked(&self, st: &mut State, parts: &[&[u8]]) -> Result<u64, BufferError> {
        let path = segment_path(&self.config.dir, st.active_seq);
        let mut written = 0u64;
        for p in parts {
            if let Err(e) = st.active.write_all(p) {
                // Never leave a partial record behind the good ones: cut the
                // file back to its last whole record (or, if even that
                // fails, continue in a new segment), so later records stay
                // readable and the recorded offsets stay true.
                let good = st.segments.get(&st.active_seq).map_or(0, |s| s.bytes);
                if st.active.set_len(good).is_err() {
                    let _ = self.rotate(st);
                }
                return Err(io(&path)(e));
            }
            written += p.len() as u64;
        }
        if let Some(s) = st.segments.get_mut(&st.active_seq) {
            s.bytes += written;
        }
        st.total_bytes += written;
        Ok(written)
    }

    fn rotate_if_full(&self, st: &mut State) -> Result<(), BufferError> {
        let active_bytes = st.segments.get(&st.active_seq).map_or(0, |s| s.bytes);
        if active_bytes < self.config.segment_bytes {
            return Ok(());
        }
        self.rotate(st)
    }

    /// Closes the active segment and starts the next one.
    fn rotate(&self, st: &mut State) -> Result<(), BufferError> {
        let old = segment_path(&self.config.dir, st.active_seq);
        st.active.sync_data().map_err(io(&old))?;
        let seq = st.active_seq + 1;
        let path = segment_path(&self.config.dir, seq);
        st.active = open_append(&path)?;
        st.active_seq = seq;
        st.segments.insert(seq, Segment { path, bytes: 0, pending: 0 });
        self.delete_resolved(st);
        Ok(())
    }

    /// Logs an accepted request. Returns its record id and location once
    /// the bytes are with the OS (and on disk, with fsync per request).
    pub fn append_request(&self, meta: &RequestMeta, body: &[u8]) -> Result<(u64, RecordLocation), BufferError> {
        let mut st = self.lock();
        let size = (HEADER_BYTES + 32 + meta.tenant.len() + body.len()) as u64;
        if st.total_bytes + size > self.config.max_bytes {
            // The active segment is never deleted; when all it holds is
            // resolved, close it so it can go.
            // Only worth it when no older segment is pending (deletion goes
            // oldest first).
            let active_resolved = st.segments.get(&st.active_seq).is_some_and(|a| a.pending == 0 && a.bytes > 0);
            let older_pending = st.segments.iter().any(|(&seq, s)| seq != st.active_seq && s.pending > 0);
            if active_resolved && !older_pending {
                self.rotate(&mut st)?;
            }
            // One request always fits when nothing is pending, so a request
            // larger than the limit is not refused forever.
            let pending = st.segments.values().any(|s| s.pending > 0);
            if pending && st.total_bytes + size > self.config.max_bytes {
                return Err(BufferError::Full { used: st.total_bytes, limit: self.config.max_bytes });
            }
        }
        self.rotate_if_full(&mut st)?;
        let record_id = st.next_record;
        let head = record::encode_request(record_id, meta, body);
        let segment = st.active_seq;
        let offset = st.segments.get(&segment).map_or(0, |s| s.bytes);
        let len = self.write_locked(&mut st, &[&head, body])?;
        st.next_record += 1;
        if let Some(s) = st.segments.get_mut(&segment) {
            s.pending += 1;
        }
        match self.config.fsync {
            FsyncPolicy::EveryRequest => {
                let path = segment_path(&self.config.dir, segment);
                st.active.sync_data().map_err(io(&path))?;
            }
            FsyncPolicy::Interval(_) => self.dirty.store(true, Ordering::Release),
        }
        Ok((record_id, RecordLocation { segment, offset, len }))
    }

    /// Logs the composition of a batch before its first write attempt.
    pub fn append_intent(&self, batch_id: u64, records: &[u64]) -> Result<(), BufferError> {
        let mut st = self.lock();
        self.write_locked(&mut st, &[&record::encode_intent(batch_id, records)])?;
        match self.config.fsync {
            // On disk before the first write attempt, so a power loss cannot
            // make a replay re-batch requests the store already has.
            FsyncPolicy::EveryRequest => {
                let path = segment_path(&self.config.dir, st.active_seq);
                st.active.sync_data().map_err(io(&path))?;
            }
            FsyncPolicy::Interval(_) => self.dirty.store(true, Ordering::Release),
        }
        Ok(())
    }

    /// Logs that batch `batch_id` is resolved, releasing its requests
    /// (`locations`), and deletes segments that hold nothing pending.
    pub fn commit(&self, batch_id: u64, locations: &[RecordLocation]) -> Result<(), BufferError> {
        let mut st = self.lock();
        // Released whether or not the commit record is written: without it,
        // the next start replays the batch and the store deduplicates it.
        let written = self.write_locked(&mut st, &[&record::encode_commit(batch_id)]);
        self.dirty.store(true, Ordering::Release);
        for loc in locations {
            if let Some(s) = st.segments.get_mut(&loc.segment) {
                s.pending = s.pending.saturating_sub(1);
            }
        }
        self.delete_resolved(&mut st);
        written.map(|_| ())
    }

    fn delete_resolved(&self, st: &mut State) {
        while let Some((&seq, seg)) = st.segments.iter().next() {
            if seq == st.active_seq || seg.pending > 0 {
                break;
            }
            if let Err(e) = std::fs::remove_file(&seg.path) {
                tracing::warn!(file = %seg.path.display(), error = %e, "disk buffer: cannot delete a resolved segment; will retry");
                break;
            }
            st.total_bytes -= seg.bytes;
            st.segments.remove(&seq);
        }
    }

    /// Reads a request record back (for a request spilled from memory, or
    /// one being replayed or dead-lettered).
    pub fn read_request(&self, loc: RecordLocation) -> Result<(RequestMeta, Vec<u8>), BufferError> {
        let path = segment_path(&self.config.dir, loc.segment);
        let mut f = File::open(&path).map_err(io(&path))?;
        f.seek(SeekFrom::Start(loc.offset)).map_err(io(&path))?;
        let mut bytes = vec![0u8; usize::try_from(loc.len).unwrap_or(usize::MAX)];
        f.read_exact(&mut bytes).map_err(io(&path))?;
        let corrupt = |why: String| BufferError::Corrupt { path: path.clone(), offset: loc.offset, why };
        match record::decode(&bytes) {
            Ok((Record::Request { meta, body, .. }, _)) => Ok((meta, body.to_vec())),
            Ok(_) => Err(corrupt("not a request record".into())),
            Err(why) => Err(corrupt(why.to_string())),
        }
    }

    /// Forces what was written to stable storage, if anything is new.
    pub fn sync_if_dirty(&self) -> Result<(), BufferError> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        // fsync outside the lock: appends go on meanwhile.
        let (file, path) = {
            let st = self.lock();
            let path = segment_path(&self.config.dir, st.active_seq);
            (st.active.try_clone().map_err(io(&path))?, path)
        };
        file.sync_data().map_err(|e| {
            // Try again at the next tick.
            self.dirty.store(true, Ordering::Release);
            io(&path)(e)
        })
    }

    /// The background fsync period, when there is one.
    pub fn fsync_interval(&self) -> Option<Duration> {
        match self.config.fsync {
            FsyncPolicy::EveryRequest => None,
            FsyncPolicy::Interval(d) => Some(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use costplane_telemetry::{Encoding, Signal};

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
        let files = || std::fs::read_dir(dir.path()).unwrap().count();
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
}
