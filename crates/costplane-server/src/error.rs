//! Errors of the server crate, and the one code table that maps every
//! failure to both an HTTP status and a gRPC code.

use costplane_pipeline::SubmitError;
use costplane_store::StoreError;
use costplane_telemetry::TelemetryError;
use http::StatusCode;
use thiserror::Error;

/// What kind of failure a request met; decides the status on both protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is malformed; retrying it unchanged will fail again.
    InvalidArgument,
    /// The body is larger than the configured limit.
    PayloadTooLarge,
    /// The content type or encoding is not one costplane speaks.
    UnsupportedMediaType,
    /// Temporarily unable (queue full, shutting down, store down): retry later.
    Unavailable,
    NotFound,
    /// No or an unknown API key.
    Unauthenticated,
    /// A valid key without the right (e.g. a tenant key on an admin endpoint).
    PermissionDenied,
    /// The tenant is over its ingest rate: retry after the given delay.
    RateLimited,
    Internal,
}

impl ErrorCode {
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_code(self) -> tonic::Code {
        match self {
            ErrorCode::InvalidArgument | ErrorCode::UnsupportedMediaType => tonic::Code::InvalidArgument,
            ErrorCode::PayloadTooLarge => tonic::Code::ResourceExhausted,
            // UNAVAILABLE is the code OTLP clients retry without RetryInfo.
            ErrorCode::Unavailable => tonic::Code::Unavailable,
            ErrorCode::NotFound => tonic::Code::NotFound,
            ErrorCode::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorCode::PermissionDenied => tonic::Code::PermissionDenied,
            // Retried by OTLP clients because it carries RetryInfo.
            ErrorCode::RateLimited => tonic::Code::ResourceExhausted,
            ErrorCode::Internal => tonic::Code::Internal,
        }
    }
}

/// A failed request: a code and a message for the client.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// When the client may try again (HTTP `Retry-After`, gRPC RetryInfo).
    pub retry_after: Option<std::time::Duration>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.rpc.Status` with details, as `grpc-status-details-bin` carries it.
#[derive(Clone, PartialEq, prost::Message)]
struct StatusWithDetails {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<Any>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), retry_after: None }
    }

    /// A refusal the client should retry after `delay`.
    pub fn retry_after(code: ErrorCode, message: impl Into<String>, delay: std::time::Duration) -> Self {
        ApiError { code, message: message.into(), retry_after: Some(delay) }
    }

    /// Whole seconds for `Retry-After` (at least 1).
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0)).map(|s| s.max(1))
    }

    pub fn to_status(&self) -> tonic::Status {
        use prost::Message;
        let code = self.code.grpc_code();
        match self.retry_after {
            Some(delay) => {
                let info = RetryInfo {
                    retry_delay: Some(ProtoDuration {
                        seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
                        nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
                    }),
                };
                let details = StatusWithDetails {
                    code: code as i32,
                    message: self.message.clone(),
                    details: vec![Any { type_url: "type.googleapis.com/google.rpc.RetryInfo".into(), value: info.encode_to_vec() }],
                };
                tonic::Status::with_details(code, self.message.clone(), details.encode_to_vec().into())
            }
            None => tonic::Status::new(code, self.message.clone()),
        }
    }
}

impl From<TelemetryError> for ApiError {
    fn from(e: TelemetryError) -> Self {
        ApiError::new(ErrorCode::InvalidArgument, e.to_string())
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        ApiError::new(ErrorCode::Unavailable, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let code = match &e {
            StoreError::NotReadOnly(_) | StoreError::Rejected(_) => ErrorCode::InvalidArgument,
            StoreError::Unavailable(_) | StoreError::Unexpected(_) | StoreError::Io(_) | StoreError::SegmentMoved(_) => {
                ErrorCode::Unavailable
            }
            StoreError::Schema(_) | StoreError::BadCell { .. } | StoreError::UnknownValue { .. } => ErrorCode::Internal,
        };
        ApiError::new(code, e.to_string())
    }
}

/// Errors that stop the server from starting or running.
#[derive(Debug, Error)]
pub enum ServerError {
    #[error("configuration error: {0}")]
    Config(String),
    #[error("cannot listen on {addr} for {what}: {source}; is another process using the port? pick another with --{flag}")]
    Bind { what: &'static str, addr: std::net::SocketAddr, flag: &'static str, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the disk buffer cannot be opened: {0}")]
    Buffer(String),
    #[error("server error: {0}")]
    Serve(String),
}

impl ServerError {
    /// Process exit code for this error (2: usage/config, 3: store, 1: other).
    pub fn exit_code(&self) -> i32 {
        match self {
            ServerError::Config(_) | ServerError::Bind { .. } => 2,
            ServerError::Store(_) | ServerError::Buffer(_) => 3,
            ServerError::Serve(_) => 1,
        }
    }
}
