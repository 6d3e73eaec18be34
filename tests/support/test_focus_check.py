"""Tests for focus_check.py: it passes a conforming file and reports each
problem of broken ones.

Run with: python -m pytest tests/support/test_focus_check.py -q
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import focus_check  # noqa: E402

HEADER = [
    "ChargePeriodStart", "ChargePeriodEnd", "BilledCost", "EffectiveCost", "ListCost", "ContractedCost",
    "BillingCurrency", "BillingPeriodStart", "BillingPeriodEnd", "BillingAccountId", "BillingAccountName",
    "SubAccountId", "SubAccountName", "InvoiceIssuerName", "ProviderName", "PublisherName", "ChargeCategory",
    "ChargeClass", "ChargeDescription", "ChargeFrequency", "ServiceName", "ServiceCategory", "ServiceSubcategory",
    "ResourceId", "ResourceName", "ResourceType", "SkuId", "SkuPriceId", "PricingCategory", "ListUnitPrice",
    "ContractedUnitPrice", "PricingQuantity", "PricingUnit", "ConsumedQuantity", "ConsumedUnit", "Tags",
    "x_Tenant", "x_PricingStatus",
]
GOOD = {
    "ChargePeriodStart": "2026-10-06T10:00:00Z", "ChargePeriodEnd": "2026-10-06T11:00:00Z",
    "BilledCost": "0.015", "EffectiveCost": "0.015", "ListCost": "0.015", "ContractedCost": "0.015",
    "BillingCurrency": "USD", "BillingPeriodStart": "2026-10-01T00:00:00Z", "BillingPeriodEnd": "2026-11-01T00:00:00Z",
    "BillingAccountId": "costplane", "BillingAccountName": "costplane", "SubAccountId": "acme",
    "SubAccountName": "acme", "InvoiceIssuerName": "costplane", "ProviderName": "OpenAI", "PublisherName": "OpenAI",
    "ChargeCategory": "Usage", "ChargeClass": "", "ChargeDescription": "\"OpenAI models: gpt-4o, input tokens\"",
    "ChargeFrequency": "Usage-Based", "ServiceName": "OpenAI models", "ServiceCategory": "AI and Machine Learning",
    "ServiceSubcategory": "Generative AI", "ResourceId": "acme/shop/checkout", "ResourceName": "checkout",
    "ResourceType": "Service", "SkuId": "openai/gpt-4o/input", "SkuPriceId": "openai/gpt-4o/input@v1",
    "PricingCategory": "Standard", "ListUnitPrice": "2.5", "ContractedUnitPrice": "2.5", "PricingQuantity": "0.006",
    "PricingUnit": "1M Tokens", "ConsumedQuantity": "6000", "ConsumedUnit": "Tokens",
    "Tags": '"{""tenant"":""acme""}"', "x_Tenant": "acme", "x_PricingStatus": "priced",
}


def csv_text(rows, header=HEADER):
    lines = [",".join(header)]
    for r in rows:
        lines.append(",".join(r.get(c, "") for c in header))
    return "\n".join(lines) + "\n"


def rules(problems):
    return {(p.rule, p.column) for p in problems}


def test_a_conforming_file_passes():
    assert focus_check.check(csv_text([GOOD, dict(GOOD, BilledCost="-0.5", EffectiveCost="-0.5", ListCost="1e-3",
                                                  ContractedCost="0.001", ListUnitPrice="0.1666666666666666666",
                                                  ContractedUnitPrice="0.1666666666666666666")])) == []


def test_each_problem_of_a_broken_file_is_reported():
    header = [c for c in HEADER if c != "InvoiceIssuerName"] + ["Surprise"]
    header.insert(header.index("x_Tenant") + 1, "ServiceName")  # a FOCUS column after x_
    header.remove("ServiceName")
    broken = [
        dict(GOOD, BillingAccountId='""'),                       # "" in a non-nullable column
        dict(GOOD, ChargePeriodStart="2026-10-06 10:00:00"),     # not ISO 8601 UTC
        dict(GOOD, ChargePeriodEnd="2026-10-06T10:00:00+02:00"),
        dict(GOOD, ProviderName=""),                              # null in a non-nullable column
        dict(GOOD, ResourceName="NULL", ChargeDescription="unknown"),  # placeholders
        dict(GOOD, BilledCost='"1,5"', EffectiveCost="$1", ListCost="+1"),  # not numbers
        dict(GOOD, ChargeCategory="usage", ChargeClass="correction", ChargeFrequency="Daily",
             PricingCategory="On-Demand", ServiceCategory="LLM"),
        dict(GOOD, ServiceSubcategory="Observability"),           # wrong parent
        dict(GOOD, Tags='"{""a"":{""b"":1}}"'),                   # nested tags
        dict(GOOD, ListUnitPrice="", SkuPriceId=""),              # null unit price on usage
        dict(GOOD, ChargePeriodStart="2026-11-01T00:00:00Z", ChargePeriodEnd="2026-11-01T01:00:00Z"),  # outside the month
        dict(GOOD, ChargePeriodStart="2026-10-06T11:00:00Z"),     # empty period
        dict(GOOD, ListUnitPrice="3"),                            # 3 x 0.006 != 0.015
        dict(GOOD, ChargePeriodStart="2026-02-30T10:00:00Z"),     # no such day
    ]
    problems = focus_check.check(csv_text(broken, header))
    found = {(p.rule, p.column, p.row) for p in problems}
    expected = {
        ("mandatory-column", "InvoiceIssuerName", 0),
        ("custom-prefix", "Surprise", 0),
        ("column-order", "ServiceName", 0),
        ("empty-string", "BillingAccountId", 1),
        ("datetime", "ChargePeriodStart", 2),
        ("datetime", "ChargePeriodEnd", 3),
        ("not-null", "ProviderName", 4),
        ("placeholder", "ResourceName", 5),
        ("placeholder", "ChargeDescription", 5),
        ("decimal", "BilledCost", 6),
        ("decimal", "EffectiveCost", 6),
        ("decimal", "ListCost", 6),
        ("allowed-values", "ChargeCategory", 7),
        ("allowed-values", "ChargeClass", 7),
        ("allowed-values", "ChargeFrequency", 7),
        ("allowed-values", "PricingCategory", 7),
        ("allowed-values", "ServiceCategory", 7),
        ("subcategory-parent", "ServiceSubcategory", 8),
        ("json", "Tags", 9),
        ("not-null-for-usage", "ListUnitPrice", 10),
        ("not-null-for-usage", "SkuPriceId", 10),
        ("period", "ChargePeriodStart", 11),
        ("period", "ChargePeriodEnd", 12),
        ("unit-price", "ListUnitPrice", 13),
        ("datetime", "ChargePeriodStart", 14),
    }
    assert expected - found == set(), "\n".join(map(str, problems))
    # Every row is broken somewhere, and nothing is reported twice.
    assert {p.row for p in problems} >= set(range(15))
    assert len(found) == len(problems)


def test_declared_departures_are_tolerated_only_where_declared():
    unpriced = dict(GOOD, x_PricingStatus="unpriced", BilledCost="0", EffectiveCost="0", ListCost="0",
                    ContractedCost="0", ListUnitPrice="", ContractedUnitPrice="", SkuPriceId="", PricingCategory="Other")
    tolerate = {"x_PricingStatus": {"unpriced"}}
    assert focus_check.check(csv_text([unpriced]), tolerate) == []
    assert rules(focus_check.check(csv_text([unpriced]))) == {
        ("not-null-for-usage", "ListUnitPrice"), ("not-null-for-usage", "ContractedUnitPrice"),
        ("not-null-for-usage", "SkuPriceId")}
    # The tolerance covers unit prices only, and only on the declared rows.
    assert rules(focus_check.check(csv_text([dict(unpriced, PricingCategory="")]), tolerate)) == {
        ("not-null-for-usage", "PricingCategory")}
    assert rules(focus_check.check(csv_text([dict(GOOD, ListUnitPrice="")]), tolerate)) == {
        ("not-null-for-usage", "ListUnitPrice")}


def test_the_real_focus_1_0_sample_shows_its_departures():
    # An AWS/Microsoft/Oracle FOCUS 1.0 sample: "NULL" for nulls and
    # "YYYY-MM-DD HH:mm:ss" date/times are what this checker must catch.
    sample = Path("/work/shared/data/focus/focus_sample_1.0.csv")
    if not sample.exists():
        import pytest
        pytest.skip("no sample")
    problems = focus_check.check(sample.read_text(encoding="utf-8"))
    found = {p.rule for p in problems}
    assert {"placeholder", "datetime"} <= found
    assert not any(p.rule == "mandatory-column" for p in problems)


def test_quoted_cells_parse():
    records = focus_check.parse_csv('a,"b,c","d""e",,""\r\n1,2,3,4,5\n')
    assert records[0] == [("a", False), ("b,c", True), ('d"e', True), ("", False), ("", True)]
    assert records[1][0] == ("1", False)
