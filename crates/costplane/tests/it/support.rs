//! Starting and stopping a real `costplane serve` for a test.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_costplane");

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr")
}

pub struct ServerProcess {
    child: Option<Child>,
    pub grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub api: SocketAddr,
    pub data_dir: tempfile::TempDir,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `costplane serve` with `extra` flags and waits for /healthz.
    pub fn start(extra: &[&str]) -> ServerProcess {
        ServerProcess::start_in(tempfile::tempdir().expect("temp dir"), extra)
    }

    /// Starts `costplane serve` on an existing data directory (a restart).
    /// A port another test took between `free_addr` and the server's bind
    /// is tried again on fresh ports.
    pub fn start_in(data_dir: tempfile::TempDir, extra: &[&str]) -> ServerProcess {
        let mut data_dir = data_dir;
        for _ in 0..4 {
            let mut server = ServerProcess::spawn(data_dir, extra);
            match server.wait_healthy() {
                Ok(()) => return server,
                Err(log) if log.contains("Address already in use") => data_dir = server.kill9(),
                Err(log) => panic!("costplane serve did not become healthy; log:\n{log}"),
            }
        }
        panic!("costplane serve found its ports taken four times");
    }

    /// Starts `costplane serve` and waits for its "serving" log line
    /// (for listeners that speak TLS, where `/healthz` is not plain HTTP).
    pub fn start_logged(data_dir: tempfile::TempDir, extra: &[&str]) -> ServerProcess {
        let server = ServerProcess::spawn(data_dir, extra);
        wait_until(|| server.log_text().contains("costplane is serving"), "the server to start");
        server
    }

    fn spawn(data_dir: tempfile::TempDir, extra: &[&str]) -> ServerProcess {
        let (grpc, otlp_http, api) = (free_addr(), free_addr(), free_addr());
        let log = data_dir.path().join(format!("server-{}.log", rand::random::<u32>()));
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(["--otlp-grpc-addr", &grpc.to_string(), "--otlp-http-addr", &otlp_http.to_string()])
            .args(["--http-addr", &api.to_string()])
            .args(if extra.contains(&"--flush-interval") { &[][..] } else { &["--flush-interval", "100ms"][..] })
            .args(extra)
            .env("COSTPLANE_LOG", "info,costplane=debug")
            // The tests' own switch: the server refuses COSTPLANE_ variables
            // it does not read.
            .env_remove("COSTPLANE_SOAK")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn costplane serve");
        ServerProcess { child: Some(child), grpc, otlp_http, api, data_dir, log }
    }

    /// Waits for `/healthz`; the log if the server exited or never answered.
    fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("http://{}/healthz", self.api);
        while Instant::now() < deadline {
            if let Ok(r) = reqwest::blocking::get(&url) {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some()) {
                return Err(self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(self.log_text())
    }

    /// The server's process id (while it runs).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process with SIGKILL (no drain, no cleanup) and hands back
    /// its data directory for a restart.
    pub fn kill9(mut self) -> tempfile::TempDir {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9");
            child.wait().expect("wait");
        }
        std::mem::replace(&mut self.data_dir, tempfile::tempdir().expect("temp dir"))
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "costplane did not exit after SIGTERM; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `costplane sql --format json` against this server (or its data
    /// directory, once it has stopped).
    pub fn sql(&self, query: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
        let out = Command::new(BIN)
            .args(["sql", "--format", "json", "--server", &format!("http://{}", self.api), "--data-dir"])
            .arg(self.data_dir.path())
            .arg(query)
            .output()
            .expect("run costplane sql");
        assert!(out.status.success(), "costplane sql failed: {}\nserver log:\n{}", String::from_utf8_lossy(&out.stderr), self.log_text());
        serde_json::from_slice(&out.stdout).expect("sql --format json prints JSON")
    }

    /// One OTLP/HTTP export (`path` like "/v1/traces") to this server.
    pub fn export(&self, path: &str, content_type: &str, body: Vec<u8>) -> reqwest::blocking::Response {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
            .post(format!("http://{}{path}", self.otlp_http))
            .header("content-type", content_type)
            .body(body)
            .send()
            .expect("an OTLP/HTTP export")
    }

    pub fn count(&self, table: &str) -> u64 {
        let rows = self.sql(&format!("SELECT count(*) AS n FROM {table}"));
        rows[0]["n"].as_u64().expect("count is a number")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `done` until it holds, failing the test after two minutes.
pub fn wait_until(mut done: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs one statement on ClickHouse's HTTP interface; the trimmed answer.
pub fn query_clickhouse(url: &str, database: &str, sql: &str) -> String {
    let resp = reqwest::blocking::Client::new().post(url).query(&[("database", database)]).body(sql.to_owned()).send().unwrap();
    assert!(resp.status().is_success(), "{sql}: {}", resp.text().unwrap_or_default());
    resp.text().unwrap().trim().to_owned()
}

/// `serve` flags for the ClickHouse store at `target`, followed by `extra`.
pub fn clickhouse_args<'a>(target: &'a costplane_testkit::ClickHouseTarget, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--store", "clickhouse", "--clickhouse-url", &target.url, "--clickhouse-database", &target.database];
    args.extend_from_slice(extra);
    args
}

/// An OTLP/protobuf logs request of `n` records with bodies
/// `r<request>-<i><pad>` (distinct per request and record) at times in
/// 2030, inside every TTL, so every store keeps them.
pub fn logs_request(request: u64, n: u64, pad: &str) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use prost::Message;
    let records = (0..n)
        .map(|i| LogRecord {
            time_unix_nano: 1_893_456_000_000_000_000 + request * 1_000 + i,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue { value: Some(any_value::Value::StringValue(format!("r{request}-{i}{pad}"))) }),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// ClickHouse's engine on a directory of its own, which a test stops
/// (`kill`, an outage) and starts again on the same data and port
/// (`restart`), so a running server finds it back. Shared while stopped and
/// started (the server's flags borrow its target), hence the cell.
pub struct StoppableClickHouse {
    dir: tempfile::TempDir,
    front: std::cell::RefCell<costplane_testkit::ChdbFront>,
    pub target: costplane_testkit::ClickHouseTarget,
}

impl StoppableClickHouse {
    pub fn start() -> StoppableClickHouse {
        let dir = tempfile::tempdir().expect("temp dir");
        let front = costplane_testkit::ChdbFront::start(dir.path(), 0);
        let target = costplane_testkit::ClickHouseTarget::new_with_url(front.url());
        StoppableClickHouse { dir, front: std::cell::RefCell::new(front), target }
    }

    pub fn kill(&self) {
        self.front.borrow_mut().kill();
    }

    pub fn restart(&self) {
        let port = self.front.borrow().port;
        *self.front.borrow_mut() = costplane_testkit::ChdbFront::start(self.dir.path(), port);
    }

    /// One statement's trimmed answer.
    pub fn query(&self, sql: &str) -> String {
        query_clickhouse(&self.front.borrow().url(), &self.target.database, sql)
    }
}

/// A costplane config file holding `toml`, removed when dropped.
pub fn config_file(toml: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), toml).expect("write the config");
    file
}
