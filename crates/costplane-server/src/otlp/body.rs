//! Reading request bodies within the in-flight budget and the size limit.
//!
//! Bodies are read frame by frame. Memory is reserved before it is allocated
//! (see [`super::inflight`]): the announced size up front, then each growth of
//! the (decompressed) buffer. gzip is inflated as the compressed frames
//! arrive (zstd and deflate likewise), so the compressed body is never held
//! whole.
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
use flate2::write::{MultiGzDecoder, ZlibDecoder};
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

/// Says why data could not be inflated (the protocol's own wording), given
/// the encoding's name.
pub(crate) type NotValid = fn(&'static str, std::io::Error) -> ApiError;

/// How a body or message is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    /// HTTP's `deflate`: the zlib format (RFC 9110 §8.4.1.2).
    Deflate,
    Zstd,
}

impl Compression {
    /// The encoding named by `Content-Encoding` or `grpc-encoding`.
    pub(crate) fn parse(name: &str) -> Option<Compression> {
        match name.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Some(Compression::None),
            "gzip" | "x-gzip" => Some(Compression::Gzip),
            "deflate" => Some(Compression::Deflate),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// zstd frames may ask for a window of up to 2^this bytes: 16 MiB, above
/// what encoders use by default (8 MiB at most below `--long`), so a hostile
/// frame cannot make the decoder allocate the format's 2 GiB maximum.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;

type ZstdDecoder = zstd::stream::write::Decoder<'static, ReservedBuf>;

/// Collects a body, inflating it on the way when it is compressed. Every
/// decoder writes into a [`ReservedBuf`], so the decompressed size is
/// bounded and reserved whatever the codec.
pub(crate) enum Sink {
    Plain(ReservedBuf),
    Gzip(Box<MultiGzDecoder<ReservedBuf>>, NotValid),
    Deflate(Box<ZlibDecoder<ReservedBuf>>, NotValid),
    Zstd(Box<ZstdDecoder>, NotValid),
}

impl Sink {
    pub(crate) fn new(compression: Compression, buf: ReservedBuf, not_valid: NotValid) -> Result<Sink, ApiError> {
        Ok(match compression {
            Compression::None => Sink::Plain(buf),
            Compression::Gzip => Sink::Gzip(Box::new(MultiGzDecoder::new(buf)), not_valid),
            Compression::Deflate => Sink::Deflate(Box::new(ZlibDecoder::new(buf)), not_valid),
            Compression::Zstd => {
                let mut raw = zstd::stream::raw::Decoder::new().map_err(|e| not_valid("zstd", e))?;
                raw.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(ZSTD_WINDOW_LOG_MAX)).map_err(|e| not_valid("zstd", e))?;
                Sink::Zstd(Box::new(ZstdDecoder::with_decoder(buf, raw)), not_valid)
            }
        })
    }

    pub(crate) fn write(&mut self, data: &[u8]) -> Result<(), ApiError> {
        // A decoder's io::Error only says that the buffer refused; the
        // buffer keeps the reason (too large, over budget).
        fn fail(buf: &mut ReservedBuf, name: &'static str, not_valid: NotValid, e: std::io::Error) -> ApiError {
            buf.failure.take().unwrap_or_else(|| not_valid(name, e))
        }
        match self {
            Sink::Plain(buf) => buf.push(data),
            Sink::Gzip(dec, nv) => dec.write_all(data).map_err(|e| fail(dec.get_mut(), "gzip", *nv, e)),
            Sink::Deflate(dec, nv) => dec.write_all(data).map_err(|e| fail(dec.get_mut(), "deflate", *nv, e)),
            Sink::Zstd(dec, nv) => dec.write_all(data).map_err(|e| fail(dec.get_mut(), "zstd", *nv, e)),
        }
    }

    pub(crate) fn finish(self) -> Result<Vec<u8>, ApiError> {
        match self {
            Sink::Plain(buf) => Ok(buf.into_vec()),
            Sink::Gzip(mut dec, nv) => {
                dec.try_finish().map_err(|e| dec.get_mut().failure.take().unwrap_or_else(|| nv("gzip", e)))?;
                (*dec).finish().map(ReservedBuf::into_vec).map_err(|e| nv("gzip", e))
            }
            Sink::Deflate(mut dec, nv) => {
                dec.try_finish().map_err(|e| dec.get_mut().failure.take().unwrap_or_else(|| nv("deflate", e)))?;
                (*dec).finish().map(ReservedBuf::into_vec).map_err(|e| nv("deflate", e))
            }
            Sink::Zstd(mut dec, nv) => {
                // `finish` fails on a truncated frame.
                dec.do_finish().map_err(|e| dec.get_mut().failure.take().unwrap_or_else(|| nv("zstd", e)))?;
                Ok(dec.into_inner().into_vec())
            }
        }
    }
}

fn http_not_valid(name: &'static str, e: std::io::Error) -> ApiError {
    ApiError::new(ErrorCode::InvalidArgument, format!("the body is not valid {name} (Content-Encoding: {name}): {e}"))
}

/// The body's compression (`Content-Encoding`); 415 for unknown encodings.
pub(crate) fn compression_of(headers: &HeaderMap) -> Result<Compression, ApiError> {
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("");
    Compression::parse(encoding).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("unsupported Content-Encoding '{}'; use gzip, zstd, deflate or none", encoding.trim()),
        )
    })
}

/// Reads an OTLP/HTTP body (decompressed), reserving its memory as it goes
/// and enforcing `limit` on the compressed and the decompressed size.
pub(crate) async fn read_http_body(
    headers: &HeaderMap,
    body: &mut Body,
    limit: usize,
    reservation: &Reservation,
) -> Result<Vec<u8>, ApiError> {
    let compression = compression_of(headers)?;
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
    let mut sink = Sink::new(compression, buf, http_not_valid)?;
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
        let mut sink = Sink::new(Compression::Gzip, ReservedBuf::new(limit.reservation(), 2 * MIB, 0, "body"), http_not_valid).unwrap();
        for chunk in packed.chunks(1000) {
            sink.write(chunk).unwrap();
        }
        assert_eq!(sink.finish().unwrap(), data);

        let mut small = Sink::new(Compression::Gzip, ReservedBuf::new(limit.reservation(), MIB, 0, "body"), http_not_valid).unwrap();
        let err = packed.chunks(1000).try_for_each(|c| small.write(c)).unwrap_err();
        assert!(err.message.contains("after decompression"), "{}", err.message);

        let mut bad = Sink::new(Compression::Gzip, ReservedBuf::new(limit.reservation(), MIB, 0, "body"), http_not_valid).unwrap();
        let err = bad.write(b"definitely not gzip").and_then(|()| bad.finish().map(drop)).unwrap_err();
        assert!(err.message.contains("not valid gzip"), "{}", err.message);

        // Two members, as `cat a.gz b.gz` makes them.
        let mut two = gzip(b"hello ");
        two.extend(gzip(b"world"));
        let mut sink = Sink::new(Compression::Gzip, ReservedBuf::new(limit.reservation(), MIB, 0, "body"), http_not_valid).unwrap();
        sink.write(&two).unwrap();
        assert_eq!(sink.finish().unwrap(), b"hello world");
        drop(small);
        assert_eq!(limit.in_flight_bytes(), 0);
    }

    #[test]
    fn zstd_and_deflate_inflate_within_the_limit() {
        let limit = InflightLimit::new(10 * MIB);
        let data: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let zstd_packed = zstd::encode_all(&data[..], 3).unwrap();
        let mut deflate = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        deflate.write_all(&data).unwrap();
        let deflate_packed = deflate.finish().unwrap();
        for (c, packed) in [(Compression::Zstd, &zstd_packed), (Compression::Deflate, &deflate_packed)] {
            let mut sink = Sink::new(c, ReservedBuf::new(limit.reservation(), 2 * MIB, 0, "body"), http_not_valid).unwrap();
            for chunk in packed.chunks(777) {
                sink.write(chunk).unwrap();
            }
            assert_eq!(sink.finish().unwrap(), data, "{c:?}");
            // 1.2 MB inflated does not fit a 1 MiB limit: refused as too large.
            let mut small = Sink::new(c, ReservedBuf::new(limit.reservation(), MIB, 0, "body"), http_not_valid).unwrap();
            let err = packed.chunks(777).try_for_each(|ch| small.write(ch)).and_then(|()| small.finish().map(drop)).unwrap_err();
            assert_eq!(err.code, ErrorCode::PayloadTooLarge, "{c:?}: {}", err.message);
            // Cut short: invalid, never a silently shorter body.
            let mut cut = Sink::new(c, ReservedBuf::new(limit.reservation(), 2 * MIB, 0, "body"), http_not_valid).unwrap();
            let err = cut.write(&packed[..packed.len() / 2]).and_then(|()| cut.finish().map(drop)).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidArgument, "{c:?}: {}", err.message);
        }
        let mut bad = Sink::new(Compression::Zstd, ReservedBuf::new(limit.reservation(), MIB, 0, "body"), http_not_valid).unwrap();
        let err = bad.write(b"definitely not zstd").and_then(|()| bad.finish().map(drop)).unwrap_err();
        assert!(err.message.contains("not valid zstd (Content-Encoding: zstd)"), "{}", err.message);
        assert_eq!(limit.in_flight_bytes(), 0);
    }

    #[test]
    fn encodings_are_named_as_http_and_grpc_name_them() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::CONTENT_ENCODING, HeaderValue::from_str(v).unwrap());
            compression_of(&m)
        };
        assert_eq!(compression_of(&HeaderMap::new()).unwrap(), Compression::None);
        assert_eq!(h("ZSTD").unwrap(), Compression::Zstd);
        assert_eq!(h("deflate").unwrap(), Compression::Deflate);
        assert_eq!(h(" gzip ").unwrap(), Compression::Gzip);
        let err = h("br").unwrap_err();
        assert_eq!(err.code, ErrorCode::UnsupportedMediaType);
        assert!(err.message.contains("use gzip, zstd, deflate or none"), "{}", err.message);
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
