//! costplane-telemetry: the OTLP data model.
//!
//! Decodes OTLP export requests (protobuf or JSON), validates each item and
//! converts it into the rows of the OpenTelemetry ClickHouse exporter's
//! tables. Nothing here does I/O.

mod attributes;
pub mod convert;
pub mod decode;
mod error;
mod json;
pub mod model;
pub mod usage;
pub mod values;
pub mod wire;

pub use convert::{Conversion, Limits};
pub use decode::{decode_request, encode_response, Encoding};
pub use error::TelemetryError;
pub use model::*;
