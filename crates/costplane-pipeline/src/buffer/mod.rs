//! The disk buffer: a write-ahead log of accepted requests, so that
//! "accepted" means "will be stored".
//!
//! Layout: `dir/<segment seq, 20 digits>.wal`, each a sequence of records
//! (see [`record`]): the body of every accepted request as received
//! (decompressed), the composition of every batch before it is written
//! (an *intent*), and a *commit* once the store holds the batch (or its bad
//! requests went to the dead-letter area). `dir/writers` says which
//! costplane version started writing at which segment; `dir/quarantine/`
//! keeps the bytes of corrupt records ([`scan`]). Every file operation goes
//! through [`fs::BufferFs`].
//!
//! Invariants:
//! - **Acknowledged after the log.** A request record is written (an OS
//!   write, so a crash of the process loses nothing) before the client is
//!   answered. Power loss can take what was written since the last fsync:
//!   `fsync_interval` bounds that window (0: fsync before every answer).
//!   A request whose record cannot be written, or (fsync per request) not
//!   synced, is cut back out of the segment and refused; when even the cut
//!   fails, the record is voided (an intent and a commit of a batch of its
//!   own), so it is not replayed besides the client's retry.
//! - **Names are durable too.** Creating a segment fsyncs the directory
//!   before anything is written to it, in every fsync mode, and so do
//!   deleting segments and renaming quarantine files: a power loss cannot
//!   drop a synced segment by losing its directory entry, nor bring back a
//!   deleted one once the deletion is reported done.
//! - **Same batch, same id.** The intent is logged and fsynced (in every
//!   mode) before a batch's first write attempt; when it cannot be, the
//!   caller does not write (a failed intent left in the log claims nothing:
//!   a request belongs to the last intent naming it). A replay re-forms uncommitted batches from their
//!   intents with the same id, so the store's deduplication (DuckDB's
//!   written-batch table, ClickHouse's insert tokens) drops what a crashed
//!   run had already stored: exactly once across crashes and power loss.
//! - **A commit is logged or owed.** A commit record that cannot be written
//!   is kept owed: its requests stay pending (their segments are not
//!   deleted) and it is tried again at every later commit, intent and
//!   background sync. Until it is written a restart replays the batch under
//!   its own id, which the store skips.
//! - **Deleted only when resolved, oldest first.** A segment is deleted when
//!   every request in it is committed and every older segment is gone; an
//!   intent is therefore kept as long as any request it names is pending.
//! - **Corruption costs only what is corrupt** (see [`scan`]): a bad record
//!   is skipped and quarantined and the records after it are replayed; a
//!   torn tail is cut; a record of a newer version refuses the open.
//! - **Bounded.** Request records are refused (back-pressure) once the
//!   segments hold `max_bytes`; intents and commits always fit, so a full
//!   buffer can still drain.

pub mod fs;
pub mod memfs;
pub mod record;
mod reread;
mod scan;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fs::{append_all, BufferFs, SegmentFile, StdFs};
use record::HEADER_BYTES;
pub use record::{RequestMeta, Sender};
pub use reread::{LogCursor, ReadRequest};
pub use scan::CorruptRegion;
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
    #[error(
        "the disk buffer segment {path} holds, at byte {offset}, a record with {what}: it was written by {writer}. \
         Start that version (or a newer one) on this buffer to drain it, or move the segment out of buffer.dir to give its requests up"
    )]
    UnknownFormat { path: PathBuf, offset: u64, what: String, writer: String },
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
    /// Segments cut at an invalid tail: file, offset, why.
    pub truncated: Vec<(PathBuf, u64, String)>,
    /// Corrupt stretches skipped (and quarantined), mid-segment or at a tail.
    pub corrupt: Vec<CorruptRegion>,
}

struct Segment {
    path: PathBuf,
    bytes: u64,
    /// Requests in this segment not yet committed.
    pending: usize,
}

struct State {
    active: Arc<dyn SegmentFile>,
    active_seq: u64,
    /// The active segment has bytes past its last whole record (a failed
    /// write that could not be cut back): cut or rotate before writing.
    torn: bool,
    segments: BTreeMap<u64, Segment>,
    total_bytes: u64,
    next_record: u64,
    /// Commits whose record could not be written yet: batch id and the
    /// requests it releases.
    owed: Vec<(u64, Vec<RecordLocation>)>,
}

/// The write-ahead log. Shared by the receivers (append) and the writer
/// (intents, commits, reads of spilled requests).
pub struct DiskBuffer {
    config: DiskBufferConfig,
    fs: Arc<dyn BufferFs>,
    state: Mutex<State>,
    dirty: AtomicBool,
}

impl std::fmt::Debug for DiskBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskBuffer").field("dir", &self.config.dir).finish()
    }
}

/// Mixed into the batch id that voids a refused request's record.
const VOID_BATCH: u64 = 0x766f_6964_0000_0000;

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

impl DiskBuffer {
    /// Opens (creating) the buffer directory on the real filesystem, scans
    /// what it holds, and starts a new segment for this run.
    pub fn open(config: DiskBufferConfig) -> Result<(DiskBuffer, Recovery), BufferError> {
        DiskBuffer::open_with(config, Arc::new(StdFs))
    }

    /// [`DiskBuffer::open`] over any filesystem.
    pub fn open_with(config: DiskBufferConfig, fs: Arc<dyn BufferFs>) -> Result<(DiskBuffer, Recovery), BufferError> {
        let dir = config.dir.clone();
        fs.create_dir_all(&dir).map_err(io(&dir))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            // The buffer directory's own entry, in case it was just made.
            let _ = fs.sync_dir(parent);
        }
        let mut seqs: Vec<u64> =
            fs.list(&dir).map_err(io(&dir))?.iter().filter_map(|name| name.strip_suffix(".wal")?.parse().ok()).collect();
        seqs.sort_unstable();
        let scanned = scan::scan(fs.as_ref(), &dir, &seqs)?;
        let mut segments = scanned.segments;

        let active_seq = seqs.last().map_or(1, |s| s + 1);
        scan::stamp_writer(fs.as_ref(), &dir, active_seq);
        let active = create_segment(fs.as_ref(), &dir, active_seq)?;
        segments.insert(active_seq, Segment { path: segment_path(&dir, active_seq), bytes: 0, pending: 0 });
        let total_bytes = segments.values().map(|s| s.bytes).sum();
        let buffer = DiskBuffer {
            config,
            fs,
            state: Mutex::new(State {
                active,
                active_seq,
                torn: false,
                segments,
                total_bytes,
                next_record: scanned.max_record + 1,
                owed: Vec::new(),
            }),
            dirty: AtomicBool::new(false),
        };
        buffer.delete_resolved(&mut buffer.lock());
        Ok((buffer, scanned.recovery))
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

    fn active_bytes(st: &State) -> u64 {
        st.segments.get(&st.active_seq).map_or(0, |s| s.bytes)
    }

    /// Appends whole records to the active segment, or nothing: on error
    /// the segment is cut back to its last whole record.
    fn write_locked(&self, st: &mut State, parts: &[&[u8]]) -> Result<u64, BufferError> {
        if st.torn {
            let good = Self::active_bytes(st);
            if st.active.set_len(good).is_ok() {
                st.torn = false;
            } else {
                self.rotate(st)?;
            }
        }
        let path = segment_path(&self.config.dir, st.active_seq);
        let mut written = 0u64;
        for p in parts {
            if let Err(e) = append_all(st.active.as_ref(), p) {
                self.cut_back(st);
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

    /// Cuts the active segment back to its last whole record. When even
    /// that fails, the next write cuts again or moves to a new segment, so
    /// no record ever follows a partial one at a recorded offset.
    fn cut_back(&self, st: &mut State) {
        let good = Self::active_bytes(st);
        if st.active.set_len(good).is_err() {
            st.torn = true;
            if let Err(e) = self.rotate(st) {
                tracing::warn!(error = %e, "disk buffer: cannot cut a failed write back nor start a new segment; will retry before the next write");
            }
        }
    }

    /// Forgets the last record written (`len` bytes at the end of the
    /// active segment): its fsync failed, so the caller refuses it.
    fn unwrite(&self, st: &mut State, len: u64) {
        if let Some(s) = st.segments.get_mut(&st.active_seq) {
            s.bytes -= len;
        }
        st.total_bytes -= len;
        self.cut_back(st);
    }

    /// A refused request's record could not be cut back out (it may be
    /// whole in the log): logs it as resolved, an intent and a commit of a
    /// batch of its own, so no start replays a request its client was told
    /// to resend. Best effort: a second failure is only reported.
    fn void(&self, st: &mut State, record_id: u64) {
        let batch_id = record_id.rotate_left(32) ^ VOID_BATCH;
        let records = [record::encode_intent(batch_id, &[record_id]), record::encode_commit(batch_id)];
        // Synced: the record it voids may be on disk already.
        if let Err(e) = self.write_locked(st, &[&records[0], &records[1]]).and_then(|_| self.sync_active(st)) {
            self.dirty.store(true, Ordering::Release);
            tracing::warn!(record = record_id, error = %e, "disk buffer: cannot void a refused request left in the log; the next start may replay it");
        }
    }

    fn sync_active(&self, st: &State) -> Result<(), BufferError> {
        let path = segment_path(&self.config.dir, st.active_seq);
        st.active.sync_data().map_err(io(&path))
    }

    fn rotate_if_full(&self, st: &mut State) -> Result<(), BufferError> {
        if Self::active_bytes(st) < self.config.segment_bytes {
            return Ok(());
        }
        self.rotate(st)
    }

    /// Closes the active segment (synced) and starts the next one.
    fn rotate(&self, st: &mut State) -> Result<(), BufferError> {
        self.sync_active(st)?;
        let seq = st.active_seq + 1;
        let file = create_segment(self.fs.as_ref(), &self.config.dir, seq)?;
        st.active = file;
        st.active_seq = seq;
        st.torn = false;
        st.segments.insert(seq, Segment { path: segment_path(&self.config.dir, seq), bytes: 0, pending: 0 });
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
        let offset = Self::active_bytes(&st);
        // Taken even if the record is refused below: a record that could
        // not be cut back out may still be read at the next start.
        st.next_record += 1;
        let written = self.write_locked(&mut st, &[&head, body]).and_then(|len| match self.config.fsync {
            FsyncPolicy::EveryRequest => match self.sync_active(&st) {
                Ok(()) => Ok(len),
                Err(e) => {
                    self.unwrite(&mut st, len);
                    Err(e)
                }
            },
            FsyncPolicy::Interval(_) => {
                self.dirty.store(true, Ordering::Release);
                Ok(len)
            }
        });
        let len = match written {
            Ok(len) => len,
            Err(e) => {
                if st.torn || st.active_seq != segment {
                    self.void(&mut st, record_id);
                }
                return Err(e);
            }
        };
        if let Some(s) = st.segments.get_mut(&segment) {
            s.pending += 1;
        }
        Ok((record_id, RecordLocation { segment, offset, len }))
    }

    /// Logs the composition of a batch before its first write attempt, and
    /// fsyncs it (in every mode): an error means it may not be on disk, and
    /// the batch must not be written (log the same intent again).
    pub fn append_intent(&self, batch_id: u64, records: &[u64]) -> Result<(), BufferError> {
        let (file, path) = {
            let mut st = self.lock();
            let _ = self.settle_owed(&mut st);
            self.write_locked(&mut st, &[&record::encode_intent(batch_id, records)])?;
            (Arc::clone(&st.active), segment_path(&self.config.dir, st.active_seq))
        };
        // On disk before the first write attempt, so a power loss cannot
        // make a replay re-batch (under a new id) requests the store has.
        // The fsync runs outside the lock: appends go on meanwhile. When it
        // fails the intent stays in the log, harmless: nothing is written
        // under its id, and a request belongs to the last intent naming it.
        file.sync_data().map_err(io(&path))
    }

    /// Logs that batch `batch_id` is resolved, releasing its requests
    /// (`locations`), and deletes segments that hold nothing pending. On
    /// error the commit is owed: the requests stay pending and the record
    /// is written by a later call (or the batch replays under its id).
    pub fn commit(&self, batch_id: u64, locations: &[RecordLocation]) -> Result<(), BufferError> {
        let mut st = self.lock();
        st.owed.push((batch_id, locations.to_vec()));
        self.settle_owed(&mut st)
    }

    /// Commits owed, written now if the log takes them.
    pub fn owed_commits(&self) -> usize {
        self.lock().owed.len()
    }

    fn settle_owed(&self, st: &mut State) -> Result<(), BufferError> {
        let mut released = false;
        let result = loop {
            let Some((batch_id, _)) = st.owed.first() else { break Ok(()) };
            if let Err(e) = self.write_locked(st, &[&record::encode_commit(*batch_id)]) {
                break Err(e);
            }
            self.dirty.store(true, Ordering::Release);
            let (_, locations) = st.owed.remove(0);
            for loc in locations {
                if let Some(s) = st.segments.get_mut(&loc.segment) {
                    s.pending = s.pending.saturating_sub(1);
                }
            }
            released = true;
        };
        if released {
            self.delete_resolved(st);
        }
        result
    }

    fn delete_resolved(&self, st: &mut State) {
        let mut removed = false;
        while let Some((&seq, seg)) = st.segments.iter().next() {
            if seq == st.active_seq || seg.pending > 0 {
                break;
            }
            if let Err(e) = self.fs.remove(&seg.path) {
                tracing::warn!(file = %seg.path.display(), error = %e, "disk buffer: cannot delete a resolved segment; will retry");
                break;
            }
            st.total_bytes -= seg.bytes;
            st.segments.remove(&seq);
            removed = true;
        }
        if removed {
            if let Err(e) = self.fs.sync_dir(&self.config.dir) {
                // Until a later directory sync, a power loss may bring the
                // segments back; their requests are committed or replayed
                // under their batches' ids.
                tracing::warn!(dir = %self.config.dir.display(), error = %e, "disk buffer: cannot sync the directory after deleting segments");
            }
        }
    }

    /// Reads a request record back (for a request spilled from memory, or
    /// one being replayed or dead-lettered).
    pub fn read_request(&self, loc: RecordLocation) -> Result<(RequestMeta, Vec<u8>), BufferError> {
        let path = segment_path(&self.config.dir, loc.segment);
        let len = usize::try_from(loc.len).unwrap_or(usize::MAX);
        let bytes = self.fs.read_at(&path, loc.offset, len).map_err(io(&path))?;
        match reread::decode_request(&bytes, loc.segment, loc.offset, &path)? {
            (Some((request, body)), _) => Ok((request.meta, body)),
            (None, _) => Err(BufferError::Corrupt { path, offset: loc.offset, why: "not a request record".into() }),
        }
    }

    /// Writes owed commits, then forces what was written to stable
    /// storage, if anything is new.
    pub fn sync_if_dirty(&self) -> Result<(), BufferError> {
        let owed = {
            let mut st = self.lock();
            self.settle_owed(&mut st)
        };
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return owed;
        }
        // fsync outside the lock: appends go on meanwhile.
        let (file, path) = {
            let st = self.lock();
            (Arc::clone(&st.active), segment_path(&self.config.dir, st.active_seq))
        };
        file.sync_data().map_err(|e| {
            // Try again at the next tick.
            self.dirty.store(true, Ordering::Release);
            io(&path)(e)
        })?;
        owed
    }

    /// The background fsync period, when there is one.
    pub fn fsync_interval(&self) -> Option<Duration> {
        match self.config.fsync {
            FsyncPolicy::EveryRequest => None,
            FsyncPolicy::Interval(d) => Some(d),
        }
    }
}

/// Creates segment `seq` and makes its name durable before anything is
/// written to it; on failure nothing is left behind.
fn create_segment(fs: &dyn BufferFs, dir: &Path, seq: u64) -> Result<Arc<dyn SegmentFile>, BufferError> {
    let path = segment_path(dir, seq);
    let file = fs.open_append(&path).map_err(io(&path))?;
    if let Err(e) = fs.sync_dir(dir) {
        let _ = fs.remove(&path);
        return Err(io(dir)(e));
    }
    Ok(file)
}
