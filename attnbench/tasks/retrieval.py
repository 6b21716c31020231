"""Associative retrieval (Schlag, Irie and Schmidhuber 2021, section 6.1) as a task.

Vocabulary: S keys and S values. **Setting 1 (capacity)**: S key→value pairs, every key once
(a permutation); one query key; the target is its value. **Setting 2 (editing)**: 2S pairs,
keys and values drawn with replacement, so keys repeat with new values; the target is the
value of the query key's *last* occurrence.

Model: one attention layer (any registered causal variant), no output projection. Values are
fixed one-hot vectors of size S; the attention key at each position is a learned projection of
[key embedding; value one-hot], the query a learned projection of the query key's embedding,
both of size d_key before φ; for the delta rule, β = σ(learned projection of the same input).
The query rides on the last position: a causal layer writes every pair, then reads, so the
last output is the memory's answer. Loss: 0.5·‖y − onehot(target)‖² summed, batch-averaged;
accuracy: the nearest value vector (for one-hot values, the arg-max of y) is the target.

**Protocol parameters.** Each choice where the paper's code (github.com/ischlag/
fast-weight-transformers, `synthetic/`) differs from this task's defaults is a parameter; the
defaults are what results written before them ran, `suites/retrieval-paper.toml` sets the
paper's values:

| parameter | default | the paper's code |
| --- | --- | --- |
| `values_replace` | true: setting-1 values drawn with replacement | false: a permutation (`replace=False`) |
| `d_embed` | 0: the key embedding has d_key | `"2.2S"`: int(1.1·(S keys + S values)) |
| `bias` | false | true: biases on the key and query projections |
| `init` | `"torch"` | `"paper"`: W_k, W_q uniform ±1/√d_key (softmax: Xavier) |
| `report` | `"best"` evaluation loss | `"last"` (its figures read the last logged loss) |
| `patience` | 10 evaluations | 11 (`strike > 10`) |
| `max_queries` | 0: every key of each evaluation sequence | 200 (the smallest key ids) |
| `eval_pairs` | `"train"`: setting 2 evaluated on 2S pairs | `"S"`: on S pairs |
| `query_by` | `"key"`: a query uniform over the keys held | `"position"`: the key at a uniform position |

(`query_by` matters in setting 2 only: drawn by position, a key that occurs twice is asked
twice as often.)

Values without replacement need as many values as pairs: a setting-1 sequence holds S values
out of S (a permutation); setting 2's 2S pairs cannot, and `values_replace = false` there is
a suite error. The normalisation of each arm (the paper: the sum rule with attention
normalisation, the delta rule with sum normalisation) and FAVOR+'s redraw at evaluation
(`redraw = "always"`) are the variant's parameters.
"""

from __future__ import annotations

import re
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
from attnbench.tasks.retrieval_table import (  # capacity, capacity_text: also imported from here
    capacity,  # noqa: F401
    capacity_table,
    capacity_text,  # noqa: F401
    plot_capacity,
)
from attnbench.tasks.training import TRAINING, attention_metrics, train_to_stop

if TYPE_CHECKING:
    import pandas as pd

CHOICES = {
    "init": ("torch", "paper"),
    "report": ("best", "last"),
    "eval_pairs": ("train", "S"),
    "query_by": ("key", "position"),
}
PER_S = re.compile(r"^(\d+(?:\.\d+)?)S$")  # d_embed = "2.2S": a multiple of S


def embedding_size(d_embed: int | str, n_keys: int, d_key: int) -> int:
    """The key embedding's size: d_key (0), a number, or a multiple of S ("2.2S")."""
    if isinstance(d_embed, str):
        return int(float(PER_S.match(d_embed)[1]) * n_keys)
    return d_embed or d_key


@register_task("retrieval")
class Retrieval(Task):
    """Associative retrieval: store S key→value pairs, read one back (Schlag et al. 2021)."""

    params: ClassVar[Mapping[str, Any]] = {
        "setting": 1,
        "S": 20,
        "d_key": 64,
        "batch": 32,
        "eval_sequences": 20,
        "values_replace": True,
        "d_embed": 0,
        "bias": False,
        "init": "torch",
        "report": "best",
        "max_queries": 0,
        "eval_pairs": "train",
        "query_by": "key",
        **TRAINING.defaults,
    }
    counts: ClassVar[tuple[str, ...]] = ("S", "d_key", "eval_sequences", *TRAINING.counts)
    # what is evaluated and which loss is reported, like when to stop, is not what is trained
    unseeded: ClassVar[tuple[str, ...]] = (
        *TRAINING.unseeded,
        "eval_sequences",
        "report",
        "max_queries",
        "eval_pairs",
    )
    title: ClassVar[str] = (
        "evaluation loss by S (0.5·squared error; best or last, as `report` says), "
        "median over seeds, and capacity"
    )
    options: ClassVar[Mapping[str, Option]] = {
        "threshold": Option(float, 0.01, "retrieval: the loss under which S counts as retrieved")
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
        for key, allowed in CHOICES.items():
            if p[key] not in allowed:
                raise UserError(f"task retrieval: {key} must be one of {', '.join(allowed)}, not {p[key]!r}")
        for key in ("values_replace", "bias"):
            if not isinstance(p[key], bool):
                raise UserError(f"task retrieval: {key} must be true or false, not {p[key]!r}")
        if not p["values_replace"] and p["setting"] != 1:
            raise UserError(
                "task retrieval: values_replace = false needs setting 1 (S values for S pairs); "
                "setting 2's 2S pairs draw their values with replacement"
            )
        d_embed = p["d_embed"]
        number = isinstance(d_embed, int) and not isinstance(d_embed, bool) and d_embed >= 0
        if not (number or (isinstance(d_embed, str) and PER_S.match(d_embed))):
            raise UserError(
                f"task retrieval: d_embed must be a size (0: d_key) or a multiple of S such as "
                f'"2.2S", not {d_embed!r}'
            )
        if (
            not isinstance(p["max_queries"], int)
            or isinstance(p["max_queries"], bool)
            or p["max_queries"] < 0
        ):
            raise UserError(
                f"task retrieval: max_queries must be 0 (all) or a count, not {p['max_queries']!r}"
            )
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
        d_embed = embedding_size(p["d_embed"], n_keys, p["d_key"])
        model = RetrievalModel(layer, n_keys, p["d_key"], d_embed=d_embed, bias=p["bias"], init=p["init"])
        model = model.to(case.device, torch_dtype(case.dtype))
        train_gen = torch.Generator().manual_seed(seed + 1)
        eval_gen = torch.Generator().manual_seed(seed + 2)
        eval_length = n_keys if p["eval_pairs"] == "S" else None

        def step_loss() -> torch.Tensor:
            batch = sample_batch(
                setting,
                n_keys,
                p["batch"],
                train_gen,
                values_replace=p["values_replace"],
                query_by=p["query_by"],
            )
            batch = batch.to(case.device)
            return retrieval_loss(model(batch), batch.target)

        def evaluate() -> tuple[float, float]:
            data = sample_eval(
                setting,
                n_keys,
                p["eval_sequences"],
                eval_gen,
                length=eval_length,
                values_replace=p["values_replace"],
                max_queries=p["max_queries"],
            ).to(case.device)
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
        metrics = result.metrics()
        return {
            "setting": setting,
            "S": n_keys,
            "d_key": p["d_key"],
            "d_embed": d_embed,
            **metrics,
            "loss": metrics["best_loss" if p["report"] == "best" else "last_loss"],
            **attention_metrics(layer),
        }

    @classmethod
    def table(cls, df: pd.DataFrame, *, raw: bool = False, **options: Any) -> pd.DataFrame:
        return capacity_table(df, cls.option(options, "threshold"), raw=raw)

    @classmethod
    def figure(cls, df: pd.DataFrame, path: str | Path, **options: Any) -> Path:
        return plot_capacity(df, path, threshold=cls.option(options, "threshold"), loss=cls.loss_name(df))

    @classmethod
    def loss_name(cls, df: pd.DataFrame) -> str:
        """Which evaluation loss the runs report: best, last, or (mixed) either."""
        default = cls.params["report"]
        kinds = set(df["task.report"].fillna(default)) if "task.report" in df else {default}
        return f"{kinds.pop()} evaluation loss" if len(kinds) == 1 else "evaluation loss (best or last)"

    @classmethod
    def quality_of(cls, df: pd.DataFrame) -> dict[str, dict[str, Any]]:
        """Capacity in setting 1 at the default threshold (the median over seeds), by label."""
        threshold = cls.options["threshold"].default
        setting1 = df[df["task.setting"] == 1] if "task.setting" in df else df
        out: dict[str, dict[str, Any]] = {}
        for label, group in setting1.groupby("label"):
            if (group["status"] == "ok").any():
                cap = capacity_table(group, threshold, raw=True)[f"capacity (loss<{threshold:g})"].iloc[0]
                out[label] = {
                    "variant": group["variant"].iloc[0],
                    "capacity": None if cap is None else int(cap),
                }
        return out
