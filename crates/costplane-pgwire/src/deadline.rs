//! How long a client may hold a connection without using it, so that idle
//! or deliberately slow clients cannot keep sockets and tasks forever.
//!
//! pgwire reads the socket itself, so the deadlines follow what the
//! protocol handlers see rather than single bytes:
//! - [`Deadlines::startup`]: from accepting the connection to a completed
//!   login (startup message, TLS, password), as PostgreSQL's
//!   `authentication_timeout`. A client that sends half a startup message,
//!   or trickles one a byte at a time, is closed at this deadline.
//! - [`Deadlines::idle`]: after login, from the end of the last statement
//!   with none running to the start of the next, as PostgreSQL's
//!   `idle_session_timeout`. A statement that runs longer is not idle: the
//!   backend's own time limit bounds it.
//!
//! A connection past its deadline is dropped by its task ([`Watch::expired`]
//! ends the `select!` that runs it), which closes the socket.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The two deadlines of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// From accept to a completed login.
    pub startup: Duration,
    /// After login, without a statement running.
    pub idle: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines { startup: Duration::from_secs(10), idle: Duration::from_secs(30 * 60) }
    }
}

#[derive(Debug)]
struct State {
    logged_in: bool,
    /// Statements (or describes) in progress.
    running: usize,
    /// When the last one ended, or the login completed.
    last: Instant,
}

/// What one connection's handlers report, and its deadline worked out
/// from it.
#[derive(Debug)]
pub(crate) struct Watch {
    opened: Instant,
    limits: Deadlines,
    state: Mutex<State>,
    changed: Notify,
}

/// Held while a statement runs; its end restarts the idle clock.
pub(crate) struct Running<'a>(&'a Watch);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.state.lock() {
            s.running = s.running.saturating_sub(1);
            s.last = Instant::now();
        }
        self.0.changed.notify_one();
    }
}

impl Watch {
    pub(crate) fn new(limits: Deadlines) -> Watch {
        let now = Instant::now();
        Watch { opened: now, limits, state: Mutex::new(State { logged_in: false, running: 0, last: now }), changed: Notify::new() }
    }

    /// The login completed: from now on only the idle deadline applies.
    pub(crate) fn logged_in(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.logged_in = true;
            s.last = Instant::now();
        }
        self.changed.notify_one();
    }

    /// A statement starts; it runs until the guard is dropped.
    pub(crate) fn running(&self) -> Running<'_> {
        if let Ok(mut s) = self.state.lock() {
            s.running += 1;
        }
        self.changed.notify_one();
        Running(self)
    }

    /// The deadline in force now (`None` while a statement runs), and
    /// which one it is.
    fn deadline(&self) -> Option<(Instant, &'static str)> {
        let s = self.state.lock().ok()?;
        if !s.logged_in {
            Some((self.opened + self.limits.startup, "the login did not complete before the startup deadline"))
        } else if s.running > 0 {
            None
        } else {
            Some((s.last + self.limits.idle, "no statement came before the idle deadline"))
        }
    }

    /// Resolves once the connection is past its deadline, with which one.
    pub(crate) async fn expired(&self) -> &'static str {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the state is read, so a change made in
            // between still wakes this loop.
            changed.as_mut().enable();
            match self.deadline() {
                None => changed.await,
                Some((at, which)) => {
                    if Instant::now() >= at {
                        return which;
                    }
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = changed => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    /// How late an expiry may come on a busy machine.
    const SLACK: Duration = Duration::from_secs(3);

    fn limits() -> Deadlines {
        Deadlines { startup: 300 * MS, idle: 400 * MS }
    }

    #[tokio::test]
    async fn a_connection_that_never_logs_in_expires_at_the_startup_deadline() {
        let watch = Watch::new(limits());
        let opened = Instant::now();
        assert!(watch.expired().await.contains("login"));
        let after = opened.elapsed();
        assert!(after >= 300 * MS && after < 300 * MS + SLACK, "{after:?}");
    }

    #[tokio::test]
    async fn the_idle_clock_starts_at_login_and_at_each_statement_end_and_stops_while_one_runs() {
        let watch = std::sync::Arc::new(Watch::new(limits()));
        let opened = Instant::now();
        let w = std::sync::Arc::clone(&watch);
        let client = tokio::spawn(async move {
            tokio::time::sleep(100 * MS).await;
            w.logged_in();
            tokio::time::sleep(200 * MS).await;
            // A statement of 800 ms, longer than the idle deadline.
            let running = w.running();
            tokio::time::sleep(800 * MS).await;
            drop(running);
        });
        assert!(watch.expired().await.contains("idle"));
        // Login at 100 ms, a statement from 300 ms to 1,100 ms, then 400 ms idle.
        let after = opened.elapsed();
        assert!(after >= 1500 * MS && after < 1500 * MS + SLACK, "{after:?}");
        client.await.unwrap();
    }
}
