//! Server lifecycle: bind, serve, and drain on shutdown.
//!
//! Shutdown order (the durability promise of `serve`): stop accepting new
//! connections and requests → let in-flight requests finish (their batches
//! enter the pipeline) → close the pipeline and write everything it holds →
//! return. Only then does the process exit 0.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use costplane_pipeline::{Pipeline, StatsSnapshot};
use costplane_store::clickhouse::ClickHouseStore;
use costplane_store::duckdb::DuckDbStore;
use costplane_store::{Store, StoreError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState};
use crate::config::{Config, StoreKind};
use crate::costs::metrics::MetricsCache;
use crate::costs::CostState;
use crate::error::ServerError;
use crate::kubernetes::KubernetesMetering;
use crate::otlp::inflight::InflightLimit;
use crate::otlp::{grpc, http, Ingest};

/// How long in-flight requests get to finish once shutdown starts.
const REQUEST_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens the configured store (for ClickHouse: connects and creates or
/// upgrades the schema).
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, ServerError> {
    match config.store {
        StoreKind::Duckdb => {
            let store = DuckDbStore::open(&config.data_dir)?;
            tracing::info!(path = %store.path().display(), "opened the embedded DuckDB store");
            Ok(Arc::new(store))
        }
        StoreKind::Clickhouse => {
            let ch = config.clickhouse.store_config().map_err(ServerError::Config)?;
            let (url, database) = (ch.url.clone(), ch.schema.database.clone());
            let store = ClickHouseStore::connect(ch).await.map_err(|e| match e {
                StoreError::Unavailable(m) => {
                    ServerError::Store(StoreError::Unavailable(format!("{m}; check --clickhouse-url and that the server is up")))
                }
                other => ServerError::Store(other),
            })?;
            tracing::info!(%url, %database, "connected to ClickHouse");
            Ok(Arc::new(store))
        }
    }
}

/// A bound, not yet serving server.
pub struct Server {
    config: Config,
    store: Arc<dyn Store>,
    grpc: TcpListener,
    otlp_http: TcpListener,
    api: TcpListener,
}

async fn bind(addr: SocketAddr, what: &'static str, flag: &'static str) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { what, addr, flag, source })
}

impl Server {
    /// Binds every listener, so port conflicts fail before anything is served.
    pub async fn bind(config: Config, store: Arc<dyn Store>) -> Result<Server, ServerError> {
        let grpc = bind(config.otlp.grpc_addr, "OTLP/gRPC", "otlp-grpc-addr").await?;
        let otlp_http = bind(config.otlp.http_addr, "OTLP/HTTP", "otlp-http-addr").await?;
        let api = bind(config.http.addr, "the HTTP API", "http-addr").await?;
        Ok(Server { config, store, grpc, otlp_http, api })
    }

    /// The addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> (SocketAddr, SocketAddr, SocketAddr) {
        let a = |l: &TcpListener| l.local_addr().expect("a bound listener has an address");
        (a(&self.grpc), a(&self.otlp_http), a(&self.api))
    }

    /// Serves until `shutdown` resolves, then drains. Returns the pipeline's
    /// final counters.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<StatsSnapshot, ServerError> {
        let pipeline_config = self.config.pipeline_config().map_err(ServerError::Config)?;
        let buffer_config = self.config.buffer_config().map_err(ServerError::Config)?;
        let metrics = Arc::new(MetricsCache::new(&self.config.metrics).map_err(ServerError::Config)?);
        let meter = Arc::new(self.config.cost.meter().map_err(ServerError::Config)?);
        tracing::info!(catalog = %meter.catalog.version, models = meter.catalog.models().len(), "price catalog loaded");
        let decoder = Ingest::decoder_for(self.config.limits(), Some(Arc::clone(&meter)));
        let handle = Pipeline::start(pipeline_config, Arc::clone(&self.store), buffer_config, decoder)
            .map_err(|e| ServerError::Buffer(e.to_string()))?;
        let pipeline = handle.pipeline().clone();
        let kubernetes = self
            .config
            .kubernetes
            .enabled
            .then(|| KubernetesMetering::new(self.config.kubernetes.clone(), meter.catalog.currency.clone(), pipeline.clone()));
        let ingest = Ingest {
            pipeline: pipeline.clone(),
            limits: self.config.limits(),
            max_body_bytes: self.config.max_body_bytes(),
            inflight: InflightLimit::new(self.config.max_inflight_bytes()),
            meter: Some(Arc::clone(&meter)),
            kubernetes: kubernetes.clone(),
        };
        let (grpc_addr, http_addr, api_addr) = self.local_addrs();
        let stop = CancellationToken::new();

        let grpc_task = {
            let stop = stop.clone();
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(self.grpc);
            let router = tonic::transport::Server::builder()
                .add_service(grpc::ExportService::<grpc::Traces>::new(ingest.clone()))
                .add_service(grpc::ExportService::<grpc::Logs>::new(ingest.clone()))
                .add_service(grpc::ExportService::<grpc::Metrics>::new(ingest.clone()));
            tokio::spawn(async move {
                router
                    .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                    .await
                    .map_err(|e| ServerError::Serve(format!("OTLP/gRPC server: {e}")))
            })
        };
        let otlp_http_task = serve_http(self.otlp_http, http::router(ingest.clone()), stop.clone(), "OTLP/HTTP");
        let costs = CostState {
            store: Arc::clone(&self.store),
            cost_config: self.config.cost.clone(),
            meter: Arc::clone(&meter),
            pipeline: pipeline.clone(),
        };
        let api_task = serve_http(
            self.api,
            api::router_with(
                ApiState { pipeline: pipeline.clone(), store: Arc::clone(&self.store), inflight: ingest.inflight.clone() },
                costs,
                self.config.api.keys.clone(),
                metrics,
            )
            .layer(axum::Extension(Arc::new(self.config.billing.clone())))
            .layer(axum::Extension(kubernetes.clone())),
            stop.clone(),
            "HTTP API",
        );
        tracing::info!(
            otlp_grpc = %grpc_addr,
            otlp_http = %http_addr,
            http = %api_addr,
            store = self.store.backend(),
            "costplane is serving"
        );

        let ticker = kubernetes.as_ref().map(|k| k.spawn_ticker(stop.clone()));
        shutdown.await;
        tracing::info!("shutting down: no new requests; draining accepted telemetry");
        stop.cancel();
        for (name, task) in [("OTLP/gRPC", grpc_task), ("OTLP/HTTP", otlp_http_task), ("HTTP API", api_task)] {
            match tokio::time::timeout(REQUEST_DRAIN_TIMEOUT, task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::error!(server = name, error = %e, "server stopped with an error"),
                Ok(Err(e)) => tracing::error!(server = name, error = %e, "server task failed"),
                Err(_) => tracing::warn!(server = name, "in-flight requests did not finish in time"),
            }
        }
        if let Some(k) = &kubernetes {
            // Open hours are booked before the pipeline drains.
            let rows = k.flush();
            tracing::info!(rows, "kubernetes hours booked at shutdown");
        }
        if let Some(t) = ticker {
            let _ = t.await;
        }
        let stats = handle.shutdown().await;
        tracing::info!(
            accepted_rows = stats.accepted_rows,
            written_rows = stats.written_rows,
            dead_lettered_rows = stats.dead_lettered_rows,
            left_in_buffer = stats.buffer.records,
            "stopped"
        );
        Ok(stats)
    }
}

fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    stop: CancellationToken,
    name: &'static str,
) -> tokio::task::JoinHandle<Result<(), ServerError>> {
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .map_err(|e| ServerError::Serve(format!("{name} server: {e}")))
    })
}
