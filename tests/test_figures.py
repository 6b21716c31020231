from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attnbench.errors import UserError
from attnbench.report.figures import plot_vs_seq_len, scaling_exponent


def test_scaling_exponent_recovers_the_leading_power():
    n = np.array([256, 512, 1024, 2048, 4096], dtype=float)
    assert scaling_exponent(n, 3e-7 * n**2 + 1e-3) == pytest.approx(2.0, abs=0.02)
    assert scaling_exponent(n, 5e-6 * n) == pytest.approx(1.0)
    assert scaling_exponent(n[:1], n[:1]) is None


def frame(statuses=("ok", "ok", "ok")):
    return pd.DataFrame(
        {
            "label": ["a"] * 3,
            "seq_len": [128, 256, 512],
            "status": list(statuses),
            "causal": [False] * 3,
            "mode": ["fwd"] * 3,
            "latency_ms": [1.0, 4.0, 16.0],
            "device_name": ["cpu-x"] * 3,
        }
    )


def test_plot_writes_an_image(tmp_path):
    path = plot_vs_seq_len(frame(), "latency_ms", tmp_path / "f.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = plot_vs_seq_len(frame(), "latency_ms", tmp_path / "f.svg").read_text()
    assert "N^2.00" in svg.replace("\u221d", "")  # the fitted exponent is in the legend


def test_nothing_to_plot_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no ok results"):
        plot_vs_seq_len(frame(("oom", "oom", "oom")), "latency_ms", tmp_path / "f.png")


def bench_rows() -> pd.DataFrame:
    rows = []
    arms = [
        ("softmax.sdpa", "", lambda n: 1e-6 * n * n),
        ("linear.elu", "", lambda n: 2e-3 * n),
        ("softmax.naive", "position=alibi", lambda n: 2e-6 * n * n),
        ("softmax.naive", "position=rope", lambda n: 1.5e-6 * n * n),
    ]
    for variant, params, cost in arms:
        for n in (512, 1024, 2048, 4096):
            for mode in ("fwd", "fwd+bwd"):
                label = variant + (f"[{params}]" if params else "")
                rows.append({"label": label, "variant": variant, "params": params, "seq_len": n, "mode": mode,
                             "causal": True, "status": "ok", "latency_ms": cost(n)})  # fmt: skip
    return pd.DataFrame(rows)


def test_crossover_figure_names_where_linear_overtakes_softmax(tmp_path, drawn):
    from attnbench.report import figures

    figures.plot_crossover(bench_rows(), tmp_path / "x.png")
    (fig,) = drawn
    assert [p["title"].split(":")[0] for p in fig["panels"]] == ["causal fwd", "causal fwd+bwd"]
    for panel in fig["panels"]:  # one legend per mode, on log-log axes of the latency ratio
        assert panel["legend"] == ["linear.elu  (faster from N ≈ 2000)"]  # 2e-3·n = 1e-6·n² at n = 2000
        assert panel["ylabel"] == "latency / softmax.sdpa latency" and panel["xscale"] == "log"


def test_position_cost_bars_have_a_panel_per_mode_and_a_bar_per_path(tmp_path, drawn):
    from attnbench.report.figures import plot_position_costs

    plot_position_costs(bench_rows(), tmp_path / "p.png")
    (fig,) = drawn
    assert [p["title"] for p in fig["panels"]] == [
        "positional schemes, N = 4096, fwd",
        "positional schemes, N = 4096, fwd+bwd",
    ]
    assert all(
        p["legend"] == ["softmax.naive"] and p["ylabel"] == "median latency, ms" for p in fig["panels"]
    )
    with pytest.raises(UserError):
        plot_position_costs(bench_rows().assign(params=""), tmp_path / "q.png")
