"""The ledger under crashes and concurrency, on both stores: repricing
killed with SIGKILL between writing its rows and switching to them leaves
the old version whole (and the next repricing cleans up after it);
repricing while LLM usage keeps arriving for the hours it reprices loses
and doubles nothing.

Hand-worked dollars: every call is 1,000 input tokens of `acme-internal`
(only in the override file), so a call costs 1,000 x price / 1M:
$1/M -> 0.001, $2/M -> 0.002, $3/M -> 0.003."""

import json
import os
import signal
import threading
import time
from decimal import Decimal

import pytest
from conftest import Server, api_request, clickhouse_url_for_tests, iso, wait_for_value
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

ADMIN = "admin-key-0123456789abcdef"
HOUR = 3_600_000_000_000
NOW = time.time_ns()
CURRENT_HOUR = NOW - NOW % HOUR
HOURS = 30  # closed hours with one call each, 1..30 hours ago

PRICES = """
version = "crash-{n}"
currency = "USD"
[[model]]
provider = "acme"
name = "acme-internal"
  [[model.prices]]
  effective = "2026-01-01"
  input = "{input}"
  output = "1.00"
"""


WINDOW = {"from": iso(CURRENT_HOUR - (HOURS + 1) * HOUR), "to": iso(CURRENT_HOUR)}


def api(server, path, method="GET", body=None):
    status, _, answer = api_request(server, path, ADMIN, method, body, timeout=120)
    return status, answer


def llm_total(server):
    status, body = api(server, f"/api/v1/costs?from={WINDOW['from']}&to={WINDOW['to']}&source=llm&step=hour")
    assert status == 200, body
    answer = json.loads(body)
    return Decimal(answer["total"]), answer["rows"]


def send_calls(server, hours_ago):
    provider = TracerProvider(resource=Resource.create({"service.name": "assistant", "tenant.id": "acme"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{server.http_port}/v1/traces")))
    tracer = provider.get_tracer("ledger")
    for k in hours_ago:
        start = CURRENT_HOUR - k * HOUR + 10 * 60 * 1_000_000_000
        span = tracer.start_span("chat", start_time=start, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "acme", "gen_ai.request.model": "acme-internal",
            "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 0})
        span.end(end_time=start + 1000)
    provider.shutdown()


def wait_for_total(server, expected, seconds=60):
    wait_for_value(lambda: llm_total(server)[0], expected, server, "the LLM total", seconds)


@pytest.fixture(params=["duckdb", "clickhouse"])
def setup(request, tmp_path):
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES.format(n=1, input="1.00"))
    config = tmp_path / "costplane.toml"
    config.write_text(f"""
[cost]
price_overrides = "{prices}"
[ledger]
close_after_secs = 0
refresh_secs = 1
[[api.keys]]
key = "{ADMIN}"
role = "admin"
""")
    args = ["--config", str(config)]
    front = None
    if request.param == "clickhouse":
        url, front = clickhouse_url_for_tests(tmp_path)
        args += ["--store", "clickhouse", "--clickhouse-url", url, "--clickhouse-database", f"crash_{os.getpid()}"]
    servers = []

    def start(pause_ms=None):
        if pause_ms is None:
            os.environ.pop("COSTPLANE_TEST_LEDGER_SWITCH_DELAY_MS", None)
        else:
            os.environ["COSTPLANE_TEST_LEDGER_SWITCH_DELAY_MS"] = str(pause_ms)
        try:
            server = Server(tmp_path, extra_args=args)
        finally:
            os.environ.pop("COSTPLANE_TEST_LEDGER_SWITCH_DELAY_MS", None)
        servers.append(server)
        return server

    yield start, prices, request.param
    for s in servers:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
    if front:
        front.stop()


def test_repricing_killed_before_its_switch_leaves_the_old_version_whole(setup):
    start, prices, store = setup
    server = start(pause_ms=4000)
    send_calls(server, range(1, HOURS + 1))
    # 30 calls x 1,000 x $1/M = 0.03, one closed hour each.
    wait_for_total(server, Decimal("0.03"))
    _, rows = llm_total(server)
    assert len(rows) == HOURS and all(Decimal(r["cost"]) == Decimal("0.001") for r in rows), rows

    # The price triples; the repricing writes its rows, then pauses before
    # its switch: killed there.
    prices.write_text(PRICES.format(n=2, input="3.00"))
    pauses = server.log().count("pausing before the ledger switch")
    threading.Thread(target=api, args=(server, "/api/v1/reprice", "POST", WINDOW), daemon=True).start()
    deadline = time.time() + 60
    while server.log().count("pausing before the ledger switch") == pauses:
        assert time.time() < deadline, server.log()[-3000:]
        time.sleep(0.02)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()

    server = start()
    total, rows = llm_total(server)
    assert total == Decimal("0.03"), (total, rows)  # the old version, whole
    assert len(rows) == HOURS and all(Decimal(r["cost"]) == Decimal("0.001") for r in rows), rows
    if store == "clickhouse":
        # The killed repricing's rows are there, unseen (no revision names them).
        status, body = api(server, "/api/v1/sql", "POST", {"sql": "SELECT count() FROM costplane_ledger WHERE x_Source = 'llm'"})
        assert status == 200, body
        assert json.loads(body)["rows"][0][0] == 2 * HOURS, body

    # Repricing again completes: 30 x 1,000 x $3/M = 0.09, and no orphan is left.
    status, body = api(server, "/api/v1/reprice", "POST", WINDOW)
    assert status == 200, body
    answer = json.loads(body)
    assert (Decimal(answer["cost_before"]), Decimal(answer["cost_after"])) == (Decimal("0.03"), Decimal("0.09")), answer
    assert llm_total(server)[0] == Decimal("0.09")
    status, body = api(server, "/api/v1/sql", "POST", {"sql": "SELECT count(*) FROM costplane_ledger WHERE x_Source = 'llm'"})
    assert json.loads(body)["rows"][0][0] == HOURS, body
    assert server.terminate() == 0


def test_repricing_while_usage_arrives_loses_and_doubles_nothing(setup):
    start, prices, _ = setup
    server = start()
    send_calls(server, range(1, HOURS + 1))
    wait_for_total(server, Decimal("0.03"))
    # $2/M from now on; 40 more calls arrive for the hours being repriced.
    prices.write_text(PRICES.format(n=3, input="2.00"))
    sender = threading.Thread(target=send_calls, args=(server, [1 + i % HOURS for i in range(40)]))
    sender.start()
    answers = []
    for _ in range(3):
        status, body = api(server, "/api/v1/reprice", "POST", WINDOW)
        assert status == 200, body
        answers.append(json.loads(body))
    sender.join()
    # Every call once, at the new price: (30 + 40) x 1,000 x $2/M = 0.14.
    wait_for_total(server, Decimal("0.14"))
    _, rows = llm_total(server)
    assert sum(Decimal(r["cost"]) for r in rows) == Decimal("0.14")
    assert {r["period_start"] for r in rows} == {iso(CURRENT_HOUR - k * HOUR) for k in range(1, HOURS + 1)}
    assert server.terminate() == 0


def test_sighup_reloads_prices_for_the_open_hour_and_new_usage(setup):
    start, prices, _ = setup
    server = start()
    send_calls(server, [0])  # this hour: open
    window = f"from={iso(CURRENT_HOUR)}&to={iso(CURRENT_HOUR + HOUR)}&source=llm"

    def total():
        status, body = api(server, f"/api/v1/costs?{window}")
        return Decimal(json.loads(body)["total"])

    deadline = time.time() + 30
    while total() != Decimal("0.001"):  # 1,000 x $1/M
        assert time.time() < deadline, server.log()[-2000:]
        time.sleep(0.2)
    prices.write_text(PRICES.format(n=5, input="5.00"))
    server.proc.send_signal(signal.SIGHUP)
    send_calls(server, [0])
    # Both calls of the open hour at the reloaded price: 2 x 1,000 x $5/M = 0.01.
    deadline = time.time() + 30
    while total() != Decimal("0.01"):
        assert time.time() < deadline, (total(), server.log()[-2000:])
        time.sleep(0.2)
    assert "prices reloaded" in server.log()
    assert server.terminate() == 0
