"""Where the time and the memory go, from the profiles a results file links: each profile's
memory timeline, the top operators of several variants as stacked bars at one shape, their
timelines side by side, and the report section that holds them with the roofline."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pandas as pd

from attnbench.cases import describe
from attnbench.errors import UserError
from attnbench.report.roofline import GROUPS, plot_roofline, roofline_table
from attnbench.report.sections import Figure, Section, frame_table, png
from attnbench.results.profiles import MEMORY_PNG, Profile, load_profile

TOP = 8  # operators per bar, and allocation sites beside a timeline
MIB = 2**20


def linked_profiles(df: pd.DataFrame) -> tuple[list[Profile], list[str]]:
    """The profiles the ok rows of `df` link (the `profile` metric), and the folders that
    could not be read (moved, or deleted since)."""
    found, missing = [], []
    paths = df.loc[df["status"] == "ok", "profile"].dropna() if "profile" in df else []
    for path in paths:
        try:
            found.append(load_profile(path))
        except UserError:
            missing.append(str(path))
    return found, missing


def draw_profile(profile: Profile) -> Path:
    """The profile's memory timeline, into its own folder."""
    return plot_memory_timeline(profile, profile.folder / MEMORY_PNG)


def plot_memory_timeline(profile: Profile, path: str | Path) -> Path:
    """Bytes live over one call, the peak marked with the operator that reached it (left),
    and what is live at the peak by the operator and function that allocated it (right)."""
    from attnbench.report.figures import pyplot, save

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    _timeline(left, profile)
    memory = profile.summary["memory"]
    origins = memory["live_at_peak"][:TOP][::-1]
    names = [f"{origin_text(o['op'], o['site'])} ×{o.get('tensors', 1)}" for o in origins]
    right.barh(range(len(origins)), [o["bytes"] / MIB for o in origins], color="tab:red", alpha=0.7)
    right.set_yticks(range(len(origins)), names, fontsize=7)
    right.set_xlabel("MiB live at the peak")
    right.set_title("allocated during the call, live at the peak", fontsize=9)
    right.grid(True, axis="x", alpha=0.3)
    fig.suptitle(f"memory of one call: {describe(profile.case)}", fontsize=10)
    return save(fig, left, path, legend=False)


def _timeline(ax, profile: Profile) -> None:
    memory, events = profile.summary["memory"], profile.memory
    t = np.concatenate([[0.0], events["time_ms"].to_numpy(float)])
    live = np.concatenate([[0.0], events["live"].to_numpy(float)]) / MIB
    ax.step(t, live, where="post", color="tab:blue", lw=1.2)
    ax.fill_between(t, live, step="post", alpha=0.15, color="tab:blue")
    if memory["peak_bytes"]:
        peak = memory["peak_bytes"] / MIB
        ax.plot([memory["peak_at_ms"]], [peak], "o", color="tab:red")
        late = memory["peak_at_ms"] > t[-1] / 2  # write the note on the side with room
        ax.annotate(
            f"peak {peak:.1f} MiB: {origin_text(memory['peak_op'], memory['peak_site'])}",
            (memory["peak_at_ms"], peak),
            textcoords="offset points",
            xytext=(-6 if late else 6, -12),
            ha="right" if late else "left",
            fontsize=7,
            color="tab:red",
        )
    ax.set_xlabel("time into the call, ms (under the memory profiler)")
    ax.set_ylabel("MiB allocated beyond the inputs")
    ax.set_title(f"{profile.label}: {memory['events']} allocations and frees", fontsize=9)
    ax.grid(True, alpha=0.3)


def origin_text(op: str | None, site: str | None) -> str:
    """Where an allocation came from, for people: `aten::bmm in linear/forms.py:chunk_sum`."""
    return " in ".join(part for part in (op or "", site or "") if part) or "(outside any operator)"


def plot_memory_timelines(profiles: list[Profile], path: str | Path) -> Path:
    """The timelines of several profiles side by side, each on its own scale."""
    if not profiles:
        raise UserError("no profiles to draw")
    from attnbench.report.figures import pyplot, save

    plt = pyplot()
    cols = min(3, len(profiles))
    rows = -(-len(profiles) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.8 * rows), squeeze=False)
    for ax, profile in zip(axes.flat, profiles, strict=False):
        _timeline(ax, profile)
    for ax in list(axes.flat)[len(profiles) :]:
        ax.set_visible(False)
    return save(fig, axes.flat[0], path, legend=False)


def plot_op_bars(profiles: list[Profile], path: str | Path, *, top: int = TOP) -> Path:
    """One bar per profile, its height the call's wall time under the profiler, stacked by
    its top operators' self time (the same colour for an operator in every bar); the rest of
    each call is `other operators`."""
    if not profiles:
        raise UserError("no profiles to draw")
    from attnbench.report.figures import pyplot, save

    plt = pyplot()
    tops = [p.ops.nlargest(top, "self_ms") for p in profiles]
    names = list(dict.fromkeys(op for t in tops for op in t["op"]))
    # distinct colours for up to 56 operators; greys are kept for the rest and for no operator
    tab20 = [c for i, c in enumerate(plt.get_cmap("tab20").colors) if i not in (14, 15)]
    colors = tab20 + list(plt.get_cmap("tab20b").colors) + list(plt.get_cmap("tab20c").colors[:16])
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(profiles) + 4), 5.5))
    x = np.arange(len(profiles))
    bottom = np.zeros(len(profiles))
    for i, name in enumerate([*names, "other operators"]):
        heights = np.array([_self_ms(p, t, name) for p, t in zip(profiles, tops, strict=True)])
        # the call's time in no operator, `(outside any operator)` or `(GPU idle)`, in grey
        color = colors[i % len(colors)]
        if name.startswith("(") or name == "other operators":
            color = "dimgrey" if name.startswith("(") else "lightgrey"
        ax.bar(x, heights, 0.6, bottom=bottom, label=name, color=color)
        bottom += heights
    ax.set_xticks(x, [p.label for p in profiles], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("ms per call (self time under the profiler)")
    ax.set_title(f"where the time goes: {_shape(profiles[0])}", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save(fig, ax, path, legend=False)


def _self_ms(profile: Profile, top: pd.DataFrame, name: str) -> float:
    if name == "other operators":
        return float(profile.ops["self_ms"].sum() - top["self_ms"].sum())
    return float(top.loc[top["op"] == name, "self_ms"].sum())


def _shape(profile: Profile) -> str:
    return describe(profile.case).split(" ", 1)[1]


def at_one_shape(profiles: list[Profile]) -> list[Profile]:
    """The profiles of the shape most variants were profiled at (the longest N on a tie)."""
    if not profiles:
        return []
    by_shape: dict[str, list[Profile]] = {}
    for p in profiles:
        by_shape.setdefault(_shape(p), []).append(p)
    best = max(by_shape.values(), key=lambda ps: (len(ps), ps[0].case.seq_len))
    return sorted(best, key=lambda p: p.label)


def profiles_table(profiles: list[Profile]) -> pd.DataFrame:
    """Each profile against the measurement it came with: the traced wall time against the
    timed median, and the memory timeline's peak, where it is reached and by what."""
    rows = []
    for p in profiles:
        trace, memory, measured = p.summary["trace"], p.summary["memory"], p.summary["measured"]
        within = trace.get("within")
        check = f"{'within' if within else 'outside'} ±{trace['tolerance']:.0%}"
        rows.append(
            {
                "variant": p.label,
                "case": _shape(p),
                "median ms": measured.get("latency_ms"),
                "traced ms": trace["wall_ms"],
                "traced / median": trace["ratio"],
                "check": "" if within is None else check,
                "peak MiB": memory["peak_bytes"] / MIB,
                "peak reached in": origin_text(memory["peak_op"], memory["peak_site"]),
                "profile": str(p.folder),
            }
        )
    return pd.DataFrame(rows)


def time_section(df: pd.DataFrame) -> Section | None:
    """ "Where the time goes": the profiled cases (stacked operator bars at one shape, memory
    timelines side by side, a table checking each against its measurement) and the roofline
    of every timed case; None when the results have neither."""
    profiles, missing = linked_profiles(df)
    figures, tables = [], []
    shown = at_one_shape(profiles)
    if shown:
        where = _shape(shown[0])
        for title, draw in (
            (f"top operators per variant, {where}", plot_op_bars),
            (f"memory over one call, {where}", plot_memory_timelines),
        ):
            data = png(lambda p, draw=draw: draw(shown, p))
            if data:
                figures.append(Figure(title, data))
        checked = profiles_table(profiles)
        tables.append(frame_table("profiled cases (files under each profile folder)", checked))
    if missing:
        listed = pd.DataFrame({"profile folder the results link, not found": missing})
        tables.append(frame_table("profiles not found", listed))
    for (device, dtype), part in df.groupby(GROUPS, sort=True):
        data = png(lambda p, part=part: plot_roofline(part, p))
        if data:
            figures.append(Figure(f"roofline on this machine's ceilings, {device} {dtype}", data))
    with contextlib.suppress(UserError):  # no case has what a roofline needs
        tables.append(frame_table("each timed case on the roofline", roofline_table(df)))
    if not figures and not tables:
        return None
    return Section("Where the time goes", figures, tables)
