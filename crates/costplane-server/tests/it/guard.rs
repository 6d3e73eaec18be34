//! One guard for every route: a walk over `api::ROUTES` (the list the
//! router is built from; a route missing from it stops the server from
//! starting) through a real server, checking that each route refuses a
//! rebinding `Host` and a cross-origin request, that each write refuses
//! non-JSON bodies, and that each keyed route needs a key.

use std::time::Duration;

use costplane_server::api::{PUBLIC, ROUTES};
use costplane_server::auth::ApiKey;
use costplane_server::Config;

use crate::support::{raw_request, RunningServer};

const ADMIN: &str = "admin-key-0123456789abcdef";
const ACME: &str = "acme-key-0123456789abcdef";

/// (method, path with `{id}` filled in) of every route.
fn routes() -> Vec<(&'static str, String)> {
    ROUTES
        .iter()
        .map(|r| {
            let (method, path) = r.split_once(' ').unwrap();
            (method, path.replace("{id}", "no-such-id"))
        })
        .collect()
}

fn writes(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_rebinding_hosts_cross_origin_requests_and_form_posts() {
    let mut server = RunningServer::start(Config::default(), Duration::ZERO, 0).await;
    let addr = server.api;
    let rebound = format!("rebound.evil.example:{}", addr.port());
    let json = ("content-type", "application/json");
    assert!(routes().iter().any(|(_, p)| p.starts_with("/api/v1/budgets")), "the insights routes are in the list");
    for (method, path) in routes() {
        let what = format!("{method} {path}");
        // A page on a rebinding DNS name reaches the loopback server with
        // its own Host.
        let (status, body) = raw_request(addr, method, &path, &[("host", &rebound), json], b"{}").await.unwrap();
        assert_eq!(status, 403, "{what} with a rebinding Host: {body}");
        assert!(body.contains("is not this server's address"), "{what}: {body}");
        // A page elsewhere, through the operator's browser.
        let (status, body) = raw_request(addr, method, &path, &[("origin", "https://evil.example"), json], b"{}").await.unwrap();
        assert_eq!(status, 403, "{what} cross-origin: {body}");
        assert!(body.contains("cross-origin requests are refused"), "{what}: {body}");
        if writes(method) {
            for ct in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
                let (status, body) = raw_request(addr, method, &path, &[("content-type", ct)], b"{}").await.unwrap();
                assert_eq!(status, 415, "{what} as {ct}: {body}");
            }
            let (status, body) = raw_request(addr, method, &path, &[], b"{}").await.unwrap();
            assert_eq!(status, 415, "{what} without a content type: {body}");
        }
        // The same request from the server's own page is routed (so the
        // refusals above came from the guard, not from a missing route).
        let (status, body) = raw_request(addr, method, &path, &[json], b"{}").await.unwrap();
        assert!(![403, 405, 415].contains(&status) && status < 500, "{what} same-origin: {status} {body}");
        assert!(!body.contains("no such path"), "{what} is routed: {body}");
    }
    // The 404 answer is guarded too.
    let (status, _) = raw_request(addr, "GET", "/api/v1/nothing-here", &[("host", &rebound)], b"").await.unwrap();
    assert_eq!(status, 403);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_but_the_public_ones_needs_a_key() {
    let mut config = Config::default();
    config.api.keys = vec![
        ApiKey { key: ADMIN.into(), tenant: None, role: Some("admin".into()) },
        ApiKey { key: ACME.into(), tenant: Some("acme".into()), role: None },
    ];
    let mut server = RunningServer::start(config, Duration::ZERO, 0).await;
    let addr = server.api;
    let json = ("content-type", "application/json");
    for (method, path) in routes() {
        let what = format!("{method} {path}");
        let public = PUBLIC.iter().any(|p| p.split_once(' ').unwrap() == (method, path.as_str()));
        let (status, body) = raw_request(addr, method, &path, &[json], b"{}").await.unwrap();
        if public {
            assert!(status < 400, "{what} is public: {status} {body}");
        } else {
            assert_eq!(status, 401, "{what} without a key: {body}");
            let bearer = format!("Bearer {ACME}");
            let (status, body) = raw_request(addr, method, &path, &[json, ("authorization", &bearer)], b"{}").await.unwrap();
            assert!(status != 401 && status < 500, "{what} with a tenant key: {status} {body}");
        }
        // A key does not make a cross-origin request acceptable: a page
        // could have the operator's browser send a stored key.
        let bearer = format!("Bearer {ADMIN}");
        let headers = [json, ("authorization", bearer.as_str()), ("origin", "http://evil.example")];
        let (status, body) = raw_request(addr, method, &path, &headers, b"{}").await.unwrap();
        assert_eq!(status, 403, "{what} cross-origin with a key: {body}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insights_writes_refuse_forms_and_rebinding_hosts() {
    let mut server = RunningServer::start(Config::default(), Duration::ZERO, 0).await;
    let addr = server.api;
    let rebound = format!("rebound.evil.example:{}", addr.port());
    let budget = br#"{"id": "csrf", "period": "month", "amount": "1"}"#;
    let backfill = br#"{"since": "2026-01-01"}"#;
    for (path, body) in [("/api/v1/budgets", &budget[..]), ("/api/v1/anomalies/backfill", &backfill[..])] {
        // A form post and a text/plain fetch, the two a page can send
        // without a preflight.
        for ct in ["text/plain", "application/x-www-form-urlencoded"] {
            let (status, answer) = raw_request(addr, "POST", path, &[("content-type", ct)], body).await.unwrap();
            assert_eq!(status, 415, "{path} as {ct}: {answer}");
            assert!(answer.contains("application/json"), "{answer}");
        }
        let (status, _) = raw_request(addr, "POST", path, &[("host", &rebound), ("content-type", "application/json")], body).await.unwrap();
        assert_eq!(status, 403, "{path}");
    }
    for path in ["/api/v1/forecast", "/api/v1/anomalies", "/api/v1/budgets", "/api/v1/budgets/status"] {
        let (status, _) = raw_request(addr, "GET", path, &[("host", &rebound)], b"").await.unwrap();
        assert_eq!(status, 403, "{path}");
        let (status, body) = raw_request(addr, "GET", path, &[], b"").await.unwrap();
        assert_eq!(status, 200, "{path}: {body}");
    }
    // Nothing was created.
    let (_, list) = raw_request(addr, "GET", "/api/v1/budgets", &[], b"").await.unwrap();
    assert!(!list.contains("csrf"), "{list}");
    server.stop().await;
}
