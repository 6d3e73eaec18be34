#!/usr/bin/env python3
"""Writes costplane's Grafana dashboards to deploy/grafana/dashboards/*.json.

The JSON files are what users deploy (file provisioning, the Helm chart's
ConfigMaps, compose); this script is where they are edited, so eight
dashboards share one layout and one datasource convention. The tests check
the files equal this script's output:

    python3 scripts/grafana_dashboards.py          # rewrite the files
    python3 scripts/grafana_dashboards.py --check  # exit 1 if they differ

Conventions: classic JSON model, schemaVersion 42 (the latest Grafana
migrates to), a stable uid per dashboard, datasources referenced by uid
through datasource variables (`ds_prometheus`, `ds_clickhouse`) whose
defaults are the uids that deploy/grafana/provisioning provisions, no
`__inputs`. Cost and health panels read Prometheus (the recording rules of
deploy/prometheus/costplane-rules.yaml); telemetry panels read ClickHouse
through grafana-clickhouse-datasource (the OTel exporter's tables plus
costplane's usage and ledger tables).
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "deploy/grafana/dashboards"
SCHEMA_VERSION = 42

PROM = {"type": "prometheus", "uid": "${ds_prometheus}"}
CH = {"type": "grafana-clickhouse-datasource", "uid": "${ds_clickhouse}"}

PROM_VAR = {
    "name": "ds_prometheus", "label": "Prometheus", "type": "datasource", "query": "prometheus",
    "current": {"text": "Prometheus", "value": "prometheus"}, "hide": 0, "refresh": 1, "regex": "", "options": [],
}
CH_VAR = {
    "name": "ds_clickhouse", "label": "ClickHouse", "type": "datasource", "query": "grafana-clickhouse-datasource",
    "current": {"text": "ClickHouse", "value": "clickhouse"}, "hide": 0, "refresh": 1, "regex": "", "options": [],
}


def prom_var(name, label, metric):
    q = f"label_values({metric}, {name})"
    return {
        "name": name, "label": label, "type": "query", "datasource": PROM, "definition": q,
        "query": {"qryType": 1, "query": q, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2, "sort": 1, "multi": False, "includeAll": False, "hide": 0, "options": [], "current": {},
    }


def ch_var(name, label, sql):
    return {
        "name": name, "label": label, "type": "query", "datasource": CH, "definition": sql,
        "query": {"editorType": "sql", "rawSql": sql}, "refresh": 2, "sort": 1,
        "multi": False, "includeAll": True, "allValue": "", "hide": 0, "options": [], "current": {},
    }


def textbox(name, label, default=""):
    return {"name": name, "label": label, "type": "textbox", "query": default, "hide": 0,
            "current": {"text": default, "value": default}, "options": []}


def prom(expr, legend="", instant=False, ref="A"):
    t = {"refId": ref, "datasource": PROM, "expr": expr, "legendFormat": legend or "__auto", "editorMode": "code"}
    if instant:
        t.update({"instant": True, "range": False, "format": "table"})
    else:
        t.update({"instant": False, "range": True})
    return t


def sql(raw, fmt=0, ref="A"):
    """A ClickHouse plugin target; fmt: 0 time series, 1 table, 2 logs."""
    return {"refId": ref, "datasource": CH, "editorType": "sql", "rawSql": raw, "format": fmt, "queryType": "sql"}


def panel(kind, title, targets, w=12, h=8, unit="", description="", options=None):
    ds = targets[0]["datasource"]
    # Instant Prometheus queries feed tables as rows; stats, pies and bar
    # gauges take one series per label set.
    for t in targets:
        if kind != "table" and t.get("format") == "table":
            t["format"] = "time_series"
    p = {
        "type": kind, "title": title, "description": description, "datasource": ds, "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit} if unit else {}, "overrides": []},
        "options": options or {}, "_size": (w, h),
    }
    if kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "none", "textMode": "auto"}
    if kind == "table":
        p["options"] = {"showHeader": True}
    return p


def layout(panels):
    """Places panels left to right in rows of 24 columns; none overlap."""
    x = y = row_h = 0
    out = []
    for i, p in enumerate(panels, start=1):
        w, h = p.pop("_size")
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        p["id"] = i
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        x += w
        row_h = max(row_h, h)
        out.append(p)
    return out


def dashboard(uid, title, description, panels, variables, tags, time_from="now-24h"):
    return {
        "id": None, "uid": uid, "title": title, "description": description, "tags": ["costplane", *tags],
        "timezone": "utc", "editable": True, "graphTooltip": 1, "refresh": "1m",
        "time": {"from": time_from, "to": "now"}, "timepicker": {}, "schemaVersion": SCHEMA_VERSION, "version": 1,
        "links": [{"title": "costplane dashboards", "type": "dashboards", "tags": ["costplane"], "asDropdown": True}],
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
        }]},
        "templating": {"list": variables},
        "panels": layout(panels),
    }


MTD = "costplane_cost_month_to_date_usd"


def overview():
    return dashboard(
        "costplane-cost-overview", "costplane / Cost overview",
        "What everything costs: 30-day total, month to date by service, cost type, source and tenant, the hourly trend, unpriced usage.",
        [
            panel("stat", "30-day total", [prom("max(costplane_cost_last_30_days_usd)", instant=True)], w=6, h=4, unit="currencyUSD"),
            panel("stat", "Month to date", [prom("costplane:costplane_cost_month_to_date_usd:sum", instant=True)], w=6, h=4, unit="currencyUSD"),
            panel("stat", "Budget used (all tenants)",
                  [prom('tenant:costplane_cost_month_to_date_usd_per_budget:ratio{tenant="*"}', instant=True)],
                  w=6, h=4, unit="percentunit", description="Month to date over [metrics.budgets] \"*\"; no data without a budget."),
            panel("stat", "Unpriced tokens (24h)", [prom("sum(increase(costplane_unpriced_tokens_total[24h]))", instant=True)], w=6, h=4,
                  unit="short", description="Tokens of models with no price: their cost is unknown, not zero."),
            panel("timeseries", "Hourly spend by service", [prom("service:costplane_cost_usd:increase1h", "{{service}}")], w=24, h=8,
                  unit="currencyUSD"),
            panel("bargauge", "Month to date by service", [prom("sort_desc(service:costplane_cost_month_to_date_usd:sum)", "{{service}}", True)],
                  w=8, h=8, unit="currencyUSD"),
            panel("piechart", "Month to date by cost type", [prom("cost_type:costplane_cost_month_to_date_usd:sum", "{{cost_type}}", True)],
                  w=8, h=8, unit="currencyUSD"),
            panel("piechart", "Month to date by source", [prom("source:costplane_cost_month_to_date_usd:sum", "{{source}}", True)],
                  w=8, h=8, unit="currencyUSD"),
            panel("table", "Top tenants (month to date)", [prom("topk(10, tenant:costplane_cost_month_to_date_usd:sum)", "{{tenant}}", True)],
                  w=12, h=8, unit="currencyUSD"),
            panel("table", "Unpriced usage by model (24h)",
                  [prom("sort_desc(sum by (provider, model) (increase(costplane_unpriced_tokens_total[24h])))", "{{provider}} {{model}}", True)],
                  w=12, h=8, unit="short"),
        ],
        [PROM_VAR], ["cost"], time_from="now-7d",
    )


def service():
    s = 'service="$service"'

    def hourly(selector, by=""):
        grouping = f" by ({by})" if by else ""
        return f"sum{grouping} (increase(costplane_cost_usd_total{{{s},{selector}}}[1h]))"

    return dashboard(
        "costplane-service", "costplane / Service deep dive",
        "One service's spend: CPU, memory and GPU, storage by type, network by direction, LLM by model, telemetry.",
        [
            panel("stat", "Month to date", [prom(f"max(sum by (instance) ({MTD}{{{s}}}))", instant=True)], w=8, h=4, unit="currencyUSD"),
            panel("stat", "Last hour", [prom(f"sum(increase(costplane_cost_usd_total{{{s}}}[1h]))", instant=True)], w=8, h=4, unit="currencyUSD"),
            panel("stat", "LLM share (month to date)",
                  [prom(f'max(sum by (instance) ({MTD}{{{s},source="llm"}})) / max(sum by (instance) ({MTD}{{{s}}}))', instant=True)],
                  w=8, h=4, unit="percentunit"),
            panel("timeseries", "CPU", [prom(hourly('cost_type="cpu"'), "cpu")], w=8, unit="currencyUSD",
                  description="Kubernetes CPU cost per hour (no data until Kubernetes allocation is configured)."),
            panel("timeseries", "Memory", [prom(hourly('cost_type="memory"'), "memory")], w=8, unit="currencyUSD"),
            panel("timeseries", "GPU", [prom(hourly('cost_type="gpu"'), "gpu")], w=8, unit="currencyUSD"),
            panel("timeseries", "Storage by type", [prom(hourly('cost_type=~"storage|volume"', "storage_type"), "{{storage_type}}")],
                  w=12, unit="currencyUSD"),
            panel("timeseries", "Network by direction", [prom(hourly('cost_type="network"', "direction"), "{{direction}}")],
                  w=12, unit="currencyUSD"),
            panel("timeseries", "LLM by model", [prom(hourly('source="llm"', "provider, model"), "{{provider}} {{model}}")],
                  w=12, unit="currencyUSD"),
            panel("timeseries", "Telemetry ingest and queries", [prom(hourly('source="telemetry"', "cost_type"), "{{cost_type}}")],
                  w=12, unit="currencyUSD"),
            panel("timeseries", "Cloud bill lines by provider", [prom(hourly('cost_type="cloud"', "provider"), "{{provider}}")],
                  w=12, unit="currencyUSD",
                  description="Imported FOCUS bill lines tagged with this service (costplane import focus), by charge hour."),
            panel("timeseries", "Kubernetes: own, shared and idle", [prom(hourly('source="kubernetes"', "cost_type"), "{{cost_type}}")],
                  w=12, unit="currencyUSD"),
        ],
        [PROM_VAR, prom_var("service", "Service", MTD)], ["cost"], time_from="now-7d",
    )


def shared():
    sh = 'cost_type="shared"'
    return dashboard(
        "costplane-shared", "costplane / Shared infrastructure",
        "Shared and idle cost and how it is split across tenants and services (no data until Kubernetes allocation is configured).",
        [
            panel("stat", "Shared, month to date", [prom(f"max(sum by (instance) ({MTD}{{{sh}}}))", instant=True)], w=8, h=4, unit="currencyUSD"),
            panel("stat", "Idle, month to date", [prom(f'max(sum by (instance) ({MTD}{{cost_type="idle"}}))', instant=True)], w=8, h=4,
                  unit="currencyUSD"),
            panel("stat", "Shared and idle share of all spend",
                  [prom(f'max(sum by (instance) ({MTD}{{cost_type=~"shared|idle"}})) / costplane:costplane_cost_month_to_date_usd:sum',
                        instant=True)], w=8, h=4, unit="percentunit"),
            panel("table", "Shared cost by tenant (month to date)",
                  [prom(f"sort_desc(max by (tenant) (sum by (tenant, instance) ({MTD}{{{sh}}})))", "{{tenant}}", True)], w=12, unit="currencyUSD"),
            panel("piechart", "Split of shared cost (month to date)",
                  [prom(f"max by (tenant) (sum by (tenant, instance) ({MTD}{{{sh}}})) / scalar(max(sum by (instance) ({MTD}{{{sh}}})))",
                        "{{tenant}}", True)], w=12, unit="percentunit"),
            panel("timeseries", "Shared and idle per hour",
                  [prom('sum by (cost_type) (increase(costplane_cost_usd_total{cost_type=~"shared|idle"}[1h]))', "{{cost_type}}")],
                  w=12, unit="currencyUSD"),
            panel("timeseries", "Idle cost by service per hour",
                  [prom('sum by (service) (increase(costplane_cost_usd_total{cost_type="idle"}[1h]))', "{{service}}")], w=12, unit="currencyUSD"),
            panel("piechart", "Kubernetes and cloud by cost type (month to date)",
                  [prom(f'max by (cost_type) (sum by (cost_type, instance) ({MTD}{{source=~"kubernetes|cloud"}}))', "{{cost_type}}", True)],
                  w=12, unit="currencyUSD"),
            panel("table", "Cloud bills by provider (month to date)",
                  [prom(f'sort_desc(max by (provider) (sum by (provider, instance) ({MTD}{{cost_type="cloud"}})))', "{{provider}}", True)],
                  w=12, unit="currencyUSD"),
        ],
        [PROM_VAR], ["cost", "kubernetes"], time_from="now-7d",
    )


def anomalies():
    return dashboard(
        "costplane-anomalies", "costplane / Cost anomalies",
        "Open anomalies, budgets and their month-end forecasts, spend against the same hour a day earlier, untagged spend, and the cost alerts.",
        [
            panel("timeseries", "Hourly spend against a day earlier", [
                prom("sum(tenant:costplane_cost_usd:increase1h)", "now"),
                prom("sum(tenant:costplane_cost_usd:increase1h offset 1d)", "a day earlier", ref="B"),
            ], w=24, unit="currencyUSD"),
            panel("timeseries", "Spend ratio to a day earlier, by tenant",
                  [prom("tenant:costplane_cost_usd:increase1h / (tenant:costplane_cost_usd:increase1h offset 1d)", "{{tenant}}")], w=12,
                  unit="short", description="CostplaneCostSpike fires above 2 when the hour also cost over $10."),
            panel("timeseries", "Untagged spend per hour", [prom("costplane:costplane_cost_usd_untagged:increase1h", "untagged")], w=12,
                  unit="currencyUSD"),
            panel("table", "Cost alerts",
                  [prom('ALERTS{alertname=~"CostplaneCostSpike|CostplaneBudgetThreshold|CostplaneUntaggedSpend|CostplaneUnpricedUsage"}',
                        "{{alertname}} {{tenant}}", True)], w=12),
            panel("timeseries", "Open anomalies", [prom("max by (grain, direction) (costplane_anomalies_open)", "{{grain}} {{direction}}")],
                  w=12, unit="short", description="Open cost anomalies (robust z over the seasonal baseline); details: GET /api/v1/anomalies."),
            panel("bargauge", "Budget spent (this period)", [prom("budget:costplane_budget_spent:ratio", "{{budget}} ({{period}})", True)],
                  w=12, unit="percentunit",
                  description="[[budgets]] spend over amount, provisional hours included; CostplaneBudgetThreshold fires above 0.9."),
            panel("table", "Budgets: amount, projection, month-end forecast", [
                prom("max by (budget, period) (costplane_budget_usd)", "amount {{budget}}", True),
                prom("max by (budget, period) (costplane_budget_projected_usd)", "projected {{budget}}", True, ref="B"),
                prom("max by (budget) (costplane_forecast_month_end_usd)", "month-end {{budget}}", True, ref="C"),
            ], w=12, unit="currencyUSD", description="Projected: the period total at the forecast (months) or the run rate."),
        ],
        [PROM_VAR], ["cost"], time_from="now-7d",
    )


def llm():
    return dashboard(
        "costplane-llm", "costplane / LLM cost",
        "LLM spend by model, tokens, cost per call and latency by operation, from the ledger and the GenAI spans.",
        [
            panel("stat", "LLM spend, month to date", [prom('source:costplane_cost_month_to_date_usd:sum{source="llm"}', instant=True)], w=8,
                  h=4, unit="currencyUSD"),
            panel("stat", "LLM spend, last hour", [prom('source:costplane_cost_usd:increase1h{source="llm"}', instant=True)], w=8, h=4,
                  unit="currencyUSD"),
            panel("stat", "Unpriced tokens (24h)", [prom("sum(increase(costplane_unpriced_tokens_total[24h]))", instant=True)], w=8, h=4),
            panel("timeseries", "Cost by model per hour", [prom("model:costplane_cost_usd:increase1h", "{{provider}} {{model}}")], w=12,
                  unit="currencyUSD"),
            panel("timeseries", "p95 latency by operation", [sql(
                "SELECT $__timeInterval(Timestamp) AS time, SpanAttributes['gen_ai.operation.name'] AS operation, "
                "quantile(0.95)(Duration) / 1e9 AS p95_seconds FROM otel_traces "
                "WHERE $__timeFilter(Timestamp) AND SpanAttributes['gen_ai.operation.name'] != '' "
                "GROUP BY time, operation ORDER BY time")], w=12, unit="s"),
            panel("timeseries", "Prompt and completion tokens", [sql(
                "SELECT $__timeInterval(Timestamp) AS time, sum(InputTokens) AS prompt, sum(OutputTokens) AS completion "
                "FROM costplane_usage_llm WHERE $__timeFilter(Timestamp) GROUP BY time ORDER BY time")], w=12, unit="short"),
            panel("timeseries", "Tokens by model", [sql(
                "SELECT $__timeInterval(Timestamp) AS time, Model AS model, sum(InputTokens + OutputTokens) AS tokens "
                "FROM costplane_usage_llm WHERE $__timeFilter(Timestamp) GROUP BY time, model ORDER BY time")], w=12, unit="short"),
            panel("table", "Cost per call by model", [sql(
                "SELECT c.model AS model, u.calls AS calls, c.cost AS cost, c.cost / u.calls AS cost_per_call FROM "
                "(SELECT x_Model AS model, sum(BilledCost) AS cost FROM costplane_ledger "
                "WHERE x_Source = 'llm' AND $__timeFilter(ChargePeriodStart) "
                # The current revision of each hour only, as costplane's own surfaces read it.
                "AND x_Revision IN (SELECT max(Revision) FROM costplane_ledger_hours GROUP BY Hour, Scope) "
                "GROUP BY model) AS c "
                "INNER JOIN (SELECT Model AS model, count() AS calls FROM costplane_usage_llm "
                "WHERE $__timeFilter(Timestamp) GROUP BY model) AS u ON c.model = u.model "
                "ORDER BY cost_per_call DESC", fmt=1)], w=24),
            panel("timeseries", "Estimated and invoiced, last 7 closed days", [
                prom("max by (provider) (costplane_reconciliation_estimated_usd)", "{{provider}} estimated"),
                prom("max by (provider) (costplane_reconciliation_invoiced_usd)", "{{provider}} invoiced", ref="B"),
            ], w=12, unit="currencyUSD",
                description="LLM cost estimated from spans against what the provider invoiced, over the closed days its invoices cover "
                            "(imported cost reports and FOCUS bills); costplane reconcile shows the models and days."),
            panel("timeseries", "Estimate drift, worst closed day", [
                prom("max by (provider) (costplane_reconciliation_max_daily_drift_percent)", "{{provider}}"),
            ], w=12, unit="percent", description="The largest daily drift of the last 7 closed days, in percent of the day's invoice "
                                                 "(the CostplaneEstimateDrift alert fires above 10)."),
        ],
        [PROM_VAR, CH_VAR], ["cost", "llm"],
    )


def telemetry():
    svc = "$__conditionalAll(ServiceName IN (${service:singlequote}), $service)"
    return dashboard(
        "costplane-telemetry", "costplane / Telemetry overview",
        "What arrives and from whom: ingest by signal and tenant, slow requests, errors, and the logs of a trace.",
        [
            panel("timeseries", "Ingest rate by signal", [prom("signal:costplane_ingest_items:rate5m", "{{signal}}")], w=12, unit="short"),
            panel("timeseries", "Ingest by tenant", [sql(
                "SELECT $__timeInterval(Hour) AS time, Tenant AS tenant, sum(Bytes) AS bytes FROM costplane_usage_telemetry "
                "WHERE $__timeFilter(Hour) GROUP BY time, tenant ORDER BY time")], w=12, unit="bytes"),
            panel("table", "Slow requests", [sql(
                "SELECT Timestamp, TraceId, ServiceName, SpanName, Duration / 1e6 AS duration_ms, StatusCode FROM otel_traces "
                f"WHERE $__timeFilter(Timestamp) AND {svc} AND Duration > ${{min_duration_ms}} * 1000000 "
                "ORDER BY Duration DESC LIMIT 50", fmt=1)], w=24,
                description="The slowest spans over min_duration_ms, newest data first filtered on the sort key (ServiceName, time)."),
            panel("timeseries", "Errors by service", [sql(
                "SELECT $__timeInterval(Timestamp) AS time, ServiceName AS service, count() AS errors FROM otel_traces "
                f"WHERE $__timeFilter(Timestamp) AND StatusCode = 'Error' AND {svc} GROUP BY time, service ORDER BY time")], w=12),
            panel("logs", "Error logs", [sql(
                "SELECT Timestamp AS timestamp, Body AS body, SeverityText AS level, ServiceName, TraceId FROM otel_logs "
                f"WHERE $__timeFilter(Timestamp) AND SeverityNumber >= 17 AND {svc} ORDER BY Timestamp DESC LIMIT 200", fmt=2)], w=12),
            panel("logs", "Logs of a trace", [sql(
                "SELECT Timestamp AS timestamp, Body AS body, SeverityText AS level, ServiceName, SpanId FROM otel_logs "
                "WHERE $__timeFilter(Timestamp) AND TraceId = '${trace_id}' ORDER BY Timestamp", fmt=2)], w=24,
                description="Set trace_id (from Slow requests) to see the logs written inside that trace."),
        ],
        [PROM_VAR, CH_VAR,
         ch_var("service", "Service", "SELECT DISTINCT ServiceName FROM otel_traces WHERE $__timeFilter(Timestamp) ORDER BY ServiceName"),
         textbox("min_duration_ms", "Slower than (ms)", "500"), textbox("trace_id", "Trace id")],
        ["telemetry"], time_from="now-1h",
    )


def health():
    return dashboard(
        "costplane-health", "costplane / Cost and health",
        "costplane itself: ingest rate, lag, query latency, compression, refusals and drops, storage and query cost per tenant.",
        [
            panel("stat", "Store up", [prom("min(costplane_store_up)", instant=True)], w=6, h=4),
            panel("stat", "Ingest lag", [prom("max(costplane_ingest_lag_seconds)", instant=True)], w=6, h=4, unit="s"),
            panel("stat", "Buffer", [prom("sum(costplane_buffer_bytes)", instant=True)], w=6, h=4, unit="bytes"),
            panel("stat", "Resident memory", [prom("sum(process_resident_memory_bytes and on (instance) costplane_store_up)", instant=True)],
                  w=6, h=4, unit="bytes"),
            panel("timeseries", "Ingest rate by signal", [prom("signal:costplane_ingest_items:rate5m", "{{signal}}")], w=12, unit="short"),
            panel("timeseries", "Ingest bytes by signal", [prom("signal:costplane_ingest_bytes:rate5m", "{{signal}}")], w=12, unit="Bps"),
            panel("timeseries", "Ingest lag", [prom("max by (instance) (costplane_ingest_lag_seconds)", "{{instance}}")], w=12, unit="s"),
            panel("timeseries", "Latency p95", [
                prom("job:costplane_query_duration_seconds:p95_5m", "API queries"),
                prom("job:costplane_store_write_duration_seconds:p95_5m", "store writes", ref="B"),
            ], w=12, unit="s"),
            panel("timeseries", "Compression (stored bytes per byte)", [prom("max by (signal) (costplane_store_compression_ratio)", "{{signal}}")],
                  w=12, unit="percentunit"),
            panel("timeseries", "Refused, rejected and dead-lettered items", [
                prom("signal:costplane_ingest_refused_items:rate5m", "refused {{signal}}"),
                prom("signal:costplane_ingest_rejected_items:rate5m", "rejected {{signal}}", ref="B"),
                prom("sum by (signal, reason) (rate(costplane_dead_letter_items_total[$__rate_interval]))", "dead-lettered {{signal}} {{reason}}",
                     ref="C"),
            ], w=12, unit="short"),
            panel("timeseries", "Storage, ingest and query cost per tenant",
                  [prom('sum by (tenant, cost_type) (increase(costplane_cost_usd_total{cost_type=~"storage|ingest|query"}[1h]))',
                        "{{tenant}} {{cost_type}}")], w=24, unit="currencyUSD"),
        ],
        [PROM_VAR], ["health"], time_from="now-6h",
    )


REQ_COST = "costplane_request_cost_usd"
# One value per (service, route) whichever costplane instance was scraped:
# every instance reads the same ledger, so they agree (max, not sum).
ROUTE_SUM = f"max by (service, route) ({REQ_COST}_sum)"
ROUTE_COUNT = f"max by (service, route) ({REQ_COST}_count)"

# The requests GET /api/v1/unit-costs counts, over the dashboard's time range:
# server spans, and the root spans of a (tenant, service) that has no server
# spans in the range (a cron job, a queue worker); route http.route, then
# rpc.method, then the span name.
ROUTE = "coalesce(nullif(SpanAttributes['http.route'], ''), nullif(SpanAttributes['rpc.method'], ''), SpanName)"
TENANT = "ResourceAttributes['${tenant_attribute}']"
REQUESTS = (
    "$__timeFilter(Timestamp) AND (SpanKind = 'Server' OR (ParentSpanId = '' AND "
    f"({TENANT}, ServiceName) NOT IN (SELECT DISTINCT {TENANT}, ServiceName FROM otel_traces "
    "WHERE $__timeFilter(Timestamp) AND SpanKind = 'Server')))"
)

UNIT_COSTS_NOTE = """\
**Money** (Prometheus, `costplane_request_cost_usd{service,route}`): the month to date (UTC), whatever the time range: \
`_sum` is the cost of a route's requests, `_count` their number, so `_sum / _count` is the cost per request that \
`GET /api/v1/unit-costs` gives. The routes of highest cost keep their series (`metrics.max_series_per_label`); \
the rest are summed into `other / other`.

**Latency and errors** (ClickHouse, `otel_traces`): the same requests over the dashboard's time range (the API rounds its \
window to whole hours): server spans, or a service's root spans when it has no server spans; p50 and p95 are exact \
lower nearest-rank percentiles, as the API's.

**The split into LLM, compute and telemetry** is in `GET /api/v1/unit-costs?group_by=service,route`, the web page's \
*Unit costs* section and `costplane unit-costs`; the cost of one trace in `GET /api/v1/traces/{id}/cost`. \
LLM cost is priced by costplane from the price catalog, so it is not recomputed here.

**Customers** are not on `/metrics` (one series per customer would be unbounded): \
`costplane unit-costs --group-by customer` or `group_by=customer` on the API.
"""


def text(title, content, w=24, h=8):
    return {"type": "text", "title": title, "options": {"mode": "markdown", "content": content}, "_size": (w, h)}


def unit_costs():
    return dashboard(
        "costplane-unit-costs", "costplane / Unit costs",
        "Cost per request by service and route (month to date, from /metrics), with the latency and errors of the same "
        "requests from the spans.",
        [
            panel("table", "Cost per request by route (month to date)",
                  [prom(f"sort_desc({ROUTE_SUM} / {ROUTE_COUNT})", "{{service}} {{route}}", True)], w=12, h=9, unit="currencyUSD",
                  description="_sum / _count of costplane_request_cost_usd: the API's per_request for the month to date."),
            panel("bargauge", "Requests by route (month to date)", [prom(f"sort_desc({ROUTE_COUNT})", "{{service}} {{route}}", True)],
                  w=6, h=9, unit="short"),
            panel("bargauge", "Cost by route (month to date)", [prom(f"sort_desc({ROUTE_SUM})", "{{service}} {{route}}", True)],
                  w=6, h=9, unit="currencyUSD", description="The API's cost.total of the route's requests: LLM, known compute, telemetry."),
            panel("timeseries", "Cost per request by route, month to date over time",
                  [prom(f"{ROUTE_SUM} / {ROUTE_COUNT}", "{{service}} {{route}}")], w=24, h=8, unit="currencyUSD",
                  description="Each point is the month to date at that time; it starts again on the first of the month."),
            panel("table", "Latency and errors by route", [sql(
                f"SELECT ServiceName AS service, {ROUTE} AS route, count() AS requests, countIf(StatusCode = 'Error') AS errors, "
                "countIf(StatusCode = 'Error') / count() AS error_ratio, "
                "quantileExactLow(0.5)(Duration) / 1e9 AS p50_seconds, quantileExactLow(0.95)(Duration) / 1e9 AS p95_seconds "
                f"FROM otel_traces WHERE {REQUESTS} GROUP BY service, route ORDER BY requests DESC, service, route LIMIT 100", fmt=1)],
                w=24, h=9, description="Over the dashboard's time range."),
            panel("timeseries", "p95 latency by route", [sql(
                f"SELECT $__timeInterval(Timestamp) AS time, concat(ServiceName, ' ', {ROUTE}) AS route, "
                "quantileExactLow(0.95)(Duration) / 1e9 AS p95_seconds "
                f"FROM otel_traces WHERE {REQUESTS} GROUP BY time, route ORDER BY time")], w=12, unit="s"),
            panel("timeseries", "Error ratio by route", [sql(
                f"SELECT $__timeInterval(Timestamp) AS time, concat(ServiceName, ' ', {ROUTE}) AS route, "
                "countIf(StatusCode = 'Error') / count() AS error_ratio "
                f"FROM otel_traces WHERE {REQUESTS} GROUP BY time, route ORDER BY time")], w=12, unit="percentunit"),
            text("Where the split is", UNIT_COSTS_NOTE),
        ],
        [PROM_VAR, CH_VAR, textbox("tenant_attribute", "Tenant attribute ([cost] tenant_attribute)", "tenant.id")],
        ["cost", "unit-costs"], time_from="now-24h",
    )


DASHBOARDS = {
    "cost-overview.json": overview,
    "service.json": service,
    "shared-infrastructure.json": shared,
    "cost-anomalies.json": anomalies,
    "llm-cost.json": llm,
    "telemetry-overview.json": telemetry,
    "cost-and-health.json": health,
    "unit-costs.json": unit_costs,
}


def render():
    return {name: json.dumps(make(), indent=2) + "\n" for name, make in DASHBOARDS.items()}


def main():
    files = render()
    if "--check" in sys.argv:
        stale = [n for n, text in files.items() if not (OUT / n).exists() or (OUT / n).read_text() != text]
        if stale:
            print("out of date (run scripts/grafana_dashboards.py):", ", ".join(stale))
            sys.exit(1)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (OUT / name).write_text(text)


if __name__ == "__main__":
    main()
