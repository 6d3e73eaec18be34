"""A real Prometheus (Debian's 2.42) scraping a running costplane every
second with deploy/prometheus/costplane-rules.yaml loaded, as deployed.

LLM spans with hand-computed costs go in; Prometheus's HTTP API must then
show the recorded series equal to those dollars, every rule healthy, the
budget alert pending, and every Prometheus panel query of the Grafana
dashboards (template variables substituted) running without error, the
overview's cost stats equal to the same dollars.

Money through Prometheus is a float: "equal" below means equal to 1e-12,
far below a cent's billionth, which is what float64 keeps of these sums.
"""

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from decimal import Decimal

import pytest
from conftest import ROOT, Server, free_port
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

sys.path.insert(0, str(ROOT / "tests/support"))
import dashboards  # noqa: E402

RULES = ROOT / "deploy/prometheus/costplane-rules.yaml"

# Round 1 (creates the counter series):
#   acme gpt-4o: 10,000 input of which 4,000 cache reads, 500 output;
#     gpt-4o since 2024-10-01: 6,000 x 2.50/M + 4,000 x 1.25/M + 500 x 10/M
#     = 0.015 + 0.005 + 0.005 = 0.025
#   acme claude-3-5-sonnet: 1,000 x 3/M + 200 x 15/M = 0.003 + 0.003 = 0.006
#   globex mystery-llm-7b: no price; 42 + 7 = 49 unpriced tokens, $0.
ROUND_1 = [
    ("acme", {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "gen_ai.operation.name": "chat",
              "gen_ai.usage.input_tokens": 10000, "gen_ai.usage.cache_read.input_tokens": 4000,
              "gen_ai.usage.output_tokens": 500}),
    ("acme", {"gen_ai.system": "anthropic", "gen_ai.request.model": "claude-3-5-sonnet-20241022", "gen_ai.operation.name": "chat",
              "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 200}),
    ("globex", {"gen_ai.request.model": "mystery-llm-7b", "gen_ai.operation.name": "chat",
                "gen_ai.usage.input_tokens": 42, "gen_ai.usage.output_tokens": 7}),
]
# Round 2 (adds to the same series):
#   acme gpt-4o: 1,000 x 2.50/M + 100 x 10/M = 0.0025 + 0.001 = 0.0035
#   acme claude-3-5-sonnet: 2,000 x 3/M + 400 x 15/M = 0.006 + 0.006 = 0.012
ROUND_2 = [
    ("acme", {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "gen_ai.operation.name": "chat",
              "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 100}),
    ("acme", {"gen_ai.system": "anthropic", "gen_ai.request.model": "claude-3-5-sonnet-20241022", "gen_ai.operation.name": "chat",
              "gen_ai.usage.input_tokens": 2000, "gen_ai.usage.output_tokens": 400}),
]
ROUND_1_ACME = Decimal("0.025") + Decimal("0.006")  # 0.031
ROUND_2_ACME = Decimal("0.0035") + Decimal("0.012")  # 0.0155
ACME_TOTAL = ROUND_1_ACME + ROUND_2_ACME  # 0.0465
ACME_BUDGET = Decimal("0.05")  # 0.0465 / 0.05 = 0.93: over 90%
UNPRICED_TOKENS = 42 + 7


def close(value, expected, what=""):
    assert abs(Decimal(value) - Decimal(expected)) < Decimal("1e-12"), f"{what}: {value} != {expected}"


class Prometheus:
    def __init__(self, tmp_path, target_port, api_key=None):
        self.port = free_port()
        config = tmp_path / "prometheus.yml"
        scrape = {"job_name": "costplane", "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}
        if api_key:
            # As the chart's ServiceMonitor scrapes: the admin key as a bearer token.
            scrape["authorization"] = {"type": "Bearer", "credentials": api_key}
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [scrape],
        }))
        self.log_path = tmp_path / "prometheus.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [shutil.which("prometheus") or "/usr/bin/prometheus", f"--config.file={config}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=self._log,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"prometheus did not become ready:\n{self.log_path.read_text()}")

    def api(self, path, **params):
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read())

    def query(self, expr):
        """The instant vector of `expr` as {frozenset(labels): value}."""
        body = self.api("query", query=expr)
        assert body["status"] == "success", f"{expr}: {body}"
        result = body["data"]["result"]
        if body["data"]["resultType"] == "scalar":
            return {frozenset(): result[1]}
        return {frozenset(s["metric"].items()): s["value"][1] for s in result}

    def one(self, expr, **labels):
        for k, v in self.query(expr).items():
            if all((name, value) in k for name, value in labels.items()):
                return v
        return None

    def wait(self, what, check, timeout=60):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                if check():
                    return
            except AssertionError as e:
                last = e
            time.sleep(0.5)
        raise AssertionError(f"waited {timeout}s for {what}: {last}\n{self.log_path.read_text()[-3000:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self._log.close()


def send_invalid_span(server):
    """One span whose trace id is 2 bytes, not 16: rejected (partial success)."""
    now = time.time_ns()
    body = json.dumps({"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": [{
        "traceId": "0102", "spanId": "0102030405060708", "name": "bad", "kind": 1,
        "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 1000)}]}]}]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{server.http_port}/v1/traces", data=body,
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        answer = json.loads(r.read())
    assert answer["partialSuccess"]["rejectedSpans"] in ("1", 1), answer


def send(server, spans):
    now = time.time_ns()
    for tenant in ("acme", "globex"):
        provider = TracerProvider(resource=Resource.create(
            {"service.name": "assistant", "service.namespace": "ai", "tenant.id": tenant}))
        provider.add_span_processor(SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=f"http://127.0.0.1:{server.http_port}/v1/traces")))
        tracer = provider.get_tracer("prometheus-e2e")
        for i, (t, attrs) in enumerate(spans):
            if t == tenant:
                span = tracer.start_span("chat", start_time=now + i * 1000, attributes=attrs)
                span.end(end_time=now + i * 1000 + 250_000_000)
        provider.shutdown()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """costplane (embedded store) with only LLM spend priced, and Prometheus
    scraping it, after both rounds of spans."""
    if not shutil.which("prometheus"):
        pytest.fail("Debian's prometheus package is not installed (scripts/test.sh installs it)")
    tmp = tmp_path_factory.mktemp("prometheus-e2e")
    config = tmp / "costplane.toml"
    config.write_text(
        '[cost]\ningest_per_gib = "0"\nqueries_per_1000 = "0"\n'
        '[metrics]\ncache_ttl = "1s"\n'
        f'[metrics.budgets]\nacme = "{ACME_BUDGET}"\n'
        # The same amount as a [[budgets]] entry: its gauges, the budget
        # ratio rule and the alert's budget form. Evaluated every second;
        # the spend is in open (provisional) hours, which budgets count.
        '[anomalies]\ninterval = "1s"\n'
        f'[[budgets]]\nid = "acme-llm"\nscope = {{ tenant = "acme", source = "llm" }}\nperiod = "month"\namount = "{ACME_BUDGET}"\n'
    )
    server = Server(tmp, extra_args=["--config", str(config)])
    prom = Prometheus(tmp, server.api_port)
    try:
        send(server, ROUND_1)
        prom.wait("round 1 in Prometheus", lambda: prom.one("sum(costplane_cost_usd_total)") is not None
                  and Decimal(prom.one("sum(costplane_cost_usd_total)")) > 0)
        # Let a few scrapes of the round-1 values land, so round 2 is an
        # increase of existing series.
        time.sleep(5)
        send(server, ROUND_2)
        prom.wait("round 2 in Prometheus", lambda: abs(Decimal(prom.one("sum(costplane_cost_usd_total)")) - ACME_TOTAL) < Decimal("1e-12"))
        send_invalid_span(server)
        yield server, prom
    finally:
        prom.stop()
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def test_scraped_counters_equal_the_hand_computed_dollars(stack):
    _, prom = stack
    # The counter: everything booked, per tenant and model.
    close(prom.one("sum by (tenant) (costplane_cost_usd_total)", tenant="acme"), ACME_TOTAL, "acme booked")
    close(prom.one('sum by (model) (costplane_cost_usd_total{tenant="acme"})', model="gpt-4o"),
          Decimal("0.025") + Decimal("0.0035"), "gpt-4o")
    close(prom.one("sum(costplane_unpriced_tokens_total)"), UNPRICED_TOKENS, "unpriced tokens")
    # Health: 3 + 2 spans accepted, 1 rejected.
    assert prom.one('sum(costplane_ingest_items_total{signal="traces"})') == "5"
    prom.wait("the rejected span", lambda: prom.one('sum(costplane_ingest_rejected_items_total{signal="traces"})') == "1")
    # Scraped as OpenMetrics (Prometheus asks for it first): the family's
    # metadata is named without _total, as OpenMetrics names counters.
    meta = prom.api("metadata", metric="costplane_cost_usd")["data"]
    assert meta["costplane_cost_usd"][0]["type"] == "counter", meta
    # Every scrape answered, and within a second (the slowest over the run).
    assert prom.one('min_over_time(up{job="costplane"}[1m])') == "1"
    slowest = float(prom.one('max_over_time(scrape_duration_seconds{job="costplane"}[1m])'))
    assert slowest < 1, slowest
    print(f"slowest /metrics scrape: {slowest * 1000:.1f} ms")


def test_recorded_series_equal_the_hand_computed_dollars(stack):
    _, prom = stack

    def recorded():
        close(prom.one("tenant:costplane_cost_month_to_date_usd:sum", tenant="acme"), ACME_TOTAL, "acme month to date")
        close(prom.one("tenant:costplane_cost_month_to_date_usd:sum", tenant="globex"), 0, "globex: unpriced is $0")
        close(prom.one("service:costplane_cost_month_to_date_usd:sum", service="assistant"), ACME_TOTAL, "service")
        close(prom.one("source:costplane_cost_month_to_date_usd:sum", source="llm"), ACME_TOTAL, "source")
        close(prom.one("cost_type:costplane_cost_month_to_date_usd:sum", cost_type="llm"), ACME_TOTAL, "cost type")
        close(prom.one("costplane:costplane_cost_month_to_date_usd:sum"), ACME_TOTAL, "total")
        # 0.0465 / 0.05 = 0.93
        close(prom.one("tenant:costplane_cost_month_to_date_usd_per_budget:ratio", tenant="acme"), Decimal("0.93"), "budget")
        close(prom.one("budget:costplane_budget_spent:ratio", budget="acme-llm", period="month"), Decimal("0.93"), "[[budgets]] ratio")
        close(prom.one("costplane_budget_usd", budget="acme-llm"), ACME_BUDGET, "[[budgets]] amount")
        return True

    prom.wait("recorded month-to-date series", recorded, timeout=30)
    # The hour's increase of existing series is round 2, 0.0155. increase()
    # extrapolates to the window's ends (at most about one scrape interval of
    # slope past samples spread over more than 5 s), so it may read a little
    # more, never less.
    for rule in ("tenant:costplane_cost_usd:increase1h", "service:costplane_cost_usd:increase1h",
                 "source:costplane_cost_usd:increase1h", "cost_type:costplane_cost_usd:increase1h"):
        values = [Decimal(v) for v in prom.query(rule).values()]
        top = max(values)
        assert ROUND_2_ACME - Decimal("1e-12") <= top <= ROUND_2_ACME * Decimal("1.3"), f"{rule}: {values}"


def test_every_rule_is_healthy_and_the_budget_alert_is_pending(stack):
    _, prom = stack

    def healthy():
        groups = prom.api("rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert len(rules) == 31, len(rules)
        bad = [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"]
        assert bad == [], bad
        return True

    prom.wait("every rule evaluated and healthy", healthy, timeout=30)

    def pending():
        alerts = prom.api("alerts")["data"]["alerts"]
        budget = [a for a in alerts if a["labels"]["alertname"] == "CostplaneBudgetThreshold"]
        by_tenant = [a for a in budget if "budget" not in a["labels"]]
        by_budget = [a for a in budget if "budget" in a["labels"]]
        assert [a["labels"]["tenant"] for a in by_tenant] == ["acme"], alerts
        assert [a["labels"]["budget"] for a in by_budget] == ["acme-llm"], alerts
        assert {a["state"] for a in budget} == {"pending"}  # for: 15m
        assert by_tenant[0]["annotations"]["description"] == "Tenant acme (* = all tenants) has spent 93% of its monthly budget."
        assert by_budget[0]["annotations"]["description"] == "Budget acme-llm has spent 93% of its amount this month."
        return True

    prom.wait("the budget alert", pending, timeout=30)

    def dropping():
        alerts = prom.api("alerts")["data"]["alerts"]
        drops = [a for a in alerts if a["labels"]["alertname"] == "CostplaneDroppingData"]
        assert [(a["labels"]["signal"], a["state"]) for a in drops] == [("traces", "firing")], alerts  # no for: at once
        assert drops[0]["labels"]["severity"] == "critical"
        return True

    prom.wait("the rejected span's alert", dropping, timeout=30)


def test_every_dashboard_promql_runs_and_the_overview_shows_the_dollars(stack):
    _, prom = stack
    queries = list(dashboards.prometheus_queries(variables={"service": "assistant", "tenant": "acme", "model": "gpt-4o"}))
    assert len(queries) >= 20, len(queries)
    for where, expr in queries:
        body = prom.api("query", query=expr)
        assert body["status"] == "success", f"{where}: {expr}: {body}"
    # Query variables (label_values(metric, label)) offer the sent values.
    variables = list(dashboards.prometheus_variables())
    assert variables
    for where, metric, label in variables:
        values = prom.api(f"label/{label}/values", **{"match[]": metric})["data"]
        assert "assistant" in values or "acme" in values, f"{where}: {values}"
    overview = {where: expr for where, expr in queries if where.startswith("costplane-cost-overview/")}
    # The overview's stats: 30-day total and month to date, both 0.0465.
    close(prom.one(overview["costplane-cost-overview/30-day total/A"]), ACME_TOTAL, "30-day total")
    close(prom.one(overview["costplane-cost-overview/Month to date/A"]), ACME_TOTAL, "month to date")
    close(prom.one(overview["costplane-cost-overview/Top tenants (month to date)/A"], tenant="acme"), ACME_TOTAL, "top tenants")
    close(prom.one(overview["costplane-cost-overview/Month to date by source/A"], source="llm"), ACME_TOTAL, "by source")
    close(prom.one(overview["costplane-cost-overview/Month to date by cost type/A"], cost_type="llm"), ACME_TOTAL, "by cost type")
    close(prom.one(overview["costplane-cost-overview/Month to date by service/A"], service="assistant"), ACME_TOTAL, "by service")
