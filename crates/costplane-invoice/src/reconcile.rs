//! Estimates against invoices, per provider, model and day.
//!
//! - **Estimates** are the ledger's LLM rows (priced from spans), by the
//!   provider the span named (its canonical id, [`crate::provider_family`])
//!   and the span's model; **invoices** are [`InvoiceLine`]s.
//! - Models meet through [`crate::match_key`]; each line shows the
//!   catalog's canonical name and the names each side used
//!   ([`Line::estimate_names`], [`Line::invoice_names`]), and the report
//!   lists the whole mapping ([`Report::mapping`]).
//! - `drift = invoiced − estimated` (positive: the bill is higher);
//!   `drift %` = drift / invoiced × 100, rounded half-even to 2 places,
//!   none when nothing was invoiced.
//! - Status: `invoiced-only` (the bill has it, no span showed it:
//!   uninstrumented callers), `estimated-only` (spans no invoice covers,
//!   e.g. a month not billed yet), `matched` (both, |drift| within the
//!   tolerance: the larger of `tolerance_usd` and `tolerance_percent` of
//!   the invoiced amount) or `drift`. A line with **unpriced tokens** (usage
//!   no price covered, estimated at $0) is never `matched`: its estimate is
//!   incomplete, and the tokens are shown beside the drift.
//! - Tokens: the estimate's are the spans' token counts; the invoice's are
//!   shown only when at least one of its lines states them.
//! - Exact: every sum is `Decimal`, in the order the lines are given.

use std::collections::{BTreeMap, BTreeSet};

use costplane_ledger::{LedgerRow, PricingStatus, Source};
use rust_decimal::{Decimal, RoundingStrategy};

use crate::{canonical_name, day_of, match_key, provider_family, InvoiceLine};

/// What one reconciliation line is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    Provider,
    Model,
    Day,
}

impl Dim {
    pub const ALL: [Dim; 3] = [Dim::Provider, Dim::Model, Dim::Day];

    pub fn name(self) -> &'static str {
        match self {
            Dim::Provider => "provider",
            Dim::Model => "model",
            Dim::Day => "day",
        }
    }

    pub fn parse(s: &str) -> Option<Dim> {
        Dim::ALL.into_iter().find(|d| d.name() == s)
    }
}

/// A line's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Matched,
    Drift,
    InvoicedOnly,
    EstimatedOnly,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Matched => "matched",
            Status::Drift => "drift",
            Status::InvoicedOnly => "invoiced-only",
            Status::EstimatedOnly => "estimated-only",
        }
    }
}

/// One estimated amount: part of an LLM ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    /// The reconciliation's provider id ([`crate::provider_family`]).
    pub provider: String,
    /// The model as the span named it.
    pub model: String,
    pub start_ns: i64,
    pub cost: Decimal,
    pub tokens: Decimal,
    /// Tokens no price covered (`x_PricingStatus = unpriced`).
    pub unpriced_tokens: Decimal,
}

impl Estimate {
    /// The estimate of an LLM ledger row (`None` for other sources). The
    /// provider is the span's, kept as the first part of the row's SkuId
    /// (`provider/model/kind`); the display name when that is empty.
    pub fn of_ledger_row(r: &LedgerRow) -> Option<Estimate> {
        if r.source != Source::Llm {
            return None;
        }
        Some(Estimate::of_sums(
            r.sku_id.split('/').next().unwrap_or(""),
            &r.provider_name,
            &r.model,
            r.charge_period_start_ns,
            (&r.consumed_unit, r.pricing_status.as_str()),
            (r.cost, r.consumed_quantity),
        ))
    }

    /// The estimate of LLM ledger rows summed by the store: `span_provider`
    /// is the SkuId's first part, `(unit, pricing status)` and `(cost,
    /// quantity)` the group's; tokens count when the unit is tokens, and are
    /// unpriced when the status is.
    pub fn of_sums(
        span_provider: &str,
        provider_name: &str,
        model: &str,
        start_ns: i64,
        (unit, status): (&str, &str),
        (cost, quantity): (Decimal, Decimal),
    ) -> Estimate {
        let provider = if span_provider.is_empty() {
            match provider_name {
                "AWS" => "aws.bedrock".to_owned(),
                "Microsoft" => "azure.ai.openai".to_owned(),
                other => provider_family(other),
            }
        } else {
            provider_family(span_provider)
        };
        let tokens = if unit.eq_ignore_ascii_case("tokens") { quantity } else { Decimal::ZERO };
        Estimate {
            provider,
            model: model.to_owned(),
            start_ns,
            cost,
            tokens,
            unpriced_tokens: if status == PricingStatus::Unpriced.as_str() { tokens } else { Decimal::ZERO },
        }
    }
}

/// How lines are keyed and judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub group_by: Vec<Dim>,
    /// Percent of the invoiced amount within which a line is `matched`.
    pub tolerance_percent: Decimal,
    /// An absolute drift always within tolerance (in the ledger's currency).
    pub tolerance_usd: Decimal,
}

impl Default for Options {
    fn default() -> Self {
        Options { group_by: Dim::ALL.to_vec(), tolerance_percent: Decimal::from(5), tolerance_usd: Decimal::new(1, 2) }
    }
}

/// One reconciliation line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub provider: Option<String>,
    /// The catalog's canonical name (empty: invoice lines of no model).
    pub model: Option<String>,
    pub day_ns: Option<i64>,
    pub estimated_cost: Decimal,
    pub invoiced_cost: Decimal,
    pub drift: Decimal,
    pub drift_percent: Option<Decimal>,
    pub estimated_tokens: Decimal,
    pub invoiced_tokens: Option<Decimal>,
    pub unpriced_tokens: Decimal,
    pub status: Status,
    /// The model names spans used, and the names (SKUs' models) the invoices used.
    pub estimate_names: BTreeSet<String>,
    pub invoice_names: BTreeSet<String>,
}

/// How one (provider, model) was mapped across.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub provider: String,
    pub model: String,
    pub estimate_names: BTreeSet<String>,
    pub invoice_names: BTreeSet<String>,
}

/// Sums over all lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Totals {
    pub estimated_cost: Decimal,
    pub invoiced_cost: Decimal,
    pub drift: Decimal,
    pub drift_percent: Option<Decimal>,
    pub unpriced_tokens: Decimal,
    pub lines: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub lines: Vec<Line>,
    pub mapping: Vec<Mapping>,
    pub totals: Totals,
}

/// drift / invoiced × 100, 2 places half-even; none when nothing was invoiced.
pub fn drift_percent(drift: Decimal, invoiced: Decimal) -> Option<Decimal> {
    if invoiced.is_zero() {
        return None;
    }
    drift
        .checked_mul(Decimal::ONE_HUNDRED)?
        .checked_div(invoiced)
        .map(|p| p.round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven))
}

#[derive(Default)]
struct Acc {
    estimated: Option<Decimal>,
    invoiced: Option<Decimal>,
    est_tokens: Decimal,
    inv_tokens: Option<Decimal>,
    unpriced: Decimal,
    estimate_names: BTreeSet<String>,
    invoice_names: BTreeSet<String>,
}

type Key = (Option<String>, Option<String>, Option<i64>);

/// Reconciles `estimates` with `invoices`.
pub fn reconcile(estimates: &[Estimate], invoices: &[InvoiceLine], options: &Options) -> Report {
    let by = |d: Dim| options.group_by.contains(&d);
    // The canonical name shown for each (provider, match key): the spans'
    // first name, else the invoice's.
    let mut mapping: BTreeMap<(String, String), Mapping> = BTreeMap::new();
    for e in estimates {
        let m = mapping.entry((e.provider.clone(), match_key(&e.model))).or_insert_with(|| Mapping {
            provider: e.provider.clone(),
            model: canonical_name(&e.model),
            estimate_names: BTreeSet::new(),
            invoice_names: BTreeSet::new(),
        });
        m.estimate_names.insert(e.model.clone());
    }
    for l in invoices {
        let provider = l.provider.id().to_owned();
        let m = mapping.entry((provider.clone(), match_key(&l.model))).or_insert_with(|| Mapping {
            provider,
            model: canonical_name(&l.model),
            estimate_names: BTreeSet::new(),
            invoice_names: BTreeSet::new(),
        });
        m.invoice_names.insert(l.model.clone());
    }
    let key = |provider: &str, model: &str, start: i64| -> Key {
        let canonical = &mapping[&(provider.to_owned(), match_key(model))].model;
        (by(Dim::Provider).then(|| provider.to_owned()), by(Dim::Model).then(|| canonical.clone()), by(Dim::Day).then(|| day_of(start)))
    };
    let mut acc: BTreeMap<Key, Acc> = BTreeMap::new();
    for e in estimates {
        let a = acc.entry(key(&e.provider, &e.model, e.start_ns)).or_default();
        a.estimated = Some(a.estimated.unwrap_or_default() + e.cost);
        a.est_tokens += e.tokens;
        a.unpriced += e.unpriced_tokens;
        a.estimate_names.insert(e.model.clone());
    }
    for l in invoices {
        let a = acc.entry(key(l.provider.id(), &l.model, l.start_ns)).or_default();
        a.invoiced = Some(a.invoiced.unwrap_or_default() + l.cost);
        if let Some(t) = l.tokens {
            a.inv_tokens = Some(a.inv_tokens.unwrap_or_default() + t);
        }
        a.invoice_names.insert(l.model.clone());
    }
    let mut totals = Totals::default();
    let mut lines = Vec::with_capacity(acc.len());
    for ((provider, model, day_ns), a) in acc {
        let (estimated, invoiced) = (a.estimated.unwrap_or_default(), a.invoiced.unwrap_or_default());
        let drift = invoiced - estimated;
        let tolerance = options.tolerance_usd.max(invoiced.abs() * options.tolerance_percent / Decimal::ONE_HUNDRED);
        let status = match (a.estimated.is_some(), a.invoiced.is_some()) {
            (false, _) => Status::InvoicedOnly,
            (true, false) => Status::EstimatedOnly,
            (true, true) if drift.abs() <= tolerance && a.unpriced.is_zero() => Status::Matched,
            (true, true) => Status::Drift,
        };
        totals.estimated_cost += estimated;
        totals.invoiced_cost += invoiced;
        totals.unpriced_tokens += a.unpriced;
        *totals.lines.entry(status.as_str()).or_default() += 1;
        lines.push(Line {
            provider,
            model,
            day_ns,
            estimated_cost: estimated,
            invoiced_cost: invoiced,
            drift,
            drift_percent: drift_percent(drift, invoiced),
            estimated_tokens: a.est_tokens,
            invoiced_tokens: a.inv_tokens,
            unpriced_tokens: a.unpriced,
            status,
            estimate_names: a.estimate_names,
            invoice_names: a.invoice_names,
        });
    }
    totals.drift = totals.invoiced_cost - totals.estimated_cost;
    totals.drift_percent = drift_percent(totals.drift, totals.invoiced_cost);
    Report { lines, mapping: mapping.into_values().collect(), totals }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Provider, TokenKind};

    const DAY1: i64 = 1_730_419_200_000_000_000; // 2024-11-01
    const DAY: i64 = 86_400_000_000_000;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn est(provider: &str, model: &str, start: i64, cost: &str, tokens: u64) -> Estimate {
        Estimate {
            provider: provider.into(),
            model: model.into(),
            start_ns: start,
            cost: d(cost),
            tokens: Decimal::from(tokens),
            unpriced_tokens: Decimal::ZERO,
        }
    }

    fn inv(provider: Provider, model: &str, start: i64, cost: &str) -> InvoiceLine {
        InvoiceLine {
            start_ns: start,
            end_ns: start + DAY,
            provider,
            sku: format!("{model}, input"),
            model: model.into(),
            kind: TokenKind::Input,
            tokens: None,
            cost: d(cost),
            currency: "USD".into(),
            project: String::new(),
            tenant: None,
        }
    }

    #[test]
    fn every_status_with_its_drift() {
        let estimates = vec![
            // Two hours of one day: 1.20 + 0.80 = 2.00 against 2.05 billed:
            // drift 0.05 = 2.44% of 2.05 (0.05 / 2.05 = 0.024390..), within 5%.
            est("openai", "gpt-4o-2024-08-06", DAY1 + 3_600_000_000_000, "1.20", 1000),
            est("openai", "gpt-4o", DAY1 + 7_200_000_000_000, "0.80", 500),
            // Priced at 1.00, billed 4.00: drift 3.00 = 75%.
            est("openai", "gpt-4o-mini", DAY1, "1.00", 100),
            // The next day is not billed yet.
            est("openai", "gpt-4o", DAY1 + DAY, "3.00", 10),
        ];
        let invoices = vec![
            inv(Provider::OpenAi, "gpt-4o-2024-08-06", DAY1, "2.05"),
            inv(Provider::OpenAi, "gpt-4o-mini-2024-07-18", DAY1, "4.00"),
            // Nobody's spans showed o1.
            inv(Provider::OpenAi, "o1-2024-12-17", DAY1, "7.50"),
        ];
        let r = reconcile(&estimates, &invoices, &Options::default());
        let find = |model: &str, day: i64| r.lines.iter().find(|l| l.model.as_deref() == Some(model) && l.day_ns == Some(day)).unwrap();
        let l = find("gpt-4o", DAY1);
        assert_eq!((l.estimated_cost, l.invoiced_cost, l.drift, l.drift_percent), (d("2.00"), d("2.05"), d("0.05"), Some(d("2.44"))));
        assert_eq!(l.status, Status::Matched);
        assert_eq!(l.estimated_tokens, Decimal::from(1500));
        assert_eq!(l.estimate_names, ["gpt-4o", "gpt-4o-2024-08-06"].map(String::from).into());
        let l = find("gpt-4o-mini", DAY1);
        assert_eq!((l.drift, l.drift_percent, l.status), (d("3.00"), Some(d("75")), Status::Drift));
        let l = find("o1", DAY1);
        assert_eq!((l.estimated_cost, l.invoiced_cost, l.status), (Decimal::ZERO, d("7.50"), Status::InvoicedOnly));
        let l = find("gpt-4o", DAY1 + DAY);
        assert_eq!((l.invoiced_cost, l.drift_percent, l.status), (Decimal::ZERO, None, Status::EstimatedOnly));
        // Totals: estimated 1.20 + 0.80 + 1.00 + 3.00 = 6.00; invoiced 2.05 + 4.00 + 7.50 = 13.55.
        assert_eq!((r.totals.estimated_cost, r.totals.invoiced_cost, r.totals.drift), (d("6.00"), d("13.55"), d("7.55")));
        assert_eq!(r.totals.lines.values().sum::<u64>(), 4);
    }

    #[test]
    fn unpriced_usage_is_never_a_match() {
        let mut e = est("anthropic", "claude-next", DAY1, "0", 5000);
        e.unpriced_tokens = Decimal::from(5000);
        let r = reconcile(&[e], &[inv(Provider::Anthropic, "claude-next", DAY1, "0.004")], &Options::default());
        // A drift of 0.004 is within the 0.01 absolute tolerance, but 5000 tokens had no price.
        assert_eq!(r.lines[0].status, Status::Drift);
        assert_eq!(r.lines[0].unpriced_tokens, Decimal::from(5000));
        assert_eq!(r.totals.unpriced_tokens, Decimal::from(5000));
    }

    #[test]
    fn grouping_and_the_mapping() {
        let estimates = vec![est("aws.bedrock", "us.anthropic.claude-3-5-sonnet-20241022-v2:0", DAY1, "1.5", 1)];
        let invoices =
            vec![inv(Provider::AwsBedrock, "Claude3.5Sonnet", DAY1, "1.5"), inv(Provider::AwsBedrock, "Claude3.5Sonnet", DAY1 + DAY, "2")];
        let options = Options { group_by: vec![Dim::Provider, Dim::Model], ..Options::default() };
        let r = reconcile(&estimates, &invoices, &options);
        assert_eq!(r.lines.len(), 1);
        // 1.5 estimated against 1.5 + 2 = 3.5 billed: drift 2 = 57.14% (2 / 3.5 = 0.571428..).
        assert_eq!((r.lines[0].drift, r.lines[0].drift_percent, r.lines[0].day_ns), (d("2"), Some(d("57.14")), None));
        assert_eq!(r.mapping.len(), 1);
        assert_eq!(r.mapping[0].model, "claude-3-5-sonnet");
        assert_eq!(r.mapping[0].invoice_names, ["Claude3.5Sonnet".to_owned()].into());
    }
}
