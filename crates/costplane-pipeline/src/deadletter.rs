//! The dead-letter area: requests the store refused as invalid, kept so
//! nothing accepted disappears, to be replayed once the cause is fixed.
//!
//! Format: one file per request, `DATA_DIR/dead-letter/<accepted ns>-<record>.otlp`:
//! a first line of JSON ([`DeadLetterHeader`]: signal, encoding, tenant,
//! sender, times, the store's error, item count), then the request body
//! exactly as it was accepted (decompressed OTLP, protobuf or JSON), so
//! replaying it is an ordinary OTLP/HTTP export. Files are written under a
//! temporary name, synced, then renamed: a reader never sees half a file.
//!
//! The sender ([`RecordedSender`]) is what the ingest key decided when the
//! request was accepted: the tenant its rows belong to and whether the costs
//! it carries are believed. The body's own `tenant.id` is not that, so a
//! replay must go out as this sender (its key), never as the body says.
//! Files written before senders were kept have none; they still read.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use costplane_telemetry::{Encoding, Signal};
use serde::{Deserialize, Serialize};

use crate::buffer::{RequestMeta, Sender};

/// Why a request was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// The store refused the request's data.
    Rejected,
    /// `retry_max_elapsed` was set and ran out.
    RetryBudget,
}

impl DeadLetterReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Rejected => "rejected",
            DeadLetterReason::RetryBudget => "retry_budget",
        }
    }
}

/// Who sent a dead-lettered request, as the server knew it on acceptance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ingest", rename_all = "snake_case")]
pub enum RecordedSender {
    /// Ingest was open (no keys configured): the tenants the body named
    /// stood, and so did the costs it carried.
    Open,
    /// An ingest key: its tenant (and project) replaced the body's claim,
    /// and provided costs counted only if the key was trusted with them.
    Key { tenant: String, project: Option<String>, trust_provided_cost: bool },
}

impl RecordedSender {
    pub fn of(sender: Option<&Sender>) -> RecordedSender {
        match sender {
            None => RecordedSender::Open,
            Some(s) => {
                RecordedSender::Key { tenant: s.tenant.clone(), project: s.project.clone(), trust_provided_cost: s.trust_provided_cost }
            }
        }
    }

    /// The key's pinning, for a request that came with a key.
    pub fn key(&self) -> Option<Sender> {
        match self {
            RecordedSender::Open => None,
            RecordedSender::Key { tenant, project, trust_provided_cost } => {
                Some(Sender { tenant: tenant.clone(), project: project.clone(), trust_provided_cost: *trust_provided_cost })
            }
        }
    }
}

/// The first line of a dead-letter file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterHeader {
    pub signal: String,
    /// `protobuf` or `json`: the body's encoding.
    pub encoding: String,
    pub tenant: String,
    /// Who sent it; `None` in files written before senders were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<RecordedSender>,
    /// When the request was accepted, RFC 3339.
    pub received_at: String,
    pub dead_lettered_at: String,
    pub reason: DeadLetterReason,
    /// The store's error.
    pub error: String,
    /// Items (spans, log records, data points) in the request.
    pub items: u64,
    pub body_bytes: u64,
}

impl DeadLetterHeader {
    pub fn signal(&self) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.as_str() == self.signal)
    }

    pub fn content_type(&self) -> &'static str {
        if self.encoding == "json" {
            Encoding::Json.content_type()
        } else {
            Encoding::Protobuf.content_type()
        }
    }
}

/// One file of the dead-letter area.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub path: PathBuf,
    pub header: DeadLetterHeader,
}

fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Writes one dead-letter file; returns its path.
pub fn write(
    dir: &Path,
    record_id: u64,
    meta: &RequestMeta,
    body: &[u8],
    reason: DeadLetterReason,
    error: &str,
    items: u64,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let now = chrono::Utc::now();
    let header = DeadLetterHeader {
        signal: meta.signal.as_str().to_owned(),
        encoding: match meta.encoding {
            Encoding::Protobuf => "protobuf".to_owned(),
            Encoding::Json => "json".to_owned(),
        },
        tenant: meta.tenant.clone(),
        sender: Some(RecordedSender::of(meta.sender.as_ref())),
        received_at: rfc3339(meta.received_ns),
        dead_lettered_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        reason,
        error: error.to_owned(),
        items,
        body_bytes: body.len() as u64,
    };
    // Named by what identifies the request, not by when it was refused: a
    // replay after a crash that dead-letters it again rewrites the same file.
    let name = format!("{:020}-{record_id:016x}.otlp", meta.received_ns.max(0));
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    serde_json::to_writer(&mut f, &header)?;
    f.write_all(b"\n")?;
    f.write_all(body)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, &path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(path)
}

/// Reads a dead-letter file's header and body.
pub fn read(path: &Path) -> std::io::Result<(DeadLetterHeader, Vec<u8>)> {
    let mut reader = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let header: DeadLetterHeader = serde_json::from_str(line.trim_end())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: bad header: {e}", path.display())))?;
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut body)?;
    Ok((header, body))
}

/// Every dead-letter file in `dir`, oldest first (a missing dir is empty).
pub fn list(dir: &Path) -> std::io::Result<Vec<DeadLetter>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut paths: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "otlp")).collect();
    paths.sort();
    paths.into_iter().map(|path| read(&path).map(|(header, _)| DeadLetter { path, header })).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_keeps_body_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let meta = RequestMeta { signal: Signal::Logs, encoding: Encoding::Json, received_ns: 0, tenant: "acme".into(), sender: None };
        let body = b"{\"resourceLogs\":[]}\n second line";
        let path = write(dir.path(), 42, &meta, body, DeadLetterReason::Rejected, "Code: 469. constraint", 3).unwrap();
        let listed = list(dir.path()).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].path, path);
        let h = &listed[0].header;
        assert_eq!((h.tenant.as_str(), h.signal(), h.items, h.reason), ("acme", Some(Signal::Logs), 3, DeadLetterReason::Rejected));
        assert_eq!(h.content_type(), "application/json");
        assert_eq!(h.received_at, "1970-01-01T00:00:00.000Z");
        assert_eq!(read(&path).unwrap().1, body.to_vec());
        assert_eq!(h.sender, Some(RecordedSender::Open));
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_key_that_sent_a_request_is_kept_and_old_files_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let globex = Sender { tenant: "globex".into(), project: Some("web".into()), trust_provided_cost: true };
        let meta = RequestMeta {
            signal: Signal::Traces,
            encoding: Encoding::Protobuf,
            received_ns: 1,
            tenant: "globex".into(),
            sender: Some(globex.clone()),
        };
        let path = write(dir.path(), 7, &meta, b"body", DeadLetterReason::Rejected, "refused", 1).unwrap();
        let (header, _) = read(&path).unwrap();
        assert_eq!(header.sender.as_ref().and_then(RecordedSender::key), Some(globex));
        // A header as older versions wrote it: no sender.
        let text = std::fs::read_to_string(&path).unwrap();
        let (line, body) = text.split_once('\n').unwrap();
        let mut old: serde_json::Value = serde_json::from_str(line).unwrap();
        old.as_object_mut().unwrap().remove("sender").unwrap();
        std::fs::write(&path, format!("{old}\n{body}")).unwrap();
        let (header, body) = read(&path).unwrap();
        assert_eq!((header.sender, header.tenant.as_str(), body.as_slice()), (None, "globex", &b"body"[..]));
    }
}
