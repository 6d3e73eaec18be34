//! `costplane bench-ledger`: the ledger's closer under a steady LLM load,
//! incremental pricing against pricing every open hour whole, in one run.
//!
//! For each mode (`--modes incremental,whole-hour`) it starts `costplane
//! serve` on fresh data with a config of its own (`[ledger] incremental`,
//! `refresh_secs = --refresh-secs`, 1 by default, so refreshes happen at
//! many fill levels of the hour; `close_after_secs` of a week, so the hour
//! stays open throughout) and sends it the same load over OTLP/gRPC: LLM
//! calls (`llm_load.rs`: four tenants, five models) at `--calls-per-sec`
//! (2,000) of *data time* for `--data-secs` (one hour), `--batch` calls per
//! request. The calls' timestamps are spread evenly over the previous full
//! UTC hour (an LLM call is booked at its own hour when that is within
//! `ledger.llm_event_back_hours` of its receive time), and the hour is
//! sent at `--speedup` times real time (requests paced by their data time;
//! a server slower than that is sent to as fast as it acknowledges).
//!
//! At the end of every window of `--window-secs` data seconds (30), once
//! its calls are acknowledged, it reads the server's `/metrics` (ledger
//! refreshes, refresh seconds, usage rows read, hours priced) and the
//! process's CPU time (`/proc/PID/stat`), and times `--samples` reads of
//! `GET /api/v1/costs?group_by=tenant,model` (p50, p95; the load goes on
//! meanwhile). Once the store holds every call it times the same read
//! again on the quiet server ("end of the hour"), and checks that both
//! modes booked the same cost per tenant and model.
//!
//! It prints a table of the windows, the modes side by side (real seconds
//! the window took, refreshes, refresh seconds, usage rows read per
//! refresh, server CPU, cost read p50 / p95), and a summary per mode: the
//! closer's refresh seconds per window at the start of the hour and at its
//! end and their ratio, ms per refresh, the cost read's p95 at the start
//! and the end (under load) and on the quiet server, usage rows read per
//! refresh, hours priced incrementally and from scratch, CPU and peak RSS;
//! then incremental against whole-hour ratios. "Start" and "end" are the
//! first and last `--edge-windows` windows taken together (a tenth of
//! them by default): compressed in time, a window holds one or two
//! refreshes, and one window alone measures mostly where they fell.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use costplane_server::otlp::grpc::RawCodec;

use super::llm_load::{templates, Template, MODELS, TENANTS};
use super::procs::{cpu_seconds, free_addr, peak_rss_bytes, Proc};

/// How the server prices open hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// `ledger.incremental = true`: each refresh prices the usage written since the last.
    Incremental,
    /// `ledger.incremental = false`: each refresh prices every changed hour whole.
    WholeHour,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Incremental => "incremental",
            Mode::WholeHour => "whole hour",
        }
    }
}

#[derive(Args)]
pub struct LedgerBenchArgs {
    /// LLM calls per second of data time.
    #[arg(long, default_value_t = 2000)]
    calls_per_sec: u64,
    /// Seconds of data time (an hour at most: the calls fall in one hour).
    #[arg(long, default_value_t = 3600)]
    data_secs: u64,
    /// Data seconds sent per real second (0: as fast as acknowledged).
    #[arg(long, default_value_t = 10.0)]
    speedup: f64,
    /// Data seconds per window of the table.
    #[arg(long, default_value_t = 30)]
    window_secs: u64,
    /// Cost reads timed at the end of each window.
    #[arg(long, default_value_t = 5)]
    samples: usize,
    /// LLM calls per export request.
    #[arg(long, default_value_t = 200)]
    batch: usize,
    /// Concurrent export streams.
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// The servers' `ledger.refresh_secs`.
    #[arg(long, default_value_t = 1)]
    refresh_secs: u64,
    /// Modes, in the order run.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "incremental,whole-hour")]
    modes: Vec<Mode>,
    /// Print every Nth window (the first and the last always).
    #[arg(long, default_value_t = 1)]
    print_every: usize,
    /// Windows at each end of the hour the summary compares (default: a
    /// tenth of the windows): a window of compressed time holds few
    /// refreshes, so one window alone is mostly the luck of where they end.
    #[arg(long)]
    edge_windows: Option<usize>,
    /// Real seconds a mode's load may take: past them the load stops where
    /// it is (pricing the whole hour at every refresh may not keep up), and
    /// the table ends at the last window reached.
    #[arg(long, default_value_t = 600)]
    mode_secs: u64,
    /// Longest wait, after the load, for the store to hold every call.
    #[arg(long, default_value_t = 300)]
    settle_secs: u64,
    /// Where data goes (default: a temporary directory, removed afterwards).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// The counters read at one point of a run.
#[derive(Debug, Clone, Copy, Default)]
struct Reading {
    at: f64,
    cpu: f64,
    refreshes: f64,
    refresh_secs: f64,
    rows_read: f64,
    incremental_hours: f64,
    scratch_hours: f64,
}

/// One window of one mode.
#[derive(Debug, Clone)]
struct Window {
    /// Data seconds into the hour at its end.
    data_end: u64,
    /// The counters at its end and at its start.
    end: Reading,
    start: Reading,
    /// The cost reads timed at its end, in ms.
    reads_ms: Vec<f64>,
}

impl Window {
    fn refreshes(&self) -> f64 {
        self.end.refreshes - self.start.refreshes
    }
    fn refresh_secs(&self) -> f64 {
        self.end.refresh_secs - self.start.refresh_secs
    }
    fn rows_per_refresh(&self) -> f64 {
        (self.end.rows_read - self.start.rows_read) / self.refreshes().max(1.0)
    }
    fn p50_p95(&self) -> (f64, f64) {
        percentiles(&mut self.reads_ms.clone())
    }
    fn cpu(&self) -> f64 {
        self.end.cpu - self.start.cpu
    }
    fn real_secs(&self) -> f64 {
        self.end.at - self.start.at
    }
}

/// What one mode did.
struct ModeRun {
    mode: Mode,
    windows: Vec<Window>,
    calls: u64,
    /// Whether the load stopped at `--mode-secs` before the hour was sent.
    stopped: bool,
    load_secs: f64,
    /// The cost read on the quiet server once every call was stored.
    end_p50_ms: f64,
    end_p95_ms: f64,
    total: Reading,
    rss_bytes: u64,
    /// LLM cost per "tenant model", as the cost API answers it.
    booked: BTreeMap<String, String>,
}

impl ModeRun {
    /// The first and the last `edge` windows.
    fn summary(&self, edge: usize) -> Summary {
        let edge = edge.clamp(1, self.windows.len().max(1));
        let first = &self.windows[..edge.min(self.windows.len())];
        let last = &self.windows[self.windows.len().saturating_sub(edge)..];
        Summary { first: Edge::of(first), last: Edge::of(last) }
    }
}

/// Windows at one end of the hour, taken together.
#[derive(Debug, Clone, Copy, Default)]
struct Edge {
    /// Refresh seconds per window.
    closer_secs: f64,
    /// Refresh ms per refresh.
    ms_per_refresh: f64,
    /// Of the cost reads timed at their ends.
    p95_ms: f64,
}

impl Edge {
    fn of(windows: &[Window]) -> Edge {
        if windows.is_empty() {
            return Edge::default();
        }
        let secs: f64 = windows.iter().map(Window::refresh_secs).sum();
        let refreshes: f64 = windows.iter().map(Window::refreshes).sum();
        let mut reads: Vec<f64> = windows.iter().flat_map(|w| w.reads_ms.iter().copied()).collect();
        Edge {
            closer_secs: secs / windows.len() as f64,
            ms_per_refresh: secs * 1e3 / refreshes.max(1.0),
            p95_ms: if reads.is_empty() { 0.0 } else { percentiles(&mut reads).1 },
        }
    }
}

struct Summary {
    first: Edge,
    last: Edge,
}

/// `costplane serve` on `dir`, configured for `mode`.
struct Server {
    proc: Proc,
    grpc: std::net::SocketAddr,
    api: String,
}

async fn start(mode: Mode, args: &LedgerBenchArgs, dir: &Path, http: &reqwest::Client) -> anyhow::Result<Server> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let config = dir.join("costplane.toml");
    std::fs::write(
        &config,
        format!(
            "# costplane bench-ledger, mode {}\n[ledger]\nrefresh_secs = {}\nclose_after_secs = 604800\nincremental = {}\n",
            mode.name(),
            args.refresh_secs,
            mode == Mode::Incremental
        ),
    )
    .with_context(|| format!("cannot write {}", config.display()))?;
    let (grpc, otlp_http, api) = (free_addr()?, free_addr()?, free_addr()?);
    let mut cmd = Command::new(std::env::current_exe().context("cannot find the costplane binary")?);
    cmd.arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--otlp-grpc-addr", &grpc.to_string(), "--otlp-http-addr", &otlp_http.to_string()])
        .args(["--http-addr", &api.to_string()])
        .env("COSTPLANE_LOG", "warn");
    let mut proc = Proc::spawn(&format!("costplane serve ({})", mode.name()), cmd, dir.join("server.log"))?;
    proc.wait_listening(grpc, Duration::from_secs(120))?;
    let api = format!("http://{api}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http.get(format!("{api}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
        proc.check_running()?;
        if Instant::now() > deadline {
            bail!("costplane's API did not answer within 60 s; its log ends:\n{}", proc.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Server { proc, grpc, api })
}

/// The samples of a Prometheus text exposition, by name with labels.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.trim().to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

async fn read(server: &Server, http: &reqwest::Client, started: Instant) -> anyhow::Result<Reading> {
    let cpu = cpu_seconds(server.proc.pid())?;
    let text = http
        .get(format!("{}/metrics", server.api))
        .send()
        .await
        .context("cannot read the server's /metrics")?
        .error_for_status()
        .context("the server's /metrics")?
        .text()
        .await?;
    let m = parse_metrics(&text);
    let get = |k: &str| m.get(k).copied().with_context(|| format!("/metrics has no {k}; is the server older than the ledger's series?"));
    Ok(Reading {
        at: started.elapsed().as_secs_f64(),
        cpu,
        refreshes: get("costplane_ledger_refreshes_total")?,
        refresh_secs: get("costplane_ledger_refresh_seconds_total")?,
        rows_read: get("costplane_ledger_usage_rows_read_total")?,
        incremental_hours: get("costplane_ledger_hours_priced_total{how=\"incremental\"}")?,
        scratch_hours: get("costplane_ledger_hours_priced_total{how=\"scratch\"}")?,
    })
}

const COSTS: &str = "/api/v1/costs?group_by=tenant,model";

/// One cost read: its time in ms and its answer.
async fn cost_read(server: &Server, http: &reqwest::Client) -> anyhow::Result<(f64, serde_json::Value)> {
    let t = Instant::now();
    let resp = http.get(format!("{}{COSTS}", server.api)).send().await.context("cannot reach the cost API")?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.context("the cost API's answer is not JSON")?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if !status.is_success() {
        bail!("the cost API answered {status}: {}", body["error"]);
    }
    Ok((ms, body))
}

/// The times of `samples` cost reads, in ms.
async fn time_reads(server: &Server, http: &reqwest::Client, samples: usize) -> anyhow::Result<Vec<f64>> {
    let mut ms = Vec::with_capacity(samples);
    for _ in 0..samples.max(1) {
        ms.push(cost_read(server, http).await?.0);
    }
    Ok(ms)
}

/// LLM cost per "tenant model" in a cost API answer.
fn booked(answer: &serde_json::Value) -> BTreeMap<String, String> {
    answer["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| MODELS.iter().any(|(_, m)| r["model"].as_str() == Some(*m)))
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("?").to_owned();
            (format!("{} {}", s("tenant"), s("model")), s("cost"))
        })
        .collect()
}

fn percentiles(ms: &mut [f64]) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    let rank = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    (rank(0.50), rank(0.95))
}

async fn stored(server: &Server, http: &reqwest::Client) -> anyhow::Result<u64> {
    let resp = http
        .post(format!("{}/api/v1/sql", server.api))
        .json(&serde_json::json!({ "sql": "SELECT count(*) AS n FROM otel_traces" }))
        .send()
        .await
        .context("cannot reach costplane's API")?;
    let body: serde_json::Value = resp.json().await?;
    body["rows"][0][0].as_u64().with_context(|| format!("unexpected count answer {body}"))
}

/// The start of the previous full UTC hour, in ns.
fn previous_hour_ns() -> anyhow::Result<u64> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    Ok((now / 3600 - 1) * 3600 * 1_000_000_000)
}

/// Sends the hour's calls; `acked` counts requests answered OK.
fn spawn_senders(
    channel: tonic::transport::Channel,
    args: &LedgerBenchArgs,
    templates: Arc<Vec<Template>>,
    hour_ns: u64,
    requests: u64,
    acked: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let step_ns = 1_000_000_000 / args.calls_per_sec.max(1);
    let batch = args.batch as u64;
    // Real seconds per request at the speedup (None: unpaced).
    let pace = (args.speedup > 0.0).then(|| batch as f64 / args.calls_per_sec as f64 / args.speedup);
    let run = hour_ns / 1_000_000_000 % (1 << 20);
    (0..args.streams)
        .map(|_| {
            let (channel, next, acked, templates, stop) = (channel.clone(), next.clone(), acked.clone(), templates.clone(), stop.clone());
            tokio::spawn(async move {
                let mut grpc = tonic::client::Grpc::new(channel);
                let path =
                    tonic::codegen::http::uri::PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export");
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests {
                        return Ok(());
                    }
                    if let Some(pace) = pace {
                        tokio::time::sleep_until((started + Duration::from_secs_f64(i as f64 * pace)).into()).await;
                    }
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    let first = i * batch;
                    let body = templates[(i as usize) % templates.len()].stamp(run, first, |j| hour_ns + (first + j) * step_ns);
                    loop {
                        grpc.ready().await.context("the gRPC channel closed")?;
                        match grpc.unary(tonic::Request::new(body.clone()), path.clone(), RawCodec).await {
                            Ok(_) => break,
                            Err(s) if s.code() == tonic::Code::Unavailable => tokio::time::sleep(Duration::from_millis(50)).await,
                            Err(s) => bail!("export failed: {s}"),
                        }
                    }
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

async fn run_mode(mode: Mode, args: &LedgerBenchArgs, dir: &Path, templates: Arc<Vec<Template>>) -> anyhow::Result<ModeRun> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(600)).build()?;
    let mut server = start(mode, args, dir, &http).await?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc))?
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", server.grpc))?;
    let batch = args.batch as u64;
    let requests = (args.calls_per_sec * args.data_secs).div_ceil(batch);
    let per_window = (args.calls_per_sec * args.window_secs).div_ceil(batch).max(1);
    let windows = requests.div_ceil(per_window);
    let hour_ns = previous_hour_ns()?;
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut last = read(&server, &http, started).await?;
    let first = last;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let senders = spawn_senders(channel, args, templates, hour_ns, requests, acked.clone(), stop.clone());
    let limit = Duration::from_secs(args.mode_secs);
    let mut out = Vec::new();
    eprintln!("{}: {} calls in {requests} requests, {windows} windows of {} data seconds", mode.name(), requests * batch, args.window_secs);
    for k in 0..windows {
        let boundary = ((k + 1) * per_window).min(requests);
        while acked.load(Ordering::Relaxed) < boundary && !senders.iter().all(|s| s.is_finished()) {
            server.proc.check_running()?;
            if started.elapsed() > limit && !stop.swap(true, Ordering::Relaxed) {
                eprintln!("{}: stopping the load after {} s (--mode-secs)", mode.name(), args.mode_secs);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if acked.load(Ordering::Relaxed) < boundary {
            // Stopped, or a sender failed (its error is read below).
            break;
        }
        let reads_ms = time_reads(&server, &http, args.samples).await?;
        let end = read(&server, &http, started).await?;
        let w = Window { data_end: (boundary * batch / args.calls_per_sec.max(1)).min(args.data_secs), end, start: last, reads_ms };
        eprintln!(
            "  {} window {:>3}/{windows}: data {:>4} s at {:>6.1} s, {:>3.0} refreshes, closer {:>6.2} s, {:>8.0} rows read per refresh, CPU {:>5.2} s, cost read p95 {:>7.1} ms",
            mode.name(),
            k + 1,
            w.data_end,
            end.at,
            w.refreshes(),
            w.refresh_secs(),
            w.rows_per_refresh(),
            w.cpu(),
            w.p50_p95().1
        );
        out.push(w);
        last = end;
    }
    for s in senders {
        s.await.context("a sender task panicked")??;
    }
    let load_secs = started.elapsed().as_secs_f64();
    let calls = acked.load(Ordering::Relaxed) * batch;
    let stopped = stop.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(args.settle_secs);
    loop {
        server.proc.check_running()?;
        let n = stored(&server, &http).await?;
        if n >= calls {
            break;
        }
        if Instant::now() > deadline {
            bail!("{}: after {} s the store holds {n} of {calls} acknowledged calls", mode.name(), args.settle_secs);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Until two reads a refresh apart agree, the ledger may still be
    // pricing what was written last.
    let pause = Duration::from_secs(args.refresh_secs) + Duration::from_millis(1500);
    let mut booked_now = booked(&cost_read(&server, &http).await?.1);
    for _ in 0..if stopped { 0 } else { 60 } {
        tokio::time::sleep(pause).await;
        let again = booked(&cost_read(&server, &http).await?.1);
        if again == booked_now {
            break;
        }
        booked_now = again;
    }
    let quiet = if stopped { args.samples } else { args.samples.max(10) };
    let (end_p50_ms, end_p95_ms) = percentiles(&mut time_reads(&server, &http, quiet).await?);
    let total = read(&server, &http, started).await?;
    let total = Reading { at: total.at, ..diff(total, first) };
    let rss_bytes = peak_rss_bytes(server.proc.pid())?;
    server.proc.stop();
    Ok(ModeRun { mode, windows: out, calls, stopped, load_secs, end_p50_ms, end_p95_ms, total, rss_bytes, booked: booked_now })
}

/// `a / b` as printed: "-" when `b` is nothing to divide by (no refresh
/// ended in the windows compared).
fn ratio(a: f64, b: f64, digits: usize) -> String {
    if b > 1e-9 {
        format!("{:.digits$}x", a / b)
    } else {
        "-".to_owned()
    }
}

fn diff(a: Reading, b: Reading) -> Reading {
    Reading {
        at: a.at - b.at,
        cpu: a.cpu - b.cpu,
        refreshes: a.refreshes - b.refreshes,
        refresh_secs: a.refresh_secs - b.refresh_secs,
        rows_read: a.rows_read - b.rows_read,
        incremental_hours: a.incremental_hours - b.incremental_hours,
        scratch_hours: a.scratch_hours - b.scratch_hours,
    }
}

fn print_tables(args: &LedgerBenchArgs, runs: &[ModeRun]) {
    println!();
    println!(
        "costplane bench-ledger: {} LLM calls per data second for {} data seconds ({} tenants, {} models, {} calls per request, {} streams), {}; ledger.refresh_secs = {}; windows of {} data seconds",
        args.calls_per_sec,
        args.data_secs,
        TENANTS,
        MODELS.len(),
        args.batch,
        args.streams,
        if args.speedup > 0.0 { format!("sent at {}x real time", args.speedup) } else { "sent as fast as acknowledged".to_owned() },
        args.refresh_secs,
        args.window_secs
    );
    println!("machine: {}", super::machine());
    println!();
    let mut header = String::from("| window | data time (s) |");
    let mut rule = String::from("|---:|---:|");
    for r in runs {
        let m = r.mode.name();
        header.push_str(&format!(
            " {m}: real s | refreshes | closer s | usage rows read per refresh | server CPU-s | cost read p50 / p95 (ms) |"
        ));
        rule.push_str("---:|---:|---:|---:|---:|---:|");
    }
    println!("{header}");
    println!("{rule}");
    let n = runs.iter().map(|r| r.windows.len()).max().unwrap_or(0);
    for k in 0..n {
        if k != 0 && k + 1 != n && (k + 1) % args.print_every.max(1) != 0 {
            continue;
        }
        let data_end = runs.iter().find_map(|r| r.windows.get(k)).map_or(0, |w| w.data_end);
        let mut line = format!("| {} | {data_end} |", k + 1);
        for r in runs {
            match r.windows.get(k) {
                Some(w) => {
                    let (p50, p95) = w.p50_p95();
                    line.push_str(&format!(
                        " {:.1} | {:.0} | {:.2} | {:.0} | {:.2} | {:.1} / {:.1} |",
                        w.real_secs(),
                        w.refreshes(),
                        w.refresh_secs(),
                        w.rows_per_refresh(),
                        w.cpu(),
                        p50,
                        p95
                    ))
                }
                None => line.push_str(" - | - | - | - | - | - |"),
            }
        }
        println!("{line}");
    }
    let edge = args.edge_windows.unwrap_or(n / 10).max(1);
    println!();
    println!(
        "Summary (first and last: the first and the last {edge} window{} of {} data seconds taken together):",
        if edge == 1 { "" } else { "s" },
        args.window_secs
    );
    println!();
    println!("| mode | calls | load (s) | refreshes | closer s | closer s per window, first | last | last / first | ms per refresh, first | last | usage rows read per refresh | hours priced incrementally / from scratch | server CPU-s | peak RSS (MiB) | cost read p95 (ms), first | last | quiet at the end: p50 / p95 (ms) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in runs {
        let s = r.summary(edge);
        let t = &r.total;
        println!(
            "| {} | {}{} | {:.1} | {:.0} | {:.2} | {:.3} | {:.3} | {} | {:.1} | {:.1} | {:.0} | {:.0} / {:.0} | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} / {:.1} |",
            r.mode.name(),
            r.calls,
            if r.stopped { format!(" (stopped at data second {})", r.windows.last().map_or(0, |w| w.data_end)) } else { String::new() },
            r.load_secs,
            t.refreshes,
            t.refresh_secs,
            s.first.closer_secs,
            s.last.closer_secs,
            ratio(s.last.closer_secs, s.first.closer_secs, 2),
            s.first.ms_per_refresh,
            s.last.ms_per_refresh,
            t.rows_read / t.refreshes.max(1.0),
            t.incremental_hours,
            t.scratch_hours,
            t.cpu,
            r.rss_bytes as f64 / 1024.0 / 1024.0,
            s.first.p95_ms,
            s.last.p95_ms,
            r.end_p50_ms,
            r.end_p95_ms
        );
    }
    let inc = runs.iter().find(|r| r.mode == Mode::Incremental);
    let whole = runs.iter().find(|r| r.mode == Mode::WholeHour);
    if let (Some(i), Some(w)) = (inc, whole) {
        let (si, sw) = (i.summary(edge), w.summary(edge));
        println!();
        println!(
            "incremental / whole hour: closer seconds {} (last windows {}), usage rows read {}, server CPU {}, peak RSS {}, cost read p95 in the last windows {}",
            ratio(i.total.refresh_secs, w.total.refresh_secs, 3),
            ratio(si.last.closer_secs, sw.last.closer_secs, 3),
            ratio(i.total.rows_read, w.total.rows_read, 4),
            ratio(i.total.cpu, w.total.cpu, 2),
            ratio(i.rss_bytes as f64, w.rss_bytes as f64, 2),
            ratio(si.last.p95_ms, sw.last.p95_ms, 3)
        );
        if i.stopped || w.stopped {
            println!("booked costs not compared: a load stopped at --mode-secs before the hour was sent");
        } else if i.booked == w.booked && !i.booked.is_empty() {
            println!("both modes booked the same LLM cost for each of the {} (tenant, model)s", i.booked.len());
        } else {
            println!("note: the modes booked different LLM costs: incremental {:?}, whole hour {:?}", i.booked, w.booked);
        }
    }
}

pub async fn run(args: LedgerBenchArgs) -> anyhow::Result<()> {
    if args.calls_per_sec == 0 || args.data_secs == 0 || args.window_secs == 0 || args.batch == 0 || args.streams == 0 {
        bail!("--calls-per-sec, --data-secs, --window-secs, --batch and --streams must be at least 1");
    }
    if args.data_secs > 3600 {
        bail!("--data-secs is {}; the calls must fall in one hour, so at most 3600", args.data_secs);
    }
    if args.modes.is_empty() {
        bail!("--modes is empty; give incremental, whole-hour or both");
    }
    if !args.speedup.is_finite() || args.speedup < 0.0 {
        bail!("--speedup must be 0 (as fast as acknowledged) or a positive number of data seconds per real second");
    }
    let (work, _guard) = match &args.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new().prefix("costplane-bench-ledger-").tempdir()?;
            (t.path().to_owned(), Some(t))
        }
    };
    let mut rng = rand::rng();
    let templates = Arc::new(templates(args.batch, 16, &mut rng)?);
    eprintln!("costplane bench-ledger on {}; data in {}", super::machine(), work.display());
    let mut runs = Vec::new();
    for (i, mode) in args.modes.iter().enumerate() {
        let dir = work.join(format!("{i}-{mode:?}").to_lowercase());
        runs.push(run_mode(*mode, &args, &dir, templates.clone()).await?);
    }
    print_tables(&args, &runs);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_and_percentiles_are_read_as_printed() {
        let text = "# HELP costplane_ledger_refreshes_total x\n# TYPE costplane_ledger_refreshes_total counter\n\
                    costplane_ledger_refreshes_total 12\ncostplane_ledger_refresh_seconds_total 0.250000\n\
                    costplane_ledger_hours_priced_total{how=\"scratch\"} 3\n";
        let m = parse_metrics(text);
        assert_eq!(m["costplane_ledger_refreshes_total"], 12.0);
        assert_eq!(m["costplane_ledger_refresh_seconds_total"], 0.25);
        assert_eq!(m["costplane_ledger_hours_priced_total{how=\"scratch\"}"], 3.0);
        // Nearest rank: of 1..=20, p50 is the 10th, p95 the 19th.
        let mut ms: Vec<f64> = (1..=20).rev().map(f64::from).collect();
        assert_eq!(percentiles(&mut ms), (10.0, 19.0));
        let mut one = [7.0];
        assert_eq!(percentiles(&mut one), (7.0, 7.0));
    }
}
