//! OTLP/gRPC: `TraceService/Export`, `LogsService/Export`, `MetricsService/Export`.
//!
//! The services take the raw request bytes (a pass-through codec) and decode
//! them with the same code as OTLP/HTTP, so a malformed message is answered
//! `INVALID_ARGUMENT` with the decoder's reason (tonic's own codec would say
//! `INTERNAL`), and both protocols validate identically. gzip and zstd are accepted.
//!
//! The request body is wrapped ([`super::grpc_body::LimitedBody`]) so that
//! the size limit and the in-flight budget apply while tonic reads the
//! message; the decoded request is reserved in [`Unary::call`].

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes};
use costplane_telemetry::{encode_response, Encoding, Signal};
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::Status;

use super::body::Compression;
use super::grpc_body::LimitedBody;
use super::inflight::{decode_estimate, Reservation};
use super::Ingest;

/// Passes message bytes through untouched in both directions.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

#[derive(Debug, Clone, Copy, Default)]
pub struct RawEncoder;

#[derive(Debug, Clone, Copy, Default)]
pub struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Ties a signal to its gRPC service name.
pub trait GrpcSignal: Send + Sync + 'static {
    const SIGNAL: Signal;
    const SERVICE: &'static str;
}

#[derive(Debug)]
pub enum Traces {}
#[derive(Debug)]
pub enum Logs {}
#[derive(Debug)]
pub enum Metrics {}

impl GrpcSignal for Traces {
    const SIGNAL: Signal = Signal::Traces;
    const SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}
impl GrpcSignal for Logs {
    const SIGNAL: Signal = Signal::Logs;
    const SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
}
impl GrpcSignal for Metrics {
    const SIGNAL: Signal = Signal::Metrics;
    const SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
}

/// One OTLP export service.
#[derive(Debug)]
pub struct ExportService<S> {
    ingest: Ingest,
    _signal: PhantomData<S>,
}

impl<S> Clone for ExportService<S> {
    fn clone(&self) -> Self {
        ExportService { ingest: self.ingest.clone(), _signal: PhantomData }
    }
}

impl<S: GrpcSignal> ExportService<S> {
    pub fn new(ingest: Ingest) -> Self {
        ExportService { ingest, _signal: PhantomData }
    }
}

impl<S: GrpcSignal> NamedService for ExportService<S> {
    const NAME: &'static str = S::SERVICE;
}

/// The ingest key's sender, from the HTTP/2 headers to the export call.
#[derive(Clone)]
struct Authenticated(Option<costplane_pipeline::Sender>);

struct Unary<S> {
    ingest: Ingest,
    _signal: PhantomData<S>,
}

impl<S: GrpcSignal> UnaryService<Bytes> for Unary<S> {
    type Response = Vec<u8>;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<Vec<u8>>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let ingest = self.ingest.clone();
        Box::pin(async move {
            // The request's reservation, shared with its body; held until
            // the export returns.
            let reservation = request.extensions().get::<Reservation>().cloned().unwrap_or_else(|| ingest.inflight.reservation());
            let sender = request.extensions().get::<Authenticated>().and_then(|a| a.0.clone());
            let body = request.into_inner();
            let result = reservation
                .reserve(decode_estimate(S::SIGNAL, Encoding::Protobuf, body.len()))
                .and_then(|()| ingest.export(S::SIGNAL, Encoding::Protobuf, &body, sender));
            drop((body, reservation));
            match result {
                Ok(outcome) => Ok(tonic::Response::new(encode_response(S::SIGNAL, Encoding::Protobuf, outcome.rejected, outcome.message))),
                Err(e) => {
                    tracing::debug!(signal = %S::SIGNAL, error = %e.message, "refusing an OTLP/gRPC request");
                    Err(e.to_status())
                }
            }
        })
    }
}

impl<S, B> tower::Service<http::Request<B>> for ExportService<S>
where
    S: GrpcSignal,
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let ingest = self.ingest.clone();
        let expected = format!("/{}/Export", S::SERVICE);
        Box::pin(async move {
            // The connection's first request has arrived: from now on only
            // its idle deadline applies (`connections.rs`).
            if let Some(started) = req.extensions().get::<crate::connections::Started>() {
                started.mark();
            }
            if req.uri().path() != expected {
                return Ok(Status::unimplemented(format!("unknown method {}", req.uri().path())).into_http());
            }
            // The key is checked before any of the body is read.
            let sender = match ingest.auth.sender(req.headers()) {
                Ok(s) => s,
                Err(e) => return Ok(e.to_status().into_http()),
            };
            let mut accept = EnabledCompressionEncodings::default();
            accept.enable(CompressionEncoding::Gzip);
            accept.enable(CompressionEncoding::Zstd);
            let max = ingest.max_body_bytes;
            // The body hands tonic gzip and zstd messages inflated; tonic still
            // checks that the client's grpc-encoding is one it accepts.
            let compression = match req.headers().get("grpc-encoding").and_then(|v| v.to_str().ok()).and_then(Compression::parse) {
                Some(c @ (Compression::Gzip | Compression::Zstd)) => c,
                _ => Compression::None,
            };
            let reservation = ingest.inflight.reservation();
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(reservation.clone());
            parts.extensions.insert(Authenticated(sender));
            let req = http::Request::from_parts(parts, LimitedBody::new(body, reservation, max, compression));
            let mut grpc = Grpc::new(RawCodec)
                .apply_compression_config(accept, EnabledCompressionEncodings::default())
                .apply_max_message_size_config(Some(max), None);
            Ok(grpc.unary(Unary::<S> { ingest, _signal: PhantomData }, req).await)
        })
    }
}
