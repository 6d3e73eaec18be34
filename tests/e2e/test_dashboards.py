"""The Grafana dashboards and provisioning files: their JSON checked against
the rules Grafana's file provisioning and the dashboard sidecar need, and
every ClickHouse panel query (macros expanded as the plugin does) run on
ClickHouse's engine over data costplane itself wrote there. The Prometheus
panel queries run in test_prometheus.py against a real Prometheus."""

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
import yaml
from conftest import ROOT, Server, clickhouse_url_for_tests
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode, set_span_in_context

sys.path.insert(0, str(ROOT / "tests/support"))
import dashboards  # noqa: E402

UIDS = {
    "costplane-cost-overview", "costplane-service", "costplane-shared", "costplane-anomalies",
    "costplane-llm", "costplane-telemetry", "costplane-health", "costplane-unit-costs",
}


def provisioned():
    """{uid: type} of the provisioned datasources, and the providers."""
    ds_file = yaml.safe_load((dashboards.PROVISIONING / "datasources/costplane.yaml").read_text())
    providers = yaml.safe_load((dashboards.PROVISIONING / "dashboards/costplane.yaml").read_text())
    assert ds_file["apiVersion"] == 1 and providers["apiVersion"] == 1
    return {d["uid"]: d["type"] for d in ds_file["datasources"]}, providers["providers"]


def test_the_files_are_what_the_generator_writes():
    out = subprocess.run([sys.executable, str(ROOT / "scripts/grafana_dashboards.py"), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_provisioning_files():
    sources, providers = provisioned()
    assert sources == {"prometheus": "prometheus", "clickhouse": "grafana-clickhouse-datasource"}
    assert [p["type"] for p in providers] == ["file"]
    assert providers[0]["options"]["path"]


def test_dashboard_json_model():
    sources, _ = provisioned()
    loaded = dashboards.load()
    assert len(loaded) == 8
    assert {d["uid"] for d in loaded.values()} == UIDS
    for name, d in loaded.items():
        assert "__inputs" not in d, name
        assert d["id"] is None and d["schemaVersion"] == 42 and 8 <= len(d["uid"]) <= 40, name
        variables = {v["name"]: v for v in d["templating"]["list"]}
        ds_vars = {n: v for n, v in variables.items() if v["type"] == "datasource"}
        # Datasource variables default to a provisioned datasource of their type.
        for n, v in ds_vars.items():
            assert sources.get(v["current"]["value"]) == v["query"], (name, n)
        ps = list(dashboards.panels(d))
        ids = [p["id"] for p in ps]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat: {ids}"
        cells = {}
        for p in ps:
            if p["type"] == "text":
                # Text panels read no datasource; they say something.
                assert "datasource" not in p and not p.get("targets") and p["options"]["content"].strip(), (name, p["title"])
            g = p["gridPos"]
            assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, (name, p["title"])
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{name}: {p['title']} overlaps {cells[(x, y)]}"
                    cells[(x, y)] = p["title"]
            for ref in [p["datasource"], *[t["datasource"] for t in p["targets"]]] if p["type"] != "text" else []:
                uid = ref["uid"]
                if uid.startswith("${"):
                    var = ds_vars.get(uid[2:-1])
                    assert var is not None, f"{name}/{p['title']}: {uid} is not a datasource variable"
                    assert var["query"] == ref["type"], (name, p["title"])
                else:
                    assert sources.get(uid) == ref["type"], f"{name}/{p['title']}: {uid} is not provisioned"
        # Every variable is used somewhere: a query, a datasource, another variable.
        text = json.dumps([d["panels"], [v.get("query") for v in d["templating"]["list"]], [v.get("datasource") for v in variables.values()]])
        for n in variables:
            assert f"${n}" in text or "${" + n in text, f"{name}: variable {n} is never used"


# Spans with GenAI usage, a slow one and an error, with logs inside the trace.
def send_telemetry(server):
    base = f"http://127.0.0.1:{server.http_port}"
    resource = Resource.create({"service.name": "assistant", "service.namespace": "ai", "tenant.id": "acme"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces")))
    tracer = provider.get_tracer("dashboards")
    logs = LoggerProvider(resource=resource)
    logs.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{base}/v1/logs")))
    logger = logs.get_logger("dashboards")
    now = time.time_ns()
    span = tracer.start_span("chat gpt-4o", start_time=now - 2_000_000_000, attributes={
        "gen_ai.provider.name": "openai", "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 100})
    span.set_status(Status(StatusCode.ERROR, "upstream timeout"))
    ctx = set_span_in_context(span)
    logger.emit(timestamp=now - 1_000_000_000, severity_number=SeverityNumber.ERROR, body="model call failed", context=ctx)
    trace_id = format(span.get_span_context().trace_id, "032x")
    span.end(end_time=now)  # 2 s: a slow request
    logs.shutdown()
    provider.shutdown()
    return trace_id


def test_every_clickhouse_panel_query_runs_on_data_costplane_wrote(tmp_path):
    url, front = clickhouse_url_for_tests(tmp_path)
    server = Server(tmp_path, store="clickhouse", clickhouse_url=url)
    database = server.store_args[server.store_args.index("--clickhouse-database") + 1]
    try:
        trace_id = send_telemetry(server)

        def run(sql):
            q = urllib.parse.urlencode({"database": database, "query": sql + " FORMAT JSON"})
            req = urllib.request.Request(f"{url}/?{q}", method="POST", data=b"")
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    return json.loads(r.read())["data"]
            except urllib.error.HTTPError as e:
                raise AssertionError(f"{e.code}: {e.read().decode()}\n{sql}") from None

        deadline = time.time() + 30
        # Usage is stored with the telemetry; its ledger rows once the closer
        # has priced the open hour (every ledger.refresh_secs).
        while time.time() < deadline and not (run("SELECT count() AS n FROM otel_logs")[0]["n"]
                                              and run("SELECT count() AS n FROM costplane_usage_llm")[0]["n"]
                                              and run("SELECT count() AS n FROM costplane_ledger WHERE x_Source = 'llm'")[0]["n"]):
            time.sleep(0.2)
        now = int(time.time())
        variables = {"service": "assistant", "min_duration_ms": "500", "trace_id": trace_id, "tenant_attribute": "tenant.id"}
        results = {}
        queries = list(dashboards.clickhouse_queries())
        assert len(queries) >= 9, queries
        for where, raw in queries:
            sql = dashboards.expand_clickhouse(raw, variables, now - 3600, now + 60)
            results[where] = run(sql)
        # With "All" services selected the condition falls away.
        for where, raw in queries:
            if "$__conditionalAll" in raw:
                run(dashboards.expand_clickhouse(raw, variables, now - 3600, now + 60, all_selected={"service"}))
        # The data costplane wrote is what the panels show.
        assert [r["ServiceName"] for r in results["costplane-telemetry/variable service"]] == ["assistant"]
        slow = results["costplane-telemetry/Slow requests/A"]
        assert [(r["TraceId"], r["StatusCode"]) for r in slow] == [(trace_id, "Error")], slow
        assert results["costplane-telemetry/Logs of a trace/A"][0]["body"] == "model call failed"
        assert results["costplane-telemetry/Error logs/A"][0]["body"] == "model call failed"
        assert sum(int(r["errors"]) for r in results["costplane-telemetry/Errors by service/A"]) == 1
        tokens = results["costplane-llm/Prompt and completion tokens/A"]
        assert (sum(int(r["prompt"]) for r in tokens), sum(int(r["completion"]) for r in tokens)) == (1000, 100)
        # gpt-4o: 1,000 x 2.50/M + 100 x 10/M = 0.0025 + 0.001 = 0.0035, one call.
        per_call = results["costplane-llm/Cost per call by model/A"]
        assert [(r["model"], int(r["calls"])) for r in per_call] == [("gpt-4o", 1)], per_call
        assert abs(float(per_call[0]["cost_per_call"]) - 0.0035) < 1e-12
        assert results["costplane-llm/p95 latency by operation/A"][0]["operation"] == "chat"
        assert results["costplane-telemetry/Ingest by tenant/A"], "usage rows per tenant"
        # assistant has no server spans, so its root span is its request (the
        # API's rule): one request of 2 s, an error. The dataset of
        # test_unit_cost_dashboard.py checks these panels against the API.
        [latency] = results["costplane-unit-costs/Latency and errors by route/A"]
        assert (latency["service"], latency["route"], int(latency["requests"]), int(latency["errors"])) == ("assistant", "chat gpt-4o", 1, 1)
        assert (float(latency["error_ratio"]), float(latency["p50_seconds"]), float(latency["p95_seconds"])) == (1, 2, 2), latency
        assert [float(r["p95_seconds"]) for r in results["costplane-unit-costs/p95 latency by route/A"]] == [2]
        assert [float(r["error_ratio"]) for r in results["costplane-unit-costs/Error ratio by route/A"]] == [1]
        # /metrics reads the same ClickHouse ledger: 0.0035 this month and
        # in the last 30 days; ClickHouse reports compression per signal.
        with urllib.request.urlopen(f"http://127.0.0.1:{server.api_port}/metrics", timeout=10) as r:
            metrics = r.read().decode()
        assert "\ncostplane_cost_last_30_days_usd 0.0035\n" in metrics, metrics
        assert 'costplane_store_compression_ratio{signal="traces"} ' in metrics, metrics
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
        if front:
            front.stop()


@pytest.mark.parametrize("raw,expected", [
    ("WHERE $__timeFilter(Timestamp)", "WHERE Timestamp >= toDateTime(10) AND Timestamp <= toDateTime(20)"),
    ("SELECT $__timeInterval(Hour) AS t", "SELECT toStartOfInterval(toDateTime(Hour), INTERVAL 60 second) AS t"),
    ("$__conditionalAll(ServiceName IN (${service:singlequote}), $service)", "ServiceName IN ('a''b')".replace("''", "\\'")),
])
def test_macro_expansion(raw, expected):
    assert dashboards.expand_clickhouse(raw, {"service": "a'b"}, 10, 20) == expected
