#!/usr/bin/env python3
"""Writes the Grafana dashboards that read costplane's embedded store through
its PostgreSQL endpoint (Grafana's built-in PostgreSQL datasource), into
deploy/grafana/postgres/dashboards/. With --check, fails when the files
differ from what it would write.

Classic dashboard JSON, stable uids, the datasource chosen through the
`ds_postgres` variable (provisioned uid: costplane-postgres). Every panel is
SQL over the cost views (service_costs, pod_costs, network_costs,
storage_costs, shared_infrastructure_allocation, cost_anomalies), with
Grafana's time macros."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "deploy/grafana/postgres/dashboards"
DS = {"type": "grafana-postgresql-datasource", "uid": "${ds_postgres}"}


def target(sql, fmt="table"):
    return {"datasource": DS, "refId": "A", "editorMode": "code", "rawQuery": True, "format": fmt, "rawSql": sql}


def panel(pid, title, kind, sql, x, y, w=12, h=8, fmt="table", unit="currencyUSD"):
    return {
        "id": pid, "title": title, "type": kind, "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [target(sql, fmt)],
    }


def dashboard(uid, title, panels, service_variable=False):
    variables = [{
        "name": "ds_postgres", "label": "PostgreSQL", "type": "datasource", "query": "grafana-postgresql-datasource",
        "current": {"text": "costplane (PostgreSQL)", "value": "costplane-postgres"}, "hide": 0,
    }]
    if service_variable:
        variables.append({
            "name": "service", "label": "Service", "type": "query", "datasource": DS,
            "query": "SELECT DISTINCT service_name FROM service_costs WHERE service_name <> '' ORDER BY 1",
            "definition": "SELECT DISTINCT service_name FROM service_costs WHERE service_name <> '' ORDER BY 1",
            "refresh": 2, "current": {}, "hide": 0,
        })
    return {
        "uid": uid, "title": title, "tags": ["costplane", "postgres"], "timezone": "utc", "schemaVersion": 39,
        "version": 1, "editable": True, "refresh": "5m", "time": {"from": "now-7d", "to": "now"},
        "templating": {"list": variables}, "annotations": {"list": []}, "panels": panels,
    }


HOURLY = ("SELECT time_bucket('1 hour', timestamp) AS time, service_name, SUM(cost_usd) as cost FROM service_costs "
          "WHERE timestamp > $__timeFrom() AND timestamp < $__timeTo() GROUP BY time, service_name ORDER BY time")

DASHBOARDS = {
    "cxo-overview.json": dashboard("costplane-pg-overview", "costplane: CXO cost overview (PostgreSQL)", [
        panel(1, "Last 30 days", "stat",
              "SELECT SUM(cost_usd) FROM service_costs WHERE timestamp > NOW() - INTERVAL '30 days';", 0, 0, 6, 5),
        panel(2, "Last 24 hours by cost type", "piechart",
              "SELECT cost_type, SUM(cost_usd) as cost FROM service_costs WHERE timestamp > NOW() - INTERVAL '24 hours' GROUP BY cost_type;",
              6, 0, 9, 10),
        panel(3, "Last 7 days by service", "barchart",
              "SELECT service_name, SUM(cost_usd) as cost FROM service_costs WHERE timestamp > NOW() - INTERVAL '7 days' GROUP BY service_name;",
              15, 0, 9, 10),
        panel(4, "Hourly cost by service", "timeseries", HOURLY, 0, 10, 24, 9, "time_series"),
        panel(5, "Costliest pods (last day)", "table",
              "SELECT pod_name, namespace, service_name, cpu_cost_usd + memory_cost_usd + storage_cost_usd as total_cost "
              "FROM pod_costs WHERE timestamp > NOW() - INTERVAL '1 day' ORDER BY total_cost DESC LIMIT 50;", 0, 19, 24, 9),
    ]),
    "service-deep-dive.json": dashboard("costplane-pg-service", "costplane: service deep dive (PostgreSQL)", [
        panel(1, "$service by cost type", "timeseries",
              "SELECT time_bucket('1 hour', timestamp) AS time, cost_type, SUM(cost_usd) AS cost FROM service_costs "
              "WHERE service_name = '$service' AND $__timeFilter(timestamp) GROUP BY time, cost_type ORDER BY time",
              0, 0, 24, 9, "time_series"),
        panel(2, "Network by direction", "timeseries",
              "SELECT time_bucket('1 hour', timestamp) AS time, service_name, SUM(CASE WHEN direction = 'ingress' THEN cost_usd ELSE 0 END) "
              "as ingress_cost, SUM(CASE WHEN direction = 'egress' THEN cost_usd ELSE 0 END) as egress_cost FROM network_costs "
              "WHERE timestamp > $__timeFrom() AND service_name = '$service' GROUP BY time, service_name ORDER BY time",
              0, 9, 12, 9, "time_series"),
        panel(3, "Storage by type", "table",
              "SELECT storage_type, service_name, SUM(storage_gb) as total_gb, SUM(cost_usd) as total_cost, "
              "SUM(cost_usd) / SUM(storage_gb) as cost_per_gb FROM storage_costs WHERE timestamp > NOW() - INTERVAL '24 hours' "
              "AND service_name = '$service' GROUP BY storage_type, service_name ORDER BY total_cost DESC", 12, 9),
        panel(4, "Pods", "table",
              "SELECT pod_name, namespace, SUM(cpu_cost_usd) AS cpu, SUM(memory_cost_usd) AS memory, SUM(gpu_cost_usd) AS gpu, "
              "SUM(storage_cost_usd) AS storage, SUM(network_cost_usd) AS network, SUM(total_cost_usd) AS total FROM pod_costs "
              "WHERE service_name = '$service' AND $__timeFilter(timestamp) GROUP BY pod_name, namespace ORDER BY total DESC",
              0, 18, 24, 8),
    ], service_variable=True),
    "shared-infrastructure.json": dashboard("costplane-pg-shared", "costplane: shared infrastructure (PostgreSQL)", [
        panel(1, "Kubernetes shared namespaces", "table",
              "SELECT service_name, cluster_name, cpu_allocation_percent, memory_allocation_percent, allocated_cost_usd "
              "FROM shared_infrastructure_allocation WHERE resource_type = 'kubernetes' ORDER BY allocated_cost_usd DESC;", 0, 0, 24, 9),
        panel(2, "Telemetry storage by service", "barchart",
              "SELECT service_name, SUM(allocated_cost_usd) as cost FROM shared_infrastructure_allocation "
              "WHERE resource_type = 'storage' GROUP BY service_name;", 0, 9),
        panel(3, "Shared and idle over time", "timeseries",
              "SELECT time_bucket('1 hour', timestamp) AS time, resource_type, SUM(allocated_cost_usd) AS cost "
              "FROM shared_infrastructure_allocation WHERE $__timeFilter(timestamp) GROUP BY time, resource_type ORDER BY time",
              12, 9, 12, 9, "time_series"),
    ]),
    "anomalies.json": dashboard("costplane-pg-anomalies", "costplane: cost anomalies (PostgreSQL)", [
        panel(1, "Anomalies (|z| > 3)", "table",
              "SELECT timestamp, service_name, cost_usd, expected_cost, zscore FROM cost_anomalies WHERE zscore > 3 "
              "ORDER BY timestamp DESC LIMIT 20;", 0, 0, 24, 9),
        panel(2, "Actual against expected", "timeseries",
              "SELECT time_bucket('1 hour', timestamp) as time, service_name, AVG(cost_usd) as actual, AVG(expected_cost) as expected "
              "FROM cost_anomalies GROUP BY time, service_name ORDER BY time", 0, 9, 24, 9, "time_series"),
    ]),
}


def render(d):
    return json.dumps(d, indent=2, sort_keys=True) + "\n"


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    OUT.mkdir(parents=True, exist_ok=True)
    for name, d in DASHBOARDS.items():
        path, text = OUT / name, render(d)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("out of date (run scripts/grafana_postgres_dashboards.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
