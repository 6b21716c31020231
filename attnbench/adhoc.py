"""Ad-hoc suites: variants and axes given on the command line (`attnbench run VARIANT…`) or to
`attnbench.sweep`, turned into the tables of a suite file and parsed by the same code as a file.
So they are checked as a file is (an error names the flag or keyword that set the bad value),
expand to the same cases with the same ids, and can be written out as the equivalent suite
file (`--save-suite`)::

    tables = suite_tables(["softmax.sdpa", "linear.dpfp"], {"seq_len": [4096, 16384]},
                          params={"linear.dpfp": {"nu": [1, 2]}})
    suite = build_suite(tables, origin=cli_origin(tables))
    Path("mine.toml").write_text(to_toml(tables))   # `attnbench run --suite mine.toml`: same cases
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from attnbench.cases import scalar
from attnbench.errors import UserError
from attnbench.suites import Suite, parse_suite

NAME = "adhoc"  # the suite name of an ad-hoc run: results/adhoc-<time>.jsonl
# the flag of `attnbench run` that sets each key; [params] keys are `--param`
CLI_FLAGS = {
    "variants": "VARIANT",
    "batch": "--batch",
    "heads": "--heads",
    "seq_len": "--seq-len",
    "d_head": "--d-head",
    "dtype": "--dtype",
    "device": "--device",
    "causal": "--causal",
    "mode": "--mode",
    "threads": "--threads",
    "metrics": "--metrics",
    "min_run_time_s": "--min-run-time",
    "timeout_s": "--timeout",
}
CAUSAL = {"no": [False], "yes": [True], "both": [False, True]}  # --causal


def suite_tables(
    variants: Iterable[str],
    axes: Mapping[str, Any],
    *,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    meta: Mapping[str, Any] | None = None,
    description: str = "",
) -> dict[str, Any]:
    """The [suite], [sweep] and [params] tables of the ad-hoc suite. An axis or parameter
    given as one value is a list of one; None leaves it to the defaults."""
    suite = {"description": description} if description else {}
    suite.update({k: v for k, v in (meta or {}).items() if v is not None})
    sweep = {"variants": list(variants)}
    sweep.update({k: _listed(v) for k, v in axes.items() if v is not None})
    tables: dict[str, Any] = {"suite": suite} if suite else {}
    tables["sweep"] = sweep
    swept = {p: {k: _listed(v) for k, v in kv.items()} for p, kv in (params or {}).items() if kv}
    if swept:
        tables["params"] = swept
    return tables


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple, range)) else [value]


def origin_of(
    tables: Mapping[str, Any], axis: Callable[[str], str], param: Callable[[str, str], str]
) -> dict[str, str]:
    """Key -> the flag or keyword that set it (`axis(key)`, `param(pattern, key)` for a
    [params] key), so that an error names what to fix on the command line or in the call."""
    origin = {key: axis(key) for table in ("suite", "sweep") for key in tables.get(table, {})}
    for pattern, values in tables.get("params", {}).items():
        origin[pattern] = param(pattern, "")
        origin.update({key: param(pattern, key) for key in values})
    return origin


def cli_origin(tables: Mapping[str, Any]) -> dict[str, str]:
    """Key -> its flag of `attnbench run`: `--seq-len`, `--param linear.dpfp:nu`."""
    return origin_of(
        tables, lambda key: CLI_FLAGS.get(key, key), lambda p, key: f"--param {p}{':' + key if key else ''}"
    )


def build_suite(tables: dict[str, Any], *, origin: dict[str, str], name: str = NAME) -> Suite:
    """The suite the tables describe, parsed and checked as a suite file is."""
    return parse_suite(tables, Path(name), to_toml(tables), origin=origin)


def parse_param(text: str) -> tuple[str, str, list[Any]]:
    """`--param linear.dpfp:nu=1,2,3` -> ("linear.dpfp", "nu", [1, 2, 3])."""
    pattern, sep, rest = text.partition(":")
    key, eq, values = rest.partition("=")
    if not (sep and eq and pattern.strip() and key.strip() and values.strip()):
        raise UserError(f"--param {text!r}: expected NAME:KEY=V1,V2 (e.g. linear.dpfp:nu=1,2,3)")
    return pattern.strip(), key.strip(), [scalar(v.strip()) for v in values.split(",")]


def params_from_flags(items: Iterable[str]) -> dict[str, dict[str, list[Any]]]:
    """Every `--param NAME:KEY=V1,V2`, merged by variant name or glob."""
    params: dict[str, dict[str, list[Any]]] = {}
    for text in items:
        pattern, key, values = parse_param(text)
        params.setdefault(pattern, {})[key] = values
    return params


BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def to_toml(tables: Mapping[str, Any]) -> str:
    """The suite file of `tables` (strings, numbers, booleans and lists of them)."""
    lines: list[str] = []
    for table in ("suite", "sweep"):
        if table in tables:
            lines.append(f"[{table}]")
            lines += [f"{_key(k)} = {_value(v)}" for k, v in tables[table].items()]
            lines.append("")
    for pattern, values in tables.get("params", {}).items():
        lines.append(f"[params.{_key(pattern)}]")
        lines += [f"{_key(k)} = {_value(v)}" for k, v in values.items()]
        lines.append("")
    return "\n".join(lines)


def _key(key: str) -> str:
    return key if BARE_KEY.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a TOML basic string
