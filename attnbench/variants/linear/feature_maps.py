"""Feature maps φ: (..., d_head) -> (..., d_dot), the kernel k(q, k) ≈ φ(q)·φ(k).

Each is a module (FAVOR+ holds its random projection as a buffer, T2R its learned weights)
with `d_dot`, the size of φ's output and so of the fast-weight memory's key side, and
`nonnegative`, which attention and sum normalisation need.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class FeatureMap(nn.Module):
    nonnegative: bool = True

    def __init__(self, d_head: int) -> None:
        super().__init__()
        self.d_head = d_head

    @property
    def d_dot(self) -> int:
        return self.d_head

    @property
    def elementwise(self) -> str | None:
        """Name of an elementwise map a fused kernel can apply itself (else None)."""
        return None

    def resample(self) -> None:
        """Draw fresh random features, where the map has any and is asked to (FAVOR+'s
        `redraw`). The layer calls it once per forward, so q and k share one draw."""

    # φ(x) written into `out` (shaped like φ(x)), for maps that can; called with autograd off
    # (`LinearAttention.phi_into`) by the streamed forward, into a buffer it reuses from block
    # to block. For elu + 1 at the README's shape this took 2.4 ms a tensor against 4.2
    # through `forward` (its autograd wrapper, the layer's functional_call, a new output)
    into: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None


class Identity(FeatureMap):
    """φ(x) = x: plain (unnormalised) linear attention, the reference point."""

    nonnegative = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @property
    def elementwise(self) -> str:
        return "identity"


class EluPlusOne(FeatureMap):
    """φ(x) = elu(x) + 1 (Katharopoulos et al. 2020)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _EluPlusOne.apply(x)

    def into(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, max=0, out=out).exp_().add_(x.relu())

    @property
    def elementwise(self) -> str:
        return "elu"


class DPFP(FeatureMap):
    """Deterministic parameter-free projection (Schlag et al. 2021, eq. 34):
    r = relu([x, −x]) and φ = [r ⊙ roll(r, 1), …, r ⊙ roll(r, ν)], so d_dot = 2·d·ν."""

    def __init__(self, d_head: int, nu: int) -> None:
        super().__init__(d_head)
        if nu < 1:
            raise ValueError(f"DPFP needs nu >= 1, got {nu}")
        self.nu = nu

    @property
    def d_dot(self) -> int:
        return 2 * self.d_head * self.nu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = F.relu(torch.cat([x, -x], dim=-1))
        return torch.cat([r * r.roll(j, dims=-1) for j in range(1, self.nu + 1)], dim=-1)

    def into(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        r = F.relu(torch.cat([x, -x], dim=-1))
        for j, part in enumerate(out.split(r.shape[-1], dim=-1), start=1):
            torch.mul(r, r.roll(j, dims=-1), out=part)
        return out


REDRAWS = (False, True, "always")  # Favor's `redraw`: never, every training forward, every forward
KERNELS = ("softmax", "exp")  # the kernel Favor estimates: exp(q·k/√d), or exp(q·k)


class Favor(FeatureMap):
    """FAVOR+ positive random features (Choromanski et al. 2021), in the ± ("hyperbolic") form
    the fast-weight paper uses: φ(x) = exp(−‖x‖²/2) / √(2m) · [exp(Wx), exp(−Wx)], so
    d_dot = 2m. With `kernel` "softmax" x is first scaled by d^(−1/4), so φ(q)·φ(k) estimates
    softmax attention's exp(q·k/√d); with "exp" it is not, and estimates exp(q·k), as the
    fast-weight paper's code does (its `prime` has no scaling; with learned projections the
    two differ only in the scale the projections start from).

    W's m rows are drawn in blocks of d orthogonal Gaussian directions with χ_d-distributed
    norms. `redraw`: False (default) keeps W fixed, so a benchmark measures one function;
    True draws a fresh W on every training-mode forward of the layer (`resample`), shared by
    its queries and keys; "always" on every forward, evaluation included, as the paper's code
    (which draws Ω inside forward). `seed` seeds W's generator; None draws it from torch's
    global generator, so a seeded training run has features of its own and gets them again.
    """

    def __init__(
        self,
        d_head: int,
        m: int,
        redraw: bool | str = False,
        seed: int | None = None,
        kernel: str = "softmax",
    ) -> None:
        super().__init__(d_head)
        if redraw not in REDRAWS or kernel not in KERNELS:
            raise ValueError(
                f"Favor: redraw in {REDRAWS} and kernel in {KERNELS}, not {redraw!r}, {kernel!r}"
            )
        self.m, self.redraw, self.kernel = m, redraw, kernel
        if seed is None:
            seed = int(torch.randint(2**62, (1,)))
        self._gen = torch.Generator().manual_seed(seed)
        self.register_buffer("proj", self.draw(), persistent=True)

    @property
    def d_dot(self) -> int:
        return 2 * self.m

    def draw(self) -> torch.Tensor:
        d, blocks = self.d_head, []
        for _ in range(math.ceil(self.m / d)):
            q, _ = torch.linalg.qr(torch.randn(d, d, generator=self._gen, dtype=torch.float64))
            blocks.append(q.T)
        w = torch.cat(blocks)[: self.m]
        norms = torch.randn(self.m, d, generator=self._gen, dtype=torch.float64).norm(dim=-1)
        return (w * norms[:, None]).float()

    def resample(self) -> None:
        if self.redraw == "always" or (self.redraw and self.training):
            self.proj = self.draw().to(self.proj)

    def exponents(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Wx and the shared −‖x‖²/2 − log(2m)/2: φ(x) = [exp(Wx + base), exp(base − Wx)]."""
        if self.kernel == "softmax":
            x = x * self.d_head**-0.25
        wx = x @ self.proj.to(x.dtype).T
        return wx, -0.5 * (x * x).sum(-1, keepdim=True) - 0.5 * math.log(2 * self.m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wx, base = self.exponents(x)
        return torch.cat([torch.exp(wx + base), torch.exp(base - wx)], dim=-1)

    def into(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        wx, base = self.exponents(x)
        plus, minus = out.split(self.m, dim=-1)
        torch.add(wx, base, out=plus).exp_()
        torch.sub(base, wx, out=minus).exp_()
        return out


class T2R(FeatureMap):
    """φ(x) = relu(W_h x + b_h) with k learned features, W and b per head and shared by queries
    and keys (Kasai et al. 2021, "T2R"). x is (B, H, N, D), or (B, H, D) for one token."""

    def __init__(self, d_head: int, k: int, heads: int = 1) -> None:
        super().__init__(d_head)
        self.k = k
        self.weight = nn.Parameter(torch.randn(heads, k, d_head) * d_head**-0.5)
        self.bias = nn.Parameter(torch.empty(heads, k).uniform_(0.0, 0.1))

    @property
    def d_dot(self) -> int:
        return self.k

    def _weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        heads = x.shape[1]
        return self.weight.to(x.dtype).expand(heads, -1, -1), self.bias.to(x.dtype).expand(heads, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self._weights(x)
        if x.dim() == 3:  # one token per sequence
            return F.relu(torch.einsum("bhd,hkd->bhk", x, w) + b)
        return F.relu(torch.matmul(x, w.mT) + b[:, None, :])  # the same products as `into`

    def into(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        w, b = self._weights(x)
        return torch.matmul(x, w.mT, out=out).add_(b[:, None, :]).relu_()


class _EluPlusOne(torch.autograd.Function):
    """elu(x) + 1 as exp(min(x, 0)) + max(x, 0): aten's elu ran ~2.4 ns an element on this CPU,
    exp 0.15 ns. The backward reads only the output y (dy/dx = 1 where x > 0, else y = eˣ),
    so autograd keeps nothing beside the features themselves."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clamp(max=0).exp_().add_(x.clamp(min=0))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return grad * y.clamp(max=1)  # y ≤ 1 exactly where x ≤ 0
