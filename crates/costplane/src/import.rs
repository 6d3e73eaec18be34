//! `costplane import focus PATH...`: FOCUS bill files (CSV, gzip CSV,
//! Parquet, or a directory read through its AWS/Azure manifests) into the
//! ledger of a running server. Every file is parsed here first, a record at
//! a time (with a progress bar), so a malformed file stops the import before
//! anything is sent; then the files are streamed from disk to `POST
//! /api/v1/import/focus`, which replaces the billing periods and accounts
//! they cover. Neither pass holds a file or its rows: a bill of millions of
//! rows imports in bounded memory. Several files are sent in one import
//! session and committed together: a bill split into parts replaces its
//! periods once, with every part.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use costplane_k8s::focus::{self, ImportOptions};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Subcommand)]
pub enum ImportCommand {
    /// Import FOCUS exports (AWS Data Exports, Azure FocusCost, GCP, any conformant file).
    Focus(FocusArgs),
    /// Import provider cost reports (OpenAI costs, Anthropic cost and usage reports).
    Invoice(crate::reconcile::InvoiceArgs),
}

#[derive(Args)]
pub struct FocusArgs {
    /// Files (.csv, .csv.gz, .parquet) or export directories (with Manifest.json).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Tag naming the tenant of a bill line.
    #[arg(long, default_value = "tenant")]
    tenant_tag: String,
    /// Tag naming the service of a bill line.
    #[arg(long, default_value = "service")]
    service_tag: String,
    /// The running server, as every client subcommand finds it (`--config`,
    /// `--http-addr`, `--server`, `--api-key`: an admin key when keys are
    /// configured).
    #[command(flatten)]
    server: crate::client::ServerArgs,
}

pub async fn run(cmd: ImportCommand) -> anyhow::Result<()> {
    let args = match cmd {
        ImportCommand::Focus(args) => args,
        ImportCommand::Invoice(args) => return crate::reconcile::import(args).await,
    };
    let files = focus::expand(&args.paths)?;
    let total: u64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})").expect("a valid template").progress_chars("=> "),
    );
    bar.set_message("checking");
    let options = ImportOptions { tenant_tag: args.tenant_tag.clone(), service_tag: args.service_tag.clone() };
    // The check: every row parsed, none kept.
    let checked = focus::read_files(&files, &options, |n| bar.inc(n), &mut |_row| Ok(()))?;
    bar.set_position(0);
    bar.set_message("importing");
    let config = args.server.config(Default::default())?;
    let base = args.server.base_url(&config);
    let client = reqwest::Client::new();
    let url = format!("{base}/api/v1/import/focus");
    let reach = || format!("cannot reach {url}; is `costplane serve` running?");
    let session = if files.len() > 1 {
        let open = client.post(format!("{url}/sessions")).header(reqwest::header::CONTENT_TYPE, "application/json").body("{}");
        let resp = args.server.authorize(open).send().await.with_context(reach)?;
        let (status, answer) = crate::client::costplane_json(resp, &base).await?;
        if !status.is_success() {
            bar.abandon();
            bail!("opening an import session failed ({status}): {}", answer["error"].as_str().unwrap_or("unknown error"));
        }
        Some(answer["session"].as_str().context("the server answered no session id")?.to_owned())
    } else {
        None
    };
    // The ledger's figures of the import (after currency conversion), as the
    // server answers them for the last file or the session's commit.
    let mut booked = serde_json::Value::Null;
    for f in &files {
        let mut query =
            vec![("file", f.display().to_string()), ("tenant_tag", args.tenant_tag.clone()), ("service_tag", args.service_tag.clone())];
        if let Some(id) = &session {
            query.push(("session", id.clone()));
        }
        let upload = Upload { url: url.clone(), query, path: f.clone(), api_key: args.server.api_key.clone(), bar: bar.clone() };
        let base_url = base.clone();
        let (status, answer) = tokio::task::spawn_blocking(move || upload.send(&base_url)).await.context("the upload task failed")??;
        if !status.is_success() {
            bar.abandon();
            bail!("importing {} failed ({status}): {}", f.display(), answer["error"].as_str().unwrap_or("unknown error"));
        }
        booked = answer;
    }
    if let Some(id) = &session {
        let commit =
            client.post(format!("{url}/sessions/{id}/commit")).header(reqwest::header::CONTENT_TYPE, "application/json").body("{}");
        let resp = args.server.authorize(commit).send().await.with_context(reach)?;
        let (status, answer) = crate::client::costplane_json(resp, &base).await?;
        if !status.is_success() {
            bar.abandon();
            bail!("committing the import failed ({status}): {}", answer["error"].as_str().unwrap_or("unknown error"));
        }
        booked = answer;
    }
    bar.finish_and_clear();
    println!("imported {} rows from {} file(s)", checked.rows, files.len());
    for (provider, t) in booked["totals"].as_object().into_iter().flatten() {
        let cell = |k: &str| t[k].as_str().unwrap_or("?").to_owned();
        println!("{provider}: BilledCost {} · EffectiveCost {}", cell("billed_cost"), cell("effective_cost"));
    }
    Ok(())
}

/// One file's upload, streamed from disk by the blocking client (a bill
/// file may be larger than memory); the bar moves as the file is read.
struct Upload {
    url: String,
    query: Vec<(&'static str, String)>,
    path: PathBuf,
    api_key: Option<String>,
    bar: ProgressBar,
}

impl Upload {
    fn send(self, base: &str) -> anyhow::Result<(reqwest::StatusCode, serde_json::Value)> {
        use std::io::Read;
        let reading = || format!("reading {}", self.path.display());
        let mut file = std::fs::File::open(&self.path).with_context(reading)?;
        let len = file.metadata().with_context(reading)?.len();
        let mut head = [0u8; 4];
        let n = file.read(&mut head).with_context(reading)?;
        let content_type = if head[..n].starts_with(&[0x1f, 0x8b]) {
            "application/gzip"
        } else if head[..n].starts_with(b"PAR1") {
            "application/vnd.apache.parquet"
        } else {
            "text/csv"
        };
        std::io::Seek::rewind(&mut file).with_context(reading)?;
        let body = reqwest::blocking::Body::sized(Progress { inner: file, bar: self.bar.clone() }, len);
        // No overall timeout: a large bill takes as long as the link needs.
        let client = reqwest::blocking::Client::builder().timeout(None).build()?;
        let mut req = client.post(&self.url).query(&self.query).header(reqwest::header::CONTENT_TYPE, content_type).body(body);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().with_context(|| format!("cannot reach {}; is `costplane serve` running?", self.url))?;
        crate::client::costplane_json_blocking(resp, base)
    }
}

/// A reader that moves the progress bar by what it reads.
struct Progress<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: std::io::Read> std::io::Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}
