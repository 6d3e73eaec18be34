//! The closer's incremental pricing against a from-scratch pricing, over
//! random usage sequences on a real DuckDB store: calls arriving in any
//! order and hour, copies of a span (retries, replays), agent spans whose
//! child calls land in another hour or arrive first, late usage for closed
//! hours, price reloads between refreshes.
//!
//! After every refresh, each (hour, scope) the ledger holds must have the
//! rows that pricing its stored usage from scratch makes, with the status
//! its hour has at that time.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use costplane_server::config::{CostSection, LedgerSection};
use costplane_server::costs::closer::{Closer, PriceSource, Timing};
use costplane_store::duckdb::DuckDbStore;
use costplane_store::ledger::Ledger;
use costplane_store::Store;
use costplane_telemetry::usage::{scope, CallKind, CostFilter, LedgerRow, LlmUsage, LlmUsageRow, TelemetryUsage, UsageRows, HOUR_NS};
use costplane_telemetry::TelemetryBatch;
use proptest::prelude::*;

/// 2026-10-06T10:00:00Z.
const T: i64 = 1_791_280_800_000_000_000;
const CLOSE_AFTER_NS: i64 = 600_000_000_000;

#[derive(Debug, Clone)]
enum Step {
    /// One write of LLM calls and telemetry usage.
    Write(Vec<Call>, Vec<(usize, u64)>),
    /// A refresh at T + this many minutes.
    Refresh(i64),
    /// Prices loaded again (the same prices: held hours are dropped).
    Reload,
}

#[derive(Debug, Clone)]
struct Call {
    hour: i64,
    trace: u8,
    span: u8,
    rollup: bool,
    input: u64,
    output: u64,
    model: usize,
}

fn step() -> impl Strategy<Value = Step> {
    let call = (0..3i64, 0..6u8, 0..12u8, prop::bool::weighted(0.2), 0..200_000u64, 0..20_000u64, 0..3usize)
        .prop_map(|(hour, trace, span, rollup, input, output, model)| Call { hour, trace, span, rollup, input, output, model });
    prop_oneof![
        6 => (prop::collection::vec(call, 1..6), prop::collection::vec((0..3usize, 1..5_000_000u64), 0..3)).prop_map(|(c, t)| Step::Write(c, t)),
        3 => (0..200i64).prop_map(Step::Refresh),
        1 => Just(Step::Reload),
    ]
}

fn llm_row(c: &Call, received: i64) -> LlmUsageRow {
    let hour_ns = T + c.hour * HOUR_NS;
    LlmUsageRow {
        timestamp_ns: hour_ns + 60_000_000_000,
        received_ns: received,
        hour_ns,
        tenant: ["acme", "globex"][usize::from(c.trace % 2)].into(),
        project: "p".into(),
        service: "s".into(),
        trace_id: format!("{:032x}", c.trace),
        span_id: format!("{:016x}", c.span),
        kind: if c.rollup { CallKind::Rollup } else { CallKind::Model },
        usage: LlmUsage {
            provider: String::new(),
            model: ["gpt-4o", "claude-3-5-sonnet-20241022", "no-such-model"][c.model].into(),
            operation: if c.rollup { "invoke_agent" } else { "chat" }.into(),
            input_tokens: c.input,
            output_tokens: c.output,
            ..LlmUsage::default()
        },
        invalid_reason: None,
    }
}

/// The current rows of one (hour, source), comparable.
fn key_rows(rows: &[LedgerRow], hour: i64, source: &str) -> BTreeMap<String, (String, String, String)> {
    rows.iter()
        .filter(|r| r.charge_period_start_ns == hour && r.source.as_str() == source)
        .map(|r| (r.key(), (r.cost.normalize().to_string(), r.consumed_quantity.normalize().to_string(), r.charge_status.to_string())))
        .collect()
}

/// What pricing every stored row of `hour` from scratch makes.
async fn from_scratch(ledger: &Ledger, closer: &Closer, scope_name: &str, hour: i64, status: &str) -> Vec<LedgerRow> {
    let meter = closer.meter();
    let usage = ledger.usage_of_hour(scope_name, hour, None).await.unwrap();
    let status = costplane_telemetry::usage::ChargeStatus::parse(status).unwrap();
    match scope_name {
        scope::LLM => {
            let traces: Vec<String> = usage.llm.iter().map(|r| r.trace_id.clone()).collect::<BTreeSet<_>>().into_iter().collect();
            let covered: HashSet<String> = ledger.traces_with_model_usage(&traces).await.unwrap();
            meter.llm_ledger(&usage.llm, &|r| !covered.contains(&r.trace_id), status)
        }
        _ => meter.telemetry_ledger(&usage.telemetry, status),
    }
}

async fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(DuckDbStore::open(dir.path()).unwrap());
    let ledger = Ledger::new(Arc::clone(&store));
    let ledger_section = LedgerSection { lookback_days: 2, ..LedgerSection::default() };
    let cost = CostSection { ingest_per_gib: "0.5".into(), ..CostSection::default() };
    let source = PriceSource { cost: cost.clone(), ledger: ledger_section.clone(), kubernetes: Default::default(), file: None };
    let timing = Timing { close_after_ns: CLOSE_AFTER_NS, ..Timing::of(&ledger_section) };
    let closer = Closer::new(ledger.clone(), Arc::new(source.meter().unwrap()), source, timing);
    let (mut batch_id, mut clock) = (1u64, 0i64);
    for step in steps {
        match step {
            Step::Write(calls, telemetry) => {
                let received = T + clock * 60_000_000_000 + i64::try_from(batch_id).unwrap();
                let usage = UsageRows {
                    llm: calls.iter().map(|c| llm_row(c, received)).collect(),
                    telemetry: telemetry
                        .iter()
                        .map(|(h, bytes)| TelemetryUsage {
                            hour_ns: T + i64::try_from(*h).unwrap() * HOUR_NS,
                            event_day_ns: costplane_telemetry::usage::day_of(T + i64::try_from(*h).unwrap() * HOUR_NS),
                            tenant: "acme".into(),
                            project: "p".into(),
                            service: "s".into(),
                            signal: "traces",
                            items: 1,
                            bytes: *bytes,
                        })
                        .collect(),
                    kubernetes: Vec::new(),
                    kubernetes_samples: Vec::new(),
                };
                store.write(&TelemetryBatch { id: batch_id, usage, ..TelemetryBatch::default() }).await.unwrap();
                batch_id += 1;
            }
            Step::Reload => {
                closer.reload().await.unwrap();
            }
            Step::Refresh(minutes) => {
                // Time only moves forward.
                clock = clock.max(minutes);
                let now = T + clock * 60_000_000_000;
                closer.refresh_at(now).await.unwrap();
                let rows = ledger.rows(&CostFilter { from_ns: T, to_ns: T + 3 * HOUR_NS, tenant: None, equals: Vec::new() }).await.unwrap();
                for h in 0..3 {
                    let hour = T + h * HOUR_NS;
                    let status = if now >= hour + HOUR_NS + CLOSE_AFTER_NS { "closed" } else { "provisional" };
                    for (scope_name, source) in [(scope::LLM, "llm"), (scope::TELEMETRY, "telemetry")] {
                        let expected = from_scratch(&ledger, &closer, scope_name, hour, status).await;
                        prop_assert_eq!(
                            key_rows(&rows, hour, source),
                            key_rows(&expected, hour, source),
                            "hour {} {} at minute {}",
                            h,
                            source,
                            clock
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn incremental_pricing_equals_pricing_from_scratch(steps in prop::collection::vec(step(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(steps))?;
    }
}

/// The incremental path is taken (not only the from-scratch one): after the
/// first refresh, a refresh reads the new rows, not the hour.
#[tokio::test]
async fn a_refresh_after_the_first_reads_only_new_usage() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ledger, closer) = closed_in(dir.path());
    write_call(&store, 1, 1, 1_000_000).await;
    closer.refresh_at(T + 60_000_000_000).await.unwrap();
    write_call(&store, 2, 2, 1_000_000).await;
    write_call(&store, 3, 3, 1_000_000).await;
    let seqs = store.write_seqs().expect("the embedded store numbers its writes");
    let new = ledger.usage_since(0, seqs.settled(), T).await.unwrap();
    assert_eq!(new.llm.len(), 3, "every row has a write number");
    closer.refresh_at(T + 120_000_000_000).await.unwrap();
    let rows = ledger.rows(&CostFilter { from_ns: T, to_ns: T + HOUR_NS, tenant: None, equals: Vec::new() }).await.unwrap();
    // gpt-4o input at $2.50 per 1M tokens: 3 calls x 1M = 3M tokens = $7.50.
    let total: rust_decimal::Decimal = rows.iter().map(|r| r.cost).sum();
    assert_eq!(total, rust_decimal::Decimal::new(750, 2), "{rows:?}");
    assert_eq!(closer.held_hours(), 1, "the open hour is held for incremental pricing");
}

/// A closed hour of a month whose export was served, then a late call for
/// it: the exported rows stay as they were and a correction row carries the
/// difference.
#[tokio::test]
async fn late_usage_in_an_exported_month_adds_correction_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ledger, closer) = closed_in(dir.path());
    let window = CostFilter { from_ns: T, to_ns: T + HOUR_NS, tenant: None, equals: Vec::new() };
    write_call(&store, 1, 1, 1_000_000).await;
    // Closed: 10:00-11:00 closes 600 s after 11:00.
    closer.refresh_at(T + 2 * HOUR_NS).await.unwrap();
    let exported = ledger.rows(&window).await.unwrap();
    // 1M gpt-4o input tokens at $2.50 per 1M.
    assert_eq!(exported.iter().map(|r| r.cost).collect::<Vec<_>>(), [rust_decimal::Decimal::new(250, 2)]);
    // The month's export was served: 2026-10-01T00:00:00Z.
    ledger.mark_exported(1_790_812_800_000_000_000, None).await.unwrap();

    write_call(&store, 2, 2, 400_000).await;
    closer.refresh_at(T + 2 * HOUR_NS + 60_000_000_000).await.unwrap();
    let rows = ledger.rows(&window).await.unwrap();
    let original: Vec<_> = rows.iter().filter(|r| r.charge_class.is_none()).map(|r| (r.cost, r.consumed_quantity)).collect();
    let corrections: Vec<_> =
        rows.iter().filter(|r| r.charge_class.map(|c| c.as_str()) == Some("Correction")).map(|r| (r.cost, r.consumed_quantity)).collect();
    assert_eq!(original, [(exported[0].cost, exported[0].consumed_quantity)], "the exported row stays as it was");
    // The late call: 400,000 tokens at $2.50 per 1M = $1.00.
    assert_eq!(corrections, [(rust_decimal::Decimal::ONE, rust_decimal::Decimal::from(400_000))]);
    assert_eq!(rows.iter().map(|r| r.cost).sum::<rust_decimal::Decimal>(), rust_decimal::Decimal::new(350, 2));
}

/// A month exported through one tenant's key: that tenant's rows of a
/// re-closed hour keep their exported figures and get corrections; another
/// tenant's rows, never exported, are simply replaced.
#[tokio::test]
async fn a_tenant_keys_export_corrects_only_that_tenants_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ledger, closer) = closed_in(dir.path());
    // Odd traces are globex's, even ones acme's (`llm_row`).
    let window = CostFilter { from_ns: T, to_ns: T + HOUR_NS, tenant: None, equals: Vec::new() };
    write_call(&store, 1, 2, 1_000_000).await;
    write_call(&store, 2, 1, 1_000_000).await;
    closer.refresh_at(T + 2 * HOUR_NS).await.unwrap();
    // acme's key is served the month (2026-10-01T00:00:00Z); globex's is not.
    ledger.mark_exported(1_790_812_800_000_000_000, Some("acme")).await.unwrap();

    // A late 400,000-token call for each: 400,000 x $2.50 per 1M = $1.00 each.
    write_call(&store, 3, 4, 400_000).await;
    write_call(&store, 4, 3, 400_000).await;
    closer.refresh_at(T + 2 * HOUR_NS + 60_000_000_000).await.unwrap();
    let rows = ledger.rows(&window).await.unwrap();
    let of = |tenant: &str| {
        let mut v: Vec<_> = rows
            .iter()
            .filter(|r| r.tenant == tenant)
            .map(|r| (r.charge_class.map(|c| c.as_str().to_owned()), r.cost, r.consumed_quantity))
            .collect();
        v.sort();
        v
    };
    let d = |s: &str| s.parse::<rust_decimal::Decimal>().unwrap();
    // acme: the exported $2.50 row for 1M tokens, plus a $1.00 correction for 400,000.
    assert_eq!(of("acme"), [(None, d("2.5"), d("1000000")), (Some("Correction".to_owned()), d("1"), d("400000"))], "{rows:?}");
    // globex: one row for 1.4M tokens, $2.50 + $1.00 = $3.50, no correction.
    assert_eq!(of("globex"), [(None, d("3.5"), d("1400000"))], "{rows:?}");
}

/// An embedded store in `dir`, its ledger and a closer with the default settings.
fn closed_in(dir: &std::path::Path) -> (Arc<dyn Store>, Ledger, Closer) {
    let store: Arc<dyn Store> = Arc::new(DuckDbStore::open(dir).unwrap());
    let ledger = Ledger::new(Arc::clone(&store));
    let ledger_section = LedgerSection::default();
    let source = PriceSource { cost: CostSection::default(), ledger: ledger_section.clone(), kubernetes: Default::default(), file: None };
    let closer = Closer::new(ledger.clone(), Arc::new(source.meter().unwrap()), source, Timing::of(&ledger_section));
    (store, ledger, closer)
}

/// Writes batch `id`: one gpt-4o call (trace and span `trace`) at 10:01
/// with `input` tokens.
async fn write_call(store: &Arc<dyn Store>, id: u64, trace: u8, input: u64) {
    let call = Call { hour: 0, trace, span: trace, rollup: false, input, output: 0, model: 0 };
    let usage = UsageRows { llm: vec![llm_row(&call, T + 1)], ..UsageRows::default() };
    store.write(&TelemetryBatch { id, usage, ..TelemetryBatch::default() }).await.unwrap();
}
