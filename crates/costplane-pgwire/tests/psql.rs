//! The endpoint over a fixed backend, driven by the real `psql` (Debian's
//! postgresql-client): login, refused passwords, `\d`, `\dt`, `\d view`,
//! session statements and how statements reach the engine.

use std::net::IpAddr;
use std::process::Command;
use std::sync::Arc;

use costplane_pgwire::{serve, Column, PgError, PgType, Principal, Rows, SqlBackend};
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
    tokio::spawn(serve(listener, Arc::new(Echo), None, stop.clone()));

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
