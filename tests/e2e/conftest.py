"""Fixtures that run the real `costplane serve` binary for a test."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Servers started by the test now running: a failing test's report carries
# the end of each one's log, so a failure on CI can be read without a rerun.
_STARTED = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "setup":
        _STARTED.clear()
    if report.failed:
        for server in _STARTED:
            try:
                tail = server.log_path.read_text(errors="replace")[-8000:]
            except OSError as e:
                tail = f"(the log could not be read: {e})"
            report.sections.append((f"costplane log ({server.store}, {server.log_path})", tail))


def costplane_bin() -> str:
    explicit = os.environ.get("COSTPLANE_BIN")
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(Path(target) / "release" / "costplane")


def iso(ns):
    """Nanoseconds since the epoch as the API's RFC 3339 UTC time (whole seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // 1_000_000_000))


def api_keys_toml(admin, **tenants):
    """`[[api.keys]]` entries of a test config: `admin` with the admin role,
    then one key per `tenant=key`, scoped to that tenant."""
    entries = [f'[[api.keys]]\nkey = "{admin}"\nrole = "admin"\n']
    entries += [f'[[api.keys]]\nkey = "{key}"\ntenant = "{tenant}"\n' for tenant, key in tenants.items()]
    return "".join(entries)


def api_request(server, path, key=None, method="GET", body=None, timeout=30):
    """One call to costplane's REST API: (status, headers, body bytes).

    An HTTP error status is an answer like any other; a connection that
    fails (a server killed mid-request) answers status None."""
    req = urllib.request.Request(f"http://127.0.0.1:{server.api_port}{path}", method=method)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, data=data, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()
    except OSError as e:
        return None, {}, str(e).encode()


def wait_for_value(read, expected, server, what, seconds=30):
    """Polls `read()` until it returns `expected`; fails naming `what`, the
    last value and the end of the server's log."""
    deadline = time.time() + seconds
    got = None
    while time.time() < deadline:
        got = read()
        if got == expected:
            return got
        time.sleep(0.2)
    raise AssertionError(f"{what} is {got}, expected {expected}\n{server.log()[-3000:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dialect:
    """SQL that differs between the embedded store (DuckDB) and ClickHouse."""

    def __init__(self, store):
        self.store = store

    def ns(self, column):
        return f"epoch_ns({column})" if self.store == "duckdb" else f"toUnixTimestamp64Nano({column})"

    def first(self, nested, field):
        return f"{nested}[1].{field}" if self.store == "duckdb" else f"{nested}.{field}[1]"

    def length(self, nested, field):
        return f"len({nested})" if self.store == "duckdb" else f"length({nested}.{field})"


class ChdbFront:
    """ClickHouse's own engine (chDB) behind tests/support/chdb_front.py."""

    def __init__(self, data_dir: Path, port: int = 0):
        self.data_dir = data_dir
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests/support/chdb_front.py"), "--port", str(port), "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        line = self.proc.stdout.readline().decode()
        assert "listening on" in line, f"the chDB front did not start: {line!r}"
        self.port = int(line.strip().rsplit(":", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def clickhouse_url_for_tests(tmp_path):
    """The real server at COSTPLANE_TEST_CLICKHOUSE_URL, else a chDB front."""
    url = os.environ.get("COSTPLANE_TEST_CLICKHOUSE_URL")
    if url:
        return url, None
    front = ChdbFront(tmp_path / "chdb")
    return front.url, front


class Server:
    def __init__(self, data_dir: Path, extra_args=(), store="duckdb", clickhouse_url=None):
        self.data_dir = data_dir
        self.store = store
        self.dialect = Dialect(store)
        self.store_args = []
        if store == "clickhouse":
            database = f"e2e_{uuid.uuid4().hex[:12]}"
            self.store_args = ["--store", "clickhouse", "--clickhouse-url", clickhouse_url, "--clickhouse-database", database]
        self.grpc_port, self.http_port, self.api_port = free_port(), free_port(), free_port()
        self.log_path = data_dir / "server.log"
        self._log = open(self.log_path, "wb")
        _STARTED.append(self)
        self.proc = subprocess.Popen(
            [
                costplane_bin(), "serve",
                "--data-dir", str(data_dir),
                "--otlp-grpc-addr", f"127.0.0.1:{self.grpc_port}",
                "--otlp-http-addr", f"127.0.0.1:{self.http_port}",
                "--http-addr", f"127.0.0.1:{self.api_port}",
                "--flush-interval", "200ms",
                *self.store_args,
                *extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            # What each ledger refresh did, for the log a failure carries.
            env={"COSTPLANE_LOG": "info,costplane_server::costs=debug", **os.environ},
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
                "--data-dir", str(self.data_dir), *self.store_args, query,
            ],
            capture_output=True,
            check=False,
        )
        assert out.returncode == 0, out.stderr.decode()
        return json.loads(out.stdout)


@contextlib.contextmanager
def serving(tmp_path, store, config_text=None):
    """`costplane serve` in `tmp_path` on `store` (`duckdb` or `clickhouse`,
    a chDB front when no server is given), with `config_text` as its
    configuration file; killed, with its front, when the block ends."""
    front, url = None, None
    if store == "clickhouse":
        url, front = clickhouse_url_for_tests(tmp_path)
    args = []
    if config_text is not None:
        config = tmp_path / "costplane.toml"
        config.write_text(config_text)
        args = ["--config", str(config)]
    try:
        server = Server(tmp_path, extra_args=args, store=store, clickhouse_url=url)
        try:
            yield server
        finally:
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait()
    finally:
        if front:
            front.stop()


@pytest.fixture(params=["duckdb", "clickhouse"])
def server(request, tmp_path):
    """A running `costplane serve` on each store backend."""
    front = None
    url = None
    if request.param == "clickhouse":
        url, front = clickhouse_url_for_tests(tmp_path)
    s = Server(tmp_path, store=request.param, clickhouse_url=url)
    yield s
    if s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait()
    if front:
        front.stop()


# The ledger buckets usage by the hour it arrives in, and several tests book
# a handful of requests and then check that hour's rows. A test that starts
# in the last seconds of an hour waits for the next one, so its requests land
# in one hour whatever the wall clock says.
HOUR_GUARD_SECONDS = 90


@pytest.fixture(autouse=True)
def _not_across_an_hour_boundary():
    left = 3600 - time.time() % 3600
    if left < HOUR_GUARD_SECONDS:
        time.sleep(left + 2)
    yield
