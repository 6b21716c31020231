"""A small decoder-only language model around any registered attention variant.

Pre-norm blocks (attention, then an MLP, each added to the residual stream), tied token
embeddings, optional learned absolute positions. Plain PyTorch, in the spirit of nanoGPT.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnbench.registry import Variant


class SelfAttention(nn.Module):
    """Projections to q, k, v and back around one variant (B, N, d_model) -> (B, N, d_model)."""

    def __init__(self, attention: Variant, d_model: int) -> None:
        super().__init__()
        self.attention = attention
        self.heads = attention.heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        y = self.attention(q, k, v, causal=True)
        return self.out(y.transpose(1, 2).reshape(batch, length, width))


class Block(nn.Module):
    def __init__(self, attention: Variant, d_model: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.mix = SelfAttention(attention, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, mlp_ratio * d_model), nn.GELU(), nn.Linear(mlp_ratio * d_model, d_model)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mix(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DecoderLM(nn.Module):
    """`make_attention()` builds each layer's variant (heads and d_head already chosen)."""

    def __init__(
        self,
        make_attention,
        *,
        vocab: int,
        d_model: int,
        layers: int,
        max_len: int | None = None,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.positions = nn.Embedding(max_len, d_model) if max_len else None
        self.blocks = nn.ModuleList(Block(make_attention(), d_model) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        nn.init.normal_(self.embed.weight, std=0.02)
        if self.positions is not None:
            nn.init.normal_(self.positions.weight, std=0.02)

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N) token ids -> (B, N, d_model) final hidden states."""
        x = self.embed(tokens)
        if self.positions is not None:
            x = x + self.positions(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Tied output head: hidden states -> logits over the vocabulary."""
        return F.linear(hidden, self.embed.weight)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.logits(self.hidden(tokens))
