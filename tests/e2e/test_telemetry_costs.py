"""What telemetry costs to keep, end to end on both stores: spans with known
names and attributes and logs with known severities sent over OTLP/HTTP by
the Python SDK, then `GET /api/v1/telemetry-costs` (and `costplane
telemetry-costs`) checked against figures worked out by hand below, against
the ledger's telemetry rows, and for tenant scoping and bad parameters.

The rules the figures follow (README, "What telemetry costs to keep"):
- a service's metered bytes (what the ledger prices) are shared over its
  span names / severities by the estimated encoded size of their stored
  rows, largest remainder, so the groups add up to the metered bytes;
- a row's estimate: a span 60 + len(name) + len(status message) + for each
  attribute len(key) + len(value) + 8; a log 40 + len(body) +
  len(severity text) + its attributes likewise;
- a month is 30 days: the test's window is 3 days, so a month is 10 windows;
- storage per month = a month's bytes x stored/ingested bytes of the signal
  x retention days / 30 x the storage rate.

Rates: ingest $1.073741824 per GiB = $0.000000001 per byte (2^30 bytes a
GiB); storage $10.73741824 per GiB-month = $0.00000001 per byte-month.
Retention: traces 6 days, logs 15 days."""

import json
import subprocess
import time
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from pathlib import Path

import pytest
from conftest import api_keys_toml, api_request, costplane_bin, iso, serving
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

ADMIN = "admin-key-0123456789abcdef"
ACME = "acme-key-0123456789abcdef"
HOUR = 3_600_000_000_000
NOW = time.time_ns()
CURRENT_HOUR = NOW - NOW % HOUR
# 47 hours back to 25 ahead: 72 hours, 3 days; a 30-day month is 10 windows.
FROM, TO = CURRENT_HOUR - 47 * HOUR, CURRENT_HOUR + 25 * HOUR
WINDOW = f"from={iso(FROM)}&to={iso(TO)}"
MONTH_FACTOR = Decimal(10)
PER_BYTE = Decimal("0.000000001")  # ingest: 1.073741824 / 2^30
PER_BYTE_MONTH = Decimal("0.00000001")  # storage: 10.73741824 / 2^30
RETENTION = {"traces": 6, "logs": 15}

# (tenant, service, span name, attributes, count). Estimated sizes:
# GET /cart + http.route=/cart: 60 + 9 + (10 + 5 + 8) = 92
# POST /checkout + http.route=/checkout, order.items=3, and an event "retry"
# with attempt=2: 60 + 14 + (10 + 9 + 8) + (11 + 1 + 8) + (13 + 5 + (7 + 1 + 8)) = 155
# GET /search: 60 + 11 = 71
SPANS = [
    ("acme", "shop", "GET /cart", {"http.route": "/cart"}, 3),
    ("acme", "shop", "POST /checkout", {"http.route": "/checkout", "order.items": 3}, 1),
    ("acme", "search", "GET /search", {}, 2),
    ("globex", "shop", "GET /cart", {"http.route": "/cart"}, 1),
]
# (severity text, severity number, body, attributes, count), acme's shop:
# INFO "ok": 40 + 2 + 4 = 46; no text, number 17 (ERROR), "payment failed",
# order.id=o-1: 40 + 14 + 0 + (8 + 3 + 8) = 73.
LOGS = [
    ("INFO", SeverityNumber.INFO, "ok", {}, 2),
    (None, SeverityNumber.ERROR, "payment failed", {"order.id": "o-1"}, 1),
]
# Stored rows and estimated bytes per group, from the sizes above.
ESTIMATES = {
    ("acme", "shop", "GET /cart"): (3, 3 * 92),  # 276
    ("acme", "shop", "POST /checkout"): (1, 155),
    ("acme", "search", "GET /search"): (2, 2 * 71),  # 142
    ("globex", "shop", "GET /cart"): (1, 92),
    ("acme", "shop", "INFO"): (2, 2 * 46),  # 92
    ("acme", "shop", "ERROR"): (1, 73),
}


def q12(d):
    """The ledger's rounding: 12 places, half-even."""
    return d.quantize(Decimal("1e-12"), rounding=ROUND_HALF_EVEN)


def largest_remainder(total, weights):
    """`total` split by `weights` in whole units: floors, then one unit each
    to the largest remainders (ties: larger weight, then earlier)."""
    whole = sum(weights)
    parts = [total * w // whole for w in weights]
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), -weights[i], i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


@pytest.fixture(params=["duckdb", "clickhouse"])
def tc_server(request, tmp_path):
    config = tmp_path / "costplane.toml"
    config.write_text(
        f"""
[cost]
ingest_per_gib = "1.073741824"
storage_per_gib_month = "10.73741824"
[ledger]
close_after_secs = 0
refresh_secs = 1
[embedded]
traces_ttl_days = 6
logs_ttl_days = 15
[clickhouse]
traces_ttl_days = 6
logs_ttl_days = 15
{api_keys_toml(ADMIN, acme=ACME)}"""
    )
    with serving(tmp_path, request.param, config.read_text()) as server:
        yield server


def get(server, path, key=ADMIN):
    status, _, body = api_request(server, path, key)
    return status, json.loads(body)


def send(server):
    base = f"http://127.0.0.1:{server.http_port}"
    for tenant, service in [("acme", "shop"), ("acme", "search"), ("globex", "shop")]:
        resource = Resource.create({"service.name": service, "service.namespace": "web", "tenant.id": tenant})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces")))
        tracer = provider.get_tracer("telemetry-costs")
        for t, s, name, attrs, count in SPANS:
            if (t, s) == (tenant, service):
                for i in range(count):
                    span = tracer.start_span(name, start_time=NOW + i, attributes=attrs)
                    if name == "POST /checkout":
                        span.add_event("retry", {"attempt": "2"}, timestamp=NOW + i + 500)
                    span.end(end_time=NOW + i + 1000)
        provider.shutdown()
    logs = LoggerProvider(resource=Resource.create({"service.name": "shop", "service.namespace": "web", "tenant.id": "acme"}))
    logs.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{base}/v1/logs")))
    logger = logs.get_logger("telemetry-costs")
    for text, number, body, attrs, count in LOGS:
        for i in range(count):
            logger.emit(timestamp=NOW + i, severity_text=text, severity_number=number, body=body, attributes=attrs)
    logs.shutdown()


def ledger_ingest(server):
    """The ledger's telemetry ingest rows of the window: (tenant, service,
    signal) -> (bytes, cost)."""
    status, body = get(server, f"/api/v1/costs?{WINDOW}&source=telemetry&group_by=tenant,service,usage_type,unit")
    assert status == 200, body
    return {(r["tenant"], r["service"], r["usage_type"]): (int(Decimal(r["quantity"])), Decimal(r["cost"]))
            for r in body["rows"] if r["usage_type"] in ("traces", "logs")}


def wait_for_usage(server):
    """Every item metered, and the ledger priced all of it."""
    want = {("acme", "shop", "traces"): 4, ("acme", "search", "traces"): 2, ("globex", "shop", "traces"): 1,
            ("acme", "shop", "logs"): 3}
    deadline = time.time() + 60
    while time.time() < deadline:
        _, body = get(server, f"/api/v1/telemetry-costs?{WINDOW}")
        usage = {(s["tenant"], s["service"], s["signal"]): s for s in body["services"]}
        ledger = ledger_ingest(server)
        if ({k: v["items"] for k, v in usage.items()} == want
                and all(ledger.get(k, (None,))[0] == usage[k]["bytes"] for k in want)):
            return {k: usage[k]["bytes"] for k in want}, ledger
        time.sleep(0.3)
    raise AssertionError(f"usage never complete: {body}\n{server.log()[-3000:]}")


def measured_stored_bytes(server, signal):
    """What the store keeps of today's partition of `signal`, read here
    independently: the Parquet files of the day (embedded), system.parts
    (ClickHouse)."""
    day = time.strftime("%Y-%m-%d", time.gmtime(NOW // 1_000_000_000))
    table = f"otel_{signal}"
    if server.store == "duckdb":
        return sum(p.stat().st_size for p in (Path(server.data_dir) / "tables" / table / f"date={day}").glob("*.parquet"))
    database = server.store_args[server.store_args.index("--clickhouse-database") + 1]
    sql = (f"SELECT sum(data_compressed_bytes) AS b FROM system.parts WHERE database = '{database}' AND active "
           f"AND table LIKE '{table}%' AND table NOT LIKE 'otel_traces_trace_id%' AND partition = '{day}'")
    status, _, body = api_request(server, "/api/v1/sql", ADMIN, method="POST", body={"sql": sql})
    assert status == 200, body
    return int(json.loads(body)["rows"][0][0])


def expected_group(bytes_, signal, ratio, sample, keep_days):
    """A group's figures by the rules above, exact then rounded once."""
    r = RETENTION[signal]
    with localcontext() as ctx:
        ctx.prec = 60
        ingest_pm = bytes_ * MONTH_FACTOR * PER_BYTE
        # A month's bytes, stored at the ratio, kept r of 30 days, at the storage rate.
        storage_pm = bytes_ * MONTH_FACTOR * ratio * Decimal(r) / 30 * PER_BYTE_MONTH
        per_month = ingest_pm + storage_pm
        return {
            "ingest_cost": q12(bytes_ * PER_BYTE),
            "ingest_per_month": q12(ingest_pm),
            "storage_per_month": q12(storage_pm),
            "cost_per_month": q12(per_month),
            "drop": q12(per_month),
            "sample": q12((1 - sample) * per_month),
            "retention": q12(bytes_ * MONTH_FACTOR * ratio * Decimal(r - keep_days) / 30 * PER_BYTE_MONTH),
        }


def figures(row):
    return {
        "ingest_cost": Decimal(row["ingest_cost"]),
        "ingest_per_month": Decimal(row["ingest_per_month"]),
        "storage_per_month": Decimal(row["storage_per_month"]),
        "cost_per_month": Decimal(row["cost_per_month"]),
        "drop": Decimal(row["saves_per_month"]["drop"]),
        "sample": Decimal(row["saves_per_month"]["sample"]),
        "retention": Decimal(row["saves_per_month"]["retention"]),
    }


def stable_answer(server, query, signal):
    """An answer whose stored bytes match an independent reading taken
    before and after it (ClickHouse merges parts in the background)."""
    for _ in range(30):
        before = measured_stored_bytes(server, signal)
        status, body = get(server, f"/api/v1/telemetry-costs?{query}")
        assert status == 200, body
        if before == measured_stored_bytes(server, signal):
            return body, before
        time.sleep(0.5)
    raise AssertionError("the stored bytes never held still")


def test_what_telemetry_costs_to_keep(tc_server):
    server = tc_server
    send(server)
    metered, ledger = wait_for_usage(server)
    # The ledger prices the same bytes at $0.000000001 each, exactly.
    for key, (bytes_, cost) in ledger.items():
        assert cost == bytes_ * PER_BYTE, (key, bytes_, cost)
    traces_ingested = sum(b for (_, _, s), b in metered.items() if s == "traces")
    logs_ingested = metered[("acme", "shop", "logs")]

    sample, keep = Decimal("0.1"), 3
    for group_by, signal, column in [("span_name", "traces", "span_name"), ("severity", "logs", "severity")]:
        body, stored = stable_answer(server, f"{WINDOW}&group_by=service,{group_by}&sample=0.1&retention_days=3", signal)
        assert body["month_days"] == 30 and Decimal(body["window_days"]) == 3, body
        assert body["group_by"] == ["service", column]
        # The basis of storage: the day's stored bytes over the day's ingest (every tenant).
        ingested = traces_ingested if signal == "traces" else logs_ingested
        [basis] = body["signals"]
        assert (basis["signal"], basis["retention_days"]) == (signal, RETENTION[signal])
        assert (basis["stored_bytes"], basis["ingested_bytes"]) == (stored, ingested), basis
        assert stored > 0
        ratio = Decimal(stored) / Decimal(ingested)
        assert Decimal(basis["stored_per_ingested"]) == q12(ratio)

        rows = {(r["tenant"], r["service"], r[column]): r for r in body["rows"]}
        expected_keys = {k for k in ESTIMATES if (k[2] in ("INFO", "ERROR")) == (signal == "logs")}
        assert set(rows) == expected_keys, rows
        # Each service's metered bytes by largest remainder of the estimates:
        # acme's shop traces B x 276/431 and B x 155/431; search and globex's
        # shop have one group each (all of B); acme's shop logs B x 92/165 and
        # B x 73/165. Items are the stored rows (the same count as metered).
        services = {}
        for key in sorted(expected_keys):
            services.setdefault(key[:2], []).append(key)
        for service, keys in services.items():
            # The store orders groups by name: the split's tie order.
            keys.sort(key=lambda k: k[2])
            total = metered[(*service, signal)]
            shares = largest_remainder(total, [ESTIMATES[k][1] for k in keys])
            assert sum(shares) == total
            group_ingest = Decimal(0)
            for key, share in zip(keys, shares):
                row = rows[key]
                assert (row["stored_rows"], row["estimated_bytes"]) == ESTIMATES[key], (key, row)
                assert (row["items"], row["bytes"]) == (ESTIMATES[key][0], share), (key, row)
                assert figures(row) == expected_group(Decimal(share), signal, ratio, sample, keep), (key, row)
                group_ingest += Decimal(row["ingest_cost"])
            # The groups of a service add up to the ledger's telemetry cost for it.
            assert group_ingest == ledger[(*service, signal)][1], (service, group_ingest, ledger)
        # Worked once in full, acme's shop checkout span at the measured B and ratio:
        # bytes b = the share above; ingest per month b x 10 x 0.000000001;
        # storage per month b x 10 x ratio x 6/30 x 0.00000001; sampling at 10%
        # saves 90% of their sum; 3 days instead of 6 saves b x 10 x ratio x 3/30 x 0.00000001.
        total = body["total"]
        assert Decimal(total["cost_per_month"]) == sum(Decimal(r["cost_per_month"]) for r in body["rows"])
        assert Decimal(total["ingest_cost"]) == sum(v[1] for k, v in ledger.items() if k[2] == signal)

    # Grouped by signal: the metered usage itself, per service.
    status, body = get(server, f"/api/v1/telemetry-costs?{WINDOW}&group_by=service,signal")
    assert status == 200, body
    by_signal = {(r["tenant"], r["service"], r["signal"]): r for r in body["rows"]}
    assert {k: r["bytes"] for k, r in by_signal.items()} == metered
    assert all(Decimal(r["ingest_cost"]) == ledger[k][1] for k, r in by_signal.items())
    assert all(r["saves_per_month"]["sample"] is None for r in body["rows"])

    # A tenant key sees its tenant only, and not the store-wide byte counts.
    status, mine = get(server, f"/api/v1/telemetry-costs?{WINDOW}&group_by=service,span_name", key=ACME)
    assert status == 200, mine
    assert {r["tenant"] for r in mine["rows"]} == {"acme"} and mine["tenant"] == "acme"
    assert {(r["service"], r["span_name"]) for r in mine["rows"]} == {("shop", "GET /cart"), ("shop", "POST /checkout"),
                                                                      ("search", "GET /search")}
    assert "stored_bytes" not in mine["signals"][0] and mine["signals"][0]["stored_per_ingested"]
    status, refused = get(server, f"/api/v1/telemetry-costs?{WINDOW}&tenant=globex", key=ACME)
    assert status == 403 and "own tenant" in refused["error"], refused
    # An admin may filter by tenant.
    status, globex = get(server, f"/api/v1/telemetry-costs?{WINDOW}&group_by=service,span_name&tenant=globex")
    assert status == 200 and [(r["tenant"], r["span_name"], r["bytes"]) for r in globex["rows"]] == [
        ("globex", "GET /cart", metered[("globex", "shop", "traces")])], globex

    # The CLI asks the same API: the same groups and ingest figures; a table by default.
    base = ["telemetry-costs", "--server", f"http://127.0.0.1:{server.api_port}", "--api-key", ADMIN,
            "--from", iso(FROM), "--to", iso(TO), "--group-by", "service,span_name", "--sample", "0.1", "--retention-days", "3"]
    out = subprocess.run([costplane_bin(), *base, "--json"], capture_output=True, check=False)
    assert out.returncode == 0, out.stderr.decode()
    cli = json.loads(out.stdout)
    _, api = get(server, f"/api/v1/telemetry-costs?{WINDOW}&group_by=service,span_name&sample=0.1&retention_days=3")
    strip = lambda rows: sorted((r["tenant"], r["service"], r["span_name"], r["bytes"], r["ingest_per_month"]) for r in rows)  # noqa: E731
    assert strip(cli["rows"]) == strip(api["rows"])
    out = subprocess.run([costplane_bin(), *base], capture_output=True, check=False)
    assert out.returncode == 0, out.stderr.decode()
    table = out.stdout.decode()
    assert "SPAN_NAME" in table and "POST /checkout" in table and "traces: kept 6 days" in table, table

    # Bad parameters: 400 with a message, before any work.
    for query, says in [
        ("colour=red", "unknown parameter 'colour'"),
        ("group_by=service,model", "is not one of"),
        ("sample=1.5", "not a fraction"),
        ("sample=abc", "not a fraction"),
        ("retention_days=0", "whole number of days"),
        ("retention_days=-3", "whole number of days"),
        (f"from={iso(TO)}&to={iso(FROM)}", "must be before"),
        ("from=2020-01-01&to=2026-01-01", "longer than 400 days"),
        ("from=yesterday", "is not a date"),
    ]:
        status, body = get(server, f"/api/v1/telemetry-costs?{query}")
        assert status == 400 and says in body["error"], (query, status, body)
    assert api_request(server, f"/api/v1/telemetry-costs?{WINDOW}", None)[0] == 401
    assert server.terminate() == 0
