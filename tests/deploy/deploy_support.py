"""Helpers and fixtures for the deployment tests (tests/deploy; no conftest.py,
so that these tests can run in one pytest process with tests/e2e, whose
conftest module they would shadow): helm, the chart's rendered objects, and
the real costplane binary loading the configurations the chart and the
compose file ship."""

import importlib.util
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/costplane"
RULES = ROOT / "deploy/prometheus/costplane-rules.yaml"
DASHBOARDS = ROOT / "deploy/grafana/dashboards"
PROVISIONING = ROOT / "deploy/grafana/provisioning"
COMPOSE_DIR = ROOT / "deploy/compose"

# The end-to-end helpers (costplane binary, free ports, the chDB front).
_spec = importlib.util.spec_from_file_location("costplane_e2e_support", ROOT / "tests/e2e/conftest.py")
e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(e2e)
costplane_bin = e2e.costplane_bin
free_port = e2e.free_port


def helm_bin() -> str:
    """helm from $COSTPLANE_TEST_HELM, PATH, or where scripts/test.sh installs it."""
    explicit = os.environ.get("COSTPLANE_TEST_HELM")
    candidates = [explicit] if explicit else []
    candidates += [shutil.which("helm"), str(Path.home() / ".cache/costplane-tools/bin/helm")]
    for c in candidates:
        if c and Path(c).is_file():
            return c
    raise AssertionError("helm not found: run scripts/test.sh (it installs helm) or set COSTPLANE_TEST_HELM")


def helm(*args, check=True):
    out = subprocess.run([helm_bin(), *args], capture_output=True, text=True)
    if check:
        assert out.returncode == 0, f"helm {' '.join(args)} failed:\n{out.stderr}"
    return out


def render(sets=(), release="cp", namespace="observability"):
    """`helm template` of the chart with --set values; the documents."""
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", "1.30.0"]
    for s in sets:
        args += ["--set", s]
    docs = [d for d in yaml.safe_load_all(helm(*args).stdout) if d]
    return docs


def only(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def of_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def rule_file():
    assert RULES.is_file(), f"{RULES} is missing: the chart's PrometheusRule embeds it"
    return yaml.safe_load(RULES.read_text())


def dashboard_files():
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files, f"no dashboards in {DASHBOARDS}: the chart ships one ConfigMap per dashboard there"
    return files


def check_config(path: Path):
    """Loads a costplane.toml the way `costplane serve` does (unknown keys
    and invalid values fail) without binding ports: `schema print` loads
    and validates the whole file first. Returns the completed process."""
    return subprocess.run([costplane_bin(), "schema", "print", "--config", str(path)], capture_output=True, text=True)


class Served:
    """`costplane serve --config FILE` with its listen addresses moved to
    free loopback ports (flags beat the file), plus extra flags."""

    def __init__(self, config: Path, workdir: Path, extra=()):
        self.grpc_port, self.http_port, self.api_port = free_port(), free_port(), free_port()
        self.log_path = workdir / "serve.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                costplane_bin(), "serve", "--config", str(config),
                "--data-dir", str(workdir / "data"),
                "--otlp-grpc-addr", f"127.0.0.1:{self.grpc_port}",
                "--otlp-http-addr", f"127.0.0.1:{self.http_port}",
                "--http-addr", f"127.0.0.1:{self.api_port}",
                "--flush-interval", "200ms",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"costplane exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"costplane did not become healthy:\n{self.log()}")

    def log(self):
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture
def chdb(tmp_path):
    """ClickHouse for a test: $COSTPLANE_TEST_CLICKHOUSE_URL, else a chDB front."""
    url, front = e2e.clickhouse_url_for_tests(tmp_path)
    yield url
    if front:
        front.stop()
