"""Length extrapolation (Press, Smith and Lewis 2021, "Train Short, Test Long") as a task.

A byte-level decoder LM (`DecoderLM`: pre-norm blocks, tied embeddings, vocabulary 256) is
trained on windows of L bytes for a fixed token budget, the same for every arm, then
evaluated on the validation text at L, 2L, 4L, … up to `eval_factor`·L: perplexity, bits per
byte and the loss by position bucket inside the window, in non-overlapping windows and, with
`sliding_stride`, a sliding window too (see `attnbench.tasks.lm`).

Positional schemes: those added to the token embeddings (sinusoidal, learned) are the LM's,
as in the paper; a softmax variant's `position` parameter naming one of them is moved to the
input, and the task's own `position` gives one to any variant. RoPE and score biases (T5,
ALiBi, Shaw) act inside the variant. An evaluation length a scheme or variant cannot reach
(the learned table ends at L) is recorded `unsupported` with the reason; the others still run.

Trained weights are cached by what trained them (`checkpoints`), so adding evaluation
lengths or the sliding mode re-evaluates without retraining.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from attnbench.cases import Case
from attnbench.errors import UserError
from attnbench.registry import Variant
from attnbench.report.spread import Spread, draw_band, seeds_of
from attnbench.tasks import register_task
from attnbench.tasks.lm import as_tokens
from attnbench.tasks.lm_train import cached_corpus, eval_lengths, eval_point, evaluate_at, trained_model
from attnbench.tasks.model import INPUT_SCHEMES, DecoderTask
from attnbench.tasks.training import TRAINING, attention_metrics

if TYPE_CHECKING:
    import pandas as pd


@register_task("extrapolation")
class Extrapolation(DecoderTask):
    """Train a byte-level LM at length L, evaluate perplexity at L … 16L (ALiBi paper)."""

    params: ClassVar[Mapping[str, Any]] = {
        "corpus": "",  # "" = the running interpreter's standard library; else a path
        "seq_len": 128,
        "d_model": 128,
        "layers": 4,
        "heads": 4,
        "batch": 16,
        "train_tokens": 2_000_000,  # the budget: steps = train_tokens / (batch · seq_len)
        "position": "none",  # an input scheme for any variant: none | sinusoidal | learned
        "eval_factor": 16,  # evaluate at L, 2L, … up to this · L (a power of two)
        "eval_tokens": 65_536,  # validation bytes scored at every length
        "sliding_stride": 0,  # > 0: also evaluate with a sliding window of this stride
        "eval_batch_tokens": 8192,
        "curve_tokens": 16_384,  # validation bytes of the loss curve during training
        "lr": 1e-3,
        "warmup": 100,
        "cosine": True,
        "clip": 1.0,
        "eval_every": 250,
        "seed": TRAINING.defaults["seed"],
    }
    counts: ClassVar[tuple[str, ...]] = (
        "seq_len",
        "d_model",
        "layers",
        "heads",
        "batch",
        "train_tokens",
        "eval_factor",
        "eval_tokens",
        "eval_batch_tokens",
        "curve_tokens",
        "eval_every",
    )
    # how much and how it is evaluated, not what is trained: not part of the seed
    unseeded: ClassVar[tuple[str, ...]] = (
        "eval_every",
        "eval_factor",
        "eval_tokens",
        "sliding_stride",
        "eval_batch_tokens",
        "curve_tokens",
    )
    title: ClassVar[str] = "validation perplexity (bytes) by evaluation length, trained at 1×"
    quality: ClassVar[Mapping[str, bool]] = {"ppl 1×": False, "ppl 16×": False}

    @classmethod
    def resolve_params(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        p = super().resolve_params(given)
        name = f"task {cls.name}"
        if p["eval_factor"] & (p["eval_factor"] - 1):
            raise UserError(f"{name}: eval_factor must be a power of two, not {p['eval_factor']}")
        if p["position"] not in INPUT_SCHEMES:
            raise UserError(
                f"{name}: position must be an input scheme ({', '.join(INPUT_SCHEMES)}); RoPE and score "
                f"biases are the variant's `position` parameter, not {p['position']!r}"
            )
        stride = p["sliding_stride"]
        if not isinstance(stride, int) or not 0 <= stride <= p["seq_len"]:
            raise UserError(f"{name}: sliding_stride must be an integer in [0, seq_len], not {stride!r}")
        if not isinstance(p["warmup"], int) or p["warmup"] < 0:
            raise UserError(f"{name}: warmup must be a non-negative integer, not {p['warmup']!r}")
        if not isinstance(p["corpus"], str):
            raise UserError(f"{name}: corpus must be a path (a string), not {p['corpus']!r}")
        return p

    @classmethod
    def run(cls, variant: type[Variant], case: Case, params: dict[str, Any]) -> dict[str, Any]:
        p = params
        corpus = cached_corpus(p["corpus"])
        model, info = trained_model(cls, variant, case, p)
        valid = as_tokens(corpus.valid[: p["eval_tokens"] + 1])
        evals = [
            evaluate_at(model, case, p, valid, length, stride)
            if info["stopped_by"] != "diverged"
            else {
                **eval_point(p, length, stride),
                "status": "diverged",
                "reason": f"training diverged by step {info['steps']}",
            }
            for stride in ([None, p["sliding_stride"]] if p["sliding_stride"] else [None])
            for length in eval_lengths(p["seq_len"], p["eval_factor"])
        ]
        return {
            "seq_len": p["seq_len"],
            "input_position": model.position,
            "corpus": corpus.source,
            "corpus_sha256": corpus.sha256,
            **info,
            "evals": evals,
            **attention_metrics(model.attention_layers[0]),
        }

    @classmethod
    def table(cls, df: pd.DataFrame, *, raw: bool = False, **options: Any) -> pd.DataFrame:
        """Rows: arm (and training length, mode, device when they vary); columns: perplexity at
        each evaluation length ("N (k×)"), then the ratio of the longest to the training length
        (per seed, then summarised). With several seeds a cell is the median (min–max) over
        seeds, with `[n status]` for seeds that did not run there; raw: the median."""
        import pandas as pd

        ev = eval_rows(df)
        varying = [c for c in ("train_len", "mode", "device", "dtype") if c in ev and ev[c].nunique() > 1]
        keys = ["arm", *varying]
        rows = []
        for key, group in ev.groupby(keys, dropna=False, sort=False):
            key = key if isinstance(key, tuple) else (key,)
            row = dict(zip(keys, key, strict=True))
            if group["length"].isna().all():  # no seed ran at all: its status
                row["status"] = group["status"].iloc[0]
                rows.append(row)
                continue
            for length, at in group.dropna(subset=["length"]).groupby("length", sort=True):
                column = f"{int(length)} ({at['factor'].iloc[0]:g}×)"
                row[column] = spread_cell(at, "ppl", raw)
            ratios = seed_ratios(group)
            if ratios is not None:
                factor, spread = ratios
                row[f"{factor:g}× / 1×"] = spread.median if raw else spread.cell(lambda r: f"{r:.2f}")
            rows.append(row)
        table = pd.DataFrame(rows)
        lengths = sorted((c for c in table.columns if c.endswith("×)")), key=lambda c: int(c.split()[0]))
        rest = [c for c in table.columns if c not in keys and c not in lengths]
        return table[keys + lengths + rest].fillna("")

    @classmethod
    def figure(cls, df: pd.DataFrame, path: str | Path, **options: Any) -> Path:
        """As the ALiBi paper's Fig. 1: validation perplexity against the evaluation length
        (log-x), one line per arm (non-overlapping windows solid, sliding dashed): the median
        over seeds, the range a band; the training length marked."""
        from attnbench.report.figures import pyplot, save, with_devices

        plt = pyplot()
        ev = eval_rows(df)
        ok = ev[ev["status"] == "ok"] if "ppl" in ev else ev.iloc[0:0]
        if ok.empty:
            raise UserError("no ok extrapolation results to plot")
        fig, ax = plt.subplots(figsize=(7.5, 5))
        arms = list(ok.groupby("arm", sort=False))
        colors = plt.get_cmap("tab10" if len(arms) <= 10 else "tab20").colors
        markers = {"softmax": "o", "linear": "s", "sparse": "^"}  # one marker per family
        for i, (arm, group) in enumerate(arms):
            marker = markers.get(arm.split(".")[0], "D")
            for mode, part in group.groupby("mode", sort=True):
                by_length = list(part.groupby("length", sort=True))
                label = arm if mode == "windows" else f"{arm}, {mode}"
                style = "-" if mode == "windows" else "--"
                spreads = [Spread.of(at["ppl"]) for _, at in by_length]
                color = colors[i % len(colors)]
                draw_band(ax, [n for n, _ in by_length], spreads, color, label, ls=style, marker=marker, ms=4)
        for length in sorted(ok["train_len"].dropna().unique()):
            ax.axvline(length, color="grey", ls=":", lw=1.2, label=f"training length {int(length)}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(with_devices("evaluation length, bytes", df))
        several = ok["seed"].nunique() > 1
        ax.set_ylabel(
            "validation perplexity (per byte)" + (", median and range over seeds" if several else "")
        )
        ax.set_title("length extrapolation: perplexity vs evaluation length")
        return save(fig, ax, path)

    @classmethod
    def quality_of(cls, df: pd.DataFrame) -> dict[str, dict[str, Any]]:
        """Perplexity at 1× and at the longest length (non-overlapping windows; the median over
        seeds), by arm."""
        ev = eval_rows(df)
        ev = ev[(ev["status"] == "ok") & (ev["mode"] == "windows")] if "mode" in ev else ev.iloc[0:0]
        variant_of = dict(zip(df["label"], df["variant"], strict=False))
        out: dict[str, dict[str, Any]] = {}
        for arm, group in ev.groupby("arm"):
            by_factor = group.groupby("factor")["ppl"].median().to_dict()
            longest = max(by_factor)
            out[arm] = {
                "variant": variant_of.get(arm, arm.split("[")[0]),
                "ppl 1×": by_factor.get(1.0),
                "ppl 16×": by_factor[longest] if longest > 1 else None,
            }
        return out


def arm_of(row: pd.Series) -> str:
    """An arm: the variant with its parameters, and the LM's input scheme when the task (not
    the variant) set one."""
    position = row.get("task.position")
    extra = f" + {position} input" if isinstance(position, str) and position not in ("", "none") else ""
    return f"{row['label']}{extra}"


def eval_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (case, evaluation length, mode): arm, train_len, length, factor, mode
    ("windows" or "sliding (stride s)"), status, ppl, bpb, …"""
    from attnbench.report.table import explode

    base = lambda r: {
        "arm": arm_of(r),
        "seed": int(r["seed"]),
        "case_id": r["case_id"],
        "train_len": r.get("task.seq_len"),
        "device": r.get("device"),
        "dtype": r.get("dtype"),
    }
    rows = explode(df.assign(seed=seeds_of(df)), "evals", base).drop(columns=["bucket_loss"], errors="ignore")
    if "mode" in rows:
        sliding = rows["mode"] == "sliding"
        rows.loc[sliding, "mode"] = (
            "sliding (stride " + rows.loc[sliding, "stride"].astype(int).astype(str) + ")"
        )
    return rows


def ppl_cell(ppl: float) -> str:
    return f"{ppl:.2f}" if ppl < 1000 else f"{ppl:.3g}"


def spread_cell(at: pd.DataFrame, column: str, raw: bool) -> Any:
    """One length of one arm over its seeds: the median (min–max) of the ok ones and how many
    seeds ended otherwise, or the status when none is ok (raw: the median, or the status)."""
    ok = at[at["status"] == "ok"]
    if ok.empty:
        return at["status"].iloc[0]
    spread = Spread.of(ok.sort_values("seed")[column])
    if raw:
        return spread.median
    others = at[at["status"] != "ok"]["status"]
    missing = "".join(f" [{n} {status}]" for status, n in others.value_counts().items())
    return spread.cell(ppl_cell) + missing


def seed_ratios(group: pd.DataFrame) -> tuple[float, Spread] | None:
    """The longest evaluated factor and, over the seeds that have it and 1×, the ratio of the
    perplexity there to the perplexity at 1× (windows mode rows of one arm)."""
    ok = group[group["status"] == "ok"].dropna(subset=["factor"])
    if ok.empty or ok["factor"].max() <= 1:
        return None
    longest = ok["factor"].max()
    ratios = []
    for _, runs in ok.groupby("seed", sort=True):
        by_factor = dict(zip(runs["factor"], runs["ppl"], strict=True))
        if 1 in by_factor and longest in by_factor:
            ratios.append(by_factor[longest] / by_factor[1])
    return (longest, Spread.of(ratios)) if ratios else None
