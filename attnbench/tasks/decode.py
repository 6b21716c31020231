"""Decoding cost: one attention layer generating token by token after a prompt.

A variant with a decoding form (`decode_state`: a KV cache, a ring buffer, a segment memory
or a constant-size recurrent state) takes a prompt of P tokens through `prefill`, then T
steps of one token per sequence through `step`. Each step is timed alone (the device
synchronised around it); at output lengths 64, 128, … T the task records the median time per
token over the steps just before (the last eighth, at least 8), tokens/s (batch / time per
token) and the exact bytes the state holds and occupies. Softmax's cache grows with every
token and its step reads all of it; a recurrent state's step costs the same at every length.
Inputs are a pool of 64 seeded random tokens, cycled (values do not change the cost).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from attnbench.cases import Case
from attnbench.errors import UserError
from attnbench.inputs import case_seed, randn, torch_dtype
from attnbench.registry import Variant
from attnbench.tasks import Task, case_shape, register_task
from attnbench.variants.decode_state import allocated_bytes, state_bytes

POOL = 64  # distinct random tokens, cycled through the steps


def checkpoints(output: int, first: int = 64) -> list[int]:
    """64, 128, … up to `output`, and `output` itself."""
    points = [n for n in (first << k for k in range(output.bit_length())) if n <= output]
    return points + ([output] if not points or points[-1] != output else [])


@register_task("decode")
class Decode(Task):
    """Time per generated token and state bytes against output length, after a prompt."""

    mode: ClassVar[str] = "decode"
    params: ClassVar[Mapping[str, Any]] = {
        "prompt": 128,  # P: tokens through prefill
        "output": 4096,  # T: tokens generated one at a time
        "batch": 1,
        "heads": 8,
        "d_head": 64,
    }
    counts: ClassVar[tuple[str, ...]] = ("prompt", "output", "batch", "heads", "d_head")

    @classmethod
    def resolve_params(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        p = super().resolve_params(given)
        if p["output"] < 8:
            raise UserError(f"task decode: output must be at least 8 tokens, not {p['output']}")
        return p

    @classmethod
    def shape(cls, params: Mapping[str, Any]) -> dict[str, int]:
        p = cls.resolve_params(params)
        return case_shape(p["batch"], p["heads"], p["prompt"] + p["output"], p["d_head"])

    @classmethod
    def run(cls, variant: type[Variant], case: Case, params: dict[str, Any]) -> dict[str, Any]:
        p = params
        seed = case_seed(case)
        torch.manual_seed(seed)
        layer = variant(heads=p["heads"], d_head=p["d_head"], **case.param_dict)
        layer.check(case)
        dtype = torch_dtype(case.dtype)
        layer = layer.to(device=case.device, dtype=dtype).eval()
        shape = (p["batch"], p["heads"], p["prompt"], p["d_head"])
        prompt = [randn(shape, dtype=dtype, device=case.device, seed=seed + i) for i in range(3)]
        token_shape = (POOL, p["batch"], p["heads"], p["d_head"])
        pool = [randn(token_shape, dtype=dtype, device=case.device, seed=seed + 3 + i) for i in range(3)]
        sync = torch.cuda.synchronize if case.device == "cuda" else (lambda: None)
        with torch.no_grad():
            sync()
            start = time.perf_counter()
            _, state = layer.prefill(*prompt)
            sync()
            prefill_s = time.perf_counter() - start
            times, points = [], []
            marks = set(checkpoints(p["output"]))
            for t in range(p["output"]):
                q, k, v = (x[t % POOL] for x in pool)
                start = time.perf_counter()
                _, state = layer.step(state, q, k, v)
                sync()
                times.append(time.perf_counter() - start)
                if t + 1 in marks:
                    points.append(cls.point(t + 1, times, state, p))
        total = sum(times)
        return {
            "prompt": p["prompt"],
            "output": p["output"],
            "decode_state": variant.decode_state,
            "prefill_s": prefill_s,
            "decode_s": total,
            "tokens_per_s": p["batch"] * p["output"] / total,
            "state_bytes_final": state_bytes(state),
            "points": points,
        }

    @staticmethod
    def point(n: int, times: list[float], state: Any, p: Mapping[str, Any]) -> dict[str, Any]:
        """The cost of the n-th generated token: median over the last eighth of the steps."""
        recent = times[-max(8, n // 8) :]
        per_token = statistics.median(recent)
        q1, _, q3 = statistics.quantiles(recent, n=4) if len(recent) > 1 else (per_token,) * 3
        return {
            "output_len": n,
            "cache_len": p["prompt"] + n,
            "ms_per_token": 1e3 * per_token,
            "iqr_ms": 1e3 * (q3 - q1),
            "tokens_per_s": p["batch"] / per_token,
            "state_bytes": state_bytes(state),
            "allocated_bytes": allocated_bytes(state),
        }
