"""Suite files (TOML) -> cases.

A suite names the variants (exact names, globs such as `softmax.*`, or families), the sweep
axes, per-variant parameter sweeps and limits, and how to measure::

    [suite]
    description = "softmax family vs sequence length, CPU"
    timeout_s = 120          # per case; a hang past it is recorded `timeout`
    budget_s = 600           # optional: stop after this long, finish later with --resume
    min_run_time_s = 0.3     # timed seconds per case (at least min_samples = 7 samples)
    repeat = 5               # replicates: every timed case 5 times, in 5 shuffled rounds
    metrics = ["time", "memory", "error"]
    show = "latency_ms"      # the summary table's metric
    profile = "linear.*"     # also profile these variants' cases (true: every case) into profiles/

    [sweep]                  # or several [[sweep]] blocks, each its own product
    variants = ["softmax"]
    seq_len = [256, 512, 1024]
    causal = [false, true]

    [params."linear.dpfp"]   # sweep a variant's own parameters
    nu = [1, 2, 3]

    [params."linear.*"]      # points: parameters that vary together (the paper's two arms)
    points = [{rule = "sum", norm = "attn"}, {rule = "delta", norm = "sum"}]

    [limits."softmax.naive"] # bounds on any numeric axis, by name or glob
    max_seq_len = 2048

A suite with a `[task]` table trains its variants on a quality task instead of timing them::

    [task]
    name = "retrieval"       # a task in attnbench.tasks
    setting = 1
    S = [20, 40, 60]         # a list is a swept axis, like the sweep's
    d_key = 16
    # points = [{seq_len = 64, pairs = 4}, …]: parameters that vary together, not as a product
    seeds = [0, 1, 2]        # every point trained once per seed (`run --seeds N`: seeds 0 … N−1)

The task fixes batch, heads, seq_len and d_head (a sweep may not set them); causal defaults
to true and the mode is the task's (training: "fwd+bwd"; the decode task: "decode").

Every mistake is reported as one `UserError` naming the file, the line and the key.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import math
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from attnbench.cases import DEVICES, DTYPES, MODES, Case, freeze
from attnbench.errors import UserError, did_you_mean
from attnbench.measure.settings import METRIC_GROUPS, MeasureSettings
from attnbench.registry import REGISTRY, Registry, Variant
from attnbench.task_grid import TaskGrid, check_points, parse_task, product_grid
from attnbench.tasks import TASK_AXES, get_task

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SUITE_DIRS = (Path.cwd() / "suites", Path(__file__).resolve().parent.parent / "suites")
INT_AXES = ("batch", "heads", "seq_len", "d_head", "threads")
AXES = ("variants", *INT_AXES, "dtype", "device", "causal", "mode")
# axes a sweep leaves out take the Case's defaults (threads: torch's default thread count)
DEFAULT_AXES: dict[str, list[Any]] = {f.name: [f.default] for f in fields(Case) if f.name in AXES[1:]}
DEFAULT_AXES.pop("threads")


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    description: str = ""
    timeout_s: float = field(default=300.0, metadata={"above": 0})
    budget_s: float | None = field(default=None, metadata={"above": 0})
    show: str = "latency_ms"
    settings: MeasureSettings = field(default_factory=MeasureSettings)
    sweeps: tuple[dict[str, list[Any]], ...] = ()
    params: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    limits: dict[str, dict[str, float]] = field(default_factory=dict)
    task: TaskGrid | None = None
    text: str = ""
    # where each key came from when not from a file: an ad-hoc run's command-line flags
    origin: dict[str, str] = field(default_factory=dict)

    def cases(
        self, registry: Registry = REGISTRY, *, only: str | None = None, device: str | None = None
    ) -> list[Case]:
        """Expand the sweep. `only` narrows the variants (same pattern syntax), `device`
        replaces the device axis."""
        keep = {v.name for v in registry.select(only)} if only else None
        out: dict[str, Case] = {}
        for sweep in self.sweeps:
            variants = self._variants(sweep, registry)
            axes = {k: sweep.get(k, DEFAULT_AXES.get(k)) for k in AXES if k != "variants"}
            if device:
                axes["device"] = [device]
            for cls in variants:
                if keep is not None and cls.name not in keep:
                    continue
                for params in self._param_grid(cls):
                    for combo in itertools.product(*(axes[k] for k in AXES[1:])):
                        for case in self._with_task(
                            Case(cls.name, freeze(params), **dict(zip(AXES[1:], combo, strict=True)))
                        ):
                            if self._within_limits(case):
                                out.setdefault(case.id, case)
        return list(out.values())

    def named_variants(self, registry: Registry = REGISTRY) -> set[str]:
        """The variants the sweeps name exactly (not through a family or a glob)."""
        names = set(registry.names())
        return {p.strip() for s in self.sweeps for item in s["variants"] for p in item.split(",")} & names

    def _with_task(self, case: Case) -> list[Case]:
        """The case itself, or one case per point of the task's grid, shaped by the task."""
        if self.task is None:
            return [case]
        name, mode = self.task.name, get_task(self.task.name).mode
        return [
            dataclasses.replace(case, **shape, mode=mode, task=freeze({"name": name, **params}))
            for params, shape in self.task.runs()
        ]

    def check_params(self, registry: Registry = REGISTRY) -> None:
        """Every parameter value of every variant the sweeps select, checked as the suite is
        parsed: a value a variant cannot take names its line now, not when its case runs."""
        for sweep in self.sweeps:
            for cls in self._variants(sweep, registry):
                self._param_grid(cls)

    def _variants(self, sweep: dict[str, list[Any]], registry: Registry) -> list[type[Variant]]:
        try:
            return registry.select(sweep["variants"])
        except UserError as e:
            raise UserError(f"{self.location('variants')}: {e}") from None

    def _param_grid(self, cls: type[Variant]) -> list[dict[str, Any]]:
        swept: dict[str, list[Any]] = {}
        points: list[dict[str, Any]] = [{}]
        for pattern, values in self.params.items():
            if fnmatch.fnmatchcase(cls.name, pattern):
                values = dict(values)
                points = values.pop("points", points)  # the most specific table's points win
                swept.update(values)
        clash = sorted(set(swept) & {k for point in points for k in point})
        if clash:
            where = f"{self.location('points')}: {cls.name}"
            raise UserError(f"{where}: parameter {clash[0]!r} is set both in points and on its own")
        for key, values in swept.items():  # each value alone: the checks are per parameter
            for value in values:
                try:
                    cls.resolve_params({key: value})
                except UserError as e:
                    raise UserError(f"{self.location(key)}: {e}") from None
        for point in points:
            try:
                cls.resolve_params(point)
            except UserError as e:
                raise UserError(f"{self.location('points')}: {e}") from None
        grid = product_grid(swept, points)
        for params in grid:
            cls.resolve_params(params)  # an unknown name fails here, naming the suite file
        # only what the suite sets: a row reads `linear.dpfp[nu=2]`, not every default; the
        # resolved set is recorded with each result (metrics.resolved_params)
        return grid

    def _within_limits(self, case: Case) -> bool:
        for pattern, bounds in self.limits.items():
            if not fnmatch.fnmatchcase(case.variant, pattern):
                continue
            for key, bound in bounds.items():
                kind, axis = key.split("_", 1)
                value = getattr(case, axis)
                if (kind == "max" and value > bound) or (kind == "min" and value < bound):
                    return False
        return True

    def location(self, key: str) -> str:
        """`file:line` of the first line that sets `key` in the suite file, or the flag that
        set it (an ad-hoc run)."""
        return locate(self.path, self.text, self.origin, key)


def locate(path: Path, text: str, origin: dict[str, str] | None, key: str) -> str:
    """Where `key` was set: `file:line`, or the command-line flag of an ad-hoc suite."""
    if origin:
        return origin.get(key, origin.get("", "the command line"))
    return f"{path}:{line_of(text, key)}"


SUITE_FIELDS = ("description", "timeout_s", "budget_s", "show")  # [suite] keys that are Suite fields


@dataclass(frozen=True)
class SuiteKey:
    """What a [suite] key accepts: its TOML types and, for a number, its bounds."""

    types: type | tuple[type, ...]
    minimum: float | None = None  # the least value allowed
    above: float | None = None  # values must exceed this one
    maximum: float | None = None  # the most allowed

    def problem(self, value: Any) -> str | None:
        """Why `value` cannot be this key's value, or None."""
        if not _has_type(value, self.types):
            return f"has the wrong type ({type(value).__name__})"
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number, not {value}"
        if self.above is not None and not value > self.above:
            return f"must be above {self.above}, not {value}"
        if self.minimum is not None and value < self.minimum:
            return f"must be at least {self.minimum}, not {value}"
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {self.maximum}, not {value}"
        return None


def _suite_keys() -> dict[str, SuiteKey]:
    """Every [suite] key, the TOML types it takes and its bounds, read from the fields of
    `Suite` and `MeasureSettings` (their defaults and limits live there, and only there)."""
    accepts = {
        "bool": bool,
        "int": int,
        "float": (int, float),
        "str": str,
        "bool | str": (bool, str),
        "tuple[str, ...]": list,
    }
    owned = {f.name: f for f in fields(Suite) if f.name in SUITE_FIELDS}
    settings = {f.name: f for f in fields(MeasureSettings)}
    owned |= {key: settings[name] for key, name in MeasureSettings.suite_keys().items()}
    return {
        key: SuiteKey(
            accepts[str(f.type).removesuffix(" | None")],
            f.metadata.get("minimum"),
            f.metadata.get("above"),
            f.metadata.get("maximum"),
        )
        for key, f in owned.items()
    }


SUITE_KEYS = _suite_keys()


def line_of(text: str, key: str) -> int:
    """Line number of the first line setting `key` (or opening table `[key]`), else 1."""
    pattern = re.compile(rf'^\s*("{re.escape(key)}"|{re.escape(key)})\s*=|^\s*\[+\s*{re.escape(key)}[\].]')
    for i, line in enumerate(text.splitlines(), 1):
        if pattern.search(line):
            return i
    return 1


def find_suite(name: str) -> Path:
    path = Path(name)
    if path.suffix == ".toml" or "/" in name:
        if not path.is_file():
            raise UserError(f"no suite file {name}")
        return path
    for folder in SUITE_DIRS:
        if (folder / f"{name}.toml").is_file():
            return folder / f"{name}.toml"
    known = sorted({p.stem for d in SUITE_DIRS if d.is_dir() for p in d.glob("*.toml")})
    raise UserError(
        f"no suite {name!r}{did_you_mean(name, known)}; known suites: {', '.join(known) or 'none'}"
    )


def load_suite(name: str) -> Suite:
    path = find_suite(name)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read suite file {path}: {e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        at = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        where = f"{path}:{at[1]}:{at[2]}" if at else str(path)
        what = str(e)[: at.start()].strip() if at else str(e)
        raise UserError(f"{where}: malformed TOML: {what}") from None
    return parse_suite(data, path, text)


def parse_suite(
    data: dict[str, Any], path: Path, text: str = "", *, origin: dict[str, str] | None = None
) -> Suite:
    """A suite from its parsed TOML; errors name `path`'s line, or the flag `origin` gives
    for the key (an ad-hoc suite built from the command line)."""

    def fail(key: str, msg: str) -> UserError:
        return UserError(f"{locate(path, text, origin, key)}: {msg}")

    unknown = set(data) - {"suite", "sweep", "params", "limits", "task"}
    if unknown:
        key = sorted(unknown)[0]
        raise fail(key, f"unknown table [{key}] (expected [suite], [sweep], [params], [limits], [task])")
    meta = data.get("suite", {})
    for key, value in meta.items():
        if key not in SUITE_KEYS:
            raise fail(key, f"unknown key {key!r} in [suite]{did_you_mean(key, SUITE_KEYS)}")
        problem = SUITE_KEYS[key].problem(value)
        if problem:
            raise fail(key, f"[suite] {key} {problem}")
    bad = [m for m in meta.get("metrics", ()) if m not in METRIC_GROUPS]
    if bad:
        raise fail("metrics", f"unknown metric group {bad[0]!r} (choose from {', '.join(METRIC_GROUPS)})")
    settings = MeasureSettings.from_suite(meta)
    raw = data.get("sweep")
    if raw is None:
        raise UserError(f"{path}: no [sweep] table: say which variants and shapes to run")
    blocks = [raw] if isinstance(raw, dict) else raw
    sweeps = tuple(_parse_sweep(b, fail) for b in blocks)
    task = parse_task(data["task"], fail) if "task" in data else None
    if task is not None:
        for sweep in sweeps:
            fixed = sorted(set(sweep) & set(TASK_AXES))
            if fixed:
                raise fail(fixed[0], f"{fixed[0]} is set by the task {task.name!r}: remove it from [sweep]")
            sweep.setdefault("causal", [True])
    params = {}
    for pattern, values in data.get("params", {}).items():
        if not isinstance(values, dict):
            raise fail(pattern, f"[params] {pattern!r} must be a table of parameter = [values]")
        swept = {k: v if isinstance(v, list) else [v] for k, v in values.items() if k != "points"}
        params[pattern] = swept
        if "points" in values:
            example = '{rule = "sum", norm = "attn"}'
            params[pattern]["points"] = check_points(values, swept, fail, f"[params.{pattern!r}]", example)
    limits = {}
    for pattern, bounds in data.get("limits", {}).items():
        if not isinstance(bounds, dict):
            raise fail(pattern, f"[limits] {pattern!r} must be a table such as {{ max_seq_len = 2048 }}")
        for key, bound in bounds.items():
            kind, _, axis = key.partition("_")
            if kind not in ("max", "min") or axis not in INT_AXES:
                raise fail(
                    key, f"unknown limit {key!r}: use max_<axis> or min_<axis> for {', '.join(INT_AXES)}"
                )
            if not isinstance(bound, int) or isinstance(bound, bool):
                raise fail(key, f"limit {key} must be an integer")
        limits[pattern] = bounds
    given = {key: meta[key] for key in SUITE_FIELDS if key in meta}  # the rest keep Suite's defaults
    parsed = dict(settings=settings, sweeps=sweeps, params=params, limits=limits, task=task, text=text)
    parsed["origin"] = dict(origin or {})
    suite = Suite(path.stem, path, **given, **parsed)
    suite.check_params()
    return suite


def _has_type(value: Any, expected: type | tuple[type, ...]) -> bool:
    """isinstance, except that TOML's true/false is not accepted as a number."""
    if isinstance(value, bool):
        return expected is bool or (isinstance(expected, tuple) and bool in expected)
    return isinstance(value, expected)


def _parse_sweep(block: dict[str, Any], fail) -> dict[str, list[Any]]:
    sweep: dict[str, list[Any]] = {}
    for key, value in block.items():
        if key not in AXES:
            raise fail(key, f"unknown sweep axis {key!r}{did_you_mean(key, AXES)}")
        values = value if isinstance(value, list) else [value]
        if not values:
            raise fail(key, f"sweep axis {key!r} is empty")
        for v in values:
            _check_axis_value(key, v, fail)
        sweep[key] = values
    if "variants" not in sweep:
        raise fail("sweep", "[sweep] needs `variants` (names, globs such as 'softmax.*', or families)")
    sweep.setdefault("threads", [torch.get_num_threads()])
    return sweep


def _check_axis_value(key: str, v: Any, fail) -> None:
    if key in INT_AXES:
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise fail(key, f"{key} must be a positive integer, got {v!r}")
    elif key == "causal":
        if not isinstance(v, bool):
            raise fail(key, f"causal must be true or false, got {v!r}")
    else:
        choices = {"dtype": DTYPES, "device": DEVICES, "mode": MODES, "variants": None}[key]
        if not isinstance(v, str) or (choices and v not in choices):
            allowed = f" (choose from {', '.join(choices)})" if choices else ""
            raise fail(key, f"bad {key} {v!r}{allowed}")
