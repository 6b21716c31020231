"""What every exact-softmax implementation shares: its oracle, its FLOP count, and the
positional scheme (`position` parameter, see `attnbench.positions`) applied around its
kernel: embeddings added to q and k, RoPE rotating them, or a score bias handed to `attend`."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from attnbench import positions
from attnbench.cases import Case, Shape
from attnbench.registry import Variant
from attnbench.variants.decode_state import KVCache


class SoftmaxAttention(Variant):
    family: ClassVar[str] = "softmax"
    reference: ClassVar[str] = "softmax"
    flops_formula: ClassVar[str] = "4·B·H·N²·D; causal ½; fwd+bwd 3×"
    params: ClassVar[Mapping[str, Any]] = {"position": "none"}
    param_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = {"position": tuple(positions.SCHEMES)}
    decode_state: ClassVar[str] = "cache"
    takes_bias: ClassVar[bool] = False  # its `attend` can add a score bias (bias schemes)
    bias_as_tensor: ClassVar[bool] = True  # False: `attend` applies the scheme itself (score_mod)

    max_len: ClassVar[int] = 4096  # the learned absolute table's length
    max_relative: ClassVar[int] = 64  # Shaw et al.'s clipping distance R

    def __init__(self, *, heads: int, d_head: int, **params: Any) -> None:
        super().__init__(heads=heads, d_head=d_head, **params)
        self.position = self.hparams["position"]
        self.scheme = positions.SCHEMES[self.position]
        if self.position == "learned":
            self.learned = positions.LearnedAbsolute(self.max_len, d_head)
        elif self.position == "t5":
            self.t5 = positions.T5Bias(heads)
        elif self.position == "relative":
            self.shaw = positions.ShawRelative(d_head, self.max_relative)

    @classmethod
    def flops(cls, shape: Shape, *, causal: bool, mode: str, params: Mapping[str, Any]) -> int:
        """Matmul FLOPs of softmax(QKᵀ)V: 2·N·N·D for QKᵀ and again for PV, per batch and head.

        Causal counts half (the useful work, as FlashAttention's benchmarks do). fwd+bwd is
        3× fwd: the backward's four matmuls (dV, dP, dQ, dK) without recomputation, so every
        implementation is credited the same work whatever it recomputes. Positional schemes
        are not counted (their cost shows in the time).
        """
        fwd = 4 * shape.batch * shape.heads * shape.seq_len * shape.seq_len * shape.d_head
        if causal:
            fwd //= 2
        return fwd if mode == "fwd" else 3 * fwd

    def check(self, case: Case) -> None:
        super().check(case)
        positions.check_pairing(self.position, family=self.family, takes_bias=self.takes_bias)
        if self.position == "learned":
            self.learned.check(case.seq_len)

    # --- the positional scheme around the kernel -------------------------------------------------
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False):
        q, k = self.place(q, k)
        bias = None
        if self.scheme.applies == "bias" and self.bias_as_tensor:
            bias = self.score_bias(q, k.shape[-2])
        return self.attend(q, k, v, causal=causal, bias=bias)

    def place(self, q: torch.Tensor, k: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply an embedding or rotation scheme to q and k: the keys sit at positions
        offset … offset + n_k − 1 and the queries are the last n_q of them."""
        n_q, n_k = q.shape[-2], k.shape[-2]
        if self.position == "rope":
            pos = torch.arange(offset, offset + n_k, device=q.device)
            return positions.rope(q, pos[n_k - n_q :]), positions.rope(k, pos)
        if self.scheme.applies == "embedding":
            if self.position == "sinusoidal":
                table = positions.sinusoidal(n_k, q.shape[-1], start=offset).to(q)
            else:
                table = self.learned(offset + n_k)[offset:].to(q.dtype)
            return q + table[n_k - n_q :], k + table
        return q, k

    def score_bias(
        self,
        q: torch.Tensor,
        n_k: int,
        q_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The scheme's additive score term, (H, n_q, n_k) or (B, H, n_q, n_k), for queries at
        `q_pos` (default: the last n_q of the keys)."""
        n_q = q.shape[-2]
        if self.position == "alibi":
            return positions.alibi_bias(self.heads, n_q, n_k, device=q.device, q_pos=q_pos).to(q.dtype)
        if self.position == "t5":
            return self.t5(n_q, n_k, q_pos).to(q.dtype)
        return self.shaw(q, n_k, q_pos)

    def attend(self, q, k, v, *, causal: bool, bias: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    # --- decoding with a KV cache ------------------------------------------------------------------
    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> KVCache:
        return KVCache(batch, self.heads, self.d_head, device=device, dtype=dtype)

    def step(self, state: KVCache, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """Place the token at position `state.length`, append its key and value, and read the
        whole cache through this path's own `attend` (one query, no mask needed)."""
        return self.extend(state, q[:, :, None], k[:, :, None], v[:, :, None])[0][:, :, 0], state

    def prefill(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, KVCache]:
        state = self.init_state(q.shape[0], q.device, q.dtype)
        return self.extend(state, q, k, v)

    def extend(self, state: KVCache, q, k, v) -> tuple[torch.Tensor, KVCache]:
        """t new tokens (B, H, t, D) after the cached ones: their causal output. Several tokens
        at once (a prompt) only into an empty cache, where causal masking is the plain one."""
        start, t = state.length, q.shape[-2]
        if t > 1 and start:
            raise ValueError("several tokens at once only into an empty cache")
        q, k = self.place(q, k, offset=start)
        state.append(k, v)
        bias = None
        if self.scheme.applies == "bias":
            bias = self.score_bias(q, state.length, q_pos=torch.arange(start, start + t, device=q.device))
        return self.attend(q, state.keys(), state.values(), causal=t > 1, bias=bias), state

    def oracle_kwargs(self) -> dict[str, Any]:
        """The float64 oracle applies the same scheme through a float64 twin of this variant."""
        if self.position == "none":
            return {}
        twin = self.oracle_twin()

        def prepare(q64: torch.Tensor, k64: torch.Tensor):
            q64, k64 = twin.place(q64, k64)
            if self.scheme.applies != "bias":
                return q64, k64, None
            n_k = k64.shape[-2]
            return q64, k64, lambda rows: twin.score_bias(q64[..., rows, :], n_k, q_pos=rows)

        return {"prepare": prepare}


def missing_package(module: str, pip_name: str) -> str | None:
    """A reason string when `module` cannot be imported here, else None (no import done)."""
    if importlib.util.find_spec(module) is None:
        return f"package {pip_name} not installed (pip install {pip_name})"
    return None
