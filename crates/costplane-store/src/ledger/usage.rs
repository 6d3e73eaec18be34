//! Reading stored usage for the closer: whole hours (a first pricing, a
//! re-close, repricing), and the rows written since a write number (the
//! incremental refresh, see `crate::write_seq`).
//!
//! `upto` bounds every read to rows with `WriteSeq <= upto`, so that a
//! whole-hour read and the reads after it split the rows exactly: a row is
//! in the one or in the other, never in both. Kubernetes usage has no write
//! numbers (the meter writes whole hours again): it is always read whole.

use std::collections::HashSet;

use costplane_ledger::{scope, CallKind, KubernetesUsage, LlmUsage, LlmUsageRow, TelemetryUsage};
use serde_json::Value;

use super::llm_columns::{select_list, LlmColumn};
use super::{decimal_cell, int_cell, static_signal, text, uint_cell, HourUsage, Ledger};
use crate::{Param, Params, StoreError};

/// Usage rows written after one write number, up to another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewUsage {
    /// One entry per stored row (a batch's aggregate), not merged.
    pub telemetry: Vec<TelemetryUsage>,
    /// One entry per stored row, copies of a span included.
    pub llm: Vec<LlmUsageRow>,
}

const LLM_TABLE: &str = "costplane_usage_llm";
const TELEMETRY_TABLE: &str = "costplane_usage_telemetry";
const KUBERNETES_TABLE: &str = "costplane_usage_kubernetes";
const SAMPLES_TABLE: &str = "costplane_usage_k8s_samples";

fn llm_row(i: usize, row: &[Value]) -> Result<LlmUsageRow, StoreError> {
    use LlmColumn as C;
    let cell = |c: C| &row[c.at()];
    let reason = text(cell(C::InvalidReason));
    let time = |c: C| int_cell(LLM_TABLE, cell(c), i, c.name());
    let tokens = |c: C| uint_cell(LLM_TABLE, cell(c), i, c.name());
    let cost = cell(C::ProvidedCost);
    Ok(LlmUsageRow {
        timestamp_ns: time(C::Timestamp)?,
        received_ns: time(C::ReceivedAt)?,
        hour_ns: time(C::Hour)?,
        tenant: text(cell(C::Tenant)),
        project: text(cell(C::Project)),
        service: text(cell(C::Service)),
        trace_id: text(cell(C::TraceId)),
        span_id: text(cell(C::SpanId)),
        kind: CallKind::parse(&text(cell(C::CallKind))),
        usage: LlmUsage {
            provider: text(cell(C::Provider)),
            model: text(cell(C::Model)),
            operation: text(cell(C::Operation)),
            input_tokens: tokens(C::InputTokens)?,
            output_tokens: tokens(C::OutputTokens)?,
            cache_read_tokens: tokens(C::CacheReadTokens)?,
            cache_write_tokens: tokens(C::CacheWriteTokens)?,
            cache_write_1h_tokens: tokens(C::CacheWrite1hTokens)?,
            reasoning_tokens: tokens(C::ReasoningTokens)?,
            provided_cost: if cost.is_null() { None } else { Some(decimal_cell(LLM_TABLE, cost, i, C::ProvidedCost.name())?) },
        },
        invalid_reason: (!reason.is_empty()).then_some(reason),
    })
}

/// Which of a span's copies received at the same time is billed: the one
/// with the most tokens, then by names, so that every pricing of the hour
/// picks the same copy.
pub(crate) const COPY_ORDER: &str =
    "InputTokens DESC, OutputTokens DESC, CacheReadTokens DESC, CacheWriteTokens DESC, CacheWrite1hTokens DESC, ReasoningTokens DESC, \
                          ProvidedCost DESC NULLS LAST, Provider, Model, Operation, CallKind, Tenant, Project, Service, InvalidReason";

/// ` AND WriteSeq <= {upto}` when bounded.
fn bounded(p: &mut Params, upto: Option<u64>) -> String {
    match upto {
        Some(n) => format!(" AND WriteSeq <= {}", p.add(Param::UInt(n))),
        None => String::new(),
    }
}

impl Ledger {
    /// Stored usage rows per (hour, scope) for hours from `since` (LLM and
    /// telemetry rows up to write number `upto`): what tells the closer an
    /// hour has new usage.
    pub async fn usage_counts(&self, since: i64, upto: Option<u64>) -> Result<Vec<(i64, &'static str, u64)>, StoreError> {
        self.usage_counts_of(&[scope::TELEMETRY, scope::LLM, scope::KUBERNETES], since, upto).await
    }

    /// [`Ledger::usage_counts`] of some scopes only (the incremental
    /// refresh counts Kubernetes hours alone: counting the others would
    /// read every usage row of the lookback).
    pub async fn usage_counts_of(
        &self,
        scopes: &[&str],
        since: i64,
        upto: Option<u64>,
    ) -> Result<Vec<(i64, &'static str, u64)>, StoreError> {
        let dialect = self.dialect();
        let hour = dialect.ns("Hour");
        let mut out = Vec::new();
        for (table, scope, numbered) in
            [(TELEMETRY_TABLE, scope::TELEMETRY, true), (LLM_TABLE, scope::LLM, true), (KUBERNETES_TABLE, scope::KUBERNETES, false)]
        {
            if !scopes.contains(&scope) {
                continue;
            }
            let mut p = Params::new(dialect);
            let from = p.add(Param::Int(since));
            let bound = if numbered { bounded(&mut p, upto) } else { String::new() };
            let sql = format!("SELECT {hour} AS h, count(*) AS n FROM {table} WHERE {hour} >= {from}{bound} GROUP BY h");
            let r = self.read(&sql, &p.values).await?;
            for (i, row) in r.rows.iter().enumerate() {
                out.push((int_cell(table, &row[0], i, "Hour")?, scope, uint_cell(table, &row[1], i, "count(*)")?));
            }
        }
        out.sort();
        Ok(out)
    }

    /// How many usage rows one (hour, scope) has stored, whatever their
    /// write numbers (the count an hour is checked against when it closes),
    /// or with write numbers up to `upto` (whether an hour had usage before
    /// a point; Kubernetes rows have no numbers and are all counted).
    pub async fn usage_count(&self, scope_name: &str, hour_ns: i64, upto: Option<u64>) -> Result<u64, StoreError> {
        let (table, numbered) = match scope_name {
            scope::TELEMETRY => (TELEMETRY_TABLE, true),
            scope::LLM => (LLM_TABLE, true),
            scope::KUBERNETES => (KUBERNETES_TABLE, false),
            _ => return Ok(0),
        };
        let dialect = self.dialect();
        let mut p = Params::new(dialect);
        let at = p.add(Param::Int(hour_ns));
        let bound = if numbered { bounded(&mut p, upto) } else { String::new() };
        let sql = format!("SELECT count(*) FROM {table} WHERE {} = {at}{bound}", dialect.ns("Hour"));
        let r = self.read(&sql, &p.values).await?;
        r.rows.first().map_or(Ok(0), |row| uint_cell(table, &row[0], 0, "count(*)"))
    }

    /// The write numbers of the usage rows written after `after`, up to
    /// `upto`, for hours from `since`, in order, each with its number of
    /// rows: where a reader can cut [`Ledger::usage_since`] into slices of
    /// whole writes and bounded size.
    pub async fn writes_since(&self, after: u64, upto: u64, since: i64) -> Result<Vec<(u64, u64)>, StoreError> {
        let dialect = self.dialect();
        let hour = dialect.ns("Hour");
        let mut p = Params::new(dialect);
        let (a, u, s) = (p.add(Param::UInt(after)), p.add(Param::UInt(upto)), p.add(Param::Int(since)));
        let sql = format!(
            "SELECT WriteSeq, count(*) FROM (SELECT WriteSeq, {hour} AS h FROM costplane_usage_llm \
             UNION ALL SELECT WriteSeq, {hour} AS h FROM costplane_usage_telemetry) w \
             WHERE WriteSeq > {a} AND WriteSeq <= {u} AND h >= {s} GROUP BY WriteSeq ORDER BY WriteSeq"
        );
        let r = self.read(&sql, &p.values).await?;
        r.rows
            .iter()
            .enumerate()
            .map(|(i, row)| Ok((uint_cell(LLM_TABLE, &row[0], i, "WriteSeq")?, uint_cell(LLM_TABLE, &row[1], i, "count(*)")?)))
            .collect()
    }

    /// The usage rows written after write number `after`, up to `upto`,
    /// for hours from `since`.
    pub async fn usage_since(&self, after: u64, upto: u64, since: i64) -> Result<NewUsage, StoreError> {
        let dialect = self.dialect();
        let hour = dialect.ns("Hour");
        let mut out = NewUsage::default();
        if upto <= after {
            return Ok(out);
        }
        let mut p = Params::new(dialect);
        let (a, b, s) = (p.add(Param::UInt(after)), p.add(Param::UInt(upto)), p.add(Param::Int(since)));
        let window = format!("WriteSeq > {a} AND WriteSeq <= {b} AND {hour} >= {s}");
        let sql = format!(
            "SELECT {hour}, Tenant, Project, Service, Signal, Items, Bytes, {} FROM costplane_usage_telemetry WHERE {window}",
            dialect.ns("EventDay")
        );
        for (i, row) in self.read(&sql, &p.values).await?.rows.iter().enumerate() {
            out.telemetry.push(TelemetryUsage {
                hour_ns: int_cell(TELEMETRY_TABLE, &row[0], i, "Hour")?,
                event_day_ns: int_cell(TELEMETRY_TABLE, &row[7], i, "EventDay")?,
                tenant: text(&row[1]),
                project: text(&row[2]),
                service: text(&row[3]),
                signal: static_signal(&text(&row[4])),
                items: uint_cell(TELEMETRY_TABLE, &row[5], i, "Items")?,
                bytes: uint_cell(TELEMETRY_TABLE, &row[6], i, "Bytes")?,
            });
        }
        let sql = format!("SELECT {} FROM costplane_usage_llm WHERE {window}", select_list(dialect));
        // Typed columns where the store has them: this read is one row per
        // LLM call, the bulk of what a refresh reads.
        match self.store.query_arrow_on(self.lane, &sql, &p.values).await? {
            Some(batches) => out.llm = super::usage_arrow::llm_rows(&batches)?,
            None => {
                for (i, row) in self.read(&sql, &p.values).await?.rows.iter().enumerate() {
                    out.llm.push(llm_row(i, row)?);
                }
            }
        }
        Ok(out)
    }

    /// The stored usage of one (hour, scope): LLM and telemetry rows up to
    /// write number `upto` (all when `None`).
    pub async fn usage_of_hour(&self, scope_name: &str, hour_ns: i64, upto: Option<u64>) -> Result<HourUsage, StoreError> {
        let dialect = self.dialect();
        let mut p = Params::new(dialect);
        let hour = dialect.ns("Hour");
        let at = p.add(Param::Int(hour_ns));
        let mut out = HourUsage::default();
        match scope_name {
            scope::TELEMETRY => {
                let bound = bounded(&mut p, upto);
                let sql = format!(
                    "SELECT Tenant, Project, Service, Signal, sum(Items), sum(Bytes), count(*) FROM costplane_usage_telemetry \
                     WHERE {hour} = {at}{bound} GROUP BY Tenant, Project, Service, Signal ORDER BY Tenant, Project, Service, Signal"
                );
                let r = self.read(&sql, &p.values).await?;
                for (i, row) in r.rows.iter().enumerate() {
                    out.rows += uint_cell(TELEMETRY_TABLE, &row[6], i, "count(*)")?;
                    out.telemetry.push(TelemetryUsage {
                        hour_ns,
                        // Summed over event days: ingest is priced by receive hour.
                        event_day_ns: costplane_telemetry::usage::day_of(hour_ns),
                        tenant: text(&row[0]),
                        project: text(&row[1]),
                        service: text(&row[2]),
                        signal: static_signal(&text(&row[3])),
                        items: uint_cell(TELEMETRY_TABLE, &row[4], i, "sum(Items)")?,
                        bytes: uint_cell(TELEMETRY_TABLE, &row[5], i, "sum(Bytes)")?,
                    });
                }
            }
            scope::LLM => {
                let bound = bounded(&mut p, upto);
                let sql = format!(
                    "SELECT {} FROM costplane_usage_llm WHERE {hour} = {at}{bound} ORDER BY TraceId, SpanId, {received}, WriteSeq, {COPY_ORDER}",
                    select_list(dialect),
                    // By its position (1-based): the select list's ns of ReceivedAt.
                    received = LlmColumn::ReceivedAt.at() + 1,
                );
                let r = self.read(&sql, &p.values).await?;
                let mut previous: Option<(&Value, &Value)> = None;
                for (i, row) in r.rows.iter().enumerate() {
                    out.rows += 1;
                    // A span delivered twice (an exporter's retry after a
                    // timeout, a replay) is one call: its copies share the
                    // event time, so they meet in this hour; the first
                    // received is billed (`COPY_ORDER` among copies received
                    // together). Spans without ids are never merged.
                    let ids = (&row[LlmColumn::TraceId.at()], &row[LlmColumn::SpanId.at()]);
                    let same = previous == Some(ids) && !text(ids.0).is_empty() && !text(ids.1).is_empty();
                    previous = Some(ids);
                    if !same {
                        out.llm.push(llm_row(i, row)?);
                    }
                }
            }
            scope::KUBERNETES => {
                // Every row counts (a re-write changes the count), but only
                // each cluster's latest write is the hour's usage.
                let written = dialect.ns("WrittenAt");
                let sql = format!(
                    "SELECT Cluster, {written}, Kind, Payload FROM costplane_usage_kubernetes WHERE {hour} = {at} ORDER BY Cluster, 2, Kind, Payload"
                );
                let r = self.read(&sql, &p.values).await?;
                let written: Vec<i64> = r
                    .rows
                    .iter()
                    .enumerate()
                    .map(|(i, row)| int_cell(KUBERNETES_TABLE, &row[1], i, "WrittenAt"))
                    .collect::<Result<_, _>>()?;
                let mut latest: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
                for (row, &written_ns) in r.rows.iter().zip(&written) {
                    out.rows += 1;
                    let w = latest.entry(text(&row[0])).or_insert(i64::MIN);
                    *w = (*w).max(written_ns);
                }
                for (row, &written_ns) in r.rows.iter().zip(&written) {
                    let cluster = text(&row[0]);
                    if latest.get(&cluster) == Some(&written_ns) {
                        out.kubernetes.push(KubernetesUsage { hour_ns, written_ns, cluster, kind: text(&row[2]), payload: text(&row[3]) });
                    }
                }
            }
            _ => {}
        }
        Ok(out)
    }

    /// The stored Kubernetes samples of the newest `hours` hours of sample
    /// time (counted back from the newest stored sample's hour), in time
    /// order: what a restarting meter is rebuilt from (see `costplane-k8s`'s
    /// `samples`). Empty when none are stored.
    pub async fn recent_kubernetes_samples(&self, hours: i64) -> Result<Vec<KubernetesUsage>, StoreError> {
        let dialect = self.dialect();
        let hour = dialect.ns("Hour");
        let newest = self.read(&format!("SELECT count(*), max({hour}) FROM {SAMPLES_TABLE}"), &[]).await?;
        let Some(row) = newest.rows.first() else { return Ok(Vec::new()) };
        if uint_cell(SAMPLES_TABLE, &row[0], 0, "count(*)")? == 0 {
            return Ok(Vec::new());
        }
        let from = int_cell(SAMPLES_TABLE, &row[1], 0, "max(Hour)")?
            .saturating_sub(hours.saturating_sub(1).max(0).saturating_mul(costplane_ledger::HOUR_NS));
        let mut p = Params::new(dialect);
        let written = dialect.ns("WrittenAt");
        let sql = format!(
            "SELECT {hour}, {written}, Cluster, Kind, Payload FROM costplane_usage_k8s_samples WHERE {hour} >= {} ORDER BY 2, 3, 5",
            p.add(Param::Int(from))
        );
        let r = self.read(&sql, &p.values).await?;
        r.rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                Ok(KubernetesUsage {
                    hour_ns: int_cell(SAMPLES_TABLE, &row[0], i, "Hour")?,
                    written_ns: int_cell(SAMPLES_TABLE, &row[1], i, "WrittenAt")?,
                    cluster: text(&row[2]),
                    kind: text(&row[3]),
                    payload: text(&row[4]),
                })
            })
            .collect()
    }

    /// Which of `traces` have a model-call span with usage (any hour): their
    /// agent, chain, workflow and tool spans are not billed again.
    pub async fn traces_with_model_usage(&self, traces: &[String]) -> Result<HashSet<String>, StoreError> {
        let mut out = HashSet::new();
        for chunk in traces.chunks(500) {
            let mut p = Params::new(self.dialect());
            let list: Vec<String> = chunk.iter().map(|t| p.add(Param::Str(t.clone()))).collect();
            let sql = format!(
                "SELECT DISTINCT TraceId FROM costplane_usage_llm WHERE CallKind = 'model' AND TraceId IN ({}) \
                 AND (InputTokens > 0 OR OutputTokens > 0 OR ProvidedCost IS NOT NULL)",
                list.join(", ")
            );
            let r = self.read(&sql, &p.values).await?;
            out.extend(r.rows.iter().map(|row| text(&row[0])));
        }
        Ok(out)
    }

    /// The (hour, trace) of every roll-up span (agent, chain, workflow,
    /// tool) booked from `since`: where a model call that arrives later for
    /// the same trace changes what an hour bills.
    pub async fn rollup_hours(&self, since: i64) -> Result<Vec<(i64, String)>, StoreError> {
        let dialect = self.dialect();
        let hour = dialect.ns("Hour");
        let mut p = Params::new(dialect);
        let sql = format!(
            "SELECT DISTINCT {hour}, TraceId FROM costplane_usage_llm WHERE CallKind = 'rollup' AND {hour} >= {}",
            p.add(Param::Int(since))
        );
        let r = self.read(&sql, &p.values).await?;
        r.rows.iter().enumerate().map(|(i, row)| Ok((int_cell(LLM_TABLE, &row[0], i, "Hour")?, text(&row[1])))).collect()
    }
}
