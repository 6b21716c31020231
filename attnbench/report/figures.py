"""Figures from results, drawn like the papers': a metric against sequence length on log-log
axes, one line per variant (and per other varying axis), with the fitted scaling exponent in
the legend and the device on the axis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from attnbench.errors import UserError
from attnbench.report.table import MEASURED, crossover, hide_unsupported, metric, row_axes


def scaling_exponent(n: np.ndarray, y: np.ndarray) -> float | None:
    """Slope of log y against log n over the longest half of the points (where the leading
    term dominates): 2 for an N² cost, 1 for a linear one."""
    if len(n) < 2:
        return None
    order = np.argsort(n)
    n, y = np.log(n[order]), np.log(y[order])
    tail = max(2, (len(n) + 1) // 2)
    return float(np.polyfit(n[-tail:], y[-tail:], 1)[0])


def plot_vs_seq_len(df: pd.DataFrame, name: str, path: str | Path, *, title: str | None = None) -> Path:
    """Write a PNG or SVG (by suffix) of `name` against seq_len; returns the path."""
    import matplotlib.ticker

    plt = pyplot()

    m = metric(name)
    ok = hide_unsupported(m.of(df))
    if m.column in ok:  # log-log axes: a value of 0 (or a hand-edited negative) has no place
        ok = ok[(ok["status"] == "ok") & (ok[m.column] > 0) & (ok["seq_len"] > 0)]
    else:
        ok = ok.iloc[0:0]
    if ok.empty:
        raise UserError(f"no ok results hold a positive {name!r} to plot (the axes are logarithmic)")
    varying = row_axes(ok)[1:]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    groups = list(ok.groupby(["label", *varying], dropna=False, sort=True))
    colors = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20").colors
    families = sorted({str(k if isinstance(k, str) else k[0]).split(".")[0] for k, _ in groups})
    styles = ["-", "--", ":", "-."]  # one per family, so a colour repeat still reads apart
    for i, (key, group) in enumerate(groups):
        key = key if isinstance(key, tuple) else (key,)
        group = group.sort_values("seq_len")
        n, y = group["seq_len"].to_numpy(float), group[m.column].to_numpy(float) * m.scale
        slope = scaling_exponent(n, y)
        label = " ".join(
            _axis_text(axis, value) for axis, value in zip(["label", *varying], key, strict=True)
        )
        style = styles[families.index(str(key[0]).split(".")[0]) % len(styles)]
        ax.plot(
            n,
            y,
            style,
            color=colors[i % len(colors)],
            marker="o",
            label=label + (f"  (∝N^{slope:.2f})" if slope is not None else ""),
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlabel(with_devices("sequence length N", ok))
    ax.set_ylabel(m.title.split(" (")[0])
    ax.set_title(title or m.title)
    return save(fig, ax, path)


def _axis_text(axis: str, value) -> str:
    if axis == "causal":
        return "causal" if value else "full"
    if axis in ("label", "mode", "dtype", "device", "device_name"):
        return str(value)
    return f"{axis}={value}"


def plot_crossover(df: pd.DataFrame, path: str | Path, *, reference: str = "softmax.sdpa") -> Path:
    """Each non-softmax variant's latency as a multiple of `reference`'s at the same N (causal,
    one panel per mode), the line at 1 marking parity; the legend gives the N from which it
    stays faster (interpolated log-log), the crossover."""
    plt = pyplot()
    ok = df[(df["status"] == "ok") & df["latency_ms"].notna()] if "latency_ms" in df else df.iloc[0:0]
    ok = ok[ok["causal"] == True]  # noqa: E712 (a column of booleans)
    modes = sorted(set(ok.loc[ok["variant"] == reference, "mode"]))
    if not modes:
        raise UserError(f"no ok causal {reference} results to compare against")
    if ok["seq_len"].nunique() < 2:
        raise UserError("a crossover needs results at two sequence lengths or more")
    fig, axes = plt.subplots(1, len(modes), figsize=(6.5 * len(modes), 4.8), squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        part = ok[ok["mode"] == mode]
        ref = part[(part["label"] == reference)].set_index("seq_len")["latency_ms"]
        others = part[~part["variant"].str.startswith("softmax.")]
        for label, group in others.groupby("label", sort=True):
            group = group[group["seq_len"].isin(ref.index)].sort_values("seq_len")
            if group.empty:
                continue
            ratio = group["latency_ms"].to_numpy() / ref.loc[group["seq_len"]].to_numpy()
            cross = crossover(dict(zip(group["seq_len"], group["latency_ms"], strict=True)), ref.to_dict())
            ax.plot(
                group["seq_len"],
                ratio,
                "-o",
                ms=3,
                label=f"{label}  ({crossover_text(cross, group['seq_len'])})",
            )
        ax.axhline(1.0, color="grey", ls="--", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length N")
        ax.set_ylabel(f"latency / {reference} latency")
        ax.set_title(f"causal {mode}: where linear and sparse variants overtake softmax")
        ax.grid(True, which="both", alpha=0.3)
        outside_legend(ax, 6)
    return save(fig, axes[0][-1], path, legend=False)


def crossover_text(cross: float | None, lengths: pd.Series) -> str:
    """The legend's words for a crossover over the lengths measured."""
    if cross is None:
        return f"not faster at N = {int(lengths.max())}"
    if cross == 0:
        return f"faster at every N measured, {int(lengths.min())}–{int(lengths.max())}"
    return f"faster from N ≈ {cross:.0f}"


def plot_bars(df: pd.DataFrame, name: str, path: str | Path, *, title: str | None = None) -> Path:
    """`name` of each case at one sequence length as horizontal bars, one per row of the table
    (what a figure against N becomes when the results hold one N)."""
    plt = pyplot()
    m = metric(name)
    ok = hide_unsupported(m.of(df))
    if m.column not in ok:
        raise UserError(f"no results hold {name!r} to draw")
    ok = ok[ok["status"].isin(MEASURED) & ok[m.column].notna()]
    if ok.empty:
        raise UserError(f"no results hold {name!r} to draw")
    varying = row_axes(ok)[1:]
    ok = ok.sort_values(m.column)
    labels = [
        " ".join(_axis_text(a, r[a]) for a in ["label", *varying]) + (" ✗" if r["status"] != "ok" else "")
        for _, r in ok.iterrows()
    ]
    fig, ax = plt.subplots(figsize=(7.5, 0.8 + 0.28 * len(ok)))
    ax.barh(range(len(ok)), ok[m.column].to_numpy(float) * m.scale, color="tab:blue")
    ax.set_yticks(range(len(ok)), labels, fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel(m.title.split(" (")[0])
    ax.set_title(title or f"{m.title.split(' (')[0]} at N = {int(ok['seq_len'].iloc[0])}")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    return save(fig, ax, path, legend=False)


def plot_position_costs(df: pd.DataFrame, path: str | Path) -> Path:
    """The cost of each positional scheme (the ALiBi paper's Fig. 4 at the layer): median
    latency per scheme and softmax path at the longest N, one panel per mode."""
    plt = pyplot()
    ok = (
        df[(df["status"] == "ok") & df["params"].fillna("").str.contains("position=")]
        if "params" in df
        else df
    )
    ok = ok[ok["latency_ms"].notna()] if "latency_ms" in ok else ok.iloc[0:0]
    if ok.empty:
        raise UserError("no ok results with a positional scheme to plot")
    n = int(ok["seq_len"].max())
    ok = ok[ok["seq_len"] == n].assign(scheme=lambda d: d["params"].str.extract(r"position=([^,]+)")[0])
    modes = sorted(ok["mode"].unique())
    fig, axes = plt.subplots(1, len(modes), figsize=(6.5 * len(modes), 4.5), squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        part = ok[ok["mode"] == mode]
        schemes = sorted(part["scheme"].unique())
        paths = sorted(part["variant"].unique())
        width = 0.8 / len(paths)
        for i, variant in enumerate(paths):
            cells = part[part["variant"] == variant].set_index("scheme")["latency_ms"]
            xs = [j + i * width for j, s in enumerate(schemes) if s in cells.index]
            ax.bar(xs, [cells[s] for s in schemes if s in cells.index], width, label=variant)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(schemes))], schemes, rotation=30)
        ax.set_ylabel("median latency, ms")
        ax.set_title(f"positional schemes, N = {n}, {mode}")
        ax.grid(True, axis="y", alpha=0.3)
        outside_legend(ax)
    return save(fig, axes[0][-1], path, legend=False)


def with_devices(label: str, df: pd.DataFrame) -> str:
    """An axis label naming the devices the results ran on, e.g. `sequence length N  (AMD EPYC)`."""
    names = sorted(str(d) for d in df["device_name"].dropna().unique()) if "device_name" in df else []
    return f"{label}  ({', '.join(names)})" if names else label


def pyplot():
    """matplotlib.pyplot on the file-only backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def check_figure_path(path: Path) -> None:
    """Refuse a figure file whose suffix matplotlib cannot write, before anything is drawn."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix.lstrip(".").lower() not in formats:
        known = ", ".join(f".{f}" for f in sorted(formats))
        suffix = path.suffix or "(no suffix)"
        raise UserError(f"--plot {path}: no figure format {suffix!r}; end it in one of {known}")


def outside_legend(ax, fontsize: int = 7) -> None:
    """The legend to the right of the axes, never over a curve."""
    ax.legend(fontsize=fontsize, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def save(fig, ax, path: str | Path, *, legend: bool = True) -> Path:
    """Grid and legend on `ax` (a figure of several panels sets its own: `legend=False`),
    tight layout; write PNG or SVG (by suffix) and close the figure."""
    plt = pyplot()
    if legend:
        ax.grid(True, which="both", alpha=0.3)
        outside_legend(ax)
    fig.tight_layout()
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=130, bbox_inches="tight")  # the page grows to hold a legend outside
    except OSError as e:
        raise UserError(f"cannot write the figure {path}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
    return path
