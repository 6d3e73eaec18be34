//! Write sequence numbers of usage rows: how the closer finds the usage
//! stored since it last looked, without reading whole hours.
//!
//! Every usage row of a write (`costplane_usage_telemetry`,
//! `costplane_usage_llm`) carries the write's `WriteSeq`: nanoseconds of
//! the clock when the write began, made strictly increasing in this process
//! (and larger than any stored when the store opened).
//!
//! # Invariant: every row at or below [`WriteSeqs::settled`] is visible
//! A write takes its number ([`WriteSeqs::begin`]) before its rows are
//! encoded and holds the [`WriteTicket`] until the write returns. While a
//! write is in flight, `settled` stays below its number; once none is, it
//! is the last number handed out. A reader that has consumed every row with
//! `WriteSeq <= s` and then reads `s < WriteSeq <= settled()` therefore
//! misses nothing this process wrote, whatever order writes commit in.
//!
//! Rows of a write that failed and committed later anyway (a ClickHouse
//! insert that timed out, retried with the same body), or rows written by
//! another process, can land at or below a reader's mark: the closer
//! counts an hour's rows when it closes it and prices the hour from scratch
//! when the count differs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Hands out write numbers and knows which are still in flight.
#[derive(Debug, Default)]
pub struct WriteSeqs {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last: u64,
    /// Numbers of writes in flight (a count each: a number is handed out once).
    in_flight: BTreeMap<u64, u32>,
}

/// One write's number; dropping it ends the write.
#[derive(Debug)]
pub struct WriteTicket {
    seqs: Arc<WriteSeqs>,
    seq: u64,
}

impl WriteTicket {
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl Drop for WriteTicket {
    fn drop(&mut self) {
        let mut s = self.seqs.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = s.in_flight.get_mut(&self.seq) {
            *n -= 1;
            if *n == 0 {
                s.in_flight.remove(&self.seq);
            }
        }
    }
}

fn clock_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl WriteSeqs {
    /// Numbers above `stored`, the largest number already in the store.
    pub fn after(stored: u64) -> Arc<WriteSeqs> {
        Arc::new(WriteSeqs { state: Mutex::new(State { last: stored, in_flight: BTreeMap::new() }) })
    }

    /// The next number, held in flight until the ticket drops.
    pub fn begin(self: &Arc<Self>) -> WriteTicket {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let seq = clock_ns().max(s.last.saturating_add(1));
        s.last = seq;
        *s.in_flight.entry(seq).or_default() += 1;
        WriteTicket { seqs: Arc::clone(self), seq }
    }

    /// The largest number at or below which no write is in flight.
    pub fn settled(&self) -> u64 {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.in_flight.keys().next() {
            Some(first) => first - 1,
            None => s.last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_stays_below_the_oldest_write_in_flight() {
        let seqs = WriteSeqs::after(10);
        assert_eq!(seqs.settled(), 10);
        let a = seqs.begin();
        let b = seqs.begin();
        assert!(a.seq() > 10 && b.seq() > a.seq());
        assert_eq!(seqs.settled(), a.seq() - 1);
        // The later write finishes first: still nothing above a's number.
        let b_seq = b.seq();
        drop(b);
        assert_eq!(seqs.settled(), a.seq() - 1);
        drop(a);
        assert_eq!(seqs.settled(), b_seq);
    }

    #[test]
    fn numbers_pass_a_stored_number_from_the_future() {
        let far = clock_ns() + 3_600_000_000_000;
        let seqs = WriteSeqs::after(far);
        assert_eq!(seqs.begin().seq(), far + 1);
    }
}
