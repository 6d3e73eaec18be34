//! Opening the disk buffer: every segment read back, what is corrupt
//! skipped and kept aside, and what the store has not committed assembled
//! for replay.
//!
//! Invariants:
//! - **Corruption costs only what is corrupt.** A record that does not
//!   decode (bad length, CRC mismatch, malformed payload) is skipped when a
//!   whole record follows it ([`record::resync`]): the bytes up to that
//!   record are copied to `dir/quarantine/<segment>-<offset>.bin` (written
//!   durably, once: a later start finds the copy and does not write it
//!   again), counted in [`Recovery::corrupt`] and logged with the file and
//!   offset, and every record after them is replayed. The segment itself is
//!   not rewritten; it goes when its requests are committed.
//! - **A torn tail is cut.** When nothing whole follows the bad bytes, the
//!   segment is truncated there (and synced), with a warning naming file
//!   and offset. At the end of the newest segment a record the file ends
//!   inside (or zeros) is what a crash mid-write leaves, and is cut
//!   silently apart from the warning; any other bad tail is quarantined and
//!   counted first.
//! - **Newer formats refuse.** A record whose CRC holds but whose kind or
//!   codes are unknown stops the open with [`BufferError::UnknownFormat`],
//!   naming the file, offset and the version that wrote the segment (from
//!   `dir/writers`), and changes nothing on disk.
//! - **Same batch, same id** (see [`super`]): requests named by an intent
//!   without a commit come back in that batch, under its id, even when some
//!   of its requests were lost to corruption. A request named by several
//!   intents belongs to the last one (an earlier one is an intent whose
//!   write failed): it is done when that one is committed and comes back in
//!   that one's batch otherwise.
//! - **Synced before use.** Every segment kept is fsynced during the open,
//!   so what a crashed run left in the page cache is durable before this
//!   run acknowledges anything on top of it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::fs::{append_all, write_file_durably, BufferFs};
use super::record::{self, Invalid, Record};
use super::{io, segment_path, BufferError, PendingRequest, RecordLocation, Recovery, Segment};

/// The file that says which version wrote which segments.
const WRITERS: &str = "writers";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A stretch of a segment that did not decode and was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptRegion {
    pub segment: PathBuf,
    pub offset: u64,
    pub len: u64,
    pub why: String,
    /// Where its bytes were kept (`None`: the copy could not be written).
    pub quarantined: Option<PathBuf>,
}

pub(super) struct Scanned {
    pub(super) recovery: Recovery,
    pub(super) segments: BTreeMap<u64, Segment>,
    pub(super) max_record: u64,
}

/// Reads every segment of `seqs` (ascending) and assembles the recovery.
pub(super) fn scan(fs: &dyn BufferFs, dir: &Path, seqs: &[u64]) -> Result<Scanned, BufferError> {
    let mut recovery = Recovery::default();
    let mut requests: Vec<PendingRequest> = Vec::new();
    let mut intents: Vec<(u64, Vec<u64>)> = Vec::new();
    let mut committed: HashSet<u64> = HashSet::new();
    let mut segments = BTreeMap::new();
    let mut max_record = 0u64;
    for (i, &seq) in seqs.iter().enumerate() {
        let newest = i + 1 == seqs.len();
        let bytes = scan_segment(fs, dir, seq, newest, &mut recovery, |rec, offset, len| match rec {
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
        // What a crashed run left only in the page cache is made durable
        // now: this run's acknowledgements and fsyncs assume it.
        let path = segment_path(dir, seq);
        fs.open_append(&path).and_then(|f| f.sync_data()).map_err(io(&path))?;
        segments.insert(seq, Segment { path, bytes, pending: 0 });
    }

    // Each request belongs to the last intent naming it: an intent is only
    // followed by a write once it is on disk, so an earlier one still there
    // is an intent whose fsync failed and that could not be cut back out;
    // nothing was written under its id. Requests whose intent is committed
    // are done; the rest are replayed, in their intent's batch if it has one.
    let mut claim: HashMap<u64, usize> = HashMap::new();
    for (i, (_, records)) in intents.iter().enumerate() {
        for &r in records {
            claim.insert(r, i);
        }
    }
    let done = |id: &u64| claim.get(id).is_some_and(|&i| committed.contains(&intents[i].0));
    let mut by_id: HashMap<u64, PendingRequest> = HashMap::new();
    let mut order: Vec<u64> = Vec::new();
    for r in requests {
        // An id is never written twice; should one be, one replay is enough.
        if done(&r.record_id) || by_id.contains_key(&r.record_id) {
            continue;
        }
        order.push(r.record_id);
        if let Some(s) = segments.get_mut(&r.location.segment) {
            s.pending += 1;
        }
        by_id.insert(r.record_id, r);
    }
    for (i, (batch_id, records)) in intents.iter().enumerate() {
        if committed.contains(batch_id) {
            continue;
        }
        let found: Vec<PendingRequest> = records.iter().filter(|r| claim.get(r) == Some(&i)).filter_map(|id| by_id.remove(id)).collect();
        // A batch that lost requests to corruption keeps its id: if the
        // crashed run stored it, the survivors were stored with it and the
        // store's deduplication skips them; if not, they are stored.
        if !found.is_empty() {
            recovery.batches.push((*batch_id, found));
        }
    }
    recovery.requests = order.into_iter().filter_map(|id| by_id.remove(&id)).collect();
    Ok(Scanned { recovery, segments, max_record })
}

/// Reads one segment's records, calling `each(record, offset, len)` per
/// whole one, skipping corrupt stretches and cutting a bad tail. Returns
/// the segment's size afterwards.
fn scan_segment(
    fs: &dyn BufferFs,
    dir: &Path,
    seq: u64,
    newest: bool,
    recovery: &mut Recovery,
    mut each: impl FnMut(Record<'_>, u64, u64),
) -> Result<u64, BufferError> {
    let path = segment_path(dir, seq);
    let bytes = fs.read(&path).map_err(io(&path))?;
    let mut offset = 0usize;
    while offset < bytes.len() {
        let why = match record::decode(&bytes[offset..]) {
            Ok((rec, n)) => {
                each(rec, offset as u64, n as u64);
                offset += n;
                continue;
            }
            Err(Invalid::Unknown(what)) => {
                return Err(BufferError::UnknownFormat { path, offset: offset as u64, what, writer: writer_of(fs, dir, seq) });
            }
            Err(why) => why,
        };
        if let Some(next) = record::resync(&bytes, offset) {
            let quarantined = quarantine(fs, dir, seq, offset, &bytes[offset..next]);
            tracing::warn!(
                file = %path.display(),
                offset,
                skipped_bytes = next - offset,
                reason = %why,
                quarantined = %quarantined.as_deref().map_or("(could not be written)".into(), |p| p.display().to_string()),
                "disk buffer: skipping a corrupt record; the records after it are replayed"
            );
            recovery.corrupt.push(CorruptRegion {
                segment: path.clone(),
                offset: offset as u64,
                len: (next - offset) as u64,
                why: why.to_string(),
                quarantined,
            });
            offset = next;
            continue;
        }
        let tail = &bytes[offset..];
        let torn = newest && (why == Invalid::Torn || tail.iter().all(|&b| b == 0));
        if !torn {
            let quarantined = quarantine(fs, dir, seq, offset, tail);
            recovery.corrupt.push(CorruptRegion {
                segment: path.clone(),
                offset: offset as u64,
                len: tail.len() as u64,
                why: why.to_string(),
                quarantined,
            });
        }
        tracing::warn!(
            file = %path.display(),
            offset,
            cut_bytes = tail.len(),
            reason = %why,
            torn_write = torn,
            "disk buffer: truncating the segment at an invalid tail; the records before it are replayed"
        );
        let f = fs.open_append(&path).map_err(io(&path))?;
        f.set_len(offset as u64).map_err(io(&path))?;
        f.sync_data().map_err(io(&path))?;
        recovery.truncated.push((path, offset as u64, why.to_string()));
        return Ok(offset as u64);
    }
    Ok(bytes.len() as u64)
}

/// Keeps corrupt bytes for inspection; `None` (with a warning) when they
/// cannot be written, which does not stop the open.
fn quarantine(fs: &dyn BufferFs, dir: &Path, seq: u64, offset: usize, bytes: &[u8]) -> Option<PathBuf> {
    let qdir = dir.join("quarantine");
    let name = format!("{seq:020}-{offset:020}.bin");
    let path = qdir.join(&name);
    let kept = (|| {
        fs.create_dir_all(&qdir)?;
        fs.sync_dir(dir)?;
        if fs.list(&qdir)?.contains(&name) {
            return Ok(()); // kept at an earlier start
        }
        write_file_durably(fs, &path, bytes)
    })();
    match kept {
        Ok(()) => Some(path),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "disk buffer: cannot keep a corrupt record's bytes in quarantine");
            None
        }
    }
}

/// Notes that this version writes the segments from `first_seq` on, so a
/// reader that does not know their records can say who wrote them. Best
/// effort: the buffer works without it.
pub(super) fn stamp_writer(fs: &dyn BufferFs, dir: &Path, first_seq: u64) {
    let path = dir.join(WRITERS);
    let line = format!("{first_seq} costplane {VERSION}\n");
    let written = fs.open_append(&path).and_then(|f| append_all(f.as_ref(), line.as_bytes()).and_then(|()| f.sync_data()));
    if let Err(e) = written {
        tracing::warn!(file = %path.display(), error = %e, "disk buffer: cannot record this version as the segments' writer");
    }
}

/// Who wrote segment `seq`, as `dir/writers` says.
fn writer_of(fs: &dyn BufferFs, dir: &Path, seq: u64) -> String {
    let text = fs.read(&dir.join(WRITERS)).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (first, who) = l.split_once(' ')?;
            Some((first.parse::<u64>().ok()?, who))
        })
        .filter(|(first, _)| *first <= seq)
        .max_by_key(|(first, _)| *first)
        .map_or_else(
            || format!("a costplane version that did not record itself in {WRITERS} (this is costplane {VERSION})"),
            |(_, who)| format!("{who} (this is costplane {VERSION})"),
        )
}
