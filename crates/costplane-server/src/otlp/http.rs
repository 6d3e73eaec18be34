//! OTLP/HTTP: `POST /v1/traces`, `/v1/logs`, `/v1/metrics`.
//!
//! Protobuf (`application/x-protobuf`) and JSON (`application/json`) bodies,
//! `Content-Encoding: gzip` or none. Answers are in the request's content
//! type: an export response (with `partial_success` when items were
//! rejected), or a `google.rpc.Status` for failures. 400 and 413 are final;
//! 503 carries `Retry-After` and is retried by OTLP exporters. An answer
//! given before the body was read follows reading (and dropping) the rest of
//! it, within a bound, so that clients that send the whole body before
//! reading see the answer rather than a broken pipe.

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use costplane_telemetry::{encode_response, Encoding, Signal};
use http::{header, HeaderMap, HeaderValue};
use prost::Message;

use super::body::{after_discarding_the_rest, read_http_body};
use super::inflight::decode_estimate;
use super::Ingest;
use crate::error::{ApiError, ErrorCode};

/// Seconds a refused client is asked to wait.
const RETRY_AFTER_SECS: &str = "1";

/// `google.rpc.Status`, the body OTLP/HTTP failures carry (public so that
/// clients and tests decode it with the same definition).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

pub fn router(ingest: Ingest) -> Router {
    Router::new()
        .route("/v1/traces", post(|s: State<Ingest>, h: HeaderMap, b: Body| export(s, h, b, Signal::Traces)))
        .route("/v1/logs", post(|s: State<Ingest>, h: HeaderMap, b: Body| export(s, h, b, Signal::Logs)))
        .route("/v1/metrics", post(|s: State<Ingest>, h: HeaderMap, b: Body| export(s, h, b, Signal::Metrics)))
        // The body limit is enforced below, after decompression, with an
        // OTLP-shaped answer.
        .layer(DefaultBodyLimit::disable())
        .with_state(ingest)
        .fallback(crate::web::not_found("OTLP/HTTP", crate::web::OTLP_HTTP_PATHS))
}

fn encoding_of(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        "" => Err(ApiError::new(ErrorCode::UnsupportedMediaType, "missing Content-Type; send application/x-protobuf or application/json")),
        other => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("unsupported Content-Type '{other}'; send application/x-protobuf or application/json"),
        )),
    }
}

async fn export(State(ingest): State<Ingest>, headers: HeaderMap, mut body: Body, signal: Signal) -> Response {
    let encoding = match encoding_of(&headers) {
        Ok(e) => e,
        // No usable content type to answer in: plain text.
        Err(e) => {
            let resp = (e.code.http_status(), e.message).into_response();
            return after_discarding_the_rest(resp, &mut body, ingest.max_body_bytes).await;
        }
    };
    let sender = match ingest.auth.sender(&headers) {
        Ok(s) => s,
        Err(e) => return after_discarding_the_rest(error_response(&e, encoding), &mut body, ingest.max_body_bytes).await,
    };
    // Released (with the body read so far) before any unread rest of the
    // body is discarded; on every path, as the handler's future is dropped.
    let reservation = ingest.inflight.reservation();
    let result = match read_http_body(&headers, &mut body, ingest.max_body_bytes, &reservation).await {
        Ok(bytes) => reservation
            .reserve(decode_estimate(signal, encoding, bytes.len()))
            .and_then(|()| ingest.export(signal, encoding, &bytes, sender)),
        Err(e) => Err(e),
    };
    drop(reservation);
    let resp = match result {
        Ok(outcome) => {
            let body = encode_response(signal, encoding, outcome.rejected, outcome.message);
            ([(header::CONTENT_TYPE, encoding.content_type())], body).into_response()
        }
        Err(e) => error_response(&e, encoding),
    };
    after_discarding_the_rest(resp, &mut body, ingest.max_body_bytes).await
}

fn error_response(e: &ApiError, encoding: Encoding) -> Response {
    if e.code == ErrorCode::Unavailable {
        tracing::debug!(error = %e.message, "refusing an OTLP/HTTP request");
    } else {
        tracing::info!(error = %e.message, status = e.code.http_status().as_u16(), "rejecting an OTLP/HTTP request");
    }
    let status = RpcStatus { code: e.code.grpc_code() as i32, message: e.message.clone() };
    let body = match encoding {
        Encoding::Protobuf => status.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&status).unwrap_or_default(),
    };
    let mut resp = (e.code.http_status(), [(header::CONTENT_TYPE, encoding.content_type())], body).into_response();
    if let Some(secs) = e.retry_after_secs() {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    } else if e.code == ErrorCode::Unavailable {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
    }
    resp
}
