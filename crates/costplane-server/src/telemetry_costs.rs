//! `GET /api/v1/telemetry-costs`: what each service's telemetry costs to
//! keep, per span name, severity or signal, with what-ifs.
//!
//! `?from=&to=&group_by=service,span_name|service,severity|service,signal
//! &tenant=&sample=&retention_days=`. For each group of a service: its
//! items and ingested bytes in the window, its ingest cost in the window
//! and per month, its storage cost per month, and what dropping it,
//! sampling it (`sample` is the fraction kept) and a retention of
//! `retention_days` would save per month.
//!
//! - Items and bytes are the metered usage (`costplane_usage_telemetry`,
//!   receive hours starting in the window: what the ledger's telemetry
//!   rows price), shared over a service's span names or severities by what
//!   the store holds of each in the window (rows, and their estimated
//!   encoded size: `costplane_store::telemetry_costs`), so the groups of a
//!   service add up to its metered items and bytes exactly, and its ingest
//!   cost to the ledger's (the rates are the ledger's, `[cost]`).
//! - Storage is priced per byte ingested at the measured stored bytes per
//!   ingested byte of the signal over the window's days, at steady state
//!   under the configured retention (the arithmetic and its rules:
//!   `costplane_cost::telemetry_costs`).
//! - A service with metered usage but no stored rows in the window (its
//!   rows expired, or carry times outside the window) shows one group with
//!   no name (`null`) holding all of it.
//!
//! Every parameter is checked before any work; unknown ones are refused.
//! A tenant key sees its own tenant only (`tenant=` naming another is
//! refused); an admin key may filter by `tenant`. Only admins see the
//! stored and ingested byte counts behind a signal's ratio (they are every
//! tenant's).

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use costplane_cost::telemetry_costs::{apportion, Basis, GroupCost, StoredRatio, WhatIf, MONTH_DAYS};
use costplane_store::ledger::UsageTotal;
use costplane_store::telemetry_costs::{signal_storage, stored_groups, Grouping, Scope, SignalStorage, StoredGroup};
use costplane_telemetry::usage::{DAY_NS, HOUR_NS};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::costs::params::{cut, iso, ns, parse_time, shown, MAX_VALUE_LEN};
use crate::costs::CostState;
use crate::error::{ApiError, ErrorCode};

/// The longest window one answer covers.
pub const MAX_WINDOW_DAYS: i64 = 400;
/// The longest retention a what-if may name.
pub const MAX_RETENTION_DAYS: u32 = 3650;

const KNOWN: [&str; 6] = ["from", "to", "group_by", "tenant", "sample", "retention_days"];

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidArgument, msg)
}

/// Days each signal is kept, as configured for the store in use; 0 keeps
/// forever. Served to the handler as an extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub traces_days: u32,
    pub logs_days: u32,
    pub metrics_days: u32,
}

impl Default for Retention {
    /// Both stores' defaults (the ClickHouse exporter's TTLs).
    fn default() -> Self {
        let o = costplane_store::duckdb::EmbeddedOptions::default();
        Retention { traces_days: o.traces_ttl_days, logs_days: o.logs_ttl_days, metrics_days: o.metrics_ttl_days }
    }
}

impl Retention {
    /// The retention of the store `config` uses.
    pub fn of(config: &crate::Config) -> Retention {
        match config.store {
            crate::config::StoreKind::Duckdb => Retention {
                traces_days: config.embedded.traces_ttl_days,
                logs_days: config.embedded.logs_ttl_days,
                metrics_days: config.embedded.metrics_ttl_days,
            },
            crate::config::StoreKind::Clickhouse => Retention {
                traces_days: config.clickhouse.traces_ttl_days,
                logs_days: config.clickhouse.logs_ttl_days,
                metrics_days: config.clickhouse.metrics_ttl_days,
            },
        }
    }

    fn days(&self, signal: &str) -> u32 {
        match signal {
            "traces" => self.traces_days,
            "logs" => self.logs_days,
            _ => self.metrics_days,
        }
    }
}

/// What a service is split by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    SpanName,
    Severity,
    Signal,
}

impl GroupBy {
    /// The answer's name of the group column.
    pub fn column(self) -> &'static str {
        match self {
            GroupBy::SpanName => "span_name",
            GroupBy::Severity => "severity",
            GroupBy::Signal => "signal",
        }
    }

    fn grouping(self) -> Option<Grouping> {
        match self {
            GroupBy::SpanName => Some(Grouping::SpanName),
            GroupBy::Severity => Some(Grouping::Severity),
            GroupBy::Signal => None,
        }
    }
}

/// A checked request.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryCostQuery {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub group_by: GroupBy,
    /// The tenant the answer covers (a tenant key's own, or an admin's filter).
    pub tenant: Option<String>,
    pub what_if: WhatIf,
}

/// A fraction: digits with at most one `.`, from 0 to 1.
fn fraction(key: &str, value: &str) -> Result<Decimal, ApiError> {
    let err = || bad(format!("{key}={} is not a fraction from 0 to 1 (the share kept, e.g. 0.1)", shown(value)));
    let plain = !value.is_empty()
        && value.len() <= 32
        && value.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && value.bytes().filter(|b| *b == b'.').count() <= 1
        && value.bytes().next().is_some_and(|b| b.is_ascii_digit());
    let d: Decimal = if plain { value.parse().map_err(|_| err())? } else { return Err(err()) };
    if d > Decimal::ONE {
        return Err(err());
    }
    Ok(d)
}

impl TelemetryCostQuery {
    /// Parses and checks every parameter. Defaults: the 30 days up to the
    /// end of the current hour, grouped by service and signal.
    pub fn parse(params: &HashMap<String, String>, now: DateTime<Utc>, caller: &Caller) -> Result<TelemetryCostQuery, ApiError> {
        for (key, value) in params {
            if !KNOWN.contains(&key.as_str()) {
                return Err(bad(format!("unknown parameter '{}'; use {}", cut(key), KNOWN.join(", "))));
            }
            if value.len() > MAX_VALUE_LEN {
                return Err(bad(format!("{key} is {} bytes long; at most {MAX_VALUE_LEN} are accepted", value.len())));
            }
        }
        let to = match params.get("to") {
            Some(v) => parse_time("to", v)?,
            None => {
                let t = ns(now);
                DateTime::from_timestamp_nanos(t - t.rem_euclid(HOUR_NS) + HOUR_NS)
            }
        };
        let from = match params.get("from") {
            Some(v) => parse_time("from", v)?,
            None => to - chrono::Duration::days(MONTH_DAYS),
        };
        if from >= to {
            return Err(bad(format!("from ({}) must be before to ({})", iso(ns(from)), iso(ns(to)))));
        }
        if to - from > chrono::Duration::days(MAX_WINDOW_DAYS) {
            return Err(bad(format!("the window is longer than {MAX_WINDOW_DAYS} days; ask for a shorter one")));
        }
        let group_by = match params.get("group_by").map(String::as_str) {
            None => GroupBy::Signal,
            Some(list) => {
                let mut names: Vec<&str> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
                names.sort_unstable();
                match names[..] {
                    [] => GroupBy::Signal,
                    ["service", "span_name"] => GroupBy::SpanName,
                    ["service", "severity"] => GroupBy::Severity,
                    ["service", "signal"] => GroupBy::Signal,
                    _ => {
                        return Err(bad(format!(
                            "group_by={} is not one of service,span_name | service,severity | service,signal",
                            shown(list)
                        )))
                    }
                }
            }
        };
        let tenant = match (params.get("tenant"), caller.tenant()) {
            (Some(t), _) if t.is_empty() => return Err(bad("tenant= is empty; name a tenant or leave it out")),
            (Some(t), Some(own)) if t != own => {
                return Err(ApiError::new(ErrorCode::PermissionDenied, "a tenant key sees only its own tenant"));
            }
            (_, Some(own)) => Some(own.to_owned()),
            (Some(t), None) => Some(t.clone()),
            (None, None) => None,
        };
        let sample = params.get("sample").map(|v| fraction("sample", v)).transpose()?;
        let retention_days = match params.get("retention_days") {
            None => None,
            Some(v) => {
                let err = || bad(format!("retention_days={} is not a whole number of days from 1 to {MAX_RETENTION_DAYS}", shown(v)));
                let n: u32 = if v.bytes().all(|b| b.is_ascii_digit()) { v.parse().map_err(|_| err())? } else { return Err(err()) };
                if !(1..=MAX_RETENTION_DAYS).contains(&n) {
                    return Err(err());
                }
                Some(n)
            }
        };
        Ok(TelemetryCostQuery { from, to, group_by, tenant, what_if: WhatIf { sample, retention_days } })
    }
}

/// One group of one service, with the metered share it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub tenant: String,
    pub project: String,
    pub service: String,
    pub signal: String,
    /// The span name, severity or signal; `None` when the store holds no
    /// row of the service in the window.
    pub name: Option<String>,
    pub items: u64,
    pub bytes: u64,
    /// What the share was taken from (`None` grouped by signal).
    pub stored: Option<(u64, u64)>,
}

/// Shares each service's metered items and bytes over its stored groups:
/// items by rows, bytes by estimated size (largest remainder, so a
/// service's groups add up to its usage exactly). `usage` is of the
/// grouping's signal (or of every signal, grouped by signal).
pub fn share(usage: &[UsageTotal], stored: &[StoredGroup], grouping: Option<Grouping>) -> Vec<Group> {
    let mut out = Vec::new();
    // Usage rows are per (tenant, project, service, signal) already.
    let mut by_service: BTreeMap<(&str, &str, &str), Vec<&StoredGroup>> = BTreeMap::new();
    for g in stored {
        by_service.entry((&g.tenant, &g.project, &g.service)).or_default().push(g);
    }
    for u in usage {
        let Some(grouping) = grouping else {
            out.push(Group {
                tenant: u.tenant.clone(),
                project: u.project.clone(),
                service: u.service.clone(),
                signal: u.signal.clone(),
                name: Some(u.signal.clone()),
                items: u.items,
                bytes: u.bytes,
                stored: None,
            });
            continue;
        };
        if u.signal != grouping.signal() {
            continue;
        }
        let groups = by_service.get(&(u.tenant.as_str(), u.project.as_str(), u.service.as_str())).cloned().unwrap_or_default();
        if groups.is_empty() {
            out.push(Group {
                tenant: u.tenant.clone(),
                project: u.project.clone(),
                service: u.service.clone(),
                signal: u.signal.clone(),
                name: None,
                items: u.items,
                bytes: u.bytes,
                stored: Some((0, 0)),
            });
            continue;
        }
        let items = apportion(u.items, &groups.iter().map(|g| g.rows).collect::<Vec<_>>());
        let bytes = apportion(u.bytes, &groups.iter().map(|g| g.size).collect::<Vec<_>>());
        for ((g, items), bytes) in groups.iter().zip(items).zip(bytes) {
            out.push(Group {
                tenant: u.tenant.clone(),
                project: u.project.clone(),
                service: u.service.clone(),
                signal: u.signal.clone(),
                name: Some(g.group.clone()),
                items,
                bytes,
                stored: Some((g.rows, g.size)),
            });
        }
    }
    out
}

fn money(d: Decimal) -> Value {
    json!(d.normalize().to_string())
}

fn opt_money(d: Option<Decimal>) -> Value {
    d.map_or(Value::Null, money)
}

/// The sums of some groups' figures (unknown storage counts as unknown
/// only when every group's is).
#[derive(Default)]
struct Totals {
    ingest: Decimal,
    ingest_pm: Decimal,
    storage_pm: Option<Decimal>,
    per_month: Decimal,
    drop: Decimal,
    sample: Option<Decimal>,
    retention: Option<Decimal>,
}

impl Totals {
    fn add(&mut self, c: &GroupCost) {
        let plus = |a: Option<Decimal>, b: Option<Decimal>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or_default() + b.unwrap_or_default()),
        };
        self.ingest += c.ingest;
        self.ingest_pm += c.ingest_per_month;
        self.storage_pm = plus(self.storage_pm, c.storage_per_month);
        self.per_month += c.per_month;
        self.drop += c.drop_saves;
        self.sample = plus(self.sample, c.sample_saves);
        self.retention = plus(self.retention, c.retention_saves);
    }
}

fn figures(ingest: Decimal, ingest_pm: Decimal, storage_pm: Option<Decimal>, per_month: Decimal, saves: Value) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("ingest_cost".into(), money(ingest));
    o.insert("ingest_per_month".into(), money(ingest_pm));
    o.insert("storage_per_month".into(), opt_money(storage_pm));
    o.insert("cost_per_month".into(), money(per_month));
    o.insert("saves_per_month".into(), saves);
    o
}

pub async fn telemetry_costs(
    State(state): State<CostState>,
    Extension(caller): Extension<Caller>,
    retention: Option<Extension<Retention>>,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let q = TelemetryCostQuery::parse(&raw, Utc::now(), &caller)?;
    let retention = retention.map(|Extension(r)| r).unwrap_or_default();
    let meter = state.meter();
    let (from, to) = (ns(q.from), ns(q.to));
    let ledger = state.ledger();
    let usage: Vec<UsageTotal> = ledger
        .telemetry_usage(from, to, q.tenant.as_deref())
        .await?
        .into_iter()
        .filter(|u| u.signal != costplane_cost::meter::QUERIES)
        .collect();
    let stored = match q.group_by.grouping() {
        Some(grouping) => {
            let scope = Scope {
                from_ns: from,
                to_ns: to,
                tenant: q.tenant.as_deref(),
                tenant_attribute: &meter.tenancy.tenant_attribute,
                project_attribute: &meter.tenancy.project_attribute,
            };
            stored_groups(state.store.as_ref(), grouping, &scope).await?
        }
        None => Vec::new(),
    };
    let storage: BTreeMap<String, SignalStorage> =
        signal_storage(ledger, from, to).await?.into_iter().map(|s| (s.signal.clone(), s)).collect();
    state.count_query(&caller);

    let groups = share(&usage, &stored, q.group_by.grouping());
    let basis = |signal: &str| Basis {
        rates: meter.rates.clone(),
        window_ns: to - from,
        retention_days: retention.days(signal),
        ratio: storage.get(signal).map(|s| StoredRatio { stored: s.stored, ingested: s.ingested }),
    };
    let mut rows = Vec::with_capacity(groups.len());
    let mut total = Totals::default();
    for g in &groups {
        let c = basis(&g.signal).cost(g.bytes, &q.what_if).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
        total.add(&c);
        let mut o = Map::new();
        for (k, v) in [("tenant", &g.tenant), ("project", &g.project), ("service", &g.service), ("signal", &g.signal)] {
            o.insert(k.into(), json!(v));
        }
        o.insert(q.group_by.column().into(), json!(g.name));
        o.insert("items".into(), json!(g.items));
        o.insert("bytes".into(), json!(g.bytes));
        if let Some((rows, size)) = g.stored {
            o.insert("stored_rows".into(), json!(rows));
            o.insert("estimated_bytes".into(), json!(size));
        }
        let saves = json!({
            "drop": money(c.drop_saves), "sample": opt_money(c.sample_saves), "retention": opt_money(c.retention_saves),
        });
        o.extend(figures(c.ingest, c.ingest_per_month, c.storage_per_month, c.per_month, saves));
        rows.push((c.per_month, Value::Object(o)));
    }
    // The costliest first; ties in a fixed order (the groups' own).
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    let signals: Vec<Value> = usage
        .iter()
        .map(|u| u.signal.as_str())
        .filter(|s| q.group_by.grouping().is_none_or(|g| g.signal() == *s))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|signal| {
            let s = storage.get(signal);
            let mut o = Map::new();
            o.insert("signal".into(), json!(signal));
            o.insert("retention_days".into(), json!(retention.days(signal)));
            o.insert(
                "stored_per_ingested".into(),
                opt_money(s.and_then(|s| StoredRatio { stored: s.stored, ingested: s.ingested }.value())),
            );
            o.insert("method".into(), json!(s.map(|s| s.method)));
            if caller.is_admin() {
                o.insert("stored_bytes".into(), json!(s.map(|s| s.stored)));
                o.insert("ingested_bytes".into(), json!(s.map(|s| s.ingested)));
            }
            Value::Object(o)
        })
        .collect();
    let services: Vec<Value> = usage
        .iter()
        .filter(|u| q.group_by.grouping().is_none_or(|g| g.signal() == u.signal))
        .map(|u| {
            json!({
                "tenant": u.tenant, "project": u.project, "service": u.service, "signal": u.signal,
                "items": u.items, "bytes": u.bytes,
            })
        })
        .collect();
    let saves = json!({ "drop": money(total.drop), "sample": opt_money(total.sample), "retention": opt_money(total.retention) });
    Ok(Json(json!({
        "from": iso(from),
        "to": iso(to),
        "group_by": ["service", q.group_by.column()],
        "tenant": q.tenant,
        "currency": meter.catalog.currency,
        "month_days": MONTH_DAYS,
        "window_days": money(Decimal::from(to - from) / Decimal::from(DAY_NS)),
        "rates": {
            "ingest_per_gib": money(meter.rates.ingest_per_gib),
            "storage_per_gib_month": money(meter.rates.storage_per_gib_month),
        },
        "what_if": { "sample": opt_money(q.what_if.sample), "retention_days": q.what_if.retention_days },
        "signals": signals,
        "services": services,
        "rows": rows.into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
        "total": Value::Object(figures(total.ingest, total.ingest_pm, total.storage_pm, total.per_month, saves)),
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn q(pairs: &[(&str, &str)], caller: &Caller) -> Result<TelemetryCostQuery, ApiError> {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 12, 30, 0).unwrap();
        TelemetryCostQuery::parse(&pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(), now, caller)
    }

    #[test]
    fn parameters_are_checked_before_any_work() {
        let admin = Caller::Admin;
        let d = q(&[], &admin).unwrap();
        // The 30 days up to the end of the current hour (12:30 -> 13:00).
        assert_eq!((iso(ns(d.from)), iso(ns(d.to))), ("2026-10-24T13:00:00Z".to_owned(), "2026-11-23T13:00:00Z".to_owned()));
        assert_eq!((d.group_by, d.tenant, d.what_if), (GroupBy::Signal, None, WhatIf::default()));
        let ok = q(&[("group_by", "span_name,service"), ("sample", "0.1"), ("retention_days", "3"), ("tenant", "acme")], &admin).unwrap();
        assert_eq!(ok.group_by, GroupBy::SpanName);
        assert_eq!(ok.what_if, WhatIf { sample: Some(Decimal::new(1, 1)), retention_days: Some(3) });
        assert_eq!(ok.tenant.as_deref(), Some("acme"));
        assert_eq!(q(&[("group_by", "service,severity")], &admin).unwrap().group_by, GroupBy::Severity);
        for (pairs, says) in [
            (&[("color", "red")][..], "unknown parameter 'color'"),
            (&[("group_by", "service,model")][..], "is not one of service,span_name"),
            (&[("group_by", "span_name")][..], "is not one of"),
            (&[("sample", "1.5")][..], "not a fraction"),
            (&[("sample", "-0.1")][..], "not a fraction"),
            (&[("sample", "1e-1")][..], "not a fraction"),
            (&[("retention_days", "0")][..], "whole number of days"),
            (&[("retention_days", "3.5")][..], "whole number of days"),
            (&[("retention_days", "99999999999")][..], "whole number of days"),
            (&[("from", "2026-11-02"), ("to", "2026-11-01")][..], "must be before"),
            (&[("from", "2025-01-01"), ("to", "2026-11-01")][..], "longer than 400 days"),
            (&[("from", "soon")][..], "is not a date"),
            (&[("tenant", "")][..], "is empty"),
        ] {
            let e = q(pairs, &admin).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArgument, "{pairs:?}");
            assert!(e.message.contains(says), "{pairs:?}: {}", e.message);
        }
        // A tenant key: its own tenant, whatever it asks; another is refused.
        let acme = Caller::Tenant("acme".into());
        assert_eq!(q(&[], &acme).unwrap().tenant.as_deref(), Some("acme"));
        assert_eq!(q(&[("tenant", "acme")], &acme).unwrap().tenant.as_deref(), Some("acme"));
        assert_eq!(q(&[("tenant", "globex")], &acme).unwrap_err().code, ErrorCode::PermissionDenied);
    }

    fn usage(service: &str, signal: &str, items: u64, bytes: u64) -> UsageTotal {
        UsageTotal { tenant: "acme".into(), project: "p".into(), service: service.into(), signal: signal.into(), items, bytes }
    }

    fn stored(service: &str, group: &str, rows: u64, size: u64) -> StoredGroup {
        StoredGroup { tenant: "acme".into(), project: "p".into(), service: service.into(), group: group.into(), rows, size }
    }

    #[test]
    fn a_services_groups_add_up_to_its_metered_usage() {
        let usage = [usage("api", "traces", 5, 1000), usage("api", "logs", 2, 300), usage("idle", "traces", 1, 70)];
        let stored = [stored("api", "GET /a", 2, 100), stored("api", "GET /b", 3, 200)];
        let groups = share(&usage, &stored, Some(Grouping::SpanName));
        let got: Vec<_> = groups.iter().map(|g| (g.service.as_str(), g.name.as_deref(), g.items, g.bytes)).collect();
        // api: 1000 bytes by estimated size 100 : 200 -> 333.33 and 666.67:
        // floors 333 + 666 = 999, the byte left to the larger remainder (GET /b);
        // items by rows 2 : 3 of 5: exactly 2 and 3.
        // idle: no stored row in the window: one unnamed group with all of it.
        // Logs are not what span names split.
        assert_eq!(got, [("api", Some("GET /a"), 2, 333), ("api", Some("GET /b"), 3, 667), ("idle", None, 1, 70)]);
        // By signal: the usage itself.
        let by_signal = share(&usage, &[], None);
        assert_eq!(
            by_signal.iter().map(|g| (g.name.as_deref(), g.bytes)).collect::<Vec<_>>(),
            [(Some("traces"), 1000), (Some("logs"), 300), (Some("traces"), 70)]
        );
    }
}
