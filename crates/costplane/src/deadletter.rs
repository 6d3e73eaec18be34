//! `costplane deadletter list|replay`: the requests the store refused.
//!
//! Replay re-sends each file's body as an ordinary OTLP/HTTP export to a
//! running server (the same path as any client), and deletes the file once
//! the server has accepted it. Run it after fixing what the store objected
//! to (the `error` each file records).
//!
//! A request goes out as the sender recorded with it, never as its body
//! says: one that came with an ingest key is sent with a key of the server's
//! config (`--config`) pinning the same tenant, project and trust in
//! provided costs, so the server bills it where it was first accepted and
//! believes its `cost.usd` only if it did then. A request no configured key
//! can send that way is left in place with the reason. Files from before
//! senders were kept are sent as they always were, with a warning.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use costplane_pipeline::deadletter::{self, DeadLetterHeader, RecordedSender};
use costplane_pipeline::Sender;
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
    /// Send with this ingest key (one of the config's `[[ingest.keys]]`):
    /// only requests accepted from its sender are replayed, the others are
    /// left. Default: each request with the configured key of its sender.
    #[arg(long, env = "COSTPLANE_INGEST_KEY", hide_env_values = true)]
    ingest_key: Option<String>,
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
    println!(
        "{:<26} {:<8} {:<16} {:<24} {:>8} {:<12} {:<44} error",
        "dead-lettered at", "signal", "tenant", "sender", "items", "reason", "file"
    );
    for l in &letters {
        let h = &l.header;
        let file = l.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let error: String = h.error.chars().take(160).collect();
        println!(
            "{:<26} {:<8} {:<16} {:<24} {:>8} {:<12} {:<44} {}",
            h.dead_lettered_at,
            h.signal,
            h.tenant,
            describe(h.sender.as_ref()),
            h.items,
            h.reason.as_str(),
            file,
            error.replace('\n', " ")
        );
    }
    println!("{} request(s); replay them with `costplane deadletter replay` once the cause is fixed", letters.len());
    Ok(())
}

/// A sender in one short phrase, for the list and for messages.
fn describe(sender: Option<&RecordedSender>) -> String {
    match sender {
        None => "unrecorded".to_owned(),
        Some(RecordedSender::Open) => "open ingest".to_owned(),
        Some(RecordedSender::Key { tenant, project, trust_provided_cost }) => {
            let project = project.as_deref().map(|p| format!("/{p}")).unwrap_or_default();
            let trust = if *trust_provided_cost { ", costs trusted" } else { "" };
            format!("key of {tenant}{project}{trust}")
        }
    }
}

/// What replay does with one file.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Send it, with this ingest key (none: ingest is open); say `warning` first.
    Send { key: Option<String>, warning: Option<String> },
    /// Not for the `--ingest-key` given: left for its own sender's key.
    Leave(String),
    /// It cannot be sent as its sender: left, and the replay fails.
    Refuse(String),
}

/// How to send a file recorded as `header` says, with the config's ingest
/// `keys` (secret and whom it pins) and the `--ingest-key` given, if any.
fn plan(header: &DeadLetterHeader, keys: &[(String, Sender)], given: Option<&(String, Sender)>) -> Plan {
    let other_key = |how: &str| {
        let given = given.map_or_else(String::new, |(_, s)| s.tenant.clone());
        Plan::Leave(format!("{how}, and --ingest-key is {given}'s"))
    };
    match &header.sender {
        Some(recorded @ RecordedSender::Key { tenant, .. }) => {
            let sender = recorded.key().unwrap_or_else(|| unreachable!("a key sender has a key"));
            if keys.is_empty() {
                return Plan::Refuse(format!(
                    "accepted with {tenant}'s ingest key, but the config has no [[ingest.keys]]: sent without one, the server \
                     would bill the tenant the body names and believe its costs; run with the server's --config"
                ));
            }
            match given {
                Some((key, s)) if *s == sender => Plan::Send { key: Some(key.clone()), warning: None },
                Some(_) => other_key(&format!("accepted with the {}", describe(Some(recorded)))),
                None => match keys.iter().find(|(_, s)| *s == sender) {
                    Some((key, _)) => Plan::Send { key: Some(key.clone()), warning: None },
                    None => Plan::Refuse(format!(
                        "accepted with the {}, and no [[ingest.keys]] entry of the config pins that tenant, project and \
                         trust_provided_cost any more; add one back (or its old settings) and replay again",
                        describe(Some(recorded))
                    )),
                },
            }
        }
        Some(RecordedSender::Open) => match given {
            // Accepted while ingest was open, for the tenant its body named:
            // a key of that tenant pins the same one.
            Some((key, s)) if s.tenant == header.tenant => Plan::Send { key: Some(key.clone()), warning: None },
            Some(_) => other_key(&format!("accepted for tenant {} while ingest was open", header.tenant)),
            None if keys.is_empty() => Plan::Send { key: None, warning: None },
            None => Plan::Refuse(format!(
                "accepted while ingest was open, for tenant {}; the server now needs a key: replay it with \
                 --ingest-key set to a key of tenant {}",
                header.tenant, header.tenant
            )),
        },
        None => {
            // Written before the sender was kept: sent as it always was.
            if given.is_some_and(|(_, s)| s.tenant != header.tenant) {
                return other_key(&format!("accepted for tenant {}", header.tenant));
            }
            let (key, billed) = match given {
                Some((key, s)) => (Some(key.clone()), format!("with --ingest-key, to its tenant {}", s.tenant)),
                None if keys.is_empty() => (None, "without a key, to the tenants its body names, costs it carries believed".to_owned()),
                None => (None, "without a key, which the server refuses while it has ingest keys".to_owned()),
            };
            let warning = format!(
                "this file does not record which key sent it (costplane wrote it before senders were kept); it is sent \
                 {billed}. It was accepted for tenant {}: to bill it there, with that key's trust in provided costs, \
                 replay it as `costplane deadletter replay --ingest-key <a key of tenant {}> <file>`",
                header.tenant, header.tenant
            );
            Plan::Send { key, warning: Some(warning) }
        }
    }
}

async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let config = args.data.config(Overrides { otlp_http_addr: args.otlp_http_addr, ..Overrides::default() })?;
    let dir = config.data_dir.join("dead-letter");
    let keys: Vec<(String, Sender)> = config
        .ingest
        .keys
        .iter()
        .filter_map(|k| {
            let sender = Sender { tenant: k.tenant.clone(), project: k.project.clone(), trust_provided_cost: k.trust_provided_cost };
            k.key.as_ref().map(|secret| (secret.expose().to_owned(), sender))
        })
        .collect();
    let given = match &args.ingest_key {
        None => None,
        Some(key) => match keys.iter().find(|(k, _)| k == key.trim()) {
            Some(found) => Some(found.clone()),
            // Whose key it is decides where the rows go; unknown, it could be anyone's.
            None => bail!(
                "--ingest-key is not one of the [[ingest.keys]] of the config read ({}); give the server's config with --config, \
                 so that each request is sent only with its own sender's key",
                args.data.config.as_ref().map_or_else(|| "none".to_owned(), |p| p.display().to_string())
            ),
        },
    };
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
    let (mut sent, mut left, mut failed) = (0usize, 0usize, 0usize);
    for path in paths {
        let (header, body) = deadletter::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let Some(signal) = header.signal() else {
            bail!("{}: unknown signal '{}'", path.display(), header.signal);
        };
        let key = match plan(&header, &keys, given.as_ref()) {
            Plan::Send { key, warning } => {
                if let Some(w) = warning {
                    eprintln!("warning: {}: {w}", path.display());
                }
                key
            }
            Plan::Leave(why) => {
                println!("left {}: {why}", path.display());
                left += 1;
                continue;
            }
            Plan::Refuse(why) => {
                eprintln!("{}: not replayed: {why}", path.display());
                failed += 1;
                continue;
            }
        };
        let url = format!("{base}/v1/{}", signal.as_str());
        let mut request = http.post(&url).header("content-type", header.content_type()).body(body);
        if let Some(key) = &key {
            request = request.bearer_auth(key);
        }
        let resp =
            request.send().await.with_context(|| format!("cannot reach {url}; is `costplane serve` running there (--otlp-http)?"))?;
        let status = resp.status();
        if status.is_success() {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            println!(
                "replayed {} ({} {}, tenant {}, {})",
                path.display(),
                header.items,
                signal.item_name(),
                header.tenant,
                describe(header.sender.as_ref())
            );
            sent += 1;
        } else {
            let text = resp.text().await.unwrap_or_default();
            eprintln!("{}: the server answered {status}: {}", path.display(), text.trim());
            failed += 1;
        }
    }
    println!("{sent} replayed, {left} left for other keys, {failed} failed");
    if failed > 0 {
        bail!("{failed} request(s) were not accepted; they stay in {}", dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use costplane_pipeline::deadletter::DeadLetterReason;

    fn sender(tenant: &str, trust: bool) -> Sender {
        Sender { tenant: tenant.into(), project: None, trust_provided_cost: trust }
    }

    fn header(tenant: &str, sender: Option<RecordedSender>) -> DeadLetterHeader {
        DeadLetterHeader {
            signal: "traces".into(),
            encoding: "protobuf".into(),
            tenant: tenant.into(),
            sender,
            received_at: String::new(),
            dead_lettered_at: String::new(),
            reason: DeadLetterReason::Rejected,
            error: String::new(),
            items: 1,
            body_bytes: 1,
        }
    }

    fn key(tenant: &str, trust: bool) -> Option<RecordedSender> {
        Some(RecordedSender::of(Some(&sender(tenant, trust))))
    }

    fn sends_with(p: Plan) -> Option<String> {
        match p {
            Plan::Send { key, .. } => key,
            other => panic!("not sent: {other:?}"),
        }
    }

    #[test]
    fn a_request_goes_out_only_with_its_own_senders_key() {
        let keys = vec![("acme-key".to_owned(), sender("acme", false)), ("globex-key".to_owned(), sender("globex", true))];
        let from_acme = header("acme", key("acme", false));
        assert_eq!(sends_with(plan(&from_acme, &keys, None)).as_deref(), Some("acme-key"));
        assert_eq!(sends_with(plan(&from_acme, &keys, Some(&keys[0]))).as_deref(), Some("acme-key"));
        assert!(matches!(plan(&from_acme, &keys, Some(&keys[1])), Plan::Leave(_)));
        // The key's trust changed since: no key sends it as it was sent.
        let trusted_acme = header("acme", key("acme", true));
        assert!(matches!(plan(&trusted_acme, &keys, None), Plan::Refuse(m) if m.contains("trust_provided_cost")));
        // No keys in the config read: sending without one would believe the body.
        assert!(matches!(plan(&from_acme, &[], None), Plan::Refuse(m) if m.contains("--config")));
    }

    #[test]
    fn open_and_unrecorded_requests_are_sent_as_before() {
        let keys = vec![("acme-key".to_owned(), sender("acme", false)), ("globex-key".to_owned(), sender("globex", true))];
        let open = header("acme", Some(RecordedSender::Open));
        assert_eq!(sends_with(plan(&open, &[], None)), None);
        assert!(matches!(plan(&open, &keys, None), Plan::Refuse(m) if m.contains("--ingest-key")));
        assert_eq!(sends_with(plan(&open, &keys, Some(&keys[0]))).as_deref(), Some("acme-key"));
        assert!(matches!(plan(&open, &keys, Some(&keys[1])), Plan::Leave(_)));
        let old = header("acme", None);
        match plan(&old, &keys, None) {
            Plan::Send { key: None, warning: Some(w) } => assert!(w.contains("--ingest-key <a key of tenant acme>"), "{w}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(sends_with(plan(&old, &keys, Some(&keys[0]))).as_deref(), Some("acme-key"));
        assert!(matches!(plan(&old, &keys, Some(&keys[1])), Plan::Leave(_)));
    }
}
