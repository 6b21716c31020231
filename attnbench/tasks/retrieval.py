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
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from attnbench.cases import Case
from attnbench.errors import UserError
from attnbench.inputs import torch_dtype
from attnbench.registry import Variant
from attnbench.tasks import Task, case_shape, register_task
from attnbench.tasks.training import (
    TRAIN_COUNTS,
    TRAIN_DEFAULTS,
    TrainConfig,
    attention_metrics,
    run_seed,
    train,
)

SETTINGS = (1, 2)
EVAL_TOKENS = 1 << 18  # tokens per evaluation chunk: bounds memory at large S (one-hot values are L×S)


@dataclass(frozen=True)
class Batch:
    keys: torch.Tensor  # (B, L) key ids in [0, S)
    values: torch.Tensor  # (B, L) value ids in [0, S)
    query: torch.Tensor  # (B,) the queried key
    target: torch.Tensor  # (B,) the value to retrieve

    def to(self, device: str | torch.device) -> Batch:
        return Batch(*(t.to(device) for t in (self.keys, self.values, self.query, self.target)))

    def select(self, rows: torch.Tensor) -> Batch:
        return Batch(self.keys[rows], self.values[rows], self.query[rows], self.target[rows])


def sequence_length(setting: int, n_keys: int) -> int:
    return n_keys if setting == 1 else 2 * n_keys


def last_values(keys: torch.Tensor, values: torch.Tensor, n_keys: int) -> torch.Tensor:
    """(B, S): the value of each key's last occurrence in each sequence, −1 where absent."""
    batch, length = keys.shape
    position = torch.arange(length).expand(batch, length)
    last = torch.full((batch, n_keys), -1, dtype=torch.long).scatter_reduce(
        1, keys, position, reduce="amax", include_self=True
    )
    return torch.where(last >= 0, values.gather(1, last.clamp(min=0)), -1)


def sample_pairs(
    setting: int, n_keys: int, batch: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    length = sequence_length(setting, n_keys)
    if setting == 1:
        keys = torch.rand(batch, n_keys, generator=gen).argsort(-1)  # each key exactly once
    else:
        keys = torch.randint(n_keys, (batch, length), generator=gen)
    values = torch.randint(n_keys, (batch, length), generator=gen)
    return keys, values


def sample_batch(setting: int, n_keys: int, batch: int, gen: torch.Generator) -> Batch:
    """`batch` sequences, each with one query drawn uniformly from the keys it holds."""
    keys, values = sample_pairs(setting, n_keys, batch, gen)
    answers = last_values(keys, values, n_keys)
    query = torch.multinomial((answers >= 0).float(), 1, generator=gen).squeeze(1)
    return Batch(keys, values, query, answers.gather(1, query[:, None]).squeeze(1))


def sample_eval(setting: int, n_keys: int, sequences: int, gen: torch.Generator) -> Batch:
    """`sequences` fresh sequences, each queried on every key it holds (one row per query)."""
    keys, values = sample_pairs(setting, n_keys, sequences, gen)
    answers = last_values(keys, values, n_keys)
    seq, query = (answers >= 0).nonzero(as_tuple=True)
    return Batch(keys[seq], values[seq], query, answers[seq, query])


class RetrievalModel(nn.Module):
    """Embeddings and projections around one attention layer (heads = 1, d_head = d_key)."""

    def __init__(self, attention: Variant, n_keys: int, d_key: int) -> None:
        super().__init__()
        self.n_keys = n_keys
        self.attention = attention
        self.key_embedding = nn.Embedding(n_keys, d_key)
        self.to_key = nn.Linear(d_key + n_keys, d_key, bias=False)
        self.to_query = nn.Linear(d_key, d_key, bias=False)
        self.delta = getattr(attention, "rule", None) == "delta"
        self.to_beta = nn.Linear(d_key + n_keys, 1) if self.delta else None

    def forward(self, batch: Batch) -> torch.Tensor:
        """(B, S): the layer's output at the last position, read with the query key."""
        values = F.one_hot(batch.values, self.n_keys).to(self.key_embedding.weight.dtype)
        x = torch.cat([self.key_embedding(batch.keys), values], -1)
        k = self.to_key(x).unsqueeze(1)  # (B, 1, L, d_key)
        q = self.to_query(self.key_embedding(batch.query))[:, None, None].expand_as(k)
        extra = {"beta": torch.sigmoid(self.to_beta(x)).squeeze(-1).unsqueeze(1)} if self.delta else {}
        out = self.attention(q, k, values.unsqueeze(1), causal=True, **extra)
        return out[:, 0, -1]


def retrieval_loss(readout: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """0.5 · squared error against the target's one-hot vector, summed, averaged over rows."""
    return 0.5 * (readout - F.one_hot(target, readout.shape[-1]).to(readout.dtype)).pow(2).sum(-1).mean()


def nearest_value(readout: torch.Tensor) -> torch.Tensor:
    """Index of the nearest one-hot value vector: ‖y − e_j‖² = ‖y‖² − 2y_j + 1, so arg-max y."""
    return readout.argmax(-1)


@register_task("retrieval")
class Retrieval(Task):
    """Associative retrieval: store S key→value pairs, read one back (Schlag et al. 2021)."""

    params: ClassVar[Mapping[str, Any]] = {
        "setting": 1,
        "S": 20,
        "d_key": 64,
        "batch": 32,
        "eval_sequences": 20,
        **TRAIN_DEFAULTS,
    }
    counts: ClassVar[tuple[str, ...]] = ("S", "d_key", "eval_sequences", *TRAIN_COUNTS)

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
        seed = run_seed(case, p)
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

        result = train(model, step_loss, evaluate, TrainConfig.from_params(p))
        return {
            "setting": setting,
            "S": n_keys,
            "d_key": p["d_key"],
            **result.metrics(),
            **attention_metrics(layer),
        }
