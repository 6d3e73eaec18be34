//! Open hours priced incrementally: each usage row is priced once, when
//! the closer first reads it, into its hour's aggregate.
//!
//! # How a refresh finds new usage
//! Usage rows carry their write's number (`costplane_store::write_seq`).
//! The closer remembers the number it has consumed up to (`cursor`) and
//! reads `cursor < WriteSeq <= settled` (every row at or below `settled` is
//! visible), so a refresh costs in proportion to the usage written since
//! the last one, not to the hour.
//!
//! # What falls back to pricing an hour from scratch
//! Whole-hour pricing stays, bounded, where a new row cannot simply be
//! added; the hour is marked *dirty* and priced again from all its rows:
//! - a row of an hour not held open here (closed: late usage; open with
//!   usage stored before the rows read, not yet seen since start). An open
//!   hour whose first usage is the rows read is not one of these: it is
//!   held empty and the rows added (`Closer::start_new_hours`);
//! - a span id seen before in the hour (a copy: which one is billed is
//!   decided from all copies, as a from-scratch pricing does);
//! - a model call of a trace whose roll-up span (agent, chain, workflow,
//!   tool) is booked in a closed hour, or in an hour not held here;
//! - an hour whose stored revision disagrees with what is held (a price
//!   reload, a status change, a count that differs when the hour closes:
//!   rows of a write that committed after failing, or of another process).
//!
//! # Invariant
//! After every refresh, the rows written for an open hour equal the rows a
//! from-scratch pricing of that hour's stored usage (up to the cursor) would
//! make: the aggregates add exactly (`costplane_cost::aggregate`), copies
//! and roll-ups are decided as the from-scratch path decides them, and
//! whatever this module cannot decide exactly sends the hour to that path.
//! The closer's property test holds the two equal over random sequences.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use costplane_cost::aggregate::{LlmAggregate, TelemetryAggregate};
use costplane_cost::Meter;
use costplane_telemetry::usage::{scope, CallKind, ChargeStatus, LedgerRow, LlmUsageRow};

/// An (hour, scope) of the incremental scopes (`llm`, `telemetry`).
pub(super) type HourKey = (i64, &'static str);

/// What is held of one open (hour, scope).
#[derive(Debug, Clone)]
pub(super) struct OpenHour {
    /// Stored usage rows consumed (copies included): checked against the
    /// stored count when the hour closes.
    pub usage_rows: u64,
    pub price_version: String,
    pub priced: Priced,
}

#[derive(Debug, Clone)]
pub(super) enum Priced {
    Telemetry(TelemetryAggregate),
    Llm(LlmHour),
}

/// An hour's LLM calls: model calls priced, roll-ups held until their
/// traces are decided.
#[derive(Debug, Clone, Default)]
pub(super) struct LlmHour {
    agg: LlmAggregate,
    /// Hashes of the (trace id, span id)s consumed.
    spans: HashSet<u64>,
    /// Roll-up calls of the hour: billed unless their trace is covered.
    rollups: Vec<LlmUsageRow>,
    /// Traces of `rollups` with a model call that carries usage.
    covered: HashSet<String>,
}

/// Whether a model call covers its trace's roll-ups (it carries usage).
pub(super) fn covers(r: &LlmUsageRow) -> bool {
    r.kind == CallKind::Model && (r.usage.input_tokens > 0 || r.usage.output_tokens > 0 || r.usage.provided_cost.is_some())
}

fn hash_of(parts: &[&str]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// The hash a trace's roll-ups are found by.
pub(super) fn trace_hash(trace_id: &str) -> u64 {
    hash_of(&[trace_id])
}

impl LlmHour {
    /// An hour from all its (deduplicated) rows, its roll-ups decided by
    /// `covered` (the traces with model usage anywhere).
    pub fn from_rows(meter: &Meter, rows: &[LlmUsageRow], covered: &HashSet<String>) -> LlmHour {
        let mut hour = LlmHour::default();
        for r in rows {
            hour.remember(r);
            hour.add(meter, r);
        }
        hour.covered = hour.rollups.iter().filter(|r| covered.contains(&r.trace_id)).map(|r| r.trace_id.clone()).collect();
        hour
    }

    /// Records the span's ids; false when they were seen before (a copy).
    fn remember(&mut self, r: &LlmUsageRow) -> bool {
        if r.trace_id.is_empty() || r.span_id.is_empty() {
            return true;
        }
        self.spans.insert(hash_of(&[&r.trace_id, &r.span_id]))
    }

    fn add(&mut self, meter: &Meter, r: &LlmUsageRow) {
        if r.kind == CallKind::Rollup {
            self.rollups.push(r.clone());
        } else {
            meter.add_llm_call(&mut self.agg, r);
        }
    }

    /// Marks the roll-ups of `trace` covered; true when it had any.
    pub fn cover(&mut self, trace: &str) -> bool {
        if self.rollups.iter().any(|r| r.trace_id == trace) {
            self.covered.insert(trace.to_owned());
            return true;
        }
        false
    }

    /// The hour's ledger rows: model calls, and roll-ups of uncovered traces.
    pub fn rows(&self, meter: &Meter, status: ChargeStatus) -> Vec<LedgerRow> {
        let billed: Vec<&LlmUsageRow> = self.rollups.iter().filter(|r| !self.covered.contains(&r.trace_id)).collect();
        if billed.is_empty() {
            return meter.llm_rows(&self.agg, status);
        }
        let mut agg = self.agg.clone();
        for r in billed {
            meter.add_llm_call(&mut agg, r);
        }
        meter.llm_rows(&agg, status)
    }
}

impl OpenHour {
    pub fn rows(&self, meter: &Meter, status: ChargeStatus) -> Vec<LedgerRow> {
        match &self.priced {
            Priced::Telemetry(agg) => meter.telemetry_rows(agg, status),
            Priced::Llm(hour) => hour.rows(meter, status),
        }
    }
}

/// The incremental state: open hours, the cursor, and where roll-ups are.
#[derive(Debug, Default)]
pub(super) struct Incremental {
    /// Write number consumed up to; `None` until the first (full) refresh.
    pub cursor: Option<u64>,
    pub hours: HashMap<HourKey, OpenHour>,
    /// Hours holding roll-up spans, by trace hash, over the lookback.
    pub rollups: HashMap<u64, BTreeSet<i64>>,
}

/// What applying new rows decided.
#[derive(Debug, Default)]
pub(super) struct Applied {
    /// Held hours that changed: written again from what is held.
    pub touched: BTreeSet<HourKey>,
    /// Hours to price from scratch.
    pub dirty: BTreeSet<HourKey>,
    /// Traces of new roll-ups in held hours, to look up.
    pub new_rollup_traces: BTreeSet<(HourKey, String)>,
}

impl Incremental {
    /// Forgets every held hour (a price reload, an error mid-refresh):
    /// they are priced from scratch at the next refresh.
    pub fn reset(&mut self) {
        self.cursor = None;
        self.hours.clear();
        self.rollups.clear();
    }

    /// Adds new telemetry usage rows.
    pub fn apply_telemetry(&mut self, rows: &[costplane_telemetry::usage::TelemetryUsage], out: &mut Applied) {
        for u in rows {
            let key = (u.hour_ns, scope::TELEMETRY);
            match self.hours.get_mut(&key) {
                Some(OpenHour { usage_rows, priced: Priced::Telemetry(agg), .. }) if !out.dirty.contains(&key) => {
                    agg.add(u);
                    *usage_rows += 1;
                    out.touched.insert(key);
                }
                _ => {
                    out.dirty.insert(key);
                }
            }
        }
    }

    /// Adds new LLM usage rows, in write order.
    pub fn apply_llm(&mut self, meter: &Meter, rows: &[LlmUsageRow], out: &mut Applied) {
        for r in rows {
            let key = (r.hour_ns, scope::LLM);
            if r.kind == CallKind::Rollup && !r.trace_id.is_empty() {
                self.rollups.entry(trace_hash(&r.trace_id)).or_default().insert(r.hour_ns);
            }
            if covers(r) && !r.trace_id.is_empty() {
                // Roll-ups of this trace elsewhere are billed no more.
                let hours: Vec<i64> = self.rollups.get(&trace_hash(&r.trace_id)).map(|h| h.iter().copied().collect()).unwrap_or_default();
                for h in hours {
                    let other = (h, scope::LLM);
                    match self.hours.get_mut(&other) {
                        Some(OpenHour { priced: Priced::Llm(held), .. }) => {
                            if held.cover(&r.trace_id) {
                                out.touched.insert(other);
                            }
                        }
                        // A hash match in an hour not held (or a collision):
                        // that hour is priced again from its rows.
                        _ => {
                            out.dirty.insert(other);
                        }
                    }
                }
            }
            if out.dirty.contains(&key) {
                continue;
            }
            match self.hours.get_mut(&key) {
                Some(OpenHour { usage_rows, priced: Priced::Llm(held), .. }) => {
                    if !held.remember(r) {
                        // A copy: which one counts is decided from all of them.
                        out.dirty.insert(key);
                        continue;
                    }
                    held.add(meter, r);
                    *usage_rows += 1;
                    if r.kind == CallKind::Rollup {
                        out.new_rollup_traces.insert((key, r.trace_id.clone()));
                    }
                    out.touched.insert(key);
                }
                _ => {
                    out.dirty.insert(key);
                }
            }
        }
    }
}
