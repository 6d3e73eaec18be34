"""The GRANT statements the chart and the compose file give ClickHouse's
users, parsed by ClickHouse's own parser (chDB): a misspelt privilege
would stop the bundled ClickHouse from loading its users."""

import xml.etree.ElementTree as ET

import chdb
import pytest

from deploy_support import COMPOSE_DIR, only, render


def grants(users_xml):
    root = ET.fromstring(users_xml)
    return [(user.tag, q.text) for user in root.find("users") for q in user.findall("grants/query")]


def chart_users(sets):
    return only(render(sets), "ConfigMap", "cp-costplane-clickhouse")["data"]["costplane-users.xml"]


SOURCES = {
    "chart": lambda: chart_users(["clickhouse.enabled=true"]),
    "chart-cluster": lambda: chart_users(["clickhouse.enabled=true", "clickhouse.cluster=c1", "clickhouse.replicas=2"]),
    "compose": lambda: (COMPOSE_DIR / "clickhouse/costplane-users.xml").read_text(),
}


def parses(statement):
    # A grant in users.xml names no grantee; ClickHouse adds the user.
    try:
        return chdb.query(f"EXPLAIN AST {statement} TO probe_user", "CSV").data().strip() == '"GrantQuery"'
    except Exception:  # chDB raises its own error type for syntax errors
        return False


@pytest.mark.parametrize("source", list(SOURCES))
def test_every_grant_parses_in_clickhouse(source):
    found = grants(SOURCES[source]())
    assert {user for user, _ in found} == {"costplane", "grafana"}
    for user, statement in found:
        assert parses(statement), f"{source}: {user}: {statement}"
    if source == "chart-cluster":
        assert ("costplane", "GRANT CLUSTER ON *.*") in found


def test_the_parser_rejects_a_misspelt_privilege():
    assert not parses("GRANT SELEKT ON otel.*")
