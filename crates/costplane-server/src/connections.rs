//! `[connections]`: how long a client may hold a connection without using
//! it, on the OTLP/gRPC, OTLP/HTTP and API listeners.
//!
//! Two deadlines, so that idle or deliberately slow clients (slowloris)
//! cannot hold sockets and tasks forever:
//! - `header_read_timeout`: a new connection must deliver its first
//!   request's headers within it (HTTP/1, HTTP/2 and gRPC alike); on HTTP/1
//!   hyper applies it again to every later request head, which also closes
//!   a keep-alive connection left waiting that long.
//! - `idle_timeout`: a connection over which no byte moved in either
//!   direction for this long is closed (a request body or answer that
//!   stalls, an HTTP/2 connection with nothing in flight). A connection
//!   with a request whose body has all arrived and whose answer costplane
//!   is still working on is not idle, however long the answer takes (a bill
//!   of a million rows is parsed and stored after its upload, with no byte
//!   moving): the client is waiting on the server, not holding it. A body
//!   that stops arriving is the client's stall, and is closed.
//!
//! Both are enforced by [`Guarded`], a wrapper over the connection's stream
//! that fails its reads and writes once a deadline passes; the protocol
//! stack then drops the connection as it would after a reset.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

/// `[connections]` in the configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsSection {
    /// Time from accepting a connection to its first request's headers,
    /// and (HTTP/1) from one answer to the next request's headers.
    #[serde(with = "duration_text")]
    pub header_read_timeout: Duration,
    /// Time without a byte read or written before a connection is closed.
    #[serde(with = "duration_text")]
    pub idle_timeout: Duration,
}

impl Default for ConnectionsSection {
    fn default() -> Self {
        ConnectionsSection { header_read_timeout: Duration::from_secs(10), idle_timeout: Duration::from_secs(300) }
    }
}

/// Durations written as "250ms", "10s", "5m" or "1h", read into a
/// [`Duration`] when the file loads; zero is refused, since a listener
/// whose connections all time out at once serves nobody.
pub(crate) mod duration_text {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        let ms = d.as_millis();
        let text = if !ms.is_multiple_of(1000) {
            format!("{ms}ms")
        } else {
            match d.as_secs() {
                secs if secs.is_multiple_of(3600) => format!("{}h", secs / 3600),
                secs if secs.is_multiple_of(60) => format!("{}m", secs / 60),
                secs => format!("{secs}s"),
            }
        };
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        let value = crate::config::parse_duration(&text).map_err(serde::de::Error::custom)?;
        if value.is_zero() {
            return Err(serde::de::Error::custom(format!("'{text}' must be more than zero")));
        }
        Ok(value)
    }
}

/// Set once a connection's first request has arrived (its headers read):
/// from then on only the idle deadline applies to it. Also counts the
/// requests of the connection whose answers are being worked on.
#[derive(Debug, Clone, Default)]
pub struct Started(Arc<ConnectionState>);

#[derive(Debug, Default)]
struct ConnectionState {
    started: AtomicBool,
    answering: AtomicUsize,
}

impl Started {
    pub fn mark(&self) {
        self.0.started.store(true, Ordering::Relaxed);
    }

    fn get(&self) -> bool {
        self.0.started.load(Ordering::Relaxed)
    }

    fn busy(&self) -> bool {
        self.0.answering.load(Ordering::Relaxed) > 0
    }
}

/// Where one request of a connection is: its body still arriving (the
/// client's time, under the idle deadline), its answer being worked on (the
/// server's time: the connection is busy, not idle), or answered.
struct RequestProgress {
    started: Started,
    state: std::sync::Mutex<Stage>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Receiving,
    Answering,
    Answered,
}

impl RequestProgress {
    fn new(started: Started) -> Arc<RequestProgress> {
        started.mark();
        Arc::new(RequestProgress { started, state: std::sync::Mutex::new(Stage::Receiving) })
    }

    /// The whole body is in: the wait is now the server's.
    fn received(&self) {
        let mut stage = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if *stage == Stage::Receiving {
            *stage = Stage::Answering;
            self.started.0.answering.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The answer's head is ready (its body then moves bytes), or the
    /// request was dropped.
    fn answered(&self) {
        let mut stage = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if *stage == Stage::Answering {
            self.started.0.answering.fetch_sub(1, Ordering::Relaxed);
        }
        *stage = Stage::Answered;
    }
}

/// Calls [`RequestProgress::answered`] when the request's handling ends,
/// however it ends.
struct Answered(Arc<RequestProgress>);

impl Drop for Answered {
    fn drop(&mut self) {
        self.0.answered();
    }
}

/// A request body that tells its [`RequestProgress`] when it has all
/// arrived.
struct WatchedBody {
    inner: hyper::body::Incoming,
    progress: Arc<RequestProgress>,
}

impl http_body::Body for WatchedBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.progress.received();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's stream under the two deadlines of [`ConnectionsSection`].
pub struct Guarded<S> {
    inner: S,
    limits: ConnectionsSection,
    opened: Instant,
    /// When a byte last moved.
    last: Instant,
    started: Started,
    /// Armed at the nearest deadline; re-armed (not failed) when it fires
    /// early because bytes moved since it was set.
    timer: Pin<Box<Sleep>>,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, limits: ConnectionsSection, started: Started) -> Guarded<S> {
        let now = Instant::now();
        let timer = Box::pin(tokio::time::sleep_until(now + limits.header_read_timeout.min(limits.idle_timeout)));
        Guarded { inner, limits, opened: now, last: now, started, timer }
    }

    /// What the protocol layer marks when the first request arrives.
    pub fn started(&self) -> &Started {
        &self.started
    }

    fn deadline(&self) -> Instant {
        let idle = self.last + self.limits.idle_timeout;
        if self.started.get() {
            idle
        } else {
            idle.min(self.opened + self.limits.header_read_timeout)
        }
    }

    /// Whether a deadline has passed; otherwise the timer is armed to wake
    /// `cx` at the nearest one.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.started.busy() {
            // The server is the slow side: the wait is not the client's.
            self.last = Instant::now();
        }
        loop {
            let deadline = self.deadline();
            if deadline <= Instant::now() {
                return true;
            }
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            } else if self.timer.is_elapsed() {
                return true;
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
        }
    }

    fn timed_out(&self) -> std::io::Error {
        let what = if self.started.get() { "idle_timeout" } else { "header_read_timeout" };
        std::io::Error::new(std::io::ErrorKind::TimedOut, format!("connections.{what} passed"))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.last = Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(self.timed_out())),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> Guarded<S> {
    fn wrote(&mut self, cx: &mut Context<'_>, result: Poll<std::io::Result<usize>>) -> Poll<std::io::Result<usize>> {
        match result {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.last = Instant::now();
                }
                Poll::Ready(Ok(n))
            }
            // A client that stops reading its answers stalls writes.
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(self.timed_out())),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(cx, result)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// tonic hands the [`Started`] flag to every request (as an extension), so
/// the export service can mark the connection's first request.
impl<S> tonic::transport::server::Connected for Guarded<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type ConnectInfo = Started;

    fn connect_info(&self) -> Started {
        self.started.clone()
    }
}

/// Serves `router` on `listener` (plain TCP or TLS) with the deadlines of
/// `limits`, until `stop`; then stops accepting and lets open connections
/// finish their requests, as `axum::serve`'s graceful shutdown does.
pub async fn serve_http<L>(mut listener: L, router: axum::Router, limits: ConnectionsSection, stop: CancellationToken)
where
    L: axum::serve::Listener,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::ServiceExt;

    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (io, _peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let io = Guarded::new(io, limits, Started::default());
        let started = io.started().clone();
        let router = router.clone();
        let service = tower::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let progress = RequestProgress::new(started.clone());
            let req = req.map(|inner| WatchedBody { inner, progress: Arc::clone(&progress) });
            if http_body::Body::is_end_stream(req.body()) {
                progress.received();
            }
            let answered = Answered(progress);
            let router = router.clone();
            async move {
                let answer = router.oneshot(req).await;
                drop(answered);
                answer
            }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), hyper_util::service::TowerToHyperService::new(service));
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
