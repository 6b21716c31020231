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


def test_crossover_figure_names_where_linear_overtakes_softmax(tmp_path, monkeypatch):
    from attnbench.report import figures

    labels = []
    real = figures._save

    def spy(fig, ax, path, **kw):
        labels.extend(t.get_text() for a in fig.axes for t in a.get_legend().get_texts())
        return real(fig, ax, path, **kw)

    monkeypatch.setattr(figures, "_save", spy)
    out = figures.plot_crossover(bench_rows(), tmp_path / "x.png")
    assert out.stat().st_size > 0
    assert "linear.elu  (faster from N ≈ 2000)" in labels, labels  # 2e-3·n = 1e-6·n² at n = 2000


def test_position_cost_bars(tmp_path):
    from attnbench.report.figures import plot_position_costs

    assert plot_position_costs(bench_rows(), tmp_path / "p.png").stat().st_size > 0
    with pytest.raises(UserError):
        plot_position_costs(bench_rows().assign(params=""), tmp_path / "q.png")
