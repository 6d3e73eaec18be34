//! The disk buffer's record format.
//!
//! ```text
//! record  = len:u32le crc:u32le payload[len]      crc = CRC-32 (IEEE) of payload
//! payload = 1 request:  record_id:u64 signal:u8 encoding:u8 received_ns:i64
//!                       tenant_len:u16 tenant[tenant_len] body[..]
//!         | 4 keyed request: the fields of 1, then, before body:
//!                       flags:u8 (bit 0: trust_provided_cost)
//!                       sender_tenant_len:u16 sender_tenant[..]
//!                       project_len:u16 project[..]   (0: no project pinned)
//!                       body[..]
//!         | 2 intent:   batch_id:u64 count:u32 record_id:u64 × count
//!         | 3 commit:   batch_id:u64
//! ```
//!
//! A request accepted with an ingest key is written as kind 4, so that its
//! replay after a restart bills the tenant the key pinned, with the same
//! trust in provided costs, whatever the body's resources claim. Requests
//! without a key keep kind 1, byte for byte as before, so buffers written by
//! older versions replay unchanged.
//!
//! Invariants:
//! - **A record is whole or it is not there.** [`decode`] accepts a record
//!   only when its length fits, its payload matches its CRC and the payload
//!   parses.
//! - **Unknown is not corrupt.** A record whose CRC holds but whose kind
//!   (or signal, encoding, sender flags) this version does not know was
//!   written by a newer costplane: [`Invalid::Unknown`]. The buffer refuses
//!   to open on it, naming the file and the version that wrote it, rather
//!   than dropping or misreading it (replaying a keyed request as an
//!   unkeyed one).
//! - **Resynchronising after corruption.** The format has no sync marker
//!   (adding one would change every record and break older buffers), so
//!   [`resync`] finds the next record after a bad one by the framing
//!   itself: first where the bad record's own length says it ends (flipped
//!   bits inside a payload leave the length intact), then at each later
//!   byte offset whose header passes cheap checks (a length that fits, a
//!   known kind, a known signal and encoding, an intent's count that matches
//!   its length) and whose payload then matches its CRC-32 and parses. A
//!   false match needs those bytes *and* a 32-bit checksum to agree by
//!   chance. Nothing after a bad record is taken without its CRC.

use costplane_telemetry::{Encoding, Signal};

/// Bytes before the payload.
pub const HEADER_BYTES: usize = 8;
/// Larger payloads are taken as corruption (a request body is at most tens of MiB).
pub const MAX_PAYLOAD_BYTES: u32 = 1 << 30;

const KIND_REQUEST: u8 = 1;
const KIND_INTENT: u8 = 2;
const KIND_COMMIT: u8 = 3;
const KIND_KEYED_REQUEST: u8 = 4;

/// Who sent a request, as its ingest key says (absent: no key was used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// The tenant every resource of the request is billed to.
    pub tenant: String,
    /// The project pinned too, if the key names one.
    pub project: Option<String>,
    /// Whether costs the spans carry (`cost.usd`, ...) are believed.
    pub trust_provided_cost: bool,
}

/// What the buffer keeps about an accepted request besides its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMeta {
    pub signal: Signal,
    pub encoding: Encoding,
    /// When the request was accepted, ns since the epoch.
    pub received_ns: i64,
    /// The tenant(s) the request's resources named, comma-separated.
    pub tenant: String,
    /// The ingest key's pinning, when the request came with one.
    pub sender: Option<Sender>,
}

impl RequestMeta {
    /// The metadata of a request accepted now.
    pub fn accepted_now(signal: Signal, encoding: Encoding, tenant: String) -> RequestMeta {
        RequestMeta { signal, encoding, received_ns: crate::now_ns(), tenant, sender: None }
    }
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    Request { record_id: u64, meta: RequestMeta, body: &'a [u8] },
    Intent { batch_id: u64, records: Vec<u64> },
    Commit { batch_id: u64 },
}

fn signal_code(s: Signal) -> u8 {
    match s {
        Signal::Traces => 1,
        Signal::Logs => 2,
        Signal::Metrics => 3,
    }
}

fn signal_of(code: u8) -> Option<Signal> {
    Some(match code {
        1 => Signal::Traces,
        2 => Signal::Logs,
        3 => Signal::Metrics,
        _ => return None,
    })
}

fn encoding_code(e: Encoding) -> u8 {
    match e {
        Encoding::Protobuf => 1,
        Encoding::Json => 2,
    }
}

fn encoding_of(code: u8) -> Option<Encoding> {
    Some(match code {
        1 => Encoding::Protobuf,
        2 => Encoding::Json,
        _ => return None,
    })
}

fn frame(payload: Vec<u8>, body: &[u8]) -> Vec<u8> {
    let len = payload.len() + body.len();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&payload);
    crc.update(body);
    let mut head = Vec::with_capacity(HEADER_BYTES + payload.len());
    head.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
    head.extend_from_slice(&crc.finalize().to_le_bytes());
    head.extend_from_slice(&payload);
    head
}

/// The framed head of a request record, to be followed by `body`.
pub fn encode_request(record_id: u64, meta: &RequestMeta, body: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(64 + meta.tenant.len());
    p.push(if meta.sender.is_some() { KIND_KEYED_REQUEST } else { KIND_REQUEST });
    p.extend_from_slice(&record_id.to_le_bytes());
    p.push(signal_code(meta.signal));
    p.push(encoding_code(meta.encoding));
    p.extend_from_slice(&meta.received_ns.to_le_bytes());
    put_str(&mut p, &meta.tenant);
    if let Some(sender) = &meta.sender {
        p.push(u8::from(sender.trust_provided_cost));
        put_str(&mut p, &sender.tenant);
        put_str(&mut p, sender.project.as_deref().unwrap_or(""));
    }
    frame(p, body)
}

/// A u16-length-prefixed string. Tenants and projects come from the
/// configuration (keys) or are cut to a bound by the decoder; a longer one
/// is cut at a character boundary rather than overflowing the length.
fn put_str(p: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    p.extend_from_slice(&(end as u16).to_le_bytes());
    p.extend_from_slice(&s.as_bytes()[..end]);
}

/// A whole intent record: batch `batch_id` is made of `records`, in order.
pub fn encode_intent(batch_id: u64, records: &[u64]) -> Vec<u8> {
    let mut p = Vec::with_capacity(13 + 8 * records.len());
    p.push(KIND_INTENT);
    p.extend_from_slice(&batch_id.to_le_bytes());
    p.extend_from_slice(&u32::try_from(records.len()).unwrap_or(u32::MAX).to_le_bytes());
    for r in records {
        p.extend_from_slice(&r.to_le_bytes());
    }
    frame(p, &[])
}

/// A whole commit record: every request of batch `batch_id` is resolved.
pub fn encode_commit(batch_id: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(9);
    p.push(KIND_COMMIT);
    p.extend_from_slice(&batch_id.to_le_bytes());
    frame(p, &[])
}

/// Why the bytes at some offset are not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// The file ends inside the record (a torn write).
    Torn,
    /// The length field is impossible.
    BadLength(u32),
    /// The payload does not match its checksum.
    BadChecksum,
    /// The payload's fields do not parse.
    BadPayload(&'static str),
    /// The checksum holds but the record uses a kind, signal, encoding or
    /// flag this version does not know: written by a newer costplane.
    Unknown(String),
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::Torn => f.write_str("the file ends inside a record (torn write)"),
            Invalid::BadLength(n) => write!(f, "impossible record length {n}"),
            Invalid::BadChecksum => f.write_str("checksum mismatch"),
            Invalid::BadPayload(why) => write!(f, "malformed record: {why}"),
            Invalid::Unknown(what) => write!(f, "{what}, which this version of costplane does not know"),
        }
    }
}

/// Reads the record at the start of `bytes`: the record and its total size.
pub fn decode(bytes: &[u8]) -> Result<(Record<'_>, usize), Invalid> {
    if bytes.len() < HEADER_BYTES {
        return Err(Invalid::Torn);
    }
    let len = u32::from_le_bytes(bytes[0..4].try_into().map_err(|_| Invalid::Torn)?);
    let crc = u32::from_le_bytes(bytes[4..8].try_into().map_err(|_| Invalid::Torn)?);
    if len == 0 || len > MAX_PAYLOAD_BYTES {
        return Err(Invalid::BadLength(len));
    }
    let end = HEADER_BYTES + len as usize;
    if bytes.len() < end {
        return Err(Invalid::Torn);
    }
    let payload = &bytes[HEADER_BYTES..end];
    if crc32fast::hash(payload) != crc {
        return Err(Invalid::BadChecksum);
    }
    Ok((parse_payload(payload)?, end))
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Invalid> {
        if self.0.len() < n {
            return Err(Invalid::BadPayload("short payload"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, Invalid> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Invalid> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().map_err(|_| Invalid::BadPayload("u16"))?))
    }
    fn str(&mut self) -> Result<String, Invalid> {
        let len = self.u16()? as usize;
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }
    fn u32(&mut self) -> Result<u32, Invalid> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| Invalid::BadPayload("u32"))?))
    }
    fn u64(&mut self) -> Result<u64, Invalid> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| Invalid::BadPayload("u64"))?))
    }
}

fn parse_payload(payload: &[u8]) -> Result<Record<'_>, Invalid> {
    let mut c = Cursor(payload);
    match c.u8()? {
        kind @ (KIND_REQUEST | KIND_KEYED_REQUEST) => {
            let record_id = c.u64()?;
            let code = c.u8()?;
            let signal = signal_of(code).ok_or_else(|| Invalid::Unknown(format!("signal code {code}")))?;
            let code = c.u8()?;
            let encoding = encoding_of(code).ok_or_else(|| Invalid::Unknown(format!("encoding code {code}")))?;
            let received_ns = c.u64()? as i64;
            let tenant = c.str()?;
            let sender = if kind == KIND_KEYED_REQUEST {
                let flags = c.u8()?;
                if flags > 1 {
                    return Err(Invalid::Unknown(format!("sender flags {flags:#04x}")));
                }
                let tenant = c.str()?;
                let project = Some(c.str()?).filter(|p| !p.is_empty());
                Some(Sender { tenant, project, trust_provided_cost: flags & 1 == 1 })
            } else {
                None
            };
            Ok(Record::Request { record_id, meta: RequestMeta { signal, encoding, received_ns, tenant, sender }, body: c.0 })
        }
        KIND_INTENT => {
            let batch_id = c.u64()?;
            let n = c.u32()? as usize;
            if c.0.len() != n * 8 {
                return Err(Invalid::BadPayload("intent length"));
            }
            let records = (0..n).map(|_| c.u64()).collect::<Result<_, _>>()?;
            Ok(Record::Intent { batch_id, records })
        }
        KIND_COMMIT => Ok(Record::Commit { batch_id: c.u64()? }),
        kind => Err(Invalid::Unknown(format!("record kind {kind}"))),
    }
}

/// Cheap checks of a would-be record header at the start of `bytes`,
/// before its CRC is computed: the length fits in `bytes`, the kind is
/// known, and the kind's fixed fields hold.
fn plausible(bytes: &[u8]) -> bool {
    if bytes.len() < HEADER_BYTES + 9 {
        return false;
    }
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    if len < 9 || len > bytes.len() - HEADER_BYTES {
        return false;
    }
    let p = &bytes[HEADER_BYTES..];
    match p[0] {
        KIND_REQUEST | KIND_KEYED_REQUEST => len >= 21 && signal_of(p[9]).is_some() && encoding_of(p[10]).is_some(),
        KIND_INTENT => len >= 13 && u32::from_le_bytes([p[9], p[10], p[11], p[12]]) as usize * 8 + 13 == len,
        KIND_COMMIT => len == 9,
        _ => false,
    }
}

/// Where the next whole record after a bad one at `at` begins, if any:
/// see the module's "Resynchronising after corruption".
pub fn resync(bytes: &[u8], at: usize) -> Option<usize> {
    let whole = |pos: usize| pos > at && pos < bytes.len() && plausible(&bytes[pos..]) && decode(&bytes[pos..]).is_ok();
    if bytes.len() >= at + HEADER_BYTES {
        let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let end = at.saturating_add(HEADER_BYTES).saturating_add(len);
        // Where the bad record says it ends, a record of a newer version
        // counts as a boundary too (the reader then refuses it).
        if end > at && end < bytes.len() && matches!(decode(&bytes[end..]), Ok(_) | Err(Invalid::Unknown(_))) {
            return Some(end);
        }
    }
    (at + 1..bytes.len()).find(|&pos| whole(pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> RequestMeta {
        RequestMeta {
            signal: Signal::Logs,
            encoding: Encoding::Json,
            received_ns: 1_700_000_000_000_000_000,
            tenant: "acme".into(),
            sender: None,
        }
    }

    #[test]
    fn a_keyed_request_keeps_its_sender_and_an_unkeyed_one_its_old_bytes() {
        let keyed = RequestMeta {
            sender: Some(Sender { tenant: "globex".into(), project: Some("web".into()), trust_provided_cost: true }),
            ..meta()
        };
        let mut bytes = encode_request(3, &keyed, b"xy");
        bytes.extend_from_slice(b"xy");
        assert_eq!(decode(&bytes).unwrap().0, Record::Request { record_id: 3, meta: keyed.clone(), body: b"xy" });
        let no_project =
            RequestMeta { sender: Some(Sender { project: None, trust_provided_cost: false, ..keyed.sender.unwrap() }), ..meta() };
        let mut bytes = encode_request(4, &no_project, b"");
        assert_eq!(decode(&bytes).unwrap().0, Record::Request { record_id: 4, meta: no_project, body: b"" });
        // Kind 1, as written before senders existed: kind byte, id, signal
        // (2 = logs), encoding (2 = json), time, tenant "acme", body.
        bytes = encode_request(7, &meta(), b"{}");
        bytes.extend_from_slice(b"{}");
        let mut old = vec![1u8];
        old.extend_from_slice(&7u64.to_le_bytes());
        old.extend_from_slice(&[2, 2]);
        old.extend_from_slice(&1_700_000_000_000_000_000i64.to_le_bytes());
        old.extend_from_slice(&4u16.to_le_bytes());
        old.extend_from_slice(b"acme{}");
        assert_eq!(&bytes[HEADER_BYTES..], &old[..]);
        // A tenant longer than the length field is cut on a character boundary.
        let long = RequestMeta { tenant: "é".repeat(40_000), ..meta() };
        let bytes = encode_request(8, &long, b"");
        let Record::Request { meta: m, .. } = decode(&bytes).unwrap().0 else { panic!() };
        assert_eq!(m.tenant.len(), 65_534);
    }

    #[test]
    fn every_kind_round_trips() {
        let mut bytes = encode_request(7, &meta(), b"{\"resourceLogs\":[]}");
        bytes.extend_from_slice(b"{\"resourceLogs\":[]}");
        bytes.extend(encode_intent(99, &[7, 8]));
        bytes.extend(encode_commit(99));
        let (r, n) = decode(&bytes).unwrap();
        assert_eq!(r, Record::Request { record_id: 7, meta: meta(), body: b"{\"resourceLogs\":[]}" });
        let (r, m) = decode(&bytes[n..]).unwrap();
        assert_eq!(r, Record::Intent { batch_id: 99, records: vec![7, 8] });
        let (r, k) = decode(&bytes[n + m..]).unwrap();
        assert_eq!(r, Record::Commit { batch_id: 99 });
        assert_eq!(n + m + k, bytes.len());
    }

    #[test]
    fn torn_and_flipped_records_are_refused() {
        let mut bytes = encode_request(1, &meta(), b"body");
        bytes.extend_from_slice(b"body");
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]).unwrap_err(), Invalid::Torn, "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert_eq!(decode(&flipped).unwrap_err(), Invalid::BadChecksum);
        let mut huge = bytes;
        huge[3] = 0xff;
        assert!(matches!(decode(&huge).unwrap_err(), Invalid::BadLength(_)));
    }

    #[test]
    fn an_unknown_kind_or_code_with_a_good_checksum_is_unknown_not_corrupt() {
        let mut future = vec![9u8];
        future.extend_from_slice(&1u64.to_le_bytes());
        assert_eq!(decode(&frame(future, &[])).unwrap_err(), Invalid::Unknown("record kind 9".into()));
        let mut bytes = encode_request(1, &meta(), b"");
        bytes[HEADER_BYTES + 9] = 4; // a signal code from the future
        let crc = crc32fast::hash(&bytes[HEADER_BYTES..]);
        bytes[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&bytes).unwrap_err(), Invalid::Unknown("signal code 4".into()));
        // Without a good checksum the same bytes are corruption.
        bytes[5] ^= 1;
        assert_eq!(decode(&bytes).unwrap_err(), Invalid::BadChecksum);
    }

    #[test]
    fn resync_finds_the_next_record_after_a_bad_one() {
        let mut bytes = encode_request(1, &meta(), b"first body");
        bytes.extend_from_slice(b"first body");
        let second = bytes.len();
        bytes.extend(encode_request(2, &meta(), b"second"));
        bytes.extend_from_slice(b"second");
        let third = bytes.len();
        bytes.extend(encode_intent(5, &[1, 2]));
        let fourth = bytes.len();
        bytes.extend(encode_commit(5));

        // A flipped payload bit: the length still says where the next one is.
        let mut flipped = bytes.clone();
        flipped[second + HEADER_BYTES + 12] ^= 0x10;
        assert_eq!(decode(&flipped[second..]).unwrap_err(), Invalid::BadChecksum);
        assert_eq!(resync(&flipped, second), Some(third));
        // A broken length: found by scanning.
        let mut broken = bytes.clone();
        broken[second..second + 4].copy_from_slice(&0x00ff_ffffu32.to_le_bytes());
        assert_eq!(resync(&broken, second), Some(third));
        // Garbage over two records: the scan skips to the commit.
        let mut garbage = bytes.clone();
        for (i, b) in garbage[second..fourth].iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        assert_eq!(resync(&garbage, second), Some(fourth));
        // Nothing whole after a bad tail.
        assert_eq!(resync(&bytes[..fourth + 3], fourth), None);
    }
}
