//! How the CLI behaves for a newcomer: pipes into `head` end quietly with
//! status 0, an environment variable the subcommand does not read is an
//! error, a non-costplane answer is named as such, the client commands find
//! the server through `COSTPLANE_HTTP_ADDR` as `serve` does, logs written to
//! a file carry no colour codes.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};

use crate::support::{ServerProcess, BIN};

/// Runs `costplane ARGS | (read `keep` bytes; close)`; the status of costplane.
fn piped_into_a_short_reader(args: &[&str], env: &[(&str, &str)]) -> std::process::ExitStatus {
    let mut child = Command::new(BIN).args(args).envs(env.iter().copied()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout); // the reader goes away, as `head` does
    let out = child.wait_with_output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "{}", String::from_utf8_lossy(&out.stderr));
    out.status
}

#[test]
fn broken_pipes_end_quietly() {
    assert!(piped_into_a_short_reader(&["prices", "list"], &[]).success());
    let server = ServerProcess::start(&[]);
    let addr = server.api.to_string();
    // Enough rows to outgrow the pipe's buffer; the server is found through
    // COSTPLANE_HTTP_ADDR, the name `serve` reads.
    let status = piped_into_a_short_reader(&["sql", "SELECT * FROM range(200000)"], &[("COSTPLANE_HTTP_ADDR", addr.as_str())]);
    assert!(status.success(), "{status:?}");
    // The log went to a file: no ANSI colour codes in it.
    assert!(!server.log_text().contains('\u{1b}'), "{}", server.log_text());
    assert!(server.log_text().contains("costplane is serving"));
}

#[test]
fn unused_environment_variables_are_refused() {
    let out = Command::new(BIN).args(["prices", "list"]).env("COSTPLANE_SERVER", "http://x").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("COSTPLANE_SERVER is set, but `costplane prices list` does not read it"), "{err}");
}

#[test]
fn a_non_costplane_server_is_named_as_such() {
    // Something that answers HTTP, but not as costplane does.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            let body = "<html>hello from nginx</html>";
            let _ = std::io::Write::write_all(
                &mut stream,
                format!("HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
                    .as_bytes(),
            );
        }
    });
    let out = Command::new(BIN).args(["sql", "--server", &format!("http://{addr}"), "SELECT 1"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("that is not a costplane server at http://{addr}")), "{err}");
    // reprice finds the server as `serve` was told (here through the same
    // COSTPLANE_HTTP_ADDR), and says the same.
    let out = Command::new(BIN)
        .args(["reprice", "--from", "2026-10-01", "--to", "2026-11-01", "--dry-run"])
        .env("COSTPLANE_HTTP_ADDR", addr.to_string())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("that is not a costplane server at http://{addr}")), "{err}");
}

#[test]
fn startup_errors_come_before_anything_is_created_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let free = |l: TcpListener| l.local_addr().unwrap().to_string();
    let (g, h) = (free(TcpListener::bind("127.0.0.1:0").unwrap()), free(TcpListener::bind("127.0.0.1:0").unwrap()));
    let serve = |extra: &[&str]| {
        Command::new(BIN)
            .args(["serve", "--data-dir", data.to_str().unwrap(), "--otlp-grpc-addr", &g, "--otlp-http-addr", &h])
            .args(extra)
            .output()
            .unwrap()
    };
    // The API port is taken.
    let out = serve(&["--http-addr", &busy_addr]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&busy_addr), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!data.exists(), "the data directory was created before the port check");
    // A rate that is not a decimal.
    let config = dir.path().join("costplane.toml");
    std::fs::write(&config, "[cost]\ningest_per_gib = \"cheap\"\n").unwrap();
    let out = serve(&["--config", config.to_str().unwrap(), "--http-addr", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ingest_per_gib"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!data.exists(), "the data directory was created before the configuration was checked");
    drop(busy);
}
