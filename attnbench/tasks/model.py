"""A small decoder-only language model around any registered attention variant.

Pre-norm blocks (attention, then an MLP, each added to the residual stream), tied token
embeddings, and an optional absolute positional scheme added to the token embeddings
(sinusoidal, or a learned table of `max_len` positions, past which the model is `Unsupported`).
For MQAR as Zoology's Figure 2 ran it, a block can drop its MLP (`mlp_ratio = 0`) and put a
short causal convolution before the attention (`short_conv` taps; see `ShortConv`).
Schemes that act inside attention (RoPE, score biases) belong to the variant. Plain PyTorch,
in the spirit of nanoGPT.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attnbench import positions
from attnbench.cases import Case
from attnbench.errors import Unsupported, UserError
from attnbench.registry import Variant
from attnbench.tasks import Task, case_shape

INPUT_SCHEMES = ("none", "sinusoidal", "learned")  # the schemes added to the token embeddings


class DecoderTask(Task):
    """A task whose model is a DecoderLM: `d_model`, `heads`, `seq_len` and `batch` parameters
    set the case's shape."""

    @classmethod
    def resolve_params(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        p = super().resolve_params(given)
        if p["d_model"] % p["heads"]:
            raise UserError(f"task {cls.name}: d_model {p['d_model']} is not divisible by heads {p['heads']}")
        return p

    @classmethod
    def shape(cls, params: Mapping[str, Any]) -> dict[str, int]:
        p = cls.resolve_params(params)
        return case_shape(p["batch"], p["heads"], p["seq_len"], p["d_model"] // p["heads"])


def attention_builder(
    variant: type[Variant], case: Case, p: Mapping[str, Any], params: Mapping[str, Any] | None = None
) -> Callable[[], Variant]:
    """Builds one layer's variant for the task parameters `p` (its heads and width) with the
    case's variant parameters (or `params`), checked against the case."""

    def build() -> Variant:
        given = case.param_dict if params is None else params
        layer = variant(heads=p["heads"], d_head=p["d_model"] // p["heads"], **given)
        layer.check(case)
        return layer

    return build


class ShortConv(nn.Module):
    """A causal depthwise convolution of `taps` positions, added to its input: each channel
    mixes the current token with the `taps − 1` before it. Zoology's BaseConv and Based, H3's
    shift SSM and Mamba put one before the sequence mixer: it hands a key to the token after
    it, so a fixed-state mixer can write key→value pairs without first learning a
    previous-token head (on CPU MQAR, without it no linear-attention model learned even
    L = 64, D = 4 in 3000 steps)."""

    def __init__(self, d_model: int, taps: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(d_model, d_model, taps, groups=d_model, padding=taps - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, d_model) -> (B, N, d_model); position t sees t − taps + 1 … t."""
        return x + self.conv(x.transpose(1, 2))[..., : x.shape[1]].transpose(1, 2)


class SelfAttention(nn.Module):
    """Projections to q, k, v and back around one variant (B, N, d_model) -> (B, N, d_model),
    with an optional `ShortConv` of `short_conv` taps before them (0: none)."""

    def __init__(self, attention: Variant, d_model: int, short_conv: int = 0) -> None:
        super().__init__()
        self.attention = attention
        self.heads = attention.heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.conv = ShortConv(d_model, short_conv) if short_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        if self.conv is not None:
            x = self.conv(x)
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        y = self.attention(q, k, v, causal=True)
        return self.out(y.transpose(1, 2).reshape(batch, length, width))

    def step(self, state, x: torch.Tensor):
        """One token per sequence, (B, d_model), through the variant's decoding form."""
        if self.conv is not None:
            raise Unsupported("decoding with a short convolution needs its last inputs as state: not written")
        batch, width = x.shape
        q, k, v = self.qkv(x).view(batch, 3, self.heads, width // self.heads).unbind(1)
        y, state = self.attention.step(state, q, k, v)
        return self.out(y.reshape(batch, width)), state


class Block(nn.Module):
    """Pre-norm attention, then (`mlp_ratio` > 0) a pre-norm MLP of that many times the width."""

    def __init__(self, attention: Variant, d_model: int, mlp_ratio: int = 4, short_conv: int = 0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.mix = SelfAttention(attention, d_model, short_conv)
        self.mlp = None
        if mlp_ratio:
            self.norm2 = nn.LayerNorm(d_model)
            hidden = mlp_ratio * d_model
            self.mlp = nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(), nn.Linear(hidden, d_model))

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.mlp is None else x + self.mlp(self.norm2(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feed_forward(x + self.mix(self.norm1(x)))

    def step(self, state, x: torch.Tensor):
        y, state = self.mix.step(state, self.norm1(x))
        return self.feed_forward(x + y), state


class DecoderLM(nn.Module):
    """`make_attention()` builds each layer's variant (heads and d_head already chosen);
    `position` is the input scheme (INPUT_SCHEMES), `max_len` the learned table's length;
    `mlp_ratio` and `short_conv` shape each block (`Block`, `ShortConv`)."""

    def __init__(
        self,
        make_attention,
        *,
        vocab: int,
        d_model: int,
        layers: int,
        position: str = "none",
        max_len: int | None = None,
        scale_embeddings: bool = False,
        mlp_ratio: int = 4,
        short_conv: int = 0,
    ) -> None:
        super().__init__()
        if position not in INPUT_SCHEMES:
            raise UserError(f"input positions must be one of {', '.join(INPUT_SCHEMES)}, not {position!r}")
        if position == "learned" and not max_len:
            raise UserError("learned positions need max_len, the length of their table")
        self.position, self.max_len = position, max_len
        # √d_model on the token embeddings (Vaswani et al.; fairseq's LMs, which the ALiBi paper
        # used): tokens and sinusoids then have comparable scale at the input
        self.embed_scale = d_model**0.5 if scale_embeddings else 1.0
        self.embed = nn.Embedding(vocab, d_model)
        self.positions = nn.Embedding(max_len, d_model) if position == "learned" else None
        self.blocks = nn.ModuleList(
            Block(make_attention(), d_model, mlp_ratio, short_conv) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(d_model)
        nn.init.normal_(self.embed.weight, std=0.02)
        if self.positions is not None:
            nn.init.normal_(self.positions.weight, std=0.02)

    @property
    def attention_layers(self) -> list[Variant]:
        return [block.mix.attention for block in self.blocks]

    def check(self, length: int) -> None:
        """Unsupported when the input scheme cannot place `length` positions."""
        if self.position == "learned" and length > self.max_len:
            raise Unsupported(f"learned positions end at {self.max_len}; cannot embed {length}")

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N) token ids -> (B, N, d_model) final hidden states."""
        length = tokens.shape[1]
        self.check(length)
        x = self.embed(tokens) * self.embed_scale
        if self.positions is not None:
            x = x + self.positions(torch.arange(length, device=tokens.device))
        elif self.position == "sinusoidal":
            x = x + positions.sinusoidal(length, x.shape[-1]).to(x)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def init_state(self, batch: int) -> list:
        """Each layer's decoding state (a KV cache, a fast-weight memory, …), empty."""
        weight = self.embed.weight
        return [b.mix.attention.init_state(batch, weight.device, weight.dtype) for b in self.blocks]

    def step(self, states: list, tokens: torch.Tensor, position: int) -> tuple[torch.Tensor, list]:
        """Generate-time forward of one token per sequence, (B,) ids at `position`: the next
        token's logits (B, vocab) and the layers' states after it."""
        self.check(position + 1)
        x = self.embed(tokens) * self.embed_scale
        if self.positions is not None:
            x = x + self.positions.weight[position]
        elif self.position == "sinusoidal":
            x = x + positions.sinusoidal(1, x.shape[-1], start=position)[0].to(x)
        new = []
        for block, state in zip(self.blocks, states, strict=True):
            x, state = block.step(state, x)
            new.append(state)
        return self.logits(self.norm(x)), new

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Tied output head: hidden states -> logits over the vocabulary."""
        return F.linear(hidden, self.embed.weight)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.logits(self.hidden(tokens))
