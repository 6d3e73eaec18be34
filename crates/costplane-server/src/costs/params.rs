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

/// `YYYY-MM-DD` (midnight UTC) or RFC 3339.
pub fn parse_time(name: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists")));
    }
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| bad(format!("{name}={value:?} is not a date (YYYY-MM-DD) or an RFC 3339 time")))
}

/// `[start, end)` of a `YYYY-MM` month.
pub fn parse_month(value: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let err = || bad(format!("month={value:?} is not a month; use YYYY-MM, e.g. 2026-10"));
    let (y, m) = value.split_once('-').ok_or_else(err)?;
    if y.len() != 4 || m.len() != 2 {
        return Err(err());
    }
    let (y, m): (i32, u32) = (y.parse().map_err(|_| err())?, m.parse().map_err(|_| err())?);
    let start = NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(err)?;
    let next = if m == 12 { NaiveDate::from_ymd_opt(y + 1, 1, 1) } else { NaiveDate::from_ymd_opt(y, m + 1, 1) }.ok_or_else(err)?;
    let at = |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists"));
    Ok((at(start), at(next)))
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
                    "unknown parameter '{key}'; use from, to, step, group_by, or a filter: {}",
                    Dimension::API.map(|d| d.name()).join(", ")
                )));
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
            Some(other) => return Err(bad(format!("step={other:?} is not hour, day or month"))),
        };
        let mut group_by = Vec::new();
        if let Some(list) = params.get("group_by") {
            for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let d = Dimension::parse(name)
                    .ok_or_else(|| bad(format!("group_by={name:?} is not one of {}", Dimension::API.map(|d| d.name()).join(", "))))?;
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
