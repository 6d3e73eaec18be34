"""Reads costplane's Grafana dashboards and turns their panel queries into
what Grafana would send: PromQL with template variables substituted, and
ClickHouse SQL with grafana-clickhouse-datasource's macros expanded as the
plugin documents them (docs/sources/query-editor.md):

    $__timeFilter(col)      col >= toDateTime(<from s>) AND col <= toDateTime(<to s>)
    $__timeInterval(col)    toStartOfInterval(toDateTime(col), INTERVAL <n> second)
    $__interval_s           <n>
    $__fromTime, $__toTime  toDateTime(<from s>), toDateTime(<to s>)
    $__conditionalAll(cond, $var)   cond, or 1=1 when the variable is "All"

Variables: `$name`, `${name}` and `${name:singlequote}` (each value quoted).
"""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "deploy/grafana/dashboards"
PROVISIONING = ROOT / "deploy/grafana/provisioning"

# Grafana's own variables in PromQL, as a 6-hour range would set them.
PROM_BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "6h"}


def load():
    """{file name: dashboard} for every dashboard file."""
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard):
    """Every panel, rows' nested panels included."""
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])


def _substitute(text, variables, quote=False):
    def value(name, fmt):
        v = variables[name]
        values = v if isinstance(v, list) else [v]
        if fmt == "singlequote":
            return ",".join("'" + str(x).replace("'", "\\'") + "'" for x in values)
        return "|".join(values) if len(values) > 1 else str(values[0])

    def braced(m):
        return value(m.group(1), m.group(2))

    text = re.sub(r"\$\{(\w+)(?::(\w+))?\}", braced, text)
    return re.sub(r"\$(\w+)", lambda m: value(m.group(1), None) if m.group(1) in variables else m.group(0), text)


def prometheus_queries(variables):
    """(dashboard uid/panel title/refId, PromQL) of every Prometheus target,
    with `variables` and Grafana's built-in interval variables substituted."""
    for d in load().values():
        for p in panels(d):
            for t in p.get("targets", []):
                if t.get("datasource", {}).get("type") != "prometheus":
                    continue
                expr = _substitute(t["expr"], {**PROM_BUILTINS, **variables})
                assert "$" not in expr, f"unsubstituted variable in {d['uid']}/{p['title']}: {expr}"
                yield f"{d['uid']}/{p['title']}/{t['refId']}", expr


def prometheus_variables():
    """(dashboard uid/variable name, metric, label) of every Prometheus
    `label_values(metric, label)` query variable."""
    for d in load().values():
        for v in d.get("templating", {}).get("list", []):
            if v.get("type") == "query" and v.get("datasource", {}).get("type") == "prometheus":
                m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", v["query"]["query"])
                assert m, f"{d['uid']}/{v['name']}: not label_values(metric, label): {v['query']}"
                yield f"{d['uid']}/{v['name']}", m.group(1), m.group(2)


def _split_args(text):
    """Splits a macro's arguments at top-level commas."""
    args, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            args.append(cur.strip())
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    args.append(cur.strip())
    return args


def _expand_macro(sql, name, fn):
    out, pos = "", 0
    token = f"$__{name}("
    while True:
        i = sql.find(token, pos)
        if i < 0:
            return out + sql[pos:]
        j, depth = i + len(token), 1
        while depth:
            depth += {"(": 1, ")": -1}.get(sql[j], 0)
            j += 1
        out += sql[pos:i] + fn(_split_args(sql[i + len(token): j - 1]))
        pos = j


def expand_clickhouse(sql, variables, from_s, to_s, interval_s=60, all_selected=()):
    """The SQL the ClickHouse plugin runs for `sql` over [from_s, to_s]."""
    sql = _expand_macro(
        sql, "conditionalAll",
        lambda a: "1=1" if a[1].lstrip("$").strip("{}") in all_selected else a[0])
    sql = _expand_macro(sql, "timeFilter", lambda a: f"{a[0]} >= toDateTime({from_s}) AND {a[0]} <= toDateTime({to_s})")
    sql = _expand_macro(sql, "timeInterval", lambda a: f"toStartOfInterval(toDateTime({a[0]}), INTERVAL {interval_s} second)")
    sql = sql.replace("$__interval_s", str(interval_s))
    sql = sql.replace("$__fromTime", f"toDateTime({from_s})").replace("$__toTime", f"toDateTime({to_s})")
    sql = _substitute(sql, variables)
    assert "$" not in sql, f"unexpanded macro or variable: {sql}"
    return sql


def clickhouse_queries():
    """(dashboard uid/panel title/refId, raw SQL) of every ClickHouse target
    and query variable."""
    for d in load().values():
        for p in panels(d):
            for t in p.get("targets", []):
                if t.get("datasource", {}).get("type") == "grafana-clickhouse-datasource":
                    yield f"{d['uid']}/{p['title']}/{t['refId']}", t["rawSql"]
        for v in d.get("templating", {}).get("list", []):
            if v.get("type") == "query" and v.get("datasource", {}).get("type") == "grafana-clickhouse-datasource":
                yield f"{d['uid']}/variable {v['name']}", v["query"]["rawSql"]
