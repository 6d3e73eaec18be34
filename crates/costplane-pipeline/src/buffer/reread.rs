//! Reading the live log forward from a position: how the writer takes back
//! requests that were logged but never queued in memory (spilled while the
//! queue was at its memory budget, see the crate's "Bounded memory").
//!
//! Invariants:
//! - **Whole records only.** A read stops at each segment's recorded length
//!   (bytes of whole, acknowledged records), taken under the buffer's lock:
//!   a record being appended, or the bytes a failed write left behind, are
//!   never read.
//! - **Nothing it passes is lost.** Segments are deleted oldest first and
//!   only when nothing in them is pending; a spilled request is pending
//!   until its batch commits, so every segment from the first request not
//!   yet read onward is still there. A cursor into a segment deleted since
//!   (everything in it was read and committed) moves to the next one.
//! - **Bounded.** One read returns at most about `max_bytes` of records
//!   (always at least one request when there is one), so the writer holds a
//!   chunk of the backlog at a time, never the backlog.

use super::record::{self, Record, HEADER_BYTES};
use super::{io, segment_path, BufferError, DiskBuffer, PendingRequest, RecordLocation};

/// A position in the log: a segment and a byte offset inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogCursor {
    pub segment: u64,
    pub offset: u64,
}

impl From<RecordLocation> for LogCursor {
    fn from(loc: RecordLocation) -> LogCursor {
        LogCursor { segment: loc.segment, offset: loc.offset }
    }
}

/// Bytes read from a segment at a time.
const BLOCK_BYTES: u64 = 1 << 20;

/// A request read back with its body.
pub type ReadRequest = (PendingRequest, Vec<u8>);

impl DiskBuffer {
    /// The request records from `from` on, in log order, up to about
    /// `max_bytes` of them, and where the next read starts. Intents and
    /// commits are stepped over.
    pub fn read_requests_from(&self, from: LogCursor, max_bytes: u64) -> Result<(Vec<ReadRequest>, LogCursor), BufferError> {
        let bounds: Vec<(u64, u64)> = self.lock().segments.range(from.segment..).map(|(&seq, s)| (seq, s.bytes)).collect();
        let mut out: Vec<ReadRequest> = Vec::new();
        let mut taken = 0u64;
        let mut cursor = from;
        for (seq, end) in bounds {
            if seq > cursor.segment {
                cursor = LogCursor { segment: seq, offset: 0 };
            }
            let path = segment_path(&self.config.dir, seq);
            while cursor.offset < end {
                if taken >= max_bytes && !out.is_empty() {
                    return Ok((out, cursor));
                }
                let want = (end - cursor.offset).min(BLOCK_BYTES);
                let block = self.fs.read_at(&path, cursor.offset, want as usize).map_err(io(&path))?;
                let mut at = 0usize;
                while at + HEADER_BYTES <= block.len() {
                    let len = u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]]) as usize + HEADER_BYTES;
                    let offset = cursor.offset + at as u64;
                    if offset + len as u64 > end {
                        return Err(BufferError::Corrupt { path, offset, why: "a record runs past the segment's whole records".into() });
                    }
                    let record_bytes = if at + len <= block.len() {
                        &block[at..at + len]
                    } else if at == 0 {
                        // A record larger than the block: read it alone.
                        let whole = self.fs.read_at(&path, offset, len).map_err(io(&path))?;
                        let (request, size) = decode_request(&whole, seq, offset, &path)?;
                        out.extend(request);
                        taken += size as u64;
                        at = size;
                        break;
                    } else {
                        break;
                    };
                    let (request, size) = decode_request(record_bytes, seq, offset, &path)?;
                    if request.is_some() {
                        taken += size as u64;
                    }
                    out.extend(request);
                    at += size;
                    if taken >= max_bytes {
                        break;
                    }
                }
                if at == 0 {
                    let offset = cursor.offset;
                    return Err(BufferError::Corrupt {
                        path,
                        offset,
                        why: "the segment's whole records end inside a record header".into(),
                    });
                }
                cursor.offset += at as u64;
            }
        }
        Ok((out, cursor))
    }
}

/// Decodes the record at the start of `bytes` (read at `offset` of
/// `segment`): a request with its location, or `None` for an intent or a
/// commit; with the record's size. A record that does not decode is corrupt.
pub(super) fn decode_request(
    bytes: &[u8],
    segment: u64,
    offset: u64,
    path: &std::path::Path,
) -> Result<(Option<ReadRequest>, usize), BufferError> {
    match record::decode(bytes) {
        Ok((Record::Request { record_id, meta, body }, size)) => {
            let location = RecordLocation { segment, offset, len: size as u64 };
            Ok((Some((PendingRequest { record_id, meta, location }, body.to_vec())), size))
        }
        Ok((_, size)) => Ok((None, size)),
        Err(why) => Err(BufferError::Corrupt { path: path.to_owned(), offset, why: why.to_string() }),
    }
}
