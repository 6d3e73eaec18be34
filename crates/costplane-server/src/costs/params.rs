//! Query-string parsing for the cost endpoints: strict, with messages that
//! say what is accepted. Values never become SQL text; dimensions map to
//! column names through a fixed table (`costplane_store::ledger::column`).

use std::collections::HashMap;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};

use crate::error::{ApiError, ErrorCode};

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidArgument, msg)
}

pub use costplane_telemetry::usage::{Dimension, Step};

pub fn ns(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

pub fn iso(ns: i64) -> String {
    DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The earliest time a parameter may name (1970-01-01T00:00:00Z).
pub const EARLIEST_SECS: i64 = 0;
/// The latest time a parameter may name (2262-01-01T00:00:00Z): every time
/// up to it has a nanosecond timestamp.
pub const LATEST_SECS: i64 = 9_214_646_400;
/// The longest text a time parameter may be.
const MAX_TIME_LEN: usize = 64;

/// `value` for an error message: at most 64 characters of it.
pub fn shown(value: &str) -> String {
    let short = cut(value);
    if short.len() < value.len() {
        format!("{short:?}... ({} bytes)", value.len())
    } else {
        format!("{value:?}")
    }
}

/// At most 64 characters of `value`, for naming it in a message.
pub fn cut(value: &str) -> &str {
    value.char_indices().nth(64).map_or(value, |(i, _)| &value[..i])
}

/// `t`, if it lies in [1970-01-01, 2262-01-01].
pub fn in_range(name: &str, value: &str, t: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    if (EARLIEST_SECS..=LATEST_SECS).contains(&t.timestamp()) {
        Ok(t)
    } else {
        Err(bad(format!("{name}={} is out of range: times must be from 1970-01-01 to 2262-01-01", shown(value))))
    }
}

/// Unix seconds as a time in [1970-01-01, 2262-01-01].
pub fn from_unix(name: &str, value: &str, secs: i64) -> Result<DateTime<Utc>, ApiError> {
    let t = DateTime::from_timestamp(secs, 0).ok_or_else(|| bad(format!("{name}={} is out of range", shown(value))))?;
    in_range(name, value, t)
}

/// `YYYY-MM-DD` (midnight UTC) or RFC 3339, from 1970 to 2262-01-01.
pub fn parse_time(name: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    let err = || bad(format!("{name}={} is not a date (YYYY-MM-DD) or an RFC 3339 time", shown(value)));
    if value.len() > MAX_TIME_LEN {
        return Err(err());
    }
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return in_range(name, value, Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists")));
    }
    let t = DateTime::parse_from_rfc3339(value).map(|t| t.with_timezone(&Utc)).map_err(|_| err())?;
    in_range(name, value, t)
}

/// `[start, end)` of a `YYYY-MM` month, from 1970-01 to 2261-12.
pub fn parse_month(value: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let err = || bad(format!("month={} is not a month; use YYYY-MM, e.g. 2026-10", shown(value)));
    let (y, m) = value.split_once('-').ok_or_else(err)?;
    if y.len() != 4 || m.len() != 2 || !y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let (y, m): (i32, u32) = (y.parse().map_err(|_| err())?, m.parse().map_err(|_| err())?);
    let start = NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(err)?;
    let next = if m == 12 { NaiveDate::from_ymd_opt(y + 1, 1, 1) } else { NaiveDate::from_ymd_opt(y, m + 1, 1) }.ok_or_else(err)?;
    let at = |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists"));
    let (start, next) = (at(start), at(next));
    in_range("month", value, start)?;
    if next.timestamp() > LATEST_SECS {
        return Err(bad(format!("month={} is out of range: months must be from 1970-01 to 2261-12", shown(value))));
    }
    Ok((start, next))
}

/// The days of `[from, to)`, for streaming an export a day at a time.
pub fn days(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut day = from;
    while day < to {
        let next = (day + chrono::Duration::days(1)).min(to);
        out.push((ns(day), ns(next)));
        day = next;
    }
    out
}

/// The longest value a cost query parameter (a filter, say) may have.
pub const MAX_VALUE_LEN: usize = 1024;

/// `GET /api/v1/costs` parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct CostQuery {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub step: Option<Step>,
    pub group_by: Vec<Dimension>,
    pub filters: Vec<(Dimension, String)>,
}

impl CostQuery {
    pub fn parse(params: &HashMap<String, String>, now: DateTime<Utc>) -> Result<CostQuery, ApiError> {
        for key in params.keys() {
            let known = ["from", "to", "step", "group_by"].contains(&key.as_str()) || Dimension::parse(key).is_some();
            if !known {
                return Err(bad(format!(
                    "unknown parameter '{}'; use from, to, step, group_by, or a filter: {}",
                    cut(key),
                    Dimension::API.map(|d| d.name()).join(", ")
                )));
            }
        }
        for (key, value) in params {
            if value.len() > MAX_VALUE_LEN {
                return Err(bad(format!("{key} is {} bytes long; at most {MAX_VALUE_LEN} are accepted", value.len())));
            }
        }
        let to = match params.get("to") {
            Some(v) => parse_time("to", v)?,
            None => now,
        };
        let from = match params.get("from") {
            Some(v) => parse_time("from", v)?,
            None => {
                let first = NaiveDate::from_ymd_opt(to.year(), to.month(), 1).expect("first of month exists");
                Utc.from_utc_datetime(&first.and_hms_opt(0, 0, 0).expect("midnight exists"))
            }
        };
        if from >= to {
            return Err(bad(format!("from ({}) must be before to ({})", from.to_rfc3339(), to.to_rfc3339())));
        }
        let step = match params.get("step").map(String::as_str) {
            None | Some("") => None,
            Some("hour") => Some(Step::Hour),
            Some("day") => Some(Step::Day),
            Some("month") => Some(Step::Month),
            Some(other) => return Err(bad(format!("step={} is not hour, day or month", shown(other)))),
        };
        let mut group_by = Vec::new();
        if let Some(list) = params.get("group_by") {
            for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let d = Dimension::parse(name).ok_or_else(|| {
                    bad(format!("group_by={} is not one of {}", shown(name), Dimension::API.map(|d| d.name()).join(", ")))
                })?;
                if !group_by.contains(&d) {
                    group_by.push(d);
                }
            }
        }
        let filters = Dimension::API.into_iter().filter_map(|d| params.get(d.name()).map(|v| (d, v.clone()))).collect();
        Ok(CostQuery { from, to, step, group_by, filters })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<CostQuery, ApiError> {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
        CostQuery::parse(&pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(), now)
    }

    #[test]
    fn months_must_be_real() {
        assert!(parse_month("2026-10").is_ok());
        let (s, e) = parse_month("2026-12").unwrap();
        assert_eq!((iso(ns(s)), iso(ns(e))), ("2026-12-01T00:00:00Z".into(), "2027-01-01T00:00:00Z".into()));
        for bad in ["2026-13", "2026-00", "2026-1", "26-10", "2026/10", "October", ""] {
            assert!(parse_month(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_stay_between_1970_and_2262() {
        assert!(parse_time("from", "1970-01-01").is_ok());
        assert!(parse_time("to", "2262-01-01").is_ok());
        for far in ["1969-12-31", "0001-01-01", "9999-12-31", "2262-01-01T00:00:01Z", "+275760-09-13T00:00:00Z"] {
            let e = parse_time("from", far).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArgument, "{far}");
        }
        assert!(parse_time("from", &"9".repeat(10_000)).unwrap_err().message.contains("10000 bytes"));
        assert!(parse_time("from", "é").is_err());
        assert!(parse_month("1970-01").is_ok() && parse_month("2261-12").is_ok());
        for bad in ["1969-12", "2262-01", "9999-12", "+999-01", "0000-01", "２026-01"] {
            assert!(parse_month(bad).is_err(), "{bad}");
        }
        assert!(from_unix("t", "x", i64::MAX).is_err() && from_unix("t", "x", -1).is_err());
        assert_eq!(cut(&"é".repeat(100)).chars().count(), 64);
    }

    #[test]
    fn queries_are_strict() {
        let ok =
            q(&[("from", "2026-10-01"), ("to", "2026-11-01"), ("step", "day"), ("group_by", "tenant,model"), ("tenant", "acme")]).unwrap();
        assert_eq!(ok.group_by, vec![Dimension::Tenant, Dimension::Model]);
        assert_eq!(ok.filters, vec![(Dimension::Tenant, "acme".to_owned())]);
        let by_kind = q(&[("group_by", "usage_type,signal,unit"), ("provider", "openai")]).unwrap();
        assert_eq!(by_kind.group_by, vec![Dimension::UsageType, Dimension::Signal, Dimension::Unit]);
        assert_eq!(costplane_store::ledger::matches(Dimension::Provider, "$1"), "lower(ProviderName) = lower($1)");
        assert!(q(&[("color", "red")]).unwrap_err().message.contains("unknown parameter 'color'"));
        assert!(q(&[("step", "week")]).unwrap_err().message.contains("not hour, day or month"));
        assert!(q(&[("group_by", "tenant;drop")]).unwrap_err().message.contains("is not one of"));
        assert!(q(&[("from", "2026-11-02"), ("to", "2026-11-01")]).unwrap_err().message.contains("must be before"));
        assert!(q(&[("from", "yesterday")]).is_err());
        // Defaults: month to date.
        assert_eq!(iso(ns(q(&[]).unwrap().from)), "2026-11-01T00:00:00Z");
    }
}
