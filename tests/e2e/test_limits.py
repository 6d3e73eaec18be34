"""Request size and in-flight memory limits of `costplane serve`, seen by
the clients people use: Python's urllib, the OpenTelemetry SDK's OTLP/HTTP
and OTLP/gRPC exporters, and grpcio.

An oversized request gets a final answer the client can read (HTTP 413,
gRPC RESOURCE_EXHAUSTED), not a broken pipe or an endlessly retried
OUT_OF_RANGE; concurrent large requests over `otlp.max_inflight_mib` get
the retryable answer (503 + Retry-After, UNAVAILABLE) and the server's
memory stays bounded."""

import concurrent.futures
import gzip
import logging
import time
import urllib.error
import urllib.request

import grpc
import pytest
from conftest import Server
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

MIB = 1024 * 1024
TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
GRPC_OPTIONS = [("grpc.max_send_message_length", 64 * MIB), ("grpc.max_receive_message_length", 64 * MIB)]
LIMIT_MESSAGE = "larger than the limit of 1048576 bytes"


@pytest.fixture
def start_server(tmp_path):
    """Starts one DuckDB-backed server with extra flags and an optional
    config file; stops it after the test."""
    servers = []

    def start(*flags, config=None):
        extra = list(flags)
        if config is not None:
            path = tmp_path / "costplane.toml"
            path.write_text(config)
            extra += ["--config", str(path)]
        server = Server(tmp_path, extra_args=extra)
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def traces_request(spans, payload=1000):
    """A valid OTLP trace export: `spans` spans with a `payload`-byte attribute."""
    scope = trace_pb2.ScopeSpans()
    value = "p" * payload
    for i in range(spans):
        span = scope.spans.add()
        span.trace_id = (i + 1).to_bytes(16, "big")
        span.span_id = (i + 1).to_bytes(8, "big")
        span.name = "limits"
        span.start_time_unix_nano = 1_893_456_000_000_000_000 + i
        span.end_time_unix_nano = 1_893_456_000_000_000_100 + i
        span.attributes.append(common_pb2.KeyValue(key="payload", value=common_pb2.AnyValue(string_value=value)))
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.append(scope)
    return request


def big_span(size):
    """An ended SDK span carrying a `size`-byte attribute."""
    provider = TracerProvider(resource=Resource.create({"service.name": "py-limits"}))
    span = provider.get_tracer("limits").start_span("big")
    span.set_attribute("blob", "x" * size)
    span.end()
    return span


def post(url, body, timeout=60, gzip_body=False):
    """POSTs with urllib: (status, headers, body), for errors too."""
    headers = {"Content-Type": "application/x-protobuf"}
    if gzip_body:
        headers["Content-Encoding"] = "gzip"
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_an_oversized_request_sent_with_urllib_gets_413(start_server):
    server = start_server("--max-body-mib", "1")
    url = f"http://127.0.0.1:{server.http_port}/v1/traces"
    # 24 MiB: far more than the socket buffers take, so the 413 is only
    # readable because the server reads (and drops) the rest of the body.
    status, headers, body = post(url, b"\x0a" * (24 * MIB))
    assert status == 413
    assert LIMIT_MESSAGE in status_pb2.Status.FromString(body).message
    # The server is fine and the connection pool too.
    assert post(url, traces_request(10).SerializeToString())[0] == 200


def test_the_sdk_http_exporter_gets_a_final_413_and_does_not_retry(start_server, caplog):
    server = start_server("--max-body-mib", "1")
    caplog.set_level(logging.WARNING)
    for compression in (Compression.NoCompression, Compression.Gzip):
        caplog.clear()
        exporter = HttpSpanExporter(
            endpoint=f"http://127.0.0.1:{server.http_port}/v1/traces", compression=compression, timeout=30
        )
        started = time.monotonic()
        # 24 MiB of span: over the limit plain (and more than socket buffers
        # take, so the 413 is only readable because the server reads the
        # rest of the body first), and once inflated when gzip.
        result = exporter.export([big_span(24 * MIB)])
        elapsed = time.monotonic() - started
        exporter.shutdown()
        assert result == SpanExportResult.FAILURE
        text = caplog.text
        assert "code: 413" in text, text
        assert "Transient error" not in text, f"a 413 must not be retried: {text}"
        assert elapsed < 10, elapsed


def test_an_oversized_grpc_export_gets_resource_exhausted(start_server, caplog):
    server = start_server("--max-body-mib", "1")
    request = traces_request(2000)  # ~2.2 MiB
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}", options=GRPC_OPTIONS) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        for compression in (grpc.Compression.NoCompression, grpc.Compression.Gzip):
            with pytest.raises(grpc.RpcError) as err:
                stub.Export(request, timeout=30, compression=compression)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (compression, err.value)
            assert LIMIT_MESSAGE in err.value.details(), err.value.details()
        # Within the limit, on the same channel.
        stub.Export(traces_request(100), timeout=30, compression=grpc.Compression.Gzip)

    # The SDK's gRPC exporter sees RESOURCE_EXHAUSTED (not OUT_OF_RANGE).
    # It retries it until its timeout (the OTLP spec retries it only with
    # RetryInfo, which the server does not send), hence the short timeout.
    caplog.set_level(logging.WARNING)
    exporter = GrpcSpanExporter(endpoint=f"127.0.0.1:{server.grpc_port}", insecure=True, timeout=3)
    result = exporter.export([big_span(3 * MIB)])
    exporter.shutdown()
    assert result == SpanExportResult.FAILURE
    assert "RESOURCE_EXHAUSTED" in caplog.text, caplog.text
    assert LIMIT_MESSAGE in caplog.text, caplog.text
    assert "OUT_OF_RANGE" not in caplog.text


def proc_status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def test_concurrent_20_mib_requests_stay_within_the_inflight_memory(start_server):
    server = start_server(config="[otlp]\nmax_inflight_mib = 32\n")
    # ~19.3 MiB of spans whose trace ids are 2 bytes long: each request is
    # received, inflated and decoded in full, then every span is rejected
    # (partial success), so nothing reaches the pipeline or the store. Their
    # memory has its own limit (pipeline.memory_limit_mib) and DuckDB's
    # buffers grow with the data written; neither is what this measures.
    request = traces_request(18_800)
    for span in request.resource_spans[0].scope_spans[0].spans:
        span.trace_id = b"\x01\x02"
    body = request.SerializeToString()
    assert 19 * MIB < len(body) < 20 * MIB, len(body)
    packed = gzip.compress(body, 1)
    clients = 12
    baseline_kib = proc_status_kib(server.proc.pid, "VmRSS")
    url = f"http://127.0.0.1:{server.http_port}/v1/traces"

    def http_client(compressed):
        answers = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status, headers, answer = post(url, packed if compressed else body, gzip_body=compressed)
            answers.append(status)
            if status != 503:
                if status == 200:
                    response = trace_service_pb2.ExportTraceServiceResponse.FromString(answer)
                    assert response.partial_success.rejected_spans == 18_800
                return answers
            assert headers.get("Retry-After") == "1", dict(headers)
            time.sleep(0.2)
        return answers

    def grpc_client(compressed):
        answers = []
        deadline = time.monotonic() + 120
        compression = grpc.Compression.Gzip if compressed else grpc.Compression.NoCompression
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}", options=GRPC_OPTIONS) as channel:
            export = channel.unary_unary(TRACES, request_serializer=None, response_deserializer=None)
            while time.monotonic() < deadline:
                try:
                    export(body, timeout=60, compression=compression)
                    answers.append("OK")
                    return answers
                except grpc.RpcError as e:
                    answers.append(e.code().name)
                    if e.code() != grpc.StatusCode.UNAVAILABLE:
                        return answers
                    time.sleep(0.2)
        return answers

    # Half over OTLP/HTTP, half over OTLP/gRPC; half of each gzip.
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        futures = [
            pool.submit(http_client if i % 2 == 0 else grpc_client, (i // 2) % 2 == 1) for i in range(clients)
        ]
        results = [f.result(timeout=180) for f in futures]

    peak_kib = proc_status_kib(server.proc.pid, "VmHWM")
    assert server.proc.poll() is None, f"the server died:\n{server.log()}"
    answers = [a for r in results for a in r]
    # Every answer is a success or the retryable refusal, and in the end
    # every client got through.
    assert set(answers) <= {200, 503, "OK", "UNAVAILABLE"}, answers
    assert all(r[-1] in (200, "OK") for r in results), results
    assert any(a in (503, "UNAVAILABLE") for a in answers), "12 x 20 MiB over a 32 MiB budget must meet refusals"

    # The bound: requests reserve at most the 32 MiB budget together, and
    # the one request holding all of it (its reservation is capped at the
    # budget so that it can pass) really uses up to ~100 MiB: a gzip gRPC
    # message inflated (20 MiB) plus tonic's copy of it (20 MiB) plus its
    # decoded tree (~3x, 60 MiB). Connection buffers and allocator slack
    # add ~20 MiB: 150 MiB over the baseline. Measured here: 107 MiB with
    # glibc's malloc (these spans' ids are invalid, so they take the prost
    # path and its tree); mimalloc 2 measured 98-116, mimalloc 3 111-147;
    # with the budget raised out of the way (4096 MiB) the same run peaked
    # at 150-200 MiB, and up to 12 x 80 MiB when all requests overlap.
    growth_mib = (peak_kib - baseline_kib) / 1024
    print(f"baseline VmRSS {baseline_kib / 1024:.0f} MiB, VmHWM {peak_kib / 1024:.0f} MiB, growth {growth_mib:.0f} MiB")
    assert growth_mib < 150, f"peak RSS grew by {growth_mib:.0f} MiB"
    assert server.terminate() == 0, server.log()
