//! `POST /api/v1/import/focus?file=NAME` (admin key): one FOCUS file (CSV,
//! gzip CSV or Parquet) as the body, parsed completely before anything is written
//! (a bad cell answers 400 naming file, row and column, and nothing is
//! imported).
//!
//! Each provider's billing account is a ledger scope of its own
//! (`cloud:<provider>:<account>`); the file's rows are written as one new
//! revision per (charge hour, scope), and every hour of the file's billing
//! periods that has a revision but no row in the file gets an empty one.
//! All of it is one replacement ([`costplane_store::ledger::Ledger::replace_window`]):
//! readers see the old bill or the new one, never both, and re-importing
//! a re-delivered period replaces it instead of adding to it.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use costplane_k8s::focus::{self, Import, ImportOptions};
use costplane_telemetry::usage::{hour_of, HourState, LedgerReplacement, LedgerRow, CLOSED};
use serde_json::json;

use crate::auth::Caller;
use crate::costs::closer::Closer;
use crate::costs::CostState;
use crate::error::{ApiError, ErrorCode};

/// Largest bill file accepted through the API.
const MAX_FILE_BYTES: usize = 1 << 30;

pub fn router(costs: CostState) -> Router {
    Router::new().route("/api/v1/import/focus", post(import_focus).layer(DefaultBodyLimit::max(MAX_FILE_BYTES))).with_state(costs)
}

/// The ledger scope of an imported row (from its import key).
fn scope_of_row(r: &LedgerRow) -> String {
    let mut parts = r.ext.import_key.splitn(3, '|');
    let provider = parts.next().unwrap_or_default();
    let account = parts.next().unwrap_or_default();
    focus::scope_of(provider, account)
}

/// The revisions an import writes: one per (charge hour, scope) with rows,
/// and an empty one per hour of its billing periods it no longer has.
pub async fn replacement(closer: &Closer, import: Import) -> Result<LedgerReplacement, ApiError> {
    let mut hours: BTreeMap<(String, i64), Vec<LedgerRow>> = BTreeMap::new();
    for r in import.rows {
        hours.entry((scope_of_row(&r), hour_of(r.charge_period_start_ns))).or_default().push(r);
    }
    for (scope, from, to) in &import.periods {
        for s in closer.ledger().hour_states(*from, *to).await? {
            if &s.scope == scope {
                hours.entry((s.scope, s.hour_ns)).or_default();
            }
        }
    }
    let mut out = LedgerReplacement::default();
    for ((scope, hour_ns), mut rows) in hours {
        let revision = costplane_store::ledger::next_revision();
        let price_version = rows.first().map(|r| r.price_version.clone()).unwrap_or_default();
        for r in &mut rows {
            r.revision = revision;
        }
        out.hours.push(HourState { hour_ns, scope, revision, status: CLOSED.to_owned(), usage_rows: rows.len() as u64, price_version });
        out.rows.extend(rows);
    }
    Ok(out)
}

/// Replaces the ledger's bill lines of the import's billing periods and
/// accounts by its rows; answers what was imported.
pub async fn replace(closer: &Closer, import: Import) -> Result<serde_json::Value, ApiError> {
    let totals: BTreeMap<String, serde_json::Value> = import
        .totals()
        .into_iter()
        .map(|(p, (billed, effective))| {
            (p, json!({"billed_cost": billed.normalize().to_string(), "effective_cost": effective.normalize().to_string()}))
        })
        .collect();
    let (files, keys, rows) = (import.files.clone(), import.keys.clone(), import.rows.len());
    let replacement = replacement(closer, import).await?;
    let hours = replacement.hours.len();
    closer.replace_priced(&replacement).await?;
    Ok(json!({ "files": files, "rows": rows, "hours": hours, "replaced": keys, "totals": totals }))
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
    let answer = replace(&state.closer, import).await?;
    tracing::info!(rows = %answer["rows"], files = %answer["files"], "FOCUS bill imported");
    Ok(Json(answer).into_response())
}
