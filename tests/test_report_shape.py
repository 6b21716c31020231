"""Reports fitted to the data: one N draws bars (no chart against N), the cases that could not
run sit apart, every error says what it is measured against, a ratio to SDPA and d_dot are
columns, status tables list only what went wrong, capacity at the sweep's end reads "≥ S",
retrieval settings get their own panels, legends sit outside the curves."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_html_report import (
    chromium,  # noqa: F401
    opened,
)

from attnbench.cases import Case
from attnbench.cli import main
from attnbench.outcome import Outcome
from attnbench.results.store import make_record


def one_n_results(path: Path) -> Path:
    """Causal fwd at N = 4096 only: SDPA, two linear maps (with d_dot), one CUDA-only variant."""
    records = []
    for variant, ms, d_dot in (
        ("softmax.sdpa", 110.0, None),
        ("linear.elu", 14.0, 64),
        ("linear.favor", 29.0, 128),
    ):
        metrics = {"latency_ms": ms, "latency_iqr_ms": 0.02 * ms, "peak_mem_bytes": 2**24, "rel_err": 3e-7,
                   "err_vs": "linear" if d_dot else "softmax", "err_kind": "rounding"}  # fmt: skip
        if d_dot:
            metrics["d_dot"] = d_dot
        outcome = Outcome("ok", metrics=metrics, env={"device_name": "test CPU"})
        records.append(make_record(Case(variant, (), 1, 8, 4096, 64, causal=True), outcome, "feature-maps"))
    for variant in ("linear.elu@triton", "softmax.sdpa_cudnn"):
        outcome = Outcome("unsupported", "runs on cuda only")
        records.append(make_record(Case(variant, (), 1, 8, 4096, 64, causal=True), outcome, "feature-maps"))
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_one_length_draws_bars_and_no_chart_against_n(tmp_path, drawn):
    results = one_n_results(tmp_path / "r.jsonl")
    assert main(["report", str(results), "-o", str(tmp_path / "r.html")]) == 0
    titles = [p["title"] for fig in drawn for p in fig["panels"]]
    assert titles == ["latency at N = 4096, causal fwd", "peak memory at N = 4096, causal fwd"]
    assert not any("sequence length" in p["xlabel"] for fig in drawn for p in fig["panels"])
    html = (tmp_path / "r.html").read_text()
    assert "vs sequence length" not in html and "overtake" not in html  # no crossover from one N


def tables_of(results: Path) -> list[pd.DataFrame]:
    """The benchmark section's tables as the report renders them, as frames of cell texts."""
    from attnbench.report.benchmark import benchmark_section
    from attnbench.results import load_results

    section = benchmark_section(load_results(results))
    return [
        pd.DataFrame([[c.text for c in row] for row in t.rows], columns=t.columns) for t in section.tables
    ]


def test_the_cases_table_holds_what_ran_and_the_rest_is_one_line_per_variant(tmp_path):
    results = one_n_results(tmp_path / "r.jsonl")
    cases, skipped = tables_of(results)
    assert sorted(cases["variant"]) == ["linear.elu", "linear.favor", "softmax.sdpa"]
    assert list(cases.columns[-3:]) == ["rel err vs its oracle", "measured against", "reason"]
    by = cases.set_index("variant")
    assert float(by.loc["linear.elu", "speed-up vs softmax.sdpa"]) == pytest.approx(110 / 14, rel=1e-3)
    assert by.loc["linear.favor", "d_dot"] == "128"
    assert by.loc["softmax.sdpa", "measured against"] == "float64 softmax"
    assert by.loc["linear.elu", "measured against"] == "float64 linear"
    assert sorted(skipped["variant"]) == ["linear.elu@triton", "softmax.sdpa_cudnn"]
    assert set(skipped["why"]) == {"runs on cuda only"}
    assert main(["report", str(results), "-o", str(tmp_path / "r.html")]) == 0
    assert "Could not run here: 2 cases of 2 variants" in (tmp_path / "r.html").read_text()


def test_an_approximation_error_is_labelled_so(tmp_path):
    case = Case("lowrank.nystrom", (), 1, 8, 1024, 64)
    metrics = {"latency_ms": 2.0, "rel_err": 0.8, "err_vs": "softmax", "err_kind": "approximation"}
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(make_record(case, Outcome("ok", metrics=metrics), "lowrank")) + "\n")
    (cases,) = tables_of(path)
    assert cases["measured against"].tolist() == ["float64 softmax (approximation error)"]


def test_the_one_n_report_renders_in_headless_chromium(tmp_path, chromium):  # noqa: F811
    results = one_n_results(tmp_path / "r.jsonl")
    out = tmp_path / "r.html"
    assert main(["report", str(results), "-o", str(out)]) == 0
    with opened(chromium, out) as (page, problems):
        images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalHeight])")
        assert len(images) == 2 and all(done and 0 < height < 1200 for done, height in images)
    assert problems == []


def test_a_task_status_table_lists_counts_and_only_what_went_wrong():
    from attnbench.report.sections import status_table

    df = pd.DataFrame({"label": ["a", "b", "c"], "status": ["ok", "ok", "oom"], "error": [None, None, "OOM"]})
    table = status_table("retrieval: ", df)
    assert table.title == "retrieval: 2 ok, 1 oom; the cases that did not end ok"
    assert [[c.text for c in row] for row in table.rows] == [["c", "oom", "OOM"]]


def test_capacity_at_the_end_of_the_sweep_reads_at_least():
    from attnbench.tasks.retrieval import capacity, capacity_text

    held_all = {8: 1e-4, 24: 1e-4, 96: 1e-3}
    assert capacity_text(capacity(held_all, 0.01), held_all) == "≥ 96"
    limited = {8: 1e-4, 24: 1e-4, 96: 0.2}
    assert capacity_text(capacity(limited, 0.01), limited) == "24"
    assert capacity_text(capacity({8: 0.3, 24: 0.4}, 0.01), {8: 0.3, 24: 0.4}) == "< 8"


def retrieval_rows() -> pd.DataFrame:
    rows = []
    for setting in (1, 2):
        for label in ("linear.elu", "softmax.sdpa"):
            for s in (8, 24):
                rows.append({"label": label, "variant": label, "status": "ok", "task.setting": setting,
                             "task.S": s, "best_loss": 1e-3 * s, "device_name": "cpu"})  # fmt: skip
    return pd.DataFrame(rows)


def test_retrieval_settings_get_their_own_panels(tmp_path, drawn):
    from attnbench.tasks.retrieval import plot_capacity

    plot_capacity(retrieval_rows(), tmp_path / "c.png", threshold=0.01)
    (fig,) = drawn
    assert [p["title"].rsplit(", ", 1)[1] for p in fig["panels"]] == ["setting 1", "setting 2"]
    assert all(p["lines"] == 3 for p in fig["panels"])  # two variants and the threshold, each panel


@pytest.mark.parametrize("draw", ["plot_vs_seq_len", "plot_capacity"])
def test_legends_sit_outside_the_data(tmp_path, monkeypatch, draw):
    from attnbench.report import figures
    from attnbench.tasks import retrieval

    boxes = []
    real = figures.save

    def spy(fig, ax, path, **kw):
        out = real(fig, ax, path, **kw)
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        renderer = FigureCanvasAgg(fig).get_renderer()  # the figure is closed: draw it again
        for a in fig.axes:
            if a.get_legend():
                boxes.append((a.get_window_extent(renderer), a.get_legend().get_window_extent(renderer)))
        return out

    monkeypatch.setattr(figures, "save", spy)
    if draw == "plot_capacity":
        retrieval.plot_capacity(retrieval_rows(), tmp_path / "c.png", threshold=0.01)
    else:
        rows = [{"label": v, "variant": v, "seq_len": n, "status": "ok", "latency_ms": c * n, "causal": True,
                 "mode": "fwd"} for v, c in (("a", 1.0), ("b", 2.0)) for n in (256, 512, 1024)]  # fmt: skip
        figures.plot_vs_seq_len(pd.DataFrame(rows), "latency_ms", tmp_path / "l.png")
    assert boxes
    for axes_box, legend_box in boxes:
        assert legend_box.x0 >= axes_box.x1  # right of the plotting area, over no curve


def test_the_crossover_legend_says_what_the_lengths_show():
    from attnbench.report.figures import crossover_text

    lengths = pd.Series([512, 1024, 2048])
    assert crossover_text(0, lengths) == "faster at every N measured, 512–2048"
    assert crossover_text(None, lengths) == "not faster at N = 2048"
    assert crossover_text(1500.4, lengths) == "faster from N ≈ 1500"


def test_run_report_takes_a_title(tmp_path, tiny_suite, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["run", "--suite", str(tiny_suite), "-o", "r.jsonl", "--executor", "inline", "--report"]
    assert main([*args, "--title", "feature maps at N = 4096 <for Ada>"]) == 0
    html = (tmp_path / "reports" / "r.html").read_text()
    assert "<title>feature maps at N = 4096 &lt;for Ada&gt;</title>" in html
