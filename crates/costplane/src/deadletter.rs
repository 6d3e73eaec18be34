//! `costplane deadletter list|replay`: the requests the store refused.
//!
//! Replay re-sends each file's body as an ordinary OTLP/HTTP export to a
//! running server (the same path as any client), and deletes the file once
//! the server has accepted it. Run it after fixing what the store objected
//! to (the `error` each file records).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use costplane_pipeline::deadletter;
use costplane_server::{Config, Overrides};

#[derive(Subcommand)]
pub enum DeadLetterCommand {
    /// List dead-lettered requests: when, whose, what, and the store's error.
    List(ListArgs),
    /// Send dead-lettered requests to a running server again; each file is
    /// deleted once accepted.
    Replay(ReplayArgs),
}

/// Where the server keeps its data, read as `serve` reads it.
#[derive(Args)]
pub struct DataArgs {
    /// TOML configuration file (the one `serve` uses).
    #[arg(long, env = "COSTPLANE_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory of the server (its dead letters are in DIR/dead-letter). Default ./costplane-data.
    #[arg(long, env = "COSTPLANE_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl DataArgs {
    fn config(&self, overrides: Overrides) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        config.apply(Overrides { data_dir: self.data_dir.clone(), ..overrides })?;
        Ok(config)
    }
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The server's OTLP/HTTP listen address, as given to `serve` (default
    /// from the config file, else 127.0.0.1:4318).
    #[arg(long, env = "COSTPLANE_OTLP_HTTP_ADDR")]
    otlp_http_addr: Option<std::net::SocketAddr>,
    /// The server's OTLP/HTTP endpoint as a URL (beats --otlp-http-addr).
    #[arg(long)]
    otlp_http: Option<String>,
    /// Only these files (default: all).
    files: Vec<PathBuf>,
}

pub async fn run(cmd: DeadLetterCommand) -> anyhow::Result<()> {
    match cmd {
        DeadLetterCommand::List(args) => list(args),
        DeadLetterCommand::Replay(args) => replay(args).await,
    }
}

fn list(args: ListArgs) -> anyhow::Result<()> {
    let dir = args.data.config(Overrides::default())?.data_dir.join("dead-letter");
    let letters = deadletter::list(&dir).with_context(|| format!("reading {}", dir.display()))?;
    if args.json {
        for l in &letters {
            let mut v = serde_json::to_value(&l.header)?;
            v["file"] = serde_json::Value::String(l.path.display().to_string());
            println!("{v}");
        }
        return Ok(());
    }
    if letters.is_empty() {
        println!("no dead-lettered requests in {}", dir.display());
        return Ok(());
    }
    println!("{:<26} {:<8} {:<16} {:>8} {:<12} {:<44} error", "dead-lettered at", "signal", "tenant", "items", "reason", "file");
    for l in &letters {
        let h = &l.header;
        let file = l.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let error: String = h.error.chars().take(160).collect();
        println!(
            "{:<26} {:<8} {:<16} {:>8} {:<12} {:<44} {}",
            h.dead_lettered_at,
            h.signal,
            h.tenant,
            h.items,
            h.reason.as_str(),
            file,
            error.replace('\n', " ")
        );
    }
    println!("{} request(s); replay them with `costplane deadletter replay` once the cause is fixed", letters.len());
    Ok(())
}

async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let config = args.data.config(Overrides { otlp_http_addr: args.otlp_http_addr, ..Overrides::default() })?;
    let dir = config.data_dir.join("dead-letter");
    let paths: Vec<PathBuf> = if args.files.is_empty() {
        deadletter::list(&dir).with_context(|| format!("reading {}", dir.display()))?.into_iter().map(|l| l.path).collect()
    } else {
        args.files
    };
    let http = reqwest::Client::new();
    let base = match &args.otlp_http {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let mut addr = config.otlp.http_addr;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        }
    };
    let (mut sent, mut failed) = (0usize, 0usize);
    for path in paths {
        let (header, body) = deadletter::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let Some(signal) = header.signal() else {
            bail!("{}: unknown signal '{}'", path.display(), header.signal);
        };
        let url = format!("{base}/v1/{}", signal.as_str());
        let resp = http
            .post(&url)
            .header("content-type", header.content_type())
            .body(body)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}; is `costplane serve` running there (--otlp-http)?"))?;
        let status = resp.status();
        if status.is_success() {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            println!("replayed {} ({} {}, tenant {})", path.display(), header.items, signal.item_name(), header.tenant);
            sent += 1;
        } else {
            let text = resp.text().await.unwrap_or_default();
            eprintln!("{}: the server answered {status}: {}", path.display(), text.trim());
            failed += 1;
        }
    }
    println!("{sent} replayed, {failed} failed");
    if failed > 0 {
        bail!("{failed} request(s) were not accepted; they stay in {}", dir.display());
    }
    Ok(())
}
