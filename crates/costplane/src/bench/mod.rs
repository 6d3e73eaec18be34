//! `costplane bench`: the same neutral load against rotel and costplane,
//! side by side in one run, plus the ceilings measured on the same requests.
//!
//! Every target gets the same OTLP/gRPC load (`loadgen`'s spans: 20
//! attributes each, resources with 10, `--batch` spans per request,
//! `--streams` concurrent streams, for `--duration-secs` or `--spans`),
//! sent by this process to a gateway it starts on fresh data:
//! - `rotel-blackhole`: rotel's receive-and-drop ceiling;
//! - `rotel-clickhouse`: rotel's ClickHouse exporter into ClickHouse's
//!   engine (the chDB front), its tables made by its own DDL;
//! - `costplane-embedded`: `costplane serve` on the embedded store;
//! - `costplane-clickhouse`: `costplane serve --store clickhouse`.
//!
//! Per target it prints spans acknowledged, spans stored (counted in the
//! store once the gateway has written what it acknowledged), spans/s
//! acknowledged, the gateway's CPU seconds per million spans from the
//! start of the load until everything is stored, and its peak RSS. The
//! numbers are of the gateway process alone (see `procs.rs`); the load
//! generator and ClickHouse's engine share the machine with it.
//!
//! With `--loads plain,llm` (the default) the costplane targets then take
//! the LLM load too (`llm_load.rs`: every span an LLM call), and a second
//! table sets its CPU seconds per million spans and peak RSS beside the
//! plain load's, as ratios. For costplane targets the measured span ends
//! once the ledger has priced what was stored (a cost API read, which
//! refreshes the open hours first), so the LLM figures include pricing.

mod ceilings;
pub mod ledger;
mod llm_load;
mod procs;
pub mod queries;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use crate::loadgen::{drive, request_pool, Drive, Stamp};
use procs::{cpu_seconds, free_addr, peak_rss_bytes, ChdbFront, Proc};

const ROTEL_TABLES: &str = include_str!("rotel_tables.sql");

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    RotelBlackhole,
    RotelClickhouse,
    CostplaneEmbedded,
    CostplaneClickhouse,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::RotelBlackhole => "rotel --exporter blackhole",
            Target::RotelClickhouse => "rotel --exporter clickhouse",
            Target::CostplaneEmbedded => "costplane, embedded store",
            Target::CostplaneClickhouse => "costplane, ClickHouse",
        }
    }

    fn uses_clickhouse(self) -> bool {
        matches!(self, Target::RotelClickhouse | Target::CostplaneClickhouse)
    }

    fn is_costplane(self) -> bool {
        matches!(self, Target::CostplaneEmbedded | Target::CostplaneClickhouse)
    }
}

/// What the spans of a load are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Load {
    /// HTTP server spans (`loadgen`'s), to every target.
    Plain,
    /// Every span an LLM call (`llm_load.rs`), to the costplane targets.
    Llm,
}

impl Load {
    fn name(self) -> &'static str {
        match self {
            Load::Plain => "plain spans",
            Load::Llm => "LLM calls",
        }
    }
}

/// Where the peers and the chDB front come from.
#[derive(Args, Clone)]
pub struct Tools {
    /// Python with chdb-core (and rotel), which runs the chDB front.
    /// Default: .venv/bin/python when it exists, else python3.
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// The chDB front script.
    #[arg(long, default_value = "tests/support/chdb_front.py")]
    pub chdb_front: PathBuf,
    /// Where data goes (default: a temporary directory, removed afterwards).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

impl Tools {
    pub fn python(&self) -> PathBuf {
        self.python.clone().unwrap_or_else(|| {
            let venv = PathBuf::from(".venv/bin/python");
            if venv.exists() {
                venv
            } else {
                PathBuf::from("python3")
            }
        })
    }

    /// The work directory and, for a temporary one, its guard.
    pub fn work_dir(&self) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
        match &self.work_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                Ok((d.clone(), None))
            }
            None => {
                let t = tempfile::Builder::new().prefix("costplane-bench-").tempdir()?;
                Ok((t.path().to_owned(), Some(t)))
            }
        }
    }
}

fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("'{text}' is not a positive number of spans per second")),
    }
}

#[derive(Args)]
pub struct BenchArgs {
    /// Seconds of load per target.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Spans per target (the load stops at whichever of this and the
    /// duration comes first).
    #[arg(long)]
    spans: Option<u64>,
    /// Spans per export request.
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Concurrent export streams.
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Spans per second to offer (default: as fast as each target
    /// acknowledges), e.g. 10000 for the memory a steady moderate load takes.
    #[arg(long, value_parser = positive_rate)]
    rate: Option<f64>,
    /// Targets, in the order run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "rotel-blackhole,rotel-clickhouse,costplane-embedded,costplane-clickhouse"
    )]
    targets: Vec<Target>,
    /// Loads, in the order run: `plain` to every target, `llm` (every span
    /// an LLM call, four tenants, five models) to the costplane targets.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "plain,llm")]
    loads: Vec<Load>,
    /// Spans each ceiling (decode only, Parquet write only) processes.
    #[arg(long, default_value_t = 500_000)]
    ceiling_spans: u64,
    /// rotel's `rotel-agent` binary (default: the one the Python package
    /// `rotel` ships, found through --python).
    #[arg(long)]
    rotel: Option<PathBuf>,
    /// Longest wait, after the load, for a gateway to store what it acknowledged.
    #[arg(long, default_value_t = 180)]
    settle_secs: u64,
    #[command(flatten)]
    tools: Tools,
}

/// What one target did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub target: Target,
    pub load: Load,
    pub acked: u64,
    /// `None` for the blackhole (it stores nothing).
    pub stored: Option<u64>,
    pub load_secs: f64,
    /// From the start of the load until everything acknowledged was stored.
    pub total_secs: f64,
    pub cpu_secs: f64,
    pub rss_bytes: u64,
    pub retries: u64,
}

impl Outcome {
    fn cpu_per_million(&self) -> f64 {
        self.cpu_secs / self.acked.max(1) as f64 * 1e6
    }
}

/// A gateway under test, and how to count what it stored.
struct Gateway {
    proc: Proc,
    grpc: std::net::SocketAddr,
    front: Option<ChdbFront>,
    /// The table to count in the front, or the costplane API to ask.
    count: Counter,
    /// costplane's API (costplane targets).
    api: Option<String>,
    /// costplane's data directory (costplane targets).
    data_dir: PathBuf,
}

enum Counter {
    Nothing,
    Front(String),
    Api(String),
}

fn rotel_binary(rotel: Option<&Path>, python: &Path) -> anyhow::Result<PathBuf> {
    if let Some(r) = rotel {
        return Ok(r.to_owned());
    }
    let out = Command::new(python)
        .args(["-c", "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))"])
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "the Python package rotel is not installed for {} (pip install rotel, or pass --rotel): {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

async fn start(target: Target, tools: &Tools, rotel: Option<&Path>, dir: &Path, http: &reqwest::Client) -> anyhow::Result<Gateway> {
    std::fs::create_dir_all(dir)?;
    let python = tools.python();
    let front = if target.uses_clickhouse() { Some(ChdbFront::start(&python, &tools.chdb_front, &dir.join("clickhouse"))?) } else { None };
    let grpc = free_addr()?;
    let otlp_http = free_addr()?;
    let mut api_url = None;
    let (cmd, count) = match target {
        Target::RotelBlackhole | Target::RotelClickhouse => {
            let mut cmd = Command::new(rotel_binary(rotel, &python)?);
            cmd.arg("start")
                .args(["--otlp-grpc-endpoint", &grpc.to_string(), "--otlp-http-endpoint", &otlp_http.to_string()])
                .arg("--pid-file")
                .arg(dir.join("rotel.pid"));
            let count = if let Some(front) = &front {
                for stmt in ROTEL_TABLES.split("\n;\n") {
                    let sql: String = stmt.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
                    if !sql.trim().is_empty() {
                        front.query(http, &sql).await.context("creating rotel's tables")?;
                    }
                }
                cmd.args(["--exporter", "clickhouse", "--clickhouse-exporter-endpoint", &front.url]);
                Counter::Front("otel.otel_traces".into())
            } else {
                cmd.args(["--exporter", "blackhole"]);
                Counter::Nothing
            };
            (cmd, count)
        }
        Target::CostplaneEmbedded | Target::CostplaneClickhouse => {
            let api = free_addr()?;
            api_url = Some(format!("http://{api}"));
            let mut cmd = Command::new(std::env::current_exe().context("cannot find the costplane binary")?);
            cmd.arg("serve")
                .arg("--data-dir")
                .arg(dir.join("data"))
                .args(["--otlp-grpc-addr", &grpc.to_string(), "--otlp-http-addr", &otlp_http.to_string()])
                .args(["--http-addr", &api.to_string()])
                .env("COSTPLANE_LOG", "warn");
            let count = if let Some(front) = &front {
                cmd.args(["--store", "clickhouse", "--clickhouse-url", &front.url, "--clickhouse-database", "costplane"]);
                Counter::Front("costplane.otel_traces".into())
            } else {
                Counter::Api(format!("http://{api}"))
            };
            (cmd, count)
        }
    };
    let mut proc = Proc::spawn(target.name(), cmd, dir.join("gateway.log"))?;
    proc.wait_listening(grpc, Duration::from_secs(120))?;
    if let Counter::Api(api) = &count {
        // Listening on gRPC comes before the API answers; the count needs both.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !http.get(format!("{api}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            proc.check_running()?;
            if Instant::now() > deadline {
                bail!("costplane's API did not answer; its log ends:\n{}", proc.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(Gateway { proc, grpc, front, count, api: api_url, data_dir: dir.join("data") })
}

async fn stored(gw: &Gateway, http: &reqwest::Client) -> anyhow::Result<Option<u64>> {
    match &gw.count {
        Counter::Nothing => Ok(None),
        Counter::Front(table) => gw.front.as_ref().context("no front")?.count(http, table).await.map(Some),
        Counter::Api(api) => {
            let resp = http
                .post(format!("{api}/api/v1/sql"))
                .json(&serde_json::json!({ "sql": "SELECT count(*) AS n FROM otel_traces" }))
                .send()
                .await
                .context("cannot reach costplane's API")?;
            let body: serde_json::Value = resp.json().await?;
            body["rows"][0][0].as_u64().map(Some).with_context(|| format!("unexpected count answer {body}"))
        }
    }
}

fn spinner(prefix: String) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix:28} {pos:>10} spans {msg} ({per_sec}, {elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(prefix);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The requests of a load: encoded ones sent round-robin, or (`stamp`)
/// made per request, the pool then giving only their span counts.
#[derive(Clone)]
struct Requests {
    pool: Arc<Vec<(Vec<u8>, u64)>>,
    stamp: Option<Stamp>,
}

/// The LLM load's requests: templates of `batch` calls, stamped with ids
/// of their own and the current time when sent.
fn llm_requests(batch: usize, rng: &mut impl rand::Rng) -> anyhow::Result<Requests> {
    let templates = Arc::new(llm_load::templates(batch, 8, rng)?);
    let pool = Arc::new(templates.iter().map(|t| (Vec::new(), t.calls())).collect());
    let run: u64 = rng.random_range(1..1 << 20);
    let stamp: Stamp = Arc::new(move |i| {
        let t = &templates[(i as usize) % templates.len()];
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
        t.stamp(run, i * t.calls(), |j| now - 1_000_000_000 + j * 1_000)
    });
    Ok(Requests { pool, stamp: Some(stamp) })
}

async fn run_target(target: Target, load: Load, args: &BenchArgs, dir: &Path, requests_of: &Requests) -> anyhow::Result<Outcome> {
    let pool = &requests_of.pool;
    let http = reqwest::Client::new();
    let mut gw = start(target, &args.tools, args.rotel.as_deref(), dir, &http).await?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", gw.grpc))?
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", gw.grpc))?;
    let pid = gw.proc.pid();
    let requests = args.spans.map_or(u64::MAX, |s| s.div_ceil(args.batch as u64));
    let bar = spinner(match load {
        Load::Plain => target.name().to_owned(),
        Load::Llm => format!("{}, LLM", target.name()),
    });
    bar.set_message("acknowledged");
    let cpu0 = cpu_seconds(pid)?;
    let started = Instant::now();
    let plan = Drive {
        streams: args.streams,
        requests,
        until: Some(started + Duration::from_secs(args.duration_secs)),
        auth: None,
        rate: args.rate,
        stamp: requests_of.stamp.clone(),
    };
    let sent = drive(channel, pool.clone(), plan, bar.clone()).await.with_context(|| format!("loading {}", target.name()))?;
    let load_secs = started.elapsed().as_secs_f64();
    bar.set_message("stored");
    let deadline = Instant::now() + Duration::from_secs(args.settle_secs);
    let stored = loop {
        gw.proc.check_running()?;
        let n = stored(&gw, &http).await?;
        bar.set_position(n.unwrap_or(sent.spans));
        match n {
            None => {
                // Nothing to wait for but the queue rotel drops from.
                tokio::time::sleep(Duration::from_millis(500)).await;
                break None;
            }
            Some(n) if n >= sent.spans => break Some(n),
            Some(n) if Instant::now() > deadline => {
                bar.abandon();
                bail!("{}: after {}s the store holds {n} of {} acknowledged spans", target.name(), args.settle_secs, sent.spans);
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    let total_secs = started.elapsed().as_secs_f64();
    if let Some(api) = gw.api.as_deref().filter(|_| target.is_costplane()) {
        // The ledger prices open hours before a cost read answers.
        let resp = http.get(format!("{api}/api/v1/costs?group_by=tenant,model")).send().await.context("cannot reach costplane's API")?;
        if !resp.status().is_success() {
            bail!("{}: the cost API answered {}: {}", target.name(), resp.status(), resp.text().await.unwrap_or_default());
        }
    }
    let cpu_secs = cpu_seconds(pid)? - cpu0;
    let rss_bytes = peak_rss_bytes(pid)?;
    bar.finish_and_clear();
    gw.proc.stop();
    drop(gw.front.take());
    let outcome = Outcome { target, load, acked: sent.spans, stored, load_secs, total_secs, cpu_secs, rss_bytes, retries: sent.retries };
    eprintln!(
        "{:28} {:11} {} spans acknowledged ({} requests retried), {} stored, {:.1} CPU-s per million spans",
        target.name(),
        load.name(),
        outcome.acked,
        outcome.retries,
        outcome.stored.map_or("-".to_owned(), |s| s.to_string()),
        outcome.cpu_per_million()
    );
    Ok(outcome)
}

/// The machine, for the table's caption.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).unwrap_or("unknown CPU").trim();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<u64>().ok()))
        .map_or("?".to_owned(), |kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0));
    format!("{cores} cores of {model}, {mem} RAM")
}

fn print_table(args: &BenchArgs, outcomes: &[Outcome], decode: &ceilings::Ceiling, parquet: &ceilings::Ceiling) {
    println!();
    println!(
        "costplane bench: OTLP/gRPC, {} spans per request (20 attributes per span, 10 per resource), {} streams, {} s per target, {}",
        args.batch,
        args.streams,
        args.duration_secs,
        args.rate.map_or("as fast as acknowledged".to_owned(), |r| format!("{r:.0} spans/s offered"))
    );
    println!("machine: {}", machine());
    println!();
    println!("| target | spans acknowledged | spans stored | spans/s | stored after (s) | CPU-s per million spans | peak RSS (MiB) |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for o in outcomes.iter().filter(|o| o.load == Load::Plain) {
        println!(
            "| {} | {} | {} | {:.0} | {} | {:.1} | {:.0} |",
            o.target.name(),
            o.acked,
            o.stored.map_or("-".to_owned(), |s| s.to_string()),
            o.acked as f64 / o.load_secs.max(1e-9),
            o.stored.map_or("-".to_owned(), |_| format!("{:.1}", o.total_secs)),
            o.cpu_per_million(),
            o.rss_bytes as f64 / 1024.0 / 1024.0
        );
    }
    println!(
        "| ceiling: OTLP decode only (one core) | {} | - | {:.0} | - | {:.1} | - |",
        decode.spans,
        decode.rate(),
        decode.cpu_per_million()
    );
    println!(
        "| ceiling: Parquet write only (one core, zstd, {:.1} MB per million spans) | {} | {} | {:.0} | - | {:.1} | - |",
        parquet.bytes as f64 / 1e6 / parquet.spans.max(1) as f64 * 1e6,
        parquet.spans,
        parquet.spans,
        parquet.rate(),
        parquet.cpu_per_million()
    );
    print_llm_table(outcomes);
    let lost: Vec<&Outcome> = outcomes.iter().filter(|o| o.stored.is_some_and(|s| s != o.acked)).collect();
    for o in lost {
        println!("note: {} ({}) stored {} of {} acknowledged spans", o.target.name(), o.load.name(), o.stored.unwrap_or(0), o.acked);
    }
}

/// The LLM load beside the plain one, per costplane target.
fn print_llm_table(outcomes: &[Outcome]) {
    let llm: Vec<&Outcome> = outcomes.iter().filter(|o| o.load == Load::Llm).collect();
    if llm.is_empty() {
        return;
    }
    println!();
    println!("LLM load: every span an LLM call (input, output and cache-read tokens; 5 models, 4 tenants; 20 attributes per span), beside the plain load");
    println!();
    println!("| store | load | spans acknowledged | spans stored | spans/s | CPU-s per million spans | peak RSS (MiB) |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    let mib = |o: &Outcome| o.rss_bytes as f64 / 1024.0 / 1024.0;
    for o in llm {
        let plain = outcomes.iter().find(|p| p.target == o.target && p.load == Load::Plain);
        for x in plain.into_iter().chain([o]) {
            println!(
                "| {} | {} | {} | {} | {:.0} | {:.1} | {:.0} |",
                x.target.name(),
                x.load.name(),
                x.acked,
                x.stored.map_or("-".to_owned(), |s| s.to_string()),
                x.acked as f64 / x.load_secs.max(1e-9),
                x.cpu_per_million(),
                mib(x)
            );
        }
        if let Some(p) = plain {
            println!(
                "| {} | LLM / plain | - | - | - | {:.2}x | {:.2}x |",
                o.target.name(),
                o.cpu_per_million() / p.cpu_per_million().max(1e-9),
                mib(o) / mib(p).max(1e-9)
            );
        }
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.streams == 0 || args.spans == Some(0) || args.targets.is_empty() || args.loads.is_empty() {
        bail!("--batch, --streams, --spans, --targets and --loads must not be zero or empty");
    }
    let (work, _guard) = args.tools.work_dir()?;
    let mut rng = rand::rng();
    let pool = Arc::new(request_pool(args.batch, "bench", &mut rng));
    let plain = Requests { pool: pool.clone(), stamp: None };
    let llm = if args.loads.contains(&Load::Llm) { Some(llm_requests(args.batch, &mut rng)?) } else { None };
    eprintln!("costplane bench on {}; data in {}", machine(), work.display());
    let mut outcomes = Vec::new();
    for load in &args.loads {
        for (i, target) in args.targets.iter().enumerate() {
            let requests = match (load, &llm) {
                (Load::Plain, _) => &plain,
                (Load::Llm, Some(llm)) if target.is_costplane() => llm,
                (Load::Llm, _) => continue,
            };
            let dir = work.join(format!("{i}-{target:?}-{load:?}").to_lowercase());
            outcomes.push(run_target(*target, *load, &args, &dir, requests).await?);
        }
    }
    eprintln!("measuring the ceilings on one core ({} spans each)...", args.ceiling_spans);
    let decode = ceilings::decode(&pool, args.ceiling_spans)?;
    let parquet = ceilings::parquet_write(&pool, args.ceiling_spans, &work.join("ceiling.parquet"))?;
    print_table(&args, &outcomes, &decode, &parquet);
    Ok(())
}
