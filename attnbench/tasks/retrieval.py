"""Associative retrieval (Schlag, Irie and Schmidhuber 2021, section 6.1) as a task.

Vocabulary: S keys and S values. **Setting 1 (capacity)**: S key→value pairs, every key once
(a permutation), values drawn with replacement; one query key; the target is its value.
**Setting 2 (editing)**: 2S pairs, keys and values drawn with replacement, so keys repeat with
new values; the target is the value of the query key's *last* occurrence. (The paper's code
trains setting 2 on 2S pairs and evaluates on S; here both training and evaluation use 2S.)

Model: one attention layer (any registered causal variant), no output projection. Values are
fixed one-hot vectors of size S; the attention key at each position is a learned projection of
[key embedding; value one-hot], the query a learned projection of the query key's embedding,
both of size d_key before φ; for the delta rule, β = σ(learned projection of the same input).
The query rides on the last position: a causal layer writes every pair, then reads, so the
last output is the memory's answer. Loss: 0.5·‖y − onehot(target)‖² summed, batch-averaged;
accuracy: the nearest value vector (for one-hot values, the arg-max of y) is the target.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from attnbench.cases import Case
from attnbench.errors import UserError
from attnbench.inputs import torch_dtype
from attnbench.registry import Variant
from attnbench.tasks import Option, Task, case_shape, register_task
from attnbench.tasks.retrieval_data import (
    EVAL_TOKENS,
    SETTINGS,
    RetrievalModel,
    nearest_value,
    retrieval_loss,
    sample_batch,
    sample_eval,
    sequence_length,
)
from attnbench.tasks.training import TRAINING, attention_metrics, train_to_stop

if TYPE_CHECKING:
    import pandas as pd


@register_task("retrieval")
class Retrieval(Task):
    """Associative retrieval: store S key→value pairs, read one back (Schlag et al. 2021)."""

    params: ClassVar[Mapping[str, Any]] = {
        "setting": 1,
        "S": 20,
        "d_key": 64,
        "batch": 32,
        "eval_sequences": 20,
        **TRAINING.defaults,
    }
    counts: ClassVar[tuple[str, ...]] = ("S", "d_key", "eval_sequences", *TRAINING.counts)
    unseeded: ClassVar[tuple[str, ...]] = (*TRAINING.unseeded, "eval_sequences")
    title: ClassVar[str] = "best evaluation loss by S (0.5·squared error), and capacity"
    options: ClassVar[Mapping[str, Option]] = {
        "threshold": Option(float, 0.01, "retrieval: the best loss under which S counts as retrieved")
    }
    quality: ClassVar[Mapping[str, bool]] = {"capacity": True}

    @classmethod
    def resolve_params(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        p = super().resolve_params(given)
        if p["setting"] not in SETTINGS:
            raise UserError(
                f"task retrieval: setting must be 1 (capacity) or 2 (editing), not {p['setting']!r}"
            )
        if p["S"] < 2:
            raise UserError("task retrieval: S must be at least 2")
        return p

    @classmethod
    def shape(cls, params: Mapping[str, Any]) -> dict[str, int]:
        p = cls.resolve_params(params)
        return case_shape(p["batch"], 1, sequence_length(p["setting"], p["S"]), p["d_key"])

    @classmethod
    def run(cls, variant: type[Variant], case: Case, params: dict[str, Any]) -> dict[str, Any]:
        p = params
        setting, n_keys = p["setting"], p["S"]
        seed = cls.run_seed(case, p)
        torch.manual_seed(seed)
        layer = variant(heads=1, d_head=p["d_key"], **case.param_dict)
        layer.check(case)
        model = RetrievalModel(layer, n_keys, p["d_key"]).to(case.device, torch_dtype(case.dtype))
        train_gen = torch.Generator().manual_seed(seed + 1)
        eval_gen = torch.Generator().manual_seed(seed + 2)

        def step_loss() -> torch.Tensor:
            batch = sample_batch(setting, n_keys, p["batch"], train_gen).to(case.device)
            return retrieval_loss(model(batch), batch.target)

        def evaluate() -> tuple[float, float]:
            data = sample_eval(setting, n_keys, p["eval_sequences"], eval_gen).to(case.device)
            rows = data.query.shape[0]
            chunk = max(1, EVAL_TOKENS // data.keys.shape[1])
            loss_sum, correct = 0.0, 0
            for start in range(0, rows, chunk):
                part = data.select(torch.arange(start, min(rows, start + chunk), device=case.device))
                readout = model(part).float()
                loss_sum += retrieval_loss(readout, part.target).item() * part.target.shape[0]
                correct += int((nearest_value(readout) == part.target).sum())
            return loss_sum / rows, correct / rows

        result = train_to_stop(model, step_loss, evaluate, p)
        return {
            "setting": setting,
            "S": n_keys,
            "d_key": p["d_key"],
            **result.metrics(),
            **attention_metrics(layer),
        }

    @classmethod
    def table(cls, df: pd.DataFrame, *, raw: bool = False, **options: Any) -> pd.DataFrame:
        return capacity_table(df, cls.option(options, "threshold"), raw=raw)

    @classmethod
    def figure(cls, df: pd.DataFrame, path: str | Path, **options: Any) -> Path:
        return plot_capacity(df, path, threshold=cls.option(options, "threshold"))

    @classmethod
    def quality_of(cls, df: pd.DataFrame) -> dict[str, dict[str, Any]]:
        """Capacity in setting 1 at the default threshold, by label."""
        out: dict[str, dict[str, Any]] = {}
        setting1 = df[df["task.setting"] == 1] if "task.setting" in df else df
        for label, group in setting1.groupby("label"):
            ok = group[group["status"] == "ok"]
            losses = {int(r["task.S"]): float(r["best_loss"]) for _, r in ok.iterrows()}
            if losses:
                threshold = cls.options["threshold"].default
                out[label] = {"variant": group["variant"].iloc[0], "capacity": capacity(losses, threshold)}
        return out


def capacity(losses: dict[int, float], threshold: float) -> int | None:
    """The largest S up to which the best loss stays under `threshold`: every swept S up to
    it is retrieved (a case that did not run is not). None if the smallest S already fails.
    A success past a failure (training noise near the limit) does not extend it."""
    held = None
    for s in sorted(losses):
        if not losses[s] < threshold:  # NaN compares False
            break
        held = s
    return held


def capacity_text(cap: int | None, losses: dict[int, float]) -> str:
    """`60`; `≥ 96` when the variant held every S swept (its limit lies beyond the sweep);
    `< 8` when it failed the smallest."""
    if cap is None:
        return f"< {min(losses)}"
    return f"≥ {cap}" if cap == max(losses) else str(cap)


def crossing(losses: dict[int, float], threshold: float) -> float | None:
    """Where the loss curve first crosses `threshold`: log-loss interpolated linearly in S
    between the capacity and the next swept S, so two variants that hold the same grid point
    still order by how close they came. None without a crossing."""
    cap = capacity(losses, threshold)
    later = sorted(s for s in losses if cap is not None and s > cap and not math.isnan(losses[s]))
    if cap is None or not later:
        return None
    s0, s1 = cap, later[0]
    y0, y1, y = math.log(losses[s0]), math.log(losses[s1]), math.log(threshold)
    return s0 + (s1 - s0) * (y - y0) / (y1 - y0)


def capacity_table(df: pd.DataFrame, threshold: float, *, raw: bool = False) -> pd.DataFrame:
    """Rows: variant (and setting, d_key, device when they vary); columns: d_dot, capacity,
    the interpolated crossing, then S=… holding the best evaluation loss (or the status when
    the case did not run)."""
    import pandas as pd

    from attnbench.report.table import d_dot_of, row_keys

    keys = row_keys(df, ["task.setting", "task.d_key", "device", "dtype"])
    rows = []
    for key, group in df.groupby(keys, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key, strict=True))
        row["d_dot"] = d_dot_of(group)
        if row["d_dot"] is None and not raw:  # no fixed-size memory (a softmax KV cache), or never ran
            row["d_dot"] = "unbounded" if (group["status"] == "ok").any() else "—"
        losses = {}
        for _, r in group.sort_values("task.S").iterrows():
            s = int(r["task.S"])
            ok = r["status"] == "ok" and not pd.isna(r.get("best_loss"))
            losses[s] = float(r["best_loss"]) if ok else math.nan
            row[f"S={s}"] = (r["best_loss"] if raw else f"{r['best_loss']:.3g}") if ok else r["status"]
        cap = capacity(losses, threshold)
        row[f"capacity (loss<{threshold:g})"] = cap if raw else capacity_text(cap, losses)
        cross = crossing(losses, threshold)
        row["crossing S"] = cross if raw else ("" if cross is None else f"{cross:.1f}")
        rows.append(row)
    table = pd.DataFrame(rows)
    s_cols = sorted((c for c in table.columns if c.startswith("S=")), key=lambda c: int(c[2:]))
    fixed = [c for c in table.columns if not c.startswith("S=")]
    return table[fixed + s_cols].fillna("").rename(columns=lambda c: c.removeprefix("task."))


def plot_capacity(df: pd.DataFrame, path: str | Path, *, threshold: float, title: str | None = None) -> Path:
    """Retrieval results as the fast-weight paper's Fig. 2: best evaluation loss against the
    number of stored pairs S, one line per variant (d_dot in the legend), the capacity
    threshold dashed."""
    from attnbench.report.figures import outside_legend, pyplot, save, with_devices
    from attnbench.report.table import d_dot_of

    plt = pyplot()
    ok = df[(df["status"] == "ok") & df["best_loss"].notna()] if "best_loss" in df else df.iloc[0:0]
    if ok.empty:
        raise UserError("no ok retrieval results to plot")
    settings = sorted(ok["task.setting"].dropna().unique()) if "task.setting" in ok else []
    panels = [(s, ok[ok["task.setting"] == s]) for s in settings] if len(settings) > 1 else [(None, ok)]
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 5), squeeze=False)
    colors = plt.get_cmap("tab10").colors
    labels = sorted(ok["label"].unique())  # one colour per variant across the panels
    for ax, (setting, part) in zip(axes[0], panels, strict=True):
        for label, group in part.groupby("label", sort=True):
            group = group.sort_values("task.S")
            d_dot = d_dot_of(group)
            suffix = f"  (d_dot {d_dot})" if d_dot is not None else ""
            color = colors[labels.index(label) % 10]
            ax.plot(group["task.S"], group["best_loss"], "-o", color=color, label=label + suffix, ms=4)
        ax.axhline(threshold, color="grey", ls="--", lw=1, label=f"capacity threshold {threshold:g}")
        ax.set_yscale("log")
        ax.set_xlabel(with_devices("stored pairs S", ok))
        ax.set_ylabel("best evaluation loss (0.5·squared error)")
        name = title or "associative retrieval: loss vs number of stored pairs"
        ax.set_title(name if setting is None else f"{name}, setting {int(setting)}")
        ax.grid(True, which="both", alpha=0.3)
        outside_legend(ax)
    return save(fig, axes[0][-1], path, legend=False)
