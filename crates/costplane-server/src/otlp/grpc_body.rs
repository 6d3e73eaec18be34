//! The OTLP/gRPC request body as tonic reads it, within the in-flight budget
//! and the size limit.
//!
//! tonic buffers a whole message before the service runs, so limits are
//! enforced here, on the frames, as they arrive. Each gRPC message starts
//! with a 5-byte prefix (compressed flag, length):
//!
//! - a message longer than `otlp.max_body_mib` is answered
//!   `RESOURCE_EXHAUSTED` at its prefix, before any of it is buffered (tonic
//!   would answer `OUT_OF_RANGE`, which OTLP clients retry);
//! - an uncompressed message reserves its length at its prefix (tonic
//!   allocates that much on reading the prefix) and passes through untouched;
//! - a gzip or zstd message is inflated here, frame by frame, into a buffer that
//!   reserves as it grows and stops at the limit (`RESOURCE_EXHAUSTED`), and
//!   is handed to tonic uncompressed; its copy in tonic's buffer is reserved
//!   too.
//!
//! Errors are yielded as [`tonic::Status`]; tonic answers with that status.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http_body::Frame;
use tonic::Status;

use super::body::{too_large, Compression, ReservedBuf, Sink};
use super::inflight::Reservation;
use crate::error::{ApiError, ErrorCode};

const PREFIX: usize = 5;

enum Message {
    /// Reading a message prefix.
    Prefix { buf: [u8; PREFIX], have: usize },
    /// Passing `remaining` bytes of an uncompressed message through.
    Plain { remaining: usize },
    /// Inflating `remaining` more compressed bytes.
    Compressed { remaining: usize, sink: Sink },
}

/// Wraps a gRPC request body; see the module documentation.
pub struct LimitedBody<B> {
    inner: Pin<Box<B>>,
    reservation: Reservation,
    limit: usize,
    /// `grpc-encoding`: how compressed messages are compressed.
    compression: Compression,
    message: Message,
    out: VecDeque<Bytes>,
    done: bool,
}

impl<B> LimitedBody<B> {
    pub fn new(inner: B, reservation: Reservation, limit: usize, compression: Compression) -> Self {
        LimitedBody {
            inner: Box::pin(inner),
            reservation,
            limit,
            compression,
            message: Message::Prefix { buf: [0; PREFIX], have: 0 },
            out: VecDeque::new(),
            done: false,
        }
    }

    fn process(&mut self, data: Bytes) -> Result<(), Status> {
        let mut pos = 0;
        while pos < data.len() {
            let rest = data.len() - pos;
            match &mut self.message {
                Message::Prefix { buf, have } => {
                    let n = (PREFIX - *have).min(rest);
                    buf[*have..*have + n].copy_from_slice(&data[pos..pos + n]);
                    *have += n;
                    pos += n;
                    if *have == PREFIX {
                        let prefix = *buf;
                        self.start_message(prefix)?;
                    }
                }
                Message::Plain { remaining } => {
                    let n = (*remaining).min(rest);
                    self.out.push_back(data.slice(pos..pos + n));
                    *remaining -= n;
                    pos += n;
                }
                Message::Compressed { remaining, sink } => {
                    let n = (*remaining).min(rest);
                    sink.write(&data[pos..pos + n]).map_err(|e| e.to_status())?;
                    *remaining -= n;
                    pos += n;
                }
            }
            self.end_message_if_complete()?;
        }
        Ok(())
    }

    fn start_message(&mut self, prefix: [u8; PREFIX]) -> Result<(), Status> {
        let compressed = prefix[0] == 1;
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        if len > self.limit {
            return Err(too_large("message", self.limit).to_status());
        }
        if compressed && self.compression != Compression::None {
            let buf = ReservedBuf::new(self.reservation.clone(), self.limit, 0, "message");
            let sink = Sink::new(self.compression, buf, grpc_not_valid).map_err(|e| e.to_status())?;
            self.message = Message::Compressed { remaining: len, sink };
        } else {
            // tonic reserves the whole message once it has read the prefix.
            // (A compressed flag without an encoding is tonic's to refuse.)
            self.reservation.reserve(PREFIX + len).map_err(|e| e.to_status())?;
            self.out.push_back(Bytes::copy_from_slice(&prefix));
            self.message = Message::Plain { remaining: len };
        }
        Ok(())
    }

    fn end_message_if_complete(&mut self) -> Result<(), Status> {
        let complete = match &self.message {
            Message::Plain { remaining } | Message::Compressed { remaining, .. } => *remaining == 0,
            Message::Prefix { .. } => false,
        };
        if !complete {
            return Ok(());
        }
        let previous = std::mem::replace(&mut self.message, Message::Prefix { buf: [0; PREFIX], have: 0 });
        if let Message::Compressed { sink, .. } = previous {
            let message = sink.finish().map_err(|e| e.to_status())?;
            // tonic copies the message into its own buffer.
            self.reservation.reserve(PREFIX + message.len()).map_err(|e| e.to_status())?;
            let len = u32::try_from(message.len()).map_err(|_| too_large("message", self.limit).to_status())?;
            let mut prefix = [0u8; PREFIX];
            prefix[1..].copy_from_slice(&len.to_be_bytes());
            self.out.push_back(Bytes::copy_from_slice(&prefix));
            self.out.push_back(Bytes::from(message));
        }
        Ok(())
    }

    /// Bytes of a message swallowed here that tonic will never see.
    fn mid_message(&self) -> bool {
        match &self.message {
            Message::Prefix { have, .. } => *have > 0,
            Message::Plain { .. } => false, // tonic sees the truncation itself
            Message::Compressed { .. } => true,
        }
    }
}

fn grpc_not_valid(name: &'static str, e: std::io::Error) -> ApiError {
    ApiError::new(ErrorCode::InvalidArgument, format!("the message is not valid {name} (grpc-encoding: {name}): {e}"))
}

impl<B> http_body::Body for LimitedBody<B>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        loop {
            if let Some(data) = this.out.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                None => {
                    this.done = true;
                    if this.mid_message() {
                        return Poll::Ready(Some(Err(Status::invalid_argument("the request ended in the middle of a message"))));
                    }
                }
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(Status::from_error(e.into()))));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        let data = data.copy_to_bytes(data.remaining());
                        if let Err(status) = this.process(data) {
                            this.done = true;
                            this.out.clear();
                            return Poll::Ready(Some(Err(status)));
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                        }
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use http_body_util::BodyExt;

    use super::*;
    use crate::otlp::inflight::InflightLimit;

    const MIB: usize = 1024 * 1024;

    fn framed(flag: u8, message: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend((message.len() as u32).to_be_bytes());
        out.extend(message);
        out
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// Feeds `wire` in `chunk`-byte frames; returns what tonic would read.
    async fn run(wire: Vec<u8>, chunk: usize, limit: &InflightLimit, max: usize) -> Result<Vec<u8>, Status> {
        run_with(Compression::Gzip, wire, chunk, limit, max).await
    }

    async fn run_with(c: Compression, wire: Vec<u8>, chunk: usize, limit: &InflightLimit, max: usize) -> Result<Vec<u8>, Status> {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> =
            wire.chunks(chunk).map(|c| Ok(Frame::data(Bytes::copy_from_slice(c)))).collect();
        let inner = http_body_util::StreamBody::new(futures::stream::iter(frames));
        let body = LimitedBody::new(inner, limit.reservation(), max, c);
        body.collect().await.map(|c| c.to_bytes().to_vec())
    }

    #[tokio::test]
    async fn plain_messages_pass_through_and_reserve_their_length() {
        let limit = InflightLimit::new(10 * MIB);
        let message = vec![7u8; 100_000];
        let wire = framed(0, &message);
        let r = limit.reservation();
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![Ok(Frame::data(Bytes::from(wire.clone())))];
        let mut body = LimitedBody::new(http_body_util::StreamBody::new(futures::stream::iter(frames)), r.clone(), MIB, Compression::Gzip);
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            got.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        assert_eq!(got, wire);
        assert_eq!(r.held_bytes(), PREFIX + message.len());
        drop((body, r));
        assert_eq!(limit.in_flight_bytes(), 0);
        for chunk in [1, 3, 5, 7, 4096] {
            assert_eq!(run(wire.clone(), chunk, &limit, MIB).await.unwrap(), wire);
        }
    }

    #[tokio::test]
    async fn gzip_messages_are_handed_on_inflated() {
        let limit = InflightLimit::new(10 * MIB);
        let message: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let wire = framed(1, &gzip(&message));
        for chunk in [1, 6, 1000, 1 << 20] {
            assert_eq!(run(wire.clone(), chunk, &limit, MIB).await.unwrap(), framed(0, &message));
        }
        assert_eq!(limit.in_flight_bytes(), 0);
    }

    #[tokio::test]
    async fn oversized_messages_are_resource_exhausted_compressed_or_not() {
        let limit = InflightLimit::new(10 * MIB);
        let s = run(framed(0, &vec![1; MIB + 1]), 16 * 1024, &limit, MIB).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert!(s.message().contains("larger than the limit of 1048576 bytes"), "{}", s.message());
        // Small compressed, too large inflated.
        let s = run(framed(1, &gzip(&vec![0; 2 * MIB])), 16 * 1024, &limit, MIB).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert!(s.message().contains("after decompression"), "{}", s.message());
        let s = run(framed(1, b"not gzip at all"), 4, &limit, MIB).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert_eq!(limit.in_flight_bytes(), 0);
    }

    #[tokio::test]
    async fn a_spent_budget_is_unavailable() {
        let limit = InflightLimit::new(MIB);
        let other = limit.reservation();
        other.reserve(MIB / 2).unwrap();
        let s = run(framed(0, &vec![1; MIB / 2 + 10]), 4096, &limit, 4 * MIB).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert!(s.message().contains("otlp.max_inflight_mib"), "{}", s.message());
        drop(other);
        assert_eq!(limit.in_flight_bytes(), 0);
    }

    #[tokio::test]
    async fn a_status_from_the_body_is_what_tonic_reports() {
        // tonic maps body errors with Status::from_error, which keeps a Status.
        let s = Status::resource_exhausted("too big");
        let mapped = Status::from_error(Box::new(s));
        assert_eq!((mapped.code(), mapped.message()), (tonic::Code::ResourceExhausted, "too big"));
        let limit = InflightLimit::new(MIB);
        let s = run(vec![0, 0, 0], 1, &limit, MIB).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "a truncated prefix: {s:?}");
    }

    #[tokio::test]
    async fn zstd_messages_are_handed_on_inflated() {
        let limit = InflightLimit::new(10 * MIB);
        let message: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let wire = framed(1, &zstd::encode_all(&message[..], 3).unwrap());
        let out = run_with(Compression::Zstd, wire, 999, &limit, MIB).await.unwrap();
        assert_eq!(out, framed(0, &message));
        // 2 MiB of zeros inflate past a 1 MiB limit: RESOURCE_EXHAUSTED.
        let big = framed(1, &zstd::encode_all(&vec![0u8; 2 * MIB][..], 3).unwrap());
        let s = run_with(Compression::Zstd, big, 4096, &limit, MIB).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{}", s.message());
    }
}
