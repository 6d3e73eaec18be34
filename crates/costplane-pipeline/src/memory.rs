//! The memory budget of accepted, not yet stored rows.
//!
//! A [`Reservation`] is an RAII guard: the bytes it holds are released when
//! it is dropped, on every path (stored, dead-lettered, abandoned at the
//! shutdown deadline, or unwound by a panic), so the budget cannot leak.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug)]
pub(crate) struct MemoryBudget {
    used: AtomicUsize,
    limit: usize,
}

impl MemoryBudget {
    pub(crate) fn new(limit: usize) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget { used: AtomicUsize::new(0), limit: limit.max(1) })
    }

    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Reserves `bytes` if they fit (always into an empty budget, so one
    /// request larger than the limit is not refused forever).
    pub(crate) fn try_reserve(self: &Arc<Self>, bytes: usize) -> Result<Reservation, usize> {
        let bytes = bytes.max(1);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| (used == 0 || used + bytes <= self.limit).then_some(used + bytes))
            .map(|_| Reservation { budget: Arc::clone(self), bytes })
    }

    /// Reserves `bytes` whatever the limit (rows read back from the disk
    /// buffer by the writer, whose pace bounds them).
    pub(crate) fn force_reserve(self: &Arc<Self>, bytes: usize) -> Reservation {
        let bytes = bytes.max(1);
        self.used.fetch_add(bytes, Ordering::AcqRel);
        Reservation { budget: Arc::clone(self), bytes }
    }
}

/// Bytes held against the budget until dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_release_on_drop_even_when_unwinding() {
        let budget = MemoryBudget::new(100);
        let a = budget.try_reserve(60).unwrap();
        assert_eq!(budget.try_reserve(60).unwrap_err(), 60);
        let b2 = Arc::clone(&budget);
        let panicked = std::panic::catch_unwind(move || {
            let _held = b2.try_reserve(40).unwrap();
            panic!("a write panics while holding its batch");
        });
        assert!(panicked.is_err());
        assert_eq!(budget.used(), 60);
        drop(a);
        assert_eq!(budget.used(), 0);
        // Into an empty budget, even an oversized reservation fits.
        let big = budget.try_reserve(1000).unwrap();
        drop(big);
        let _forced = budget.force_reserve(500);
        assert_eq!(budget.used(), 500);
    }
}
