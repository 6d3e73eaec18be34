"""The "Unit costs" Grafana dashboard (deploy/grafana/dashboards/unit-costs.json)
over the hand-worked dataset of test_unit_costs.py on ClickHouse: its
PromQL evaluated by a real Prometheus scraping that costplane (as the
chart's ServiceMonitor does, with the admin key), its SQL run on the
store's otel_traces with the plugin's macros expanded, every figure equal
to GET /api/v1/unit-costs.

By hand (module notes of test_unit_costs.py and test_unit_cost_surfaces.py):
- shop /checkout: requests t1, t2 (error), t5 of 100, 300 and 500 ms: 3
  requests, 1 error (ratio 1/3), lower nearest rank p50 0.3 s, p95 0.5 s;
  cost 0.012 LLM + 0.0225 compute + its telemetry, so per request
  (0.0345 + telemetry) / 3.
- shop /items/{id}: t3, 1 request of 0.1 s, no error.
- recs /recommend: t1's call, 1 request of 0.04 s.
- cron nightly-report: cron has no server spans, so its root span is the
  request: 1 of 2 s.
- search /q: t6's request at the hour's last 100 ms, 1 of 0.15 s.

Money through Prometheus is a float: "equal" means within 1e-12."""

import json
import sys
import time
import urllib.parse
import urllib.request
from decimal import Decimal

import pytest

from conftest import ROOT
from test_prometheus import Prometheus, close
from test_unit_cost_surfaces import month_to_date, this_month
from test_unit_costs import ADMIN, H, HOUR, WINDOW, dataset, get, telemetry  # noqa: F401 (fixture)

sys.path.insert(0, str(ROOT / "tests/support"))
import dashboards  # noqa: E402

# The dashboard's SQL is ClickHouse's; the embedded store has no ClickHouse datasource.
pytestmark = pytest.mark.parametrize("dataset", ["clickhouse"], indirect=True)

UID = "costplane-unit-costs"
ROUTES = {("shop", "/checkout"), ("shop", "/items/{id}"), ("recs", "/recommend"), ("cron", "nightly-report"), ("search", "/q")}


def promql():
    """{panel title/refId: PromQL} of the dashboard."""
    prefix = UID + "/"
    variables = {"service": "shop", "tenant": "acme", "model": "house-llm"}  # the other dashboards' variables
    return {where[len(prefix):]: expr for where, expr in dashboards.prometheus_queries(variables) if where.startswith(prefix)}


def by_route(vector):
    """An instant vector keyed by (service, route)."""
    out = {}
    for labels, value in vector.items():
        d = dict(labels)
        out[(d["service"], d["route"])] = Decimal(value)
    return out


@pytest.fixture(scope="module")
def prom(dataset, tmp_path_factory):  # noqa: F811 (the fixture imported above)
    p = Prometheus(tmp_path_factory.mktemp("unit-cost-dashboard-prometheus"), dataset.api_port, api_key=ADMIN)
    yield p
    p.stop()


def test_the_money_panels_show_the_apis_month_to_date(dataset, prom):  # noqa: F811
    this_month()
    api = {(g["service"], g["route"]): g for g in month_to_date(dataset, ADMIN, "service,route")["groups"]}
    assert set(api) == ROUTES, api
    queries = promql()
    assert set(queries) == {"Cost per request by route (month to date)/A", "Requests by route (month to date)/A",
                            "Cost by route (month to date)/A", "Cost per request by route, month to date over time/A"}, queries
    requests = queries["Requests by route (month to date)/A"]
    prom.wait("every route scraped", lambda: set(by_route(prom.query(requests))) == ROUTES)

    counts = by_route(prom.query(requests))
    assert counts == {k: Decimal(g["requests"]) for k, g in api.items()}, counts
    costs = by_route(prom.query(queries["Cost by route (month to date)/A"]))
    per_request = by_route(prom.query(queries["Cost per request by route (month to date)/A"]))
    over_time = by_route(prom.query(queries["Cost per request by route, month to date over time/A"]))
    assert set(costs) == set(per_request) == set(over_time) == ROUTES
    for k, g in api.items():
        close(costs[k], g["cost"]["total"], f"{k} total")
        close(per_request[k], g["cost"]["per_request"], f"{k} per request")
        close(over_time[k], g["cost"]["per_request"], f"{k} per request over time")
    # Hand-worked: /checkout 0.012 LLM + 0.0225 compute + the telemetry of its
    # traces' spans and logs, over 3 requests.
    tele = telemetry(dataset, {("acme", "shop", "traces"): 4, ("acme", "recs", "traces"): 3, ("acme", "shop", "logs"): 1,
                               ("globex", "shop", "traces"): 2})
    assert counts[("shop", "/checkout")] == 3
    close(costs[("shop", "/checkout")], Decimal("0.0345") + tele, "checkout total")
    close(per_request[("shop", "/checkout")], (Decimal("0.0345") + tele) / 3, "checkout per request")
    # sort_desc: the table lists the highest cost per request first (/checkout
    # about 0.0115, cron's one request 0.01 and its telemetry).
    body = prom.api("query", query=queries["Cost per request by route (month to date)/A"])
    assert [(s["metric"]["service"], s["metric"]["route"]) for s in body["data"]["result"]][:2] == [
        ("shop", "/checkout"), ("cron", "nightly-report")]


def clickhouse(server, sql):
    args = server.store_args
    url, database = args[args.index("--clickhouse-url") + 1], args[args.index("--clickhouse-database") + 1]
    q = urllib.parse.urlencode({"database": database, "query": sql + " FORMAT JSON"})
    req = urllib.request.Request(f"{url}/?{q}", method="POST", data=b"")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())["data"]
    except urllib.error.HTTPError as e:
        raise AssertionError(f"{e.code}: {e.read().decode()}\n{sql}") from None


def sql_panels(server, interval_s=60):
    """{panel title: rows} of the dashboard's SQL over the dataset's hour."""
    out = {}
    prefix = UID + "/"
    for where, raw in dashboards.clickhouse_queries():
        if where.startswith(prefix):
            sql = dashboards.expand_clickhouse(raw, {"tenant_attribute": "tenant.id"}, H // 10**9, (H + HOUR) // 10**9, interval_s)
            out[where[len(prefix):-2]] = clickhouse(server, sql)
    return out


def test_the_latency_panels_show_the_apis_requests(dataset):  # noqa: F811
    api = {(g["service"], g["route"]): g for g in get(dataset, f"/api/v1/unit-costs?{WINDOW}&group_by=service,route")["groups"]}
    assert set(api) == ROUTES
    panels = sql_panels(dataset)
    assert set(panels) == {"Latency and errors by route", "p95 latency by route", "Error ratio by route"}, list(panels)

    table = {(r["service"], r["route"]): r for r in panels["Latency and errors by route"]}
    assert set(table) == ROUTES, table
    for k, g in api.items():
        r = table[k]
        assert (int(r["requests"]), int(r["errors"])) == (g["requests"], g["errors"]), (k, r, g)
        latency = (Decimal(str(r["p50_seconds"])), Decimal(str(r["p95_seconds"])))
        assert latency == (Decimal(g["p50_seconds"]), Decimal(g["p95_seconds"])), (k, r, g)
        # The API gives the ratio to 6 places.
        assert abs(Decimal(str(r["error_ratio"])) - Decimal(g["error_ratio"])) <= Decimal("5e-7"), (k, r, g)
    checkout = table[("shop", "/checkout")]
    assert (int(checkout["requests"]), int(checkout["errors"]), checkout["p50_seconds"], checkout["p95_seconds"]) == (3, 1, 0.3, 0.5)
    assert abs(checkout["error_ratio"] - 1 / 3) < 1e-15
    assert (int(table[("cron", "nightly-report")]["requests"]), table[("cron", "nightly-report")]["p50_seconds"]) == (1, 2)

    # Each route's requests fall in one minute of the hour, so at one-minute
    # points each series has one point, equal to the API's figure of the hour.
    p95 = [(r["route"], r["p95_seconds"]) for r in panels["p95 latency by route"]]
    assert sorted(p95) == sorted((f"{s} {route}", float(g["p95_seconds"])) for (s, route), g in api.items()), p95
    errors = [(r["route"], r["error_ratio"]) for r in panels["Error ratio by route"]]
    assert sorted(errors) == sorted((f"{s} {route}", g["errors"] / g["requests"]) for (s, route), g in api.items()), errors
    assert dict(errors)["shop /checkout"] == 1 / 3

    # Over an hour-long point the same holds for the whole window.
    hourly = sql_panels(dataset, interval_s=3600)
    assert sorted((r["route"], r["p95_seconds"]) for r in hourly["p95 latency by route"]) == sorted(p95)
