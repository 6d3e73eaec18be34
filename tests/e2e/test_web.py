"""The cost page at `/`, driven in headless Chromium (Debian's `chromium`,
through Playwright's Python package) against the real binary on both
stores: it loads with no console errors, shows the figures the API gives
for a known dataset (worked out by hand below), honours API keys, and a
screenshot of it is saved in the test output directory."""

import json
import os
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, Server, clickhouse_url_for_tests, wait_for_value

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("COSTPLANE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ADMIN = "admin-key-0123456789abcdef"
ACME = "acme-key-0123456789abcdef"

# (tenant, service, model, input tokens, output tokens); all sent now.
SPANS = [
    # gpt-4o: 1,000 x $2.50/M + 100 x $10/M = 0.0025 + 0.001 = $0.0035
    ("acme", "chat-api", "gpt-4o", 1000, 100),
    # gpt-4o-mini: 2,000 x $0.15/M + 1,000 x $0.60/M = 0.0003 + 0.0006 = $0.0009
    ("acme", "chat-api", "gpt-4o-mini", 2000, 1000),
    # claude-3-5-sonnet: 1,000 x $3/M + 200 x $15/M = 0.003 + 0.003 = $0.006
    ("globex", "search", "claude-3-5-sonnet-20241022", 1000, 200),
    # Unknown: unpriced, 42 input + 8 output tokens, no dollars.
    ("globex", "search", "mystery-llm-7b", 42, 8),
]
# acme 0.0035 + 0.0009 = $0.0044; globex $0.006; all $0.0104 (today and the month).
# Tokens: input 1,000 + 2,000 + 1,000 + 42 = 4,042; output 100 + 1,000 + 200 + 8 = 1,308.


def output_dir() -> Path:
    explicit = os.environ.get("COSTPLANE_TEST_OUTPUT_DIR")
    target = Path(os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target")))
    out = Path(explicit) if explicit else target / "test-output"
    out.mkdir(parents=True, exist_ok=True)
    return out


def otlp_json_spans():
    """One OTLP/JSON request with a resource per span (tenant and service)."""
    now = time.time_ns()
    resource_spans = []
    for i, (tenant, service, model, inp, out) in enumerate(SPANS):
        attrs = {
            "gen_ai.operation.name": "chat", "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": inp, "gen_ai.usage.output_tokens": out,
        }
        resource_spans.append({
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": service}},
                {"key": "tenant.id", "value": {"stringValue": tenant}},
            ]},
            "scopeSpans": [{"spans": [{
                "traceId": f"{i + 1:032x}", "spanId": f"{i + 1:016x}", "name": f"chat {model}", "kind": 3,
                "startTimeUnixNano": str(now - 2_000_000_000), "endTimeUnixNano": str(now - 1_000_000_000),
                "attributes": [
                    {"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
                    for k, v in attrs.items()
                ],
            }]}],
        })
    return json.dumps({"resourceSpans": resource_spans}).encode()


def send(server):
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.http_port}/v1/traces", data=otlp_json_spans(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def api_costs(server, query, key=None):
    req = urllib.request.Request(f"http://127.0.0.1:{server.api_port}/api/v1/costs?{query}")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def wait_for_total(server, expected, key=None):
    wait_for_value(lambda: api_costs(server, "group_by=tenant", key)["total"], expected, server, "the ledger's total")


@pytest.fixture(params=["duckdb", "clickhouse"])
def web_server(request, tmp_path):
    config = tmp_path / "costplane.toml"
    keyed = request.param == "duckdb"
    # Keys on the embedded store, none on ClickHouse: both page paths run.
    config.write_text(
        f'[[api.keys]]\nkey = "{ADMIN}"\nrole = "admin"\n[[api.keys]]\nkey = "{ACME}"\ntenant = "acme"\n' if keyed else ""
    )
    front, url = None, None
    if request.param == "clickhouse":
        url, front = clickhouse_url_for_tests(tmp_path)
    server = Server(tmp_path, extra_args=["--config", str(config)], store=request.param, clickhouse_url=url)
    server.keyed = keyed
    yield server
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()
    if front:
        front.stop()


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium")
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield b
        b.close()


def cells(page, table_id):
    """{row key: [cell texts]} of one of the page's tables."""
    return page.eval_on_selector_all(
        f"#{table_id} tbody tr[data-key]",
        "rows => Object.fromEntries(rows.map(r => [r.dataset.key, [...r.cells].map(c => c.textContent)]))",
    )


def test_the_page_shows_the_apis_figures(web_server, browser):
    server = web_server
    send(server)
    key = ADMIN if server.keyed else None
    wait_for_total(server, "0.0104", key)
    # The API's own answer, which the page must show digit for digit.
    by_tenant = {r["tenant"]: r["cost"] for r in api_costs(server, "group_by=tenant", key)["rows"]}
    assert by_tenant["acme"] == "0.0044" and by_tenant["globex"] == "0.006"

    page = browser.new_page(viewport={"width": 1280, "height": 2200})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"http://127.0.0.1:{server.api_port}/")
    if server.keyed:
        # No key yet: the page asks for one (the API's 401 is the only error).
        page.wait_for_selector("#key-form:not([hidden])")
        assert all("401" in e for e in errors), errors
        errors.clear()
        page.fill("#key-input", ADMIN)
        page.click("#key-form button[type=submit]")
    page.wait_for_selector("body[data-loaded=true]", timeout=20000)

    assert page.text_content("#today-total") == "$0.0104"
    assert page.text_content("#month-total") == "$0.0104"
    tenants = cells(page, "by-tenant")
    assert tenants["acme"][1:] == ["$0.0044", "$0.0044"] and tenants["globex"][1:] == ["$0.006", "$0.006"]
    models = cells(page, "by-model")
    assert models["gpt-4o"][2] == "$0.0035" and models["gpt-4o-mini"][2] == "$0.0009"
    # The span's claude-3-5-sonnet-20241022, named as its catalog entry.
    assert models["claude-3-5-sonnet"][2] == "$0.006"
    assert cells(page, "by-service")["chat-api"][2] == "$0.0044"
    assert cells(page, "by-source")["llm"][2] == "$0.0104"
    tokens = cells(page, "tokens")
    assert tokens["input"][1] == "4,042" and tokens["output"][1] == "1,308", tokens
    assert page.text_content("#unpriced-total") == "50"  # 42 + 8 mystery tokens
    assert "mystery-llm-7b" in cells(page, "unpriced")
    assert page.text_content("#ingest-state") == "ready"
    assert page.locator("#trend svg rect.bar").count() == 48
    assert page.locator("#top-models svg").count() == 1
    month = time.strftime("%Y-%m", time.gmtime())
    assert page.get_attribute("#export-focus", "href") == f"/api/costs/export?month={month}&format=focus"
    with page.expect_download() as download:
        page.click("#export-csv")
    csv_text = Path(download.value.path()).read_text()
    assert csv_text.startswith("kind,tenant,project,service,signal,model") and "gpt-4o-mini" in csv_text

    shot = output_dir() / f"web-{server.store}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert errors == [], errors

    if server.keyed:
        # A tenant key sees its tenant only.
        page.click("#key-button")
        page.click("#key-forget")
        page.fill("#key-input", ACME)
        page.evaluate("document.body.dataset.loaded = ''")
        page.click("#key-form button[type=submit]")
        page.wait_for_selector("body[data-loaded=true]", timeout=20000)
        assert page.text_content("#today-total") == "$0.0044"
        assert list(cells(page, "by-tenant")) == ["acme"]
        assert errors == [], errors


def test_unknown_paths_name_the_valid_ones(server):
    for port, must_list in [(server.api_port, "GET /api/v1/costs"), (server.http_port, "POST /v1/traces")]:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/trace", timeout=5)
            raise AssertionError("expected a 404")
        except urllib.error.HTTPError as e:
            assert e.code == 404
            body = json.loads(e.read())
            assert must_list in body["valid_paths"] and "/v1/trace" in body["error"]
    deadline = time.time() + 5
    while "no such path" not in server.log() and time.time() < deadline:
        time.sleep(0.1)
    assert "no such path" in server.log()
