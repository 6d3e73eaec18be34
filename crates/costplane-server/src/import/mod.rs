//! `POST /api/v1/import/focus?file=NAME` (admin key): one FOCUS file (CSV,
//! gzip CSV or Parquet) as the body, of any size: the body is spooled to a
//! file under the data directory as it arrives, then parsed a record at a
//! time, its rows written to the ledger in chunks under revisions no reader
//! sees ([`staged`]). A bad cell answers 400 naming file, row and column,
//! and what was written is deleted: nothing is imported.
//!
//! Each provider's billing account is a ledger scope of its own
//! (`cloud:<provider>:<account>`); the file's rows are written as one new
//! revision per (charge hour, scope), and every hour of the file's billing
//! periods that has a revision but no row in the file gets an empty one.
//! The switch to them is one replacement
//! ([`costplane_store::ledger::Ledger::replace_window`]): readers see the old
//! bill or the new one, never both, and re-importing a re-delivered period
//! replaces it instead of adding to it.
//!
//! A bill in several files (an export split into parts, several months) is
//! one import session, so its files replace the periods together rather
//! than each file replacing what the one before wrote:
//! `POST /api/v1/import/focus/sessions` opens one (`{"session": ID}`),
//! `POST /api/v1/import/focus?session=ID&file=NAME` stages a file into it
//! (nothing is visible yet), `POST /api/v1/import/focus/sessions/ID/commit`
//! switches to every file of it as one replacement, `DELETE
//! /api/v1/import/focus/sessions/ID` drops it. A file that fails drops its
//! session (the session's staged rows are deleted with it). At most
//! [`MAX_SESSIONS`] are open; one left alone for [`SESSION_IDLE`] is dropped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Extension, Json, Router};
use costplane_k8s::focus::ImportOptions;
use costplane_store::ledger::Ledger;
use futures::StreamExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::auth::Caller;
use crate::config::BillingSection;
use crate::costs::CostState;
use crate::error::{ApiError, ErrorCode};

pub mod staged;
pub use staged::{to_ledger_currency, StagedImport};

/// Largest bill file accepted through the API (it is spooled to disk, not
/// held).
pub const MAX_FILE_BYTES: u64 = 16 << 30;

/// Import sessions open at once.
pub const MAX_SESSIONS: usize = 4;

/// A session nobody added to or committed for this long is dropped.
pub const SESSION_IDLE: Duration = Duration::from_secs(3600);

/// Where uploaded bill files are spooled while they are parsed (the data
/// directory's `imports/`; each file is deleted once read).
#[derive(Debug, Clone)]
pub struct SpoolDir(pub PathBuf);

/// One open session: its staged import (`None` while a file is being added
/// to it or once committed) and when it was last used.
#[derive(Debug)]
struct Open {
    staged: Arc<tokio::sync::Mutex<Option<StagedImport>>>,
    touched: Instant,
}

/// Open import sessions by id.
#[derive(Debug, Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Open>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Open>> {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn create(&self, ledger: &Ledger) -> Result<String, ApiError> {
        let mut open = self.lock();
        let expired: Vec<String> = open.iter().filter(|(_, o)| o.touched.elapsed() >= SESSION_IDLE).map(|(k, _)| k.clone()).collect();
        for id in expired {
            if let Some(o) = open.remove(&id) {
                let ledger = ledger.clone();
                tokio::spawn(async move {
                    if let Some(staged) = o.staged.lock().await.take() {
                        staged.discard(&ledger).await;
                    }
                });
            }
        }
        if open.len() >= MAX_SESSIONS {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                format!("{MAX_SESSIONS} import sessions are open; commit or delete one (DELETE /api/v1/import/focus/sessions/ID)"),
            ));
        }
        let id = format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>());
        open.insert(id.clone(), Open { staged: Arc::new(tokio::sync::Mutex::new(Some(StagedImport::default()))), touched: Instant::now() });
        Ok(id)
    }

    fn get(&self, id: &str) -> Result<Arc<tokio::sync::Mutex<Option<StagedImport>>>, ApiError> {
        let mut open = self.lock();
        let o = open.get_mut(id).ok_or_else(|| unknown_session(id))?;
        o.touched = Instant::now();
        Ok(Arc::clone(&o.staged))
    }

    fn remove(&self, id: &str) -> Result<Arc<tokio::sync::Mutex<Option<StagedImport>>>, ApiError> {
        self.lock().remove(id).map(|o| o.staged).ok_or_else(|| unknown_session(id))
    }
}

fn unknown_session(id: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no open import session {id:?} (sessions expire after an hour unused); open one again"))
}

pub fn router(costs: CostState) -> Router {
    let sessions = Arc::new(Sessions::default());
    Router::new()
        .route("/api/v1/import/focus", post(import_focus))
        .route("/api/v1/import/focus/sessions", post(open_session))
        .route("/api/v1/import/focus/sessions/{id}/commit", post(commit_session))
        .route("/api/v1/import/focus/sessions/{id}", delete(drop_session))
        .layer(Extension(sessions))
        .with_state(costs)
}

fn admin_only(caller: &Caller) -> Result<(), ApiError> {
    match caller.tenant() {
        Some(_) => Err(ApiError::new(ErrorCode::PermissionDenied, "importing bills needs an admin key")),
        None => Ok(()),
    }
}

async fn open_session(
    State(state): State<CostState>,
    Extension(caller): Extension<Caller>,
    Extension(sessions): Extension<Arc<Sessions>>,
) -> Result<Response, ApiError> {
    admin_only(&caller)?;
    Ok(Json(json!({ "session": sessions.create(state.closer.ledger())? })).into_response())
}

async fn commit_session(
    State(state): State<CostState>,
    Extension(caller): Extension<Caller>,
    Extension(sessions): Extension<Arc<Sessions>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let staged = close_session(&caller, &sessions, &id).await?.ok_or_else(|| unknown_session(&id))?;
    let answer = staged.commit(&state.closer).await?;
    tracing::info!(rows = %answer["rows"], files = %answer["files"], "FOCUS bill imported");
    Ok(Json(answer).into_response())
}

async fn drop_session(
    State(state): State<CostState>,
    Extension(caller): Extension<Caller>,
    Extension(sessions): Extension<Arc<Sessions>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if let Some(staged) = close_session(&caller, &sessions, &id).await? {
        staged.discard(state.closer.ledger()).await;
    }
    Ok(Json(json!({ "dropped": id })).into_response())
}

/// Closes session `id` to further files: its staged import, once a file
/// being added to it is done (`None`: another request closed it first).
async fn close_session(caller: &Caller, sessions: &Sessions, id: &str) -> Result<Option<StagedImport>, ApiError> {
    admin_only(caller)?;
    let session = sessions.remove(id)?;
    let staged = session.lock().await.take();
    Ok(staged)
}

/// Writes the request body to a new file under `dir` as it arrives (at most
/// [`MAX_FILE_BYTES`]); the file is deleted when the handle drops.
async fn spool(dir: &std::path::Path, body: axum::body::Body) -> Result<tempfile::TempPath, ApiError> {
    let io = |e: std::io::Error| ApiError::new(ErrorCode::Unavailable, format!("cannot spool the upload under {}: {e}", dir.display()));
    tokio::fs::create_dir_all(dir).await.map_err(io)?;
    let dir = dir.to_path_buf();
    let path = tokio::task::spawn_blocking(move || tempfile::Builder::new().prefix("bill-").tempfile_in(&dir).map(|f| f.into_temp_path()))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(io)?;
    let mut file = tokio::fs::OpenOptions::new().write(true).truncate(true).open(&path).await.map_err(io)?;
    let mut stream = body.into_data_stream();
    let mut written: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::new(ErrorCode::InvalidArgument, format!("reading the upload failed: {e}")))?;
        written += chunk.len() as u64;
        if written > MAX_FILE_BYTES {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("a bill file may be {} GiB at most; split the export into smaller files", MAX_FILE_BYTES >> 30),
            ));
        }
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    Ok(path)
}

async fn import_focus(
    State(state): State<CostState>,
    Extension(caller): Extension<Caller>,
    Extension(sessions): Extension<Arc<Sessions>>,
    billing: Option<Extension<Arc<BillingSection>>>,
    spool_dir: Option<Extension<SpoolDir>>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    admin_only(&caller)?;
    // Checked before the body is read.
    let session = q.get("session").map(|id| sessions.get(id).map(|s| (id.clone(), s))).transpose()?;
    let label = q.get("file").cloned().unwrap_or_else(|| "upload.csv".into());
    let options = ImportOptions {
        tenant_tag: q.get("tenant_tag").cloned().unwrap_or_else(|| "tenant".into()),
        service_tag: q.get("service_tag").cloned().unwrap_or_else(|| "service".into()),
    };
    let dir = spool_dir.map(|Extension(d)| d.0).unwrap_or_else(|| std::env::temp_dir().join("costplane-imports"));
    let path = spool(&dir, body).await?;
    let input = staged::FileInput {
        label,
        path: path.to_path_buf(),
        options,
        currency: state.closer.meter().catalog.currency.clone(),
        billing: billing.map(|Extension(b)| b).unwrap_or_default(),
    };
    let ledger = state.closer.ledger();
    match session {
        Some((id, slot)) => {
            let mut slot = slot.lock().await;
            let staged = slot.take().ok_or_else(|| unknown_session(&id))?;
            let (staged, added) = staged.add_file(ledger, input).await;
            if let Err(e) = added {
                // Part of the file is staged under the session's revisions:
                // the session is no longer whole.
                let _ = sessions.remove(&id);
                staged.discard(ledger).await;
                return Err(ApiError::new(
                    e.code,
                    format!(
                        "{}; the import session was dropped and nothing was imported: fix the file and import the bill again",
                        e.message
                    ),
                ));
            }
            let answer = json!({ "session": id, "files": staged.files(), "rows": staged.rows() });
            *slot = Some(staged);
            Ok(Json(answer).into_response())
        }
        None => {
            let (staged, added) = StagedImport::default().add_file(ledger, input).await;
            if let Err(e) = added {
                staged.discard(ledger).await;
                return Err(e);
            }
            let answer = staged.commit(&state.closer).await?;
            tracing::info!(rows = %answer["rows"], files = %answer["files"], "FOCUS bill imported");
            Ok(Json(answer).into_response())
        }
    }
}
