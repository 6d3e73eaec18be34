"""`costplane report`: the month's HTML report and its PDF (printed by
headless Chromium) from the running server, on both stores. The PDF's text
(pdftotext) must hold the month's totals as the API gives them, worked out
by hand in test_web.py's dataset: all $0.0104, acme $0.0044; its pages must
render (pdftoppm). The PDF is kept in the test output directory."""

import shutil
import subprocess
import time

from conftest import costplane_bin
from test_web import api_costs, output_dir, send, wait_for_total


def report(server, out, *extra):
    month = time.strftime("%Y-%m", time.gmtime())
    run = subprocess.run(
        [costplane_bin(), "report", "--month", month, "--out", str(out),
         "--http-addr", f"127.0.0.1:{server.api_port}", *extra],
        capture_output=True, text=True, timeout=180,
    )
    assert run.returncode == 0, run.stderr
    pdf = next(out.glob("*.pdf"))
    return month, pdf, subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


def test_the_monthly_report_holds_the_apis_figures(server, tmp_path):
    send(server)
    wait_for_total(server, "0.0104")
    month_total = api_costs(server, "group_by=tenant")["total"]
    assert month_total == "0.0104"

    month, pdf, text = report(server, tmp_path / "all")
    assert "costplane cost report" in text
    assert "0.0104 USD" in text, text  # the month's total, as the API gives it
    for figure in ["gpt-4o", "0.0035 USD", "0.0009 USD", "claude-3-5-sonnet", "0.006 USD", "mystery-llm-7b", "acme", "globex"]:
        assert figure in text, (figure, text)
    # Cost per 1k tokens of gpt-4o: 0.0035 / 1,100 tokens x 1,000 = 0.003181818... -> 0.003182
    assert "0.003182" in text, text
    html = next((tmp_path / "all").glob("*.html")).read_text()
    assert html.count("<svg") >= 3

    # Every page renders.
    pages = subprocess.run(["pdftoppm", "-png", "-r", "50", str(pdf), str(tmp_path / "page")], capture_output=True, text=True)
    assert pages.returncode == 0, pages.stderr
    rendered = sorted(tmp_path.glob("page*.png"))
    assert rendered and all(p.stat().st_size > 2000 for p in rendered)
    shutil.copy(pdf, output_dir() / f"report-{server.store}.pdf")
    shutil.copy(rendered[0], output_dir() / f"report-{server.store}-page1.png")

    # One tenant's report: acme 0.0035 + 0.0009 = 0.0044.
    _, _, acme = report(server, tmp_path / "acme", "--tenant", "acme")
    assert "0.0044 USD" in acme and "globex" not in acme, acme
