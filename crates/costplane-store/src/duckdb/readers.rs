//! The connections costplane's own reads run on: a small pool for requests
//! (the cost, unit-cost and telemetry-cost endpoints, `/metrics`,
//! reports), so that one slow read (a month of unit costs) never holds up
//! the others, and a connection of the closer's own, so that no read a
//! request asks for can hold up pricing. Each read is bounded by a time
//! limit.
//!
//! # Invariants
//! - The closer reads on its own connection ([`crate::ReadLane::Closer`]) and
//!   requests never do: however many slow reads requests start, the
//!   closer's refresh waits for none of them.
//! - A read takes a free connection when there is one, else waits on the
//!   next in turn; a connection runs one read at a time.
//! - A read past the limit is interrupted and answers `Unavailable` with
//!   what to do. Its connection's interrupt handle is published only while
//!   the read holds the connection, so a timeout never interrupts another
//!   read; a read that times out before it got a connection never starts.
//! - Ad-hoc user SQL and the PostgreSQL endpoint keep their own connection
//!   and limits (`adhoc.rs`, `pg.rs`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duckdb::{Connection, InterruptHandle};

use crate::StoreError;

/// Connections of the requests' pool.
pub const READERS: usize = 3;
/// Connections of the closer's own.
pub const CLOSER_READERS: usize = 1;
/// The longest one of costplane's own reads may run.
pub const READ_TIMEOUT: Duration = Duration::from_secs(300);

pub(super) struct Readers {
    conns: Vec<Arc<Mutex<Connection>>>,
    next: AtomicUsize,
    timeout: Duration,
}

impl Readers {
    /// `count` connections to the database `conn` is open on.
    pub(super) fn new(conn: &Connection, count: usize, timeout: Duration) -> Result<Readers, StoreError> {
        let conns = (0..count.max(1))
            .map(|_| conn.try_clone().map(|c| Arc::new(Mutex::new(c))).map_err(super::db_err))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Readers { conns, next: AtomicUsize::new(0), timeout })
    }

    /// Every connection (each gets the temporary views of a read-only store).
    pub(super) fn all(&self) -> &[Arc<Mutex<Connection>>] {
        &self.conns
    }

    /// A free connection, else the next in turn.
    fn pick(&self) -> Arc<Mutex<Connection>> {
        for c in &self.conns {
            if c.try_lock().is_ok() {
                return Arc::clone(c);
            }
        }
        Arc::clone(&self.conns[self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len()])
    }

    /// Runs `read` on a connection of the pool within the time limit.
    pub(super) async fn run<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.pick();
        let running: Arc<Mutex<Option<Arc<InterruptHandle>>>> = Arc::default();
        let abandoned = Arc::new(AtomicBool::new(false));
        let (slot, gone) = (Arc::clone(&running), Arc::clone(&abandoned));
        let task = tokio::task::spawn_blocking(move || {
            let conn = conn.lock().map_err(|_| StoreError::Unavailable("a reader connection is poisoned".into()))?;
            {
                let mut slot = slot.lock().map_err(|_| StoreError::Unavailable("a read's state is poisoned".into()))?;
                if gone.load(Ordering::SeqCst) {
                    return Err(StoreError::Unavailable("the read waited past its time limit and was not started".into()));
                }
                *slot = Some(conn.interrupt_handle());
            }
            let out = read(&conn);
            if let Ok(mut slot) = slot.lock() {
                *slot = None;
            }
            out
        });
        match tokio::time::timeout(self.timeout, task).await {
            Ok(joined) => joined.map_err(|e| StoreError::Unavailable(format!("the read task failed: {e}")))?,
            Err(_) => {
                // Under the slot's lock: the read either still runs (and is
                // interrupted) or has not started (and never will).
                if let Ok(slot) = running.lock() {
                    abandoned.store(true, Ordering::SeqCst);
                    if let Some(handle) = slot.as_ref() {
                        handle.interrupt();
                    }
                }
                Err(StoreError::Unavailable(format!(
                    "the read ran past its time limit ({:?}) and was stopped; ask for a shorter window or fewer groups",
                    self.timeout
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_read_neither_blocks_another_nor_outlives_its_limit() {
        let conn = Connection::open_in_memory().unwrap();
        let readers = Arc::new(Readers::new(&conn, READERS, Duration::from_millis(1500)).unwrap());
        // A read that would run for minutes: a cross join of 10^12 rows.
        let slow = {
            let readers = Arc::clone(&readers);
            tokio::spawn(async move {
                readers
                    .run(|c| {
                        c.query_row("SELECT count(*) FROM range(1000000) a, range(1000000) b", [], |r| r.get::<_, i64>(0))
                            .map_err(super::super::db_err)
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Meanwhile another read is answered at once, on another connection.
        let started = std::time::Instant::now();
        let quick = readers.run(|c| c.query_row("SELECT 42", [], |r| r.get::<_, i64>(0)).map_err(super::super::db_err)).await.unwrap();
        assert_eq!(quick, 42);
        assert!(started.elapsed() < Duration::from_millis(1000), "{:?}", started.elapsed());
        // The slow one is stopped at its limit with a message that says what to do.
        let err = slow.await.unwrap().unwrap_err().to_string();
        assert!(err.contains("time limit") && err.contains("shorter window"), "{err}");
        // Its connection serves the next read.
        for _ in 0..READERS {
            assert_eq!(
                readers.run(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)).map_err(super::super::db_err)).await.unwrap(),
                1
            );
        }
    }
}
