"""The Helm chart (deploy/helm/costplane), checked with the real helm,
Kubernetes 1.30's schemas and the real costplane binary.

Scenarios: the defaults (embedded store), the bundled ClickHouse, an
external ClickHouse (with the ServiceMonitor on), and cluster mode (bundled
ClickHouse as a three-replica cluster, two costplane replicas)."""

import json
import os
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from deploy_support import (
    CHART, RULES, Served, chdb, check_config, costplane_bin, dashboard_files, helm, of_kind, only, render, rule_file,  # noqa: F401 (fixture)
)

SCENARIOS = {
    "default": [],
    "bundled-clickhouse": ["clickhouse.enabled=true"],
    "external-clickhouse": [
        "externalClickhouse.url=https://clickhouse.example.com:8443",
        "externalClickhouse.password=s3cret-password",
        "serviceMonitor.enabled=true",
        "serviceMonitor.additionalLabels.release=kube-prometheus-stack",
        "prometheusRule.additionalLabels.release=kube-prometheus-stack",
    ],
    "cluster": [
        "clickhouse.enabled=true",
        "clickhouse.cluster=costplane",
        "clickhouse.replicas=3",
        "replicaCount=2",
    ],
}


@pytest.fixture(scope="module", params=list(SCENARIOS))
def scenario(request):
    return request.param, render(SCENARIOS[request.param])


def costplane_toml(docs, release="cp"):
    return only(docs, "ConfigMap", f"{release}-costplane")["data"]["costplane.toml"]


def secret_data(docs, release="cp"):
    return only(docs, "Secret", f"{release}-costplane")["stringData"]


def workload(docs):
    found = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet") and d["metadata"]["name"] == "cp-costplane"]
    assert len(found) == 1, [d["kind"] for d in found]
    return found[0]


def pod_script(pod_spec, container):
    """The bash script a container runs (`bash -c <script>`)."""
    c = next(c for c in pod_spec.get("initContainers", []) + pod_spec["containers"] if c["name"] == container)
    assert c["command"] == ["bash", "-c"], c["command"]
    return c["args"][0]


def test_lint_strict_in_every_scenario():
    for name, sets in SCENARIOS.items():
        args = ["lint", "--strict", str(CHART)]
        for s in sets:
            args += ["--set", s]
        out = helm(*args, check=False)
        assert out.returncode == 0, f"{name}: {out.stdout}\n{out.stderr}"
        assert "[WARNING]" not in out.stdout and "[ERROR]" not in out.stdout, out.stdout


def test_values_schema_rejects_unknown_and_chart_owned_keys():
    # A typo, and a key the chart sets itself, both stop the render.
    for bad in ["config.otlp.max_body_mb=20", "config.otlp.grpc_addr=0.0.0.0:1", "config.api.allow_open_remote=true", "replicas=2"]:
        out = helm("template", "cp", str(CHART), "--set", bad, check=False)
        assert out.returncode != 0 and "additional properties" in out.stderr, (bad, out.stderr)
    out = helm("template", "cp", str(CHART), "--set", "clickhouse.enabled=true",
               "--set", "externalClickhouse.url=http://ch:8123", check=False)
    assert out.returncode != 0 and "not both" in out.stderr


def test_every_manifest_is_valid_kubernetes_1_30(scenario):
    name, docs = scenario
    for d in docs:
        if d["apiVersion"].startswith("monitoring.coreos.com/"):
            # No CRD schemas offline: checked field by field in their own tests.
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(d, "1.30.0", strict=True)
            continue
        kubernetes_validate.validate(d, "1.30.0", strict=True)


def test_validation_catches_a_broken_manifest():
    # The schemas are really consulted: a misspelt field fails strict validation.
    docs = render()
    svc = only(docs, "Service", "cp-costplane")
    svc["spec"]["ports"][0]["targetport"] = 4317
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(svc, "1.30.0", strict=True)


def test_store_decides_statefulset_or_deployment():
    default = render()
    w = workload(default)
    assert w["kind"] == "StatefulSet" and w["spec"]["replicas"] == 1
    claim = w["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "data" and claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert not of_kind(default, "Deployment")
    assert tomllib.loads(costplane_toml(default))["store"] == "duckdb"

    bundled = render(SCENARIOS["bundled-clickhouse"])
    w = workload(bundled)
    assert w["kind"] == "Deployment"
    assert "volumeClaimTemplates" not in w["spec"]
    data = next(v for v in w["spec"]["template"]["spec"]["volumes"] if v["name"] == "data")
    # Room for the disk buffer (1024 MiB) and its last segment.
    assert data["emptyDir"]["sizeLimit"] == "1280Mi"
    assert tomllib.loads(costplane_toml(bundled))["store"] == "clickhouse"


def test_service_and_container_ports():
    docs = render()
    svc = only(docs, "Service", "cp-costplane")
    ports = {p["name"]: (p["port"], p["targetPort"], p.get("appProtocol")) for p in svc["spec"]["ports"]}
    assert ports == {"otlp-grpc": (4317, "otlp-grpc", "grpc"), "otlp-http": (4318, "otlp-http", "http"), "http": (8080, "http", "http")}
    pod = workload(docs)["spec"]["template"]["spec"]
    c = only_container(pod, "costplane")
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"otlp-grpc": 4317, "otlp-http": 4318, "http": 8080}
    # The ports costplane listens on are the ones the container declares.
    cfg = tomllib.loads(costplane_toml(docs))
    assert cfg["otlp"]["grpc_addr"] == "0.0.0.0:4317" and cfg["otlp"]["http_addr"] == "0.0.0.0:4318"
    assert cfg["http"]["addr"] == "0.0.0.0:8080"


def only_container(pod, name):
    return next(c for c in pod["containers"] if c["name"] == name)


def test_probes_use_health_and_readiness():
    pod = workload(render())["spec"]["template"]["spec"]
    c = only_container(pod, "costplane")
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # The buffer keeps accepting through a store outage: readiness must not
    # follow the store's health (/readyz), or one ClickHouse outage empties
    # the Service.
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    src = (Path(__file__).resolve().parents[2] / "crates/costplane-server/src/api.rs").read_text()
    # api.rs lists every route of the API listener as "METHOD /path".
    assert '"GET /healthz"' in src and '"GET /readyz"' in src, "the probes' paths must be routes of the server"


def test_labels_and_selectors(scenario):
    name, docs = scenario
    for d in docs:
        labels = d["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "cp", (d["kind"], d["metadata"]["name"])
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "costplane-0.1.0"
        assert labels["app.kubernetes.io/part-of"] == "costplane"
    for w in of_kind(docs, "Deployment") + of_kind(docs, "StatefulSet"):
        sel = w["spec"]["selector"]["matchLabels"]
        pod_labels = w["spec"]["template"]["metadata"]["labels"]
        assert sel.items() <= pod_labels.items(), w["metadata"]["name"]
    for svc in of_kind(docs, "Service"):
        owners = [w for w in of_kind(docs, "Deployment") + of_kind(docs, "StatefulSet")
                  if svc["spec"]["selector"].items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert len(owners) == 1, f"Service {svc['metadata']['name']} selects {len(owners)} workloads"


def test_pods_run_non_root_with_read_only_root_filesystem(scenario):
    name, docs = scenario
    dockerfile_uid = 10001  # USER in the Dockerfile (tests/deploy/test_dockerfile.py checks it)
    pods = [workload(docs)["spec"]["template"]["spec"], only(docs, "Pod")["spec"]]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == dockerfile_uid
        assert pod["automountServiceAccountToken"] is False
        for c in pod.get("initContainers", []) + pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
            assert "resources" in c
    for ch in [s for s in of_kind(docs, "StatefulSet") if s["metadata"]["name"].endswith("-clickhouse")]:
        assert ch["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_rendered_config_loads_in_costplane(scenario, tmp_path):
    # What the pod runs: the ConfigMap's file joined with the Secret's keys.
    name, docs = scenario
    path = join_config(docs, tmp_path, secret_data(docs))
    out = check_config(path)
    assert out.returncode == 0, f"{name}: {out.stderr}\n{path.read_text()}"
    cfg = tomllib.loads(path.read_text())
    if name == "cluster":
        assert cfg["clickhouse"]["cluster"] == "costplane"
        assert "ON CLUSTER `costplane`" in out.stdout
    if name == "external-clickhouse":
        assert cfg["clickhouse"]["url"] == "https://clickhouse.example.com:8443"
    if name in ("bundled-clickhouse", "cluster"):
        assert cfg["clickhouse"]["url"] == "http://cp-costplane-clickhouse:8123"
        assert cfg["clickhouse"]["user"] == "costplane"
    # The check can fail: an unknown key in the same file stops costplane.
    bad = tmp_path / "bad.toml"
    bad.write_text(path.read_text().replace("[otlp]\n", "[otlp]\nmax_body_mb = 20\n"))
    out = check_config(bad)
    assert out.returncode == 2 and "unknown field" in out.stderr, out.stderr


def test_every_config_value_reaches_costplane(tmp_path):
    # Every settable key of values.yaml's config, set to a non-default,
    # renders under the key costplane reads (a misspelt key fails the load).
    sets = [
        "config.otlp.max_attributes=100", "config.otlp.max_value_bytes=4096",
        "config.pipeline.retry_initial_interval=2s", "config.pipeline.retry_max_interval=1m",
        "config.pipeline.retry_max_elapsed=1h", "config.pipeline.writers=4", "config.pipeline.shutdown_timeout=20s",
        "config.buffer.fsync_interval=0s", "config.buffer.segment_mib=16",
        "config.clickhouse.compression=none", "config.clickhouse.request_timeout=10s",
        "config.clickhouse.traces_ttl_days=3", "config.clickhouse.logs_ttl_days=14", "config.clickhouse.metrics_ttl_days=90",
        "config.clickhouse.storage_policy=hot_cold", "config.clickhouse.cold_volume=cold", "config.clickhouse.cold_after_days=2",
        "config.cost.ingest_per_gib=0.10", "config.cost.storage_per_gib_month=0.03", "config.cost.queries_per_1000=0.5",
        "config.metrics.max_label_value_bytes=64", "config.metrics.cache_ttl=30s",
        "config.billing.account_name=Platform",
        "clickhouse.enabled=true",
    ]
    docs = render(sets)
    path = join_config(docs, tmp_path, secret_data(docs))
    out = check_config(path)
    assert out.returncode == 0, out.stderr
    cfg = tomllib.loads(path.read_text())
    assert cfg["pipeline"]["retry_max_elapsed"] == "1h" and cfg["cost"]["ingest_per_gib"] == "0.10"
    assert cfg["clickhouse"]["traces_ttl_days"] == 3
    # The TTLs reach the DDL costplane would run.
    assert "toIntervalDay(3)" in out.stdout and "toIntervalDay(14)" in out.stdout


def test_prometheus_rule_embeds_the_rule_file():
    docs = render(SCENARIOS["external-clickhouse"])
    rule = only(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"]["groups"] == rule_file()["groups"]
    assert rule["spec"]["groups"], "the rule file has no groups"
    for g in rule["spec"]["groups"]:
        assert g["name"] and g["rules"]
    assert not of_kind(render(["prometheusRule.enabled=false"]), "PrometheusRule")


def test_service_monitor_scrapes_metrics_with_the_admin_key():
    docs = render(SCENARIOS["external-clickhouse"])
    sm = only(docs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    svc = only(docs, "Service", "cp-costplane")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["observability"]}
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] in {p["name"] for p in svc["spec"]["ports"]} and ep["port"] == "http"
    assert ep["path"] == "/metrics"
    assert ep["authorization"] == {"type": "Bearer", "credentials": {"name": "cp-costplane", "key": "admin-key"}}
    assert "admin-key" in secret_data(docs)
    assert not of_kind(render(), "ServiceMonitor")


def test_one_dashboard_configmap_per_dashboard_file():
    docs = render()
    maps = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["labels"].get("grafana_dashboard") == "1"]
    files = dashboard_files()
    assert len(maps) == len(files)
    by_key = {}
    for m in maps:
        assert m["metadata"]["annotations"] == {"k8s-sidecar-target-directory": "costplane"}
        (key,) = m["data"]
        by_key[key] = m["data"][key]
        assert len(m["metadata"]["name"]) <= 63
    for f in files:
        # Byte for byte, Grafana's {{ }} legends untouched by Helm.
        assert by_key[f.name] == f.read_text()
        json.loads(by_key[f.name])
    folder = render(["dashboards.folderAnnotation=grafana_folder", "dashboards.folder=FinOps"])
    m = next(d for d in of_kind(folder, "ConfigMap") if d["metadata"]["labels"].get("grafana_dashboard"))
    assert m["metadata"]["annotations"] == {"grafana_folder": "FinOps"}


def test_secret_and_existing_secret():
    docs = render(SCENARIOS["bundled-clickhouse"])
    data = secret_data(docs)
    assert set(data) == {"admin-key", "clickhouse-password", "clickhouse-grafana-password"}
    assert len(data["admin-key"]) == 40 and data["clickhouse-password"] != data["clickhouse-grafana-password"]
    # Grafana's datasource gets the same read-only password as ClickHouse.
    ds = only(docs, "Secret", "cp-costplane-grafana-datasource")
    assert ds["metadata"]["labels"]["grafana_datasource"] == "1"
    (source,) = yaml.safe_load(ds["stringData"]["costplane-clickhouse.yaml"])["datasources"]
    assert source["secureJsonData"]["password"] == data["clickhouse-grafana-password"]
    assert source["type"] == "grafana-clickhouse-datasource" and source["jsonData"]["username"] == "grafana"
    ch = only(docs, "StatefulSet", "cp-costplane-clickhouse")["spec"]["template"]["spec"]["containers"][0]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in ch["env"] if "valueFrom" in e}
    assert refs["CLICKHOUSE_WRITER_PASSWORD"] == {"name": "cp-costplane", "key": "clickhouse-password"}
    assert refs["CLICKHOUSE_READER_PASSWORD"] == {"name": "cp-costplane", "key": "clickhouse-grafana-password"}

    existing = render(SCENARIOS["bundled-clickhouse"] + ["existingSecret=costplane-creds"])
    assert not [s for s in of_kind(existing, "Secret") if s["metadata"]["name"] == "cp-costplane"]
    pod = workload(existing)["spec"]["template"]["spec"]
    assert next(v for v in pod["volumes"] if v["name"] == "secrets")["secret"]["secretName"] == "costplane-creds"
    test_pod = only(existing, "Pod")["spec"]["containers"][0]
    key_ref = next(e for e in test_pod["env"] if e["name"] == "COSTPLANE_API_KEY")["valueFrom"]["secretKeyRef"]
    assert key_ref == {"name": "costplane-creds", "key": "admin-key"}


def test_bundled_clickhouse_users_and_cluster():
    docs = render(SCENARIOS["bundled-clickhouse"])
    cm = only(docs, "ConfigMap", "cp-costplane-clickhouse")
    users = ET.fromstring(cm["data"]["costplane-users.xml"]).find("users")
    writer, reader = users.find("costplane"), users.find("grafana")
    assert writer.find("password").get("from_env") == "CLICKHOUSE_WRITER_PASSWORD"
    assert reader.find("password").get("from_env") == "CLICKHOUSE_READER_PASSWORD"
    assert reader.find("profile").text == "costplane_reader"
    profile = ET.fromstring(cm["data"]["costplane-users.xml"]).find("profiles/costplane_reader")
    assert profile.find("readonly").text == "1"
    reader_grants = [q.text for q in reader.find("grants")]
    assert reader_grants == ["GRANT SELECT, SHOW ON otel.*", "GRANT SELECT ON system.*"]
    assert any("INSERT" in q.text and "CREATE" in q.text for q in writer.find("grants"))
    assert users.find("default/networks").get("replace") == "replace"
    assert ET.fromstring(cm["data"]["costplane-server.xml"]).find("remote_servers") is None
    headless = only(docs, "Service", "cp-costplane-clickhouse-headless")
    assert headless["spec"]["clusterIP"] == "None"
    sts = only(docs, "StatefulSet", "cp-costplane-clickhouse")
    assert sts["spec"]["serviceName"] == "cp-costplane-clickhouse-headless"
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "50Gi"

    cluster = render(SCENARIOS["cluster"])
    server = ET.fromstring(only(cluster, "ConfigMap", "cp-costplane-clickhouse")["data"]["costplane-server.xml"])
    hosts = [r.find("host").text for r in server.findall("remote_servers/costplane/shard/replica")]
    assert hosts == [f"cp-costplane-clickhouse-{i}.cp-costplane-clickhouse-headless.observability.svc.cluster.local" for i in range(3)]
    assert [s.find("id").text for s in server.findall("keeper_server/raft_configuration/server")] == ["1", "2", "3"]
    assert len(server.findall("zookeeper/node")) == 3
    assert server.find("macros/replica").get("from_env") == "HOSTNAME"
    assert server.find("remote_servers/costplane/secret").get("from_env") == "CLICKHOUSE_INTERSERVER_SECRET"
    assert "clickhouse-interserver-secret" in secret_data(cluster)
    assert only(cluster, "StatefulSet", "cp-costplane-clickhouse")["spec"]["replicas"] == 3
    assert workload(cluster)["spec"]["replicas"] == 2
    out = helm("template", "cp", str(CHART), "--set", "clickhouse.enabled=true", "--set", "clickhouse.replicas=2", check=False)
    assert out.returncode != 0 and "needs cluster mode" in out.stderr


def join_config(docs, tmp_path, secrets):
    """Runs the init container's script on the rendered ConfigMap and the
    given Secret files; the joined costplane.toml."""
    pod = workload(docs)["spec"]["template"]["spec"]
    (tmp_path / "in.toml").write_text(costplane_toml(docs))
    sdir = tmp_path / "secrets"
    sdir.mkdir()
    for k, v in secrets.items():
        (sdir / k).write_text(v)
    out_path = tmp_path / "joined.toml"
    env = dict(os.environ, CONFIG_IN=str(tmp_path / "in.toml"), SECRETS_DIR=str(sdir), CONFIG_OUT=str(out_path))
    run = subprocess.run(["bash", "-c", pod_script(pod, "config")], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return out_path


def helm_test(docs, served, api_key, attempts=15):
    """Runs the `helm test` pod's script against a local costplane."""
    script = pod_script(only(docs, "Pod")["spec"], "otlp-roundtrip")
    env = dict(
        os.environ,
        PATH=f"{Path(costplane_bin()).parent}:{os.environ['PATH']}",
        OTLP_HTTP_HOST="127.0.0.1",
        OTLP_HTTP_PORT=str(served.http_port),
        COSTPLANE_SERVER=f"http://127.0.0.1:{served.api_port}",
        COSTPLANE_API_KEY=api_key,
        ATTEMPTS=str(attempts),
    )
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120)


def test_helm_test_pod_round_trip_on_the_embedded_store(tmp_path):
    tenant_key = "acme-key-0123456789abcdef"
    docs = render([f"apiKeys[0].key={tenant_key}", "apiKeys[0].tenant=acme"])
    secrets = secret_data(docs)
    joined = join_config(docs, tmp_path, secrets)
    cfg = tomllib.loads(joined.read_text())
    assert cfg["api"]["keys"] == [{"key": secrets["admin-key"], "role": "admin"}, {"key": tenant_key, "tenant": "acme"}]
    served = Served(joined, tmp_path)
    try:
        ok = helm_test(docs, served, secrets["admin-key"])
        assert ok.returncode == 0, f"{ok.stdout}\n{ok.stderr}\n{served.log()}"
        assert "read trace" in ok.stdout
        # The same script fails when it cannot read the span back: a tenant
        # key is refused raw SQL.
        refused = helm_test(docs, served, tenant_key, attempts=2)
        assert refused.returncode == 1 and "was not readable" in refused.stderr, refused.stderr
        assert "403 Forbidden" in refused.stderr
    finally:
        served.stop()


def test_helm_test_pod_round_trip_on_clickhouse(tmp_path, chdb):
    docs = render(SCENARIOS["bundled-clickhouse"])
    secrets = secret_data(docs)
    joined = join_config(docs, tmp_path, secrets)
    password = tmp_path / "clickhouse-password"
    password.write_text(secrets["clickhouse-password"] + "\n")
    # The chart's URL and password path exist only in the cluster: flags beat the file.
    served = Served(joined, tmp_path, ["--clickhouse-url", chdb, "--clickhouse-password-file", str(password)])
    try:
        ok = helm_test(docs, served, secrets["admin-key"])
        assert ok.returncode == 0, f"{ok.stdout}\n{ok.stderr}\n{served.log()}"
    finally:
        served.stop()


def test_join_script_refuses_a_key_that_would_break_toml(tmp_path):
    docs = render()
    with pytest.raises(AssertionError, match="must not contain quotes"):
        join_config(docs, tmp_path, {"admin-key": 'abc"def0123456789'})


def test_notes_say_where_to_send_and_how_to_authenticate():
    for name, sets in SCENARIOS.items():
        args = ["install", "cp", str(CHART), "--namespace", "observability", "--dry-run=client"]
        for s in sets:
            args += ["--set", s]
        notes = helm(*args).stdout.split("NOTES:", 1)[1]
        assert "cp-costplane.observability.svc:4317" in notes and "http://cp-costplane.observability.svc:4318" in notes, name
        assert "jsonpath='{.data.admin-key}'" in notes and "helm test cp -n observability" in notes
        store = "clickhouse" if name != "default" else "duckdb"
        assert f"Store: {store}" in notes


def test_packaged_chart_carries_the_linked_files(tmp_path):
    # helm package follows the links: the archive holds the files themselves.
    import tarfile

    helm("package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("costplane-*.tgz")
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
        rules = members["costplane/files/costplane-rules.yaml"]
        assert rules.isfile()
        assert tar.extractfile(rules).read() == RULES.read_bytes()
        for f in dashboard_files():
            m = members[f"costplane/files/dashboards/{f.name}"]
            assert m.isfile() and tar.extractfile(m).read() == f.read_bytes()
