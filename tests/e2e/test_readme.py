"""The README's quick start, run as a newcomer would run it: its Python
snippet (the OpenTelemetry SDK) and its curl OTLP/JSON example are taken
from README.md as written, pointed at the test server's ports, and the cost
API must then show the dollars the README promises (worked out there:
gpt-4o $0.0035 for acme, claude-3-5-sonnet $0.006 for globex)."""

import json
import re
import subprocess
import sys
import time
import urllib.request

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def quick_start_blocks(lang):
    quick = README[README.index("## Quick start"):README.index("\n## ", README.index("## Quick start") + 5)]
    return re.findall(rf"```{lang}\n(.*?)```", quick, re.S)


def at_test_ports(text, server):
    return text.replace("127.0.0.1:4318", f"127.0.0.1:{server.http_port}").replace(
        "127.0.0.1:8080", f"127.0.0.1:{server.api_port}")


def test_the_quick_start_works_as_written(server):
    [python] = quick_start_blocks("python")
    subprocess.run([sys.executable, "-c", at_test_ports(python, server)], check=True, timeout=60)
    shell = quick_start_blocks("sh")
    curl = next(b for b in shell if "/v1/traces" in b)
    subprocess.run(["bash", "-euo", "pipefail", "-c", at_test_ports(curl, server)], check=True, timeout=60)

    url = f"http://127.0.0.1:{server.api_port}/api/v1/costs?group_by=tenant,model"
    deadline = time.time() + 30
    while True:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        if body["total"] == "0.0095" or time.time() > deadline:
            break
        time.sleep(0.2)
    assert body["total"] == "0.0095", (body, server.log())  # 0.0035 + 0.006
    costs = {(r["tenant"], r["model"]): r["cost"] for r in body["rows"]}
    assert costs[("acme", "gpt-4o")] == "0.0035"
    # The span said claude-3-5-sonnet-20241022; the ledger names the model by its catalog entry.
    assert costs[("globex", "claude-3-5-sonnet")] == "0.006"
    # The page the README sends the reader to is there.
    with urllib.request.urlopen(f"http://127.0.0.1:{server.api_port}/", timeout=10) as r:
        assert r.status == 200 and b"costplane" in r.read()


def test_the_readme_override_example_loads(tmp_path):
    from conftest import costplane_bin

    [example] = quick_start_blocks("toml")
    prices = tmp_path / "prices.toml"
    prices.write_text(example)

    def check(model):
        out = subprocess.run([costplane_bin(), "prices", "check", model, "--date", "2026-06-01", "--overrides", str(prices)],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout

    # The discount changes input only: output 10 and cache read 1.25 stay the catalog's.
    gpt = check("gpt-4o")
    assert "input 2.00 · output 10.00 · cache read 1.25" in gpt, gpt
    assert "input 0.40 · output 1.20" in check("acme-internal-7b")
