//! Pricing a sum of calls that fall in one price tier equals pricing each
//! call and adding the costs: what cost per request relies on when the
//! store sums the calls of a group before they are priced.

use chrono::NaiveDate;
use costplane_cost::catalog::{Catalog, CatalogFile};
use costplane_cost::llm::{price_summed, price_with, LlmUsage, ProvidedCost};
use proptest::prelude::*;
use rust_decimal::Decimal;

const PRICES: &str = r#"
version = "summed-test"
currency = "USD"

[[model]]
provider = "acme"
name = "tiered"
  [[model.prices]]
  effective = "2026-01-01"
  input = "1.25"
  output = "5"
  cache_read = "0.3125"
  cache_write = "2.5"
  cache_write_1h = "4"
  reasoning = "7.5"
    [[model.prices.tiers]]
    above_input_tokens = 128000
    input = "2.5"
    output = "10"
    cache_write_1h = "6"
"#;

fn catalog() -> Catalog {
    let file: CatalogFile = toml::from_str(PRICES).expect("the test catalog parses");
    Catalog::from_files(file, None).expect("the test catalog loads")
}

/// One call's token counts: input and output may be smaller than the
/// cached and reasoning counts, as some instrumentations report them.
fn call() -> impl Strategy<Value = LlmUsage> {
    (0u64..400_000, 0u64..50_000, 0u64..50_000, 0u64..20_000, 0u64..20_000, 0u64..30_000).prop_map(
        |(input, read, write, write_1h, output, reasoning)| LlmUsage {
            provider: "acme".into(),
            model: "tiered".into(),
            operation: "chat".into(),
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: read,
            cache_write_tokens: write + write_1h,
            cache_write_1h_tokens: write_1h,
            reasoning_tokens: reasoning,
            provided_cost: None,
        },
    )
}

/// The calls' parts summed as the store sums them: input without cached
/// tokens and output without reasoning, each never below zero.
fn summed(calls: &[&LlmUsage]) -> LlmUsage {
    let mut s = LlmUsage { provider: "acme".into(), model: "tiered".into(), operation: "chat".into(), ..LlmUsage::default() };
    for c in calls {
        let cached = c.cache_read_tokens + c.cache_write_tokens;
        s.input_tokens += c.input_tokens.saturating_sub(cached) + cached;
        s.output_tokens += c.output_tokens.saturating_sub(c.reasoning_tokens) + c.reasoning_tokens;
        s.cache_read_tokens += c.cache_read_tokens;
        s.cache_write_tokens += c.cache_write_tokens;
        s.cache_write_1h_tokens += c.cache_write_1h_tokens;
        s.reasoning_tokens += c.reasoning_tokens;
    }
    s
}

proptest! {
    #[test]
    fn a_sum_per_tier_prices_as_its_calls(calls in proptest::collection::vec(call(), 1..40)) {
        let catalog = catalog();
        let day = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let thresholds = catalog.tier_thresholds();
        prop_assert_eq!(&thresholds, &vec![128_000]);
        let each: Decimal = calls.iter().map(|c| price_with(&catalog, c, day, ProvidedCost::Prefer).total).sum();
        let mut total = Decimal::ZERO;
        for bucket in 0..=thresholds.len() {
            let members: Vec<&LlmUsage> =
                calls.iter().filter(|c| thresholds.iter().filter(|t| c.input_tokens > **t).count() == bucket).collect();
            let Some(tier_input) = members.iter().map(|c| c.input_tokens).min() else { continue };
            total += price_summed(&catalog, &summed(&members), tier_input, day, ProvidedCost::Prefer).total;
        }
        prop_assert_eq!(total, each);
    }
}

#[test]
fn provided_costs_add_up_as_given() {
    let catalog = catalog();
    let day = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    let mut a = LlmUsage { provider: "acme".into(), model: "unknown-model".into(), input_tokens: 10, ..LlmUsage::default() };
    a.provided_cost = Some(Decimal::new(125, 3));
    // 0.125 + 0.125 = 0.25 carried by the spans, whatever their tokens.
    let mut sum = summed(&[&a, &a]);
    sum.model = "unknown-model".into();
    sum.provided_cost = Some(Decimal::new(25, 2));
    let priced = price_summed(&catalog, &sum, 10, day, ProvidedCost::Prefer);
    assert_eq!(priced.total, Decimal::new(25, 2));
}
