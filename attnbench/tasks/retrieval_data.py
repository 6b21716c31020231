"""The associative retrieval task's data and model (the task is `attnbench.tasks.retrieval`):
sequences of key→value pairs with a query, and one attention layer between learned
projections that must read the query's value back."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attnbench.registry import Variant

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
    setting: int,
    n_keys: int,
    batch: int,
    gen: torch.Generator,
    *,
    length: int | None = None,
    values_replace: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) keys and values, L = `length` (default: the setting's). Setting 1: each key once
    (L = S); setting 2: keys with replacement. Values with replacement, or (`values_replace`
    False) distinct within a sequence, which needs L ≤ S: a permutation when L = S."""
    length = length or sequence_length(setting, n_keys)
    if setting == 1:
        keys = torch.rand(batch, n_keys, generator=gen).argsort(-1)[:, :length]  # each key at most once
    else:
        keys = torch.randint(n_keys, (batch, length), generator=gen)
    if values_replace:
        values = torch.randint(n_keys, (batch, length), generator=gen)
    elif length <= n_keys:
        values = torch.rand(batch, n_keys, generator=gen).argsort(-1)[:, :length]
    else:
        raise ValueError(f"{length} values cannot be distinct among {n_keys}")
    return keys, values


def key_counts(keys: torch.Tensor, n_keys: int) -> torch.Tensor:
    """(B, S): how often each key occurs in each sequence."""
    return torch.zeros(keys.shape[0], n_keys).scatter_add_(1, keys, torch.ones(keys.shape))


def sample_batch(
    setting: int,
    n_keys: int,
    batch: int,
    gen: torch.Generator,
    *,
    values_replace: bool = True,
    query_by: str = "key",
) -> Batch:
    """`batch` sequences, each with one query: a key drawn uniformly from those it holds
    (`query_by` "key"), or the key at a uniformly drawn position (`"position"`, the paper's
    code: a key that occurs twice is asked twice as often). The same in setting 1."""
    keys, values = sample_pairs(setting, n_keys, batch, gen, values_replace=values_replace)
    answers = last_values(keys, values, n_keys)
    weights = (answers >= 0).float() if query_by == "key" else key_counts(keys, n_keys)
    query = torch.multinomial(weights, 1, generator=gen).squeeze(1)
    return Batch(keys, values, query, answers.gather(1, query[:, None]).squeeze(1))


def sample_eval(
    setting: int,
    n_keys: int,
    sequences: int,
    gen: torch.Generator,
    *,
    length: int | None = None,
    values_replace: bool = True,
    max_queries: int = 0,
) -> Batch:
    """`sequences` fresh sequences, each queried on every key it holds (one row per query),
    or (`max_queries` > 0) on the first `max_queries` of them in key order, as the paper's
    code does (its get_all_queries: at most 200, the smallest key ids)."""
    keys, values = sample_pairs(setting, n_keys, sequences, gen, length=length, values_replace=values_replace)
    answers = last_values(keys, values, n_keys)
    if max_queries:
        answers = torch.where((answers >= 0).cumsum(1) <= max_queries, answers, -1)
    seq, query = (answers >= 0).nonzero(as_tuple=True)
    return Batch(keys[seq], values[seq], query, answers[seq, query])


class RetrievalModel(nn.Module):
    """Embeddings and projections around one attention layer (heads = 1, d_head = d_key).

    `d_embed`: the key embedding's size (default d_key; the paper's code: int(2.2·S));
    `bias`: biases on the key and query projections (the paper's code has them);
    `init`: "torch" (PyTorch's defaults) or "paper" (the paper's code: W_k and W_q uniform in
    ±1/√d_key for linear attention, Xavier-uniform for softmax; biases keep the default)."""

    def __init__(
        self,
        attention: Variant,
        n_keys: int,
        d_key: int,
        *,
        d_embed: int | None = None,
        bias: bool = False,
        init: str = "torch",
    ) -> None:
        super().__init__()
        d_embed = d_embed or d_key
        self.n_keys = n_keys
        self.attention = attention
        self.key_embedding = nn.Embedding(n_keys, d_embed)
        self.to_key = nn.Linear(d_embed + n_keys, d_key, bias=bias)
        self.to_query = nn.Linear(d_embed, d_key, bias=bias)
        self.delta = getattr(attention, "rule", None) == "delta"
        self.to_beta = nn.Linear(d_embed + n_keys, 1) if self.delta else None
        if init == "paper":
            for w in (self.to_key.weight, self.to_query.weight):
                if attention.family == "softmax":
                    nn.init.xavier_uniform_(w)
                else:
                    nn.init.uniform_(w, -(d_key**-0.5), d_key**-0.5)
        elif init != "torch":
            raise ValueError(f"init must be 'torch' or 'paper', not {init!r}")

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
