//! The `costplane` binary: command-line parsing, logging, and exit codes.
//! Everything else lives in the library crates.

mod bench;
mod client;
mod deadletter;
mod import;
mod insights;
mod litellm;
mod loadgen;
mod prices;
mod reconcile;
mod report;
mod report_html;
mod reprice;
mod sql;
mod telemetry_costs;
mod unit_costs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use costplane_server::{Config, Overrides, Server, ServerError, StoreKind};

#[derive(Parser)]
#[command(name = "costplane", version, about = "The open cost-intelligence plane for OpenTelemetry")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive OTLP telemetry and store it (embedded DuckDB by default).
    Serve(ServeArgs),
    /// Run one read-only SQL query against the store and print the rows.
    Sql(sql::SqlArgs),
    /// Send generated spans to a running server and measure throughput.
    Loadgen(loadgen::LoadgenArgs),
    /// The same load against rotel and costplane side by side, with the
    /// decode and Parquet-write ceilings (needs rotel and chdb-core in Python).
    Bench(bench::BenchArgs),
    /// Query speed over many stored spans (loads them through a server it starts).
    BenchQueries(bench::queries::QueryBenchArgs),
    /// The ledger under a steady LLM load: incremental pricing against
    /// pricing every open hour whole, over an hour of data.
    BenchLedger(bench::ledger::LedgerBenchArgs),
    /// The ClickHouse schema.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// The LLM price catalog.
    #[command(subcommand)]
    Prices(prices::PricesCommand),
    /// Recompute LLM ledger rows of a window with the current prices.
    Reprice(reprice::RepriceArgs),
    /// Load cloud bills and provider invoices into the ledger.
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Estimated LLM cost against the providers' invoices, per provider, model and day.
    Reconcile(reconcile::ReconcileArgs),
    /// What each service's spans, logs and signals cost to keep per month, with what-ifs.
    TelemetryCosts(telemetry_costs::TelemetryCostsArgs),
    /// Cost per request: LLM, compute and telemetry per service and route, customer or operation.
    UnitCosts(unit_costs::UnitCostsArgs),
    /// The month's cost report: HTML with charts, and a PDF of it.
    Report(report::ReportArgs),
    /// Requests the store refused as invalid: list them, replay them.
    #[command(subcommand)]
    Deadletter(deadletter::DeadLetterCommand),
    #[command(flatten)]
    Insights(insights::Command),
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Print the ClickHouse DDL, for review or for DBAs who apply it themselves.
    Print(SchemaPrintArgs),
}

#[derive(Args)]
struct SchemaPrintArgs {
    /// TOML configuration file; its [clickhouse] section shapes the DDL.
    #[arg(long, env = "COSTPLANE_CONFIG")]
    config: Option<PathBuf>,
    /// Cluster name: ON CLUSTER, ReplicatedMergeTree and Distributed tables.
    #[arg(long)]
    cluster: Option<String>,
    /// Database. Default otel.
    #[arg(long)]
    database: Option<String>,
}

fn schema_print(args: SchemaPrintArgs) -> Result<(), ServerError> {
    let mut config = Config::load(args.config.as_deref())?;
    config.apply(Overrides { clickhouse_cluster: args.cluster, clickhouse_database: args.database, ..Overrides::default() })?;
    print!("{}", config.clickhouse.schema_options().script());
    Ok(())
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file (see config/costplane.example.toml).
    #[arg(long, env = "COSTPLANE_CONFIG")]
    config: Option<PathBuf>,
    /// Directory of the embedded store (DIR/costplane.duckdb). Default ./costplane-data.
    #[arg(long, env = "COSTPLANE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Store backend: duckdb (default) or clickhouse.
    #[arg(long, env = "COSTPLANE_STORE")]
    store: Option<StoreKind>,
    /// OTLP/gRPC listen address. Default 127.0.0.1:4317.
    #[arg(long, env = "COSTPLANE_OTLP_GRPC_ADDR")]
    otlp_grpc_addr: Option<SocketAddr>,
    /// OTLP/HTTP listen address. Default 127.0.0.1:4318.
    #[arg(long, env = "COSTPLANE_OTLP_HTTP_ADDR")]
    otlp_http_addr: Option<SocketAddr>,
    /// Health and API listen address. Default 127.0.0.1:8080.
    #[arg(long, env = "COSTPLANE_HTTP_ADDR")]
    http_addr: Option<SocketAddr>,
    /// Largest OTLP request body after decompression, in MiB. Default 20.
    #[arg(long, env = "COSTPLANE_MAX_BODY_MIB")]
    max_body_mib: Option<usize>,
    /// Memory for accepted, not yet stored telemetry, in MiB. Default 256.
    #[arg(long, env = "COSTPLANE_MEMORY_LIMIT_MIB")]
    memory_limit_mib: Option<usize>,
    /// Rows per store write. Default 8192.
    #[arg(long, env = "COSTPLANE_BATCH_MAX_ROWS")]
    batch_max_rows: Option<usize>,
    /// Longest wait before a partial batch is written, e.g. 1s, 200ms. Default 1s.
    #[arg(long, env = "COSTPLANE_FLUSH_INTERVAL")]
    flush_interval: Option<String>,
    /// ClickHouse HTTP interface (with --store clickhouse). Default http://127.0.0.1:8123.
    #[arg(long, env = "COSTPLANE_CLICKHOUSE_URL")]
    clickhouse_url: Option<String>,
    /// ClickHouse user. Default "default".
    #[arg(long, env = "COSTPLANE_CLICKHOUSE_USER")]
    clickhouse_user: Option<String>,
    /// ClickHouse password (prefer --clickhouse-password-file).
    #[arg(long, env = "COSTPLANE_CLICKHOUSE_PASSWORD", hide_env_values = true)]
    clickhouse_password: Option<String>,
    /// File whose first line is the ClickHouse password.
    #[arg(long, env = "COSTPLANE_CLICKHOUSE_PASSWORD_FILE")]
    clickhouse_password_file: Option<PathBuf>,
    /// ClickHouse database. Default otel.
    #[arg(long, env = "COSTPLANE_CLICKHOUSE_DATABASE")]
    clickhouse_database: Option<String>,
    /// ClickHouse cluster name: replicated and distributed tables, DDL ON CLUSTER.
    #[arg(long, env = "COSTPLANE_CLICKHOUSE_CLUSTER")]
    clickhouse_cluster: Option<String>,
    /// A price file whose entries beat the shipped catalog (the same file
    /// `costplane prices check --overrides` reads).
    #[arg(long, env = "COSTPLANE_PRICE_OVERRIDES")]
    overrides: Option<PathBuf>,
}

impl ServeArgs {
    fn resolve(self) -> Result<Config, ServerError> {
        let mut config = Config::load(self.config.as_deref())?;
        config.apply(Overrides {
            data_dir: self.data_dir,
            store: self.store,
            otlp_grpc_addr: self.otlp_grpc_addr,
            otlp_http_addr: self.otlp_http_addr,
            http_addr: self.http_addr,
            max_body_mib: self.max_body_mib,
            memory_limit_mib: self.memory_limit_mib,
            batch_max_rows: self.batch_max_rows,
            flush_interval: self.flush_interval,
            clickhouse_url: self.clickhouse_url,
            clickhouse_user: self.clickhouse_user,
            clickhouse_password: self.clickhouse_password.map(Into::into),
            clickhouse_password_file: self.clickhouse_password_file,
            clickhouse_database: self.clickhouse_database,
            clickhouse_cluster: self.clickhouse_cluster,
            price_overrides: self.overrides,
        })?;
        Ok(config)
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("COSTPLANE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("COSTPLANE_LOG_FORMAT").is_ok_and(|v| v == "json");
    // Colour only for a person at a terminal: logs sent to a file or a
    // collector carry no ANSI codes.
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("received SIGTERM"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn serve(args: ServeArgs) -> Result<(), ServerError> {
    let config = args.resolve()?;
    let server = Server::start(config).await?;
    server.run(shutdown_signal()).await?;
    Ok(())
}

/// Exit codes: 0 success, 1 runtime failure, 2 usage or configuration,
/// 3 store (cannot open, schema too new).
fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Err(msg) = check_environment(&matches, std::env::vars_os().filter_map(|(k, _)| k.into_string().ok())) {
        eprintln!("error: {msg}");
        return ExitCode::from(2);
    }
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result: Result<(), (i32, anyhow::Error)> = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await.map_err(|e| (e.exit_code(), anyhow::Error::new(e))),
            Command::Sql(args) => sql::run(args).await.map_err(|e| (1, e)),
            Command::Loadgen(args) => loadgen::run(args).await.map_err(|e| (1, e)),
            Command::Bench(args) => bench::run(args).await.map_err(|e| (1, e)),
            Command::BenchQueries(args) => bench::queries::run(args).await.map_err(|e| (1, e)),
            Command::BenchLedger(args) => bench::ledger::run(args).await.map_err(|e| (1, e)),
            Command::Prices(cmd) => prices::run(cmd).map_err(|e| (1, e)),
            Command::Reprice(args) => reprice::run(args).await.map_err(|e| (1, e)),
            Command::Import(cmd) => import::run(cmd).await.map_err(|e| (1, e)),
            Command::Reconcile(args) => reconcile::reconcile(args).await.map_err(|e| (1, e)),
            Command::TelemetryCosts(args) => telemetry_costs::run(args).await.map_err(|e| (1, e)),
            Command::UnitCosts(args) => unit_costs::run(args).await.map_err(|e| (1, e)),
            Command::Report(args) => report::run(args).await.map_err(|e| (1, e)),
            Command::Deadletter(cmd) => deadletter::run(cmd).await.map_err(|e| (1, e)),
            Command::Insights(cmd) => insights::run(cmd).await.map_err(|e| (1, e)),
            Command::Schema(SchemaCommand::Print(args)) => schema_print(args).map_err(|e| (e.exit_code(), anyhow::Error::new(e))),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `costplane sql ... | head`: the reader has all it wanted.
        Err((_, e)) if client::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err((code, e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}

/// `COSTPLANE_*` names every subcommand reads (logging).
const GLOBAL_ENV: &[&str] = &["COSTPLANE_LOG", "COSTPLANE_LOG_FORMAT"];

/// Names that belong to costplane's test harness, never to the binary.
fn is_test_harness_name(name: &str) -> bool {
    name.starts_with("COSTPLANE_TEST_") || name == "COSTPLANE_BIN" || name == "COSTPLANE_UPDATE_GOLDEN" || name == "COSTPLANE_BENCH"
}

/// A `COSTPLANE_*` variable the chosen subcommand does not read is an
/// error, not silently ignored: it is a setting the user believes is in
/// force (e.g. `COSTPLANE_SERVER` for `serve`, which listens at
/// `COSTPLANE_HTTP_ADDR`).
fn check_environment(matches: &clap::ArgMatches, names: impl Iterator<Item = String>) -> Result<(), String> {
    let mut cmd = Cli::command();
    let mut m = matches;
    let mut path = vec!["costplane".to_owned()];
    while let Some((name, sub)) = m.subcommand() {
        let Some(next) = cmd.find_subcommand(name).cloned() else { break };
        path.push(name.to_owned());
        cmd = next;
        m = sub;
    }
    let reads: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env())
        .filter_map(|e| e.to_str().map(str::to_owned))
        .chain(GLOBAL_ENV.iter().map(|s| (*s).to_owned()))
        .collect();
    let mut unused: Vec<String> = names.filter(|n| n.starts_with("COSTPLANE_") && !is_test_harness_name(n) && !reads.contains(n)).collect();
    if unused.is_empty() {
        return Ok(());
    }
    unused.sort();
    let mut reads = reads;
    reads.sort();
    reads.dedup();
    Err(format!(
        "{} {} set, but `{}` does not read {}; it reads {}",
        unused.join(", "),
        if unused.len() == 1 { "is" } else { "are" },
        path.join(" "),
        if unused.len() == 1 { "it" } else { "them" },
        reads.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(args: &[&str], env: &[&str]) -> Result<(), String> {
        let matches = Cli::command().try_get_matches_from(args).unwrap();
        check_environment(&matches, env.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn unused_environment_variables_are_errors() {
        assert!(check(&["costplane", "serve"], &["COSTPLANE_HTTP_ADDR", "COSTPLANE_LOG", "PATH"]).is_ok());
        let err = check(&["costplane", "serve"], &["COSTPLANE_SERVER"]).unwrap_err();
        assert!(err.contains("COSTPLANE_SERVER is set, but `costplane serve` does not read it"), "{err}");
        assert!(err.contains("COSTPLANE_HTTP_ADDR"), "{err}");
        // The client commands read the names `serve` reads.
        for cmd in [&["costplane", "sql", "SELECT 1"][..], &["costplane", "loadgen"][..]] {
            assert!(check(cmd, &["COSTPLANE_CONFIG", "COSTPLANE_HTTP_ADDR", "COSTPLANE_API_KEY"]).is_ok(), "{cmd:?}");
        }
        assert!(check(&["costplane", "sql", "SELECT 1"], &["COSTPLANE_DATA_DIR", "COSTPLANE_STORE"]).is_ok());
        let err = check(&["costplane", "prices", "list"], &["COSTPLANE_DATA_DIR", "COSTPLANE_STORE"]).unwrap_err();
        assert!(err.starts_with("COSTPLANE_DATA_DIR, COSTPLANE_STORE are set, but `costplane prices list`"), "{err}");
        let replay = &["costplane", "deadletter", "replay"][..];
        assert!(check(replay, &["COSTPLANE_CONFIG", "COSTPLANE_DATA_DIR", "COSTPLANE_OTLP_HTTP_ADDR"]).is_ok());
        // The test harness's own names pass through.
        assert!(check(&["costplane", "prices", "list"], &["COSTPLANE_TEST_PYTHON", "COSTPLANE_BIN"]).is_ok());
    }
}
