//! `POST /api/v1/import/focus?file=NAME` (admin key): one FOCUS file (CSV
//! or gzip CSV) as the body, parsed completely before anything is written
//! (a bad cell answers 400 naming file, row and column, and nothing is
//! imported). Then, per (provider, billing account, billing period) key of
//! the file, the ledger's cloud rows of that key are deleted and the file's
//! rows written: re-importing a re-delivered period replaces it.
//!
//! Between the delete and the write a reader may see the period missing;
//! a write failure after the delete leaves it missing until the import is
//! run again (the answer says so).

use std::collections::{BTreeMap, HashMap};

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use costplane_k8s::focus::{self, Import, ImportOptions};
use costplane_telemetry::usage::UsageRows;
use costplane_telemetry::TelemetryBatch;
use serde_json::json;

use crate::auth::Caller;
use crate::costs::CostState;
use crate::error::{ApiError, ErrorCode};

/// Largest bill file accepted through the API.
const MAX_FILE_BYTES: usize = 1 << 30;

pub fn router(costs: CostState) -> Router {
    Router::new().route("/api/v1/import/focus", post(import_focus).layer(DefaultBodyLimit::max(MAX_FILE_BYTES))).with_state(costs)
}

/// Replaces the ledger rows of the import's keys by its rows.
pub async fn replace(store: &dyn costplane_store::Store, import: Import) -> Result<serde_json::Value, ApiError> {
    for key in &import.keys {
        store.delete_ledger_import(focus::SOURCE, key).await?;
    }
    let totals: BTreeMap<String, serde_json::Value> = import
        .totals()
        .into_iter()
        .map(|(p, (billed, effective))| {
            (p, json!({"billed_cost": billed.normalize().to_string(), "effective_cost": effective.normalize().to_string()}))
        })
        .collect();
    let rows = import.rows.len();
    if rows > 0 {
        let batch = TelemetryBatch {
            id: rand::random(),
            usage: UsageRows { ledger: import.rows, ..UsageRows::default() },
            ..TelemetryBatch::default()
        };
        store.write(&batch).await.map_err(|e| {
            ApiError::new(
                ErrorCode::Unavailable,
                format!("the bill's periods were cleared but its rows not written ({e}); import it again"),
            )
        })?;
    }
    Ok(json!({ "files": import.files, "rows": rows, "replaced": import.keys, "totals": totals }))
}

async fn import_focus(
    State(state): State<CostState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if caller.tenant().is_some() {
        return Err(ApiError::new(ErrorCode::PermissionDenied, "importing bills needs an admin key"));
    }
    let file = q.get("file").cloned().unwrap_or_else(|| "upload.csv".into());
    let options = ImportOptions {
        tenant_tag: q.get("tenant_tag").cloned().unwrap_or_else(|| "tenant".into()),
        service_tag: q.get("service_tag").cloned().unwrap_or_else(|| "service".into()),
    };
    let body = body.to_vec();
    let import = tokio::task::spawn_blocking(move || focus::parse_bytes(&file, &body, &options))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e.to_string()))?;
    let answer = replace(state.store.as_ref(), import).await?;
    tracing::info!(rows = %answer["rows"], files = %answer["files"], "FOCUS bill imported");
    Ok(Json(answer).into_response())
}
