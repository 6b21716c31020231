"""The HTML report: self-contained, every result string escaped, and, in headless Chromium,
free of console errors, with loaded figures and tables that sort on a click."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from attnbench.cases import Case
from attnbench.cli import main
from attnbench.outcome import Outcome
from attnbench.results.store import make_record

HOSTILE = "<img src=x onerror=\"console.error('injected')\">"
ARTIFACTS = Path(os.environ.get("ATTNBENCH_TEST_ARTIFACTS", "test-artifacts"))


def write_results(path: Path) -> Path:
    records = []
    for variant, base in (("softmax.sdpa", 1.0), ("linear.elu", 3.0), (HOSTILE, 2.0)):
        for n in (256, 512, 1024):
            ms = base * n / 256
            metrics = {"latency_ms": ms, "latency_iqr_ms": 0.04 * ms, "peak_mem_bytes": 4096 * n}
            outcome = Outcome("ok", metrics=metrics, env={"device_name": "test CPU", "torch": "2.x"})
            records.append(
                make_record(Case(variant, (), 1, 4, n, 64, causal=True), outcome, f"suite {HOSTILE}")
            )
    oom = Outcome("oom", "out of memory")
    records.append(make_record(Case("softmax.naive", (), 1, 4, 1024, 64, causal=True), oom, "ci"))
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_report_is_self_contained_and_escapes_result_strings(tmp_path, capsys):
    results = write_results(tmp_path / "r.jsonl")
    out = tmp_path / "r.html"
    assert main(["report", str(results), "-o", str(out)]) == 0
    html = out.read_text()
    assert "data:image/png;base64," in html and "http://" not in html and "https://" not in html
    assert HOSTILE not in html and "&lt;img src=x onerror=" in html
    assert html.count('class="status-oom"') >= 2  # the case row and the status count
    assert "±2.0%" in html  # the spread beside the median


@pytest.fixture(scope="module")
def chromium() -> str:
    """The system Chromium; installed with apt when missing and allowed, else a clear skip."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    found = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    if found:
        return found
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        try:
            subprocess.run(
                ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
                capture_output=True,
                timeout=600,
                check=True,
            )
        except (subprocess.SubprocessError, OSError) as e:
            pytest.skip(f"Chromium is not installed and apt-get could not install it ({type(e).__name__})")
        if shutil.which("chromium"):
            return shutil.which("chromium")
    pytest.skip("Chromium is not installed and this user cannot install it (needs Debian's chromium package)")


@contextlib.contextmanager
def opened(chromium: str, html: Path) -> Iterator[tuple[Any, list[str]]]:
    """The page `html` loaded in headless Chromium, and what went wrong while it loaded and
    ran: console errors, page errors, requests to the network."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on(
            "request", lambda r: problems.append(f"network: {r.url}") if r.url.startswith("http") else None
        )
        page.goto(html.as_uri())
        page.wait_for_load_state("load")
        yield page, problems
        browser.close()


def test_report_in_headless_chromium(tmp_path, chromium):
    results = write_results(tmp_path / "r.jsonl")
    out = tmp_path / "r.html"
    assert main(["report", str(results), "-o", str(out)]) == 0
    with opened(chromium, out) as (page, problems):
        images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
        assert len(images) >= 2 and all(done and width > 0 for done, width in images)
        assert page.locator("img[src='x']").count() == 0  # the hostile name did not become an element
        assert page.get_by_text(HOSTILE, exact=True).count() >= 1  # it shows as text
        table = page.locator("table.sortable").first
        column = [h.strip() for h in table.locator("th").all_inner_texts()].index("median ms")

        def values() -> list[float]:
            cells = table.locator(f"tbody tr td:nth-child({column + 1})").all_inner_texts()
            return [float(c) for c in cells if c.strip()]

        table.locator("th").nth(column).click()
        ascending = values()
        assert len(ascending) == 9 and ascending == sorted(ascending)
        table.locator("th").nth(column).click()
        assert values() == sorted(ascending, reverse=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    assert problems == []


def test_where_the_time_goes_renders_in_headless_chromium(tmp_path, chromium, monkeypatch):
    """Profiled cases of two variants: stacked operator bars, memory timelines side by side,
    the roofline and the tables, in a page that loads cleanly."""
    from attnbench.measure import calibrate

    artifacts = ARTIFACTS.resolve()
    monkeypatch.chdir(tmp_path)  # the profiles go to ./profiles, as in a user's checkout
    monkeypatch.setattr(calibrate, "measure_matmul", lambda device, dtype, threads: 5e10)
    monkeypatch.setattr(calibrate, "measure_copy", lambda device, threads: 1e10)
    (tmp_path / "s.toml").write_text(
        '[suite]\nmin_run_time_s = 0.02\nmetrics = ["time", "memory"]\nprofile = true\n'
        '[sweep]\nvariants = ["softmax.naive", "linear.elu"]\nheads = [2]\nd_head = [32]\n'
        "seq_len = [64, 128]\ncausal = [true]\nthreads = [1]\n"
    )
    assert main(["run", "--suite", "s.toml", "--executor", "inline", "-o", "r.jsonl"]) == 0
    assert main(["report", "r.jsonl", "-o", "r.html"]) == 0
    html = (tmp_path / "r.html").read_text()
    for title in (
        "Where the time goes",
        "top operators per variant, B1-H2-N128-D32 float32 cpu causal fwd",
        "memory over one call, B1-H2-N128-D32 float32 cpu causal fwd",
        "roofline on this machine&#39;s ceilings, cpu float32",
        "each timed case on the roofline",
    ):
        assert title in html, title
    with opened(chromium, tmp_path / "r.html") as (page, problems):
        section = page.locator("section", has=page.get_by_role("heading", name="Where the time goes"))
        images = section.locator("img").evaluate_all("imgs => imgs.map(i => [i.complete, i.naturalWidth])")
        assert len(images) == 3 and all(done and width > 0 for done, width in images)
        assert section.locator("table.sortable").count() == 2
        artifacts.mkdir(parents=True, exist_ok=True)
        section.screenshot(path=str(artifacts / "report-where-the-time-goes.png"))
    assert problems == []


def test_results_of_two_machines_get_rows_of_their_own_and_the_report_names_each_host(tmp_path):
    from attnbench.report.html import build_report
    from attnbench.report.table import pivot
    from attnbench.results import load_results

    records = []
    for host, device, lengths in (("node-a", "CPU A", (256, 512)), ("node-b", "CPU B", (1024,))):
        for variant in ("softmax.sdpa", "linear.elu"):
            for n in lengths:
                env = {"hostname": host, "device_name": device, "ray_node_ip": "10.0.0.1"}
                outcome = Outcome("ok", metrics={"latency_ms": n / 256}, env=env)
                records.append(make_record(Case(variant, (), 1, 4, n, 64), outcome, "speed"))
    path = tmp_path / "cluster.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    df = load_results(path)
    table = pivot(df, "latency_ms").set_index(["label", "device_name"])
    assert list(table.index) == [
        ("linear.elu", "CPU A"),
        ("linear.elu", "CPU B"),
        ("softmax.sdpa", "CPU A"),
        ("softmax.sdpa", "CPU B"),
    ]
    assert (
        table.loc[("linear.elu", "CPU B"), "N=1024"] != ""
        and table.loc[("linear.elu", "CPU A"), "N=1024"] == ""
    )
    html = build_report(df, title="cluster")
    assert "node-a (4 cases), node-b (2 cases)" in html
    assert "<th>host</th>" in html  # a column of the every-case table
    assert "device_name" not in pivot(df[df["hostname"] == "node-a"], "latency_ms")  # one machine
