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
    /// The secret; never printed (`Debug` shows `[redacted]`).
    pub key: crate::secret::Secret,
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
        if k.key.expose().len() < 16 {
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
            if constant_time_eq(k.key.expose().as_bytes(), given.as_bytes()) && found.is_none() {
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

/// The address the API is bound to, and whether it may serve beyond
/// loopback without keys (`api.allow_open_remote`), for the Host check.
#[derive(Debug, Clone, Copy)]
pub struct BoundAddr {
    pub addr: std::net::SocketAddr,
    pub allow_open_remote: bool,
}

/// Middleware: keeps web pages from using the API through the operator's
/// browser.
///
/// - A request with an `Origin` other than its own `Host` is refused (no
///   CORS is served, so a page elsewhere cannot read answers either).
/// - Without keys, `Host` must be `localhost`, a loopback address or the
///   bound address: a page on a rebinding DNS name is refused.
/// - Requests that carry a body to change something (`POST`, `PUT`,
///   `PATCH`) must be `application/json`, which a page can only send
///   cross-origin after a CORS preflight that fails; `text/plain` and form
///   posts are refused. (`DELETE` carries no body, and a page can only send
///   it after a preflight.)
///
/// It is layered over the API listener's whole router (`api::app`), so it
/// holds for every route and the 404 fallback.
pub async fn browser_guard(State(open): State<bool>, req: Request, next: Next) -> Response {
    if let Err(e) = check_browser_safety(&req, open) {
        return e.into_response();
    }
    next.run(req).await
}

fn host_of(req: &Request) -> Option<String> {
    req.headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))
}

/// The host name of an authority (`[::1]:8080` → `::1`, `a.b:80` → `a.b`).
fn host_name(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

fn check_browser_safety(req: &Request, open: bool) -> Result<(), ApiError> {
    let host = host_of(req);
    if let Some(origin) = req.headers().get(http::header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null");
        let authority = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
        let same = matches!((authority, host.as_deref()), (Some(a), Some(h)) if a.trim_end_matches('/').eq_ignore_ascii_case(h));
        if !same {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!("cross-origin requests are refused (Origin {})", crate::costs::params::cut(origin)),
            ));
        }
    }
    if open {
        let bound = req.extensions().get::<BoundAddr>().copied();
        let remote_ok = bound.is_some_and(|b| b.allow_open_remote);
        if let (Some(h), false) = (host.as_deref(), remote_ok) {
            let name = host_name(h);
            let loopback = name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            let bound_ip = bound.is_some_and(|b| name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip == b.addr.ip()));
            if !loopback && !bound_ip {
                return Err(ApiError::new(
                    ErrorCode::PermissionDenied,
                    format!(
                        "Host '{}' is not this server's address; without API keys only localhost and the bound address are served",
                        crate::costs::params::cut(h)
                    ),
                ));
            }
        }
    }
    let changes = !matches!(*req.method(), http::Method::GET | http::Method::HEAD | http::Method::OPTIONS | http::Method::DELETE);
    if changes {
        let ct = req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        // A bill upload is CSV, gzip or Parquet: types a web form cannot
        // send without a preflight, so they are as safe as JSON there.
        let bill = req.uri().path() == "/api/v1/import/focus"
            && ["text/csv", "application/gzip", "application/vnd.apache.parquet"].iter().any(|t| mime.eq_ignore_ascii_case(t));
        if !mime.eq_ignore_ascii_case("application/json") && !bill {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!(
                    "send Content-Type: application/json (got '{}'); other types are refused so web pages cannot post here",
                    crate::costs::params::cut(ct)
                ),
            ));
        }
    }
    Ok(())
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

    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn browsers_cannot_post_across_origins_or_rebind_hosts() {
        let json = ("content-type", "application/json");
        let host = ("host", "127.0.0.1:8080");
        assert!(check_browser_safety(&request("POST", "/api/v1/sql", &[json, host]), true).is_ok());
        let e = check_browser_safety(&request("POST", "/api/v1/sql", &[("content-type", "text/plain"), host]), true).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnsupportedMediaType);
        assert!(check_browser_safety(&request("POST", "/api/v1/reprice", &[host]), false).is_err());
        let e = check_browser_safety(&request("POST", "/api/v1/sql", &[json, host, ("origin", "https://evil.example")]), true).unwrap_err();
        assert_eq!(e.code, ErrorCode::PermissionDenied);
        assert!(check_browser_safety(&request("GET", "/api/v1/costs", &[host, ("origin", "null")]), false).is_err());
        assert!(check_browser_safety(&request("POST", "/api/v1/sql", &[json, host, ("origin", "http://127.0.0.1:8080")]), true).is_ok());
        let e = check_browser_safety(&request("GET", "/api/v1/costs", &[("host", "rebound.evil.example:8080")]), true).unwrap_err();
        assert!(e.message.contains("rebound.evil.example"), "{}", e.message);
        // With keys, a browser cannot attach them cross-origin: any Host is fine.
        assert!(check_browser_safety(&request("GET", "/api/v1/costs", &[("host", "costplane.internal:8080")]), false).is_ok());
        for ok in ["localhost:8080", "[::1]:8080", "127.0.0.1"] {
            assert!(check_browser_safety(&request("GET", "/metrics", &[("host", ok)]), true).is_ok(), "{ok}");
        }
    }
}
