//! The HTTP API listener: every route (health, readiness, the page, the
//! cost, Kubernetes, import and insights APIs, `/metrics`), built from one
//! list ([`ROUTES`]) and layered once with authentication and the browser
//! guard, and the read-only SQL endpoint.
//!
//! `/api/v1/sql` is how `costplane sql` reads the embedded store while the
//! server holds it (DuckDB allows one writing process per file).

use std::sync::Arc;

use axum::extract::State;
use axum::handler::Handler;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use axum::{Extension, Json, Router};
use costplane_pipeline::Pipeline;
use costplane_store::Store;
use http::Method;
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

/// Every route of the API listener, as `METHOD /path`. The router is built
/// through [`Routes`], which refuses a route missing here, and checks that
/// every entry was built; 404 answers list these paths, and the route-walk
/// test visits each one. Adding a route means adding it here.
pub const ROUTES: &[&str] = &[
    "GET /",
    "GET /ui/app.js",
    "GET /ui/style.css",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "POST /api/v1/sql",
    "GET /api/v1/costs",
    "GET /api/v1/costs/unpriced",
    "GET /api/v1/costs/untagged",
    "POST /api/v1/reprice",
    "POST /api/v1/prices/reload",
    "GET /api/costs/export",
    "GET /api/v1/allocation",
    "POST /api/v1/kubernetes/flush",
    "POST /api/v1/import/focus",
    "POST /api/v1/import/invoice",
    "GET /api/v1/reconciliation",
    "GET /api/v1/telemetry-costs",
    "GET /api/v1/unit-costs",
    "GET /api/v1/traces/{trace_id}/cost",
    "GET /api/v1/anomalies",
    "POST /api/v1/anomalies/backfill",
    "POST /api/v1/anomalies/{id}/dismiss",
    "GET /api/v1/forecast",
    "GET /api/v1/forecasts",
    "GET /api/v1/budgets",
    "POST /api/v1/budgets",
    "GET /api/v1/budgets/status",
    "GET /api/v1/budgets/{id}",
    "PUT /api/v1/budgets/{id}",
    "DELETE /api/v1/budgets/{id}",
];

/// The routes answered without an API key: the page's static files (they
/// carry no data) and the health probes. Every other route needs a key when
/// keys are configured. The browser guard covers these too.
pub const PUBLIC: &[&str] = &["GET /", "GET /ui/app.js", "GET /ui/style.css", "GET /healthz", "GET /readyz"];

/// Bounds on query parameters that are not part of a handler's own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryBounds {
    /// Most steps one `/api/v1/allocation` answer may have (`api.max_steps`).
    pub max_steps: usize,
}

impl Default for QueryBounds {
    fn default() -> Self {
        QueryBounds { max_steps: crate::config::DEFAULT_MAX_STEPS }
    }
}

/// The API listener's routes, built from [`ROUTES`]: each added route is
/// checked against the list and sorted into the keyed or public router by
/// [`PUBLIC`]; [`Routes::finish`] layers authentication on the keyed
/// routes and the browser guard on all of them, after everything is merged.
pub(crate) struct Routes {
    keyed: Router,
    public: Router,
    built: Vec<&'static str>,
}

impl Routes {
    fn new() -> Routes {
        Routes { keyed: Router::new(), public: Router::new(), built: Vec::new() }
    }

    fn entry(route: &'static str) -> (Method, &'static str) {
        assert!(ROUTES.contains(&route), "route {route:?} is not listed in api::ROUTES; add it there");
        let (method, path) = route.split_once(' ').expect("routes are 'METHOD /path'");
        (method.parse().expect("a method"), path)
    }

    fn place(mut self, route: &'static str, method_router: MethodRouter) -> Routes {
        let (_, path) = Routes::entry(route);
        assert!(!self.built.contains(&route), "route {route:?} is built twice");
        self.built.push(route);
        if PUBLIC.contains(&route) {
            self.public = self.public.route(path, method_router);
        } else {
            self.keyed = self.keyed.route(path, method_router);
        }
        self
    }

    /// `route` ("METHOD /path") answered by `handler` over `state`.
    pub(crate) fn at<H, T, S>(self, route: &'static str, handler: H, state: &S) -> Routes
    where
        H: Handler<T, S>,
        T: 'static,
        S: Clone + Send + Sync + 'static,
    {
        self.place(route, Routes::method_router(route, handler, state))
    }

    /// The method router of `route` ("METHOD /path") answered by `handler`.
    fn method_router<H, T, S>(route: &'static str, handler: H, state: &S) -> MethodRouter
    where
        H: Handler<T, S>,
        T: 'static,
        S: Clone + Send + Sync + 'static,
    {
        let (method, _) = Routes::entry(route);
        let filter = MethodFilter::try_from(method).expect("a routable method");
        axum::routing::on(filter, handler).with_state(state.clone())
    }

    /// Like [`Routes::at`], timed into `costplane_query_duration_seconds`.
    fn timed<H, T, S>(self, route: &'static str, handler: H, state: &S, metrics: &Arc<MetricsCache>) -> Routes
    where
        H: Handler<T, S>,
        T: 'static,
        S: Clone + Send + Sync + 'static,
    {
        let timer = axum::middleware::from_fn_with_state(Arc::clone(metrics), crate::costs::metrics::time_queries);
        self.place(route, Routes::method_router(route, handler, state).route_layer(timer))
    }

    /// A router built elsewhere, serving exactly `routes` (all keyed or all
    /// public).
    fn router(mut self, routes: &[&'static str], router: Router) -> Routes {
        let public = routes.iter().all(|r| PUBLIC.contains(r));
        assert!(public || routes.iter().all(|r| !PUBLIC.contains(r)), "a merged router is all public or all keyed: {routes:?}");
        for &r in routes {
            Routes::entry(r);
            assert!(!self.built.contains(&r), "route {r:?} is built twice");
            self.built.push(r);
        }
        if public {
            self.public = self.public.merge(router);
        } else {
            self.keyed = self.keyed.merge(router);
        }
        self
    }

    /// One router: authentication on every keyed route, then the browser
    /// guard on everything (the 404 fallback included). Nothing may be
    /// merged into the result: it would miss both.
    fn finish(self, keys: Vec<ApiKey>) -> Router {
        let missing: Vec<&str> = ROUTES.iter().copied().filter(|r| !self.built.contains(r)).collect();
        assert!(missing.is_empty(), "api::ROUTES lists routes nothing serves: {missing:?}");
        let open = keys.is_empty();
        self.keyed
            .layer(axum::middleware::from_fn_with_state(Arc::new(keys), crate::auth::authenticate))
            .merge(self.public)
            .fallback(crate::web::not_found("HTTP API", ROUTES))
            .layer(axum::middleware::from_fn_with_state(open, crate::auth::browser_guard))
    }
}

/// What the API listener serves.
pub struct ApiParts {
    pub state: ApiState,
    pub costs: CostState,
    pub keys: Vec<ApiKey>,
    /// `/metrics` serves cost series from here.
    pub metrics: Arc<MetricsCache>,
    /// Anomalies, forecasts and budgets.
    pub insights: crate::insights::InsightsState,
}

/// Health, readiness, and the API (behind API keys when configured), with
/// the default `[metrics]` and `[anomalies]` settings.
pub fn router(state: ApiState, costs: CostState, keys: Vec<ApiKey>) -> Router {
    router_with(state, costs, keys, Arc::new(MetricsCache::default()))
}

/// [`router`], with `/metrics` serving cost series from `metrics`.
pub fn router_with(state: ApiState, costs: CostState, keys: Vec<ApiKey>, metrics: Arc<MetricsCache>) -> Router {
    let currency = costs.meter().catalog.currency.clone();
    let insights = crate::insights::InsightsState::new(&crate::Config::default(), Arc::clone(&state.store), currency);
    app(ApiParts { state, costs, keys, metrics, insights })
}

/// The whole API listener. Every route is in [`ROUTES`]; the browser guard
/// and (for all but [`PUBLIC`]) authentication are layered once, over all
/// of them.
pub fn app(parts: ApiParts) -> Router {
    let ApiParts { state, costs, keys, metrics, insights } = parts;
    // Cost the closer books feeds the cost counters on /metrics.
    costs.closer.observe(Arc::clone(&metrics.counters) as Arc<dyn crate::costs::closer::LedgerObserver>);
    let metrics_state = MetricsState {
        costs: costs.clone(),
        pipeline: state.pipeline.clone(),
        inflight: state.inflight.clone(),
        cache: Arc::clone(&metrics),
    };
    let m = &metrics;
    let routes = Routes::new()
        .router(&["GET /", "GET /ui/app.js", "GET /ui/style.css"], crate::web::router())
        .at("GET /healthz", || async { "ok\n" }, &())
        .at("GET /readyz", readyz, &state)
        .at("GET /metrics", crate::costs::metrics::metrics, &metrics_state)
        .timed("POST /api/v1/sql", sql, &state, m)
        .timed("GET /api/v1/costs", crate::costs::costs, &costs, m)
        .timed("GET /api/v1/costs/unpriced", crate::costs::unpriced, &costs, m)
        .timed("POST /api/v1/reprice", crate::costs::reprice, &costs, m)
        .timed("POST /api/v1/prices/reload", crate::costs::reload_prices, &costs, m)
        .timed("GET /api/costs/export", crate::costs::export, &costs, m)
        .timed("GET /api/v1/allocation", crate::k8s_api::allocation, &costs, m)
        .timed("GET /api/v1/costs/untagged", crate::k8s_api::untagged, &costs, m)
        .timed("POST /api/v1/kubernetes/flush", crate::k8s_api::flush, &costs, m)
        .timed("GET /api/v1/telemetry-costs", crate::telemetry_costs::telemetry_costs, &costs, m)
        .timed("GET /api/v1/unit-costs", crate::unit_costs::unit_costs, &costs, m)
        .timed("GET /api/v1/traces/{trace_id}/cost", crate::unit_costs::trace_cost, &costs, m)
        .router(
            &["POST /api/v1/import/focus"],
            crate::import::router(costs.clone())
                .route_layer(axum::middleware::from_fn_with_state(Arc::clone(m), crate::costs::metrics::time_queries)),
        )
        .router(
            &["POST /api/v1/import/invoice", "GET /api/v1/reconciliation"],
            crate::reconcile::router(costs.clone())
                .route_layer(axum::middleware::from_fn_with_state(Arc::clone(m), crate::costs::metrics::time_queries)),
        );
    crate::insights::routes(routes, &insights).finish(keys)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_list_is_well_formed() {
        for (i, r) in ROUTES.iter().enumerate() {
            let (method, path) = r.split_once(' ').unwrap_or_else(|| panic!("{r:?} is not 'METHOD /path'"));
            assert!(MethodFilter::try_from(method.parse::<Method>().unwrap()).is_ok(), "{r}");
            assert!(path.starts_with('/') && !path.contains(' '), "{r}");
            assert!(!ROUTES[..i].contains(r), "{r} is listed twice");
        }
        for p in PUBLIC {
            assert!(ROUTES.contains(p), "public route {p} is not in ROUTES");
            assert!(!p.contains("/api/") && p.starts_with("GET "), "{p}: API routes and writes need a key");
        }
    }
}
