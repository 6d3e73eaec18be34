//! OTLP/JSON's non-finite doubles.
//!
//! The protobuf JSON mapping, which OTLP/JSON follows, writes a double that
//! is not finite as the string `"NaN"`, `"Infinity"` or `"-Infinity"`. The
//! generated serde code reads most OTLP doubles as plain JSON numbers and
//! refuses those strings (`invalid type: string "NaN", expected f64`), and
//! `serde_json::Value` cannot hold a NaN. So a body that carries one is read
//! into [`Json`], a JSON tree whose numbers can be any `f64`, with each such
//! string in a double field made its double, and the request is
//! deserialized from that tree.
//!
//! Which strings are doubles is decided by the field's name: every OTLP
//! field called `doubleValue`, `asDouble`, `sum`, `min`, `max`,
//! `zeroThreshold`, `quantile`, `value` or `explicitBounds` is a double (or
//! a list of them, or a message, which is never a string), so a string there
//! can only be a double. A `stringValue` of `"NaN"` stays text.

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

/// The fields whose string values are doubles written as text.
const DOUBLE_FIELDS: [&str; 9] = ["doubleValue", "asDouble", "sum", "min", "max", "zeroThreshold", "quantile", "value", "explicitBounds"];

/// The non-finite double a string of the JSON mapping stands for.
fn non_finite(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// Whether a body may carry a non-finite double as text (then it is read
/// through [`Json`]; a body without one of these strings never is). Two
/// passes, by the strings' ends (`-Infinity"` ends as `Infinity"` does); a
/// body that only looks so (`"xNaN"`) takes the slower path to the same
/// answer.
pub(crate) fn may_have_non_finite(body: &[u8]) -> bool {
    [&b"NaN\""[..], b"Infinity\""].iter().any(|needle| body.windows(needle.len()).any(|w| w == *needle))
}

/// A JSON value whose numbers may be NaN or infinite.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// `value` with the non-finite doubles of double fields read as doubles.
    pub(crate) fn from_value(value: serde_json::Value) -> Json {
        Json::convert(value, false)
    }

    fn convert(value: serde_json::Value, double_field: bool) -> Json {
        use serde_json::Value;
        match value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => Json::U64(u),
                (None, Some(i), _) => Json::I64(i),
                (None, None, Some(f)) => Json::F64(f),
                // Unreachable without serde_json's arbitrary precision;
                // the text keeps whatever the field's own parser says.
                (None, None, None) => Json::Str(n.to_string()),
            },
            Value::String(s) => match non_finite(&s).filter(|_| double_field) {
                Some(f) => Json::F64(f),
                None => Json::Str(s),
            },
            // A list keeps its field's kind (`explicitBounds`).
            Value::Array(items) => Json::Array(items.into_iter().map(|v| Json::convert(v, double_field)).collect()),
            Value::Object(map) => Json::Object(
                map.into_iter()
                    .map(|(key, v)| {
                        let double = DOUBLE_FIELDS.contains(&key.as_str());
                        (key, Json::convert(v, double))
                    })
                    .collect(),
            ),
        }
    }
}

impl<'de> de::Deserializer<'de> for Json {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self {
            Json::Null => visitor.visit_unit(),
            Json::Bool(b) => visitor.visit_bool(b),
            Json::U64(u) => visitor.visit_u64(u),
            Json::I64(i) => visitor.visit_i64(i),
            Json::F64(f) => visitor.visit_f64(f),
            Json::Str(s) => visitor.visit_string(s),
            Json::Array(items) => {
                let mut seq = SeqDeserializer::<_, serde_json::Error>::new(items.into_iter());
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Json::Object(entries) => {
                let mut map = MapDeserializer::<_, serde_json::Error>::new(entries.into_iter());
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self {
            Json::Null => visitor.visit_none(),
            other => visitor.visit_some(other),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self {
            // A unit variant by name; anything else as serde_json reads it.
            Json::Str(s) => visitor.visit_enum(<String as IntoDeserializer<'de, serde_json::Error>>::into_deserializer(s)),
            other => de::Deserializer::deserialize_enum(other.into_value()?, name, variants, visitor),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

impl Json {
    /// Back to a `serde_json::Value`, for the rare shape that is no OTLP
    /// field here (an enum other than by name); a non-finite number
    /// cannot go back.
    fn into_value(self) -> Result<serde_json::Value, serde_json::Error> {
        use serde_json::Value;
        Ok(match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(b),
            Json::U64(u) => Value::from(u),
            Json::I64(i) => Value::from(i),
            Json::F64(f) => Value::Number(
                serde_json::Number::from_f64(f)
                    .ok_or_else(|| <serde_json::Error as de::Error>::custom("a non-finite double where an enum was expected"))?,
            ),
            Json::Str(s) => Value::String(s),
            Json::Array(items) => Value::Array(items.into_iter().map(Json::into_value).collect::<Result<_, _>>()?),
            Json::Object(entries) => {
                Value::Object(entries.into_iter().map(|(k, v)| Ok((k, v.into_value()?))).collect::<Result<_, serde_json::Error>>()?)
            }
        })
    }
}

impl<'de> IntoDeserializer<'de, serde_json::Error> for Json {
    type Deserializer = Json;

    fn into_deserializer(self) -> Json {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::metrics::v1 as pm;
    use serde::Deserialize;

    fn read<T: for<'de> Deserialize<'de>>(text: &str) -> T {
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        T::deserialize(Json::from_value(value)).unwrap()
    }

    #[test]
    fn non_finite_strings_are_doubles_only_in_double_fields() {
        let req: ExportMetricsServiceRequest = read(
            r#"{"resourceMetrics":[{"resource":{"attributes":[
                {"key":"a","value":{"doubleValue":"-Infinity"}},
                {"key":"b","value":{"stringValue":"NaN"}},
                {"key":"c","value":{"doubleValue":2.5}}]},
              "scopeMetrics":[{"metrics":[
                {"name":"g","gauge":{"dataPoints":[{"timeUnixNano":"18446744073709551615","asDouble":"NaN"}]}},
                {"name":"h","histogram":{"aggregationTemporality":2,"dataPoints":[
                  {"count":"1","sum":"Infinity","min":"-Infinity","max":"NaN","bucketCounts":["0","1"],"explicitBounds":["NaN"]}]}},
                {"name":"s","summary":{"dataPoints":[{"sum":"NaN","quantileValues":[{"quantile":0.5,"value":"Infinity"}]}]}}
              ]}]}]}"#,
        );
        let rm = &req.resource_metrics[0];
        let attrs = &rm.resource.as_ref().unwrap().attributes;
        let value = |i: usize| attrs[i].value.as_ref().unwrap().value.clone().unwrap();
        assert_eq!(value(0), Value::DoubleValue(f64::NEG_INFINITY));
        assert_eq!(value(1), Value::StringValue("NaN".into()));
        assert_eq!(value(2), Value::DoubleValue(2.5));
        let metrics = &rm.scope_metrics[0].metrics;
        let Some(pm::metric::Data::Gauge(g)) = &metrics[0].data else { panic!("{:?}", metrics[0]) };
        assert_eq!(g.data_points[0].time_unix_nano, u64::MAX);
        assert!(matches!(g.data_points[0].value, Some(pm::number_data_point::Value::AsDouble(d)) if d.is_nan()));
        let Some(pm::metric::Data::Histogram(h)) = &metrics[1].data else { panic!("{:?}", metrics[1]) };
        let p = &h.data_points[0];
        assert_eq!((p.sum, p.min, p.bucket_counts.clone()), (Some(f64::INFINITY), Some(f64::NEG_INFINITY), vec![0, 1]));
        assert!(p.max.is_some_and(f64::is_nan) && p.explicit_bounds[0].is_nan());
        let Some(pm::metric::Data::Summary(s)) = &metrics[2].data else { panic!("{:?}", metrics[2]) };
        assert!(s.data_points[0].sum.is_nan());
        assert_eq!(s.data_points[0].quantile_values[0].value, f64::INFINITY);
    }

    #[test]
    fn only_bodies_with_a_non_finite_string_take_this_path() {
        assert!(may_have_non_finite(br#"{"doubleValue":"NaN"}"#));
        assert!(may_have_non_finite(br#"{"asDouble": "-Infinity"}"#));
        assert!(may_have_non_finite(br#"{"value": "Infinity"}"#));
        assert!(!may_have_non_finite(br#"{"stringValue":"NaNa","doubleValue":1.5,"s":"Infinity!"}"#));
    }
}
