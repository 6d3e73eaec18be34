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
//!
//! A bill in several files (an export split into parts, several months) is
//! one import session, so its files replace the periods together rather
//! than each file replacing what the one before wrote:
//! `POST /api/v1/import/focus/sessions` opens one (`{"session": ID}`),
//! `POST /api/v1/import/focus?session=ID&file=NAME` parses a file into it
//! (nothing is written), `POST /api/v1/import/focus/sessions/ID/commit`
//! writes every file of it as one replacement, `DELETE
//! /api/v1/import/focus/sessions/ID` drops it. At most
//! [`MAX_SESSIONS`] are open; one left alone for [`SESSION_IDLE`] is dropped.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Extension, Json, Router};
use costplane_k8s::focus::{self, Import, ImportOptions};
use costplane_telemetry::usage::{hour_of, HourState, LedgerReplacement, LedgerRow, CLOSED};
use serde_json::json;

use crate::auth::Caller;
use crate::config::BillingSection;
use crate::costs::closer::Closer;
use crate::costs::CostState;
use crate::error::{ApiError, ErrorCode};

/// Largest bill file accepted through the API.
const MAX_FILE_BYTES: usize = 1 << 30;

/// Import sessions open at once.
pub const MAX_SESSIONS: usize = 4;

/// A session nobody added to or committed for this long is dropped.
pub const SESSION_IDLE: Duration = Duration::from_secs(3600);

/// Open import sessions: the files parsed so far, by session id.
#[derive(Debug, Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, (Import, Instant)>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Import, Instant)>> {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn create(&self) -> Result<String, ApiError> {
        let mut open = self.lock();
        open.retain(|_, (_, touched)| touched.elapsed() < SESSION_IDLE);
        if open.len() >= MAX_SESSIONS {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                format!("{MAX_SESSIONS} import sessions are open; commit or delete one (DELETE /api/v1/import/focus/sessions/ID)"),
            ));
        }
        let id = format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>());
        open.insert(id.clone(), (Import::default(), Instant::now()));
        Ok(id)
    }

    fn add(&self, id: &str, import: Import) -> Result<(usize, usize), ApiError> {
        let mut open = self.lock();
        let (session, touched) = open.get_mut(id).ok_or_else(|| unknown_session(id))?;
        session.merge(import);
        *touched = Instant::now();
        Ok((session.files.len(), session.rows.len()))
    }

    fn take(&self, id: &str) -> Result<Import, ApiError> {
        self.lock().remove(id).map(|(i, _)| i).ok_or_else(|| unknown_session(id))
    }
}

fn unknown_session(id: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no open import session {id:?} (sessions expire after an hour unused); open one again"))
}

pub fn router(costs: CostState) -> Router {
    let sessions = Arc::new(Sessions::default());
    Router::new()
        .route("/api/v1/import/focus", post(import_focus).layer(DefaultBodyLimit::max(MAX_FILE_BYTES)))
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

async fn open_session(Extension(caller): Extension<Caller>, Extension(sessions): Extension<Arc<Sessions>>) -> Result<Response, ApiError> {
    admin_only(&caller)?;
    Ok(Json(json!({ "session": sessions.create()? })).into_response())
}

async fn commit_session(
    State(state): State<CostState>,
    Extension(caller): Extension<Caller>,
    Extension(sessions): Extension<Arc<Sessions>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin_only(&caller)?;
    let import = sessions.take(&id)?;
    let answer = replace(&state.closer, import).await?;
    tracing::info!(rows = %answer["rows"], files = %answer["files"], "FOCUS bill imported");
    Ok(Json(answer).into_response())
}

async fn drop_session(
    Extension(caller): Extension<Caller>,
    Extension(sessions): Extension<Arc<Sessions>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin_only(&caller)?;
    sessions.take(&id)?;
    Ok(Json(json!({ "dropped": id })).into_response())
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

/// Brings every row of `import` into the ledger's currency: rows already in
/// it stay as they are; rows in a currency with a rate in
/// `[billing.exchange_rates]` have their four costs converted (rounded to
/// the ledger's 12 places) and keep their original currency, amount and
/// rate in `x_Extra`; any other currency refuses the whole import, so a EUR
/// bill is never summed into USD totals.
pub fn to_ledger_currency(import: &mut Import, ledger: &str, billing: &BillingSection) -> Result<(), ApiError> {
    for r in &mut import.rows {
        let currency = r.billing_currency.trim().to_ascii_uppercase();
        if currency == ledger.to_ascii_uppercase() {
            continue;
        }
        let Some(rate) = billing.exchange_rates.get(&currency).copied() else {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "the bill is in {shown}, the ledger in {ledger}: add [billing.exchange_rates] {shown} = \"<{ledger} per {shown}>\" \
                     to the configuration, or export the bill in {ledger}",
                    shown = if currency.is_empty() { "an unnamed currency".to_owned() } else { currency.clone() }
                ),
            ));
        };
        let convert = |d: rust_decimal::Decimal| costplane_telemetry::usage::round_money(d * rate);
        let mut extra: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&r.ext.extra).unwrap_or_default();
        extra.insert("x_OriginalCurrency".into(), currency.clone().into());
        extra.insert("x_OriginalBilledCost".into(), r.cost.normalize().to_string().into());
        extra.insert("x_ExchangeRate".into(), rate.normalize().to_string().into());
        r.ext.extra = serde_json::Value::Object(extra).to_string();
        r.cost = convert(r.cost);
        for c in [&mut r.ext.effective_cost, &mut r.ext.list_cost, &mut r.ext.contracted_cost].into_iter().flatten() {
            *c = convert(*c);
        }
        r.billing_currency = ledger.to_owned();
    }
    Ok(())
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
    Extension(sessions): Extension<Arc<Sessions>>,
    billing: Option<Extension<Arc<BillingSection>>>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    admin_only(&caller)?;
    // Checked before the file is parsed.
    if let Some(id) = q.get("session") {
        if !sessions.lock().contains_key(id) {
            return Err(unknown_session(id));
        }
    }
    let file = q.get("file").cloned().unwrap_or_else(|| "upload.csv".into());
    let options = ImportOptions {
        tenant_tag: q.get("tenant_tag").cloned().unwrap_or_else(|| "tenant".into()),
        service_tag: q.get("service_tag").cloned().unwrap_or_else(|| "service".into()),
    };
    let body = body.to_vec();
    let mut import = tokio::task::spawn_blocking(move || focus::parse_bytes(&file, &body, &options))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e.to_string()))?;
    let billing = billing.map(|Extension(b)| b).unwrap_or_default();
    to_ledger_currency(&mut import, &state.closer.meter().catalog.currency, &billing)?;
    if let Some(id) = q.get("session") {
        let (files, rows) = sessions.add(id, import)?;
        return Ok(Json(json!({ "session": id, "files": files, "rows": rows })).into_response());
    }
    let answer = replace(&state.closer, import).await?;
    tracing::info!(rows = %answer["rows"], files = %answer["files"], "FOCUS bill imported");
    Ok(Json(answer).into_response())
}
