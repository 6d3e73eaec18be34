//! The cost page at `/`, and the 404 answer of both HTTP listeners.
//!
//! The page is three static files compiled into the binary (no CDN, no
//! build step): it reads only the public API (`/api/v1/costs`,
//! `/api/v1/costs/unpriced`, `/api/v1/reconciliation`, `/api/v1/unit-costs`,
//! `/api/costs/export`, `/readyz`) from the browser, so it shows exactly
//! what the API shows and honours API keys the same way (the key is asked
//! for in the page and sent as `Authorization: Bearer`). The files
//! themselves carry no data, so they are served without a key.

use axum::extract::OriginalUri;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Served on the API listener: the page and its assets.
pub fn router() -> Router {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX_HTML)))
        .route("/ui/app.js", get(|| asset("text/javascript; charset=utf-8", APP_JS)))
        .route("/ui/style.css", get(|| asset("text/css; charset=utf-8", STYLE_CSS)))
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    // `no-cache`: revalidate, so a new binary's page is picked up at once.
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// The paths the API listener answers, named in its 404s.
pub const API_PATHS: &[&str] = &[
    "GET /",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "GET /api/v1/costs",
    "GET /api/v1/costs/unpriced",
    "GET /api/costs/export?month=YYYY-MM",
    "POST /api/v1/sql",
    "POST /api/v1/reprice",
];

/// The paths the OTLP/HTTP listener answers.
pub const OTLP_HTTP_PATHS: &[&str] = &["POST /v1/traces", "POST /v1/logs", "POST /v1/metrics"];

/// A fallback handler answering 404 with the listener's valid paths, and
/// logging the miss (a wrong exporter endpoint is a common first-day error).
pub fn not_found(
    listener: &'static str,
    paths: &'static [&'static str],
) -> impl Fn(Method, OriginalUri) -> std::future::Ready<Response> + Clone {
    move |method: Method, OriginalUri(uri): OriginalUri| {
        let path = uri.path().to_owned();
        tracing::info!(%method, %path, listener, "no such path: answered 404");
        let body = serde_json::json!({
            "error": format!("no such path: {method} {path}"),
            "valid_paths": paths,
        });
        std::future::ready((StatusCode::NOT_FOUND, Json(body)).into_response())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_references_only_embedded_assets() {
        // Every script and stylesheet the page loads is one this module serves;
        // nothing comes from another host.
        for needle in ["src=\"/ui/app.js\"", "href=\"/ui/style.css\""] {
            assert!(INDEX_HTML.contains(needle), "{needle}");
        }
        for text in [INDEX_HTML, APP_JS, STYLE_CSS] {
            assert!(!text.contains("http://") || text.contains("http://www.w3.org/2000/svg"), "no remote URLs");
            assert!(!text.contains("https://"), "no remote URLs");
        }
    }

    #[test]
    fn the_page_reads_only_the_public_api() {
        for path in ["/api/v1/costs", "/api/v1/costs/unpriced", "/api/costs/export", "/readyz"] {
            assert!(APP_JS.contains(path), "{path}");
            assert!(API_PATHS.iter().any(|p| p.contains(path)), "{path} is a listed API path");
        }
    }
}
