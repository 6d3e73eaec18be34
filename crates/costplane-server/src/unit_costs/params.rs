//! The query strings of the unit-cost endpoints: every value checked, with
//! a message that says what is accepted, before any read.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use costplane_store::unit_costs::UnitDim;

use crate::auth::Caller;
use crate::costs::params::{cut, ns, parse_time, shown};
use crate::error::{ApiError, ErrorCode};

/// The longest window one unit-cost answer covers.
pub const MAX_WINDOW_DAYS: i64 = 400;
/// The longest window a trace is looked for in.
const MAX_TRACE_WINDOW_DAYS: i64 = 31;
/// Groups listed by default, and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;
const HOUR_NS: i64 = 3_600_000_000_000;
const DAY_NS: i64 = 24 * HOUR_NS;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidArgument, msg)
}

fn only(raw: &HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    for key in raw.keys() {
        if !known.contains(&key.as_str()) {
            return Err(bad(format!("unknown parameter '{}'; use {}", cut(key), known.join(", "))));
        }
    }
    Ok(())
}

/// `[from, to)` rounded out to whole hours, checked.
fn window(raw: &HashMap<String, String>, default_from: DateTime<Utc>, now: DateTime<Utc>, max_days: i64) -> Result<(i64, i64), ApiError> {
    let from = match raw.get("from") {
        Some(v) => parse_time("from", v)?,
        None => default_from,
    };
    let to = match raw.get("to") {
        Some(v) => parse_time("to", v)?,
        None => now,
    };
    let (from_ns, to_ns) = (ns(from), ns(to));
    if from_ns >= to_ns {
        return Err(bad(format!("from ({from}) must be before to ({to})")));
    }
    if to_ns - from_ns > max_days * DAY_NS {
        return Err(bad(format!("the window from {from} to {to} is longer than {max_days} days; ask for a shorter one")));
    }
    let from_ns = from_ns - from_ns.rem_euclid(HOUR_NS);
    let rest = to_ns.rem_euclid(HOUR_NS);
    let to_ns = if rest == 0 { to_ns } else { to_ns.saturating_add(HOUR_NS - rest) };
    Ok((from_ns, to_ns))
}

/// `GET /api/v1/unit-costs` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitParams {
    pub from_ns: i64,
    pub to_ns: i64,
    pub group_by: Vec<UnitDim>,
    /// The tenant read: a tenant key's own, or an admin's `tenant=`.
    pub tenant: Option<String>,
    pub limit: usize,
}

impl UnitParams {
    pub fn parse(raw: &HashMap<String, String>, caller: &Caller, now: DateTime<Utc>) -> Result<UnitParams, ApiError> {
        only(raw, &["from", "to", "group_by", "tenant", "limit"])?;
        let month_start = Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).single().unwrap_or(now);
        let (from_ns, to_ns) = window(raw, month_start, now, MAX_WINDOW_DAYS)?;
        let names = UnitDim::ALL.iter().map(|d| d.name()).collect::<Vec<_>>().join(", ");
        let group_by = match raw.get("group_by").map(String::as_str) {
            None => vec![UnitDim::Service, UnitDim::Route],
            Some(list) => {
                let mut out = Vec::new();
                // Blank items are skipped: `group_by=` asks for one group.
                for name in list.split(',').filter(|n| !n.trim().is_empty()) {
                    let d = UnitDim::parse(name.trim())
                        .ok_or_else(|| bad(format!("group_by: unknown dimension {}; use any of {names}", shown(name))))?;
                    if out.contains(&d) {
                        return Err(bad(format!("group_by names {} twice", d.name())));
                    }
                    out.push(d);
                }
                out
            }
        };
        let tenant = match (caller.tenant(), raw.get("tenant")) {
            (Some(own), Some(asked)) if asked != own => {
                return Err(ApiError::new(ErrorCode::PermissionDenied, format!("this key reads tenant {own} only, not {}", shown(asked))));
            }
            (Some(own), _) => Some(own.to_owned()),
            // Any text filters (a bound parameter): a name no tenant has
            // matches nothing.
            (None, asked) => asked.cloned(),
        };
        let limit = match raw.get("limit") {
            None => DEFAULT_LIMIT,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => return Err(bad(format!("limit={} must be a whole number from 1 to {MAX_LIMIT}", shown(v)))),
            },
        };
        Ok(UnitParams { from_ns, to_ns, group_by, tenant, limit })
    }
}

/// `GET /api/v1/traces/{trace_id}/cost` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParams {
    /// 32 lowercase hex digits, as stored.
    pub trace_id: String,
    pub from_ns: i64,
    pub to_ns: i64,
}

impl TraceParams {
    pub fn parse(trace_id: &str, raw: &HashMap<String, String>, now: DateTime<Utc>) -> Result<TraceParams, ApiError> {
        only(raw, &["from", "to"])?;
        let id = trace_id.to_ascii_lowercase();
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) || id.bytes().all(|b| b == b'0') {
            return Err(bad(format!("trace id {} is not a trace id: 32 hex digits, not all zero", shown(trace_id))));
        }
        let (from_ns, to_ns) = window(raw, now - chrono::Duration::days(7), now, MAX_TRACE_WINDOW_DAYS)?;
        Ok(TraceParams { trace_id: id, from_ns, to_ns })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 10, 30, 0).unwrap()
    }

    #[test]
    fn defaults_are_the_month_to_date_by_service_and_route_in_whole_hours() {
        let p = UnitParams::parse(&raw(&[]), &Caller::Admin, now()).unwrap();
        assert_eq!(p.group_by, [UnitDim::Service, UnitDim::Route]);
        assert_eq!(p.from_ns, ns(Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()));
        // 10:30 rounds up to 11:00.
        assert_eq!(p.to_ns, ns(Utc.with_ymd_and_hms(2026, 12, 7, 11, 0, 0).unwrap()));
        assert_eq!(p.limit, 100);
    }

    #[test]
    fn bad_values_are_refused_with_what_is_accepted() {
        let err = |pairs: &[(&str, &str)]| UnitParams::parse(&raw(pairs), &Caller::Admin, now()).unwrap_err().to_string();
        assert!(err(&[("group_by", "service,colour")]).contains("use any of tenant, service, route, operation, customer"));
        assert!(err(&[("group_by", "route,route")]).contains("twice"));
        assert!(err(&[("limit", "0")]).contains("from 1 to 10000"));
        assert!(err(&[("from", "2026-12-05"), ("to", "2026-12-01")]).contains("must be before"));
        assert!(err(&[("from", "2020-01-01"), ("to", "2026-01-01")]).contains("longer than 400 days"));
        assert!(err(&[("sort", "cost")]).contains("unknown parameter 'sort'"));
    }

    #[test]
    fn a_tenant_key_reads_its_own_tenant_only() {
        let key = Caller::Tenant("acme".into());
        assert_eq!(UnitParams::parse(&raw(&[]), &key, now()).unwrap().tenant.as_deref(), Some("acme"));
        let e = UnitParams::parse(&raw(&[("tenant", "globex")]), &key, now()).unwrap_err();
        assert!(e.to_string().contains("reads tenant acme only"), "{e}");
    }

    #[test]
    fn trace_ids_are_32_hex_digits() {
        let ok = TraceParams::parse("0AF7651916CD43DD8448EB211C80319C", &raw(&[]), now()).unwrap();
        assert_eq!(ok.trace_id, "0af7651916cd43dd8448eb211c80319c");
        for bad in ["xyz", "00000000000000000000000000000000", "0af7651916cd43dd8448eb211c80319", "0af7651916cd43dd8448eb211c80319g"] {
            assert!(TraceParams::parse(bad, &raw(&[]), now()).is_err(), "{bad}");
        }
    }
}
