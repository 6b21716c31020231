"""Shared memory of the chunk kernels: what a configuration needs, what a device offers, and
the largest tiles that fit. Needs no Triton, so a variant's `check` can use it anywhere.

A `tl.dot` stages its operands through shared memory, and the Triton compiler keeps each
loop-carried load in `stages` buffers; the memory S and the key sum z are in global scratch,
not on chip. So what a kernel needs is a sum of tiles, none of which grows with F or D:
`shared_bytes` counts them (fp32, 4 bytes a number) for the scan and, for the delta rule,
the UT kernel, and `scripts/shared_memory.py` compiles every registered configuration for sm_90
without a GPU and checks the count bounds what Triton allocates.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from attnbench.errors import Unsupported

H100_SHARED = 227 * 1024  # an H100/H200 block's opt-in shared memory (232,448 bytes)
FP32 = 4


@dataclass(frozen=True)
class Tiles:
    """One launch configuration of the chunk kernels: C, BK, BV, dot precision, warps, stages."""

    chunk: int
    block_k: int
    block_v: int
    precision: str = "ieee"
    warps: int = 4
    stages: int = 2


def _pow2(x: int, lo: int = 16, hi: int = 64) -> int:
    return max(lo, min(hi, 1 << max(0, x - 1).bit_length()))


def scan_bytes(t: Tiles, *, delta: bool) -> int:
    """`_chunk_scan_kernel`: per F tile, Q, K (and the delta rule's W) C×BK and the memory tile
    BK×BV, each in `stages` buffers; per chunk, the scores C×C and the writes X C×BV, and the
    transposed K (C×BK) with X for S += Kᵀ X."""
    c, bk, bv = t.chunk, t.block_k, t.block_v
    per_tile = (2 + delta) * c * bk + bk * bv
    return FP32 * (t.stages * per_tile + c * c + 2 * c * bv + c * bk)


def ut_bytes(t: Tiles) -> int:
    """`_ut_kernel`: K C×BK twice (K and βK) for A, then T C×C with one C×BK or C×BV tile."""
    c, bk, bv = t.chunk, t.block_k, t.block_v
    return FP32 * (t.stages * 2 * c * bk + c * c + c * max(bk, bv))


def shared_bytes(t: Tiles, *, delta: bool) -> int:
    """The most shared memory one program of the configuration's kernels needs, in bytes."""
    return max(scan_bytes(t, delta=delta), ut_bytes(t) if delta else 0)


def device_shared(device=None) -> int:
    """Shared memory a block may use on `device` (CUDA), else the H100/H200 figure: the kernels
    are tiled for it under Triton's interpreter too."""
    import torch

    if device is None or torch.device(device).type != "cuda":
        return H100_SHARED
    props = torch.cuda.get_device_properties(device)
    optin = getattr(props, "shared_memory_per_block_optin", None)
    if optin:
        return int(optin)
    from triton.runtime import driver

    return int(driver.active.utils.get_device_properties(torch.device(device).index or 0)["max_shared_mem"])


def choose_tiles(
    features: int, values: int, chunk: int, *, delta: bool, precision: str = "ieee", device=None
) -> Tiles:
    """The largest tiles (BK, BV ≤ 64) whose shared memory fits the device: BV shrinks first,
    then BK, down to 16 (the smallest `tl.dot` operand), then the loads' double buffering."""
    limit = device_shared(device)
    tiles = Tiles(chunk, _pow2(features), _pow2(values), precision)
    while shared_bytes(tiles, delta=delta) > limit:
        if tiles.block_v > 16:
            tiles = replace(tiles, block_v=tiles.block_v // 2)
        elif tiles.block_k > 16:
            tiles = replace(tiles, block_k=tiles.block_k // 2)
        elif tiles.stages > 1:
            tiles = replace(tiles, stages=1)
        else:
            need = shared_bytes(tiles, delta=delta) // 1024
            raise Unsupported(
                f"chunk {chunk} needs {need} KiB of shared memory, the device has {limit // 1024}"
            )
    return tiles
