"""The compose deployment (deploy/compose), checked with Debian's
docker-compose (`config`), the real costplane binary and the files the
other services mount."""

import os
import re
import shutil
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from deploy_support import COMPOSE_DIR, PROVISIONING, ROOT, RULES, Served, chdb, check_config, dashboard_files, free_port  # noqa: F401 (fixture)

ENV = {"CLICKHOUSE_WRITER_PASSWORD": "writer-pw", "CLICKHOUSE_READER_PASSWORD": "reader-pw", "GRAFANA_ADMIN_PASSWORD": "admin-pw"}


def compose_config(env=ENV):
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is missing: scripts/test.sh installs Debian's docker-compose"
    clean = {k: v for k, v in os.environ.items() if k not in ENV}
    return subprocess.run([exe, "-f", str(COMPOSE_DIR / "docker-compose.yaml"), "config"],
                          cwd=COMPOSE_DIR, env=dict(clean, **env), capture_output=True, text=True)


@pytest.fixture(scope="module")
def compose():
    out = compose_config()
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def mounts(service):
    """{target: source} of a service's bind mounts and volumes."""
    found = {}
    for v in service.get("volumes", []):
        if isinstance(v, str):
            src, dst = v.split(":")[:2]
        else:
            src, dst = v.get("source"), v["target"]
        found[dst] = src
    return found


def ports(service):
    """(host_ip, published, target) of each published port; docker-compose
    1.29 prints short forms as "ip:host:container/proto" and long forms as maps."""
    found = []
    for p in service.get("ports", []):
        if isinstance(p, dict):
            found.append((p.get("host_ip", ""), int(p["published"]), int(p["target"])))
        else:
            parts = p.split("/")[0].split(":")
            ip = parts[0] if len(parts) == 3 else ""
            found.append((ip, int(parts[-2]), int(parts[-1])))
    return found


def costplane_config():
    return tomllib.loads((COMPOSE_DIR / "costplane.toml").read_text())


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


def test_compose_config_is_valid_and_needs_the_passwords(compose):
    assert set(compose["services"]) == {"otel-collector", "costplane", "clickhouse", "prometheus", "grafana"}
    missing = compose_config({k: v for k, v in ENV.items() if k != "CLICKHOUSE_WRITER_PASSWORD"})
    assert missing.returncode != 0 and "CLICKHOUSE_WRITER_PASSWORD" in missing.stderr


def test_costplane_service_runs_the_image_of_the_dockerfile(compose):
    svc = compose["services"]["costplane"]
    assert Path(svc["build"]["context"]) == ROOT
    assert (ROOT / svc["build"]["dockerfile"]).resolve() == ROOT / "Dockerfile"
    assert svc["command"] == ["serve", "--config", "/etc/costplane/costplane.toml"]
    m = mounts(svc)
    assert Path(m["/etc/costplane/costplane.toml"]) == COMPOSE_DIR / "costplane.toml"
    assert m["/var/lib/costplane"] == "costplane-data"
    assert svc["read_only"] is True
    assert svc["environment"]["COSTPLANE_CLICKHOUSE_PASSWORD"] == ENV["CLICKHOUSE_WRITER_PASSWORD"]
    # The API is published on the host's loopback only (the file allows an
    # open API because of it).
    assert ports(svc) == [("127.0.0.1", 8080, port_of(costplane_config()["http"]["addr"]))]
    assert svc["depends_on"]["clickhouse"]["condition"] == "service_healthy"


def test_costplane_config_is_loadable_and_points_at_the_compose_clickhouse(compose, tmp_path):
    path = COMPOSE_DIR / "costplane.toml"
    out = check_config(path)
    assert out.returncode == 0, out.stderr
    cfg = costplane_config()
    assert cfg["store"] == "clickhouse" and cfg["data_dir"] == "/var/lib/costplane"
    url = urlparse(cfg["clickhouse"]["url"])
    assert url.hostname in compose["services"] and url.hostname == "clickhouse" and url.port == 8123
    users = ET.parse(COMPOSE_DIR / "clickhouse/costplane-users.xml").getroot().find("users")
    writer = users.find(cfg["clickhouse"]["user"])
    assert writer is not None and writer.find("password").get("from_env") == "CLICKHOUSE_WRITER_PASSWORD"
    assert compose["services"]["clickhouse"]["environment"]["CLICKHOUSE_WRITER_PASSWORD"] == ENV["CLICKHOUSE_WRITER_PASSWORD"]
    assert any(f"ON {cfg['clickhouse']['database']}.*" in q.text and "INSERT" in q.text for q in writer.find("grants"))


def test_costplane_serves_the_compose_config(tmp_path, chdb):
    # The real binary starts on the compose file (ClickHouse URL moved to a
    # local engine, ports to free ones) and takes OTLP.
    served = Served(COMPOSE_DIR / "costplane.toml", tmp_path, ["--clickhouse-url", chdb])
    try:
        import urllib.request

        body = b'{"resourceSpans":[]}'
        req = urllib.request.Request(f"http://127.0.0.1:{served.http_port}/v1/traces", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{served.api_port}/readyz", timeout=5) as r:
            assert r.status == 200
    finally:
        served.stop()


def test_collector_gateway_forwards_to_costplane(compose):
    svc = compose["services"]["otel-collector"]
    assert Path(mounts(svc)["/etc/otelcol/config.yaml"]) == COMPOSE_DIR / "otel-collector.yaml"
    assert sorted(ports(svc)) == [("", 4317, 4317), ("", 4318, 4318)]
    col = yaml.safe_load((COMPOSE_DIR / "otel-collector.yaml").read_text())
    protocols = col["receivers"]["otlp"]["protocols"]
    assert port_of(protocols["grpc"]["endpoint"]) == 4317 and port_of(protocols["http"]["endpoint"]) == 4318
    cfg = costplane_config()
    pipelines = col["service"]["pipelines"]
    assert set(pipelines) == {"traces", "metrics", "logs"}
    for name, p in pipelines.items():
        assert p["receivers"] == ["otlp"]
        for exporter in p["exporters"]:
            kind = exporter.split("/")[0]
            url = urlparse(col["exporters"][exporter]["endpoint"])
            assert url.hostname == "costplane", (name, exporter)
            if kind == "otlphttp":
                assert url.port == port_of(cfg["otlp"]["http_addr"])
            else:
                assert kind == "otlp" and url.port == port_of(cfg["otlp"]["grpc_addr"])
        assert p["processors"][0] == "memory_limiter"
    assert svc["depends_on"]["costplane"]["condition"] == "service_healthy"


def test_prometheus_scrapes_costplane_and_loads_the_rules(compose, tmp_path):
    svc = compose["services"]["prometheus"]
    m = mounts(svc)
    prom = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    (rule_path,) = prom["rule_files"]
    assert Path(m[rule_path]).resolve() == RULES.resolve()
    assert RULES.is_file(), f"{RULES} is missing"
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "costplane"]
    (target,) = job["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host == "costplane" and int(port) == port_of(costplane_config()["http"]["addr"])
    assert job.get("metrics_path", "/metrics") == "/metrics"
    promtool = shutil.which("promtool")
    if promtool:
        # promtool checks the config and the rule file it names, at host paths.
        local = dict(prom, rule_files=[str(RULES)])
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(local))
        out = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr


def test_only_the_gateway_listens_beyond_loopback(compose):
    for name, svc in compose["services"].items():
        for ip, published, _ in ports(svc):
            assert name == "otel-collector" or ip == "127.0.0.1", (name, published)


def test_grafana_mounts_the_provisioning_and_dashboards(compose):
    svc = compose["services"]["grafana"]
    m = mounts(svc)
    assert Path(m["/etc/grafana/provisioning"]).resolve() == PROVISIONING.resolve()
    providers = []
    for f in sorted((PROVISIONING / "dashboards").glob("*.y*ml")):
        providers += yaml.safe_load(f.read_text()).get("providers", [])
    assert providers, f"no dashboard provider in {PROVISIONING / 'dashboards'}"
    dashboards = dashboard_files()
    for p in providers:
        # Each provider's path is where the compose file mounts deploy/grafana/dashboards.
        path = p["options"]["path"]
        assert path in m, f"provider {p['name']} reads {path}, which the compose file does not mount"
        assert Path(m[path]).resolve() == dashboards[0].parent.resolve()
    env = svc["environment"]
    assert "grafana-clickhouse-datasource" in env["GF_PLUGINS_PREINSTALL"]
    # Every $VAR the provisioning files read is set, and every host they
    # name is a service of the compose file.
    for f in sorted(PROVISIONING.rglob("*.y*ml")):
        # Values only: comments may mention `$VAR` in prose.
        text = "\n".join(line for line in f.read_text().splitlines() if not line.lstrip().startswith("#"))
        for var in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", text):
            assert var in env, f"{f.name} reads ${var}, not set for grafana"
        for ds in (yaml.safe_load(text) or {}).get("datasources", []):
            host = ds.get("jsonData", {}).get("host") or urlparse(ds.get("url", "")).hostname
            if host:
                assert host in compose["services"], f"datasource {ds['name']} points at {host}"
            user = ds.get("jsonData", {}).get("username")
            if ds["type"] == "grafana-clickhouse-datasource" and user:
                users = ET.parse(COMPOSE_DIR / "clickhouse/costplane-users.xml").getroot().find("users")
                reader = users.find(user)
                assert reader is not None, f"datasource user {user} is not a ClickHouse user"
                assert reader.find("profile").text == "costplane_reader"


def test_clickhouse_users_file_is_mounted_and_well_formed(compose):
    svc = compose["services"]["clickhouse"]
    m = mounts(svc)
    src = m["/etc/clickhouse-server/users.d/costplane-users.xml"]
    root = ET.parse(src).getroot()
    assert root.find("profiles/costplane_reader/readonly").text == "1"
    assert [q.text for q in root.find("users/grafana/grants")] == ["GRANT SELECT, SHOW ON otel.*", "GRANT SELECT ON system.*"]
    for var in ("CLICKHOUSE_WRITER_PASSWORD", "CLICKHOUSE_READER_PASSWORD"):
        assert svc["environment"][var] == ENV[var]
    assert svc["healthcheck"]["test"][:2] == ["CMD", "clickhouse-client"]
