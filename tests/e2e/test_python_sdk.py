"""The Python OpenTelemetry SDK's OTLP exporters (gRPC and HTTP) send spans,
logs and metrics to `costplane serve`; after SIGTERM the DuckDB file holds
exactly what was sent."""

from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

# 2030-01-01T00:00:00.123456789Z, in ns: in the future so ClickHouse TTLs keep the
# rows, and not a multiple of 1000 on purpose.
T0 = 1_893_456_000_123_456_789


def resource(service):
    return Resource.create(
        {
            "service.name": service,
            "service.namespace": "shop",
            "tenant.id": "acme",
            "deployment.environment.name": "test",
        }
    )


def exporters(server, kind):
    grpc_endpoint = f"127.0.0.1:{server.grpc_port}"
    base = f"http://127.0.0.1:{server.http_port}"
    if kind == "traces":
        return [
            ("grpc", GrpcSpanExporter(endpoint=grpc_endpoint, insecure=True)),
            ("http", HttpSpanExporter(endpoint=f"{base}/v1/traces", compression=Compression.Gzip)),
        ]
    if kind == "logs":
        return [
            ("grpc", GrpcLogExporter(endpoint=grpc_endpoint, insecure=True)),
            ("http", HttpLogExporter(endpoint=f"{base}/v1/logs")),
        ]
    return [
        ("grpc", GrpcMetricExporter(endpoint=grpc_endpoint, insecure=True)),
        ("http", HttpMetricExporter(endpoint=f"{base}/v1/metrics", compression=Compression.Gzip)),
    ]


def send_traces(server):
    sent = {}
    for proto, exporter in exporters(server, "traces"):
        provider = TracerProvider(resource=resource(f"py-{proto}"))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("e2e.tracer", "2.0")
        for i in range(20):
            start = T0 + i * 1_000_003
            parent = tracer.start_span("checkout", kind=SpanKind.SERVER, start_time=start)
            parent.set_attribute("http.route", "/checkout")
            parent.set_attribute("attempt", i)
            parent.set_attribute("ratio", 0.5)
            parent.set_attribute("flag", True)
            parent.add_event("cache.miss", {"key": f"k{i}"}, timestamp=start + 10)
            from opentelemetry import trace
            ctx = trace.set_span_in_context(parent)
            child = tracer.start_span("SELECT", kind=SpanKind.CLIENT, context=ctx, start_time=start + 100)
            child.set_status(Status(StatusCode.ERROR, "deadlock"))
            child.end(end_time=start + 700)
            parent.end(end_time=start + 5_000)
            sent[(proto, i)] = (parent.get_span_context(), child.get_span_context(), start)
        provider.shutdown()
    return sent


def send_logs(server):
    for proto, exporter in exporters(server, "logs"):
        provider = LoggerProvider(resource=resource(f"py-{proto}"))
        provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
        logger = provider.get_logger("e2e.logger", "1.0")
        for i in range(15):
            logger.emit(
                timestamp=T0 + i,
                severity_number=SeverityNumber.WARN,
                severity_text="WARN",
                body=f"{proto} log {i}",
                attributes={"order.id": f"o-{i}", "items": i},
            )
        provider.shutdown()


def send_metrics(server):
    for proto, exporter in exporters(server, "metrics"):
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        provider = MeterProvider(resource=resource(f"py-{proto}"), metric_readers=[reader])
        meter = provider.get_meter("e2e.meter", "3.0")
        counter = meter.create_counter("orders", unit="1", description="orders placed")
        counter.add(5, {"region": "eu"})
        counter.add(2, {"region": "eu"})
        counter.add(1, {"region": "us"})
        hist = meter.create_histogram("latency", unit="ms")
        for v in (3, 7, 7, 300):
            hist.record(v, {"route": "/checkout"})
        updown = meter.create_up_down_counter("queue.depth")
        updown.add(10)
        updown.add(-4)
        # shutdown() collects and exports once (a force_flush() before it
        # would export the cumulative points a second time).
        provider.shutdown()


def test_python_sdk_traces_logs_metrics_land_exactly(server):
    sent = send_traces(server)
    send_logs(server)
    send_metrics(server)
    assert server.terminate() == 0, server.log()

    # Traces: counts per service and kind.
    rows = server.sql(
        "SELECT ServiceName, SpanName, SpanKind, count(*) AS n FROM otel_traces GROUP BY ALL ORDER BY ALL"
    )
    assert rows == [
        {"ServiceName": "py-grpc", "SpanName": "SELECT", "SpanKind": "Client", "n": 20},
        {"ServiceName": "py-grpc", "SpanName": "checkout", "SpanKind": "Server", "n": 20},
        {"ServiceName": "py-http", "SpanName": "SELECT", "SpanKind": "Client", "n": 20},
        {"ServiceName": "py-http", "SpanName": "checkout", "SpanKind": "Server", "n": 20},
    ]

    # One parent/child pair in full: ids, nanosecond timestamps, attributes.
    d = server.dialect
    for proto in ("grpc", "http"):
        parent_ctx, child_ctx, start = sent[(proto, 7)]
        trace_id = format(parent_ctx.trace_id, "032x")
        rows = server.sql(
            f"SELECT SpanName, SpanId, ParentSpanId, {d.ns('Timestamp')} AS ts, Duration, StatusCode, StatusMessage, "
            "ResourceAttributes['tenant.id'] AS tenant, ResourceAttributes['service.namespace'] AS ns, "
            "SpanAttributes['http.route'] AS route, SpanAttributes['attempt'] AS attempt, "
            "SpanAttributes['ratio'] AS ratio, SpanAttributes['flag'] AS flag, ScopeName, ScopeVersion, "
            f"{d.length('Events', 'Name')} AS events, {d.first('Events', 'Name')} AS event_name, "
            f"{d.ns(d.first('Events', 'Timestamp'))} AS event_ts, {d.first('Events', 'Attributes')}['key'] AS event_key "
            f"FROM otel_traces WHERE TraceId = '{trace_id}' ORDER BY SpanName"
        )
        assert len(rows) == 2, rows
        child, parent = rows
        assert parent["SpanId"] == format(parent_ctx.span_id, "016x")
        assert parent["ParentSpanId"] == ""
        assert child["SpanId"] == format(child_ctx.span_id, "016x")
        assert child["ParentSpanId"] == parent["SpanId"]
        assert parent["ts"] == start and child["ts"] == start + 100
        assert parent["Duration"] == 5_000 and child["Duration"] == 600
        assert (child["StatusCode"], child["StatusMessage"]) == ("Error", "deadlock")
        assert parent["StatusCode"] == "Unset"
        assert (parent["tenant"], parent["ns"]) == ("acme", "shop")
        assert (parent["route"], parent["attempt"], parent["ratio"], parent["flag"]) == ("/checkout", "7", "0.5", "true")
        assert (parent["ScopeName"], parent["ScopeVersion"]) == ("e2e.tracer", "2.0")
        assert (parent["events"], parent["event_name"], parent["event_ts"], parent["event_key"]) == (
            1, "cache.miss", start + 10, "k7"
        )

    # Logs.
    rows = server.sql(
        f"SELECT ServiceName, count(*) AS n, min({d.ns('Timestamp')}) AS first_ts, "
        "max(SeverityNumber) AS sev, any_value(SeverityText) AS sev_text, any_value(ScopeName) AS scope "
        "FROM otel_logs GROUP BY 1 ORDER BY 1"
    )
    assert rows == [
        {"ServiceName": "py-grpc", "n": 15, "first_ts": T0, "sev": 13, "sev_text": "WARN", "scope": "e2e.logger"},
        {"ServiceName": "py-http", "n": 15, "first_ts": T0, "sev": 13, "sev_text": "WARN", "scope": "e2e.logger"},
    ]
    rows = server.sql(
        "SELECT Body, LogAttributes['order.id'] AS order_id, LogAttributes['items'] AS items, "
        "ResourceAttributes['tenant.id'] AS tenant FROM otel_logs WHERE ServiceName = 'py-http' AND Body = 'http log 4'"
    )
    assert rows == [{"Body": "http log 4", "order_id": "o-4", "items": "4", "tenant": "acme"}]

    # Metrics: sums (counter and up-down counter) and the histogram.
    rows = server.sql(
        "SELECT ServiceName, MetricName, nullif(Attributes['region'], '') AS region, Value, IsMonotonic, AggregationTemporality "
        "FROM otel_metrics_sum ORDER BY ALL"
    )
    expected = []
    for svc in ("py-grpc", "py-http"):
        expected += [
            {"ServiceName": svc, "MetricName": "orders", "region": "eu", "Value": 7, "IsMonotonic": True, "AggregationTemporality": 2},
            {"ServiceName": svc, "MetricName": "orders", "region": "us", "Value": 1, "IsMonotonic": True, "AggregationTemporality": 2},
            {"ServiceName": svc, "MetricName": "queue.depth", "region": None, "Value": 6, "IsMonotonic": False, "AggregationTemporality": 2},
        ]
    assert rows == expected

    rows = server.sql(
        "SELECT ServiceName, MetricName, MetricUnit, Count, Sum, Min, Max, BucketCounts, ExplicitBounds, "
        "Attributes['route'] AS route, ScopeName FROM otel_metrics_histogram ORDER BY ServiceName"
    )
    # The SDK's default boundaries are 0,5,10,25,50,75,100,250,500,750,1000,2500,5000,7500,10000:
    # 3 falls in (0,5], both 7s in (5,10], 300 in (250,500].
    buckets = "[0,1,2,0,0,0,0,0,1,0,0,0,0,0,0,0]"
    bounds = "[0,5,10,25,50,75,100,250,500,750,1000,2500,5000,7500,10000]"
    for svc, row in zip(("py-grpc", "py-http"), rows):
        assert row == {
            "ServiceName": svc, "MetricName": "latency", "MetricUnit": "ms", "Count": 4, "Sum": 317,
            "Min": 3, "Max": 300, "BucketCounts": buckets, "ExplicitBounds": bounds,
            "route": "/checkout", "ScopeName": "e2e.meter",
        }
    assert len(rows) == 2


def test_a_span_over_a_limit_is_rejected_alone(server):
    """A span with an attribute over the server's value limit (64 KiB by
    default) is rejected alone; the rest of the export is stored."""
    provider = TracerProvider(resource=resource("py-limits"))
    exporter = HttpSpanExporter(endpoint=f"http://127.0.0.1:{server.http_port}/v1/traces")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("limits")
    with tracer.start_as_current_span("ok"):
        pass
    with tracer.start_as_current_span("too-big") as span:
        span.set_attribute("blob", "x" * 70_000)
    provider.shutdown()
    assert server.terminate() == 0
    assert server.sql("SELECT SpanName FROM otel_traces") == [{"SpanName": "ok"}]
