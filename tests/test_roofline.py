"""The roofline's arithmetic on a synthetic results frame: intensity, the ceilings each case
sits under, the ridge that splits memory- from compute-bound, and the distance to the roof;
and where it shows (show --metric roof_pct, show --roofline, its figure)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from attnbench.cases import Case
from attnbench.cli import main
from attnbench.outcome import Outcome
from attnbench.registry import REGISTRY
from attnbench.report.roofline import add_roofline, plot_roofline, roofline_table

CEILINGS = {"peak_flops": 1e12, "peak_bw": 1e10}  # ridge at 100 FLOP/B


def row(label: str, n: int, flops: float, min_bytes: float, latency_ms: float, **extra) -> dict:
    return {
        "label": label, "variant": label, "status": "ok", "batch": 1, "heads": 1, "seq_len": n, "d_head": 64,
        "dtype": "float32", "device": "cpu", "causal": True, "mode": "fwd", "latency_ms": latency_ms,
        "flops": flops, "min_bytes": min_bytes, **CEILINGS, **extra,
    }  # fmt: skip


def test_intensity_ceilings_and_classification():
    df = pd.DataFrame(
        [
            row("a", 128, flops=1e9, min_bytes=1e8, latency_ms=10),  # I = 10: the slope, on it
            row("b", 256, flops=1e10, min_bytes=1e7, latency_ms=100),  # I = 1000: the flat roof, at 10 %
            row("c", 512, flops=1e9, min_bytes=1e7, latency_ms=40),  # I = 100: the ridge itself
        ]
    )
    out = add_roofline(df).set_index("label")
    assert out["intensity"].tolist() == [10, 1000, 100]
    assert out["achieved_flops"].tolist() == pytest.approx([1e11, 1e11, 2.5e10])
    assert out["roof_flops"].tolist() == pytest.approx([1e11, 1e12, 1e12])
    assert out["bound"].tolist() == ["memory-bound", "compute-bound", "compute-bound"]
    assert out["roof_pct"].tolist() == pytest.approx([100, 10, 2.5])


def test_cases_that_did_not_run_or_declare_no_flops_are_not_placed():
    df = pd.DataFrame(
        [
            row("ok", 128, 1e9, 1e8, 10),
            {**row("oom", 128, 1e9, 1e8, np.nan), "status": "oom"},
            row("noflops", 128, np.nan, 1e8, 10),
        ]
    )
    out = add_roofline(df).set_index("label")
    assert out.loc["ok", "bound"] == "memory-bound"
    assert out.loc[["oom", "noflops"], "roof_pct"].isna().all()
    assert (out.loc[["oom", "noflops"], "bound"] == "").all()


def test_older_records_get_their_ceilings_and_bytes_back_from_the_percentages():
    """Results written before `min_bytes`, `peak_flops` and `peak_bw` were recorded still
    place: the ceilings from % of peak, the bytes from the variant's declaration."""
    shape = Case("softmax.naive", (), 1, 1, 256, 64).shape
    declared = REGISTRY.get("softmax.naive").min_bytes(shape, mode="fwd", itemsize=4)
    new = row("softmax.naive", 256, flops=2e9, min_bytes=declared, latency_ms=20)
    seconds = 20 / 1e3
    old = {k: v for k, v in new.items() if k not in ("min_bytes", "peak_flops", "peak_bw")}
    old["pct_peak_flops"] = 100 * 2e9 / seconds / 1e12
    old["pct_peak_bw"] = 100 * declared / seconds / 1e10
    both = add_roofline(pd.DataFrame([new, old]))
    columns = ["compute_ceiling", "bandwidth_ceiling", "intensity", "roof_flops", "roof_pct"]
    assert both.loc[0, columns].tolist() == pytest.approx(both.loc[1, columns].tolist())
    assert both.loc[0, "bound"] == both.loc[1, "bound"] == "compute-bound"


def test_roofline_figure_per_device_and_dtype(tmp_path, drawn):
    rows = [row(v, n, 1e9 * n, 1e6 * n, n / 10) for v in ("x", "y") for n in (128, 256, 512)]
    rows += [{**r, "dtype": "bfloat16"} for r in rows[:3]]
    paths = plot_roofline(pd.DataFrame(rows), tmp_path / "roof.png")
    assert sorted(p.name for p in paths) == ["roof-cpu-bfloat16.png", "roof-cpu-float32.png"]
    assert all(p.is_file() for p in paths)
    panel = drawn[-1]["panels"][0]
    assert panel["xscale"] == panel["yscale"] == "log"
    assert panel["title"] == "roofline, cpu, float32, causal fwd"
    assert panel["legend"] == ["roof", "x", "y"]
    assert roofline_table(pd.DataFrame(rows))["bound"].eq("compute-bound").all()  # I = 1000 > 100


def write_results(path, rows: list[dict]) -> None:
    from attnbench.results.store import make_record

    lines = []
    for r in rows:
        case = Case(r["label"], (), 1, 1, r["seq_len"], 64, r["dtype"], "cpu", True, "fwd")
        metrics = {k: r[k] for k in ("latency_ms", "flops", "min_bytes", "peak_flops", "peak_bw")}
        lines.append(json.dumps(make_record(case, Outcome("ok", metrics=metrics), "s")))
    path.write_text("\n".join(lines) + "\n")


def test_show_metric_roof_pct_and_show_roofline(tmp_path, capsys):
    results = tmp_path / "r.jsonl"
    on_the_slope = row("softmax.naive", 128, 1e9, 1e8, 10)
    under_the_roof = row("softmax.naive", 256, 1e10, 1e7, 100)
    write_results(results, [on_the_slope, under_the_roof])
    assert main(["show", str(results), "--metric", "roof_pct", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["label,N=128,N=256", "softmax.naive,100.0,10.0"]
    figure = tmp_path / "r.png"
    assert main(["show", str(results), "--roofline", "--format", "csv", "--plot", str(figure)]) == 0
    out = capsys.readouterr().out
    assert "memory-bound" in out and "compute-bound" in out and figure.is_file()


def test_show_roofline_without_flops_is_a_user_error(tmp_path, capsys):
    results = tmp_path / "r.jsonl"
    write_results(results, [row("softmax.naive", 128, 1e9, 1e8, 10)])
    text = results.read_text().replace('"flops": 1000000000.0, ', "")
    results.write_text(text)
    assert main(["show", str(results), "--roofline"]) == 2
    assert "no ok case has the latency, FLOPs and ceilings a roofline needs" in capsys.readouterr().err
