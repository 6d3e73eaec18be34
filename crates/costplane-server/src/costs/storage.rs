//! Storage cost, written into the ledger once a day.
//!
//! Every day that has ended (plus `ledger.close_after_secs`) and has no
//! storage revision yet gets one, once: the day that just ended, and every
//! day a stopped server missed, from the first day with telemetry usage in
//! the closer's lookback. A missed day is charged for the bytes measured
//! when it is caught up (the store keeps no history of its size).
//!
//! For each such day the closer asks the store how many bytes it keeps of
//! each signal ([`Store::stored_bytes`](costplane_store::Store::stored_bytes)),
//! per day partition on both stores (ClickHouse: `system.parts` compressed
//! bytes; embedded: the partition's Parquet files). Both partition by the
//! data's own time (a span's or log's `Timestamp`, a point's `TimeUnix`),
//! so each partition's bytes are apportioned to (tenant, project, service)
//! by their share of that signal's bytes **whose event day is the
//! partition's day** ([`Ledger::ingest_by_event_day`]), whenever they were
//! received: backdated data is charged to whoever sent it, not to whoever
//! sent data on the day it arrived. A partition no usage row names (data
//! written before usage kept its event day, which counts at its receive
//! day) is charged to `unassigned`.
//!
//! Each share is charged one day at `cost.storage_per_gib_month` prorated
//! per day (rate / days in that month): cost = stored bytes × share / 2^30
//! × rate / days, rounded once (the ledger's rule). The rows carry the
//! measured ratio (stored bytes per ingested byte) in `x_AllocationRatio`
//! and the method in `x_AllocationMethod`. Exports only read these rows:
//! money is never recomputed at export time, so re-exporting a past month
//! gives the same file.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, NaiveDate};
use costplane_cost::Meter;
use costplane_store::ledger::{Ledger, UsageTotal};
use costplane_store::{StoreError, StoredBytes};
use costplane_telemetry::usage::{round_money, scope, HourState, LedgerRow, PricingStatus, Source, UsageType, CLOSED, DAY_NS};
use rust_decimal::Decimal;

const GIB: Decimal = Decimal::from_parts(1_073_741_824, 0, 0, false, 0);

fn days_in_month(day_ns: i64) -> u32 {
    let d = DateTime::from_timestamp_nanos(day_ns).date_naive();
    let first = NaiveDate::from_ymd_opt(d.year(), d.month(), 1).expect("a month's first day");
    let next =
        if d.month() == 12 { NaiveDate::from_ymd_opt(d.year() + 1, 1, 1) } else { NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1) }
            .expect("the next month's first day");
    u32::try_from((next - first).num_days()).unwrap_or(30)
}

/// The storage revisions due at `now`: every day that ended at least
/// `close_after_ns` ago, from the first day with telemetry usage among
/// `states` (the closer's lookback), that has no storage revision yet.
pub(crate) async fn due(
    ledger: &Ledger,
    meter: &Meter,
    now: i64,
    close_after_ns: i64,
    states: &HashMap<(i64, String), HourState>,
) -> Result<Vec<(HourState, Vec<LedgerRow>)>, StoreError> {
    if meter.rates.storage_per_gib_month.is_zero() {
        return Ok(Vec::new());
    }
    let closed_until = now.saturating_sub(close_after_ns);
    let last = closed_until - closed_until.rem_euclid(DAY_NS) - DAY_NS;
    let first = states.keys().filter(|(_, s)| s == scope::TELEMETRY).map(|(h, _)| h - h.rem_euclid(DAY_NS)).min();
    let Some(first) = first else { return Ok(Vec::new()) };
    let days: Vec<i64> = std::iter::successors(Some(first), |d| d.checked_add(DAY_NS))
        .take_while(|d| *d <= last)
        .filter(|d| !states.contains_key(&(*d, scope::STORAGE.to_owned())))
        .collect();
    if days.is_empty() {
        return Ok(Vec::new());
    }
    let measured = ledger.store().stored_bytes().await?;
    let mut out = Vec::with_capacity(days.len());
    for day in days {
        let rows = storage_rows(ledger, meter, day, &measured).await?;
        let state = HourState {
            hour_ns: day,
            scope: scope::STORAGE.to_owned(),
            revision: 0,
            status: CLOSED.to_owned(),
            usage_rows: 1,
            price_version: String::new(),
        };
        out.push((state, rows));
    }
    if out.len() > 1 {
        tracing::info!(days = out.len(), "storage cost caught up for days the server missed");
    }
    Ok(out)
}

/// Ledger rows charging one day of storage for the measured bytes.
pub async fn storage_rows(ledger: &Ledger, meter: &Meter, day: i64, measured: &[StoredBytes]) -> Result<Vec<LedgerRow>, StoreError> {
    // (tenant, project, service, signal) → (cost, allocated bytes, stored, ingested, method)
    type Key = (String, String, String, String);
    let mut out: BTreeMap<Key, (Decimal, Decimal, Decimal, Decimal, &'static str)> = BTreeMap::new();
    let days = Decimal::from(days_in_month(day));
    let measured: Vec<&StoredBytes> = measured.iter().filter(|m| m.bytes > 0).collect();
    // Whose bytes each partition holds: the ingest of its event day, in one
    // read for every partition measured.
    let partition_days = measured.iter().filter_map(|m| m.day_ns);
    let by_day = match (partition_days.clone().min(), partition_days.max()) {
        (Some(first), Some(last)) => ledger.ingest_by_event_day(first, last.saturating_add(DAY_NS)).await?,
        _ => Vec::new(),
    };
    let mut usage_of: HashMap<(i64, &str), Vec<&UsageTotal>> = HashMap::new();
    for (d, u) in &by_day {
        usage_of.entry((*d, u.signal.as_str())).or_default().push(u);
    }
    // A store measured as a whole (no partitions): all the signal's ingest.
    let all_time =
        if measured.iter().any(|m| m.day_ns.is_none()) { ledger.telemetry_usage(i64::MIN, i64::MAX, None).await? } else { Vec::new() };
    for m in measured {
        let usage: Vec<&UsageTotal> = match m.day_ns {
            Some(d) => usage_of.get(&(d, m.signal.as_str())).cloned().unwrap_or_default(),
            None => all_time.iter().filter(|u| u.signal == m.signal).collect(),
        };
        let total: u64 = usage.iter().map(|u| u.bytes).sum();
        let stored = Decimal::from(m.bytes);
        let shares: Vec<(Key, Decimal)> = if total == 0 {
            vec![(("unassigned".into(), "unassigned".into(), "unassigned".into(), m.signal.clone()), Decimal::ONE)]
        } else {
            usage
                .iter()
                .filter(|u| u.bytes > 0)
                .map(|u| {
                    (
                        (u.tenant.clone(), u.project.clone(), u.service.clone(), m.signal.clone()),
                        Decimal::from(u.bytes) / Decimal::from(total),
                    )
                })
                .collect()
        };
        for (key, share) in shares {
            let allocated = stored * share;
            let cost = allocated / GIB * meter.rates.storage_per_gib_month / days;
            let e = out.entry(key).or_insert((Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, m.method));
            e.0 += cost;
            e.1 += allocated;
            e.2 += stored;
            e.3 += Decimal::from(total);
        }
    }
    Ok(out
        .into_iter()
        .map(|((tenant, project, service, signal), (cost, bytes, stored, ingested, method))| {
            let ratio = if ingested.is_zero() { None } else { Some(round_money(stored / ingested)) };
            let tags = serde_json::json!({ "tenant": tenant, "project": project, "service": service }).to_string();
            LedgerRow::builder(Source::Telemetry, day, day.saturating_add(DAY_NS))
                .cost(round_money(cost), meter.catalog.currency.clone())
                .service("Telemetry storage", "Management and Governance")
                .provider("costplane")
                .resource(format!("{tenant}/{project}/{service}"), service.clone())
                .consumed(round_money(bytes), "Bytes")
                .pricing(round_money(bytes / GIB / days), "GiB-Month")
                .sku(format!("telemetry/storage/{signal}"))
                .tags(tags)
                .owner(tenant, project, service)
                .operation("storage")
                .usage_type(UsageType::Storage)
                .priced(PricingStatus::Priced, format!("storage-rate:{}", meter.rates.storage_per_gib_month.normalize()))
                .allocation(ratio, format!("{method}; apportioned by share of the bytes ingested for the partition's day"))
                .build()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use std::sync::Arc;

    use costplane_cost::{Catalog, TelemetryRates, Tenancy};
    use costplane_store::duckdb::DuckDbStore;
    use costplane_store::Store;
    use costplane_telemetry::usage::{TelemetryUsage, UsageRows};
    use costplane_telemetry::TelemetryBatch;

    /// 2026-11-10T00:00:00Z (November: 30 days).
    const DAY: i64 = 1_794_268_800_000_000_000;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[tokio::test]
    async fn storage_of_a_known_byte_count_is_apportioned_and_prorated() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(DuckDbStore::open(dir.path()).unwrap());
        // That day acme ingested 300 bytes of traces and globex 100.
        let usage = |tenant: &str, bytes| TelemetryUsage {
            hour_ns: DAY + 5 * 3_600_000_000_000,
            event_day_ns: DAY,
            tenant: tenant.into(),
            project: "p".into(),
            service: "s".into(),
            signal: "traces",
            items: 1,
            bytes,
        };
        let batch = TelemetryBatch {
            id: 1,
            usage: UsageRows { telemetry: vec![usage("acme", 300), usage("globex", 100)], ..UsageRows::default() },
            ..TelemetryBatch::default()
        };
        store.write(&batch).await.unwrap();
        let meter = Meter::new(
            Tenancy::default(),
            Arc::new(Catalog::load(None).unwrap()),
            TelemetryRates { storage_per_gib_month: d("6"), ..TelemetryRates::default() },
        );
        // The store keeps 3 GiB of that day's traces.
        let measured = [StoredBytes { signal: "traces".into(), day_ns: Some(DAY), bytes: 3 << 30, method: "test" }];
        let rows = storage_rows(&Ledger::new(Arc::clone(&store)), &meter, DAY, &measured).await.unwrap();
        let got: Vec<(&str, Decimal, Decimal)> = rows.iter().map(|r| (r.tenant.as_str(), r.consumed_quantity, r.cost)).collect();
        // One day at $6 per GiB-month, November has 30 days: $0.20 per GiB-day.
        // acme: 3 GiB x 300/400 = 2.25 GiB x 0.20 = 0.45;
        // globex: 3 GiB x 100/400 = 0.75 GiB x 0.20 = 0.15. Together 3 x 0.20 = 0.60.
        assert_eq!(
            got,
            [("acme", Decimal::from(3u64 << 30) * d("0.75"), d("0.45")), ("globex", Decimal::from(3u64 << 30) * d("0.25"), d("0.15"))]
        );
        let r = &rows[0];
        // Stored bytes per ingested byte: 3 x 2^30 / 400 = 8,053,063.68.
        assert_eq!(r.allocation_ratio, Some(d("8053063.68")));
        assert!(r.allocation_method.starts_with("test; apportioned"), "{}", r.allocation_method);
        assert_eq!((r.charge_period_start_ns, r.charge_period_end_ns), (DAY, DAY + DAY_NS));
        assert_eq!(
            (r.usage_type.as_str(), r.sku_id.as_str(), r.price_version.as_str()),
            ("storage", "telemetry/storage/traces", "storage-rate:6")
        );
        // 2.25 GiB / 30 days = 0.075 GiB-months.
        assert_eq!(r.pricing_quantity, d("0.075"));
        // The embedded store measures itself without an error: no telemetry
        // was written, so it has no day partitions to report.
        let measured = store.stored_bytes().await.unwrap();
        assert!(measured.is_empty(), "{measured:?}");
    }

    #[test]
    fn a_month_has_its_days() {
        // 2026-02-10 and 2026-10-06.
        assert_eq!(days_in_month(1_770_681_600_000_000_000), 28);
        assert_eq!(days_in_month(1_791_280_800_000_000_000), 31);
    }
}
