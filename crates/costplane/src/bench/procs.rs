//! The processes a benchmark runs (gateways and the chDB front) and what it
//! reads of them from `/proc`.
//!
//! CPU time is `utime + stime` of `/proc/PID/stat`, in clock ticks of
//! `USER_HZ`, which Linux fixes at 100 for what it reports to user space
//! whatever the kernel's own tick rate; peak RSS is `VmHWM` of
//! `/proc/PID/status`. Both cover the gateway process alone: the load
//! generator (this process) and the chDB front are not counted.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// `/proc` reports CPU times in units of USER_HZ, 100 per second on Linux.
const USER_HZ: f64 = 100.0;

/// A loopback address with a port nobody listens on (bound, then freed).
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot bind an ephemeral port")?;
    Ok(l.local_addr()?)
}

/// User plus system CPU seconds the process has used so far.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    cpu_of_stat(&stat).with_context(|| format!("unexpected /proc/{pid}/stat: {stat}"))
}

/// utime and stime are fields 14 and 15; the command name (field 2) is in
/// parentheses and may hold spaces, so fields are counted after its `)`.
fn cpu_of_stat(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// The process's peak resident set (`VmHWM`), in bytes.
pub fn peak_rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("cannot read /proc/{pid}/status"))?;
    hwm_of_status(&status).with_context(|| format!("no VmHWM in /proc/{pid}/status"))
}

fn hwm_of_status(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line["VmHWM:".len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    child: Option<Child>,
    pub name: String,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with its stdout and stderr in `log`, and without the
    /// `COSTPLANE_*` variables of this process's environment (a gateway
    /// refuses names it does not read).
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> anyhow::Result<Proc> {
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("COSTPLANE_") {
                cmd.env_remove(key);
            }
        }
        let out = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
        Ok(Proc { child: Some(child), name: name.to_owned(), log })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The end of its log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Fails when the process has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                bail!("{} exited ({status}); its log ends:\n{}", self.name, self.log_tail());
            }
        }
        Ok(())
    }

    /// Waits until `addr` accepts TCP connections.
    pub fn wait_listening(&mut self, addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} did not listen on {addr} within {timeout:?}; its log ends:\n{}", self.name, self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, up to 30 s to exit, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The chDB front (`tests/support/chdb_front.py`) on a data directory of
/// its own.
pub struct ChdbFront {
    /// Stopped when the front is dropped.
    _proc: Proc,
    pub url: String,
}

impl ChdbFront {
    pub fn start(python: &Path, script: &Path, dir: &Path) -> anyhow::Result<ChdbFront> {
        std::fs::create_dir_all(dir)?;
        let mut cmd = Command::new(python);
        cmd.arg(script).args(["--port", "0", "--quiet", "--data-dir"]).arg(dir);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("COSTPLANE_") {
                cmd.env_remove(key);
            }
        }
        let log = dir.join("front.log");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start the chDB front: {} {}", python.display(), script.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
        let proc = Proc { child: Some(child), name: "chdb-front".into(), log };
        let Some(port) = line.trim().rsplit(':').next().and_then(|p| p.parse::<u16>().ok()) else {
            bail!(
                "the chDB front did not start (said {line:?}); its log ends:\n{}\n(is chdb-core installed for {}?)",
                proc.log_tail(),
                python.display()
            );
        };
        Ok(ChdbFront { _proc: proc, url: format!("http://127.0.0.1:{port}") })
    }

    /// Runs `sql`, answering its text (TabSeparated) and the rows it read
    /// (`X-ClickHouse-Summary`).
    pub async fn query(&self, http: &reqwest::Client, sql: &str) -> anyhow::Result<(String, u64)> {
        self.query_in(http, "default", sql).await
    }

    /// [`ChdbFront::query`] in `database`.
    pub async fn query_in(&self, http: &reqwest::Client, database: &str, sql: &str) -> anyhow::Result<(String, u64)> {
        let resp = http
            .post(&self.url)
            .query(&[("database", database)])
            .body(sql.to_owned())
            .send()
            .await
            .context("cannot reach the chDB front")?;
        let status = resp.status();
        let read_rows = resp
            .headers()
            .get("X-ClickHouse-Summary")
            .and_then(|v| serde_json::from_slice::<serde_json::Value>(v.as_bytes()).ok())
            .and_then(|v| v["read_rows"].as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0);
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("ClickHouse answered {status} to {sql}: {text}");
        }
        Ok((text, read_rows))
    }

    pub async fn count(&self, http: &reqwest::Client, table: &str) -> anyhow::Result<u64> {
        let (text, _) = self.query(http, &format!("SELECT count() FROM {table}")).await?;
        text.trim().parse().with_context(|| format!("unexpected count answer {text:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_and_status_are_read_by_field() {
        // A command name with spaces and a parenthesis, as /proc shows it.
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 9000 0 0 0 250 75 0 0 20 0 8 0 100 0 0";
        // utime 250 + stime 75 ticks = 325 / 100 = 3.25 s.
        assert_eq!(cpu_of_stat(stat), Some(3.25));
        assert_eq!(cpu_of_stat("1 (x) S 1"), None);
        let status = "Name:\tcostplane\nVmPeak:\t  900000 kB\nVmHWM:\t   61440 kB\nVmRSS:\t 1000 kB\n";
        // 61440 KiB = 60 MiB.
        assert_eq!(hwm_of_status(status), Some(60 * 1024 * 1024));
        assert_eq!(hwm_of_status("Name: x\n"), None);
    }

    #[test]
    fn our_own_process_has_cpu_and_rss() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        assert!(peak_rss_bytes(pid).unwrap() > 1024 * 1024);
    }
}
