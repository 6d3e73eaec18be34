//! The in-flight request budget: a weighted limit on the memory that OTLP
//! requests hold while they are received, decompressed and decoded, shared by
//! both receivers (`otlp.max_inflight_mib`).
//!
//! A request reserves bytes *before* it allocates them: the announced body
//! size (Content-Length, or the gRPC message header) before reading the body,
//! each step of a growing buffer before growing it, and an estimate of the
//! decoded request before decoding. When the budget is spent the request is
//! refused at once with the retryable answer (HTTP 503 + `Retry-After`, gRPC
//! `UNAVAILABLE`); nothing waits for memory, so a stalled request can never
//! hold up another one.
//!
//! A request's reservations are capped at the whole limit: a request larger
//! than the budget (but within `otlp.max_body_mib`) passes when nothing else
//! is in flight instead of being refused forever. The memory that can be in
//! use at once is therefore the limit plus, at most, the part of one request
//! beyond it.
//!
//! Reservations are released when the last clone of a [`Reservation`] is
//! dropped: on every return path, when a client disconnects (the request's
//! future is dropped), and when a handler panics (unwinding drops it).

use std::sync::{Arc, Mutex, PoisonError};

use costplane_telemetry::{Encoding, Signal};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{ApiError, ErrorCode};

const MIB: usize = 1024 * 1024;

/// What decoding a request of `body_len` (uncompressed) bytes is expected to
/// allocate at its peak (the decoded tree plus the rows converted from it),
/// reserved before `Ingest::export` is called.
///
/// Decoded protobuf is dominated by per-item overhead: every message,
/// string and repeated field is its own allocation, several times its wire
/// size when values are small. Peaks measured per byte of body (protobuf):
/// spans with one 1000-byte attribute 3.2×, spans with 20 short attributes
/// 7.3×, bare spans 16×; log records with 200-byte bodies 5.3×, with
/// 10-byte bodies 23×; gauge points 18×. OTLP/JSON spells the same data in
/// 2.5–3.4× the bytes, so its factor is lower. The factors below cover
/// typical telemetry; payloads of tiny items can exceed them by up to about
/// 2×, large values stay well under.
pub fn decode_estimate(signal: Signal, encoding: Encoding, body_len: usize) -> usize {
    let factor = match (encoding, signal) {
        (Encoding::Json, _) => 3,
        (Encoding::Protobuf, Signal::Traces | Signal::Logs) => 8,
        (Encoding::Protobuf, Signal::Metrics) => 16,
    };
    body_len.saturating_mul(factor)
}

/// The shared budget. Cloning shares it.
#[derive(Debug, Clone)]
pub struct InflightLimit {
    semaphore: Arc<Semaphore>,
    limit: usize,
}

impl InflightLimit {
    /// A budget of `limit_bytes` (at least 1).
    pub fn new(limit_bytes: usize) -> Self {
        let limit = limit_bytes.clamp(1, Semaphore::MAX_PERMITS);
        InflightLimit { semaphore: Arc::new(Semaphore::new(limit)), limit }
    }

    /// Bytes currently reserved by requests (the `/metrics` gauge
    /// `costplane_inflight_request_bytes`).
    pub fn in_flight_bytes(&self) -> usize {
        self.limit.saturating_sub(self.semaphore.available_permits())
    }

    /// An empty reservation for one request.
    pub fn reservation(&self) -> Reservation {
        Reservation { limit: self.clone(), held: Arc::new(Mutex::new(None)) }
    }

    fn refusal(&self) -> ApiError {
        let limit = match self.limit.is_multiple_of(MIB) {
            true => format!("{} MiB", self.limit / MIB),
            false => format!("{} bytes", self.limit),
        };
        ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "the receiver's in-flight request memory limit (otlp.max_inflight_mib = {limit}) is in use by other requests; \
                 retry with backoff, send smaller batches, or raise otlp.max_inflight_mib"
            ),
        )
    }
}

/// One request's share of the budget. Clones share it (e.g. the gRPC body
/// wrapper and the service); it is released when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Reservation {
    limit: InflightLimit,
    /// The permits held: one per byte.
    held: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
}

impl Reservation {
    /// Reserves `bytes` more, or fails at once with the retryable
    /// `Unavailable` error when the budget does not have them. The request's
    /// total is capped at the limit, so a request holding the whole budget
    /// reserves nothing more.
    pub fn reserve(&self, bytes: usize) -> Result<(), ApiError> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let take = bytes.min(self.limit.limit - held.as_ref().map_or(0, OwnedSemaphorePermit::num_permits));
        if take == 0 {
            return Ok(());
        }
        // Permits are acquired at most u32::MAX at a time; a partial
        // acquisition is dropped (released) if a later part fails.
        let mut acquired: Option<OwnedSemaphorePermit> = None;
        let mut left = take;
        while left > 0 {
            let n = u32::try_from(left).unwrap_or(u32::MAX);
            let permit = Arc::clone(&self.limit.semaphore).try_acquire_many_owned(n).map_err(|_| self.limit.refusal())?;
            match &mut acquired {
                Some(a) => a.merge(permit),
                None => acquired = Some(permit),
            }
            left -= n as usize;
        }
        if let Some(new) = acquired {
            match &mut *held {
                Some(p) => p.merge(new),
                None => *held = Some(new),
            }
        }
        Ok(())
    }

    /// Bytes this request holds.
    pub fn held_bytes(&self) -> usize {
        self.held.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_add_up_refuse_at_once_and_release_on_drop() {
        let limit = InflightLimit::new(100);
        let a = limit.reservation();
        a.reserve(60).unwrap();
        assert_eq!(limit.in_flight_bytes(), 60);
        let b = limit.reservation();
        let err = b.reserve(50).unwrap_err();
        assert_eq!(err.code, ErrorCode::Unavailable);
        assert!(err.message.contains("otlp.max_inflight_mib = 100 bytes"), "{}", err.message);
        assert_eq!(b.held_bytes(), 0, "a refused reservation holds nothing");
        b.reserve(40).unwrap();
        assert_eq!(limit.in_flight_bytes(), 100);
        let a2 = a.clone();
        drop(a);
        assert_eq!(limit.in_flight_bytes(), 100, "a clone keeps the reservation");
        drop(a2);
        assert_eq!(limit.in_flight_bytes(), 40);
        drop(b);
        assert_eq!(limit.in_flight_bytes(), 0);
    }

    #[test]
    fn one_request_is_capped_at_the_limit_so_it_can_always_pass_alone() {
        let limit = InflightLimit::new(10 * MIB);
        let r = limit.reservation();
        r.reserve(8 * MIB).unwrap();
        r.reserve(30 * MIB).unwrap();
        assert_eq!(r.held_bytes(), 10 * MIB);
        r.reserve(usize::MAX).unwrap();
        assert_eq!(limit.in_flight_bytes(), 10 * MIB);
        let other = limit.reservation();
        assert!(other.reserve(1).is_err());
        assert!(other.reserve(0).is_ok(), "nothing to reserve always succeeds");
        drop(r);
        assert_eq!(limit.in_flight_bytes(), 0);
    }

    #[test]
    fn a_panic_releases_the_reservation() {
        let limit = InflightLimit::new(1000);
        let r = limit.reservation();
        let inside = r.clone();
        let result = std::thread::spawn(move || {
            inside.reserve(700).unwrap();
            panic!("decoding blew up");
        })
        .join();
        assert!(result.is_err());
        assert_eq!(limit.in_flight_bytes(), 700, "the outer clone still holds it");
        drop(r);
        assert_eq!(limit.in_flight_bytes(), 0);
    }

    #[test]
    fn limits_beyond_u32_permits_work() {
        let big = 6 * 1024 * MIB; // 6 GiB: more permits than one acquisition takes
        let limit = InflightLimit::new(big);
        let r = limit.reservation();
        r.reserve(5 * 1024 * MIB).unwrap();
        assert_eq!(limit.in_flight_bytes(), 5 * 1024 * MIB);
        assert!(limit.reservation().reserve(2 * 1024 * MIB).is_err());
        drop(r);
        assert_eq!(limit.in_flight_bytes(), 0);
    }

    #[test]
    fn decode_estimates_scale_with_the_body() {
        assert_eq!(decode_estimate(Signal::Traces, Encoding::Protobuf, 10), 80);
        assert_eq!(decode_estimate(Signal::Metrics, Encoding::Protobuf, 10), 160);
        assert_eq!(decode_estimate(Signal::Logs, Encoding::Json, 10), 30);
        assert_eq!(decode_estimate(Signal::Traces, Encoding::Protobuf, usize::MAX), usize::MAX);
    }
}
