"""The roofline (Williams, Waterman and Patterson 2009, https://doi.org/10.1145/1498765.1498785)
of every timed case, on the machine's own measured ceilings.

For a case: arithmetic intensity I = FLOPs / minimal bytes moved (both as the variant declares
them: `flops`, and `min_bytes` = q, k, v read and o written, ×3 with the backward) and achieved
rate P = FLOPs / median latency. The roof at I is min(π, β·I): π the calibrated matmul rate
for the case's dtype (`attnbench calibrate`), β the measured copy bandwidth (bytes read plus
written per second). A case left of the ridge I* = π/β is memory-bound, right of it
compute-bound, and `roof_pct` = 100·P / roof(I) is how close it gets to the roof.

The FLOPs are the declared count, so causal cases count what the variant computes (softmax:
the half below the diagonal; chunked linear forms: whole chunks). The minimal bytes are an
ideal no attention kernel reaches (every N×N or chunk intermediate kept on chip), so a case's
intensity is an upper bound and `memory-bound` means: bound even in that ideal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from attnbench.errors import UserError

# π and β as used (recorded, or recovered from older records), and the case's place under them
COLUMNS = ["compute_ceiling", "bandwidth_ceiling", "intensity", "achieved_flops", "roof_flops", "bound",
           "roof_pct"]  # fmt: skip
GROUPS = ["device", "dtype"]  # one figure each


def add_roofline(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with `COLUMNS` filled for every ok case that has a latency, FLOPs and ceilings
    (NaN, or "" for `bound`, elsewhere). Results written before the ceilings and minimal bytes
    were recorded get them back from `pct_peak_flops`, `pct_peak_bw` and the variant's own
    `min_bytes`."""
    out = df.copy()
    for column in COLUMNS:
        out[column] = "" if column == "bound" else np.nan
    if "latency_ms" not in out or "flops" not in out:
        return out
    seconds = pd.to_numeric(out["latency_ms"], errors="coerce") / 1e3
    flops = pd.to_numeric(out["flops"], errors="coerce")
    achieved = flops / seconds
    min_bytes = _column(out, "min_bytes")
    older = min_bytes.isna() & (out["status"] == "ok") & (achieved > 0)
    if older.any():
        min_bytes = min_bytes.fillna(_declared_min_bytes(out[older]))
    peak = _column(out, "peak_flops").fillna(achieved / (_column(out, "pct_peak_flops") / 100))
    bandwidth = _column(out, "peak_bw").fillna(min_bytes / seconds / (_column(out, "pct_peak_bw") / 100))
    ok = (out["status"] == "ok") & (achieved > 0) & (min_bytes > 0) & (peak > 0) & (bandwidth > 0)
    intensity = flops / min_bytes
    roof = np.minimum(peak, bandwidth * intensity)
    out.loc[ok, "compute_ceiling"] = peak[ok]
    out.loc[ok, "bandwidth_ceiling"] = bandwidth[ok]
    out.loc[ok, "intensity"] = intensity[ok]
    out.loc[ok, "achieved_flops"] = achieved[ok]
    out.loc[ok, "roof_flops"] = roof[ok]
    out.loc[ok, "bound"] = np.where(intensity[ok] < (peak / bandwidth)[ok], "memory-bound", "compute-bound")
    out.loc[ok, "roof_pct"] = (100 * achieved / roof)[ok]
    return out


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(df[name], errors="coerce") if name in df else pd.Series(np.nan, index=df.index)


def _declared_min_bytes(df: pd.DataFrame) -> pd.Series:
    """Each case's minimal bytes from its variant's declaration, for records that predate
    the `min_bytes` metric (NaN for a variant not registered here)."""
    import torch

    from attnbench.cases import Shape
    from attnbench.registry import REGISTRY

    def one(r: pd.Series) -> float:
        if r.get("variant") not in REGISTRY:
            return np.nan
        shape = Shape(int(r["batch"]), int(r["heads"]), int(r["seq_len"]), int(r["d_head"]))
        itemsize = getattr(torch, str(r["dtype"])).itemsize
        return REGISTRY.get(r["variant"]).min_bytes(shape, mode=r["mode"], itemsize=itemsize)

    return df.apply(one, axis=1, result_type="reduce").astype(float)


def roofline_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per case on the roofline: its place, its bound and its distance to the roof."""
    placed = add_roofline(df)
    placed = placed[placed["roof_pct"].notna()]
    if placed.empty:
        raise UserError("no ok case has the latency, FLOPs and ceilings a roofline needs")
    table = pd.DataFrame(
        {
            "variant": placed["label"],
            "device": placed["device"],
            "dtype": placed["dtype"],
            "mask": placed["causal"].map({True: "causal", False: "full"}),
            "mode": placed["mode"],
            "N": placed["seq_len"],
            "FLOP/B": placed["intensity"].round(2),
            "GFLOP/s": (placed["achieved_flops"] / 1e9).round(2),
            "roof GFLOP/s": (placed["roof_flops"] / 1e9).round(2),
            "bound": placed["bound"],
            "% of roof": placed["roof_pct"].round(1),
        }
    )
    return table.sort_values(["device", "dtype", "mask", "mode", "variant", "N"]).reset_index(drop=True)


def plot_roofline(df: pd.DataFrame, path: str | Path) -> list[Path]:
    """One figure per device and dtype (`path` itself when there is one, else `path` with
    `-<device>-<dtype>` before its suffix), a panel per mask and mode, each variant a marker
    series across N on the roof of its ceilings. Returns the files written."""
    placed = add_roofline(df)
    placed = placed[placed["roof_pct"].notna()]
    if placed.empty:
        raise UserError("no ok case has the latency, FLOPs and ceilings a roofline needs")
    path = Path(path)
    groups = list(placed.groupby(GROUPS, sort=True))
    out = []
    for (device, dtype), group in groups:
        target = path if len(groups) == 1 else path.with_name(f"{path.stem}-{device}-{dtype}{path.suffix}")
        out.append(_draw(group, target, f"{device}, {dtype}"))
    return out


def _draw(group: pd.DataFrame, path: Path, where: str) -> Path:
    import matplotlib.ticker

    from attnbench.report.figures import pyplot, save, with_devices

    plt = pyplot()
    panels = list(group.groupby(["causal", "mode"], sort=True))
    cols = min(2, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 5 * rows), squeeze=False)
    labels = sorted(group["label"].unique())
    colors = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20").colors
    # one roof per figure: the ceilings its cases recorded (the same unless the thread count varies)
    peak, bandwidth = float(group["compute_ceiling"].median()), float(group["bandwidth_ceiling"].median())
    ridge = peak / bandwidth
    for ax, ((causal, mode), part) in zip(axes.flat, panels, strict=False):
        lo = min(part["intensity"].min(), ridge) / 4
        hi = max(part["intensity"].max(), ridge) * 4
        xs = np.geomspace(lo, hi, 200)
        ax.plot(xs, np.minimum(peak, bandwidth * xs) / 1e9, color="black", lw=1.5, label="roof")
        ax.axvline(ridge, color="grey", ls=":", lw=1)
        ax.annotate(
            f"{peak / 1e9:.0f} GFLOP/s, {bandwidth / 1e9:.0f} GB/s: ridge at {ridge:.1f} FLOP/B",
            (ridge, peak / 1e9),
            textcoords="offset points",
            xytext=(4, -12),
            fontsize=7,
            color="grey",
        )
        for label, series in part.groupby("label", sort=True):
            series = series.sort_values("seq_len")
            color = colors[labels.index(label) % len(colors)]
            sizes = 12 + 6 * np.log2(series["seq_len"].to_numpy(float) / series["seq_len"].min())
            x, y = series["intensity"].to_numpy(float), series["achieved_flops"].to_numpy(float) / 1e9
            ax.plot(x, y, "-", color=color, lw=0.8, alpha=0.6)
            ax.scatter(x, y, s=sizes, color=color, label=label, zorder=3)
            ax.annotate(f"N={series['seq_len'].iloc[-1]}", (x[-1], y[-1]), fontsize=6, xytext=(3, 3),
                        textcoords="offset points", color=color)  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel(with_devices("arithmetic intensity, FLOP per minimal byte", part))
        ax.set_ylabel("achieved GFLOP/s (declared FLOPs / median latency)")
        ax.set_title(f"roofline, {where}, {'causal' if causal else 'full'} {mode}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6, loc="lower right")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    return save(fig, axes.flat[0], path, legend=False)
