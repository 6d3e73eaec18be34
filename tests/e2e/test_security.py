"""Security end to end, against the real binary: ingest keys pin the tenant
(whatever the spans claim) on OTLP/HTTP and OTLP/gRPC, sent by the Python
SDK through OTEL_EXPORTER_OTLP_HEADERS; requests without a key are 401 /
UNAUTHENTICATED; provided costs count only from trusted keys; tenant API keys
see only their rows; per-tenant rate limits answer 429 with Retry-After (and
RESOURCE_EXHAUSTED with RetryInfo) without touching other tenants; the SQL
endpoint cannot change the store; a web page cannot use the API."""

import json
import time
import urllib.error
import urllib.request
from decimal import Decimal

import grpc
import pytest
from conftest import Server, clickhouse_url_for_tests
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

ADMIN = "admin-api-key-0123456789"
ACME_API = "acme-api-key-0123456789"
ACME_INGEST = "acme-ingest-key-0123456789"
GLOBEX_INGEST = "globex-ingest-key-0123456789"

KEYS = f"""
[[api.keys]]
key = "{ADMIN}"
role = "admin"
[[api.keys]]
key = "{ACME_API}"
tenant = "acme"
[ingest]
header = "x-costplane-key"
[[ingest.keys]]
key = "{ACME_INGEST}"
tenant = "acme"
[[ingest.keys]]
key_env = "COSTPLANE_TEST_GLOBEX_INGEST"
tenant = "globex"
trust_provided_cost = true
"""


def start(tmp_path, request_param, config_text, env=None):
    config = tmp_path / "costplane.toml"
    config.write_text(config_text)
    url, front = (None, None)
    if request_param == "clickhouse":
        url, front = clickhouse_url_for_tests(tmp_path)
    server = Server(tmp_path, extra_args=["--config", str(config)], store=request_param, clickhouse_url=url)
    server.front = front
    return server


def stop(server):
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()
    if server.front:
        server.front.stop()


@pytest.fixture(params=["duckdb", "clickhouse"])
def keyed(request, tmp_path, monkeypatch):
    # The server reads this key through key_env.
    monkeypatch.setenv("COSTPLANE_TEST_GLOBEX_INGEST", GLOBEX_INGEST)
    server = start(tmp_path, request.param, KEYS)
    yield server
    stop(server)


def call(server, path, key=None, method="GET", body=None, headers=None, port=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port or server.api_port}{path}", method=method)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        if not req.has_header("Content-type"):
            req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, data=data, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def sql(server, query, key=ADMIN):
    status, _, body = call(server, "/api/v1/sql", key=key, method="POST", body={"sql": query})
    assert status == 200, body
    return json.loads(body)["rows"]


def wait_rows(server, query, want, key=ADMIN):
    deadline = time.time() + 30
    while True:
        rows = sql(server, query, key)
        if rows == want or time.time() > deadline:
            return rows
        time.sleep(0.2)


def send_span(exporter, claimed_tenant, name, attributes):
    provider = TracerProvider(resource=Resource.create({"service.name": "assistant", "tenant.id": claimed_tenant}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("security-test").start_as_current_span(name) as span:
        for k, v in attributes.items():
            span.set_attribute(k, v)
    provider.shutdown()


def otlp_json(n, tenant, first=1):
    now = time.time_ns()
    spans = [{"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": f"{first + i:016x}", "name": "op", "kind": 1,
              "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 1000)} for i in range(n)]
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}},
                                    {"key": "tenant.id", "value": {"stringValue": tenant}}]},
        "scopeSpans": [{"spans": spans}]}]}).encode()


def test_ingest_keys_pin_the_tenant_and_tenants_see_only_their_rows(keyed, monkeypatch):
    server = keyed
    # The acme key, through OTEL_EXPORTER_OTLP_HEADERS, on a span that claims
    # to be globex's and carries its own (untrusted) cost of 9.99 for a model
    # no price covers: a trusted cost would fill in (cost.provided_cost =
    # "when_unpriced"), an untrusted one must not.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{ACME_INGEST}")
    send_span(HttpSpanExporter(endpoint=f"http://127.0.0.1:{server.http_port}/v1/traces"), "globex", "chat http", {
        "gen_ai.request.model": "in-house-llm", "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 100,
        "cost.usd": "9.99"})
    # The same key in the configured header, over gRPC.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"x-costplane-key={ACME_INGEST}")
    send_span(GrpcSpanExporter(endpoint=f"127.0.0.1:{server.grpc_port}", insecure=True), "globex", "chat grpc", {
        "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 100})
    # globex's key is trusted with provided costs: its 0.5 for an unpriced
    # model is billed as given, to globex, though the span claims acme.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{GLOBEX_INGEST}")
    send_span(HttpSpanExporter(endpoint=f"http://127.0.0.1:{server.http_port}/v1/traces"), "acme", "llm call", {
        "cost.model": "in-house-llm", "cost.tokens.prompt": 10, "cost.tokens.completion": 5, "cost.usd": "0.5"})

    stored = wait_rows(server, "SELECT SpanName, ResourceAttributes['tenant.id'] FROM otel_traces ORDER BY SpanName",
                       [["chat grpc", "acme"], ["chat http", "acme"], ["llm call", "globex"]])
    assert stored == [["chat grpc", "acme"], ["chat http", "acme"], ["llm call", "globex"]]
    # The stored span keeps the cost it carried; only the bill ignores it.
    assert sql(server, "SELECT SpanAttributes['cost.usd'] FROM otel_traces WHERE SpanName = 'chat http'") == [["9.99"]]
    # acme's gpt-4o span: 1,000 x 2.50/M + 100 x 10/M = 0.0025 + 0.001 = 0.0035;
    # its in-house-llm span is unpriced ($0, flagged), not 9.99.
    # globex: 0.5 as provided.
    q = "SELECT x_Tenant, sum(BilledCost) FROM costplane_ledger WHERE x_Source = 'llm' GROUP BY x_Tenant ORDER BY x_Tenant"
    deadline = time.time() + 60
    while True:
        bills = {t: Decimal(str(c)) for t, c in sql(server, q)}
        if bills == {"acme": Decimal("0.0035"), "globex": Decimal("0.5")} or time.time() > deadline:
            break
        time.sleep(0.2)
    assert bills == {"acme": Decimal("0.0035"), "globex": Decimal("0.5")}

    # No key, or a wrong one: 401 on HTTP, UNAUTHENTICATED on gRPC; nothing stored.
    for headers in ({}, {"Authorization": "Bearer not-a-key-0123456789"}, {"x-costplane-key": ADMIN}):
        status, _, body = call(server, "/v1/traces", method="POST", body=otlp_json(1, "acme"), port=server.http_port,
                               headers={"Content-Type": "application/json", **headers})
        assert status == 401, body
        assert "key" in json.loads(body)["message"]
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.Export(trace_service_pb2.ExportTraceServiceRequest(), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        stub.Export(trace_service_pb2.ExportTraceServiceRequest(), metadata=[("authorization", f"Bearer {ACME_INGEST}")],
                    timeout=10)
    assert sql(server, "SELECT count(*) FROM otel_traces") == [[3]]

    # The acme API key sees acme's rows only, in every endpoint.
    y, m = time.gmtime().tm_year, time.gmtime().tm_mon
    window = f"from={y}-{m:02d}-01&to={y + (m == 12)}-{m % 12 + 1:02d}-01"
    status, _, body = call(server, f"/api/v1/costs?{window}&group_by=tenant", key=ACME_API)
    assert status == 200, body
    assert {r["tenant"] for r in json.loads(body)["rows"]} == {"acme"}
    month = time.strftime("%Y-%m", time.gmtime())
    for fmt in ("csv", "focus"):
        status, _, body = call(server, f"/api/costs/export?month={month}&format={fmt}", key=ACME_API)
        assert status == 200, body
        text = body.decode()
        assert "acme" in text and "globex" not in text, text
    status, _, body = call(server, "/metrics", key=ACME_API)
    assert status == 200
    text = body.decode()
    assert 'tenant="acme"' in text and 'tenant="globex"' not in text, text
    status, _, admin_metrics = call(server, "/metrics", key=ADMIN)
    assert 'tenant="globex"' in admin_metrics.decode()
    assert server.terminate() == 0
    # Secrets never reach the log.
    log = server.log()
    for secret in (ADMIN, ACME_API, ACME_INGEST, GLOBEX_INGEST):
        assert secret not in log


def test_require_match_refuses_a_claim_for_another_tenant(tmp_path):
    server = start(tmp_path, "duckdb", f"""
[ingest]
tenant_mode = "require_match"
[[ingest.keys]]
key = "{ACME_INGEST}"
tenant = "acme"
""")
    try:
        post = lambda tenant: call(server, "/v1/traces", method="POST", body=otlp_json(1, tenant), port=server.http_port,
                                   headers={"Content-Type": "application/json", "Authorization": f"Bearer {ACME_INGEST}"})
        status, _, body = post("globex")
        assert status == 403, body
        assert "globex" in json.loads(body)["message"]
        assert post("acme")[0] == 200
        assert "ingest keys required" in server.log()
    finally:
        stop(server)


def test_a_tenant_over_its_rate_gets_429_and_others_do_not(tmp_path, monkeypatch):
    monkeypatch.setenv("COSTPLANE_TEST_GLOBEX_INGEST", GLOBEX_INGEST)
    # 1 item per second, 3 seconds of burst: a bucket of 3 spans per tenant.
    server = start(tmp_path, "duckdb", KEYS + "\n[ingest.rate_limit]\nitems_per_second = 1\nburst_seconds = 3\n")
    try:
        def post(key, n, first):
            return call(server, "/v1/traces", method="POST", body=otlp_json(n, "whatever", first), port=server.http_port,
                        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
        assert post(ACME_INGEST, 3, 1)[0] == 200
        status, headers, body = post(ACME_INGEST, 3, 10)
        assert status == 429, body
        # The bucket is empty; 3 spans at 1/s refill in about 3 s.
        assert 1 <= int(headers["Retry-After"]) <= 3
        assert "rate limit" in json.loads(body)["message"]
        # globex has its own bucket.
        assert post(GLOBEX_INGEST, 3, 20)[0] == 200
        # gRPC: RESOURCE_EXHAUSTED with RetryInfo.
        request = _protobuf_spans(2)
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.Export(request, metadata=[("authorization", f"Bearer {ACME_INGEST}")], timeout=10)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            details = dict(err.value.trailing_metadata())["grpc-status-details-bin"]
            status_proto = status_pb2.Status.FromString(details)
            info = error_details_pb2.RetryInfo()
            assert status_proto.details[0].Unpack(info)
            assert 0 < info.retry_delay.seconds + info.retry_delay.nanos / 1e9 <= 3
        rows = wait_rows(server, "SELECT ResourceAttributes['tenant.id'], count(*) FROM otel_traces GROUP BY 1 ORDER BY 1",
                         [["acme", 3], ["globex", 3]])
        assert rows == [["acme", 3], ["globex", 3]]
    finally:
        stop(server)


def _protobuf_spans(n):
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1 import trace_pb2
    now = time.time_ns()
    rs = trace_pb2.ResourceSpans()
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="svc")))
    ss = rs.scope_spans.add()
    for i in range(n):
        ss.spans.append(trace_pb2.Span(trace_id=bytes(range(16)), span_id=(100 + i).to_bytes(8, "big"), name="op",
                                       start_time_unix_nano=now, end_time_unix_nano=now + 1000))
    return trace_service_pb2.ExportTraceServiceRequest(resource_spans=[rs])


HOSTILE = [
    "WITH x AS (SELECT 1) DELETE FROM costplane_ledger",
    "WITH x AS (SELECT 1) DELETE FROM otel_traces WHERE 1 = 1",
    "EXPLAIN ANALYZE DELETE FROM otel_traces",
    "DELETE FROM otel_traces WHERE 1 = 1",
    "DROP TABLE otel_traces",
    "SELECT 1; DELETE FROM otel_traces WHERE 1 = 1",
    "COPY otel_traces TO '/tmp/costplane-out.csv'",
    "ATTACH '/tmp/costplane-other.db' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET max_memory_usage = 1",
    "PRAGMA enable_profiling",
    "CALL pragma_version()",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM url('http://127.0.0.1:9/x', CSV, 'a String')",
    "SELECT * FROM file('/etc/passwd', LineAsString)",
]


def test_the_sql_endpoint_cannot_write_and_a_web_page_cannot_use_the_api(server):
    status, _, body = call(server, "/v1/traces", method="POST", body=otlp_json(2, "acme"), port=server.http_port,
                           headers={"Content-Type": "application/json"})
    assert status == 200, body
    count = "SELECT (SELECT count(*) FROM otel_traces), (SELECT count(*) FROM costplane_ledger)"
    before = wait_rows(server, "SELECT count(*) FROM otel_traces", [[2]])
    assert before == [[2]]
    before = sql(server, count)
    for statement in HOSTILE:
        status, _, body = call(server, "/api/v1/sql", method="POST", body={"sql": statement})
        assert status == 400, (statement, body)
        assert json.loads(body)["error"], statement
        assert sql(server, count) == before, statement
    status, _, body = call(server, "/api/v1/sql", method="POST", body={"sql": "SELECT * FROM otel_traces"})
    assert status == 200 and len(json.loads(body)["rows"]) == 2

    # CSRF: a text/plain post (what a form or fetch without preflight sends),
    # a foreign Origin, and a rebinding Host are refused; nothing ran.
    plain = {"Content-Type": "text/plain"}
    status, _, body = call(server, "/api/v1/sql", method="POST", body=b'{"sql": "SELECT 1"}', headers=plain)
    assert status == 415, body
    status, _, body = call(server, "/api/v1/reprice", method="POST", body=b'{"from": "2026-10-01", "to": "2026-11-01"}',
                           headers=plain)
    assert status == 415, body
    status, _, body = call(server, "/api/v1/sql", method="POST", body={"sql": "SELECT 1"},
                           headers={"Origin": "https://evil.example"})
    assert status == 403, body
    status, _, body = call(server, "/api/v1/costs?from=2026-10-01&to=2026-11-01",
                           headers={"Host": f"rebound.evil.example:{server.api_port}"})
    assert status == 403, body
    status, _, body = call(server, "/api/v1/sql", method="POST", body={"sql": "SELECT 1"},
                           headers={"Origin": f"http://127.0.0.1:{server.api_port}"})
    assert status == 200, body
    assert "ingest is open" in server.log()
