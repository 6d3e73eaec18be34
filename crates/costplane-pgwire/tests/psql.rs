//! The endpoint over a fixed backend, driven by the real `psql` (Debian's
//! postgresql-client): login, refused passwords, `\d`, `\dt`, `\d view`,
//! session statements and how statements reach the engine; and the
//! connection deadlines, with raw clients that never log in, stop halfway
//! through the startup message, or log in and go idle.

use std::net::IpAddr;
use std::process::Command;
use std::sync::Arc;

use costplane_pgwire::{serve, Column, Deadlines, PgError, PgType, Principal, Rows, SqlBackend};
use tokio_util::sync::CancellationToken;

/// Answers every query with the text it received, so tests see what the
/// engine would run; knows one view and one table.
struct Echo;

#[async_trait::async_trait]
impl SqlBackend for Echo {
    async fn authenticate(&self, user: &str, password: &str, _peer: IpAddr) -> Result<Principal, PgError> {
        match (user, password) {
            ("costplane", "admin-key") => Ok(Principal { name: "admin".into(), tenant: None }),
            _ => Err(PgError::Auth(user.to_owned())),
        }
    }

    async fn query(&self, _principal: &Principal, sql: &str) -> Result<Rows, PgError> {
        if sql.contains("sleep me") {
            // A statement that runs longer than the idle deadline.
            tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        }
        if sql.contains("fail me") {
            return Err(PgError::ReadOnly("only read-only statements are allowed".into()));
        }
        if sql.contains("money") {
            return Ok(Rows {
                columns: vec![Column { name: "cost".into(), ty: PgType::Numeric }, Column { name: "at".into(), ty: PgType::TimestampTz }],
                rows: vec![vec![Some("0.003500000000".into()), Some("2026-12-01T10:00:00".into())]],
            });
        }
        Ok(Rows { columns: vec![Column { name: "engine_saw".into(), ty: PgType::Text }], rows: vec![vec![Some(sql.to_owned())]] })
    }

    async fn describe(&self, _principal: &Principal, sql: &str) -> Result<Vec<Column>, PgError> {
        if sql == "SELECT * FROM \"service_costs\"" {
            return Ok(vec![
                Column { name: "timestamp".into(), ty: PgType::TimestampTz },
                Column { name: "service_name".into(), ty: PgType::Text },
                Column { name: "cost_usd".into(), ty: PgType::Numeric },
            ]);
        }
        Ok(self.query(_principal, sql).await?.columns)
    }

    async fn relations(&self, _principal: &Principal) -> Result<Vec<(String, String, bool)>, PgError> {
        Ok(vec![("main".into(), "otel_traces".into(), false), ("main".into(), "service_costs".into(), true)])
    }

    fn engine(&self) -> String {
        "echo".into()
    }
}

fn psql(port: u16, password: &str, command: &str) -> (bool, String, String) {
    let out = Command::new("psql")
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "costplane",
            "-d",
            "costplane",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            command,
        ])
        .env("PGPASSWORD", password)
        .env("PGSSLMODE", "disable")
        .output()
        .unwrap_or_else(|e| panic!("psql could not run ({e}): install Debian's postgresql-client (scripts/test.sh does)"));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_reads_through_the_endpoint() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, Arc::new(Echo), None, Deadlines::default(), stop.clone()));

    let run = |password: &'static str, command: &'static str| tokio::task::spawn_blocking(move || psql(port, password, command));

    let (ok, _, err) = run("wrong", "SELECT 1").await.unwrap();
    assert!(!ok && err.to_lowercase().contains("password authentication failed"), "{err}");

    let (ok, out, err) = run("admin-key", "SELECT version()").await.unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("PostgreSQL 16.4 (costplane"), "{out}");

    let (ok, out, err) = run("admin-key", "\\dt").await.unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("otel_traces") && out.contains("table") && !out.contains("service_costs"), "{out}");

    let (ok, out, err) = run("admin-key", "\\d").await.unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("otel_traces") && out.contains("service_costs") && out.contains("view"), "{out}");

    let (ok, out, err) = run("admin-key", "\\d service_costs").await.unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("View \"public.service_costs\""), "{out}");
    assert!(out.contains("cost_usd") && out.contains("numeric") && out.contains("timestamp with time zone"), "{out}");

    let (ok, out, err) = run("admin-key", "BEGIN; SET extra_float_digits = 3; SHOW transaction_isolation; COMMIT").await.unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("read committed"), "{out}");

    let (ok, out, err) = run("admin-key", "SELECT money").await.unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("0.003500000000") && out.contains("2026-12-01 10:00:00+00"), "{out}");

    let (ok, _, err) = run("admin-key", "fail me").await.unwrap();
    assert!(!ok && err.contains("read-only"), "{err}");
    stop.cancel();
}

mod deadlines {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::time::Instant;

    use super::*;

    const STARTUP: Duration = Duration::from_millis(1500);
    const IDLE: Duration = Duration::from_millis(2000);
    /// How late a close may come on a busy two-core machine.
    const SLACK: Duration = Duration::from_secs(3);

    fn startup_message() -> Vec<u8> {
        let body = b"user\0costplane\0database\0costplane\0\0";
        let mut m = ((8 + body.len()) as i32).to_be_bytes().to_vec();
        m.extend_from_slice(&196_608i32.to_be_bytes()); // protocol 3.0
        m.extend_from_slice(body);
        m
    }

    fn message(kind: u8, text: &str) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&((4 + text.len() + 1) as i32).to_be_bytes());
        m.extend_from_slice(text.as_bytes());
        m.push(0);
        m
    }

    /// Reads backend messages until one of `kind`; fails on an error response.
    async fn read_until(stream: &mut TcpStream, kind: u8) {
        loop {
            let mut head = [0u8; 5];
            stream.read_exact(&mut head).await.unwrap_or_else(|e| panic!("the server closed before '{}': {e}", kind as char));
            let len = i32::from_be_bytes(head[1..5].try_into().unwrap()) as usize - 4;
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body).await.unwrap();
            assert_ne!(head[0], b'E', "error response: {}", String::from_utf8_lossy(&body));
            if head[0] == kind {
                return;
            }
        }
    }

    /// How long after `since` the server closed `stream` (reading and
    /// dropping whatever it still sends).
    async fn closed_after(mut stream: TcpStream, since: Instant) -> Duration {
        let mut buf = [0u8; 1024];
        let wait = async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return since.elapsed(),
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(STARTUP + IDLE + SLACK * 2, wait).await.expect("the server never closed the connection")
    }

    async fn logged_in(addr: SocketAddr) -> TcpStream {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(&startup_message()).await.unwrap();
        read_until(&mut stream, b'R').await; // cleartext password asked for
        stream.write_all(&message(b'p', "admin-key")).await.unwrap();
        read_until(&mut stream, b'Z').await;
        stream
    }

    fn near(what: &str, after: Duration, deadline: Duration) {
        assert!(after + Duration::from_millis(100) >= deadline, "{what}: closed after {after:?}, before its deadline {deadline:?}");
        assert!(after <= deadline + SLACK, "{what}: closed only after {after:?} (deadline {deadline:?})");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_and_slow_clients_are_closed_while_psql_is_served() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, Arc::new(Echo), None, Deadlines { startup: STARTUP, idle: IDLE }, stop.clone()));

        // Never logs in: silent, or half a startup message.
        let silent = TcpStream::connect(addr).await.unwrap();
        let silent_since = Instant::now();
        let mut half = TcpStream::connect(addr).await.unwrap();
        let half_since = Instant::now();
        half.write_all(&startup_message()[..10]).await.unwrap();
        let silent = tokio::spawn(closed_after(silent, silent_since));
        let half = tokio::spawn(closed_after(half, half_since));

        // Logs in, then stays idle.
        let idle = logged_in(addr).await;
        let idle = tokio::spawn(closed_after(idle, Instant::now()));

        // Logs in and runs a statement longer than the idle deadline: it is
        // answered, and the idle clock starts again when it ends.
        let mut busy = logged_in(addr).await;
        busy.write_all(&message(b'Q', "sleep me")).await.unwrap();
        let mut read = [0u8; 5];
        busy.read_exact(&mut read).await.expect("a running statement's connection was closed");
        assert_eq!(read[0], b'T', "row description expected");
        let answered = Instant::now();

        // Meanwhile psql logs in and reads.
        let (ok, out, err) = tokio::task::spawn_blocking(move || psql(addr.port(), "admin-key", "SELECT 1")).await.unwrap();
        assert!(ok && out.contains("engine_saw"), "{err}");

        near("never sent anything", silent.await.unwrap(), STARTUP);
        near("half a startup message", half.await.unwrap(), STARTUP);
        near("logged in, then idle", idle.await.unwrap(), IDLE);
        near("idle after a long statement", closed_after(busy, answered).await, IDLE);
        stop.cancel();
    }
}
