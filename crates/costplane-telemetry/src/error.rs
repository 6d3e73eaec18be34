use thiserror::Error;

/// Errors of decoding an OTLP request body. Each is the sender's fault and
/// final: OTLP answers them with HTTP 400 / gRPC `INVALID_ARGUMENT`.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TelemetryError {
    #[error("malformed OTLP protobuf payload: {0}")]
    MalformedProtobuf(String),
    #[error("malformed OTLP JSON payload: {0}")]
    MalformedJson(String),
}
