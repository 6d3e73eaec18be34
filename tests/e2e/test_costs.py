"""LLM and telemetry cost end to end: spans in every convention sent by the
Python OpenTelemetry SDK, priced from the catalog (and an override file),
checked through the API, the chargeback CSV, the FOCUS export and /metrics,
on both stores. Expected dollar amounts are worked out by hand below.

Times are the test's own: the LLM calls happen in the hour before the
current one (closed at once: `close_after_secs = 0`), telemetry is billed
in the hour it is received (the current, provisional hour)."""

import csv
import io
import json
import sys
import time
from decimal import Decimal

import pytest
from conftest import api_keys_toml, ROOT, Server, api_request, clickhouse_url_for_tests, iso
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

sys.path.insert(0, str(ROOT / "tests/support"))
import focus_check  # noqa: E402

ADMIN = "admin-key-0123456789abcdef"
ACME = "acme-key-0123456789abcdef"
HOUR = 3_600_000_000_000
NOW = time.time_ns()
CURRENT_HOUR = NOW - NOW % HOUR
T = CURRENT_HOUR - HOUR  # the LLM calls' hour: closed
DAY = 24 * HOUR


def month_of(ns):
    return time.strftime("%Y-%m", time.gmtime(ns // 1_000_000_000))


# Every cost of the test lies in [T, T + 3 h).
WINDOW = f"from={iso(T)}&to={iso(T + 3 * HOUR)}"
LLM_MONTH = month_of(T)

OVERRIDES = """
version = "test-overrides-{n}"
currency = "USD"
[[model]]
provider = "acme"
name = "acme-internal"
  [[model.prices]]
  effective = "2026-01-01"
  input = "{input}"
  output = "{output}"
"""

# (tenant, span name, attributes, expected cost or None for unpriced)
SPANS = [
    # OTel GenAI: response model wins; 4,000 of 10,000 input tokens cached.
    # gpt-4o since 2024-10-01: 6,000 x 2.50/M + 4,000 x 1.25/M + 500 x 10/M
    # = 0.015 + 0.005 + 0.005 = 0.025
    ("acme", "chat gpt-4o", {
        "gen_ai.provider.name": "openai", "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.usage.input_tokens": 10000, "gen_ai.usage.cache_read.input_tokens": 4000,
        "gen_ai.usage.output_tokens": 500}, "0.025"),
    # Deprecated names: claude-3-5-sonnet 1,000 x 3/M + 200 x 15/M = 0.006
    ("acme", "chat claude", {
        "gen_ai.system": "anthropic", "gen_ai.request.model": "claude-3-5-sonnet-20241022",
        "gen_ai.usage.prompt_tokens": 1000, "gen_ai.usage.completion_tokens": 200}, "0.006"),
    # OpenLLMetry: gpt-4o-mini 2,000 x 0.15/M + 1,000 x 0.60/M = 0.0003 + 0.0006 = 0.0009
    ("acme", "openai.chat", {
        "llm.request.type": "chat", "gen_ai.request.model": "gpt-4o-mini",
        "llm.usage.prompt_tokens": 2000, "llm.usage.completion_tokens": 1000,
        "llm.usage.total_tokens": 3000}, "0.0009"),
    # OpenInference: gpt-4o 1,000 x 2.50/M + 100 x 10/M = 0.0025 + 0.001 = 0.0035
    ("acme", "ChatCompletion", {
        "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o", "llm.provider": "openai",
        "llm.token_count.prompt": 1000, "llm.token_count.completion": 100}, "0.0035"),
    # A cost carried by the span fills in for a model no price covers
    # (cost.provided_cost = "when_unpriced"): 0.5 as given.
    ("acme", "llm call", {"cost.model": "house-model-2", "cost.tokens.prompt": 10, "cost.tokens.completion": 5,
                          "cost.usd": "0.5"}, "0.5"),
    # A span's cost for a model the catalog prices loses to the catalog:
    # gpt-4o 1,000 x 2.50/M + 100 x 10/M = 0.0035 (not the span's 9.99).
    ("acme", "chat", {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
                      "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 100, "gen_ai.usage.cost": "9.99"},
     "0.0035"),
    # Bedrock id with region prefix, vendor, date and version:
    # claude-3-5-sonnet 1,000 x 3/M + 1,000 x 15/M = 0.018
    ("acme", "InvokeModel", {"gen_ai.system": "aws.bedrock",
                             "gen_ai.request.model": "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
                             "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 1000}, "0.018"),
    # Unknown model: unpriced, tokens kept, never $0 silently.
    ("globex", "chat", {"gen_ai.request.model": "mystery-llm-7b", "gen_ai.usage.input_tokens": 42,
                        "gen_ai.usage.output_tokens": 7}, None),
    # Only in the override file: 500,000 x 1.00/M + 250,000 x 2.00/M = 0.5 + 0.5 = 1.0
    ("globex", "chat", {"gen_ai.request.model": "acme-internal", "gen_ai.usage.input_tokens": 500000,
                        "gen_ai.usage.output_tokens": 250000}, "1.0"),
]
ACME_LLM = (Decimal("0.025") + Decimal("0.006") + Decimal("0.0009") + Decimal("0.0035") + Decimal("0.5") + Decimal("0.0035")
            + Decimal("0.018"))
# An agent span (invoke_agent) rolling up its two child chat calls: the
# children are billed, the agent's own usage is not added on top.
# Children: 2 x gpt-4o-mini (1,000 x 0.15/M + 500 x 0.60/M) = 2 x 0.00045 = 0.0009.
AGENT = {"gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
         "gen_ai.usage.input_tokens": 2000, "gen_ai.usage.output_tokens": 1000}
CHILD = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
         "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 500}
INITECH_LLM = Decimal("0.0009")
# A call whose own time is 30 days old: booked invalid at its receive hour,
# never shifted into the window and priced (1,000 x 2.50/M + 100 x 10/M = 0.0035 it is not).
STALE = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
         "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 100}


@pytest.fixture(params=["duckdb", "clickhouse"])
def cost_server(request, tmp_path):
    overrides = tmp_path / "prices.toml"
    overrides.write_text(OVERRIDES.format(n=1, input="1.00", output="2.00"))
    config = tmp_path / "costplane.toml"
    config.write_text(
        f"""
[cost]
price_overrides = "{overrides}"
ingest_per_gib = "0.50"
queries_per_1000 = "2"
[ledger]
close_after_secs = 0
refresh_secs = 1
[metrics]
cache_ttl = "1s"
{api_keys_toml(ADMIN, acme=ACME)}"""
    )
    front, url = None, None
    if request.param == "clickhouse":
        url, front = clickhouse_url_for_tests(tmp_path)
    server = Server(tmp_path, extra_args=["--config", str(config)], store=request.param, clickhouse_url=url)
    server.overrides = overrides
    yield server
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()
    if front:
        front.stop()


def focus_export(server, month, key=ADMIN):
    """The month's FOCUS export, checked for FOCUS 1.2 conformance (unit
    prices may be null only on rows no catalog price covered, the export's
    declared departure), as dicts."""
    status, headers, body = api(server, f"/api/costs/export?month={month}&format=focus", key=key)
    assert status == 200, body
    text = body.decode()
    problems = focus_check.check(text, tolerate={"x_PricingStatus": {"unpriced", "provided", "invalid"}})
    assert problems == [], "\n".join(map(str, problems))
    return list(csv.DictReader(io.StringIO(text)))


def api(server, path, key=ADMIN, method="GET", body=None):
    return api_request(server, path, key, method, body)


def send_spans(server):
    for tenant in ("acme", "globex"):
        provider = TracerProvider(resource=Resource.create(
            {"service.name": "assistant", "service.namespace": "ai", "tenant.id": tenant}))
        provider.add_span_processor(SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=f"http://127.0.0.1:{server.http_port}/v1/traces")))
        tracer = provider.get_tracer("costs")
        for i, (t, name, attrs, _) in enumerate(SPANS):
            if t != tenant:
                continue
            span = tracer.start_span(name, start_time=T + i * 1_000_000, attributes=attrs)
            span.end(end_time=T + i * 1_000_000 + 500_000)
        provider.shutdown()
    provider = TracerProvider(resource=Resource.create(
        {"service.name": "agents", "service.namespace": "ai", "tenant.id": "initech"}))
    provider.add_span_processor(SimpleSpanProcessor(
        OTLPSpanExporter(endpoint=f"http://127.0.0.1:{server.http_port}/v1/traces")))
    tracer = provider.get_tracer("costs")
    agent = tracer.start_span("invoke_agent planner", start_time=T + 100_000_000, attributes=AGENT)
    ctx = trace.set_span_in_context(agent)
    for i in range(2):
        child = tracer.start_span("chat gpt-4o-mini", context=ctx, start_time=T + 101_000_000 + i, attributes=CHILD)
        child.end(end_time=T + 102_000_000 + i)
    agent.end(end_time=T + 103_000_000)
    sent = time.time_ns()
    stale = tracer.start_span("chat", start_time=NOW - 30 * DAY, attributes=STALE)
    stale.end(end_time=NOW - 30 * DAY + 1000)
    provider.shutdown()
    received = time.time_ns()
    # The stale call is booked at the hour the server received it: one of
    # these (two only when the send crossed an hour boundary).
    return {iso(sent - sent % HOUR), iso(received - received % HOUR)}


def send_logs_and_metrics(server):
    """acme: 3 log records; globex: 2 metric data points (one counter, two
    attribute sets)."""
    base = f"http://127.0.0.1:{server.http_port}"
    logs = LoggerProvider(resource=Resource.create({"service.name": "worker", "service.namespace": "jobs", "tenant.id": "acme"}))
    logs.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{base}/v1/logs")))
    logger = logs.get_logger("costs")
    for i in range(3):
        # Backdated by a year: platform usage is billed when received.
        logger.emit(timestamp=NOW - 365 * DAY + i, severity_number=SeverityNumber.INFO, body=f"job {i} done")
    logs.shutdown()
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{base}/v1/metrics"), export_interval_millis=3_600_000)
    meters = MeterProvider(resource=Resource.create({"service.name": "billing", "tenant.id": "globex"}), metric_readers=[reader])
    counter = meters.get_meter("costs").create_counter("invoices")
    counter.add(1, {"kind": "a"})
    counter.add(2, {"kind": "b"})
    meters.shutdown()


def costs(server, query, key=ADMIN):
    status, _, body = api(server, f"/api/v1/costs?{query}", key)
    assert status == 200, body
    return json.loads(body)


def wait_for_ledger(server):
    deadline = time.time() + 30
    while time.time() < deadline:
        # Every call priced, and the stale one (at $0) booked too.
        if (Decimal(costs(server, f"{WINDOW}&source=llm")["total"]) >= ACME_LLM + 1 + INITECH_LLM
                and costs(server, f"{WINDOW}&pricing_status=invalid")["rows"]):
            return
        time.sleep(0.1)
    raise AssertionError(server.log())


def metrics_costs(server, exclude_service="costplane-api"):
    """Sum of the /metrics cost series (a scrape of the month to date),
    without the series of `exclude_service`."""
    status, _, body = api(server, "/metrics")
    assert status == 200
    total = Decimal(0)
    for line in body.decode().splitlines():
        if line.startswith("costplane_cost_month_to_date_usd{") and f'service="{exclude_service}"' not in line:
            total += Decimal(line.rsplit(" ", 1)[1])
    return total


def test_llm_and_telemetry_costs_through_api_and_exports(cost_server):
    server = cost_server
    stale_hours = send_spans(server)
    wait_for_ledger(server)
    window = WINDOW

    # API: LLM spend per tenant, exact.
    by_tenant = costs(server, f"{window}&source=llm&group_by=tenant")
    assert {r["tenant"]: Decimal(r["cost"]) for r in by_tenant["rows"]} == {
        "acme": ACME_LLM, "globex": Decimal("1"), "initech": INITECH_LLM}
    by_model = costs(server, f"{window}&source=llm&tenant=acme&group_by=model")
    got = {r["model"]: Decimal(r["cost"]) for r in by_model["rows"]}
    assert got["gpt-4o-2024-08-06"] == Decimal("0.025")  # the response model
    assert got["gpt-4o"] == Decimal("0.0035") + Decimal("0.0035")
    assert got["house-model-2"] == Decimal("0.5")
    # Both spellings of Claude 3.5 Sonnet (the Anthropic snapshot name and
    # the Bedrock id) are one model, its catalog entry's name: 0.006 + 0.018.
    assert got["claude-3-5-sonnet"] == Decimal("0.006") + Decimal("0.018")
    assert "us.anthropic.claude-3-5-sonnet-20241022-v2:0" not in got and "claude-3-5-sonnet-20241022" not in got, got
    hourly = costs(server, f"{window}&source=llm&step=hour&group_by=charge_status")
    # The LLM calls' hour is closed; the stale call's receive hour is open.
    hours = {(r["period_start"], r["charge_status"]) for r in hourly["rows"]}
    assert any(hours == {(iso(T), "closed"), (h, "provisional")} for h in stale_hours), (stale_hours, hourly)
    assert Decimal(hourly["total"]) == ACME_LLM + 1 + INITECH_LLM

    # The 30-day-old call: invalid, at its receive hour, its tokens kept, $0.
    invalid = costs(server, f"{window}&pricing_status=invalid&group_by=tenant,usage_type,unit")
    assert {(r["tenant"], r["usage_type"], r["quantity"], r["cost"]) for r in invalid["rows"]} == {
        ("initech", "input", "1000", "0"), ("initech", "output", "100", "0")}, invalid

    # Unpriced usage is listed with its tokens.
    status, _, body = api(server, f"/api/v1/costs/unpriced?{window}")
    assert status == 200
    unpriced = json.loads(body)["rows"]
    assert {(r["model"], r["token_type"], r["tokens"]) for r in unpriced} == {
        ("mystery-llm-7b", "input", "42"), ("mystery-llm-7b", "output", "7")}

    # Logs (backdated a year) and metrics land in the hour they are received.
    send_logs_and_metrics(server)
    this_month = month_of(time.time_ns())
    deadline = time.time() + 20
    while True:
        status, _, body = api(server, f"/api/costs/export?month={this_month}")
        lines = [r for r in csv.DictReader(io.StringIO(body.decode())) if r["kind"] == "telemetry" and r["signal"] != "queries"]
        now_rows = {(r["tenant"], r["signal"]): r["items"] for r in lines}
        # Usage is counted at once; its cost once the closer has refreshed the open hour.
        priced = {(r["tenant"], r["signal"]) for r in lines if Decimal(r["cost"]) > 0}
        if {("globex", "metrics"), ("acme", "logs")} <= priced or time.time() > deadline:
            break
        time.sleep(0.2)
    assert now_rows == {("acme", "traces"): "7", ("globex", "traces"): "2", ("initech", "traces"): "4",
                        ("acme", "logs"): "3", ("globex", "metrics"): "2"}, now_rows

    # Chargeback CSV: telemetry items per tenant equal what was sent; LLM cost per model.
    status, headers, body = api(server, f"/api/costs/export?month={this_month}")
    assert status == 200
    assert f'filename="costplane-chargeback-{this_month}.csv"' in headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    telemetry = {(r["tenant"], r["signal"]): r for r in rows if r["kind"] == "telemetry"}
    llm_acme = sum(Decimal(r["cost"]) for r in rows if r["kind"] == "llm" and r["tenant"] == "acme")
    if LLM_MONTH == this_month:
        assert llm_acme == ACME_LLM

    # FOCUS export: the ledger rows, same money to the last digit.
    focus = focus_export(server, this_month)
    assert list(focus[0].keys())[:6] == ["ChargePeriodStart", "ChargePeriodEnd", "BilledCost", "EffectiveCost", "ListCost", "ContractedCost"]
    llm_focus = focus_export(server, LLM_MONTH)
    assert sum(Decimal(r["BilledCost"]) for r in llm_focus if r["x_Source"] == "llm" and r["x_Tenant"] == "acme") == ACME_LLM
    statuses = {r["x_PricingStatus"] for r in llm_focus if r["x_Source"] == "llm"}
    assert {"priced", "provided", "unpriced"} <= statuses
    assert all(r["ChargeCategory"] == "Usage" and r["BillingCurrency"] == "USD" for r in focus)
    assert all(r["BillingPeriodStart"] == f"{this_month}-01T00:00:00Z" and r["BillingAccountId"] == "costplane"
               and r["SubAccountId"] == r["x_Tenant"] for r in focus)
    assert {r["x_ChargeStatus"] for r in focus} <= {"closed", "provisional"}
    assert all(r["x_ChargeStatus"] == "provisional" for r in focus if r["ChargePeriodStart"] in stale_hours)
    stale = [r for r in focus if r["x_PricingStatus"] == "invalid"]
    assert stale and all(r["BilledCost"] == "0" and "outside the accepted window" in json.loads(r["Tags"])["pricing_reason"]
                         for r in stale), stale
    unpriced = [r for r in llm_focus if r["x_PricingStatus"] == "unpriced"]
    assert unpriced and all(r["BilledCost"] == "0" and r["ListUnitPrice"] == "" and r["x_Model"] == "mystery-llm-7b"
                            for r in unpriced)
    assert {r["ServiceCategory"] for r in focus} <= {"AI and Machine Learning", "Management and Governance"}
    assert {r["x_PriceVersion"] for r in llm_focus if r["x_Model"] == "acme-internal"} == {"2026-12-07+test-overrides-1"}
    # The export names Claude 3.5 Sonnet once; the spans' own names are in the rows' tags.
    sonnet = [r for r in llm_focus if r["x_Model"] == "claude-3-5-sonnet"]
    assert sonnet and all(r["SkuId"].endswith(f"/claude-3-5-sonnet/{r['x_UsageType']}") for r in sonnet), sonnet
    assert {json.loads(r["Tags"]).get("models_reported") for r in sonnet} == {
        "claude-3-5-sonnet-20241022", "us.anthropic.claude-3-5-sonnet-20241022-v2:0"}, sonnet
    # Telemetry ingest at $0.50 per GiB of encoded OTLP bytes: each ledger row
    # (an hour of a (tenant, project, service, signal)) is rounded once to 12
    # places, half-even, and the chargeback's cost is the sum of those rows.
    for tenant in ("acme", "globex"):
        ingest = [r for r in focus if r["x_Source"] == "telemetry" and r["x_Tenant"] == tenant and r["x_UsageType"] == "traces"]
        assert sum(int(Decimal(r["ConsumedQuantity"])) for r in ingest) == int(telemetry[(tenant, "traces")]["bytes"])
        expected = sum((Decimal(r["ConsumedQuantity"]) / Decimal(1073741824) * Decimal("0.50")).quantize(Decimal("1e-12"))
                       for r in ingest)
        assert expected > 0
        assert sum(Decimal(r["BilledCost"]) for r in ingest) == expected
        assert Decimal(telemetry[(tenant, "traces")]["cost"]) == expected

    # The same figure in every surface, to the last digit: the month's costs
    # without API queries (each API call adds one, so they move between reads).
    # The ledger is live (the open hour is refreshed), so read until the
    # four surfaces have caught up with the same revision.
    month_window = f"from={this_month}-01&to={month_of(time.time_ns() + 40 * DAY)}-01"
    for _ in range(20):
        api_total = sum(Decimal(r["cost"]) for r in costs(server, f"{month_window}&group_by=usage_type")["rows"]
                        if r["usage_type"] != "queries")
        focus = focus_export(server, this_month)
        focus_total = sum(Decimal(r["BilledCost"]) for r in focus if r["x_UsageType"] != "queries")
        status, _, body = api(server, f"/api/costs/export?month={this_month}")
        csv_total = sum(Decimal(r["cost"]) for r in csv.DictReader(io.StringIO(body.decode())) if r["signal"] != "queries")
        metrics_total = metrics_costs(server)
        if api_total == focus_total == csv_total == metrics_total:
            break
        time.sleep(1.1)
    assert api_total == focus_total == csv_total == metrics_total, (api_total, focus_total, csv_total, metrics_total)
    assert api_total > ACME_LLM

    # /metrics: health series (cost series cover the current month).
    status, headers, body = api(server, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert "costplane_ingest_accepted_rows_total 18\n" in body.decode()  # 7 + 2 + 4 spans, 3 logs, 2 points
    assert "costplane_store_up 1\n" in body.decode()

    # Quantities are per unit: tokens and bytes never add up into one number.
    overall = costs(server, window)
    assert overall["rows"][0]["quantity"] is None and overall["rows"][0]["unit"].startswith("mixed"), overall
    by_unit = costs(server, f"{window}&group_by=unit")
    assert all(r["quantity"] is not None and r["unit"] == r["unit"].strip() for r in by_unit["rows"]), by_unit
    assert len({r["unit"] for r in by_unit["rows"]}) >= 2, by_unit
    # group_by usage_type and signal are accepted; providers match by id, any case.
    signals = costs(server, f"{window}&source=telemetry&group_by=signal")
    assert {"traces", "logs"} <= {r["signal"] for r in signals["rows"]}, signals
    assert costs(server, f"{window}&group_by=usage_type")["rows"]
    by_id, by_name = costs(server, f"{window}&provider=openai"), costs(server, f"{window}&provider=OpenAI")
    assert Decimal(by_id["total"]) > 0 and by_id["total"] == by_name["total"], (by_id, by_name)

    # Bad input: 400s with a message.
    for path in ["/api/costs/export?month=2026-13", "/api/costs/export?month=oct", "/api/costs/export",
                 "/api/v1/costs?step=week", "/api/v1/costs?color=red", "/api/costs/export?month=2026-10&format=xml"]:
        status, _, body = api(server, path)
        assert status == 400, (path, body)
        assert json.loads(body)["error"], path

    # Tenant keys see only their tenant; no key is 401; tenant keys cannot run SQL.
    mine = costs(server, f"{window}&group_by=tenant", key=ACME)
    assert {r["tenant"] for r in mine["rows"]} == {"acme"}
    assert {r["x_Tenant"] for r in focus_export(server, this_month, key=ACME)} == {"acme"}
    status, _, body = api(server, f"/api/costs/export?month={this_month}", key=ACME)
    assert {r["tenant"] for r in csv.DictReader(io.StringIO(body.decode()))} == {"acme"}
    # Those three acme queries are metered for acme: 3 / 1,000 x $2 = 0.006.
    deadline = time.time() + 20
    while True:
        status, _, body = api(server, f"/api/costs/export?month={this_month}")
        queries = [r for r in csv.DictReader(io.StringIO(body.decode())) if r["signal"] == "queries" and r["tenant"] == "acme"]
        if [(r["items"], r["cost"]) for r in queries] == [("3", "0.006")] or time.time() > deadline:
            break
        time.sleep(0.2)
    assert [(r["items"], Decimal(r["cost"])) for r in queries] == [("3", Decimal("0.006"))], queries
    assert api(server, f"/api/v1/costs?{window}", key=None)[0] == 401
    assert api(server, f"/api/v1/costs?{window}", key="wrong-key-0123456789")[0] == 401
    assert api(server, "/api/v1/sql", key=ACME, method="POST", body={"sql": "SELECT 1"})[0] == 403

    # Repricing: the override price doubles; globex's acme-internal spend
    # moves from 1.0 to 500,000 x 2/M + 250,000 x 4/M = 2.0, exactly +1.0.
    server.overrides.write_text(OVERRIDES.format(n=2, input="2.00", output="4.00"))
    reprice = {"from": iso(T), "to": iso(T + HOUR)}
    # A dry run says so per source, model and tenant, and writes nothing.
    status, _, body = api(server, "/api/v1/reprice", method="POST", body={**reprice, "dry_run": True})
    assert status == 200, body
    answer = json.loads(body)
    assert answer["dry_run"] and Decimal(answer["change"]) == Decimal("1"), answer
    assert [(c["source"], c["model"], c["tenant"], c["change"]) for c in answer["changes"]] == [
        ("llm", "acme-internal", "globex", "1")], answer
    assert Decimal(costs(server, f"{window}&source=llm&tenant=globex")["total"]) == 1
    # The month was exported above: repricing writes correction rows.
    status, _, body = api(server, "/api/v1/reprice", method="POST", body=reprice)
    assert status == 200, body
    answer = json.loads(body)
    assert Decimal(answer["change"]) == Decimal("1") and answer["corrected_hours"] >= 1, answer
    assert Decimal(answer["cost_after"]) - Decimal(answer["cost_before"]) == Decimal("1")
    by_tenant = costs(server, f"{window}&source=llm&group_by=tenant")
    assert {r["tenant"]: Decimal(r["cost"]) for r in by_tenant["rows"]} == {
        "acme": ACME_LLM, "globex": Decimal("2"), "initech": INITECH_LLM}
    focus = focus_export(server, LLM_MONTH)
    globex = [r for r in focus if r["x_Tenant"] == "globex" and r["x_Source"] == "llm" and r["x_Model"] == "acme-internal"]
    assert sum(Decimal(r["BilledCost"]) for r in globex) == 2
    # The rows as exported stay (1.0), and corrections add the +1.0:
    # input 500,000 x (2 - 1)/M = 0.5, output 250,000 x (4 - 2)/M = 0.5.
    corrections = sorted((r["x_UsageType"], Decimal(r["BilledCost"])) for r in globex if r["ChargeClass"] == "Correction")
    assert corrections == [("input", Decimal("0.5")), ("output", Decimal("0.5"))], globex
    status, _, body = api(server, f"/api/costs/export?month={LLM_MONTH}")
    chargeback = list(csv.DictReader(io.StringIO(body.decode())))
    assert sum(Decimal(r["cost"]) for r in chargeback if r["kind"] == "llm" and r["tenant"] == "globex") == 2
    # Its hour is closed; telemetry received this hour is provisional.
    assert {r["charge_status"] for r in chargeback if r["kind"] == "llm" and r["tenant"] == "globex"} == {"closed"}
    if LLM_MONTH == this_month:
        assert {r["charge_status"] for r in chargeback if r["kind"] == "telemetry"} == {"provisional"}
    assert sum(Decimal(r["cost"]) for r in chargeback if r["kind"] == "llm" and r["tenant"] == "acme") == ACME_LLM
    # In place: the same total, no correction rows.
    status, _, body = api(server, "/api/v1/reprice", method="POST", body={**reprice, "in_place": True})
    assert status == 200 and Decimal(json.loads(body)["change"]) == 0, body
    focus = focus_export(server, LLM_MONTH)
    assert not [r for r in focus if r["ChargeClass"] == "Correction"]
    assert sum(Decimal(r["BilledCost"]) for r in focus if r["x_Tenant"] == "globex" and r["x_Source"] == "llm") == 2
    # A closed month exported twice gives the same bytes (nothing is recomputed at export).
    first = api(server, f"/api/costs/export?month={LLM_MONTH}&format=focus")[2]
    assert first == api(server, f"/api/costs/export?month={LLM_MONTH}&format=focus")[2] or LLM_MONTH == this_month
    assert api(server, "/api/v1/reprice", key=ACME, method="POST", body=reprice)[0] == 403
    # Price reload: admin only.
    # (A JSON body, as every POST under /api/ needs one: browser forms cannot send it.)
    assert api(server, "/api/v1/prices/reload", key=ACME, method="POST", body={})[0] == 403
    status, _, body = api(server, "/api/v1/prices/reload", method="POST", body={})
    assert status == 200 and json.loads(body)["catalog_version"].endswith("test-overrides-2"), body
    assert server.terminate() == 0
