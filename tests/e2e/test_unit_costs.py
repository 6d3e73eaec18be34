"""Cost per request, customer and trace through `costplane serve`, on both
stores: spans, logs and Kubernetes metrics sent over OTLP/HTTP, answers of
/api/v1/unit-costs, /api/v1/traces/{id}/cost and `costplane unit-costs`
checked against figures worked out by hand.

Prices: house-llm (override file) $1 per 1M input tokens, $2 per 1M output.
Kubernetes: 0.04 per core-hour, 0.005 per GiB-hour; pod shop/web-1 (tenant
acme) requests 0.5 core and 1 GiB, uses 0.25 core and 0.5 GiB, sampled at
:00, :15, :30, :45 of hour H → 0.5 × 0.04 + 1 × 0.005 = 0.025 for the hour.

Requests in hour H (server spans; cron has none, so its root spans count):
- t1 acme  shop POST /checkout  100 ms  alice  → LLM chat 1,000 in / 500 out
  = 0.001 + 0.001 = 0.002; it calls recs GET /recommend (40 ms, pod recs-1
  without Kubernetes cost), whose agent span (3,000 / 1,000, a roll-up: not
  billed, its trace has model calls) has a child chat 2,000 / 500 = 0.002 +
  0.001 = 0.003. Trace t1 LLM: 0.005.
- t2 acme  shop POST /checkout  300 ms  bob, error → 4,000 / 1,000 = 0.004 +
  0.002 = 0.006.
- t3 acme  shop GET /items/{id}  100 ms  alice → no LLM.
- t4 acme  cron nightly-report (root, no pod) 2 s → 10,000 / 0 = 0.01.
- t5 globex shop POST /checkout  500 ms  carol, on web-1 too → 1,000 / 0 =
  0.001.
web-1 served 100 + 300 + 100 + 500 = 1,000 ms in H: a request's compute
share is 0.025 × its ms / 1,000.
"""

import json
import subprocess
import time
from decimal import ROUND_HALF_EVEN, Decimal

import pytest

from conftest import api_keys_toml, api_request, costplane_bin, iso, serving

ADMIN = "admin-key-unit-costs-0123456789"
ACME = "acme-key-unit-costs-0123456789"
GLOBEX = "globex-key-unit-costs-012345678"
HOUR = 3600 * 1_000_000_000
MS = 1_000_000
GIB = 1 << 30
NOW = time.time_ns()
H = NOW - NOW % HOUR - 2 * HOUR  # the requests' hour: closed
WINDOW = f"from={iso(H)}&to={iso(H + HOUR)}"
POD_HOUR = Decimal("0.025")

OVERRIDES = """
version = "unit-costs-test"
currency = "USD"
[[model]]
provider = "acme"
name = "house-llm"
  [[model.prices]]
  effective = "2026-01-01"
  input = "1.00"
  output = "2.00"
"""

TRACES = {name: f"{0xA000 + i:032x}" for i, name in enumerate(["t1", "t2", "t3", "t4", "t5", "t6"], start=1)}


def kv(k, v):
    if isinstance(v, int):
        return {"key": k, "value": {"intValue": str(v)}}
    return {"key": k, "value": {"stringValue": v}}


def span(trace, n, name, start_ms, dur_ms, kind=1, parent="", attrs=(), error=False):
    start = H + 10 * 60 * 1_000_000_000 + start_ms * MS
    s = {
        "traceId": TRACES[trace], "spanId": f"{0xB000 + n:016x}", "name": name, "kind": kind,
        "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + dur_ms * MS),
        "attributes": [kv(k, v) for k, v in attrs],
    }
    if parent:
        s["parentSpanId"] = f"{0xB000 + parent:016x}"
    if error:
        s["status"] = {"code": 2}
    return s


def chat(trace, n, parent, tokens_in, tokens_out, operation="chat"):
    return span(trace, n, f"{operation} house-llm", 5, 20, kind=3, parent=parent, attrs=[
        ("gen_ai.operation.name", operation), ("gen_ai.provider.name", "acme"), ("gen_ai.request.model", "house-llm"),
        ("gen_ai.usage.input_tokens", tokens_in), ("gen_ai.usage.output_tokens", tokens_out)])


def resource(service, tenant, pod=None):
    attrs = [kv("service.name", service), kv("tenant.id", tenant)]
    if pod:
        attrs += [kv("k8s.pod.name", pod), kv("k8s.namespace.name", "shop")]
    return {"attributes": attrs}


SERVER = 2
SHOP_ACME = [
    span("t1", 1, "POST /checkout", 0, 100, SERVER, attrs=[("http.route", "/checkout"), ("enduser.id", "alice")]),
    chat("t1", 2, 1, 1000, 500),
    span("t2", 10, "POST /checkout", 0, 300, SERVER, attrs=[("http.route", "/checkout"), ("enduser.id", "bob")], error=True),
    chat("t2", 11, 10, 4000, 1000),
    span("t3", 20, "GET /items/42", 0, 100, SERVER, attrs=[("http.route", "/items/{id}"), ("enduser.id", "alice")]),
]
RECS_ACME = [
    span("t1", 3, "GET /recommend", 30, 40, SERVER, parent=1, attrs=[("http.route", "/recommend")]),
    chat("t1", 4, 3, 3000, 1000, operation="invoke_agent"),
    chat("t1", 5, 4, 2000, 500),
]
CRON_ACME = [
    span("t4", 30, "nightly-report", 0, 2000),
    chat("t4", 31, 30, 10000, 0),
]
SHOP_GLOBEX = [
    span("t5", 40, "POST /checkout", 0, 500, SERVER, attrs=[("http.route", "/checkout"), ("enduser.id", "carol")]),
    chat("t5", 41, 40, 1000, 0),
]
SPANS = {("shop", "acme"): SHOP_ACME, ("recs", "acme"): RECS_ACME, ("cron", "acme"): CRON_ACME, ("shop", "globex"): SHOP_GLOBEX}
# t6 (acme, search, no pod) arrives in two requests across two hours: its
# request at H + 59:59.900 (150 ms), its model call (1,000 / 0 = 0.001) at
# H+1 + 00:00.010, sent after it.
T6_REQUEST = span("t6", 50, "GET /q", 0, 150, SERVER, attrs=[("http.route", "/q")])
T6_REQUEST["startTimeUnixNano"] = str(H + HOUR - 100 * MS)
T6_REQUEST["endTimeUnixNano"] = str(H + HOUR + 50 * MS)
T6_CALL = chat("t6", 51, 50, 1000, 0)
T6_CALL["startTimeUnixNano"] = str(H + HOUR + 10 * MS)
T6_CALL["endTimeUnixNano"] = str(H + HOUR + 30 * MS)
# LLM by trace, worked out in the module notes.
LLM = {"t1": Decimal("0.005"), "t2": Decimal("0.006"), "t3": Decimal(0), "t4": Decimal("0.01"), "t5": Decimal("0.001")}


def gauge(name, unit, t, value):
    point = {"timeUnixNano": str(t)}
    point["asDouble" if isinstance(value, float) else "asInt"] = value if isinstance(value, float) else str(value)
    return {"name": name, "unit": unit, "gauge": {"dataPoints": [point]}}


KUBELET = "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/kubeletstatsreceiver"
CLUSTER = "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/k8sclusterreceiver"


def scrape(k):
    """Sample k (0..3) of hour H: node n1 and pod shop/web-1 of tenant acme."""
    t = H + k * 15 * 60 * 1_000_000_000
    node = [kv("k8s.node.name", "n1"), kv("tenant.id", "acme")]
    pod = [kv("k8s.pod.uid", "uid-web-1"), kv("k8s.pod.name", "web-1"), kv("k8s.namespace.name", "shop"),
           kv("k8s.node.name", "n1"), kv("tenant.id", "acme"), kv("k8s.container.name", "main")]
    scope = lambda name, metrics: [{"scope": {"name": name}, "metrics": metrics}]  # noqa: E731
    return {"resourceMetrics": [
        {"resource": {"attributes": node}, "scopeMetrics": scope(CLUSTER, [
            gauge("k8s.node.allocatable_cpu", "{cpu}", t, 4.0), gauge("k8s.node.allocatable_memory", "By", t, 16 * GIB)])},
        {"resource": {"attributes": pod}, "scopeMetrics": scope(KUBELET, [
            gauge("container.cpu.usage", "{cpu}", t, 0.25), gauge("container.memory.working_set", "By", t, GIB // 2)])},
        {"resource": {"attributes": pod + [kv("container.id", "cid-web-1")]}, "scopeMetrics": scope(CLUSTER, [
            gauge("k8s.container.cpu_request", "{cpu}", t, 0.5), gauge("k8s.container.memory_request", "By", t, GIB),
            gauge("k8s.pod.phase", "", t, 2)])},
    ]}


def post(server, path, body, port=None):
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{port or server.http_port}{path}", data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status


def get(server, path, key=ADMIN, expect=200):
    status, _, body = api_request(server, path, key=key)
    assert status == expect, f"{path}: {status} {body[:600]!r}"
    return json.loads(body)


def money(d):
    return Decimal(d).quantize(Decimal("1e-12"), rounding=ROUND_HALF_EVEN)


def load(server):
    """Sends the dataset and waits until the ledger has priced it."""
    for k in range(4):
        assert post(server, "/v1/metrics", scrape(k)) == 200
    status, _, raw = api_request(server, "/api/v1/kubernetes/flush", key=ADMIN, method="POST", body={})
    assert status == 200, raw
    body = {"resourceSpans": [
        {"resource": resource(svc, tenant, pod={"shop": "web-1", "recs": "recs-1"}.get(svc)), "scopeSpans": [{"spans": spans}]}
        for (svc, tenant), spans in SPANS.items()]}
    assert post(server, "/v1/traces", body) == 200
    for part in (T6_REQUEST, T6_CALL):
        assert post(server, "/v1/traces", {"resourceSpans": [
            {"resource": resource("search", "acme"), "scopeSpans": [{"spans": [part]}]}]}) == 200
    # Two shop log records of acme: one in trace t1, one in no trace.
    logs = {"resourceLogs": [{"resource": resource("shop", "acme", pod="web-1"), "scopeLogs": [{"logRecords": [
        {"timeUnixNano": str(H + 10 * 60 * 1_000_000_000), "severityText": "INFO", "body": {"stringValue": "checkout"},
         "traceId": TRACES["t1"], "spanId": f"{0xB001:016x}"},
        {"timeUnixNano": str(H + 11 * 60 * 1_000_000_000), "severityText": "INFO", "body": {"stringValue": "tick"}},
    ]}]}]}
    assert post(server, "/v1/logs", logs) == 200
    # Ready when every call is priced and web-1's hour has its cost.
    deadline = time.time() + 90
    llm = k8s = None
    while time.time() < deadline:
        llm = Decimal(get(server, f"/api/v1/costs?{WINDOW}&source=llm")["total"])
        k8s = Decimal(get(server, f"/api/v1/costs?{WINDOW}&source=kubernetes&service=shop")["total"]) if llm else None
        late = Decimal(get(server, f"/api/v1/costs?from={iso(H + HOUR)}&to={iso(H + 2 * HOUR)}&source=llm")["total"])
        if llm == sum(LLM.values()) and k8s == POD_HOUR and late == Decimal("0.001"):
            break
        time.sleep(0.5)
    rows = get(server, f"/api/v1/costs?{WINDOW}&source=kubernetes&group_by=service,usage_type")["rows"]
    assert llm == sum(LLM.values()) and k8s == POD_HOUR, f"ledger: llm {llm}, web-1 {k8s}: {rows}\n{server.log()[-3000:]}"


@pytest.fixture(scope="module", params=["duckdb", "clickhouse"])
def dataset(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"unit-{request.param}")
    overrides = tmp / "prices.toml"
    overrides.write_text(OVERRIDES)
    config = f"""
[cost]
price_overrides = "{overrides}"
ingest_per_gib = "25"
[ledger]
close_after_secs = 0
refresh_secs = 1
[kubernetes]
cluster = "c1"
[kubernetes.prices]
cpu_core_hour = "0.04"
ram_gib_hour = "0.005"
{api_keys_toml(ADMIN, acme=ACME, globex=GLOBEX)}"""
    with serving(tmp, request.param, config) as server:
        load(server)
        yield server


def telemetry_rates(server):
    """The ledger's telemetry cost and the items sent, per (tenant, service,
    signal): the per-item cost a group's spans and logs carry."""
    rows = get(server, f"/api/v1/costs?from={iso(H)}&to={iso(H + 25 * HOUR)}&source=telemetry&group_by=tenant,service,usage_type")["rows"]
    cost = {(r["tenant"], r["service"], r["usage_type"]): Decimal(r["cost"]) for r in rows}
    items = {("acme", "shop", "traces"): 5, ("acme", "recs", "traces"): 3, ("acme", "cron", "traces"): 2, ("acme", "search", "traces"): 2,
             ("globex", "shop", "traces"): 2, ("acme", "shop", "logs"): 2}
    for key in items:
        assert cost.get(key, 0) > 0, f"no ingest cost for {key}: {rows}"
    return {key: cost[key] / n for key, n in items.items()}


def telemetry(server, counts):
    """Telemetry of a group: counts {(tenant, service, signal): items}."""
    rate = telemetry_rates(server)
    return money(sum(rate[k] * n for k, n in counts.items()))


def by(answer, *dims):
    return {tuple(g[d] for d in dims): g for g in answer["groups"]}


def test_cost_per_request_by_service_and_route(dataset):
    got = by(get(dataset, f"/api/v1/unit-costs?{WINDOW}&group_by=service,route"), "service", "route")
    assert set(got) == {("shop", "/checkout"), ("shop", "/items/{id}"), ("recs", "/recommend"), ("cron", "nightly-report"),
                        ("search", "/q")}

    checkout = got[("shop", "/checkout")]
    # t1, t2 (error), t5: 100, 300, 500 ms; lower nearest rank: p50 300 ms, p95 500 ms.
    assert (checkout["requests"], checkout["errors"], checkout["p50_seconds"], checkout["p95_seconds"]) == (3, 1, "0.3", "0.5")
    assert checkout["error_ratio"] == "0.333333"
    # LLM: traces t1 + t2 + t5 = 0.005 + 0.006 + 0.001 = 0.012 (t1 with recs' child call).
    assert Decimal(checkout["cost"]["llm"]) == Decimal("0.012")
    # Compute: (100 + 300 + 500) / 1000 of 0.025 = 0.0225.
    assert Decimal(checkout["cost"]["compute"]) == Decimal("0.0225")
    assert checkout["compute"] == {"requests_priced": 3, "requests_unknown": 0}
    # Telemetry: t1's shop spans (2) and recs spans (3) and log (1), t2's 2 shop spans, t5's 2 globex spans.
    tele = telemetry(dataset, {("acme", "shop", "traces"): 4, ("acme", "recs", "traces"): 3, ("acme", "shop", "logs"): 1,
                               ("globex", "shop", "traces"): 2})
    assert Decimal(checkout["cost"]["telemetry"]) == tele
    total = Decimal("0.012") + Decimal("0.0225") + tele
    assert Decimal(checkout["cost"]["total"]) == total
    assert Decimal(checkout["cost"]["per_request"]) == money(total / 3)
    assert Decimal(checkout["cost"]["per_1000_requests"]) == money(total * 1000 / 3)

    items = got[("shop", "/items/{id}")]
    # 100 / 1000 of 0.025 = 0.0025; no model calls.
    assert (items["requests"], Decimal(items["cost"]["llm"]), Decimal(items["cost"]["compute"])) == (1, 0, Decimal("0.0025"))

    recs = got[("recs", "/recommend")]
    # The whole trace's model calls (0.005); its pod has no Kubernetes cost: unknown, not $0.
    assert Decimal(recs["cost"]["llm"]) == Decimal("0.005")
    assert recs["cost"]["compute"] is None and recs["compute"] == {"requests_priced": 0, "requests_unknown": 1}
    assert recs["llm"] == {"calls": 2, "unpriced_calls": 0, "invalid_calls": 0}  # shop's chat and recs' child; the agent not billed

    cron = got[("cron", "nightly-report")]
    # A root span of a service without server spans is its request; no pod attribute.
    assert (cron["requests"], cron["p50_seconds"], Decimal(cron["cost"]["llm"])) == (1, "2", Decimal("0.01"))
    assert cron["cost"]["compute"] is None

    # t6: its request in H, its model call in the next hour and request: counted (0.001).
    search = got[("search", "/q")]
    assert (search["requests"], Decimal(search["cost"]["llm"]), search["cost"]["compute"]) == (1, Decimal("0.001"), None)


def test_cost_per_customer(dataset):
    got = by(get(dataset, f"/api/v1/unit-costs?{WINDOW}&group_by=customer"), "customer")
    assert set(got) == {("alice",), ("bob",), ("carol",), ("(none)",)}
    # (none): cron's t4 and search's t6.
    assert Decimal(got[("(none)",)]["cost"]["llm"]) == Decimal("0.01") + Decimal("0.001")
    alice = got[("alice",)]
    # t1 shop (own attribute), t1 recs (the trace's), t3: 3 requests, 2 traces.
    assert (alice["requests"], alice["traces"]) == (3, 2)
    # t1 counted once: 0.005; compute 100 + 100 ms of web-1 = 0.005, recs unknown.
    assert Decimal(alice["cost"]["llm"]) == Decimal("0.005")
    assert Decimal(alice["cost"]["compute"]) == Decimal("0.005")
    assert alice["compute"]["requests_unknown"] == 1
    assert Decimal(got[("bob",)]["cost"]["llm"]) == Decimal("0.006")
    assert Decimal(got[("bob",)]["cost"]["compute"]) == Decimal("0.0075")  # 300 / 1000 of 0.025
    assert Decimal(got[("carol",)]["cost"]["compute"]) == Decimal("0.0125")  # 500 / 1000 of 0.025
    # Groups sort by total cost, highest first.
    totals = [Decimal(g["cost"]["total"]) for g in get(dataset, f"/api/v1/unit-costs?{WINDOW}&group_by=customer")["groups"]]
    assert totals == sorted(totals, reverse=True)


def test_the_cost_of_one_trace(dataset):
    t1 = get(dataset, f"/api/v1/traces/{TRACES['t1']}/cost?{WINDOW}")
    calls = {c["span_id"]: c for c in t1["calls"]}
    assert {(c["service"], c["kind"], c["billed"], Decimal(c["cost"])) for c in calls.values()} == {
        ("shop", "model", True, Decimal("0.002")),
        ("recs", "rollup", False, Decimal(0)),
        ("recs", "model", True, Decimal("0.003")),
    }
    assert calls[f"{0xB002:016x}"]["tokens"]["input"] == 1000
    assert Decimal(t1["llm"]) == Decimal("0.005")
    # shop's request: 100 / 1000 of 0.025 = 0.0025; recs' request unknown.
    assert Decimal(t1["compute"]) == Decimal("0.0025")
    assert {(d["pod"], d["share"]) for d in t1["compute_detail"]} == {("shop/web-1", "0.0025"), ("shop/recs-1", None)}
    tele = telemetry(dataset, {("acme", "shop", "traces"): 2, ("acme", "recs", "traces"): 3, ("acme", "shop", "logs"): 1})
    assert (t1["telemetry"]["spans"], t1["telemetry"]["logs"], Decimal(t1["telemetry"]["cost"])) == (5, 1, tele)
    assert Decimal(t1["total"]) == Decimal("0.005") + Decimal("0.0025") + tele

    # A trace sent in two requests across two hours.
    t6 = get(dataset, f"/api/v1/traces/{TRACES['t6']}/cost?{WINDOW}")
    assert [(c["service"], Decimal(c["cost"])) for c in t6["calls"]] == [("search", Decimal("0.001"))]
    assert (t6["requests"], t6["compute"], Decimal(t6["llm"])) == (1, None, Decimal("0.001"))

    # Not found, and bad ids, say so.
    missing = get(dataset, f"/api/v1/traces/{'f' * 32}/cost?{WINDOW}", expect=404)
    assert "widen from/to" in missing["error"], missing
    get(dataset, "/api/v1/traces/not-a-trace/cost", expect=400)


def test_tenant_keys_see_their_own_requests_and_money(dataset):
    acme = by(get(dataset, f"/api/v1/unit-costs?{WINDOW}&group_by=service,route", key=ACME), "service", "route")
    checkout = acme[("shop", "/checkout")]
    # t1 and t2 only: LLM 0.011; web-1 is acme's pod: (100 + 300) / 1000 of 0.025 = 0.01.
    assert (checkout["requests"], Decimal(checkout["cost"]["llm"]), Decimal(checkout["cost"]["compute"])) == (
        2, Decimal("0.011"), Decimal("0.01"))
    globex = by(get(dataset, f"/api/v1/unit-costs?{WINDOW}&group_by=service,route", key=GLOBEX), "service", "route")
    assert set(globex) == {("shop", "/checkout")}
    # Its request ran on acme's pod: no share of acme's cost, compute unknown.
    assert Decimal(globex[("shop", "/checkout")]["cost"]["llm"]) == Decimal("0.001")
    assert globex[("shop", "/checkout")]["cost"]["compute"] is None
    get(dataset, f"/api/v1/unit-costs?{WINDOW}&tenant=acme", key=GLOBEX, expect=403)
    # globex cannot read acme's trace.
    get(dataset, f"/api/v1/traces/{TRACES['t1']}/cost?{WINDOW}", key=GLOBEX, expect=404)


def test_bad_parameters_are_refused_before_any_work(dataset):
    for query in ["group_by=service,colour", "group_by=route,route", "limit=0", "from=2026-12-05&to=2026-12-01",
                  "from=2020-01-01&to=2026-01-01", "sort=cost", "from=yesterday"]:
        answer = get(dataset, f"/api/v1/unit-costs?{query}", expect=400)
        assert answer, query


def test_the_cli_prints_the_same_figures(dataset):
    out = subprocess.run(
        [costplane_bin(), "unit-costs", "--server", f"http://127.0.0.1:{dataset.api_port}", "--api-key", ADMIN,
         "--from", iso(H), "--to", iso(H + HOUR), "--group-by", "service,route", "--json"],
        capture_output=True, check=False)
    assert out.returncode == 0, out.stderr.decode()
    api = get(dataset, f"/api/v1/unit-costs?{WINDOW}&group_by=service,route")
    assert json.loads(out.stdout)["groups"] == api["groups"]
    table = subprocess.run(
        [costplane_bin(), "unit-costs", "--server", f"http://127.0.0.1:{dataset.api_port}", "--api-key", ADMIN,
         "--from", iso(H), "--to", iso(H + HOUR)],
        capture_output=True, check=False)
    assert table.returncode == 0, table.stderr.decode()
    text = table.stdout.decode()
    assert "/checkout" in text and "per request" in text, text
