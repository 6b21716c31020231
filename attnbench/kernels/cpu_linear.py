"""Causal chunked linear attention, sum rule, forward, on a CPU: the fused C kernel
(`cpu/linear_chunk.c`, built by `native.py`) for elementwise feature maps.

It computes what the eager chunked form (`variants/linear/chunk_blocks.py`) computes with the
same chunk, in one pass over each chunk: φ, the masked chunk scores, the memory read, the
normalisation and the output, with the products on torch's own BLAS. Rows (batch × head) are
split across torch's intra-op threads; each thread's scratch is a torch tensor, so memory
measurement counts it.
"""

from __future__ import annotations

import ctypes
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from attnbench.kernels import native

MAPS = {"identity": 0, "elu": 1}
EPS = 1e-6  # as forms.EPS
PROFILE_NAME = "attnbench::cpu_linear_chunk_sum"  # the kernel's range in torch.profiler traces
_TYPES = {torch.float32: ("f32", ctypes.c_float), torch.float64: ("f64", ctypes.c_double)}
_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}


def supports(elementwise: str | None, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether the kernel can run these inputs (q, k (B, H, N, F), v (B, H, N, D))."""
    return (
        elementwise in MAPS
        and all(t.device.type == "cpu" and t.dtype == v.dtype and t.dim() == 4 for t in (q, k))
        and v.dtype in _TYPES
        and q.shape == k.shape
        and q.shape[:3] == v.shape[:3]
    )


def scratch_floats(lib: ctypes.CDLL, f: int, d: int, chunk: int) -> int:
    """Numbers of scratch one thread needs for F features, D values and chunks of `chunk`."""
    lib.scratch_floats.argtypes = [ctypes.c_long] * 3
    lib.scratch_floats.restype = ctypes.c_long
    return lib.scratch_floats(f, d, chunk)


def _kernel(lib: ctypes.CDLL, dtype: torch.dtype):
    suffix, real = _TYPES[dtype]
    fn = getattr(lib, f"chunk_sum_forward_{suffix}")
    if fn.argtypes is None:
        fn.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_long] * 3 + [ctypes.c_int] * 6 + [real]
        # what a backward reads: checkpoints, segment, rows, denominators
        fn.argtypes += [ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_void_p]
        fn.restype = ctypes.c_int
    return fn


def _pool(threads: int) -> ThreadPoolExecutor:
    key = (os.getpid(), threads)  # a pool's threads do not survive a fork
    if key not in _pools:
        _pools[key] = ThreadPoolExecutor(threads, thread_name_prefix="attnbench-cpu-kernel")
    return _pools[key]


def forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    elementwise: str,
    sum_norm: bool,
    attn_norm: bool,
    chunk: int,
    lib: ctypes.CDLL | None = None,
) -> torch.Tensor:
    """The causal sum rule's output for raw q, k (B, H, N, F) and v (B, H, N, D): φ =
    `elementwise` (then sum-normalised with `sum_norm`), divided by φ(q)·Σφ(k) + EPS with
    `attn_norm`. Raises `native.Unavailable` where the kernel cannot be built."""
    kw = dict(elementwise=elementwise, sum_norm=sum_norm, attn_norm=attn_norm, chunk=chunk)
    return _run(q, k, v, **kw, segment=None, lib=lib)[0]


def forward_for_backward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, segment: int, **kw: Any
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
    """`forward` (the same keywords), also returning what the streamed form's backward reads
    (`variants/linear/chunk_backward.py`): the memory at every `segment` tokens' start,
    (B·H, F, D) each, with the key sum as a last column under attention normalisation, and the
    denominators (B, H, N) (None without it)."""
    out, checkpoints, dens = _run(q, k, v, **kw, segment=segment, lib=None)
    return out, list(checkpoints.unbind(0)), dens


def _run(q, k, v, *, elementwise, sum_norm, attn_norm, chunk, segment, lib):
    lib = lib or native.library()
    fn = _kernel(lib, v.dtype)
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    b, h, n, f = q.shape
    d, rows = v.shape[-1], b * h
    out = v.new_empty(v.shape)
    keep = segment is not None
    checkpoints = v.new_empty(-(-n // segment) if keep else 0, rows, f, d + attn_norm)
    dens = v.new_empty(b, h, n) if keep and attn_norm else None
    if out.numel() == 0:
        return out, checkpoints.zero_(), dens
    threads = max(1, min(torch.get_num_threads(), rows))
    scratch = v.new_empty(threads, scratch_floats(lib, f, d, chunk))
    spans = [(i * rows // threads, (i + 1) * rows // threads) for i in range(threads)]
    args = (MAPS[elementwise], int(sum_norm), int(attn_norm), EPS)
    kept = (
        checkpoints.data_ptr() if keep else None,
        segment or 0,
        rows,
        None if dens is None else dens.data_ptr(),
    )
    call = lambda i: fn(
        q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), scratch[i].data_ptr(),
        *spans[i], n, f, d, chunk, *args, *kept,
    )  # fmt: skip
    with torch.profiler.record_function(PROFILE_NAME):  # one named range in `attnbench profile`
        codes = [call(0)] if threads == 1 else list(_pool(threads).map(call, range(threads)))
    if any(codes):
        raise ValueError(f"the CPU kernel cannot take chunk {chunk} with {f} features")
    return out, checkpoints, dens


def reference(q, k, v, *, elementwise: str, sum_norm: bool, attn_norm: bool) -> torch.Tensor:
    """The same output by the layer's masked quadratic form (`forms.parallel`, the self-check's):
    a kernel that disagrees with the layer's arithmetic, EPS included, fails the check."""
    from attnbench.variants.linear import forms  # here: the variants import this module

    phi = {"identity": lambda x: x, "elu": lambda x: torch.nn.functional.elu(x) + 1}[elementwise]
    fq, fk = phi(q), phi(k)
    if sum_norm:
        fq, fk = forms.sum_normalised(fq), forms.sum_normalised(fk)
    return forms.parallel(fq, fk, v, normalize=attn_norm)


def self_check(path: str) -> None:
    """Run by `native` in a fresh process on a new build: raises if the library disagrees
    with `reference` in float64 (a crash fails the check too)."""
    lib = ctypes.CDLL(path)
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 37, 5, dtype=torch.float64, generator=gen) for _ in range(3))
    for elementwise, sum_norm, attn_norm in (
        ("elu", False, True),
        ("elu", True, False),
        ("identity", False, False),
    ):
        kw = dict(elementwise=elementwise, sum_norm=sum_norm, attn_norm=attn_norm)
        got = forward(q, k, v, chunk=8, lib=lib, **kw)
        err = (got - reference(q, k, v, **kw)).abs().max().item()
        if not err < 1e-10:
            raise AssertionError(
                f"{elementwise} (sum_norm={sum_norm}, attn_norm={attn_norm}): error {err:.3g}"
            )
