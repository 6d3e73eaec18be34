"""The PostgreSQL endpoint in the deployments: the chart's postgres.enabled
(embedded store only) and compose's docker-compose.embedded.yaml, rendered
by the real helm and docker-compose and loaded by the real costplane."""

import shutil
import subprocess
import tomllib

import pytest
import yaml

from deploy_support import CHART, COMPOSE_DIR, check_config, helm, only, render

ENV = {"CLICKHOUSE_WRITER_PASSWORD": "writer-pw", "CLICKHOUSE_READER_PASSWORD": "reader-pw", "GRAFANA_ADMIN_PASSWORD": "admin-pw"}


def test_the_chart_serves_the_endpoint_when_enabled(tmp_path):
    docs = render(["postgres.enabled=true"])
    toml = only(docs, "ConfigMap", "cp-costplane")["data"]["costplane.toml"]
    cfg = tomllib.loads(toml)
    assert cfg["postgres"] == {"enabled": True, "addr": "0.0.0.0:5432"}
    service = only(docs, "Service", "cp-costplane")
    assert {"name": "postgres", "port": 5432, "targetPort": "postgres", "protocol": "TCP", "appProtocol": "postgresql"} in service["spec"]["ports"]
    pod = only(docs, "StatefulSet", "cp-costplane")["spec"]["template"]["spec"]
    ports = [p for c in pod["containers"] for p in c.get("ports", [])]
    assert {"name": "postgres", "containerPort": 5432, "protocol": "TCP"} in ports
    # The file loads in costplane (the Secret's API keys are appended in the
    # pod; here one admin key stands for them, as the endpoint needs keys
    # beyond loopback).
    path = tmp_path / "costplane.toml"
    path.write_text(toml + '\n[[api.keys]]\nkey = "an-admin-key-0123456789"\nrole = "admin"\n')
    out = check_config(path)
    assert out.returncode == 0, out.stderr
    # Grafana's sidecars get the PostgreSQL datasource (the admin key logs in)
    # and one ConfigMap per PostgreSQL dashboard.
    ds = yaml.safe_load(only(docs, "Secret", "cp-costplane-grafana-datasource-postgres")["stringData"]["costplane-postgres.yaml"])
    [source] = ds["datasources"]
    assert (source["uid"], source["type"], source["url"]) == ("costplane-postgres", "grafana-postgresql-datasource", "cp-costplane.observability.svc:5432")
    assert source["secureJsonData"]["password"] == only(docs, "Secret", "cp-costplane")["stringData"]["admin-key"]
    names = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap" and "-pg-dashboard-" in d["metadata"]["name"])
    assert names == ["cp-costplane-pg-dashboard-anomalies", "cp-costplane-pg-dashboard-cxo-overview",
                     "cp-costplane-pg-dashboard-service-deep-dive", "cp-costplane-pg-dashboard-shared-infrastructure"]
    # Off by default: no port, no section.
    docs = render()
    assert not any("-pg-dashboard-" in d["metadata"]["name"] or d["metadata"]["name"].endswith("-postgres") for d in docs)
    assert "postgres" not in tomllib.loads(only(docs, "ConfigMap", "cp-costplane")["data"]["costplane.toml"])
    assert all(p["name"] != "postgres" for p in only(docs, "Service", "cp-costplane")["spec"]["ports"])


def test_the_chart_refuses_the_endpoint_with_clickhouse():
    out = helm("template", "cp", str(CHART), "--set", "postgres.enabled=true", "--set", "clickhouse.enabled=true", check=False)
    assert out.returncode != 0 and "embedded store only" in out.stderr, out.stderr


def test_compose_runs_the_embedded_store_with_the_endpoint(tmp_path):
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is not installed (scripts/install-deploy-tools.sh installs it)")
    out = subprocess.run(["docker-compose", "-f", "docker-compose.yaml", "-f", "docker-compose.embedded.yaml", "config"],
                         cwd=COMPOSE_DIR, capture_output=True, text=True, env={**ENV, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    services = yaml.safe_load(out.stdout)["services"]
    costplane = services["costplane"]
    assert any(str(p).startswith("127.0.0.1:5432:5432") or (isinstance(p, dict) and p.get("published") == 5432)
               for p in costplane["ports"]), costplane["ports"]
    mounts = [str(v) for v in costplane["volumes"]]
    assert any("costplane-embedded.toml:/etc/costplane/costplane.toml" in m for m in mounts), mounts
    grafana = [str(v) for v in services["grafana"]["volumes"]]
    assert any("grafana/postgres/provisioning:/etc/grafana/provisioning" in m for m in grafana), grafana
    assert any("grafana/postgres/dashboards:/var/lib/grafana/dashboards/costplane-postgres" in m for m in grafana), grafana
    cfg = tomllib.loads((COMPOSE_DIR / "costplane-embedded.toml").read_text())
    assert cfg["store"] == "duckdb" and cfg["postgres"] == {"enabled": True, "addr": "0.0.0.0:5432"}
    out = check_config(COMPOSE_DIR / "costplane-embedded.toml")
    assert out.returncode == 0, out.stderr
