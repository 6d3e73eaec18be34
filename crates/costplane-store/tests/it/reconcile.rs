//! The reconciliation's reads sum in the store: two days of hourly LLM,
//! invoice and FOCUS bill rows come back as one row per group (provider,
//! model, day and what tells lines apart), with exact sums, on the
//! embedded store and on ClickHouse's engine. Superseded revisions, other
//! tenants, other sources and a bill's lines of no AI service stay out.

use std::sync::Arc;

use costplane_ledger::{HourState, LedgerExt, LedgerReplacement, LedgerRow, PricingStatus, Source, UsageType, HOUR_NS};
use costplane_store::ledger::{next_revision, Ledger};
use costplane_store::reconcile::{bill_groups, estimate_groups, invoice_groups, Sums};
use rust_decimal::Decimal;

use crate::support::{open_clickhouse, open_duckdb, Backend};

const DAY0: i64 = 1_790_812_800_000_000_000; // 2026-10-01T00:00:00Z
const DAY: i64 = 24 * HOUR_NS;

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn llm(hour: i64, tenant: &str, model: &str, usage: UsageType, cost: &str, status: PricingStatus) -> LedgerRow {
    LedgerRow::builder(Source::Llm, hour, hour + HOUR_NS)
        .cost(d(cost), "USD")
        .service("OpenAI API", "AI and Machine Learning")
        .provider("OpenAI")
        .consumed(Decimal::from(1000), "Tokens")
        .sku(format!("openai/{model}/{}", usage.as_str()))
        .tags("{}")
        .owner(tenant, "web", "chat")
        .model(model)
        .operation("chat")
        .usage_type(usage)
        .priced(status, "test")
        .build()
}

fn bill(hour: i64, service: &str, usage_type: &str, cost: &str, qty: &str, unit: &str) -> LedgerRow {
    let extra = serde_json::json!({ "x_UsageType": usage_type, "BillingAccountId": "111122223333" }).to_string();
    LedgerRow::builder(Source::Cloud, hour, hour + HOUR_NS)
        .cost(d(cost), "USD")
        .service(service, "AI and Machine Learning")
        .provider("AWS")
        .consumed(d(qty), unit)
        .sku("K7YHXNSB2EPP4SKG")
        .tags("{}")
        .owner("acme", "111122223333", "unassigned")
        .model("")
        .usage_type(UsageType::Other)
        .priced(PricingStatus::Provided, "focus:1.2")
        .ext(LedgerExt { extra, import_key: "aws|111122223333|2026-10".into(), ..LedgerExt::default() })
        .build()
}

fn invoice(day: i64, model: &str, cost: &str) -> LedgerRow {
    LedgerRow::builder(Source::Invoice, day, day + DAY)
        .cost(d(cost), "USD")
        .provider("OpenAI")
        .sku(format!("{model}, input"))
        .tags("{}")
        .owner("acme", "proj_chat", "unassigned")
        .model(model)
        .usage_type(UsageType::Input)
        .priced(PricingStatus::Provided, "openai-costs-json")
        .ext(LedgerExt { import_key: "openai|org-acme|cost|2026-10".into(), ..LedgerExt::default() })
        .build()
}

/// Writes `rows` as the current revision of their (hour, scope)s.
async fn write(ledger: &Ledger, rows: Vec<LedgerRow>) {
    let mut replacement = LedgerReplacement::default();
    let mut by_hour: std::collections::BTreeMap<(i64, String), Vec<LedgerRow>> = std::collections::BTreeMap::new();
    for r in rows {
        by_hour.entry((r.charge_period_start_ns, r.source.as_str().to_owned())).or_default().push(r);
    }
    for ((hour_ns, scope), rows) in by_hour {
        let revision = next_revision();
        replacement.hours.push(HourState {
            hour_ns,
            scope,
            revision,
            status: "closed".into(),
            usage_rows: rows.len() as u64,
            price_version: "test".into(),
        });
        replacement.rows.extend(rows.into_iter().map(|r| LedgerRow { revision, ..r }));
    }
    ledger.replace_window(&replacement).await.unwrap();
}

async fn groups_are_summed_in_the_store(b: &Backend) {
    let ledger = Ledger::new(Arc::clone(&b.store));
    // A first revision of every LLM hour, at 1.00 a row: replaced below, never counted.
    let stale: Vec<LedgerRow> =
        (0..48).map(|h| llm(DAY0 + h * HOUR_NS, "acme", "gpt-4o", UsageType::Input, "1", PricingStatus::Priced)).collect();
    write(&ledger, stale).await;
    let mut rows = Vec::new();
    for h in 0..48 {
        let hour = DAY0 + h * HOUR_NS;
        for (model, usage, cost) in [
            ("gpt-4o", UsageType::Input, "0.0025"),
            ("gpt-4o", UsageType::Output, "0.01"),
            ("gpt-4o-mini", UsageType::Input, "0.00015"),
            ("gpt-4o-mini", UsageType::Output, "0.0006"),
        ] {
            rows.push(llm(hour, "acme", model, usage, cost, PricingStatus::Priced));
        }
        // Another tenant's spend, seen by an admin only.
        rows.push(llm(hour, "globex", "gpt-4o", UsageType::Input, "0.0025", PricingStatus::Priced));
    }
    // One hour of a model no price covers: 1,000 tokens at $0.
    rows.push(llm(DAY0 + 5 * HOUR_NS, "acme", "acme-llm-7", UsageType::Input, "0", PricingStatus::Unpriced));
    write(&ledger, rows).await;
    // Two days of hourly Bedrock bill lines (1,000 input tokens, 0.003 a
    // row) and an EC2 line each hour, which is no AI line.
    let mut bills = Vec::new();
    for h in 0..48 {
        let hour = DAY0 + h * HOUR_NS;
        bills.push(bill(hour, "Amazon Bedrock", "USE1-Claude3.5Sonnet-input-tokens", "0.003", "1", "1K tokens"));
        bills.push(bill(hour, "Amazon Elastic Compute Cloud", "USE1-BoxUsage:m5.large", "0.096", "1", "Hrs"));
    }
    write(&ledger, bills).await;
    write(&ledger, vec![invoice(DAY0, "gpt-4o-2024-08-06", "0.5"), invoice(DAY0 + DAY, "gpt-4o-2024-08-06", "0.75")]).await;

    let (from, to) = (DAY0, DAY0 + 2 * DAY);
    let acme = estimate_groups(&ledger, from, to, Some("acme")).await.unwrap();
    let got: Vec<(&str, &str, i64, &str, &str, &Sums)> = acme
        .iter()
        .map(|g| (g.span_provider.as_str(), g.model.as_str(), g.day_ns, g.unit.as_str(), g.pricing_status.as_str(), &g.sums))
        .collect();
    let sums = |cost: &str, tokens: i64, rows: u64| Sums { cost: d(cost), quantity: Some(Decimal::from(tokens)), rows };
    // 48 hours x 4 rows + 1 = 193 rows of acme in five groups. Per model and day,
    // 24 hours x (input + output): gpt-4o 24 x (0.0025 + 0.01) = 0.3,
    // gpt-4o-mini 24 x (0.00015 + 0.0006) = 0.018; tokens 24 x 2 x 1,000 = 48,000.
    let expected = [
        ("openai", "acme-llm-7", DAY0, "Tokens", "unpriced", sums("0", 1000, 1)),
        ("openai", "gpt-4o", DAY0, "Tokens", "priced", sums("0.3", 48_000, 48)),
        ("openai", "gpt-4o", DAY0 + DAY, "Tokens", "priced", sums("0.3", 48_000, 48)),
        ("openai", "gpt-4o-mini", DAY0, "Tokens", "priced", sums("0.018", 48_000, 48)),
        ("openai", "gpt-4o-mini", DAY0 + DAY, "Tokens", "priced", sums("0.018", 48_000, 48)),
    ];
    assert_eq!(got.len(), expected.len(), "{acme:?}");
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!((g.0, g.1, g.2, g.3, g.4, g.5), (e.0, e.1, e.2, e.3, e.4, &e.5));
    }
    // An admin sees globex too: gpt-4o input of day 0 gains 24 x 0.0025 = 0.06.
    let all = estimate_groups(&ledger, from, to, None).await.unwrap();
    let day0 = all.iter().find(|g| g.model == "gpt-4o" && g.day_ns == DAY0).unwrap();
    assert_eq!((day0.sums.cost, day0.sums.rows), (d("0.36"), 72));
    assert_eq!(all.len(), 5);

    // Bills: the Bedrock line per day, 24 x 0.003 = 0.072 and 24 x 1 (1K tokens); no EC2.
    let bills = bill_groups(&ledger, from, to, Some("acme")).await.unwrap();
    assert_eq!(bills.len(), 2, "{bills:?}");
    for (g, day) in bills.iter().zip([DAY0, DAY0 + DAY]) {
        assert_eq!((g.service_name.as_str(), g.day_ns, g.unit.as_str(), g.currency.as_str()), ("Amazon Bedrock", day, "1K tokens", "USD"));
        assert_eq!(g.sums, sums("0.072", 24, 24));
        assert!(g.extra.contains("USE1-Claude3.5Sonnet-input-tokens"), "{}", g.extra);
    }
    assert!(bill_groups(&ledger, from, to, Some("globex")).await.unwrap().is_empty());

    // Invoices: one line a day, in their own source only.
    let inv = invoice_groups(&ledger, from, to, None).await.unwrap();
    let got: Vec<(&str, &str, &str, i64, Decimal)> =
        inv.iter().map(|g| (g.import_key.as_str(), g.model.as_str(), g.usage_type.as_str(), g.day_ns, g.sums.cost)).collect();
    assert_eq!(
        got,
        [
            ("openai|org-acme|cost|2026-10", "gpt-4o-2024-08-06", "input", DAY0, d("0.5")),
            ("openai|org-acme|cost|2026-10", "gpt-4o-2024-08-06", "input", DAY0 + DAY, d("0.75")),
        ]
    );
    // A window of the second day only.
    let second = estimate_groups(&ledger, DAY0 + DAY, to, Some("acme")).await.unwrap();
    assert_eq!(second.iter().map(|g| g.sums.rows).sum::<u64>(), 96);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_reconciliation_groups_are_summed_in_the_store() {
    groups_are_summed_in_the_store(&open_duckdb().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_reconciliation_groups_are_summed_in_the_store() {
    groups_are_summed_in_the_store(&open_clickhouse().await).await;
}
