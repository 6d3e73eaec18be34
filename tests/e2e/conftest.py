"""Fixtures that run the real `costplane serve` binary for a test."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def costplane_bin() -> str:
    explicit = os.environ.get("COSTPLANE_BIN")
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(Path(target) / "release" / "costplane")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path, extra_args=()):
        self.data_dir = data_dir
        self.grpc_port, self.http_port, self.api_port = free_port(), free_port(), free_port()
        self.log_path = data_dir / "server.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                costplane_bin(), "serve",
                "--data-dir", str(data_dir),
                "--otlp-grpc-addr", f"127.0.0.1:{self.grpc_port}",
                "--otlp-http-addr", f"127.0.0.1:{self.http_port}",
                "--http-addr", f"127.0.0.1:{self.api_port}",
                "--flush-interval", "200ms",
                *extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        self._wait_healthy()

    def _wait_healthy(self):
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"costplane did not become healthy:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=120)
        self._log.close()
        return code

    def sql(self, query: str):
        """Rows of a read-only query, as dicts (through the API while
        serving, from the file once stopped)."""
        out = subprocess.run(
            [
                costplane_bin(), "sql", "--format", "json",
                "--server", f"http://127.0.0.1:{self.api_port}",
                "--data-dir", str(self.data_dir), query,
            ],
            capture_output=True,
            check=False,
        )
        assert out.returncode == 0, out.stderr.decode()
        return json.loads(out.stdout)


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    yield s
    if s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait()
