"""Cost per request on every surface that shows it, on both stores: the
web page's "Unit costs" section (headless Chromium), /metrics'
costplane_request_cost_usd summary and the monthly report's cost-per-request
table, each holding the figures GET /api/v1/unit-costs gives, which are
worked out by hand in test_unit_costs.py's dataset (reused here: two
services, three routes of shop and recs, cron's root spans, tenants acme and
globex, pod shop/web-1 at 0.025 for its hour).

By hand, per route (LLM + compute + telemetry; telemetry is the ledger's
per-item rate times the spans and logs of the route's traces, so it is read
from the ledger as test_unit_costs.py does):
- shop /checkout: 3 requests (t1, t2, t5), LLM 0.005 + 0.006 + 0.001 =
  0.012, compute (100 + 300 + 500) / 1000 × 0.025 = 0.0225.
- shop /items/{id}: 1 request (t3), no LLM, compute 100 / 1000 × 0.025 =
  0.0025.
- recs /recommend: 1 request (t1's), LLM 0.005 (its whole trace), compute
  unknown (recs-1 has no Kubernetes cost).
- cron nightly-report: 1 root-span request (t4), LLM 0.01, compute unknown.
(search /q, a trace split over two hours, costs less per request than
either of the two costliest.)
Tenant acme alone: /checkout is t1 and t2, LLM 0.011, compute (100 + 300) /
1000 × 0.025 = 0.01; globex alone: t5 on acme's pod, compute unknown.

The page and /metrics read the month to date, the report the month of the
dataset's hour; when that hour falls in the previous month (the first two
hours of a month) the month-to-date checks cannot hold and are skipped."""

import re
import subprocess
import time
from decimal import Decimal
from html.parser import HTMLParser

import pytest

from conftest import api_request, costplane_bin
from test_unit_costs import ACME, ADMIN, GLOBEX, H, dataset, get, telemetry  # noqa: F401 (fixture)
from test_web import browser, output_dir  # noqa: F401 (fixture)

MONTH = time.strftime("%Y-%m", time.gmtime(H / 1e9))


def this_month():
    if time.strftime("%Y-%m", time.gmtime()) != MONTH:
        pytest.skip("the dataset's hour is in the previous month: no month-to-date figures to compare")


def next_month():
    year, month = map(int, MONTH.split("-"))
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}-01"


def month_to_date(server, key, group_by):
    """The API's answer for what the page and /metrics show."""
    return get(server, f"/api/v1/unit-costs?from={MONTH}-01&group_by={group_by}&limit=10000", key=key)


def per_request_order(groups):
    """The surfaces' ranking: cost per request, then total, highest first."""
    return sorted(groups, key=lambda g: (-Decimal(g["cost"]["per_request"]), -Decimal(g["cost"]["total"])))


def dollars(text):
    """The page's money: "$" and the API's digits, at least two decimals."""
    whole, _, frac = text.partition(".")
    return "$" + whole + "." + (frac + "00")[:max(2, len(frac))]


# ---- /metrics ---------------------------------------------------------------

SERIES = re.compile(r'^costplane_request_cost_usd_(sum|count)\{service="([^"]*)",route="([^"]*)"\} (\S+)$', re.M)


def scrape(server, key):
    status, _, body = api_request(server, "/metrics", key=key)
    assert status == 200, body[:500]
    text = body.decode()
    assert "# TYPE costplane_request_cost_usd summary\n" in text, text[:2000]
    got = {}
    for kind, service, route, value in SERIES.findall(text):
        got.setdefault((service, route), {})[kind] = Decimal(value)
    return got


def test_metrics_summarise_cost_per_request_as_the_api_does(dataset):  # noqa: F811 (the fixture imported above)
    server = dataset
    this_month()
    tele = telemetry(server, {("acme", "shop", "traces"): 4, ("acme", "recs", "traces"): 3, ("acme", "shop", "logs"): 1,
                              ("globex", "shop", "traces"): 2})
    for key in [ADMIN, ACME, GLOBEX]:
        got = scrape(server, key)
        api = month_to_date(server, key, "service,route")
        # Under the default cap (100) every route keeps its series.
        assert got == {(g["service"], g["route"]): {"sum": Decimal(g["cost"]["total"]), "count": Decimal(g["requests"])}
                       for g in api["groups"]}, (key, got, api["groups"])
        if key == ADMIN:
            # 0.012 + 0.0225 + telemetry over 3 requests; cron: 0.01 + its telemetry, 1 request.
            assert got[("shop", "/checkout")] == {"sum": Decimal("0.0345") + tele, "count": 3}
            assert got[("shop", "/items/{id}")]["count"] == 1 and got[("recs", "/recommend")]["count"] == 1
            assert set(got) >= {("shop", "/checkout"), ("shop", "/items/{id}"), ("recs", "/recommend"), ("cron", "nightly-report")}
        elif key == ACME:
            # t1 and t2 only: 0.011 LLM + 0.01 compute + their telemetry.
            assert got[("shop", "/checkout")]["count"] == 2
            assert got[("shop", "/checkout")]["sum"] > Decimal("0.021")
        else:
            # globex: t5 only, compute unknown: 0.001 + telemetry of its 2 spans.
            assert set(got) == {("shop", "/checkout")} and got[("shop", "/checkout")]["count"] == 1


# ---- the web page -----------------------------------------------------------

def table(page, table_id):
    return page.eval_on_selector_all(
        f"#{table_id} tbody tr[data-key]",
        "rows => rows.map(r => [r.dataset.key, ...[...r.cells].map(c => c.textContent)])",
    )


def compute_cell(g):
    if g["cost"]["compute"] is None:
        return "unknown"
    unknown = g["compute"]["requests_unknown"]
    return dollars(g["cost"]["compute"]) + (f" (+{unknown} unknown)" if unknown else "")


def expected_cells(g):
    return [f"{g['requests']:,}", g["p50_seconds"], g["p95_seconds"], g["error_ratio"], dollars(g["cost"]["llm"]), compute_cell(g),
            dollars(g["cost"]["telemetry"]), dollars(g["cost"]["total"]), dollars(g["cost"]["per_request"])]


def test_the_page_shows_the_apis_unit_costs(dataset, browser):  # noqa: F811 (the fixtures imported above)
    server = dataset
    this_month()
    page = browser.new_page(viewport={"width": 1400, "height": 2600})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"http://127.0.0.1:{server.api_port}/")
    page.wait_for_selector("#key-form:not([hidden])")
    errors.clear()  # the 401 before a key is given
    for key in [ADMIN, ACME]:
        page.evaluate("document.body.dataset.loaded = ''")
        page.click("#key-button")
        page.fill("#key-input", key)
        page.click("#key-form button[type=submit]")
        page.wait_for_selector("body[data-loaded=true]", timeout=30000)
        routes = per_request_order(month_to_date(server, key, "service,route")["groups"])
        assert table(page, "unit-routes") == [
            [f"{g['service']} {g['route']}", g["service"], g["route"], *expected_cells(g)] for g in routes[:10]]
        customers = per_request_order(month_to_date(server, key, "customer")["groups"])
        assert table(page, "unit-customers") == [[g["customer"], g["customer"], *expected_cells(g)] for g in customers[:10]]
        shown = {r[0]: r for r in table(page, "unit-routes")}
        if key == ADMIN:
            # Hand-worked: /checkout 3 requests, p50 0.3 s, p95 0.5 s, 1 error in 3;
            # compute (100 + 300 + 500) / 1000 x 0.025 = 0.0225; recs' compute unknown.
            assert shown["shop /checkout"][3:9] == ["3", "0.3", "0.5", "0.333333", "$0.012", "$0.0225"]
            assert shown["recs /recommend"][8] == "unknown"
            # alice: t1 shop + t3 on web-1 = 200 / 1000 x 0.025 = 0.005; t1's recs request unknown.
            alice = {r[0]: r for r in table(page, "unit-customers")}["alice"]
            assert alice[7] == "$0.005 (+1 unknown)", alice
            page.screenshot(path=str(output_dir() / f"web-unit-costs-{server.store}.png"), full_page=True)
        else:
            # acme's key: its own requests only (no globex /checkout request).
            assert shown["shop /checkout"][3] == "2" and shown["shop /checkout"][8] == "$0.01"
    assert errors == [], errors


# ---- the monthly report -----------------------------------------------------

class Rows(HTMLParser):
    """The cells of the report's table#unit-routes."""

    def __init__(self):
        super().__init__()
        self.inside, self.rows, self.cell = False, [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and ("id", "unit-routes") in attrs:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag == "td":
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False
        elif self.inside and tag == "td":
            self.rows[-1].append(self.cell)
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def test_the_report_lists_the_routes_costing_most_per_request(dataset, tmp_path):  # noqa: F811 (the fixture imported above)
    server, nxt = dataset, next_month()
    for key, extra in [(ADMIN, []), (ADMIN, ["--tenant", "acme"])]:
        out = tmp_path / ("all" if not extra else "acme")
        run = subprocess.run(
            [costplane_bin(), "report", "--month", MONTH, "--out", str(out), "--no-pdf", "--api-key", key,
             "--http-addr", f"127.0.0.1:{server.api_port}", *extra],
            capture_output=True, text=True, timeout=180)
        assert run.returncode == 0, run.stderr
        parser = Rows()
        parser.feed(next(out.glob("*.html")).read_text())
        tenant = "&tenant=acme" if extra else ""
        api = get(server, f"/api/v1/unit-costs?from={MONTH}-01&to={nxt}&group_by=service,route&limit=10000{tenant}")
        usd = lambda d: f"{d} USD"  # noqa: E731
        want = [[g["service"], g["route"], str(g["requests"]), g["p50_seconds"], g["p95_seconds"], g["error_ratio"], usd(g["cost"]["llm"]),
                 "unknown" if g["cost"]["compute"] is None else usd(g["cost"]["compute"]), usd(g["cost"]["telemetry"]),
                 usd(g["cost"]["total"]), usd(g["cost"]["per_request"])] for g in per_request_order(api["groups"])[:10]]
        assert parser.rows[1:] == want, (parser.rows, want)
        routes = {(r[0], r[1]): r for r in parser.rows[1:]}
        if not extra:
            # Hand-worked: /checkout costs (0.012 + 0.0225) / 3 = 0.0115 per request before telemetry, cron's one
            # request 0.01; telemetry adds a few 1e-5 per request (25 $/GiB, under a KiB an item), so the order holds.
            assert [r[:2] for r in parser.rows[1:3]] == [["shop", "/checkout"], ["cron", "nightly-report"]]
            assert parser.rows[2][7] == "unknown"
            assert routes[("shop", "/checkout")][6] == "0.012 USD" and routes[("shop", "/checkout")][7] == "0.0225 USD"
        else:
            assert routes[("shop", "/checkout")][2] == "2" and routes[("shop", "/checkout")][7] == "0.01 USD"
