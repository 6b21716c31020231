"""One case, end to end, in the current process: build the variant and its inputs, warm up
(compiling if it compiles), then time it, take its peak memory and its error against the
float64 oracle. Every failure a case can have becomes a status; nothing here raises."""

from __future__ import annotations

import functools
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from attnbench import reference
from attnbench.cases import Case
from attnbench.env import case_env
from attnbench.errors import Unsupported, UserError, is_oom, one_line
from attnbench.inputs import case_seed, make_qkv, randn, torch_dtype
from attnbench.measure import accuracy, compile_guard, noise
from attnbench.measure.calibrate import ceilings
from attnbench.measure.memory import peak_bytes
from attnbench.measure.numerics import error_vs_reference
from attnbench.measure.settings import MeasureSettings
from attnbench.measure.timing import Timing, time_fn
from attnbench.outcome import Outcome
from attnbench.registry import REGISTRY, Variant
from attnbench.tasks import get_task


class Workload:
    """One call of a variant on a case's inputs: forward, or forward and backward with a
    random output gradient. `reset` (clearing gradients) is kept out of `call` so memory
    measures only what the call allocates."""

    def __init__(self, module: Variant, case: Case, seed: int) -> None:
        self.module, self.causal, self.seed = module, case.causal, seed
        dtype = torch_dtype(case.dtype)
        self.q, self.k, self.v = make_qkv(case.shape, dtype=dtype, device=case.device, seed=seed)
        self.backward = case.mode == "fwd+bwd"
        if self.backward:
            for t in (self.q, self.k, self.v):
                t.requires_grad_(True)
            self.dout = randn(tuple(self.q.shape), dtype=dtype, device=case.device, seed=seed + 3)

    def reset(self) -> None:
        if self.backward:
            for t in (self.q, self.k, self.v, *self.module.parameters()):
                t.grad = None

    def call(self) -> None:
        if self.backward:
            self.module(self.q, self.k, self.v, causal=self.causal).backward(self.dout)
        else:
            with torch.no_grad():
                self.module(self.q, self.k, self.v, causal=self.causal)

    def run(self) -> None:
        self.reset()
        self.call()


def execute(case: Case, settings: MeasureSettings | None = None) -> Outcome:
    """Run `case` here; every failure it can have is a status of the outcome."""
    settings = settings or MeasureSettings()
    start = time.perf_counter()
    metrics: dict[str, Any] = {}
    flags: list[str] = []
    status, error = "ok", None
    try:
        flags = _measure(case, settings, metrics)
        accuracy.finite_errors(metrics)
        wrong = accuracy.verdict(metrics)
        if wrong:
            status, error = "inaccurate", wrong
    except Unsupported as e:
        status, error = "unsupported", str(e)
    except NotImplementedError as e:  # the library itself says it cannot do this case
        status, error = "unsupported", one_line(e)
    except UserError as e:
        status, error = "error", str(e)
    except Exception as e:
        status, error = ("oom" if is_oom(e) else "error"), one_line(e)
        if status == "error":
            metrics["traceback"] = traceback.format_exc(limit=8)[-4000:]
    finally:
        if case.device == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()
    return Outcome(
        status, error, metrics, flags, case_env(case.device), round(time.perf_counter() - start, 3)
    )


def runnable(case: Case) -> type[Variant]:
    """The case's variant class, with this process set to the case's thread count; raises
    `Unsupported` when the variant cannot run on the case's device here."""
    cls = REGISTRY.get(case.variant)
    availability = cls.available(case.device)
    if not availability:
        raise Unsupported(availability.reason)
    torch.set_num_threads(case.threads)
    return cls


def prepare(case: Case) -> Workload:
    """The case's variant built and seeded as every measurement of it is, on its inputs."""
    cls = runnable(case)
    seed = case_seed(case)
    torch.manual_seed(seed)  # parameters of learned variants
    module = cls(heads=case.heads, d_head=case.d_head, **case.param_dict)
    module.check(case)
    module = module.to(device=case.device, dtype=torch_dtype(case.dtype))
    return Workload(module, case, seed)


def _measure(case: Case, settings: MeasureSettings, metrics: dict[str, Any]) -> list[str]:
    if case.task:
        cls = runnable(case)
        task = dict(case.task)
        runner = get_task(task.pop("name"))
        metrics.update(runner.run(cls, case, runner.resolve_params(task)))
        return []
    work = prepare(case)
    module, seed = work.module, work.seed
    cls = type(module)
    metrics["resolved_params"] = dict(module.hparams)  # defaults included: what this row ran
    if cls.compiled:
        compile_guard.configure(settings.recompile_limit)
    guard = compile_guard.CompileGuard()
    guard.first_call(work.run)
    flags: list[str] = []
    with guard.stance():
        for _ in range(settings.warmup):
            work.run()
        metrics["threads_used"] = torch.get_num_threads()
        if cls.compiled:
            metrics["compiles"] = guard.compiles_in_warmup
        if "time" in settings.metrics:
            with guard.timed(), noise.watch() as seen:
                timing = time_fn(
                    work.run,
                    device=case.device,
                    threads=case.threads,
                    min_run_time=settings.min_run_time,
                    min_samples=settings.min_samples,
                )
            metrics.update(_speed_metrics(cls, case, timing, settings))
            metrics.update(seen[0].metrics(timing.calls))
            if timing.noisy:
                flags.append("noisy")
            flags.extend(seen[0].flags(threads=case.threads))
        if "memory" in settings.metrics:
            work.reset()
            with guard.timed():
                metrics["peak_mem_bytes"] = peak_bytes(work.call, case.device)
            metrics["mem_method"] = "cuda-max-allocated" if case.device == "cuda" else "cpu-profiler-exact"
        if "error" in settings.metrics and cls.reference:
            oracle = functools.partial(reference.get(cls.reference), **module.oracle_kwargs())
            forward = lambda q, k, v: module(q, k, v, causal=case.causal)
            metrics.update(
                error_vs_reference(
                    forward,
                    oracle,
                    work.q,
                    work.k,
                    work.v,
                    causal=case.causal,
                    grads=work.backward,
                    rows=settings.error_rows,
                    seed=seed,
                )
            )
            metrics["err_vs"] = cls.reference  # what the error is measured against
            metrics["err_kind"] = "approximation" if cls.approximates else "rounding"
            if not cls.approximates:  # an approximation's error is its result, not a fault
                metrics["err_tolerance"] = accuracy.tolerances(case.dtype, case.mode, cls.error_scale)
        if settings.profiles(case.variant, case.label):
            _profile(case, work, metrics, settings)
    flags = guard.flags + flags
    metrics["valid"] = not guard.flags
    d_dot = module.d_dot()
    if d_dot is not None:
        metrics["d_dot"] = d_dot
    cache = module.cache_bytes(case.shape, torch_dtype(case.dtype).itemsize)
    if cache is not None:
        metrics["cache_bytes"] = cache
    density = cls.density(case.seq_len, causal=case.causal, params=module.hparams)
    if density is not None:
        metrics["density"] = density
    return flags


def _profile(case: Case, work: Workload, metrics: dict[str, Any], settings: MeasureSettings) -> None:
    """Profile the warm workload into a folder the record links (`profile`); a profile that
    fails leaves the measurement standing and says why (`profile_error`)."""
    from attnbench.runner.profile import write_profile  # the profiler's imports, only when asked

    try:
        metrics["profile"] = str(write_profile(case, work, metrics, Path(settings.profile_dir)))
    except Exception as e:
        if is_oom(e):
            raise
        metrics["profile_error"] = one_line(e)


def _speed_metrics(
    cls: type[Variant], case: Case, timing: Timing, settings: MeasureSettings
) -> dict[str, Any]:
    m: dict[str, Any] = {
        "latency_ms": timing.median_s * 1e3,
        "latency_q25_ms": timing.q25_s * 1e3,
        "latency_q75_ms": timing.q75_s * 1e3,
        "latency_iqr_ms": timing.iqr_s * 1e3,
        "latency_samples": timing.n,
        "timer": timing.method,
        "tokens_per_s": case.shape.tokens / timing.median_s,
    }
    flops = cls.flops(case.shape, causal=case.causal, mode=case.mode, params=case.param_dict)
    itemsize = torch_dtype(case.dtype).itemsize
    min_bytes = cls.min_bytes(case.shape, mode=case.mode, itemsize=itemsize)
    m["min_bytes"] = min_bytes  # with flops: the case's place on the roofline
    if flops:
        m["flops"] = flops
        m["tflops"] = flops / timing.median_s / 1e12
    if settings.calibrate:
        ceil = ceilings(case.device, case.threads, (case.dtype,))
        if ceil is not None:
            if flops and ceil.matmul_flops.get(case.dtype):
                m["peak_flops"] = ceil.matmul_flops[case.dtype]  # the roofline's ceilings, kept
                m["pct_peak_flops"] = 100 * flops / timing.median_s / ceil.matmul_flops[case.dtype]
            if ceil.copy_bytes_per_s:
                m["peak_bw"] = ceil.copy_bytes_per_s  # with the record, so it reads anywhere
                m["pct_peak_bw"] = 100 * min_bytes / timing.median_s / ceil.copy_bytes_per_s
    return m
