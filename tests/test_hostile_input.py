"""Property: whatever suite file or results file a user hands it, attnbench ends with exit 0
or a one-line error and exit 2 (1 only for `compare`'s verdict of a regression), never a
traceback. Hypothesis writes the files: suites built from real keys and hostile values (wrong
types, out of range, markup, NaN, huge numbers), then cut and spliced as text; results from
real records with fields replaced, removed or corrupted. The CLI runs in this process
(`attnbench.cli.main`), suites through the inline executor on tiny cases.

The default run tries 300 files (150 of each kind); `pytest -m slow` tries 1,200.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from attnbench.cases import Case
from attnbench.cli import main
from attnbench.errors import UserError
from attnbench.outcome import Outcome
from attnbench.results.schema import CASE_FIELDS as SCHEMA_CASE_FIELDS
from attnbench.results.schema import TOP_FIELDS
from attnbench.results.store import make_record, read_records
from attnbench.suites import load_suite

ERROR_LINE = re.compile(r"attnbench( \w+)?: error: ")
DEFAULT = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
THOROUGH = settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))

# --- values a suite file might hold ------------------------------------------------------------
NAMES = ["softmax.naive", "softmax.sdpa", "softmax.sdpa_math", "linear.elu", "linear.dpfp", "sparse.local"]
WORDS = ["linear.el*", "nope", "", "<script>alert(1)</script>", "float32", "bfloat16", "cpu", "cuda", "fwd"]
WORDS += ["fwd+bwd", "decode", "time", "memory", "error", "latency_ms", "retrieval", "none", "rope", "alibi"]
WORDS += ["delta", "sum", "attn", "chunk", "recurrent", "../../etc/passwd", "é\u202e", "a\nb"]
STRINGS = st.sampled_from([*NAMES, *WORDS])
INTS = st.sampled_from([-(2**63), -1, 0, 1, 2, 3, 16, 32, 2**40, 2**63 - 1])
FLOATS = st.sampled_from([0.0, -1.5, 0.001, 0.01, 1e-300, 1e300, math.nan, math.inf, -math.inf])
SCALARS = st.one_of(STRINGS, INTS, FLOATS, st.booleans())
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.lists(st.lists(SCALARS, max_size=2), max_size=2),
    st.dictionaries(STRINGS, SCALARS, max_size=2),
)
# each key with the values a careful user would write; `hostile` mixes in anything at all
SANE_META = {
    "description": STRINGS,
    "timeout_s": st.sampled_from([1, 5.0]),
    "budget_s": st.sampled_from([30, 0.5]),
    "show": st.sampled_from(["latency_ms", "peak_mem_bytes", "rel_err"]),
    "metrics": st.lists(st.sampled_from(["time", "memory", "error"]), max_size=3, unique=True),
    "min_run_time_s": st.sampled_from([0.0, 0.001]),
    "min_samples": st.sampled_from([1, 2]),
    "warmup": st.sampled_from([0, 1]),
    "error_rows": st.sampled_from([1, 8]),
    "recompile_limit": st.sampled_from([8]),
    "calibrate": st.just(False),
}
SANE_AXES = {
    "variants": st.lists(st.sampled_from([*NAMES, "linear.el*", "sparse.*"]), min_size=1, max_size=2),
    "seq_len": st.lists(st.sampled_from([1, 8, 33]), min_size=1, max_size=2),
    "heads": st.sampled_from([[1], 2]),
    "d_head": st.sampled_from([[1], [4, 8]]),
    "threads": st.sampled_from([[1], [1, 2]]),
    "batch": st.lists(st.sampled_from([1, 2]), min_size=1, max_size=2),
    "dtype": st.lists(st.sampled_from(["float32", "float64", "bfloat16", "float16"]), min_size=1, max_size=2),
    "device": st.sampled_from([["cpu"], ["cuda"], "cpu"]),
    "causal": st.sampled_from([[True, False], [True], False]),
    "mode": st.lists(st.sampled_from(["fwd", "fwd+bwd"]), min_size=1, max_size=2),
}
SANE_PARAMS = {
    "position": st.lists(st.sampled_from(["none", "rope", "alibi", "t5", "relative", "learned"]), max_size=2),
    "chunk": st.sampled_from([8, [4, 16]]),
    "rule": st.sampled_from(["sum", ["sum", "delta"]]),
    "nu": st.sampled_from([1, [1, 2]]),
    "window": st.sampled_from([4, [2, 16]]),
}
SANE_TASK = {
    "name": st.sampled_from(["retrieval", "mqar", "nope", 5]),
    "S": st.sampled_from([4, [4, 8], 0]),
    "d_key": st.sampled_from([4, -1]),
    "setting": st.sampled_from([1, 2, 3]),
    "max_steps": st.sampled_from([1, 2]),
    "points": VALUES,
    "seed": INTS,
}


def entries(draw, sane: dict, max_size: int, hostile: bool) -> dict:
    """Some of the keys of `sane` with sane values; `hostile`: also unknown keys, and any
    value at all a third of the time."""
    keys = draw(st.lists(st.sampled_from(sorted(sane)), max_size=max_size, unique=True))
    if not hostile:
        return {k: draw(sane[k]) for k in keys}
    chosen = {k: draw(st.one_of(sane[k], sane[k], VALUES)) for k in keys}
    return chosen | draw(
        st.dictionaries(st.sampled_from(["nope", "timeout", "seqlen", "x"]), VALUES, max_size=1)
    )


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def table(header: str, values: dict) -> str:
    return header + "\n" + "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in values.items())


# a sweep that runs (cheap variants, tiny shapes), with hostile values mixed in
CHEAP = {
    "variants": st.lists(st.sampled_from(NAMES), min_size=1, max_size=2),
    "seq_len": st.lists(st.sampled_from([8, 16, 33]), min_size=1, max_size=2),
    "heads": st.just([2]),
    "d_head": st.just([8]),
    "threads": st.just([1]),
}


@st.composite
def suite_texts(draw) -> str:
    """A suite file: half the time one a careful user might write (it runs), half the time a
    hostile one (wrong keys, types and values, stray tables, text cut and spliced)."""
    hostile = draw(st.booleans())
    meta = {"min_run_time_s": 0.0, "calibrate": False, **entries(draw, SANE_META, 3, hostile)}
    if meta["calibrate"] is True:  # measuring this machine's ceilings takes minutes: not a fault
        meta["calibrate"] = False
    parts = [table("[suite]", meta)]
    sweeps = draw(st.integers(1, 2))
    for _ in range(sweeps):
        sweep = {k: draw(v) for k, v in CHEAP.items()} | entries(draw, SANE_AXES, 3, hostile)
        parts.append(table("[sweep]" if sweeps == 1 else "[[sweep]]", sweep))
    if draw(st.booleans()):
        pattern = draw(st.sampled_from([*NAMES, "softmax.*", "linear.*", "nope", ""]))
        parts.append(table(f"[params.{json.dumps(pattern)}]", entries(draw, SANE_PARAMS, 2, hostile)))
    if draw(st.booleans()):
        bounds = st.dictionaries(st.sampled_from(["max_seq_len", "min_batch", "max_x"]), VALUES, max_size=2)
        parts.append(table('[limits."*"]', draw(bounds) if hostile else {"max_seq_len": 16}))
    if draw(st.sampled_from([False] * 6 + [True])):
        parts.append(table("[task]", entries(draw, SANE_TASK, 4, hostile)))
    if hostile and draw(st.booleans()):
        parts.append(table(f"[{draw(STRINGS)}]", {"a": 1}))
    text = "\n".join(parts)
    if hostile and draw(st.booleans()):  # cut and splice the text itself
        i, j = sorted(draw(st.lists(st.integers(0, len(text)), min_size=2, max_size=2)))
        text = text[:i] + draw(st.text(max_size=8)) + text[j:]
    return text


def cli(*args) -> tuple[int, str, str]:
    """`attnbench ARGS…` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's usage errors
            code = e.code
        finally:
            torch.set_num_threads(threads)  # a suite's thread count must not leak into other tests
    return code, out.getvalue(), err.getvalue()


def assert_clean(code: int, out: str, err: str, *, verdict: bool = False) -> None:
    assert "Traceback" not in err + out
    assert code in ((0, 1, 2) if verdict else (0, 2)), err
    if code == 1:
        assert "regression(s)" in out
    if code == 2:
        errors = [line for line in err.splitlines() if ERROR_LINE.match(line)]
        assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err


def few_cases(path: Path) -> list[str]:
    """`--shard` arguments that keep a valid suite to a handful of cases (a hostile suite may
    expand to thousands); none when it does not parse (the CLI must say why)."""
    try:
        count = len(load_suite(str(path)).cases())
    except UserError:
        return []
    return ["--shard", f"0/{math.ceil(count / 3)}"] if count > 3 else []


def check_suite(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hostile.toml"
        path.write_text(text)
        out = Path(tmp) / "r.jsonl"
        args = ["run", "--suite", path, "-o", out, "--executor", "inline", "--timeout", "1", *few_cases(path)]
        assert_clean(*cli(*args))


@DEFAULT
@given(suite_texts())
def test_hostile_suite_files_end_in_exit_0_or_one_line_and_exit_2(text):
    check_suite(text)


@pytest.mark.slow
@THOROUGH
@given(suite_texts())
def test_hostile_suite_files_end_in_exit_0_or_one_line_and_exit_2_thoroughly(text):
    check_suite(text)


# --- results files --------------------------------------------------------------------------
def good_records() -> list[dict]:
    records = []
    for variant in ("softmax.sdpa", "softmax.naive", "linear.elu"):
        for n in (64, 128):
            metrics = {
                "latency_ms": n / 64,
                "latency_iqr_ms": 0.01,
                "peak_mem_bytes": 1000 * n,
                "rel_err": 1e-7,
            }
            case = Case(variant, (), 1, 2, n, 16, threads=1, causal=n == 64)
            records.append(make_record(case, Outcome("ok", metrics=metrics, env={"threads": 1}), "ci"))
    return records


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), INTS, FLOATS, STRINGS),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(STRINGS, inner, max_size=3)),
    max_leaves=6,
)
FIELDS = list(TOP_FIELDS)
CASE_FIELDS = [k for k in SCHEMA_CASE_FIELDS if k != "task"]
METRIC_NAMES = [
    "latency_ms",
    "latency_iqr_ms",
    "peak_mem_bytes",
    "rel_err",
    "tokens_per_s",
    "flops",
    "compiles",
]


ENV_FIELDS = ["device_name", "torch", "git_revision", "hostname", "threads"]


@st.composite
def mutated_record(draw) -> dict:
    rec = json.loads(json.dumps(draw(st.sampled_from(good_records()))))
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.sampled_from(["top", "case", "case-drop", "metrics", "env", "drop"]))
        part = {"case": "case", "case-drop": "case", "metrics": "metrics", "env": "env"}.get(where)
        if part and not isinstance(rec.get(part), dict):
            continue
        if where == "top":
            rec[draw(st.sampled_from(FIELDS))] = draw(JSON)
        elif where == "case":
            rec["case"][draw(st.sampled_from([*CASE_FIELDS, "task"]))] = draw(JSON)
        elif where == "case-drop":
            rec["case"].pop(draw(st.sampled_from(CASE_FIELDS)), None)
        elif where == "metrics":
            rec["metrics"][draw(st.sampled_from(METRIC_NAMES))] = draw(JSON)
        elif where == "env":
            rec["env"][draw(st.sampled_from(ENV_FIELDS))] = draw(JSON)
        else:
            rec.pop(draw(st.sampled_from(FIELDS)), None)
    return rec


def line(draw) -> str:
    kind = draw(st.integers(0, 9))
    if kind < 7:
        return json.dumps(draw(mutated_record()))
    if kind < 9:
        return json.dumps(draw(JSON))
    return draw(st.text(max_size=20)).replace("\n", " ")


def cut(draw, text: str) -> str:
    if text and draw(st.integers(0, 4)) == 0:
        return text[: draw(st.integers(0, len(text)))]  # cut short by a kill
    return text


@st.composite
def results_pairs(draw) -> tuple[str, str]:
    """A baseline and a current results file; half the time the current one is the baseline
    with some lines replaced, so the two share cases and the gate compares them."""
    base = [line(draw) for _ in range(draw(st.integers(0, 8)))]
    if base and draw(st.booleans()):
        current = [line(draw) if draw(st.integers(0, 2)) == 0 else old for old in base]
    else:
        current = [line(draw) for _ in range(draw(st.integers(0, 8)))]
    return cut(draw, "\n".join(base)), cut(draw, "\n".join(current))


COMMANDS = st.sampled_from(
    ["show", "show", "show-metric", "show-where", "compare", "compare", "report", "plot"]
)


def check_results(files: tuple[str, str], command: str, metric: str) -> None:
    base, current = files
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "a.jsonl", Path(tmp) / "b.jsonl"
        a.write_text(base)
        b.write_text(current)
        skipped: list[str] = []
        records = read_records(a, warn=skipped.append)  # the parser itself: never raises
        assert len(records) + len(skipped) == sum(1 for line in base.encode().splitlines() if line.strip())
        args = {
            "show": ["show", a],
            "show-metric": ["show", a, b, "--metric", metric, "--format", "csv"],
            "show-where": ["show", a, "--where", f"{metric}=1", "--format", "md"],
            "compare": ["compare", a, b],
            "report": ["report", a, "-o", Path(tmp) / "r.html"],
            "plot": ["show", a, "--metric", metric, "--plot", Path(tmp) / "f.png"],
        }[command]
        assert_clean(*cli(*args), verdict=command == "compare")


METRICS = st.sampled_from([*METRIC_NAMES, "wall_s", "seq_len", "nope"])


def without_length(record: dict) -> dict:
    """`record` as a hand edit leaves it: the same case id, its length gone."""
    return record | {"case": {k: v for k, v in record["case"].items() if k != "seq_len"}}


# found by this test in a fresh checkout: a record that lost its length broke the report's titles
FIRST = good_records()[0]
LENGTH_LOST = "\n".join(json.dumps(r) for r in (FIRST, without_length(FIRST)))
ONLY_LENGTH_LOST = json.dumps(without_length(FIRST))


@DEFAULT
@given(results_pairs(), COMMANDS, METRICS)
@example((LENGTH_LOST, ""), "report", "latency_ms")
@example((ONLY_LENGTH_LOST, ""), "report", "latency_ms")
def test_hostile_results_files_end_in_exit_0_or_one_line_and_exit_2(files, command, metric):
    check_results(files, command, metric)


@pytest.mark.slow
@THOROUGH
@given(results_pairs(), COMMANDS, METRICS)
def test_hostile_results_files_end_in_exit_0_or_one_line_and_exit_2_thoroughly(files, command, metric):
    check_results(files, command, metric)
