//! An imported bill exports as it came: a FOCUS 1.2 file with a Usage, a
//! Purchase, a Tax, a Credit and an Adjustment row is imported through
//! `costplane import focus` and the month exported through
//! `/api/costs/export?format=focus`. Every imported row comes back with its
//! own four costs, categories, frequency, pricing category, billing period,
//! invoice issuer, commitment-discount and SKU columns, and the export
//! passes the FOCUS 1.2 conformance check (`tests/support/focus_check.py`).

use std::collections::HashMap;
use std::process::Command;

use rust_decimal::Decimal;

use crate::support::{ServerProcess, BIN};

const HEADER: &str = "BilledCost,BillingAccountId,BillingAccountName,BillingCurrency,BillingPeriodEnd,BillingPeriodStart,\
ChargeCategory,ChargeClass,ChargeDescription,ChargeFrequency,ChargePeriodEnd,ChargePeriodStart,CommitmentDiscountCategory,\
CommitmentDiscountId,CommitmentDiscountName,CommitmentDiscountStatus,CommitmentDiscountType,ConsumedQuantity,ConsumedUnit,\
ContractedCost,ContractedUnitPrice,EffectiveCost,InvoiceIssuerName,ListCost,ListUnitPrice,PricingCategory,PricingQuantity,\
PricingUnit,ProviderName,PublisherName,RegionId,RegionName,ResourceId,ResourceName,ResourceType,ServiceCategory,ServiceName,\
SkuId,SkuPriceId,SubAccountId,SubAccountName,Tags";

/// (ChargeCategory, the row): one of each category, March 2025, AWS.
const ROWS: [(&str, &str); 5] = [
    // 0.192 an hour on demand, 0.12 under the savings plan.
    (
        "Usage",
        "0.12,111111111111,Acme,USD,2025-04-01T00:00:00Z,2025-03-01T00:00:00Z,Usage,,m5.xlarge hour,Usage-Based,\
2025-03-02T01:00:00Z,2025-03-02T00:00:00Z,Spend,arn:aws:savingsplans::111111111111:savingsplan/sp-1,sp-1,Used,Savings Plan,\
1,Hours,0.12,0.12,0.12,Amazon Web Services,0.192,0.192,Committed,1,Hours,AWS,AWS,us-east-1,US East (N. Virginia),\
i-0abc,web-1,Instance,Compute,Amazon EC2,SKU-EC2-M5XL,SKU-EC2-M5XL-SP,222222222222,shop-prod,\"{\"\"team\"\":\"\"web\"\"}\"",
    ),
    // The plan's upfront fee: billed now, amortized (EffectiveCost 0).
    (
        "Purchase",
        "1000,111111111111,Acme,USD,2025-04-01T00:00:00Z,2025-03-01T00:00:00Z,Purchase,,Savings plan upfront fee,\
One-Time,2025-04-01T00:00:00Z,2025-03-01T00:00:00Z,Spend,arn:aws:savingsplans::111111111111:savingsplan/sp-1,sp-1,,\
Savings Plan,,,1000,1000,0,Amazon Web Services,1000,1000,Committed,1,Commitment,AWS,AWS,,,,,,Compute,Savings Plans for AWS Compute usage,\
SKU-SP-UPFRONT,SKU-SP-UPFRONT-1Y,222222222222,shop-prod,",
    ),
    (
        "Tax",
        "12.5,111111111111,Acme,USD,2025-04-01T00:00:00Z,2025-03-01T00:00:00Z,Tax,,Sales tax,Recurring,\
2025-04-01T00:00:00Z,2025-03-01T00:00:00Z,,,,,,,,12.5,,12.5,Amazon Web Services,12.5,,,,,AWS,AWS,,,,,,Compute,Amazon EC2,\
,,222222222222,shop-prod,",
    ),
    (
        "Credit",
        "-5,111111111111,Acme,USD,2025-04-01T00:00:00Z,2025-03-01T00:00:00Z,Credit,,Promotional credit,One-Time,\
2025-03-03T00:00:00Z,2025-03-02T00:00:00Z,,,,,,,,-5,,-5,Amazon Web Services,0,,,,,AWS,AWS,,,,,,Compute,Amazon EC2,\
,,222222222222,shop-prod,",
    ),
    (
        "Adjustment",
        "-1.25,111111111111,Acme,USD,2025-04-01T00:00:00Z,2025-03-01T00:00:00Z,Adjustment,,Rounding adjustment,One-Time,\
2025-03-03T00:00:00Z,2025-03-02T00:00:00Z,,,,,,,,-1.25,,-1.25,Amazon Web Services,-1.25,,,,,AWS,AWS,,,,,,Compute,Amazon EC2,\
,,222222222222,shop-prod,",
    ),
];

/// Columns that must come back exactly as imported.
const KEPT: [&str; 20] = [
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
    "ChargeCategory",
    "ChargeClass",
    "ChargeFrequency",
    "PricingCategory",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "InvoiceIssuerName",
    "CommitmentDiscountId",
    "CommitmentDiscountType",
    "CommitmentDiscountStatus",
    "SkuId",
    "SkuPriceId",
    "ServiceName",
    "BillingAccountId",
];

fn records(csv: &str) -> Vec<HashMap<String, String>> {
    let mut reader = ::csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    reader.records().map(|r| header.iter().cloned().zip(r.unwrap().iter().map(str::to_owned)).collect()).collect()
}

/// Decimal cells compare as numbers ("12.5" is "12.500000000000").
fn same(column: &str, a: &str, b: &str) -> bool {
    if column.ends_with("Cost") && !a.is_empty() && !b.is_empty() {
        return a.parse::<Decimal>().ok() == b.parse::<Decimal>().ok();
    }
    a == b
}

#[test]
fn imported_purchase_tax_credit_and_adjustment_rows_export_as_they_came() {
    let server = ServerProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bill.csv");
    let input = format!("{HEADER}\n{}\n", ROWS.map(|(_, r)| r).join("\n"));
    std::fs::write(&file, &input).unwrap();
    let out = Command::new(BIN).args(["import", "focus", "--server", &format!("http://{}", server.api)]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let export = reqwest::blocking::get(format!("http://{}/api/costs/export?month=2025-03&format=focus", server.api)).unwrap();
    assert!(export.status().is_success(), "{}", export.status());
    let text = export.text().unwrap();
    let sent = records(&input);
    let got = records(&text);
    assert_eq!(got.len(), sent.len(), "{text}");
    for want in &sent {
        let category = &want["ChargeCategory"];
        let have = got.iter().find(|g| &g["ChargeCategory"] == category).unwrap_or_else(|| panic!("no {category} row in\n{text}"));
        for column in KEPT {
            assert!(
                same(column, &have[column], &want[column]),
                "{category} row, {column}: exported {:?}, imported {:?}",
                have[column],
                want[column]
            );
        }
    }

    let (conforms, problems) = costplane_testkit::focus_check(&text, &[]);
    assert!(conforms, "the export does not conform to FOCUS 1.2:\n{problems}");
}
