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
use crate::connections::{Guarded, Started};
use crate::costs::metrics::MetricsCache;
use crate::costs::CostState;
use crate::error::ServerError;
use crate::kubernetes::KubernetesMetering;
use crate::otlp::inflight::InflightLimit;
use crate::otlp::{grpc, http, Ingest};

/// How long in-flight requests get to finish once shutdown starts.
const REQUEST_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the server logs what it ingested (skipped when nothing was).
const ACTIVITY_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Opens the configured store (for ClickHouse: connects and creates or
/// upgrades the schema).
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, ServerError> {
    match config.store {
        StoreKind::Duckdb => {
            let options = config.embedded.options().map_err(ServerError::Config)?;
            let store = DuckDbStore::open_with(&config.data_dir, options)?;
            tracing::info!(path = %store.path().display(), "opened the embedded store (telemetry as Parquet segments, ledger in DuckDB)");
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

    /// Checks the configuration, binds every listener, and only then opens
    /// (creates) the store: a bad rate or a port in use leaves nothing
    /// behind on disk.
    pub async fn start(config: Config) -> Result<Server, ServerError> {
        config.pipeline_config().map_err(ServerError::Config)?;
        config.buffer_config().map_err(ServerError::Config)?;
        MetricsCache::new(&config.metrics).map_err(ServerError::Config)?;
        config.cost.meter().map_err(ServerError::Config)?;
        let grpc = bind(config.otlp.grpc_addr, "OTLP/gRPC", "otlp-grpc-addr").await?;
        let otlp_http = bind(config.otlp.http_addr, "OTLP/HTTP", "otlp-http-addr").await?;
        let api = bind(config.http.addr, "the HTTP API", "http-addr").await?;
        let store = open_store(&config).await?;
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
        // Ingest only measures usage (tenancy, LLM attributes, the event
        // window); prices are applied by the closer, which reloads them.
        let source = crate::costs::closer::PriceSource {
            cost: self.config.cost.clone(),
            ledger: self.config.ledger.clone(),
            kubernetes: self.config.kubernetes.clone(),
            file: self.config.source.clone(),
        };
        let meter = Arc::new(source.meter().map_err(ServerError::Config)?);
        tracing::info!(catalog = %meter.catalog.version, models = meter.catalog.models().len(), "price catalog loaded");
        let kubernetes = self.config.kubernetes.enabled.then(|| KubernetesMetering::new(self.config.kubernetes.clone()));
        if let Some(k) = &kubernetes {
            // Before the disk buffer replays: the stored samples first, then
            // those of each batch written from now on, replays first.
            k.rebuild(&self.store).await.map_err(|e| {
                tracing::error!(error = %e, "the Kubernetes meter could not read its stored samples back; check the store, or set kubernetes.enabled = false");
                ServerError::Store(e)
            })?;
        }
        let screen = kubernetes.as_ref().map(|k| k.screen().clone());
        let decoder = Ingest::decoder_for(self.config.limits(), Some(Arc::clone(&meter)), screen);
        let observer = kubernetes.clone().map(|k| k as Arc<dyn costplane_pipeline::StoredObserver>);
        // The pipeline sees the store as a telemetry sink only.
        let sink: Arc<dyn costplane_store::TelemetrySink> = self.store.clone();
        let handle = Pipeline::start_observed(pipeline_config, sink, buffer_config, decoder, observer)
            .map_err(|e| ServerError::Buffer(e.to_string()))?;
        let pipeline = handle.pipeline().clone();
        if let Some(k) = &kubernetes {
            k.attach(pipeline.clone());
        }
        let ingest = Ingest {
            pipeline: pipeline.clone(),
            limits: self.config.limits(),
            max_body_bytes: self.config.max_body_bytes(),
            inflight: InflightLimit::new(self.config.max_inflight_bytes()),
            meter: Some(Arc::clone(&meter)),
            kubernetes: kubernetes.clone(),
            auth: Arc::new(crate::otlp::keys::IngestAuth::new(&self.config.ingest).map_err(ServerError::Config)?),
            rates: Arc::new(crate::otlp::ratelimit::RateLimiter::new(&self.config.ingest.rate_limit)),
            activity: Arc::default(),
        };
        if ingest.auth.is_open() {
            tracing::warn!(
                "ingest is open: no [[ingest.keys]] are configured, so anyone who reaches the OTLP ports can send, \
                 as whatever tenant their resources name"
            );
        } else {
            tracing::info!(keys = self.config.ingest.keys.len(), mode = ?self.config.ingest.tenant_mode, "ingest keys required; each pins its tenant");
        }
        let sql_limits = self.config.api.query_limits().map_err(ServerError::Config)?;
        let (grpc_addr, http_addr, api_addr) = self.local_addrs();
        let stop = CancellationToken::new();
        let tls = crate::tls::Tls::load(&self.config.tls).map_err(ServerError::Config)?;
        if let Some(t) = &tls {
            t.spawn_reloader(stop.clone());
            tracing::info!(client_certificates = self.config.tls.client_ca_file.is_some(), "TLS on every listener");
        }
        let postgres_task = crate::postgres::start(&self.config, Arc::clone(&self.store), tls.clone(), stop.clone()).await?;
        let reporter = crate::activity::spawn_reporter(
            Arc::clone(&ingest.activity),
            pipeline.clone(),
            meter.catalog.currency.clone(),
            ACTIVITY_LOG_INTERVAL,
            stop.clone(),
        );

        let grpc_task = {
            let stop = stop.clone();
            let router = tonic::transport::Server::builder()
                .add_service(grpc::ExportService::<grpc::Traces>::new(ingest.clone()))
                .add_service(grpc::ExportService::<grpc::Logs>::new(ingest.clone()))
                .add_service(grpc::ExportService::<grpc::Metrics>::new(ingest.clone()));
            let failed = |e: tonic::transport::Error| ServerError::Serve(format!("OTLP/gRPC server: {e}"));
            use tokio_stream::StreamExt;
            let limits = self.config.connections;
            let guarded = move |s| Guarded::new(s, limits, Started::default());
            match &tls {
                None => {
                    let incoming = tokio_stream::wrappers::TcpListenerStream::new(self.grpc).map(move |s| s.map(guarded));
                    tokio::spawn(async move { router.serve_with_incoming_shutdown(incoming, stop.cancelled_owned()).await.map_err(failed) })
                }
                Some(t) => {
                    let rx = crate::tls::incoming(self.grpc, Arc::clone(t), stop.clone());
                    let incoming = tokio_stream::wrappers::ReceiverStream::new(rx)
                        .map(move |(s, _)| Ok::<_, std::io::Error>(Guarded::new(crate::tls::GrpcTls(s), limits, Started::default())));
                    tokio::spawn(async move { router.serve_with_incoming_shutdown(incoming, stop.cancelled_owned()).await.map_err(failed) })
                }
            }
        };
        let otlp_http_task =
            serve_http(self.otlp_http, tls.clone(), http::router(ingest.clone()), self.config.connections, stop.clone(), "OTLP/HTTP");
        let costs = CostState::new(Arc::clone(&self.store), &self.config, pipeline.clone()).map_err(ServerError::Config)?;
        costs.closer.observe(Arc::clone(&ingest.activity) as Arc<dyn crate::costs::closer::LedgerObserver>);
        let insights = crate::insights::InsightsState::new(&self.config, Arc::clone(&self.store), meter.catalog.currency.clone());
        costs.closer.observe(insights.close_trigger());
        let closer_task = Arc::clone(&costs.closer).spawn(stop.clone());
        let reload_task = reload_on_sighup(Arc::clone(&costs.closer), stop.clone());
        let insights_task = crate::insights::spawn(insights.clone(), stop.clone());
        let api_task = serve_http(
            self.api,
            tls.clone(),
            api::app(api::ApiParts {
                state: ApiState { pipeline: pipeline.clone(), store: Arc::clone(&self.store), inflight: ingest.inflight.clone() },
                costs,
                keys: self.config.api.keys.clone(),
                metrics,
                insights: insights.clone(),
            })
            .layer(axum::Extension(Arc::new(self.config.billing.clone())))
            .layer(axum::Extension(crate::import::SpoolDir(self.config.data_dir.join("imports"))))
            .layer(axum::Extension(api::SqlLimits(sql_limits)))
            .layer(axum::Extension(api::QueryBounds { max_steps: self.config.api.max_steps }))
            .layer(axum::Extension(crate::auth::BoundAddr { addr: api_addr, allow_open_remote: self.config.api.allow_open_remote }))
            .layer(axum::Extension(Arc::clone(&insights.gauges)))
            .layer(axum::Extension(kubernetes.clone()))
            .layer(axum::Extension(crate::telemetry_costs::Retention::of(&self.config)))
            .layer(axum::Extension(crate::unit_costs::UnitCostSettings(Arc::new(self.config.unit_costs.clone())))),
            self.config.connections,
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

        let ticker = kubernetes.as_ref().map(|k| k.spawn_ticker(Arc::clone(&self.store), stop.clone()));
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
        let _ = insights_task.await;
        if let Some(t) = postgres_task {
            let _ = t.await;
        }
        if let Some(k) = &kubernetes {
            // Open hours are booked before the pipeline drains.
            let rows = k.flush();
            tracing::info!(rows, "kubernetes usage of open hours stored at shutdown");
        }
        if let Some(t) = ticker {
            let _ = t.await;
        }
        let _ = closer_task.await;
        reload_task.abort();
        let _ = reporter.await;
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

/// Reloads prices on SIGHUP until `stop`.
fn reload_on_sighup(closer: Arc<crate::costs::closer::Closer>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
                tracing::warn!("cannot listen for SIGHUP; prices reload through POST /api/v1/prices/reload only");
                return;
            };
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    got = hup.recv() => {
                        if got.is_none() { break; }
                        match closer.reload().await {
                            Ok(_) => {}
                            Err(e) => tracing::error!(error = %e, "SIGHUP: reloading prices failed; the previous prices stay in force"),
                        }
                    }
                }
            }
        }
        #[cfg(not(unix))]
        stop.cancelled().await;
    })
}

/// Serves one HTTP listener (plain or TLS) under `[connections]`'s
/// deadlines until `stop`, then lets open requests finish.
fn serve_http(
    listener: TcpListener,
    tls: Option<Arc<crate::tls::Tls>>,
    router: axum::Router,
    limits: crate::connections::ConnectionsSection,
    stop: CancellationToken,
    name: &'static str,
) -> tokio::task::JoinHandle<Result<(), ServerError>> {
    tokio::spawn(async move {
        match tls {
            None => crate::connections::serve_http(listener, router, limits, stop).await,
            Some(tls) => {
                let local = listener.local_addr().map_err(|e| ServerError::Serve(format!("{name} server: {e}")))?;
                let rx = crate::tls::incoming(listener, tls, stop.clone());
                crate::connections::serve_http(crate::tls::TlsListener { rx, local }, router, limits, stop).await
            }
        }
        Ok(())
    })
}
