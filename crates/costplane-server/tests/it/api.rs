//! The HTTP API's handlers through `Router::oneshot`, over a real DuckDB store.

use std::sync::Arc;

use axum::body::Body;
use costplane_pipeline::{BufferConfig, Pipeline, PipelineConfig};
use costplane_server::api::{router, ApiState};
use costplane_server::auth::ApiKey;
use costplane_server::costs::CostState;
use costplane_server::otlp::inflight::InflightLimit;
use costplane_store::duckdb::DuckDbStore;
use costplane_store::Store;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

const ADMIN: &str = "admin-0123456789abcdef";
const ACME: &str = "acme-0123456789abcdef";

async fn app(keys: Vec<ApiKey>) -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(DuckDbStore::open(dir.path()).unwrap());
    let config = PipelineConfig { dead_letter_dir: dir.path().join("dead-letter"), ..PipelineConfig::default() };
    let decoder = costplane_server::otlp::Ingest::decoder_for(costplane_telemetry::Limits::default(), None, None);
    let handle = Pipeline::start(config, store.clone(), BufferConfig::Memory, decoder).unwrap();
    let costs = CostState::new(Arc::clone(&store), &costplane_server::Config::default(), handle.pipeline().clone()).unwrap();
    let inflight = InflightLimit::new(1 << 20);
    let r = router(ApiState { pipeline: handle.pipeline().clone(), store, inflight }, costs, keys);
    std::mem::forget(handle); // the writer task lives as long as the runtime
    (r, dir)
}

async fn call(app: &axum::Router, method: &str, uri: &str, key: Option<&str>, body: &str) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    let resp = app.clone().oneshot(req.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn keys() -> Vec<ApiKey> {
    vec![
        ApiKey { key: ADMIN.into(), tenant: None, role: Some("admin".into()) },
        ApiKey { key: ACME.into(), tenant: Some("acme".into()), role: None },
    ]
}

#[tokio::test]
async fn health_and_readiness_need_no_key() {
    let (app, _dir) = app(keys()).await;
    assert_eq!(call(&app, "GET", "/healthz", None, "").await, (StatusCode::OK, "ok\n".into()));
    let (status, body) = call(&app, "GET", "/readyz", None, "").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["ready"].clone(), v["store"].clone()), (serde_json::json!(true), serde_json::json!("duckdb")));
}

#[tokio::test]
async fn keys_gate_the_api_and_scope_tenants() {
    let (app, _dir) = app(keys()).await;
    let (status, body) = call(&app, "GET", "/api/v1/costs", None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("an API key is required"), "{body}");
    assert_eq!(call(&app, "GET", "/api/v1/costs", Some("not-a-key-at-all"), "").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&app, "GET", "/api/v1/costs", Some(ACME), "").await.0, StatusCode::OK);
    let (status, body) = call(&app, "POST", "/api/v1/sql", Some(ACME), r#"{"sql":"SELECT 1"}"#).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = call(&app, "POST", "/api/v1/sql", Some(ADMIN), r#"{"sql":"SELECT 41 + 1 AS n"}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("[[42]]"), "{body}");
}

#[tokio::test]
async fn bad_parameters_are_400_with_a_message() {
    let (app, _dir) = app(vec![]).await;
    for (uri, needle) in [
        ("/api/costs/export?month=2026-13", "is not a month"),
        ("/api/costs/export?month=2026-1", "is not a month"),
        ("/api/costs/export", "month is required"),
        ("/api/costs/export?month=2026-10&format=xlsx", "is not csv or focus"),
        ("/api/v1/costs?group_by=color", "is not one of"),
        ("/api/v1/costs?from=2026-10-02&to=2026-10-01", "must be before"),
        ("/api/v1/costs?limit=5", "unknown parameter 'limit'"),
    ] {
        let (status, body) = call(&app, "GET", uri, None, "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert!(body.contains(needle), "{uri}: {body}");
    }
    let (status, body) = call(&app, "POST", "/api/v1/sql", None, r#"{"sql":"DROP TABLE otel_logs"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("only read-only statements"), "{body}");
    let (status, body) = call(&app, "GET", "/api/costs/export?month=2026-10", None, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "kind,tenant,project,service,signal,model,items,bytes,tokens,cost,charge_status\n");
}
