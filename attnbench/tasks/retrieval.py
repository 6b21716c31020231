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
from attnbench.tasks.retrieval_table import capacity_table, plot_capacity
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
    title: ClassVar[str] = "best evaluation loss by S (0.5·squared error), median over seeds, and capacity"
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
        return plot_capacity(
            df, path, threshold=cls.option(options, "threshold"), loss="best evaluation loss"
        )

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
