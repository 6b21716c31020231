"""The Python API, for notebooks and scripts: the command line's sweep, table data, figures and
report as calls that return a DataFrame::

    import attnbench
    df = attnbench.sweep(["softmax.sdpa", "linear.elu"], seq_len=[1024, 4096], causal=True)
    df = attnbench.bench(my_attention, "softmax.sdpa", seq_len=[1024, 4096], reference="softmax")
    attnbench.plot(df, "latency_ms", "latency.png")
    attnbench.report(df, "report.html")

`sweep` builds its suite as `attnbench run VARIANT…` does (same checks, same case ids), runs it
with the inline executor unless told otherwise, and returns what `load_results` gives for the
cases it ran. `bench` first wraps unregistered functions and modules as variants
(`attnbench.wrap`), for this call only.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def sweep(
    variants: str | Iterable[str],
    *,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    executor: str = "inline",
    executor_options: Mapping[str, Any] | None = None,
    metrics: str | Iterable[str] | None = None,
    min_run_time: float | None = None,
    timeout_s: float | None = None,
    output: str | Path | None = None,
    resume: bool = False,
    name: str = "adhoc",
    **axes: Any,
) -> pd.DataFrame:
    """Run `variants` (names, globs, families) over the axes given (batch, heads, seq_len,
    d_head, dtype, device, causal, mode, threads: a value or a list each; the rest take a
    case's defaults) and return one row per case, the columns `load_results` gives.

    params: per variant name or glob, the parameters to sweep ({"linear.dpfp": {"nu": [1, 2]}}).
    executor: "inline" (this process), "subprocess" (each case isolated; an OOM or a crash
    becomes a status) or "ray" with executor_options such as {"address": "auto"}.
    metrics: groups among time, memory, error (default all).
    output: also keep the results as JSON lines there (default: a temporary file, removed).
    """
    from attnbench.adhoc import build_suite, origin_of, suite_tables
    from attnbench.results import load_results
    from attnbench.runner.executors import check_executor
    from attnbench.runner.sweep import default_mem_limit, run_sweep

    options = dict(executor_options or {})
    check_executor(executor, options)
    names = [variants] if isinstance(variants, str) else list(variants)
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    meta = {"metrics": None if metrics is None else list(metrics), "min_run_time_s": min_run_time}
    meta["timeout_s"] = timeout_s
    tables = suite_tables(names, axes, params=params, meta=meta)
    origin = origin_of(
        tables,
        lambda key: "sweep(variants=…)" if key == "variants" else f"sweep({key}=…)",
        lambda pattern, key: f"sweep(params={{{pattern!r}: {{{key!r}: …}}}})" if key else "sweep(params=…)",
    )
    suite = build_suite(tables, origin=origin, name=name)
    cases = suite.cases()
    with _results_file(output) as out:
        run_sweep(suite, cases, out=out, resume=resume, executor=executor, mem_limit=default_mem_limit(cases))
        df = load_results(out)
    return df[df["case_id"].isin({c.id for c in cases})].reset_index(drop=True)


@contextlib.contextmanager
def _results_file(output: str | Path | None) -> Iterator[Path]:
    if output is not None:
        yield Path(output)
        return
    with tempfile.TemporaryDirectory(prefix="attnbench-") as folder:
        yield Path(folder) / "results.jsonl"


def bench(
    *targets: Any,
    name: str | None = None,
    reference: str | None = None,
    executor: str = "inline",
    **options: Any,
) -> pd.DataFrame:
    """Measure unregistered attention functions or `nn.Module`s (instances or classes) beside
    registered variants (given by name) in one sweep, with the same harness: timing, exact CPU
    peak memory, and the error against the float64 oracle `reference` ("softmax") when given.

    A function is called as `fn(q, k, v, causal=…)` on (batch, heads, seq, d_head) tensors; one
    without a `causal` keyword runs the non-causal cases only (causal ones are `unsupported`).
    A module class is built per case, with `heads=` and `d_head=` if it takes them. Its row's
    label is `name` (one target) or the function's or class's own name. With
    executor="subprocess" each target must be importable (a module on sys.path, not a notebook).
    The other options are `sweep`'s.
    """
    from attnbench.errors import UserError
    from attnbench.registry import REGISTRY
    from attnbench.wrap import name_of, wrap

    callables = [t for t in targets if not isinstance(t, str)]
    if name is not None and len(callables) != 1:
        raise UserError(f"bench(name={name!r}) names one function or module; {len(callables)} given")
    wrapped = {}
    for target in callables:
        label = name or name_of(target)
        if label in REGISTRY.names() or label in wrapped:
            raise UserError(f"bench: {label!r} is already a variant name here; give the target another name=")
        wrapped[label] = (target, wrap(target, label, reference=reference))
    if wrapped and executor not in ("inline", "subprocess"):
        raise UserError(
            f"bench: an unregistered function or module runs inline or in a subprocess, not {executor}"
        )
    variants = [t if isinstance(t, str) else name or name_of(t) for t in targets]
    if not variants:
        raise UserError("bench: give a function, a module or a variant name to measure")
    with _registered(wrapped, reference, subprocess=executor != "inline"):
        return sweep(variants, executor=executor, **options)


@contextlib.contextmanager
def _registered(
    wrapped: dict[str, tuple[Any, type]], reference: str | None, *, subprocess: bool
) -> Iterator[None]:
    """The wrappers registered for the call; for workers, named in the environment (each
    importable, or a UserError saying why not). Everything is put back afterwards."""
    import json

    from attnbench.discovery import PLUGINS_ENV, env_plugins
    from attnbench.registry import REGISTRY
    from attnbench.wrap import PLUGIN, TARGETS_ENV, import_path

    saved = {key: os.environ.get(key) for key in (PLUGINS_ENV, TARGETS_ENV)}
    try:
        if subprocess and wrapped:
            specs = {
                label: {"path": import_path(t), "reference": reference} for label, (t, _) in wrapped.items()
            }
            os.environ[TARGETS_ENV] = json.dumps(specs)
            os.environ[PLUGINS_ENV] = ",".join(dict.fromkeys([*env_plugins(), PLUGIN]))
        for label, (_, cls) in wrapped.items():
            REGISTRY.register(label)(cls)
        yield
    finally:
        for label in wrapped:
            REGISTRY.unregister(label)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def plot(
    df: pd.DataFrame, metric: str = "latency_ms", path: str | Path | None = None, *, title: str | None = None
) -> Path:
    """The command line's figure of `metric` against sequence length (log-log, one line per
    variant and varying axis), written to `path` (PNG or SVG; default `<metric>.png`)."""
    from attnbench.report.figures import plot_vs_seq_len

    return plot_vs_seq_len(df, metric, path or f"{metric}.png", title=title)


def report(df: pd.DataFrame, path: str | Path, *, title: str | None = None) -> Path:
    """The self-contained HTML report `attnbench report` writes, of the rows in `df`."""
    from attnbench.commands.common import write_report

    return write_report(df, Path(path), title)
