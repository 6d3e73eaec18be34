//! Per-tenant ingest rate limits: two token buckets per tenant (items per
//! second and bytes per second), each holding `burst_seconds` of its rate.
//!
//! A request takes its items and bytes from its tenant's buckets, or, if
//! either lacks them, takes nothing and is refused with HTTP 429 / gRPC
//! `RESOURCE_EXHAUSTED`, carrying when the buckets will hold enough
//! (`Retry-After`, RetryInfo), which OTLP exporters honour. One tenant's
//! traffic never drains another's buckets. A request larger than a whole
//! bucket is let through when the bucket is full (and empties it), so a
//! limit below the largest batch slows a tenant down instead of blocking it
//! for ever. The tenant is the ingest key's, or (open ingest) the tenants
//! the request's resources name.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::keys::RateLimitSection;
use crate::error::{ApiError, ErrorCode};

/// Tenants tracked at most; past it, buckets that refilled are forgotten.
const MAX_TENANTS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, rate: f64, capacity: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(capacity);
        self.at = now;
    }

    /// Seconds until `want` tokens are there (0 if they are).
    fn wait(&self, want: f64, rate: f64, capacity: f64) -> f64 {
        let want = want.min(capacity);
        if self.tokens >= want {
            0.0
        } else {
            (want - self.tokens) / rate
        }
    }
}

/// The limiter shared by both receivers.
#[derive(Debug, Default)]
pub struct RateLimiter {
    items_per_second: f64,
    bytes_per_second: f64,
    burst_seconds: f64,
    buckets: Mutex<HashMap<String, (Bucket, Bucket)>>,
}

impl RateLimiter {
    pub fn new(config: &RateLimitSection) -> RateLimiter {
        RateLimiter {
            items_per_second: config.items_per_second as f64,
            bytes_per_second: config.bytes_per_second as f64,
            burst_seconds: config.burst_seconds.max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn is_off(&self) -> bool {
        self.items_per_second <= 0.0 && self.bytes_per_second <= 0.0
    }

    /// Takes `items` and `bytes` from `tenant`'s buckets, or says how long to wait.
    pub fn take(&self, tenant: &str, items: u64, bytes: u64) -> Result<(), ApiError> {
        self.take_at(tenant, items, bytes, Instant::now())
    }

    fn take_at(&self, tenant: &str, items: u64, bytes: u64, now: Instant) -> Result<(), ApiError> {
        if self.is_off() {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_TENANTS && !buckets.contains_key(tenant) {
            let (ic, bc) = (self.items_per_second * self.burst_seconds, self.bytes_per_second * self.burst_seconds);
            let (ir, br) = (self.items_per_second, self.bytes_per_second);
            buckets.retain(|_, (i, b)| {
                i.refill(ir, ic, now);
                b.refill(br, bc, now);
                i.tokens < ic || b.tokens < bc
            });
        }
        let full = |rate: f64| Bucket { tokens: rate * self.burst_seconds, at: now };
        let (item_bucket, byte_bucket) =
            buckets.entry(tenant.to_owned()).or_insert_with(|| (full(self.items_per_second), full(self.bytes_per_second)));
        let mut wait: f64 = 0.0;
        for (bucket, rate, want) in [(&mut *item_bucket, self.items_per_second, items), (&mut *byte_bucket, self.bytes_per_second, bytes)] {
            if rate <= 0.0 {
                continue;
            }
            let capacity = rate * self.burst_seconds;
            bucket.refill(rate, capacity, now);
            wait = wait.max(bucket.wait(want as f64, rate, capacity));
        }
        if wait > 0.0 {
            return Err(ApiError::retry_after(
                ErrorCode::RateLimited,
                format!("tenant '{tenant}' is over its ingest rate limit; retry in {wait:.1}s"),
                Duration::from_secs_f64(wait.min(3600.0)),
            ));
        }
        for (bucket, rate, want) in [(item_bucket, self.items_per_second, items), (byte_bucket, self.bytes_per_second, bytes)] {
            if rate > 0.0 {
                bucket.tokens = (bucket.tokens - want as f64).max(0.0);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> RateLimiter {
        RateLimiter::new(&RateLimitSection { items_per_second: 100, bytes_per_second: 0, burst_seconds: 2 })
    }

    #[test]
    fn a_tenant_over_its_rate_waits_and_others_do_not() {
        let l = limiter();
        let t0 = Instant::now();
        // The bucket holds 2 s x 100 items = 200.
        l.take_at("acme", 150, 10, t0).unwrap();
        let e = l.take_at("acme", 100, 10, t0).unwrap_err();
        assert_eq!(e.code, ErrorCode::RateLimited);
        // 50 left, 100 wanted: 50 more items at 100/s is 0.5 s.
        assert_eq!(e.retry_after, Some(Duration::from_millis(500)));
        assert_eq!(e.retry_after_secs(), Some(1));
        l.take_at("globex", 200, 10, t0).unwrap();
        l.take_at("acme", 100, 10, t0 + Duration::from_millis(500)).unwrap();
    }

    #[test]
    fn a_request_larger_than_the_bucket_passes_when_it_is_full() {
        let l = limiter();
        let t0 = Instant::now();
        l.take_at("acme", 1000, 0, t0).unwrap();
        assert!(l.take_at("acme", 1, 0, t0).is_err());
        l.take_at("acme", 1000, 0, t0 + Duration::from_secs(2)).unwrap();
    }

    #[test]
    fn off_means_off() {
        let l = RateLimiter::new(&RateLimitSection { items_per_second: 0, bytes_per_second: 0, burst_seconds: 1 });
        for _ in 0..10 {
            l.take("acme", u64::MAX, u64::MAX).unwrap();
        }
    }
}
