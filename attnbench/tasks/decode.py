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
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from attnbench.cases import Case
from attnbench.errors import UserError
from attnbench.inputs import case_seed, randn, torch_dtype
from attnbench.registry import Variant
from attnbench.tasks import Task, case_shape, register_task
from attnbench.variants.decode_state import allocated_bytes, state_bytes

if TYPE_CHECKING:
    import pandas as pd

POOL = 64  # distinct random tokens, cycled through the steps


def checkpoints(output: int, first: int = 64) -> list[int]:
    """64, 128, … up to `output`, and `output` itself."""
    points = [n for n in (first << k for k in range(output.bit_length())) if n <= output]
    return points + ([output] if not points or points[-1] != output else [])


@register_task("decode")
class Decode(Task):
    """Time per generated token and state bytes against output length, after a prompt."""

    mode: ClassVar[str] = "decode"
    title: ClassVar[str] = (
        "milliseconds per generated token by output length T (after the prompt), state bytes"
    )
    reference: ClassVar[str] = "softmax.sdpa"  # the KV cache the crossover column is measured against
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

    @classmethod
    def table(cls, df: pd.DataFrame, *, raw: bool = False, **options: Any) -> pd.DataFrame:
        """Rows: variant × batch; columns: ms per token at each output length, the state's bytes
        at the longest, and the output length from which the variant is cheaper per token than
        the reference (softmax.sdpa's KV cache) at the same batch."""
        import pandas as pd

        from attnbench.report.table import crossover

        reference = cls.reference
        ev = decode_rows(df)
        keys = ["label", "batch"] + [c for c in ("device", "dtype") if c in ev and ev[c].nunique() > 1]
        ok = ev[ev["status"] == "ok"] if "ms_per_token" in ev else ev.iloc[0:0]
        ref = {}
        for key, group in ok[ok["label"] == reference].groupby(keys[1:], dropna=False):
            times = dict(zip(group["output_len"], group["ms_per_token"], strict=True))
            ref[key if isinstance(key, tuple) else (key,)] = times
        rows = []
        for key, group in ev.groupby(keys, dropna=False, sort=False):
            row = dict(zip(keys, key, strict=True))
            row["state"] = group["decode_state"].iloc[0]
            done = group[group["status"] == "ok"]
            if done.empty or "ms_per_token" not in done:
                row["status"] = group["status"].iloc[0]
                rows.append(row)
                continue
            for _, pt in done.sort_values("output_len").iterrows():
                ms = pt["ms_per_token"]
                row[f"T={int(pt['output_len'])}"] = ms if raw else f"{ms:.3g}"
            last = done.loc[done["output_len"].idxmax()]
            mib = last["state_bytes"] / 2**20
            row["state MiB"] = mib if raw else f"{mib:.3g}"
            theirs = ref.get(tuple(key[1:]))
            if theirs and row["label"] != reference:
                ours = dict(zip(done["output_len"], done["ms_per_token"], strict=True))
                cross = crossover(ours, theirs)
                text = "never" if cross is None else "start" if cross == 0 else f"{cross:.0f}"
                row[f"cheaper than {reference} from T"] = cross if raw else text
            rows.append(row)
        table = pd.DataFrame(rows)
        lengths = sorted((c for c in table.columns if c.startswith("T=")), key=lambda c: int(c[2:]))
        rest = [c for c in table.columns if c not in keys and c not in lengths]
        return table[keys + lengths + rest].fillna("")

    @classmethod
    def figure(cls, df: pd.DataFrame, path: str | Path, **options: Any) -> Path:
        """Decoding cost against output length (log-log): time per token on the left, the
        bytes the state holds on the right, one line per variant and batch."""
        from attnbench.report.figures import pyplot, save, with_devices

        plt = pyplot()
        rows = decode_rows(df)
        ok = rows[rows["status"] == "ok"] if "ms_per_token" in rows else rows.iloc[0:0]
        if ok.empty:
            raise UserError("no ok decode results to plot")
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8))
        labels, batches = sorted(ok["label"].unique()), sorted(ok["batch"].unique())
        colors = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20").colors
        styles = ["-o", "--s", ":^", "-.d"]  # one per batch size; one colour per variant
        for (label, batch), group in ok.groupby(["label", "batch"], sort=True):
            group = group.sort_values("output_len")
            name, color = f"{label}, B={int(batch)}", colors[labels.index(label) % len(colors)]
            style = styles[batches.index(batch) % len(styles)]
            left.plot(group["output_len"], group["ms_per_token"], style, color=color, label=name, ms=3)
            right.plot(
                group["output_len"], group["state_bytes"] / 2**20, style, color=color, label=name, ms=3
            )
        for ax in (left, right):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel(with_devices("output length (tokens after the prompt)", df))
            ax.grid(True, which="both", alpha=0.3)
        left.set_ylabel("time per generated token, ms")
        right.set_ylabel("state or KV cache, MiB")
        left.legend(fontsize=7, loc="best")
        fig.suptitle("decoding cost vs output length")
        return save(fig, right, path, legend=False)


def decode_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (case, output length): label, batch, output_len, ms_per_token, tokens_per_s,
    state_bytes, …"""
    from attnbench.report.table import explode

    base = lambda r: {
        "label": r["label"],
        "batch": r.get("task.batch"),
        "device": r.get("device"),
        "dtype": r.get("dtype"),
        "decode_state": r.get("decode_state"),
    }
    return explode(df, "points", base)
