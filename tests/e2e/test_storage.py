"""The embedded store's Parquet segments, read by another process: Python's
`duckdb` runs `views.sql` from the data directory while `costplane serve`
writes and compacts, and never sees a span twice or a count go down."""

import threading
import time

import duckdb
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from conftest import Server

# 2030-01-01T00:00:00Z in ns: inside every retention window.
T0 = 1_893_456_000_000_000_000
BATCHES = 40
SPANS_PER_BATCH = 25


def read_counts(data_dir):
    """(count, distinct span ids) through a fresh connection and views.sql,
    as a user's duckdb CLI or notebook would. A query that listed a day just
    before its generation was replaced can fail to open a merged-away file
    (it never reads a row twice or skips one); it is run again, as a user would."""
    for _ in range(20):
        con = duckdb.connect()
        try:
            con.execute((data_dir / "views.sql").read_text())
            return con.execute("SELECT count(*), count(DISTINCT SpanId) FROM otel_traces").fetchone()
        except duckdb.IOException as e:
            assert "No such file" in str(e), e
        finally:
            con.close()
    raise AssertionError("20 reads in a row failed")


def test_duckdb_reads_the_store_through_views_sql_while_serve_writes(tmp_path):
    config = tmp_path / "costplane.toml"
    # Maintenance every 200 ms merging anything: compactions swap while the reader reads.
    config.write_text('[embedded]\nmaintenance_interval = "200ms"\ncompact_after = "0s"\n')
    server = Server(tmp_path, extra_args=["--config", str(config)])
    try:
        provider = TracerProvider(resource=Resource.create({"service.name": "py-storage"}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{server.grpc_port}", insecure=True)))
        tracer = provider.get_tracer("e2e.storage")
        done = threading.Event()

        def send():
            for b in range(BATCHES):
                for i in range(SPANS_PER_BATCH):
                    start = T0 + (b * SPANS_PER_BATCH + i) * 1_000
                    tracer.start_span(f"op{i % 3}", start_time=start).end(end_time=start + 500)
                time.sleep(0.02)
            provider.shutdown()
            done.set()

        sender = threading.Thread(target=send)
        sender.start()
        seen, last = [], 0
        total = BATCHES * SPANS_PER_BATCH
        deadline = time.time() + 120
        while time.time() < deadline:
            count, distinct = read_counts(tmp_path)
            assert count == distinct, f"a span was read twice: {count} rows, {distinct} ids"
            assert count >= last, f"the count went down from {last} to {count}"
            seen.append(count)
            last = count
            if done.is_set() and count == total:
                break
            time.sleep(0.05)
        sender.join()
        assert last == total, f"read {last} of {total} spans; counts seen {seen}"
        # The reader saw the store while it was filling, not just at the end.
        assert any(0 < c < total for c in seen), seen
        assert "compacted a partition" in server.log(), server.log()[-3000:]
        # Compaction left fewer files than batches, and still every span once.
        files = list((tmp_path / "tables" / "otel_traces").glob("*/*.parquet"))
        assert 0 < len(files) < BATCHES, files
        assert read_counts(tmp_path) == (total, total)
    finally:
        server.terminate()
