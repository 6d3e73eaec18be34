//! API keys: each bound to one tenant or to `admin`.
//!
//! With keys configured, every `/api/` request needs `Authorization: Bearer
//! <key>` (or `X-API-Key`); a tenant key sees only its tenant's rows in every
//! endpoint and export, and cannot use admin endpoints (raw SQL, repricing).
//! Keys are compared in constant time. With no keys configured the API is
//! open, and the server refuses to listen beyond loopback unless told to.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorCode};

/// One configured key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    pub key: String,
    /// The tenant this key sees; absent for an admin key.
    #[serde(default)]
    pub tenant: Option<String>,
    /// `admin` for a key that sees every tenant.
    #[serde(default)]
    pub role: Option<String>,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An admin key, or any caller when no keys are configured.
    Admin,
    Tenant(String),
}

impl Caller {
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Caller::Admin => None,
            Caller::Tenant(t) => Some(t),
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Caller::Admin)
    }
}

/// Equal bytes, in time that depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// Checks that every key is either admin or bound to a tenant.
pub fn validate(keys: &[ApiKey]) -> Result<(), String> {
    for (i, k) in keys.iter().enumerate() {
        if k.key.len() < 16 {
            return Err(format!("api.keys[{i}]: keys must be at least 16 characters"));
        }
        match (&k.tenant, k.role.as_deref()) {
            (Some(_), None) | (None, Some("admin")) => {}
            _ => return Err(format!("api.keys[{i}]: set either tenant = \"...\" or role = \"admin\"")),
        }
    }
    Ok(())
}

fn presented(req: &Request) -> Option<&str> {
    let h = req.headers();
    if let Some(v) = h.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return v.strip_prefix("Bearer ").map(str::trim);
    }
    h.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)
}

/// Middleware: resolves the caller, or answers 401.
pub async fn authenticate(State(keys): State<std::sync::Arc<Vec<ApiKey>>>, mut req: Request, next: Next) -> Response {
    let caller = if keys.is_empty() {
        Caller::Admin
    } else {
        let Some(given) = presented(&req) else {
            return ApiError::new(ErrorCode::Unauthenticated, "an API key is required: send Authorization: Bearer <key>").into_response();
        };
        // Compare against every key so timing does not reveal which matched.
        let mut found = None;
        for k in keys.iter() {
            if constant_time_eq(k.key.as_bytes(), given.as_bytes()) && found.is_none() {
                found = Some(k);
            }
        }
        match found {
            Some(k) => k.tenant.clone().map_or(Caller::Admin, Caller::Tenant),
            None => return ApiError::new(ErrorCode::Unauthenticated, "unknown API key").into_response(),
        }
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison_is_correct() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn keys_must_be_admin_or_tenant() {
        let k = |tenant: Option<&str>, role: Option<&str>| ApiKey {
            key: "0123456789abcdef".into(),
            tenant: tenant.map(Into::into),
            role: role.map(Into::into),
        };
        assert!(validate(&[k(Some("acme"), None), k(None, Some("admin"))]).is_ok());
        assert!(validate(&[k(None, None)]).is_err());
        assert!(validate(&[k(Some("acme"), Some("admin"))]).is_err());
        assert!(validate(&[ApiKey { key: "short".into(), tenant: Some("a".into()), role: None }]).is_err());
    }
}
