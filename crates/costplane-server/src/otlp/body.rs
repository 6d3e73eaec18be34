//! Reading request bodies within the in-flight budget and the size limit.
//!
//! Bodies are read frame by frame. Memory is reserved before it is allocated
//! (see [`super::inflight`]): the announced size up front, then each growth of
//! the (decompressed) buffer. gzip is inflated as the compressed frames
//! arrive, so the compressed body is never held whole.
//!
//! An HTTP request that is answered before its body was read (refused, too
//! large, unsupported) has the rest of its body read and thrown away, up to a
//! bound, before the answer goes out: clients such as Python's urllib send the
//! whole body before they read a response, and would see a broken pipe (and
//! retry) instead of the final answer if the server closed early.

use std::io::Write;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use flate2::write::MultiGzDecoder;
use http::{header, HeaderMap, HeaderValue};
use http_body::Body as _;
use http_body_util::BodyExt;

use super::inflight::Reservation;
use crate::error::{ApiError, ErrorCode};

const MIB: usize = 1024 * 1024;

/// The first allocation of a buffer that grows without a size hint.
const MIN_GROWTH: usize = 64 * 1024;

/// How long reading and discarding an unwanted body may take.
const DISCARD_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes of an unwanted body read (and thrown away, never buffered)
/// so that the client sees the answer: 4 × `otlp.max_body_mib`, at least
/// 64 MiB. A larger rest is not read: the answer carries
/// `Connection: close` and the connection closes.
pub(crate) fn discard_limit(max_body_bytes: usize) -> usize {
    max_body_bytes.saturating_mul(4).max(64 * MIB)
}

/// The answer to a request over `otlp.max_body_mib`.
pub(crate) fn too_large(what: &str, limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!(
            "the request {what} is larger than the limit of {limit} bytes (after decompression; otlp.max_body_mib); \
             send smaller batches"
        ),
    )
}

/// A growing buffer whose capacity is reserved before it is allocated and
/// which never grows past `limit` bytes.
pub(crate) struct ReservedBuf {
    buf: Vec<u8>,
    reservation: Reservation,
    /// Bytes of the reservation this buffer may fill (at least its capacity).
    credit: usize,
    limit: usize,
    what: &'static str,
    /// Why the last write failed (the `io::Error` a decoder passes on only
    /// says that it did).
    failure: Option<ApiError>,
}

impl ReservedBuf {
    /// `credit`: bytes already reserved for this buffer (a size hint); that
    /// much is allocated at once.
    pub(crate) fn new(reservation: Reservation, limit: usize, credit: usize, what: &'static str) -> Self {
        let credit = credit.min(limit);
        ReservedBuf { buf: Vec::with_capacity(credit), reservation, credit, limit, what, failure: None }
    }

    pub(crate) fn push(&mut self, data: &[u8]) -> Result<(), ApiError> {
        let needed = self.buf.len().saturating_add(data.len());
        if needed > self.limit {
            return Err(too_large(self.what, self.limit));
        }
        if needed > self.buf.capacity() {
            let target = self.buf.capacity().saturating_mul(2).max(needed).max(MIN_GROWTH).min(self.limit);
            if target > self.credit {
                self.reservation.reserve(target - self.credit)?;
                self.credit = target;
            }
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

impl Write for ReservedBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self.push(data) {
            Ok(()) => Ok(data.len()),
            Err(e) => {
                self.failure = Some(e);
                Err(std::io::Error::other("the decompressed request does not fit"))
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Says why data could not be inflated (the protocol's own wording).
pub(crate) type NotGzip = fn(std::io::Error) -> ApiError;

/// Collects a body, inflating it on the way when it is gzip.
pub(crate) enum Sink {
    Plain(ReservedBuf),
    Gzip(Box<MultiGzDecoder<ReservedBuf>>, NotGzip),
}

impl Sink {
    pub(crate) fn gzip(buf: ReservedBuf, not_gzip: NotGzip) -> Sink {
        Sink::Gzip(Box::new(MultiGzDecoder::new(buf)), not_gzip)
    }

    pub(crate) fn write(&mut self, data: &[u8]) -> Result<(), ApiError> {
        match self {
            Sink::Plain(buf) => buf.push(data),
            Sink::Gzip(dec, not_gzip) => dec.write_all(data).map_err(|e| dec.get_mut().failure.take().unwrap_or_else(|| not_gzip(e))),
        }
    }

    pub(crate) fn finish(self) -> Result<Vec<u8>, ApiError> {
        match self {
            Sink::Plain(buf) => Ok(buf.into_vec()),
            Sink::Gzip(mut dec, not_gzip) => {
                dec.try_finish().map_err(|e| dec.get_mut().failure.take().unwrap_or_else(|| not_gzip(e)))?;
                (*dec).finish().map(ReservedBuf::into_vec).map_err(not_gzip)
            }
        }
    }
}

fn http_not_gzip(e: std::io::Error) -> ApiError {
    ApiError::new(ErrorCode::InvalidArgument, format!("the body is not valid gzip (Content-Encoding: gzip): {e}"))
}

/// Whether the body is gzip (`Content-Encoding`); 415 for other encodings.
pub(crate) fn is_gzip(headers: &HeaderMap) -> Result<bool, ApiError> {
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("").trim().to_ascii_lowercase();
    match encoding.as_str() {
        "" | "identity" => Ok(false),
        "gzip" => Ok(true),
        other => Err(ApiError::new(ErrorCode::UnsupportedMediaType, format!("unsupported Content-Encoding '{other}'; use gzip or none"))),
    }
}

/// Reads an OTLP/HTTP body (decompressed), reserving its memory as it goes
/// and enforcing `limit` on the compressed and the decompressed size.
pub(crate) async fn read_http_body(
    headers: &HeaderMap,
    body: &mut Body,
    limit: usize,
    reservation: &Reservation,
) -> Result<Vec<u8>, ApiError> {
    let gzip = is_gzip(headers)?;
    // Content-Length: refuse an oversized body, or reserve the whole body,
    // before reading a byte.
    let hint = body.size_hint().exact().map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    if let Some(n) = hint {
        if n > limit {
            return Err(too_large("body", limit));
        }
        reservation.reserve(n)?;
    }
    // The reserved hint is the output buffer's first allocation: the whole
    // body, or the compressed size as a start for the inflated one.
    let buf = ReservedBuf::new(reservation.clone(), limit, hint.unwrap_or(0), "body");
    let mut sink = if gzip { Sink::gzip(buf, http_not_gzip) } else { Sink::Plain(buf) };
    let mut received = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::new(ErrorCode::InvalidArgument, format!("reading the request body failed: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        received = received.saturating_add(data.len());
        if received > limit {
            return Err(too_large("body", limit));
        }
        sink.write(&data)?;
    }
    sink.finish()
}

/// Sends `resp` only after what is left of the request body has been read
/// and thrown away (up to [`discard_limit`]); when the rest is not read,
/// the answer says `Connection: close`.
pub(crate) async fn after_discarding_the_rest(mut resp: Response, body: &mut Body, max_body_bytes: usize) -> Response {
    if body.is_end_stream() {
        return resp;
    }
    if !discard(body, discard_limit(max_body_bytes) as u64).await {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Reads and drops the rest of `body`, holding one frame at a time. True
/// when the body ended within `bound` bytes and [`DISCARD_TIMEOUT`].
async fn discard(body: &mut Body, bound: u64) -> bool {
    if body.size_hint().lower() > bound {
        return false; // announced larger than we would read: answer now
    }
    let deadline = tokio::time::Instant::now() + DISCARD_TIMEOUT;
    let mut seen = 0u64;
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    seen = seen.saturating_add(data.len() as u64);
                    if seen > bound {
                        return false;
                    }
                }
            }
            Ok(None) => return true,
            Ok(Some(Err(_))) | Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::inflight::InflightLimit;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn buffers_reserve_their_capacity_before_growing() {
        let limit = InflightLimit::new(10 * MIB);
        let r = limit.reservation();
        let mut buf = ReservedBuf::new(r.clone(), 4 * MIB, 0, "body");
        buf.push(&[1; 1000]).unwrap();
        assert_eq!(r.held_bytes(), MIN_GROWTH);
        for _ in 0..100 {
            buf.push(&[2; 1000]).unwrap();
        }
        assert!(r.held_bytes() >= buf.buf.capacity(), "{} < {}", r.held_bytes(), buf.buf.capacity());
        let err = buf.push(&vec![0; 4 * MIB]).unwrap_err();
        assert_eq!(err.code, ErrorCode::PayloadTooLarge);
        assert!(err.message.contains("larger than the limit of 4194304 bytes"), "{}", err.message);
    }

    #[test]
    fn a_hint_is_used_before_reserving_more() {
        let limit = InflightLimit::new(10 * MIB);
        let r = limit.reservation();
        r.reserve(5000).unwrap();
        let mut buf = ReservedBuf::new(r.clone(), MIB, 5000, "body");
        buf.push(&[1; 5000]).unwrap();
        assert_eq!(r.held_bytes(), 5000);
    }

    #[test]
    fn gzip_inflates_within_the_limit_and_says_why_it_stops() {
        let limit = InflightLimit::new(10 * MIB);
        let data: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let packed = gzip(&data);
        let mut sink = Sink::gzip(ReservedBuf::new(limit.reservation(), 2 * MIB, 0, "body"), http_not_gzip);
        for chunk in packed.chunks(1000) {
            sink.write(chunk).unwrap();
        }
        assert_eq!(sink.finish().unwrap(), data);

        let mut small = Sink::gzip(ReservedBuf::new(limit.reservation(), MIB, 0, "body"), http_not_gzip);
        let err = packed.chunks(1000).try_for_each(|c| small.write(c)).unwrap_err();
        assert!(err.message.contains("after decompression"), "{}", err.message);

        let mut bad = Sink::gzip(ReservedBuf::new(limit.reservation(), MIB, 0, "body"), http_not_gzip);
        let err = bad.write(b"definitely not gzip").and_then(|()| bad.finish().map(drop)).unwrap_err();
        assert!(err.message.contains("not valid gzip"), "{}", err.message);

        // Two members, as `cat a.gz b.gz` makes them.
        let mut two = gzip(b"hello ");
        two.extend(gzip(b"world"));
        let mut sink = Sink::gzip(ReservedBuf::new(limit.reservation(), MIB, 0, "body"), http_not_gzip);
        sink.write(&two).unwrap();
        assert_eq!(sink.finish().unwrap(), b"hello world");
        drop(small);
        assert_eq!(limit.in_flight_bytes(), 0);
    }

    #[test]
    fn an_over_budget_growth_is_refused_as_unavailable() {
        let limit = InflightLimit::new(200 * 1024);
        let _other = {
            let r = limit.reservation();
            r.reserve(100 * 1024).unwrap();
            r
        };
        let mut buf = ReservedBuf::new(limit.reservation(), MIB, 0, "body");
        buf.push(&[0; 1000]).unwrap(); // 64 KiB fits
        let err = buf.push(&[0; 64 * 1024]).unwrap_err();
        assert_eq!(err.code, ErrorCode::Unavailable);
    }
}
