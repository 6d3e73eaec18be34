//! The HTTP API: health, readiness and read-only SQL.
//!
//! `/api/v1/sql` is how `costplane sql` reads the embedded store while the
//! server holds it (DuckDB allows one writing process per file).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use costplane_pipeline::Pipeline;
use costplane_store::Store;
use serde::{Deserialize, Serialize};

use crate::auth::{ApiKey, Caller};
use crate::costs::metrics::{MetricsCache, MetricsState};
use crate::costs::CostState;
use crate::error::ApiError;
use crate::otlp::inflight::InflightLimit;

#[derive(Clone)]
pub struct ApiState {
    pub pipeline: Pipeline,
    pub store: Arc<dyn Store>,
    /// The OTLP receivers' in-flight request budget (shown in /metrics).
    pub inflight: InflightLimit,
}

/// Bounds of `/api/v1/sql` queries (row limit, timeout), as an extension.
#[derive(Debug, Clone)]
pub struct SqlLimits(pub costplane_store::QueryLimits);

/// Health, readiness, and the API (behind API keys when configured), with
/// the default `[metrics]` settings.
pub fn router(state: ApiState, costs: CostState, keys: Vec<ApiKey>) -> Router {
    router_with(state, costs, keys, Arc::new(MetricsCache::default()))
}

/// [`router`], with `/metrics` serving cost series from `metrics`.
pub fn router_with(state: ApiState, costs: CostState, keys: Vec<ApiKey>, metrics: Arc<MetricsCache>) -> Router {
    let open = keys.is_empty();
    let keys = Arc::new(keys);
    // Cost the closer books feeds the cost counters on /metrics.
    costs.closer.observe(Arc::clone(&metrics.counters) as Arc<dyn crate::costs::closer::LedgerObserver>);
    let api = Router::new()
        .route("/api/v1/sql", post(sql))
        .with_state(state.clone())
        .merge(
            Router::new()
                .route("/api/v1/costs", get(crate::costs::costs))
                .route("/api/v1/costs/unpriced", get(crate::costs::unpriced))
                .route("/api/v1/reprice", post(crate::costs::reprice))
                .route("/api/v1/prices/reload", post(crate::costs::reload_prices))
                .route("/api/costs/export", get(crate::costs::export))
                .with_state(costs.clone()),
        )
        .merge(crate::k8s_api::router(costs.clone()).merge(crate::import::router(costs.clone())))
        .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&metrics), crate::costs::metrics::time_queries))
        .merge(Router::new().route("/metrics", get(crate::costs::metrics::metrics)).with_state(MetricsState {
            costs,
            pipeline: state.pipeline.clone(),
            inflight: state.inflight.clone(),
            cache: metrics,
        }))
        .layer(axum::middleware::from_fn_with_state(keys, crate::auth::authenticate));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
        .merge(api)
        .layer(axum::middleware::from_fn_with_state(open, crate::auth::browser_guard))
        .merge(crate::web::router())
        .fallback(crate::web::not_found("HTTP API", crate::web::API_PATHS))
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    store: &'static str,
    store_healthy: bool,
    queued_bytes: usize,
    memory_limit_bytes: usize,
    accepted_rows: u64,
    written_rows: u64,
    refused_rows: u64,
    dead_lettered_rows: u64,
    buffer: costplane_pipeline::BufferSnapshot,
}

async fn readyz(State(state): State<ApiState>) -> Response {
    let stats = state.pipeline.stats();
    let ready = state.pipeline.is_ready();
    let body = Readiness {
        ready,
        store: state.store.backend(),
        store_healthy: stats.store_healthy,
        queued_bytes: stats.queued_bytes,
        memory_limit_bytes: stats.limit_bytes,
        accepted_rows: stats.accepted_rows,
        written_rows: stats.written_rows,
        refused_rows: stats.refused_rows,
        dead_lettered_rows: stats.dead_lettered_rows,
        buffer: stats.buffer,
    };
    let status = if ready { http::StatusCode::OK } else { http::StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code.http_status(), Json(ErrorBody { error: self.message })).into_response()
    }
}

async fn sql(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    limits: Option<Extension<SqlLimits>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::new(crate::error::ErrorCode::PermissionDenied, "raw SQL sees every tenant: it needs an admin API key"));
    }
    let req: SqlRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(crate::error::ErrorCode::InvalidArgument, format!("expected a JSON body {{\"sql\": \"SELECT ...\"}}: {e}"))
    })?;
    let limits = limits.map(|Extension(l)| l.0).unwrap_or_default();
    let result = state.store.query_limited(&req.sql, &limits).await?;
    Ok(Json(result).into_response())
}
