//! The reads behind `GET /api/v1/telemetry-costs`: what the store holds of
//! each service's spans per span name and logs per severity in a window,
//! and how many bytes it keeps per byte ingested of each signal.
//!
//! Usage is metered per (tenant, project, service, signal) and hour, not
//! per span name or severity, so a service's metered bytes are shared over
//! its groups by what the store holds of each ([`stored_groups`]): the rows
//! of the group in the window and the sum of an estimate of each row's
//! encoded OTLP size, read from the stored columns, the same on both stores:
//!
//! - a span: 60 bytes (ids, times, kind, status) + its name + its status
//!   message + for each attribute its key + its value + 8 + for each event
//!   13 + its name + its attributes as above;
//! - a log record: 40 bytes (times, ids, flags, severity number) + its body
//!   + its severity text + its attributes as above.
//!
//! Lengths are in bytes (DuckDB `strlen`, ClickHouse `length`). Links,
//! resources and scopes are left out: resources and scopes are shared by a
//! service's rows and do not tell its groups apart.
//!
//! A log's severity is its `SeverityText`, or, when that is empty, the
//! name of its `SeverityNumber`'s range (1-4 TRACE, 5-8 DEBUG, 9-12 INFO,
//! 13-16 WARN, 17-20 ERROR, 21-24 FATAL; otherwise UNSPECIFIED).
//!
//! Every read is bounded by the window on `Timestamp` (so the embedded
//! store opens only the window's days), and the tenant and project are
//! the resource attributes the meter reads (`unassigned` when missing or
//! empty), so a tenant's filter here selects the rows its usage came from.
//! No user text becomes SQL: values and attribute names are parameters.

use std::collections::BTreeMap;

use costplane_ledger::DAY_NS;
use serde_json::Value;

use crate::ledger::Ledger;
use crate::{Dialect, Param, Params, Store, StoreError};

/// What a service's telemetry is split by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// Spans by `SpanName` (`otel_traces`).
    SpanName,
    /// Log records by severity (`otel_logs`).
    Severity,
}

impl Grouping {
    /// The usage signal the grouped rows are metered as.
    pub fn signal(self) -> &'static str {
        match self {
            Grouping::SpanName => "traces",
            Grouping::Severity => "logs",
        }
    }
}

/// Which rows a read covers.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// `[from_ns, to_ns)` on `Timestamp`.
    pub from_ns: i64,
    pub to_ns: i64,
    /// Only this tenant's rows.
    pub tenant: Option<&'a str>,
    /// The resource attributes that name the tenant and the project.
    pub tenant_attribute: &'a str,
    pub project_attribute: &'a str,
}

/// What the store holds of one group of one service in a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    pub tenant: String,
    pub project: String,
    pub service: String,
    /// The span name or the severity.
    pub group: String,
    pub rows: u64,
    /// The sum of the rows' estimated encoded sizes.
    pub size: u64,
}

/// Bytes kept per byte ingested of one signal over some days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalStorage {
    pub signal: String,
    /// What the store keeps of the signal's days ([`Store::stored_bytes`]).
    pub stored: u64,
    /// What every tenant ingested of those days (items whose own time falls
    /// on them, whenever received): what the partitions hold.
    pub ingested: u64,
    /// How the stored bytes were measured.
    pub method: &'static str,
}

/// A `Timestamp` bound: the column compared with a typed value, so that
/// DuckDB prunes the view's days and ClickHouse its partitions.
fn timestamp(dialect: Dialect, placeholder: &str) -> String {
    match dialect {
        Dialect::DuckDb => format!("make_timestamp_ns({placeholder})"),
        Dialect::ClickHouse => format!("fromUnixTimestamp64Nano({placeholder})"),
    }
}

/// The size estimate of an attribute map's entries: key + value + 8 each.
fn attributes_size(dialect: Dialect, map: &str) -> String {
    match dialect {
        Dialect::DuckDb => format!(
            "(coalesce(list_sum(list_transform(map_keys({map}), lambda x: strlen(x) + 8)), 0) \
             + coalesce(list_sum(list_transform(map_values({map}), lambda x: strlen(x))), 0))"
        ),
        Dialect::ClickHouse => format!("(arraySum(x -> length(x) + 8, mapKeys({map})) + arraySum(x -> length(x), mapValues({map})))"),
    }
}

/// A row's estimated encoded size (see the module header).
fn row_size(dialect: Dialect, grouping: Grouping) -> String {
    let len = |c: &str| match dialect {
        Dialect::DuckDb => format!("strlen({c})"),
        Dialect::ClickHouse => format!("length({c})"),
    };
    match grouping {
        Grouping::SpanName => {
            let events = match dialect {
                Dialect::DuckDb => {
                    format!(
                        "coalesce(list_sum(list_transform(Events, lambda e: 13 + strlen(e.Name) + {})), 0)",
                        attributes_size(dialect, "e.Attributes")
                    )
                }
                Dialect::ClickHouse => {
                    format!("arraySum((n, a) -> 13 + length(n) + {}, Events.Name, Events.Attributes)", attributes_size(dialect, "a"))
                }
            };
            format!("60 + {} + {} + {} + {events}", len("SpanName"), len("StatusMessage"), attributes_size(dialect, "SpanAttributes"))
        }
        Grouping::Severity => {
            format!("40 + {} + {} + {}", len("Body"), len("SeverityText"), attributes_size(dialect, "LogAttributes"))
        }
    }
}

/// A log's severity: its text, else its number's range.
const SEVERITY: &str = "CASE WHEN SeverityText <> '' THEN SeverityText \
     WHEN SeverityNumber BETWEEN 1 AND 4 THEN 'TRACE' WHEN SeverityNumber BETWEEN 5 AND 8 THEN 'DEBUG' \
     WHEN SeverityNumber BETWEEN 9 AND 12 THEN 'INFO' WHEN SeverityNumber BETWEEN 13 AND 16 THEN 'WARN' \
     WHEN SeverityNumber BETWEEN 17 AND 20 THEN 'ERROR' WHEN SeverityNumber BETWEEN 21 AND 24 THEN 'FATAL' \
     ELSE 'UNSPECIFIED' END";

/// A resource attribute as the meter reads it: `unassigned` when missing or empty.
fn resource_attribute(placeholder: &str) -> String {
    format!("coalesce(nullif(ResourceAttributes[{placeholder}], ''), 'unassigned')")
}

/// A count or sum cell: a number or a string of digits (wide integers).
fn count_cell(table: &'static str, v: &Value, row: usize, column: &'static str) -> Result<u64, StoreError> {
    let parsed = match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.parse().ok(),
        Value::Null => Some(0),
        _ => None,
    };
    parsed.ok_or_else(|| StoreError::BadCell { table, row, column, value: v.to_string(), expected: "a count" })
}

fn text(v: &Value) -> String {
    crate::ledger::text(v)
}

/// Rows and estimated bytes per (tenant, project, service, group) in the
/// scope, ordered by those four.
pub async fn stored_groups(store: &dyn Store, grouping: Grouping, scope: &Scope<'_>) -> Result<Vec<StoredGroup>, StoreError> {
    let dialect = store.dialect();
    let mut p = Params::new(dialect);
    let tenant = resource_attribute(&p.add(Param::Str(scope.tenant_attribute.to_owned())));
    let project = resource_attribute(&p.add(Param::Str(scope.project_attribute.to_owned())));
    let from = timestamp(dialect, &p.add(Param::Int(scope.from_ns)));
    let to = timestamp(dialect, &p.add(Param::Int(scope.to_ns)));
    let mut w = format!("Timestamp >= {from} AND Timestamp < {to}");
    if let Some(t) = scope.tenant {
        w.push_str(&format!(" AND {tenant} = {}", p.add(Param::Str(t.to_owned()))));
    }
    let (table, group) = match grouping {
        Grouping::SpanName => ("otel_traces", "SpanName".to_owned()),
        Grouping::Severity => ("otel_logs", SEVERITY.to_owned()),
    };
    let size = match dialect {
        Dialect::DuckDb => format!("CAST(sum({}) AS UBIGINT)", row_size(dialect, grouping)),
        Dialect::ClickHouse => format!("toUInt64(sum({}))", row_size(dialect, grouping)),
    };
    let sql = format!(
        "SELECT {tenant} AS t, {project} AS p, ServiceName AS s, {group} AS g, count(*) AS n, {size} AS b \
         FROM {table} WHERE {w} GROUP BY t, p, s, g ORDER BY t, p, s, g"
    );
    let r = store.query_with(&sql, &p.values).await?;
    r.rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            Ok(StoredGroup {
                tenant: text(&row[0]),
                project: text(&row[1]),
                service: text(&row[2]),
                group: text(&row[3]),
                rows: count_cell(table, &row[4], i, "count(*)")?,
                size: count_cell(table, &row[5], i, "estimated size")?,
            })
        })
        .collect()
}

/// The whole days `[from, to)` touches: `[first midnight, midnight after the last)`.
pub fn days_of(from_ns: i64, to_ns: i64) -> (i64, i64) {
    let first = from_ns - from_ns.rem_euclid(DAY_NS);
    let last = to_ns.saturating_sub(1);
    (first, (last - last.rem_euclid(DAY_NS)).saturating_add(DAY_NS))
}

/// Bytes kept per byte ingested of each signal over the days `[from, to)`
/// touches: the store's measured bytes of those days' partitions (all of
/// the signal, when the store measures no days), and the bytes every
/// tenant ingested of those days (by the items' own day, as the store
/// partitions them). Signals with nothing measured
/// are left out.
pub async fn signal_storage(ledger: &Ledger, from_ns: i64, to_ns: i64) -> Result<Vec<SignalStorage>, StoreError> {
    let (first, end) = days_of(from_ns, to_ns);
    let measured = ledger.store().stored_bytes().await?;
    // signal -> (stored bytes, whole signal measured, method)
    let mut stored: BTreeMap<String, (u64, bool, &'static str)> = BTreeMap::new();
    for m in &measured {
        let inside = m.day_ns.is_none_or(|d| (first..end).contains(&d));
        if inside {
            let e = stored.entry(m.signal.clone()).or_insert((0, false, m.method));
            e.0 = e.0.saturating_add(m.bytes);
            e.1 |= m.day_ns.is_none();
        }
    }
    let mut out = Vec::new();
    let mut days_usage = None;
    let mut all_usage = None;
    for (signal, (bytes, whole, method)) in stored {
        let usage = if whole {
            if all_usage.is_none() {
                all_usage = Some(ledger.telemetry_usage(i64::MIN, i64::MAX, None).await?);
            }
            all_usage.as_ref()
        } else {
            if days_usage.is_none() {
                // The data those partitions hold: ingest by its own day.
                let by_day = ledger.ingest_by_event_day(first, end).await?;
                days_usage = Some(by_day.into_iter().map(|(_, u)| u).collect());
            }
            days_usage.as_ref()
        };
        let ingested = usage.into_iter().flatten().filter(|u| u.signal == signal).map(|u| u.bytes).fold(0u64, u64::saturating_add);
        out.push(SignalStorage { signal, stored: bytes, ingested, method });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TelemetrySink;

    #[test]
    fn the_days_of_a_window_are_whole() {
        let day = 20_000 * DAY_NS;
        assert_eq!(days_of(day, day + DAY_NS), (day, day + DAY_NS));
        assert_eq!(days_of(day + 5, day + DAY_NS + 1), (day, day + 2 * DAY_NS));
        assert_eq!(days_of(day - 1, day + 1), (day - DAY_NS, day + DAY_NS));
    }

    use std::sync::Arc;

    use costplane_ledger::{TelemetryUsage, UsageRows};
    use costplane_telemetry::model::{LogRow, ResourceInfo, ScopeInfo, SpanEvent, SpanRow};
    use costplane_telemetry::{Attributes, TelemetryBatch};

    use crate::duckdb::DuckDbStore;

    /// 2026-11-10T12:00:00Z.
    const NOON: i64 = 1_794_312_000_000_000_000;

    fn resource(service: &str, tenant: Option<&str>) -> Arc<ResourceInfo> {
        let attributes = match tenant {
            Some(t) => Attributes::from([("tenant.id", t), ("service.namespace", "shop")]),
            None => Attributes::new(),
        };
        Arc::new(ResourceInfo { service_name: service.into(), attributes, schema_url: String::new() })
    }

    fn span(r: &Arc<ResourceInfo>, name: &str, ts: i64, attrs: &[(&str, &str)], events: Vec<SpanEvent>, status: &str) -> SpanRow {
        SpanRow {
            resource: Arc::clone(r),
            scope: Arc::new(ScopeInfo::default()),
            timestamp_ns: ts,
            trace_id: format!("{ts:032x}"),
            span_id: format!("{:016x}", ts % 1_000_000),
            parent_span_id: String::new(),
            trace_state: String::new(),
            span_name: name.into(),
            span_kind: "Server",
            span_attributes: attrs.iter().copied().collect(),
            duration_ns: 1,
            status_code: "Unset",
            status_message: status.into(),
            events,
            links: Vec::new(),
            encoded_bytes: 1,
        }
    }

    fn log(r: &Arc<ResourceInfo>, ts: i64, text: &str, number: u8, body: &str, attrs: &[(&str, &str)]) -> LogRow {
        LogRow {
            resource: Arc::clone(r),
            scope: Arc::new(ScopeInfo::default()),
            timestamp_ns: ts,
            trace_id: String::new(),
            span_id: String::new(),
            trace_flags: 0,
            severity_text: text.into(),
            severity_number: number,
            body: body.into(),
            log_attributes: attrs.iter().copied().collect(),
            event_name: String::new(),
            encoded_bytes: 1,
        }
    }

    fn group(tenant: &str, project: &str, service: &str, group: &str, rows: u64, size: u64) -> StoredGroup {
        StoredGroup { tenant: tenant.into(), project: project.into(), service: service.into(), group: group.into(), rows, size }
    }

    #[tokio::test]
    async fn groups_count_rows_and_estimate_their_size_within_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let store = DuckDbStore::open(dir.path()).unwrap();
        let (acme, globex, nobody) = (resource("api", Some("acme")), resource("api", Some("globex")), resource("cron", None));
        let event =
            SpanEvent { timestamp_ns: NOON, name: "exception".into(), attributes: Attributes::from([("exception.message", "boom")]) };
        let batch = TelemetryBatch {
            id: 1,
            spans: vec![
                span(&acme, "GET /a", NOON, &[("http.route", "/a")], Vec::new(), ""),
                span(&acme, "GET /a", NOON + 1, &[("http.route", "/a")], Vec::new(), ""),
                span(&acme, "GET /b", NOON + 2, &[], vec![event], "failed"),
                span(&globex, "GET /a", NOON + 3, &[], Vec::new(), ""),
                span(&nobody, "tick", NOON + 4, &[], Vec::new(), ""),
                // Outside the window: an hour early.
                span(&acme, "GET /a", NOON - 3_600_000_000_000, &[], Vec::new(), ""),
            ],
            logs: vec![
                log(&acme, NOON, "WARN", 13, "hello", &[]),
                log(&acme, NOON + 1, "", 17, "x", &[("a", "b")]),
                log(&acme, NOON + 2, "", 0, "", &[]),
            ],
            usage: UsageRows {
                telemetry: vec![
                    TelemetryUsage {
                        hour_ns: NOON,
                        event_day_ns: NOON - NOON.rem_euclid(DAY_NS),
                        tenant: "acme".into(),
                        project: "shop".into(),
                        service: "api".into(),
                        signal: "traces",
                        items: 4,
                        bytes: 1000,
                    },
                    // Received two days later, of the same day (backdated):
                    // that day's partition holds it.
                    TelemetryUsage {
                        hour_ns: NOON + 2 * DAY_NS,
                        event_day_ns: NOON - NOON.rem_euclid(DAY_NS),
                        tenant: "globex".into(),
                        project: "shop".into(),
                        service: "api".into(),
                        signal: "traces",
                        items: 1,
                        bytes: 700,
                    },
                ],
                ..UsageRows::default()
            },
            ..TelemetryBatch::default()
        };
        store.write(&batch).await.unwrap();
        let scope = Scope {
            from_ns: NOON - 60_000_000_000,
            to_ns: NOON + 60_000_000_000,
            tenant: None,
            tenant_attribute: "tenant.id",
            project_attribute: "service.namespace",
        };
        let spans = stored_groups(&store, Grouping::SpanName, &scope).await.unwrap();
        // GET /a of acme: 60 + 6 ("GET /a") + ("http.route" 10 + "/a" 2 + 8) = 86, twice: 172.
        // GET /b: 60 + 6 + 6 ("failed") + the event 13 + 9 ("exception")
        //   + ("exception.message" 17 + "boom" 4 + 8) = 60 + 6 + 6 + 51 = 123.
        // globex's GET /a: 60 + 6 = 66; cron's tick (no tenant, no project): 60 + 4 = 64.
        // The span an hour early is outside the window.
        assert_eq!(
            spans,
            [
                group("acme", "shop", "api", "GET /a", 2, 172),
                group("acme", "shop", "api", "GET /b", 1, 123),
                group("globex", "shop", "api", "GET /a", 1, 66),
                group("unassigned", "unassigned", "cron", "tick", 1, 64),
            ]
        );
        let only_globex = stored_groups(&store, Grouping::SpanName, &Scope { tenant: Some("globex"), ..scope }).await.unwrap();
        assert_eq!(only_globex, [group("globex", "shop", "api", "GET /a", 1, 66)]);
        let nobodys = stored_groups(&store, Grouping::SpanName, &Scope { tenant: Some("unassigned"), ..scope }).await.unwrap();
        assert_eq!(nobodys.len(), 1);
        let logs = stored_groups(&store, Grouping::Severity, &scope).await.unwrap();
        // WARN: 40 + 5 ("hello") + 4 ("WARN") = 49; number 17 without text is ERROR:
        // 40 + 1 ("x") + ("a" 1 + "b" 1 + 8) = 51; number 0 without text: 40.
        assert_eq!(
            logs,
            [
                group("acme", "shop", "api", "ERROR", 1, 51),
                group("acme", "shop", "api", "UNSPECIFIED", 1, 40),
                group("acme", "shop", "api", "WARN", 1, 49),
            ]
        );

        // Storage: the Parquet files of the window's day against the bytes
        // ingested of that day: acme's 1000 and globex's 700, which came two
        // days later but belong to the day (1000 + 700 = 1700).
        let day = NOON - NOON.rem_euclid(DAY_NS);
        let files = |table: &str| -> u64 {
            let dir = dir.path().join("tables").join(table).join("date=2026-11-10");
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
        };
        let ledger = Ledger::new(Arc::new(store));
        let got = signal_storage(&ledger, scope.from_ns, scope.to_ns).await.unwrap();
        let traces = got.iter().find(|s| s.signal == "traces").unwrap();
        assert_eq!((traces.stored, traces.ingested), (files("otel_traces"), 1700));
        assert!(traces.stored > 0 && traces.method.contains("Parquet"), "{traces:?}");
        // Logs were stored but none metered as ingested: no ratio can be had.
        let logs = got.iter().find(|s| s.signal == "logs").unwrap();
        assert_eq!((logs.stored, logs.ingested), (files("otel_logs"), 0));
        // A window two days later has no stored day (globex's data is of
        // the earlier one).
        let later = signal_storage(&ledger, day + 2 * DAY_NS, day + 3 * DAY_NS).await.unwrap();
        assert!(later.is_empty(), "{later:?}");
    }
}
