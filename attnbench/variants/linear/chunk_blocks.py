"""One block of the streamed chunked form (`chunked.py`): its features, its chunks' states and
writes, its denominators and its output, and the streamed forward over the blocks.

A block is L tokens of every (batch, head) row, cut into chunks of C; its tensors are chunked,
(B·H·n, C, ·) for n = L/C chunks per row, so that every product is one 3-D batched matmul.
Per chunk, with the memory S it enters with: O = Q S + tril(Q Kᵀ) X and S += Kᵀ X, where X is
what the chunk writes: V for the sum rule, U − W S for the delta rule, with
A = tril(diag(β) K Kᵀ, −1) and [U, W] = (I + A)⁻¹ diag(β) [V, K] (`forms.ut_transform`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from attnbench.variants.linear.forms import EPS, ut_transform

Map = Callable[[torch.Tensor], torch.Tensor]
BLOCK_BYTES = 8 << 20  # a block's working set on CPU: cache-resident (2 MiB L2 a core here, shared L3)
# on a GPU a block is a few kernel launches whatever its size: blocks as long as memory allows
GPU_BLOCK_BYTES = 512 << 20


@dataclass(frozen=True)
class Spec:
    """How to run the chunked form. `phi` maps raw (B, H, L, D) inputs to features (B, H, L, F),
    F = `d_dot` (None: q and k are features already), and `phi_into` (x, out) -> φ(x) the
    same without autograd, written into `out` where it can (the forward's, see
    `FeatureMap.into`; None: `phi`); `beta_of_keys` maps raw keys to β
    (B, H, L) when the delta rule's β is learned rather than given. `block` (tokens per block)
    and `segment` (tokens between the backward's checkpoints, a multiple of `block`) change no
    result; None: chosen by `plan`."""

    delta: bool
    normalize: bool
    chunk: int = 64
    phi: Map | None = None
    d_dot: int | None = None  # the size of phi's output (None: q's last dimension)
    phi_into: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    beta_of_keys: Map | None = None
    block: int | None = None
    segment: int | None = None
    # φ as the name of an elementwise map (`FeatureMap.elementwise`), sum-normalised with
    # `sum_norm`: a no-grad sum-rule forward on a CPU then runs the fused C kernel
    # (`kernels/cpu_linear.py`) rather than the stream, where the kernel can be built
    elementwise: str | None = None
    sum_norm: bool = False


def plan(
    spec: Spec, rows: int, n: int, f: int, d: int, itemsize: int, *, grad: bool, gpu: bool = False
) -> Spec:
    """Block and segment lengths for `rows` = B·H sequences of n tokens, F features, D values.

    A block holds about 3F + 3D + C + 2FD/C numbers per token and row (features, values, scores,
    chunk states, output; the delta rule's UT transform 3(F + D) + 2C more), three times that in
    the backward: as many chunks as fit BLOCK_BYTES (GPU_BLOCK_BYTES on a GPU), a power of two.
    The backward keeps the memory at every segment's start and recomputes the states of one
    segment's chunks at a time: n/S checkpoints and S/C chunk states, both F×D, balanced at
    S ≈ √(n·C)."""
    c = spec.chunk
    per_token = 3 * f + 3 * d + c + 2 * f * d // c + (3 * (f + d) + 2 * c if spec.delta else 0)
    per_token *= rows * itemsize * (3 if grad else 1)
    chunks = max(1, (GPU_BLOCK_BYTES if gpu else BLOCK_BYTES) // (per_token * c))
    block = spec.block or c * (1 << (chunks.bit_length() - 1))
    if block % c or (spec.segment or block) % block:
        raise ValueError(f"blocks of whole chunks and segments of whole blocks, not {spec}")
    if spec.segment:
        return replace(spec, block=block)
    blocks = max(1, round(math.sqrt(max(n, 1) * c) / block))
    return replace(spec, block=block, segment=block * (1 << (blocks.bit_length() - 1)))


def chunked(x: torch.Tensor, chunk: int) -> torch.Tensor:
    """(B, H, L, X) -> (B·H·L/C, C, X), or (B, H, L) -> (B·H·L/C, C), zero-padding L to C."""
    pad = -x.shape[2] % chunk
    if pad:
        x = F.pad(x, (0, pad) if x.dim() == 3 else (0, 0, 0, pad))
    return x.reshape(-1, chunk, *x.shape[3:])


def unchunked(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The inverse of `chunked` for a block shaped like `like` (B, H, L, ·): padding cut."""
    b, h, n = like.shape[:3]
    return x.reshape(b, h, -1, *x.shape[2:])[:, :, :n]


def spans(start: int, end: int, length: int) -> list[tuple[int, int]]:
    return [(s, min(s + length, end)) for s in range(start, end, length)]


def features(
    spec: Spec,
    q: torch.Tensor | None,
    k: torch.Tensor,
    beta: torch.Tensor | None,
    scratch: Scratch | None = None,
):
    """φ(q), φ(k) and β of raw block inputs (B, H, L, ·); q None: its features are not needed.
    With `scratch` (the forward: no autograd), φ is `spec.phi_into` into its buffers."""
    b = spec.beta_of_keys(k) if spec.delta and beta is None else beta
    if spec.phi is None:
        return q, k, b
    if scratch is None or spec.phi_into is None:
        return None if q is None else spec.phi(q), spec.phi(k), b
    f = spec.d_dot or k.shape[-1]
    fq = None if q is None else spec.phi_into(q, scratch.empty("fq", q, *q.shape[:-1], f))
    return fq, spec.phi_into(k, scratch.empty("fk", k, *k.shape[:-1], f)), b


class Scratch:
    """Buffers a stream reuses from block to block, one per role: a block's tensors are dead
    once the next block starts, so one block's live at a time rather than two (`linear.elu`'s
    forward peak at N = 4096, H = 8, d = 64: 13.16 → 11.79 MiB, exact bytes; its time alone
    changed within the noise, 1.01× [0.99–1.04]). Without one (`None` below) every tensor is
    new, as the backward needs where it keeps several blocks' memories."""

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}

    def empty(self, role: str, like: torch.Tensor, *shape: int) -> torch.Tensor:
        buf = self.buffers.get(role)
        if buf is None or buf.shape != shape or (buf.dtype, buf.device) != (like.dtype, like.device):
            buf = self.buffers[role] = like.new_empty(shape)
        return buf


def _empty(scratch: Scratch | None, role: str, like: torch.Tensor, *shape: int) -> torch.Tensor:
    return like.new_empty(shape) if scratch is None else scratch.empty(role, like, *shape)


def with_ones(
    v: torch.Tensor, chunk: int, *, copy: bool = True, scratch: Scratch | None = None
) -> torch.Tensor:
    """Chunked values with a column of ones, [V | 1] (B·H·n, C, D + 1): written like values,
    it makes the memory carry the key sum z = Σ φ(k) as its last column and the output carry
    the attention denominator φ(q_t)·Σ_{s≤t} φ(k_s) as its last, inside the same matmuls.
    Padded rows have zero keys and queries, so their ones add nothing. `copy` False: the
    first D columns are left for the caller to write."""
    b, h, n, d = v.shape
    out = _empty(scratch, "x", v, b, h, n + (-n % chunk), d + 1)
    if copy:
        out[:, :, :n, :d] = v
        if n % chunk:
            out[:, :, n:, :d] = 0
    out[..., d] = 1
    return out.view(-1, chunk, d + 1)


@dataclass
class Block:
    """One block's chunked tensors, (B·H·n, C, ·). `x` is what each chunk writes and `mem` the
    memory each chunk enters with, (B·H·n, F, D'); with attention normalisation both have a last
    column for the denominator (D' = D + 1, see `with_ones`). `a` and `uw` are the delta rule's
    A and [U, W]."""

    rows: int  # B·H
    d: int  # value columns (x and mem may have one more)
    q: torch.Tensor | None
    k: torch.Tensor
    v: torch.Tensor
    beta: torch.Tensor | None
    scores: torch.Tensor | None = None  # tril(Q Kᵀ)
    x: torch.Tensor | None = None
    mem: torch.Tensor | None = None
    a: torch.Tensor | None = None
    uw: torch.Tensor | None = None
    scratch: Scratch | None = None

    @property
    def per_row(self) -> int:
        return self.k.shape[0] // self.rows

    @classmethod
    def of(cls, spec: Spec, fq, fk, v, beta, scratch: Scratch | None = None) -> Block:
        """From features (B, H, L, F) (fq None: states only), values and β of one block;
        its tensors in `scratch`'s buffers when given."""
        c = spec.chunk
        q3, k3 = None if fq is None else chunked(fq, c), chunked(fk, c)
        rows, d = v.shape[0] * v.shape[1], v.shape[-1]
        if not spec.delta:
            v3 = with_ones(v, c, scratch=scratch) if spec.normalize else chunked(v, c)
            blk = cls(rows, d, q3, k3, v3, None, x=v3, scratch=scratch)
        else:
            blk = cls(rows, d, q3, k3, chunked(v, c), chunked(beta, c), scratch=scratch)
            blk.a, blk.uw = ut_transform(blk.k, blk.v, blk.beta)
            # [U − W S | 1]: its first D columns are written by run_states or set_states
            blk.x = (
                with_ones(v, c, copy=False, scratch=scratch)
                if spec.normalize
                else _empty(scratch, "x", blk.v, *blk.v.shape)
            )
        if q3 is not None:
            scores = _empty(scratch, "scores", k3, k3.shape[0], c, c)
            blk.scores = torch.bmm(q3, k3.mT, out=scores).tril_()
        return blk

    def run_states(self, state: torch.Tensor) -> torch.Tensor:
        """Fill `mem` (and the delta rule's writes `x`) from the memory `state` (B·H, F, D')
        the block enters with; returns the memory it leaves."""
        rows, n = self.rows, self.per_row
        c, f, d, dx = self.k.shape[1], self.k.shape[2], self.d, self.x.shape[2]
        mem = _empty(self.scratch, "mem", self.x, rows, n, f, dx)
        if self.uw is None:
            writes = torch.bmm(self.k.mT, self.x).view(rows, n, f, dx)
            mem[:, 0] = state
            for i in range(1, n):  # a loop of adds: torch.cumsum over this axis is ~10× slower
                torch.add(mem[:, i - 1], writes[:, i - 1], out=mem[:, i])
            self.mem = mem.view(-1, f, dx)
            return mem[:, -1] + writes[:, -1]
        uw, k4, x = self.uw.view(rows, n, c, d + f), self.k.view(rows, n, c, f), self.x.view(rows, n, c, dx)
        for i in range(n):  # the memory hand-off between chunks: two F×D products each
            mem[:, i] = state
            torch.baddbmm(uw[:, i, :, :d], uw[:, i, :, d:], state[..., :d], alpha=-1, out=x[:, i, :, :d])
            state = torch.baddbmm(state, k4[:, i].mT, x[:, i])
        self.mem = mem.view(-1, f, dx)
        return state

    def set_states(self, mem: torch.Tensor) -> None:
        """`mem` known (recomputed by the backward): the writes follow without a loop."""
        self.mem, d = mem, self.d
        if self.uw is not None:
            torch.baddbmm(self.uw[..., :d], self.uw[..., d:], mem[..., :d], alpha=-1, out=self.x[..., :d])

    def output(self) -> torch.Tensor:
        """O = Q S + tril(Q Kᵀ) X per chunk, (B·H·n, C, D'); in-place baddbmm_: 15 % faster."""
        out = _empty(self.scratch, "output", self.x, *self.x.shape)
        return torch.bmm(self.scores, self.x, out=out).baddbmm_(self.q, self.mem)


def stream(
    spec: Spec, q, k, v, beta, out: torch.Tensor, checkpoints: list | None = None
) -> torch.Tensor | None:
    """Write the chunked form's output into `out`, block by block, keeping only the memory
    between blocks; with `checkpoints`, append the memory at every segment's start and return
    the denominators (B, H, N) (None without normalisation)."""
    state, d = None, v.shape[-1]
    dens = v.new_empty(v.shape[:3]) if spec.normalize and checkpoints is not None else None
    scratch = Scratch()
    for s, e in spans(0, q.shape[2], spec.block):
        b = None if beta is None else beta[:, :, s:e]
        fq, fk, b = features(spec, q[:, :, s:e], k[:, :, s:e], b, scratch)
        blk = Block.of(spec, fq, fk, v[:, :, s:e], b, scratch)
        if state is None:
            state = v.new_zeros(blk.rows, fk.shape[-1], blk.x.shape[-1])
        if checkpoints is not None and s % spec.segment == 0:
            checkpoints.append(state)
        state = blk.run_states(state)
        o = unchunked(blk.output(), v[:, :, s:e])
        if spec.normalize:
            den = o[..., d:].add_(EPS)
            torch.div(o[..., :d], den, out=out[:, :, s:e])
            if dens is not None:
                dens[:, :, s:e] = den.squeeze(-1)
        else:
            out[:, :, s:e] = o
    return dens
