//! The `costplane` binary: command-line parsing, logging, and exit codes.
//! Everything else lives in the library crates.

mod deadletter;
mod import;
mod loadgen;
mod prices;
mod reprice;
mod sql;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
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
    /// The ClickHouse schema.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// The LLM price catalog.
    #[command(subcommand)]
    Prices(prices::PricesCommand),
    /// Recompute LLM ledger rows of a window with the current prices.
    Reprice(reprice::RepriceArgs),
    /// Load cloud bills into the ledger.
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Requests the store refused as invalid: list them, replay them.
    #[command(subcommand)]
    Deadletter(deadletter::DeadLetterCommand),
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
            clickhouse_password: self.clickhouse_password,
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
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
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
    let store = costplane_server::open_store(&config).await?;
    let server = Server::bind(config, store).await?;
    server.run(shutdown_signal()).await?;
    Ok(())
}

/// Exit codes: 0 success, 1 runtime failure, 2 usage or configuration,
/// 3 store (cannot open, schema too new).
fn main() -> ExitCode {
    let cli = Cli::parse();
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
            Command::Prices(cmd) => prices::run(cmd).map_err(|e| (1, e)),
            Command::Reprice(args) => reprice::run(args).await.map_err(|e| (1, e)),
            Command::Import(cmd) => import::run(cmd).await.map_err(|e| (1, e)),
            Command::Deadletter(cmd) => deadletter::run(cmd).await.map_err(|e| (1, e)),
            Command::Schema(SchemaCommand::Print(args)) => schema_print(args).map_err(|e| (e.exit_code(), anyhow::Error::new(e))),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}
