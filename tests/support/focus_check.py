"""A FOCUS 1.2 conformance check for CSV files, written from the column
rules of the FOCUS specification (FinOps-Open-Cost-and-Usage-Spec/FOCUS_Spec,
tag v1.2: specification/columns/*.md and specification/attributes/*.md).

What it checks:
- the 21 mandatory columns are present; every other column is a FOCUS 1.2
  column or is prefixed `x_`; FOCUS columns come before custom ones; no
  column appears twice (attributes/column_handling.md);
- nulls: an empty cell is a null; a quoted empty cell (`""`), a blank or a
  placeholder ("NULL", "N/A", "Not Applicable", "unknown", ...) is not
  allowed anywhere (attributes/null_handling.md); non-nullable columns
  always have a value; the conditional rules of PricingCategory,
  ListUnitPrice, ContractedUnitPrice, SkuId, SkuPriceId, PricingQuantity,
  PricingUnit, ConsumedQuantity, ConsumedUnit, ResourceType and
  SubAccountName;
- types: Decimal (numeric format: plain or E-notation, no "+", commas or
  currency symbols), Date/Time (UTC `YYYY-MM-DDTHH:mm:ssZ`), Key-Value JSON
  (a flat object of strings, numbers, booleans and nulls), currency codes;
- allowed values of ChargeCategory, ChargeClass, ChargeFrequency,
  PricingCategory, ServiceCategory, ServiceSubcategory (and its parent),
  CommitmentDiscountCategory/Status, CapacityReservationStatus;
- periods: starts before ends, the charge period inside the billing period;
- unit prices: ListUnitPrice x PricingQuantity = ListCost and
  ContractedUnitPrice x PricingQuantity = ContractedCost (rounding aside);
  unit prices are not negative.

Use: `check(text, tolerate=...)` returns a list of `Problem`s (empty when
the file conforms); `python focus_check.py FILE [--tolerate-unit-prices-when
x_PricingStatus=unpriced,provided]` prints them and exits 1 when there are
any. Python 3.9+, standard library only.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

DECIMAL, DATETIME, STRING, JSON, CURRENCY = "Decimal", "DateTime", "String", "JSON", "Currency"

# FOCUS 1.2 columns: name -> (type, nullable, mandatory).
COLUMNS = {
    "AvailabilityZone": (STRING, True, False),
    "BilledCost": (DECIMAL, False, True),
    "BillingAccountId": (STRING, False, True),
    "BillingAccountName": (STRING, True, True),
    "BillingAccountType": (STRING, True, False),
    "BillingCurrency": (CURRENCY, False, True),
    "BillingPeriodEnd": (DATETIME, False, True),
    "BillingPeriodStart": (DATETIME, False, True),
    "CapacityReservationId": (STRING, True, False),
    "CapacityReservationStatus": (STRING, True, False),
    "ChargeCategory": (STRING, False, True),
    "ChargeClass": (STRING, True, True),
    "ChargeDescription": (STRING, True, True),
    "ChargeFrequency": (STRING, False, False),
    "ChargePeriodEnd": (DATETIME, False, True),
    "ChargePeriodStart": (DATETIME, False, True),
    "CommitmentDiscountCategory": (STRING, True, False),
    "CommitmentDiscountId": (STRING, True, False),
    "CommitmentDiscountName": (STRING, True, False),
    "CommitmentDiscountQuantity": (DECIMAL, True, False),
    "CommitmentDiscountStatus": (STRING, True, False),
    "CommitmentDiscountType": (STRING, True, False),
    "CommitmentDiscountUnit": (STRING, True, False),
    "ConsumedQuantity": (DECIMAL, True, False),
    "ConsumedUnit": (STRING, True, False),
    "ContractedCost": (DECIMAL, False, True),
    "ContractedUnitPrice": (DECIMAL, True, False),
    "EffectiveCost": (DECIMAL, False, True),
    "InvoiceId": (STRING, True, False),
    "InvoiceIssuerName": (STRING, False, True),
    "ListCost": (DECIMAL, False, True),
    "ListUnitPrice": (DECIMAL, True, False),
    "PricingCategory": (STRING, True, False),
    "PricingCurrency": (CURRENCY, True, False),
    "PricingCurrencyContractedUnitPrice": (DECIMAL, True, False),
    "PricingCurrencyEffectiveCost": (DECIMAL, True, False),
    "PricingCurrencyListUnitPrice": (DECIMAL, True, False),
    "PricingQuantity": (DECIMAL, True, True),
    "PricingUnit": (STRING, True, True),
    "ProviderName": (STRING, False, True),
    "PublisherName": (STRING, False, True),
    "RegionId": (STRING, True, False),
    "RegionName": (STRING, True, False),
    "ResourceId": (STRING, True, False),
    "ResourceName": (STRING, True, False),
    "ResourceType": (STRING, True, False),
    "ServiceCategory": (STRING, False, True),
    "ServiceName": (STRING, False, True),
    "ServiceSubcategory": (STRING, False, False),
    "SkuId": (STRING, True, False),
    "SkuMeter": (STRING, True, False),
    "SkuPriceDetails": (JSON, True, False),
    "SkuPriceId": (STRING, True, False),
    "SubAccountId": (STRING, True, False),
    "SubAccountName": (STRING, True, False),
    "SubAccountType": (STRING, True, False),
    "Tags": (JSON, True, False),
}
MANDATORY = sorted(c for c, (_, _, m) in COLUMNS.items() if m)
assert len(MANDATORY) == 21

SERVICE_CATEGORIES = [
    "AI and Machine Learning", "Analytics", "Business Applications", "Compute", "Databases", "Developer Tools",
    "Multicloud", "Identity", "Integration", "Internet of Things", "Management and Governance", "Media",
    "Migration", "Mobile", "Networking", "Security", "Storage", "Web", "Other",
]
# ServiceSubcategory -> its one parent category (besides "Other (<category>)");
# the names of 1.1 and 1.2 (1.2 renamed a few, e.g. "Quantum" -> "Quantum
# Compute", "Backups" -> "Backup Storage"), so files of either pass.
SUBCATEGORIES = {
    **{s: "AI and Machine Learning" for s in ["Bots", "Generative AI", "Machine Learning", "Natural Language Processing"]},
    **{s: "Analytics" for s in ["Analytics Platform", "Business Intelligence", "Data Processing", "Search", "Streaming Analytics"]},
    **{s: "Compute" for s in ["Containers", "End User Computing", "Quantum", "Quantum Compute", "Serverless Compute",
                              "Virtual Machines"]},
    **{s: "Databases" for s in ["Caching", "Data Warehouse", "Ledger", "NoSQL", "Relational", "Time Series"]},
    **{s: "Integration" for s in ["API Management", "Messaging", "Workflow Automation"]},
    **{s: "Management and Governance" for s in ["Administration", "Architecture", "Compliance", "Cost Management",
                                                "Data Governance", "Disaster Recovery", "Observability", "Support"]},
    **{s: "Networking" for s in ["Content Delivery", "Data Transfer", "Load Balancing", "Network Management",
                                 "Network Security"]},
    **{s: "Security" for s in ["CSPM", "Credentials", "SIEM", "Threat Detection"]},
    **{s: "Storage" for s in ["Backups", "Backup Storage", "Block Storage", "Bulk Transfer", "Disk", "File Storage", "Files",
                              "Object Storage", "Storage Platforms"]},
}
ALLOWED = {
    "ChargeCategory": {"Usage", "Purchase", "Tax", "Credit", "Adjustment"},
    "ChargeClass": {"Correction"},
    "ChargeFrequency": {"One-Time", "Recurring", "Usage-Based"},
    "PricingCategory": {"Standard", "Dynamic", "Committed", "Other"},
    "ServiceCategory": set(SERVICE_CATEGORIES),
    "CommitmentDiscountCategory": {"Spend", "Usage"},
    "CommitmentDiscountStatus": {"Used", "Unused"},
    "CapacityReservationStatus": {"Used", "Unused"},
}
PLACEHOLDERS = {"null", "nil", "none", "n/a", "na", "not applicable", "unknown", "undefined", "-", "?"}
DECIMAL_RE = re.compile(r"^-?(\d+(\.\d+)?|\.\d+)([eE]-?\d+)?$")
DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
# Columns that must not be null on a Usage or Purchase row that is not a
# correction (when the column is in the file), and those for Usage only.
NOT_NULL_FOR_USAGE_OR_PURCHASE = ["PricingCategory", "ListUnitPrice", "ContractedUnitPrice", "SkuId", "SkuPriceId",
                                  "PricingQuantity", "PricingUnit"]
NOT_NULL_FOR_USAGE = ["ConsumedQuantity", "ConsumedUnit"]
UNIT_PRICES = ["ListUnitPrice", "ContractedUnitPrice", "SkuPriceId"]


@dataclass(frozen=True)
class Problem:
    rule: str
    column: str
    row: int  # 0 = the header, 1 = the first data row
    message: str

    def __str__(self):
        where = "header" if self.row == 0 else f"row {self.row}"
        return f"{where}, {self.column}: [{self.rule}] {self.message}"


def parse_csv(text: str) -> list[list[tuple[str, bool]]]:
    """RFC 4180 records as (value, was_quoted) cells, so `""` can be told
    apart from an empty (null) cell."""
    records, record, cell, quoted = [], [], [], False
    i, n, in_quotes = 0, len(text), False
    at_start = True
    while i < n:
        c = text[i]
        if in_quotes:
            if c == '"':
                if i + 1 < n and text[i + 1] == '"':
                    cell.append('"')
                    i += 1
                else:
                    in_quotes = False
            else:
                cell.append(c)
        elif c == '"' and at_start:
            in_quotes, quoted = True, True
        elif c == ",":
            record.append(("".join(cell), quoted))
            cell, quoted, at_start = [], False, True
            i += 1
            continue
        elif c in "\r\n":
            if c == "\r" and i + 1 < n and text[i + 1] == "\n":
                i += 1
            record.append(("".join(cell), quoted))
            records.append(record)
            record, cell, quoted, at_start = [], [], False, True
            i += 1
            continue
        else:
            cell.append(c)
        at_start = False
        i += 1
    if cell or quoted or record:
        record.append(("".join(cell), quoted))
        records.append(record)
    return records


def _datetime(v: str):
    if not DATETIME_RE.match(v):
        return None
    try:
        return datetime.strptime(v, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def _decimal(v: str):
    if not DECIMAL_RE.match(v):
        return None
    try:
        return Decimal(v)
    except InvalidOperation:
        return None


def check(text: str, tolerate: dict[str, set[str]] | None = None) -> list[Problem]:
    """Problems of a FOCUS 1.2 CSV file. `tolerate` maps a custom column to
    values for which ListUnitPrice, ContractedUnitPrice and SkuPriceId may
    be null (a declared departure, e.g. {"x_PricingStatus": {"unpriced"}})."""
    problems: list[Problem] = []

    def bad(rule, column, row, message):
        problems.append(Problem(rule, column, row, message))

    records = parse_csv(text)
    if not records:
        bad("header", "*", 0, "the file is empty")
        return problems
    header = [v for v, _ in records[0]]
    seen = set()
    for name in header:
        if name in seen:
            bad("duplicate-column", name, 0, "the column appears more than once")
        seen.add(name)
        if name not in COLUMNS and not name.startswith("x_"):
            bad("custom-prefix", name, 0, "not a FOCUS 1.2 column and not prefixed x_")
    for name in MANDATORY:
        if name not in seen:
            bad("mandatory-column", name, 0, "a mandatory FOCUS column is missing")
    first_custom = next((i for i, n in enumerate(header) if n.startswith("x_")), len(header))
    for name in header[first_custom:]:
        if name in COLUMNS:
            bad("column-order", name, 0, "a FOCUS column after a custom (x_) column")

    for number, record in enumerate(records[1:], start=1):
        if len(record) == 1 and record[0] == ("", False):
            continue  # a blank line
        if len(record) != len(header):
            bad("row-width", "*", number, f"{len(record)} cells for {len(header)} columns")
            continue
        row = {}
        for name, (value, quoted) in zip(header, record):
            row[name] = None if value == "" and not quoted else value
            if value == "" and quoted:
                bad("empty-string", name, number, 'a quoted empty string ""; a null is an empty cell')
            elif value != "" and value.strip() == "":
                bad("empty-string", name, number, "a blank value")
            elif value.strip().lower() in PLACEHOLDERS:
                bad("placeholder", name, number, f"{value!r} stands in for a null")
        _check_row(row, number, tolerate or {}, bad)
    return problems


def _check_row(row, number, tolerate, bad):
    for name, value in row.items():
        if name not in COLUMNS:
            continue
        kind, nullable, _ = COLUMNS[name]
        if value is None or value == "":
            if not nullable and value is None:
                bad("not-null", name, number, "null in a column that does not allow nulls")
            continue
        if kind == DECIMAL and _decimal(value) is None:
            bad("decimal", name, number, f"{value!r} is not a FOCUS decimal")
        elif kind == DATETIME and _datetime(value) is None:
            bad("datetime", name, number, f"{value!r} is not a UTC date/time YYYY-MM-DDTHH:mm:ssZ")
        elif kind == CURRENCY and not CURRENCY_RE.match(value):
            bad("currency", name, number, f"{value!r} is not an ISO 4217 currency code")
        elif kind == JSON:
            try:
                obj = json.loads(value)
            except ValueError:
                bad("json", name, number, f"{value!r} is not JSON")
                continue
            if not isinstance(obj, dict):
                bad("json", name, number, "not a JSON object")
            elif any(isinstance(v, (dict, list)) for v in obj.values()):
                bad("json", name, number, "a key-value object must be flat (no nested objects or arrays)")
        if name in ALLOWED and value not in ALLOWED[name]:
            bad("allowed-values", name, number, f"{value!r} is not one of {sorted(ALLOWED[name])}")

    sub, cat = row.get("ServiceSubcategory"), row.get("ServiceCategory")
    if sub is not None and cat is not None:
        parent = sub[len("Other ("):-1] if sub.startswith("Other (") and sub.endswith(")") else SUBCATEGORIES.get(sub)
        if parent is None:
            bad("allowed-values", "ServiceSubcategory", number, f"{sub!r} is not a FOCUS service subcategory")
        elif parent != cat:
            bad("subcategory-parent", "ServiceSubcategory", number, f"{sub!r} belongs to {parent!r}, not {cat!r}")

    category, charge_class = row.get("ChargeCategory"), row.get("ChargeClass")
    regular = charge_class != "Correction"
    tolerated = any(row.get(col) in values for col, values in tolerate.items())
    if regular and category in ("Usage", "Purchase"):
        for name in NOT_NULL_FOR_USAGE_OR_PURCHASE:
            if name in row and row[name] is None and not (tolerated and name in UNIT_PRICES):
                bad("not-null-for-usage", name, number, f"null on a {category} row that is not a correction")
    if regular and category == "Usage":
        for name in NOT_NULL_FOR_USAGE:
            if name in row and row[name] is None:
                bad("not-null-for-usage", name, number, "null on a Usage row that is not a correction")
    if category == "Tax" and row.get("PricingCategory") is not None:
        bad("null-for-tax", "PricingCategory", number, "must be null on a Tax row")
    if row.get("ResourceId") is not None and "ResourceType" in row and row["ResourceType"] is None:
        bad("resource-type", "ResourceType", number, "null while ResourceId is not")
    if row.get("SubAccountId") is None and row.get("SubAccountName") is not None:
        bad("sub-account", "SubAccountName", number, "a name without a SubAccountId")
    if row.get("CommitmentDiscountId") is None and row.get("CommitmentDiscountStatus") is not None:
        bad("commitment", "CommitmentDiscountStatus", number, "a status without a CommitmentDiscountId")

    times = {n: _datetime(row.get(n) or "") for n in ("ChargePeriodStart", "ChargePeriodEnd", "BillingPeriodStart", "BillingPeriodEnd")}
    cs, ce, bs, be = (times[n] for n in ("ChargePeriodStart", "ChargePeriodEnd", "BillingPeriodStart", "BillingPeriodEnd"))
    if cs and ce and not cs < ce:
        bad("period", "ChargePeriodEnd", number, "the charge period ends before it starts (end is exclusive)")
    if bs and be and not bs < be:
        bad("period", "BillingPeriodEnd", number, "the billing period ends before it starts (end is exclusive)")
    if cs and ce and bs and be and not (bs <= cs and ce <= be):
        bad("period", "ChargePeriodStart", number, "the charge period is not inside the billing period")

    quantity = _decimal(row.get("PricingQuantity") or "")
    for price_col, cost_col in (("ListUnitPrice", "ListCost"), ("ContractedUnitPrice", "ContractedCost")):
        price, cost = _decimal(row.get(price_col) or ""), _decimal(row.get(cost_col) or "")
        if price is not None and price < 0:
            bad("non-negative", price_col, number, "a unit price is never negative")
        if regular and price is not None and quantity is not None and cost is not None:
            if abs(price * quantity - cost) > Decimal("1e-9") + abs(cost) * Decimal("1e-9"):
                bad("unit-price", price_col, number, f"{price} x PricingQuantity {quantity} is not {cost_col} {cost}")


def main(argv):
    import argparse

    ap = argparse.ArgumentParser(description="FOCUS 1.2 conformance check of a CSV file")
    ap.add_argument("file")
    ap.add_argument("--tolerate-unit-prices-when", default="",
                    help="COLUMN=v1,v2: rows where COLUMN is one of the values may have null unit prices and SkuPriceId")
    args = ap.parse_args(argv)
    tolerate = {}
    if args.tolerate_unit_prices_when:
        col, values = args.tolerate_unit_prices_when.split("=", 1)
        tolerate[col] = set(values.split(","))
    with open(args.file, encoding="utf-8", newline="") as f:
        problems = check(f.read(), tolerate)
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
