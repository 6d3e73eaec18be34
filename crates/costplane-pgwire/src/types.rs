//! PostgreSQL types of result columns, and their text and binary forms.
//!
//! Cells arrive as text from the backend; they are sent as PostgreSQL's
//! text form, or parsed and sent in the binary form when the client asks
//! for binary results (psycopg's binary cursors, Grafana's pgx).

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use pgwire::api::results::{DataRowEncoder, FieldFormat};
use pgwire::api::Type;
use pgwire::types::format::FormatOptions;
use rust_decimal::Decimal;

use crate::PgError;

/// The PostgreSQL types the endpoint answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgType {
    Bool,
    Int8,
    Float8,
    /// Exact decimals (money): the cell's text is kept digit for digit.
    Numeric,
    Text,
    /// The store's times are UTC: sent as `timestamptz` at +00.
    TimestampTz,
    Date,
}

impl PgType {
    /// The type of an engine column named by its Arrow type (`Int64`,
    /// `Decimal128(38, 12)`, `Timestamp(µs)`, `Utf8`, ...). Anything
    /// without a closer PostgreSQL type (lists, maps, structs, intervals)
    /// is text, as the engine renders it.
    pub fn from_engine_type(name: &str) -> PgType {
        let name = name.trim();
        if name == "Boolean" {
            PgType::Bool
        } else if name == "UInt64" {
            // Past i64: exact as numeric.
            PgType::Numeric
        } else if name.starts_with("Int") || name.starts_with("UInt") {
            PgType::Int8
        } else if name.starts_with("Float") {
            PgType::Float8
        } else if name.starts_with("Decimal") {
            PgType::Numeric
        } else if name.starts_with("Timestamp") {
            PgType::TimestampTz
        } else if name.starts_with("Date") {
            PgType::Date
        } else {
            PgType::Text
        }
    }

    pub(crate) fn pg(self) -> Type {
        match self {
            PgType::Bool => Type::BOOL,
            PgType::Int8 => Type::INT8,
            PgType::Float8 => Type::FLOAT8,
            PgType::Numeric => Type::NUMERIC,
            PgType::Text => Type::TEXT,
            PgType::TimestampTz => Type::TIMESTAMPTZ,
            PgType::Date => Type::DATE,
        }
    }

    /// The SQL name psql's `\d` shows.
    pub(crate) fn sql_name(self) -> &'static str {
        match self {
            PgType::Bool => "boolean",
            PgType::Int8 => "bigint",
            PgType::Float8 => "double precision",
            PgType::Numeric => "numeric",
            PgType::Text => "text",
            PgType::TimestampTz => "timestamp with time zone",
            PgType::Date => "date",
        }
    }
}

fn bad(ty: PgType, text: &str) -> PgError {
    let shown: String = text.chars().take(64).collect();
    PgError::Value(format!("the engine's value {shown:?} is not a {}", ty.sql_name()))
}

/// `2026-12-01T10:00:00.5` (the engine's form), `2026-12-01 10:00:00`, with
/// or without an offset, as UTC.
fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim().replace(' ', "T");
    if let Ok(dt) = DateTime::parse_from_rfc3339(&t) {
        return Some(dt.with_timezone(&Utc));
    }
    let t = t.trim_end_matches('Z');
    let t = t.strip_suffix("+00").or_else(|| t.strip_suffix("+00:00")).unwrap_or(t);
    NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|n| n.and_utc())
}

/// PostgreSQL's text form of a cell of type `ty`.
pub(crate) fn text_form(ty: PgType, text: &str) -> Result<String, PgError> {
    Ok(match ty {
        PgType::Bool => match text {
            "true" | "t" | "1" => "t".to_owned(),
            "false" | "f" | "0" => "f".to_owned(),
            _ => return Err(bad(ty, text)),
        },
        PgType::TimestampTz => {
            let ts = parse_timestamp(text).ok_or_else(|| bad(ty, text))?;
            ts.format("%Y-%m-%d %H:%M:%S%.f+00").to_string()
        }
        PgType::Float8 => match text {
            "inf" | "Infinity" => "Infinity".to_owned(),
            "-inf" | "-Infinity" => "-Infinity".to_owned(),
            "NaN" | "nan" => "NaN".to_owned(),
            other => other.to_owned(),
        },
        _ => text.to_owned(),
    })
}

/// Encodes one cell into `encoder` in the column's format.
pub(crate) fn encode(encoder: &mut DataRowEncoder, ty: PgType, format: FieldFormat, cell: Option<&str>) -> Result<(), PgError> {
    let pg = ty.pg();
    let options = FormatOptions::default();
    let enc = |e: pgwire::error::PgWireError| PgError::Value(format!("encoding a value failed: {e}"));
    let Some(text) = cell else {
        return encoder.encode_field_with_type_and_format(&None::<i64>, &pg, format, &options).map_err(enc);
    };
    if format == FieldFormat::Text {
        let value = text_form(ty, text)?;
        return encoder.encode_field_with_type_and_format(&value, &Type::TEXT, format, &options).map_err(enc);
    }
    match ty {
        PgType::Bool => {
            let v = text_form(ty, text)? == "t";
            encoder.encode_field_with_type_and_format(&v, &pg, format, &options)
        }
        PgType::Int8 => {
            let v: i64 = text.trim().parse().map_err(|_| bad(ty, text))?;
            encoder.encode_field_with_type_and_format(&v, &pg, format, &options)
        }
        PgType::Float8 => {
            let v: f64 = match text {
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                t => t.trim().parse().map_err(|_| bad(ty, text))?,
            };
            encoder.encode_field_with_type_and_format(&v, &pg, format, &options)
        }
        PgType::Numeric => {
            let v = Decimal::from_str_exact(text.trim()).or_else(|_| Decimal::from_scientific(text.trim())).map_err(|_| bad(ty, text))?;
            encoder.encode_field_with_type_and_format(&v, &pg, format, &options)
        }
        PgType::TimestampTz => {
            let v = parse_timestamp(text).ok_or_else(|| bad(ty, text))?;
            encoder.encode_field_with_type_and_format(&v, &pg, format, &options)
        }
        PgType::Date => {
            let v = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| bad(ty, text))?;
            encoder.encode_field_with_type_and_format(&v, &pg, format, &options)
        }
        PgType::Text => encoder.encode_field_with_type_and_format(&text, &pg, format, &options),
    }
    .map_err(enc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_types_map_to_postgres_types() {
        assert_eq!(PgType::from_engine_type("Decimal128(38, 12)"), PgType::Numeric);
        assert_eq!(PgType::from_engine_type("Int64"), PgType::Int8);
        assert_eq!(PgType::from_engine_type("UInt64"), PgType::Numeric);
        assert_eq!(PgType::from_engine_type("Float64"), PgType::Float8);
        assert_eq!(PgType::from_engine_type("Timestamp(Microsecond, None)"), PgType::TimestampTz);
        assert_eq!(PgType::from_engine_type("Timestamp(µs)"), PgType::TimestampTz);
        assert_eq!(PgType::from_engine_type("Utf8"), PgType::Text);
        assert_eq!(PgType::from_engine_type("Map(...)"), PgType::Text);
        assert_eq!(PgType::from_engine_type("Date32"), PgType::Date);
    }

    #[test]
    fn times_are_utc_text() {
        assert_eq!(text_form(PgType::TimestampTz, "2026-12-01T10:00:00").unwrap(), "2026-12-01 10:00:00+00");
        assert_eq!(text_form(PgType::TimestampTz, "2026-12-01T10:00:00.250").unwrap(), "2026-12-01 10:00:00.250+00");
        assert_eq!(text_form(PgType::TimestampTz, "2026-12-01 10:00:00+00").unwrap(), "2026-12-01 10:00:00+00");
        assert!(text_form(PgType::TimestampTz, "yesterday").is_err());
        assert_eq!(text_form(PgType::Bool, "true").unwrap(), "t");
    }
}
