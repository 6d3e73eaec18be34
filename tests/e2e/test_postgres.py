"""The PostgreSQL endpoint end to end: the real binary on the embedded store,
read by three real clients (Debian's psql, Python's psycopg 3 in text and
binary formats, Node's pg), every query of the CloudSentinel Grafana design
as written, each figure checked against the cost API for the same window and
against amounts worked out by hand.

Dataset (prices in the config below):
- LLM (tenant acme, service chatbot, a model no price covers, so each span's
  own cost.usd is its cost): $10 at 00:30 UTC on each of the last 42 days
  (today's only once 00:30 has passed), and $40 more yesterday: a spike the
  anomaly detector finds (expected $10, actual $50). Tenant globex: $3 now,
  service search.
- Kubernetes, cluster c1, node n1 (4 cores, 16 GiB), the two hours H0 and H1
  that start 3 and 2 hours before the current one, samples at :00 :15 :30
  :45 (each pod present the whole hour). Prices: $0.04 per core-hour, $0.005
  per GiB-hour of RAM, $0.01 per transmitted GiB, $0.002 per received GiB,
  $73 per GiB-month of persistentVolumeClaim storage (/ 730 = $0.1 per
  GiB-hour). Per hour:
  - shop/web (app=web): CPU max(request 0.5, usage 0.25) = 0.5 x 0.04 =
    0.02; RAM max(1, 2) GiB x 0.005 = 0.01; its 10 GiB volume x 0.1 = 1.0.
  - kube-system/dns (shared): 0.1 x 0.04 + 0.5 x 0.005 = 0.004 + 0.0025 =
    0.0065, all of it to shop (the only other namespace).
  - idle n1: CPU 0.16 - 0.024 = 0.136; RAM 0.08 - 0.0125 = 0.0675.
  - network (web's cumulative counters): transmit +0.5 GiB per sample after
    the first, receive +1 GiB: H0 3 deltas (egress 1.5 GiB = 0.015, ingress
    3 GiB = 0.006), H1 4 deltas (egress 2 GiB = 0.02, ingress 4 GiB =
    0.008).
  Kubernetes total: 2 x (0.16 + 0.08) + 2 x 1.0 + 0.049 = 2.529.
- A cloud bill (FOCUS CSV): $1.5 of EC2 at H0, tagged tenant acme, service api.
"""

import datetime
import json
import os
import shutil
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import api_keys_toml, ROOT, Server, api_request, costplane_bin, free_port, iso

ADMIN = "admin-key-0123456789abcdef"
ACME = "acme-key-0123456789abcdef"
GLOBEX = "globex-key-0123456789abcdef"
HOUR = 3600
DAY = 86400
GIB = 1 << 30
NODE_MODULES = os.environ.get(
    "COSTPLANE_TEST_NODE_MODULES", str(Path.home() / ".cache/costplane-tools/pg/node_modules")
)

QUERIES = [
    "SELECT SUM(cost_usd) FROM service_costs WHERE timestamp > NOW() - INTERVAL '30 days';",
    "SELECT service_name, SUM(cost_usd) as cost FROM service_costs WHERE timestamp > NOW() - INTERVAL '7 days' GROUP BY service_name;",
    "SELECT time_bucket('1 hour', timestamp) as time, service_name, SUM(cost_usd) as cost FROM service_costs WHERE timestamp > NOW() - INTERVAL '7 days' GROUP BY time, service_name ORDER BY time;",
    "SELECT cost_type, SUM(cost_usd) as cost FROM service_costs WHERE timestamp > NOW() - INTERVAL '24 hours' GROUP BY cost_type;",
    "SELECT DISTINCT service_name FROM service_costs;",
    "SELECT service_name, cluster_name, cpu_allocation_percent, memory_allocation_percent, allocated_cost_usd FROM shared_infrastructure_allocation WHERE resource_type = 'kubernetes' ORDER BY allocated_cost_usd DESC;",
    "SELECT service_name, SUM(allocated_cost_usd) as cost FROM shared_infrastructure_allocation WHERE resource_type = 'storage' GROUP BY service_name;",
    "SELECT timestamp, service_name, cost_usd, expected_cost, zscore FROM cost_anomalies WHERE zscore > 3 ORDER BY timestamp DESC LIMIT 20;",
    "SELECT time_bucket('1 hour', timestamp) as time, service_name, AVG(cost_usd) as actual, AVG(expected_cost) as expected FROM cost_anomalies GROUP BY time, service_name;",
    "SELECT time_bucket('1 hour', timestamp) AS time, service_name, SUM(cost_usd) as cost FROM service_costs WHERE timestamp > $__timeFrom() AND timestamp < $__timeTo() GROUP BY time, service_name ORDER BY time;",
    "SELECT pod_name, namespace, service_name, cpu_cost_usd + memory_cost_usd + storage_cost_usd as total_cost FROM pod_costs WHERE timestamp > NOW() - INTERVAL '1 day' ORDER BY total_cost DESC LIMIT 50;",
    "SELECT time_bucket('1 hour', timestamp) AS time, service_name, SUM(CASE WHEN direction = 'ingress' THEN cost_usd ELSE 0 END) as ingress_cost, SUM(CASE WHEN direction = 'egress' THEN cost_usd ELSE 0 END) as egress_cost FROM network_costs WHERE timestamp > $__timeFrom() GROUP BY time, service_name ORDER BY time;",
    "SELECT storage_type, service_name, SUM(storage_gb) as total_gb, SUM(cost_usd) as total_cost, SUM(cost_usd) / SUM(storage_gb) as cost_per_gb FROM storage_costs WHERE timestamp > NOW() - INTERVAL '24 hours' GROUP BY storage_type, service_name ORDER BY total_cost DESC;",
]


def require(tool, how):
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed: {how} (scripts/test.sh installs it)")


def kv(k, v):
    return {"key": k, "value": {"stringValue": v}}


def grafana(sql, now):
    """Grafana's PostgreSQL datasource expands its macros before sending."""
    fmt = "%Y-%m-%dT%H:%M:%S.000Z"
    frm = time.strftime(fmt, time.gmtime(now - 7 * DAY))
    to = time.strftime(fmt, time.gmtime(now + HOUR))
    return sql.replace("$__timeFrom()", f"'{frm}'").replace("$__timeTo()", f"'{to}'")


def llm_span(at, usd, n, name="chat"):
    ns = at * 1_000_000_000
    return {
        "traceId": f"{0x7000 + n:032x}", "spanId": f"{0x300 + n:016x}", "name": name, "kind": 3,
        "startTimeUnixNano": str(ns), "endTimeUnixNano": str(ns + 1_000_000),
        "attributes": [kv("cost.model", "house-model-1"), {"key": "cost.usd", "value": {"stringValue": usd}}],
    }


def gauge(name, unit, t, value):
    point = {"timeUnixNano": str(t)}
    point["asDouble" if isinstance(value, float) else "asInt"] = value if isinstance(value, float) else str(value)
    return {"name": name, "unit": unit, "gauge": {"dataPoints": [point]}}


def resource(attrs, scope, metrics):
    return {"resource": {"attributes": attrs}, "scopeMetrics": [{"scope": {"name": scope}, "metrics": metrics}]}


KUBELET = "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/kubeletstatsreceiver"
CLUSTER = "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/k8sclusterreceiver"
PODS = [
    # namespace, pod, app label, cpu request, cpu usage, memory request, memory usage
    ("shop", "web", "web", 0.5, 0.25, GIB, 2 * GIB),
    ("kube-system", "dns", None, 0.1, 0.05, GIB // 2, GIB // 4),
]


def scrape(h0_ns, k):
    """Sample k (0..7: hour k // 4, quarter k % 4) of both receivers."""
    t = h0_ns + k * 15 * 60 * 1_000_000_000
    rms = [resource([kv("k8s.node.name", "n1"), kv("k8s.node.uid", "node-uid-1")], CLUSTER, [
        gauge("k8s.node.allocatable_cpu", "{cpu}", t, 4.0),
        gauge("k8s.node.allocatable_memory", "By", t, 16 * GIB),
    ])]
    for ns, pod, app, cpu_req, cpu_use, mem_req, mem_use in PODS:
        attrs = [kv("k8s.pod.uid", f"uid-{pod}"), kv("k8s.pod.name", pod), kv("k8s.namespace.name", ns), kv("k8s.node.name", "n1")]
        if app:
            attrs.append(kv("k8s.pod.label.app", app))
        container = attrs + [kv("k8s.container.name", "main")]
        rms.append(resource(container, KUBELET, [
            gauge("container.cpu.usage", "{cpu}", t, cpu_use),
            gauge("container.memory.working_set", "By", t, mem_use),
        ]))
        rms.append(resource(container + [kv("container.id", f"cid-{pod}")], CLUSTER, [
            gauge("k8s.container.cpu_request", "{cpu}", t, cpu_req),
            gauge("k8s.container.memory_request", "By", t, mem_req),
            gauge("k8s.pod.phase", "", t, 2),
        ]))
        if pod == "web":
            rms.append(resource(attrs + [kv("k8s.volume.name", "data"), kv("k8s.volume.type", "persistentVolumeClaim")], KUBELET, [
                gauge("k8s.volume.capacity", "By", t, 10 * GIB),
            ]))
            started = str(h0_ns - 5 * 60 * 1_000_000_000)
            rms.append(resource(attrs, KUBELET, [{
                "name": "k8s.pod.network.io", "unit": "By",
                "sum": {"aggregationTemporality": 2, "isMonotonic": True, "dataPoints": [
                    {"timeUnixNano": str(t), "startTimeUnixNano": started, "asInt": str(k * GIB // 2),
                     "attributes": [kv("interface", "eth0"), kv("direction", "transmit")]},
                    {"timeUnixNano": str(t), "startTimeUnixNano": started, "asInt": str(k * GIB),
                     "attributes": [kv("interface", "eth0"), kv("direction", "receive")]},
                ]},
            }]))
    return {"resourceMetrics": rms}


def post(server, path, body, ctype="application/json", port=None):
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{port or server.http_port}{path}", data=body, method="POST")
    req.add_header("Content-Type", ctype)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read()


def api(server, path, key=ADMIN, method="GET", body=None):
    status, _, raw = api_request(server, path, key=key, method=method, body=body)
    assert status == 200, f"{path}: {status} {raw[:500]!r}"
    return json.loads(raw)


FOCUS_HEADER = (
    "BilledCost,BillingAccountId,BillingAccountName,BillingAccountType,BillingCurrency,BillingPeriodEnd,BillingPeriodStart,"
    "ChargeCategory,ChargeClass,ChargeDescription,ChargePeriodEnd,ChargePeriodStart,ConsumedQuantity,ConsumedUnit,ContractedCost,EffectiveCost,"
    "InvoiceIssuerName,ListCost,PricingQuantity,PricingUnit,ProviderName,PublisherName,ResourceId,ServiceCategory,ServiceName,SkuId,SubAccountId,"
    "SubAccountName,Tags,x_Discounts,x_Operation,x_ServiceCode"
)


class Dataset:
    def __init__(self, server, pg_port, now, h0, first):
        self.server, self.pg_port, self.now, self.h0, self.first = server, pg_port, now, h0, first


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    left = HOUR - time.time() % HOUR
    if left < 120:
        # The hours the data sits in are relative to now, and the tests'
        # windows too: not across an hour's end.
        time.sleep(left + 2)
    tmp = tmp_path_factory.mktemp("pg")
    pg_port = free_port()
    config = tmp / "costplane.toml"
    config.write_text(f"""
[ledger]
close_after_secs = 0
lookback_days = 50
llm_event_back_hours = 1200
refresh_secs = 1
{api_keys_toml(ADMIN, acme=ACME, globex=GLOBEX)}
[kubernetes]
cluster = "c1"
shared_namespaces = ["kube-system"]
[kubernetes.prices]
cpu_core_hour = "0.04"
ram_gib_hour = "0.005"
[kubernetes.prices.storage_classes]
persistentVolumeClaim = "73"
[kubernetes.prices.network]
transmit_gib = "0.01"
receive_gib = "0.002"
[postgres]
enabled = true
addr = "127.0.0.1:{pg_port}"
""")
    server = Server(tmp, extra_args=["--config", str(config)])
    now = int(time.time())
    today = now - now % DAY
    first = 0 if now > today + 1860 else 1
    spans = [llm_span(today - k * DAY + 1800, "10", k) for k in range(first, 43)]
    spans.append(llm_span(today - DAY + 1800, "40", 100, "embed"))
    body = {"resourceSpans": [
        {"resource": {"attributes": [kv("service.name", "chatbot"), kv("tenant.id", "acme")]}, "scopeSpans": [{"spans": spans}]},
        {"resource": {"attributes": [kv("service.name", "search"), kv("tenant.id", "globex")]},
         "scopeSpans": [{"spans": [llm_span(now - 60, "3", 200)]}]},
    ]}
    assert post(server, "/v1/traces", json.dumps(body).encode())[0] == 200
    h0 = (now - now % HOUR) - 3 * HOUR
    for k in range(8):
        assert post(server, "/v1/metrics", json.dumps(scrape(h0 * 1_000_000_000, k)).encode())[0] == 200
    start = datetime.datetime.fromtimestamp(h0, datetime.timezone.utc)
    stamp = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.000Z")  # noqa: E731
    bill = (
        f"{FOCUS_HEADER}\n1.5,111122223333,Main,Billing Account,USD,{stamp(start + datetime.timedelta(days=30))},{stamp(start)},"
        f"Usage,,EC2 hours,{stamp(start + datetime.timedelta(hours=1))},{stamp(start)},3,Hrs,1.5,1.5,\"Amazon Web Services, Inc.\",1.5,3,Hrs,"
        "AWS,\"Amazon Web Services, Inc.\",i-1,Compute,Amazon Elastic Compute Cloud,SKU1,444455556666,dev,"
        "\"{\"\"tenant\"\":\"\"acme\"\",\"\"service\"\":\"\"api\"\"}\",,RunInstances,AmazonEC2\n"
    )
    status, _, raw = api_request_raw(server, "/api/v1/import/focus?file=bill.csv", bill.encode(), "text/csv")
    assert status == 200, raw
    status, _, raw = api_request_raw(server, "/api/v1/kubernetes/flush", b"{}", "application/json")
    assert status == 200, raw
    # By hand: LLM (43 - first) x $10 + $40 + globex $3; Kubernetes 2.529; bill 1.5.
    everything = Decimal(43 - first) * 10 + 40 + 3 + Decimal("2.529") + Decimal("1.5")
    deadline = time.time() + 90
    while time.time() < deadline:
        total = Decimal(api(server, "/api/v1/costs?from=1970-01-01")["total"])
        anomalies = api(server, "/api/v1/anomalies?status=all")["count"]
        if total == everything and anomalies >= 1:
            break
        time.sleep(0.5)
    assert total == everything, f"the ledger holds {total}, expected {everything}\n{server.log()[-3000:]}"
    assert anomalies >= 1, server.log()[-3000:]
    # API calls are metered (at $0 here) as service costplane-api: wait for
    # that row, so the service list no longer changes while the tests read.
    deadline = time.time() + 30
    while time.time() < deadline:
        if any(r["service"] == "costplane-api" for r in api(server, "/api/v1/costs?from=1970-01-01&group_by=service")["rows"]):
            break
        time.sleep(0.5)
    yield Dataset(server, pg_port, now, h0, first)
    server.terminate()


def api_request_raw(server, path, body, ctype):
    import urllib.error
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{server.api_port}{path}", data=body, method="POST")
    req.add_header("Content-Type", ctype)
    req.add_header("Authorization", f"Bearer {ADMIN}")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


# --- the three clients ------------------------------------------------------

def psql(ds, sql, key=ADMIN, user="costplane", extra=(), env=None):
    require("psql", "apt-get install postgresql-client")
    out = subprocess.run(
        ["psql", "-X", "-A", "-t", "-F", "\x1f", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(ds.pg_port),
         "-U", user, "-d", "costplane", *extra, "-c", sql],
        capture_output=True, text=True, env={**os.environ, "PGPASSWORD": key, "PGSSLMODE": "disable", **(env or {})},
    )
    return out


def psql_rows(ds, sql, key=ADMIN):
    out = psql(ds, sql, key)
    assert out.returncode == 0, f"{sql}\n{out.stderr}"
    # -A -t: one line per row (an empty line is a row of one empty string).
    return [tuple(line.split("\x1f")) for line in out.stdout.split("\n")[:-1]]


def psycopg_rows(ds, sql, binary, params=None, key=ADMIN):
    try:
        import psycopg
    except ImportError:
        pytest.fail("psycopg 3 is not installed: pip install -r tests/requirements.txt")
    with psycopg.connect(host="127.0.0.1", port=ds.pg_port, user="costplane", password=key, dbname="costplane",
                         sslmode="disable") as conn:
        with conn.cursor(binary=binary) as cur:
            cur.execute(sql, params)
            return cur.fetchall()


NODE_SCRIPT = r"""
const { Client } = require('pg');
const [port, password, file] = process.argv.slice(2);
const queries = JSON.parse(require('fs').readFileSync(file, 'utf8'));
(async () => {
  const client = new Client({ host: '127.0.0.1', port: Number(port), user: 'costplane', password, database: 'costplane', ssl: false });
  await client.connect();
  const out = [];
  for (const q of queries) {
    const r = await client.query({ text: q.text, values: q.values, rowMode: 'array' });
    out.push(r.rows.map(row => row.map(v => v instanceof Date ? v.toISOString() : v)));
  }
  await client.end();
  console.log(JSON.stringify(out));
})().catch(e => { console.error(e.message); process.exit(1); });
"""


def node_rows(ds, tmp_path, queries, key=ADMIN):
    require("node", "apt-get install nodejs")
    if not (Path(NODE_MODULES) / "pg").is_dir():
        pytest.fail(f"Node's pg is not installed in {NODE_MODULES}: npm install --prefix {Path(NODE_MODULES).parent} pg (scripts/test.sh does)")
    script, data = tmp_path / "client.js", tmp_path / "queries.json"
    script.write_text(NODE_SCRIPT)
    data.write_text(json.dumps(queries))
    out = subprocess.run(["node", str(script), str(ds.pg_port), key, str(data)], capture_output=True, text=True,
                         env={**os.environ, "NODE_PATH": NODE_MODULES})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


# --- normalising answers ------------------------------------------------------

def norm(v):
    """One cell as comparable text: exact decimals, UTC times to the second."""
    if v is None or v == "":
        return None
    if isinstance(v, datetime.datetime):
        return v.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if isinstance(v, (Decimal, int)):
        return format(Decimal(v).normalize(), "f")
    if isinstance(v, float):
        return format(Decimal(repr(v)).normalize(), "f")
    s = str(v)
    for fmt in ("%Y-%m-%d %H:%M:%S+00", "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            return datetime.datetime.strptime(s, fmt).strftime("%Y-%m-%dT%H:%M:%S")
        except ValueError:
            pass
    try:
        return format(Decimal(s).normalize(), "f")
    except ArithmeticError:
        return s


def table(rows):
    return sorted((tuple(norm(c) for c in r) for r in rows), key=lambda t: tuple("" if c is None else c for c in t))


# --- tests ----------------------------------------------------------------------

def test_every_query_answers_the_same_on_three_clients_and_matches_the_cost_api(dataset, tmp_path):
    ds = dataset
    now = int(time.time())
    sqls = [grafana(q, now) for q in QUERIES]
    by_psql = [table(psql_rows(ds, q)) for q in sqls]
    by_text = [table(psycopg_rows(ds, q, binary=False)) for q in sqls]
    by_binary = [table(psycopg_rows(ds, q, binary=True)) for q in sqls]
    by_node = [table(r) for r in node_rows(ds, tmp_path, [{"text": q, "values": []} for q in sqls])]
    for i, q in enumerate(sqls):
        assert by_psql[i] == by_text[i] == by_binary[i] == by_node[i], f"{q}\npsql {by_psql[i]}\ntext {by_text[i]}\nbinary {by_binary[i]}\nnode {by_node[i]}"
    answers = dict(zip(range(1, 14), by_psql))

    def costs(path, key=ADMIN):
        return api(ds.server, path, key)

    def since(seconds):
        return iso((now - seconds) * 1_000_000_000)

    # 1. Thirty days: the API's total for the same window; by hand, the LLM
    # days k = first..29 (hour start after now - 30 days) x $10 + the $40
    # spike + globex $3 + Kubernetes 2.529 + the bill 1.5.
    api30 = Decimal(costs(f"/api/v1/costs?from={since(30 * DAY)}")["total"])
    assert api30 == Decimal(30 - ds.first) * 10 + 40 + 3 + Decimal("2.529") + Decimal("1.5")
    assert answers[1] == [(norm(api30),)]

    # 2. Seven days by service, as the API groups by service.
    by_service = {norm(r["service"]): Decimal(r["cost"]) for r in costs(f"/api/v1/costs?from={since(7 * DAY)}&group_by=service")["rows"]}
    assert {s: Decimal(c) for s, c in answers[2]} == by_service
    # web: 2 x (0.02 + 0.01 + 1.0) + network 0.049 = 2.109; shop (shared
    # rows carry the namespace as service): 2 x 0.0065 = 0.013.
    assert by_service["web"] == Decimal("2.109") and by_service["shop"] == Decimal("0.013")
    assert by_service["chatbot"] == Decimal(7 - ds.first) * 10 + 40 and by_service["search"] == 3

    # 3 and 10. Hourly by service: the API's hourly series for the window.
    hourly = costs(f"/api/v1/costs?from={since(7 * DAY)}&group_by=service&step=hour")["rows"]
    expected = table((r["period_start"].rstrip("Z"), r["service"], r["cost"]) for r in hourly)
    assert answers[3] == expected
    assert answers[10] == expected

    # 4. Cost types over 24 hours. By hand: cpu 2 x 0.02; memory 2 x 0.01;
    # volume 2 x 1.0; network 0.049; shared 0.013; idle 2 x (0.136 + 0.0675);
    # cloud 1.5; llm today's $10 (once 00:30 has passed) + globex $3.
    types = {t: Decimal(c) for t, c in answers[4]}
    assert types["cpu"] == Decimal("0.04") and types["memory"] == Decimal("0.02") and types["volume"] == 2
    assert types["network"] == Decimal("0.049") and types["shared"] == Decimal("0.013") and types["idle"] == Decimal("0.407")
    assert types["cloud"] == Decimal("1.5") and types["llm"] == (13 if ds.first == 0 else 3)
    assert sum(types.values()) == Decimal(costs(f"/api/v1/costs?from={since(DAY)}")["total"])

    # 5. Every service the ledger names.
    services = {r["service"] for r in costs("/api/v1/costs?from=1970-01-01&group_by=service")["rows"]}
    assert {s for (s,) in answers[5]} == {norm(s) for s in services}

    # 6. Shared Kubernetes cost: shop receives all of kube-system's 0.0065
    # per hour, and has all of the cluster's own CPU and memory (100 %).
    assert answers[6] == [("shop", "c1", "100", "100", "0.0065")] * 2

    # 7. Shared storage: what the API books as telemetry storage (none here).
    storage = {norm(r["service"]): norm(r["cost"]) for r in costs("/api/v1/costs?from=1970-01-01&source=telemetry&usage_type=storage&group_by=service")["rows"]}
    assert dict(answers[7]) == storage

    # 8 and 9. The anomaly: yesterday 00:00, chatbot, $50 against $10, as the
    # anomalies API reports it (day and hour grains).
    found = api(ds.server, "/api/v1/anomalies?status=all")["anomalies"]
    want = sorted((a["window_start"].rstrip("Z"), "chatbot", norm(a["actual"]), norm(a["expected"])) for a in found if abs(a["score"]) > 3)
    assert want and all(w[2] == "50" and w[3] == "10" for w in want)
    assert sorted(r[:4] for r in answers[8]) == want
    assert sorted(answers[9]) == sorted({(w[0], "chatbot", "50", "10") for w in want})

    # 11. Pods: web's CPU + memory + storage per hour = 0.02 + 0.01 + 1.0.
    assert answers[11] == [("web", "shop", "web", "1.03")] * 2

    # 12. Network by hour: H0 ingress 0.006, egress 0.015; H1 0.008, 0.02.
    h0 = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ds.h0))
    h1 = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ds.h0 + HOUR))
    assert answers[12] == [(h0, "web", "0.006", "0.015"), (h1, "web", "0.008", "0.02")]

    # 13. Storage: the 10 GiB volume for two hours, 2.0, 0.1 per GiB-hour.
    assert answers[13] == [("volume", "web", "20", "2", "0.1")]


def test_parameters_in_text_and_binary(dataset):
    ds = dataset
    sql = "SELECT service_name, SUM(cost_usd) AS cost FROM service_costs WHERE timestamp > %s AND service_name = %s GROUP BY service_name"
    since = datetime.datetime.fromtimestamp(ds.now - 7 * DAY, datetime.timezone.utc)
    for binary in (False, True):
        rows = psycopg_rows(ds, sql, binary, (since, "web"))
        # web over 7 days: 2.109 (see above), exact.
        assert [(s, Decimal(c)) for s, c in rows] == [("web", Decimal("2.109"))]
        assert isinstance(rows[0][1], Decimal)
    # A value that tries to end its literal is a value.
    assert psycopg_rows(ds, "SELECT count(*) FROM service_costs WHERE service_name = %s", True, ("x' OR '1'='1",)) == [(0,)]


def test_node_pg_binds_parameters(dataset, tmp_path):
    ds = dataset
    got = node_rows(ds, tmp_path, [{
        "text": "SELECT SUM(cost_usd) FROM service_costs WHERE service_name = $1 AND cost_type = $2",
        "values": ["web", "volume"],
    }])
    assert got == [[["2.000000000000"]]]


def test_psql_describes_the_views(dataset):
    ds = dataset
    out = psql(ds, "\\dt")
    assert out.returncode == 0, out.stderr
    assert "costplane_ledger" in out.stdout and "otel_traces" in out.stdout
    out = psql(ds, "\\d")
    assert out.returncode == 0, out.stderr
    for view in ("service_costs", "pod_costs", "network_costs", "storage_costs", "shared_infrastructure_allocation", "cost_anomalies"):
        assert view in out.stdout, out.stdout
    out = subprocess.run(
        ["psql", "-X", "-h", "127.0.0.1", "-p", str(ds.pg_port), "-U", "costplane", "-d", "costplane", "-c", "\\d service_costs"],
        capture_output=True, text=True, env={**os.environ, "PGPASSWORD": ADMIN, "PGSSLMODE": "disable"},
    )
    assert out.returncode == 0, out.stderr
    assert 'View "public.service_costs"' in out.stdout
    for line in ("cost_usd       | numeric", "timestamp      | timestamp with time zone", "service_name   | text"):
        assert line in out.stdout, out.stdout


def test_a_tenant_key_sees_its_tenant_only(dataset):
    ds = dataset
    mine = psql_rows(ds, "SELECT SUM(cost_usd) FROM service_costs", key=ACME)
    total = api(ds.server, "/api/v1/costs?from=1970-01-01", key=ACME)["total"]
    # acme: the LLM days and spike, and the bill: (43 - first) x 10 + 40 + 1.5.
    assert Decimal(total) == Decimal(43 - ds.first) * 10 + 40 + Decimal("1.5")
    assert [tuple(norm(c) for c in r) for r in mine] == [(norm(total),)]
    assert psql_rows(ds, "SELECT DISTINCT tenant FROM service_costs", key=ACME) == [("acme",)]
    assert psql_rows(ds, "SELECT DISTINCT service_name FROM service_costs WHERE service_name = 'search'", key=ACME) == []
    assert psql_rows(ds, "SELECT DISTINCT tenant FROM service_costs", key=GLOBEX) == [("globex",)]
    for sql in ("SELECT count(*) FROM otel_traces", "SELECT count(*) FROM costplane_ledger", "SELECT * FROM main.costplane_ledger"):
        out = psql(ds, sql, key=ACME)
        assert out.returncode != 0, f"{sql}: {out.stdout}"
    # Its catalog lists its views, no tables.
    out = psql(ds, "\\d", key=ACME)
    assert "service_costs" in out.stdout and "costplane_ledger" not in out.stdout and "otel_traces" not in out.stdout
    # The key's tenant as the user works; another name does not.
    assert psql(ds, "SELECT 1", key=ACME, user="acme").returncode == 0
    assert psql(ds, "SELECT 1", key=ACME, user="globex").returncode != 0


def test_writes_and_wrong_passwords_are_refused(dataset):
    ds = dataset
    for sql in (
        "INSERT INTO costplane_ledger (BilledCost) VALUES (1)",
        "COPY costplane_ledger TO '/tmp/x.csv'",
        "CREATE TABLE t (x INT)",
        "DELETE FROM costplane_ledger",
        "WITH x AS (SELECT 1) DELETE FROM costplane_ledger",
        "SELECT 1; DROP VIEW service_costs",
    ):
        out = psql(ds, sql)
        assert out.returncode != 0, f"{sql} was accepted: {out.stdout}"
    assert psql_rows(ds, "SELECT count(*) FROM service_costs WHERE cost_type = 'volume'") == [("2",)]
    out = psql(ds, "SELECT 1", key="not-a-key-0123456789")
    assert out.returncode != 0 and "password authentication failed" in out.stderr.lower(), out.stderr


def test_tls_with_a_test_ca(tmp_path):
    require("openssl", "apt-get install openssl")
    from test_tls import make_ca, make_cert
    ca = make_ca(tmp_path, "ca")
    cert, key = make_cert(tmp_path, "ca", "server")
    pg_port = free_port()
    config = tmp_path / "costplane.toml"
    config.write_text(f"""
[[api.keys]]
key = "{ADMIN}"
role = "admin"
[tls]
cert_file = "{cert}"
key_file = "{key}"
[postgres]
enabled = true
addr = "127.0.0.1:{pg_port}"
""")
    data = tmp_path / "data"
    data.mkdir()
    from test_tls import TlsServer
    server = TlsServer(data, ca, extra_args=["--config", str(config)])
    try:
        ds = Dataset(server, pg_port, int(time.time()), 0, 0)
        env = {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(ca)}
        out = psql(ds, "SELECT count(*) FROM service_costs", env=env)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "0"
        import psycopg
        with psycopg.connect(host="127.0.0.1", port=pg_port, user="costplane", password=ADMIN, dbname="costplane",
                             sslmode="verify-full", sslrootcert=str(ca)) as conn:
            assert conn.pgconn.ssl_in_use
            assert conn.execute("SELECT 1 + 1").fetchall() == [(2,)]
        # A client that trusts another CA refuses the server.
        other = make_ca(tmp_path, "other")
        out = psql(ds, "SELECT 1", env={"PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(other)})
        assert out.returncode != 0
    finally:
        server.terminate()


def clickhouse_dialect(sql, now):
    """The same query for Grafana's ClickHouse datasource."""
    import re
    sql = grafana(sql, now).replace("time_bucket('1 hour', timestamp)", "toStartOfHour(timestamp)")
    sql = re.sub(r"'(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.000Z'", r"toDateTime64('\1', 6, 'UTC')", sql)
    units = {"days": "DAY", "day": "DAY", "hours": "HOUR"}
    return re.sub(r"INTERVAL '(\d+) (\w+)'", lambda m: f"INTERVAL {m.group(1)} {units[m.group(2)]}", sql)


def test_clickhouse_has_the_same_views_and_no_endpoint(tmp_path):
    from conftest import clickhouse_url_for_tests
    url, front = clickhouse_url_for_tests(tmp_path)
    server = None
    try:
        server = Server(tmp_path, store="clickhouse", clickhouse_url=url)
        now = int(time.time())
        body = {"resourceSpans": [{"resource": {"attributes": [kv("service.name", "chatbot"), kv("tenant.id", "acme")]},
                                   "scopeSpans": [{"spans": [llm_span(now - 60, "2.5", 1), llm_span(now - 30, "0.25", 2)]}]}]}
        assert post(server, "/v1/traces", json.dumps(body).encode())[0] == 200
        # $2.5 + $0.25 = $2.75, as the cost API says.
        deadline = time.time() + 60
        while time.time() < deadline and api_request(server, "/api/v1/costs?from=1970-01-01")[2].find(b'"total":"2.75"') < 0:
            time.sleep(0.5)
        for q in QUERIES:
            rows = server.sql(clickhouse_dialect(q, now))
            assert isinstance(rows, list), q
        got = server.sql(clickhouse_dialect(QUERIES[1], now))
        assert [(r["service_name"], Decimal(str(r["cost"]))) for r in got if r["service_name"] == "chatbot"] == [("chatbot", Decimal("2.75"))]
        server.terminate()
        server = None
        # The endpoint is refused on ClickHouse, with the reason.
        config = tmp_path / "pg.toml"
        config.write_text(f'[postgres]\nenabled = true\naddr = "127.0.0.1:{free_port()}"\n')
        out = subprocess.run([costplane_bin(), "serve", "--config", str(config),
                              "--store", "clickhouse", "--clickhouse-url", url, "--data-dir", str(tmp_path / "x")],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and "embedded store only" in out.stderr, out.stderr
    finally:
        if server and server.proc.poll() is None:
            server.proc.kill()
        if front:
            front.stop()


def test_the_grafana_postgres_dashboards_run_on_the_endpoint(dataset):
    """Every panel and variable query of deploy/grafana/postgres, with the
    datasource's macros expanded as Grafana does, answers on the endpoint;
    the files are what scripts/grafana_postgres_dashboards.py writes."""
    import re
    import sys
    out = subprocess.run([sys.executable, str(ROOT / "scripts/grafana_postgres_dashboards.py"), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    import yaml
    provisioning = ROOT / "deploy/grafana/postgres/provisioning"
    sources = yaml.safe_load((provisioning / "datasources/costplane-postgres.yaml").read_text())["datasources"]
    assert [(s["uid"], s["type"]) for s in sources] == [("prometheus", "prometheus"), ("costplane-postgres", "grafana-postgresql-datasource")]
    assert sources[1]["jsonData"]["database"] == "costplane" and sources[1]["user"] == "costplane"
    now = int(time.time())
    fmt = "%Y-%m-%dT%H:%M:%S.000Z"
    frm, to = time.strftime(fmt, time.gmtime(now - 7 * DAY)), time.strftime(fmt, time.gmtime(now + HOUR))
    ran = 0
    for path in sorted((ROOT / "deploy/grafana/postgres/dashboards").glob("*.json")):
        d = json.loads(path.read_text())
        queries = [t["rawSql"] for p in d["panels"] for t in p["targets"]]
        queries += [v["query"] for v in d["templating"]["list"] if v["type"] == "query"]
        for sql in queries:
            sql = re.sub(r"\$__timeFilter\((\w+)\)", lambda m: f"{m.group(1)} BETWEEN '{frm}' AND '{to}'", sql)
            sql = grafana(sql, now).replace("$service", "web")
            assert "$" not in sql, sql
            psycopg_rows(dataset, sql, binary=True)
            ran += 1
    assert ran >= 14


def test_a_cancel_request_stops_the_query(dataset):
    """psycopg sends a cancel request for a query that would run for minutes:
    the client gets 57014 at once, and DuckDB's connection is free again."""
    import threading
    import psycopg
    ds = dataset
    with psycopg.connect(host="127.0.0.1", port=ds.pg_port, user="costplane", password=ADMIN, dbname="costplane",
                         sslmode="disable") as conn:
        timer = threading.Timer(1.0, conn.cancel_safe)
        timer.start()
        started = time.time()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT count(*) FROM range(100000000000) AS a(x) WHERE x % 7 = 3")
        timer.join()
        assert time.time() - started < 10
    started = time.time()
    assert psycopg_rows(ds, "SELECT count(*) FROM service_costs WHERE cost_type = 'volume'", binary=False) == [(2,)]
    assert time.time() - started < 5, "the cancelled query still held the connection"


def test_grafana_metadata_and_prepared_statements(dataset):
    """What Grafana's PostgreSQL datasource asks besides panels (version
    detection, TimescaleDB, the table and column pickers, $__timeGroup), and
    psycopg's server-side prepared statements."""
    ds = dataset
    assert psycopg_rows(ds, "SELECT current_setting('server_version_num')::int/100 as version", False) == [(1600,)]
    assert psycopg_rows(ds, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'", False) == []
    tables = {t for (t,) in psycopg_rows(ds, "SELECT quote_ident(table_name) AS \"table\" FROM information_schema.tables "
                                             "WHERE quote_ident(table_schema) = 'main'", False)}
    assert {"service_costs", "pod_costs", "cost_anomalies", "costplane_ledger", "otel_traces"} <= tables
    columns = dict(psycopg_rows(ds, "SELECT quote_ident(column_name) AS \"column\", data_type AS \"type\" FROM information_schema.columns "
                                    "WHERE quote_ident(table_schema) = 'main' AND quote_ident(table_name) = 'service_costs'", True))
    assert columns["cost_usd"] == "DECIMAL(38,12)" and columns["timestamp"] == "TIMESTAMP"
    # $__timeGroup(timestamp, '1h') as Grafana expands it: per hour, the
    # volume's 1.0 (see the module's docstring).
    rows = psycopg_rows(ds, "SELECT floor(extract(epoch from timestamp)/3600)*3600 AS \"time\", SUM(cost_usd) FROM service_costs "
                            f"WHERE cost_type = 'volume' AND timestamp BETWEEN '2000-01-01T00:00:00Z' AND '2100-01-01T00:00:00Z' GROUP BY 1 ORDER BY 1", True)
    assert [(int(t), c) for t, c in rows] == [(ds.h0, Decimal(1)), (ds.h0 + HOUR, Decimal(1))]
    import psycopg
    with psycopg.connect(host="127.0.0.1", port=ds.pg_port, user="costplane", password=ADMIN, dbname="costplane", sslmode="disable") as conn:
        for _ in range(3):
            got = conn.execute("SELECT SUM(cost_usd) FROM service_costs WHERE cost_type = %s", ("volume",), prepare=True).fetchall()
            assert got == [(Decimal(2),)]
