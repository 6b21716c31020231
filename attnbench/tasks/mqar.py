"""Multi-query associative recall (MQAR; Arora et al. 2023, "Zoology") as a task.

Vocabulary V (8192): keys from the lower half, values from the upper half, distinct within an
example. D key-value pairs open a sequence of length L; each key is then queried once, at a
gap drawn without replacement from a power law p(g) ∝ g^(a−1) (a = 0.01) over the
(L − 2D)/2 slots of the rest, whose other positions hold random tokens (`fill = "random"`) or
token 0 (`"zero"`: Zoology's Figure 2, `random_non_queries = False`). At a query position
the model must predict the key's value; loss and accuracy count those positions only.
Model: a 2-layer pre-norm decoder (`attnbench.tasks.model`) with learned absolute positions,
the attention being any registered causal variant, an MLP of `mlp`× the width in each block
(0: none, as Zoology's Figure 2) and optionally a short causal convolution of `short_conv`
taps before each attention (Zoology's mixers have one); trained on fresh examples every step
and evaluated on a fixed held-out set. A run stops at a held-out accuracy of `stop_accuracy`
(Zoology: 0.99; 0 here: never) and reports its best held-out accuracy (`max_accuracy`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F

from attnbench.cases import Case
from attnbench.errors import UserError
from attnbench.inputs import torch_dtype
from attnbench.registry import Variant
from attnbench.tasks import register_task
from attnbench.tasks.model import DecoderLM, DecoderTask, attention_builder
from attnbench.tasks.mqar_table import accuracy_table, plot_accuracy
from attnbench.tasks.training import TRAINING, attention_metrics, train_to_stop

if TYPE_CHECKING:
    import pandas as pd

IGNORE = -100


@dataclass(frozen=True)
class Examples:
    inputs: torch.Tensor  # (B, L) token ids
    targets: torch.Tensor  # (B, L): the value at query positions, IGNORE elsewhere

    def to(self, device: str | torch.device) -> Examples:
        return Examples(self.inputs.to(device), self.targets.to(device))


def power_law(slots: int, a: float = 0.01) -> torch.Tensor:
    p = torch.arange(1, slots + 1, dtype=torch.float64) ** (a - 1)
    return p / p.sum()


def distinct(low: int, high: int, count: int, batch: int, gen: torch.Generator) -> torch.Tensor:
    """(batch, count) ids drawn without replacement from [low, high), per row."""
    return torch.rand(batch, high - low, generator=gen).topk(count, dim=-1).indices + low


FILLS = ("random", "zero")  # what the positions between the queries hold


def sample_mqar(
    vocab: int,
    seq_len: int,
    pairs: int,
    batch: int,
    gen: torch.Generator,
    *,
    a: float = 0.01,
    fill: str = "random",
) -> Examples:
    context = 2 * pairs
    slots = (seq_len - context) // 2
    keys = distinct(1, vocab // 2, pairs, batch, gen)  # 0 is kept out of the keys, as in Zoology
    values = distinct(vocab // 2, vocab, pairs, batch, gen)
    gaps = torch.multinomial(power_law(slots, a).float().expand(batch, slots), pairs, generator=gen)
    if fill == "random":
        inputs = torch.randint(vocab, (batch, seq_len), generator=gen)
    else:
        inputs = torch.zeros(batch, seq_len, dtype=torch.long)
    inputs[:, 0:context:2], inputs[:, 1:context:2] = keys, values
    where = context + 2 * gaps  # query positions
    inputs.scatter_(1, where, keys)
    targets = torch.full((batch, seq_len), IGNORE, dtype=torch.long).scatter_(1, where, values)
    return Examples(inputs, targets)


@register_task("mqar")
class MQAR(DecoderTask):
    """Multi-query associative recall: D pairs, each key queried once later (Zoology)."""

    params: ClassVar[Mapping[str, Any]] = {
        "vocab": 8192,
        "seq_len": 64,
        "pairs": 4,
        "d_model": 64,
        "layers": 2,
        "heads": 1,
        "batch": 64,
        "eval_examples": 1000,
        "power_a": 0.01,
        "fill": "random",
        "mlp": 4,
        "short_conv": 0,
        "stop_accuracy": 0.0,
        **TRAINING.defaults,
        "max_steps": 20_000,
    }
    counts: ClassVar[tuple[str, ...]] = (
        "vocab",
        "seq_len",
        "pairs",
        "d_model",
        "layers",
        "heads",
        "eval_examples",
        *TRAINING.counts,
    )
    unseeded: ClassVar[tuple[str, ...]] = (*TRAINING.unseeded, "eval_examples", "stop_accuracy")
    title: ClassVar[str] = (
        "MQAR held-out query accuracy at the best learning rate: median (min–max) over seeds, "
        "seeds reaching 0.99"
    )

    @classmethod
    def resolve_params(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        p = super().resolve_params(given)
        if 4 * p["pairs"] > p["seq_len"]:
            raise UserError(f"task mqar: {p['pairs']} pairs need seq_len ≥ {4 * p['pairs']} (4·D)")
        if p["vocab"] // 2 <= p["pairs"] + 1:
            raise UserError(f"task mqar: vocab {p['vocab']} is too small for {p['pairs']} distinct keys")
        if p["fill"] not in FILLS:
            raise UserError(f"task mqar: fill must be one of {', '.join(FILLS)}, not {p['fill']!r}")
        for key in ("mlp", "short_conv"):
            if not isinstance(p[key], int) or isinstance(p[key], bool) or p[key] < 0:
                raise UserError(f"task mqar: {key} must be a non-negative integer (0: none), not {p[key]!r}")
        if not 0 <= p["stop_accuracy"] <= 1:
            raise UserError(
                f"task mqar: stop_accuracy must be in [0, 1] (0: never), not {p['stop_accuracy']!r}"
            )
        return p

    @classmethod
    def run(cls, variant: type[Variant], case: Case, params: dict[str, Any]) -> dict[str, Any]:
        p = params
        seed = cls.run_seed(case, p)
        torch.manual_seed(seed)
        model = DecoderLM(
            attention_builder(variant, case, p),
            vocab=p["vocab"],
            d_model=p["d_model"],
            layers=p["layers"],
            position="learned",
            max_len=p["seq_len"],
            mlp_ratio=p["mlp"],
            short_conv=p["short_conv"],
        ).to(case.device, torch_dtype(case.dtype))
        sample = lambda n, gen: sample_mqar(
            p["vocab"], p["seq_len"], p["pairs"], n, gen, a=p["power_a"], fill=p["fill"]
        )
        train_gen = torch.Generator().manual_seed(seed + 1)
        held_out = sample(p["eval_examples"], torch.Generator().manual_seed(seed + 2)).to(case.device)

        def query_logits(data: Examples) -> tuple[torch.Tensor, torch.Tensor]:
            """Logits and targets at the query positions only (the head is the costly part)."""
            hidden = model.hidden(data.inputs)
            asked = data.targets != IGNORE
            return model.logits(hidden[asked]).float(), data.targets[asked]

        def step_loss() -> torch.Tensor:
            logits, targets = query_logits(sample(p["batch"], train_gen).to(case.device))
            return F.cross_entropy(logits, targets)

        def evaluate() -> tuple[float, float]:
            loss_sum, correct, total = 0.0, 0, 0
            for start in range(0, p["eval_examples"], p["batch"]):
                part = Examples(*(t[start : start + p["batch"]] for t in (held_out.inputs, held_out.targets)))
                logits, targets = query_logits(part)
                loss_sum += F.cross_entropy(logits, targets, reduction="sum").item()
                correct += int((logits.argmax(-1) == targets).sum())
                total += targets.numel()
            return loss_sum / total, correct / total

        result = train_to_stop(model, step_loss, evaluate, p)
        shape = {"seq_len": p["seq_len"], "pairs": p["pairs"], "d_model": p["d_model"]}
        return {**shape, **result.metrics(), **attention_metrics(model.attention_layers[0])}

    @classmethod
    def table(cls, df: pd.DataFrame, *, raw: bool = False, **options: Any) -> pd.DataFrame:
        """Rows: variant (and d_model when it varies); columns: L=…,D=… holding the held-out
        query accuracy at the best of the swept learning rates (the Zoology protocol), over
        seeds (`attnbench.tasks.mqar_table`)."""
        return accuracy_table(df, cls.params["lr"], raw=raw)

    @classmethod
    def figure(cls, df: pd.DataFrame, path: str | Path, **options: Any) -> Path:
        return plot_accuracy(df, path, cls.params["lr"])
