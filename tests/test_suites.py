from __future__ import annotations

from pathlib import Path

import pytest

from attnbench.errors import UserError
from attnbench.suites import SUITE_DIRS, find_suite, load_suite

GOOD = """
[suite]
description = "test"
timeout_s = 30
metrics = ["time", "memory"]

[sweep]
variants = ["softmax.naive", "softmax.sdpa_*"]
seq_len = [128, 256, 4096]
causal = [false, true]
threads = [1]

[limits."softmax.naive"]
max_seq_len = 256
"""


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_suite_expands_to_the_product_of_its_axes_within_limits(tmp_path):
    suite = load_suite(str(write(tmp_path, GOOD)))
    cases = suite.cases()
    naive = [c for c in cases if c.variant == "softmax.naive"]
    assert sorted({c.seq_len for c in naive}) == [128, 256]  # the limit dropped 4096
    sdpa = [c for c in cases if c.variant.startswith("softmax.sdpa_")]
    assert len(sdpa) == 4 * 3 * 2  # 4 pinned backends × 3 lengths × 2 causal
    assert len({c.id for c in cases}) == len(cases)
    assert suite.settings.metrics == ("time", "memory") and suite.timeout_s == 30


def test_only_and_device_narrow_the_sweep(tmp_path):
    suite = load_suite(str(write(tmp_path, GOOD)))
    cases = suite.cases(only="softmax.sdpa_math", device="cuda")
    assert {c.variant for c in cases} == {"softmax.sdpa_math"} and {c.device for c in cases} == {"cuda"}


def test_parameter_sweep_for_a_variant_without_that_parameter_is_an_error(tmp_path):
    path = write(tmp_path, GOOD + '\n[params."softmax.naive"]\nwindow = [1, 2]\n')
    with pytest.raises(UserError, match=r"s\.toml:\d+: softmax.naive has no parameter 'window'"):
        load_suite(str(path)).cases()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("seq_len = [128, 256, 4096]", "seqlen = [128]"),
            r"s\.toml:9: unknown sweep axis 'seqlen' \(did you mean 'seq_len'\?\)",
        ),
        (
            ("seq_len = [128, 256, 4096]", "seq_len = [128, -4]"),
            r"s\.toml:9: seq_len must be a positive integer, got -4",
        ),
        (("causal = [false, true]", 'causal = ["yes"]'), r"s\.toml:10: causal must be true or false"),
        (("timeout_s = 30", 'timeout_s = "long"'), r"s\.toml:4: \[suite\] timeout_s has the wrong type"),
        (
            ("timeout_s = 30", "timout_s = 30"),
            r"s\.toml:4: unknown key 'timout_s' in \[suite\] \(did you mean 'timeout_s'\?\)",
        ),
        (('"time", "memory"', '"time", "speed"'), r"s\.toml:5: unknown metric group 'speed'"),
        (("max_seq_len = 256", "max_seqlen = 256"), r"s\.toml:14: unknown limit 'max_seqlen'"),
        (
            ('variants = ["softmax.naive", "softmax.sdpa_*"]', 'variants = ["softmax.nope"]'),
            r"s\.toml:8: no variant matches 'softmax.nope'",
        ),
        (
            ("seq_len = [128, 256, 4096]", "seq_len = 128 256"),
            r"s\.toml:9:15: malformed TOML: Expected newline",
        ),
        (("[sweep]", "[swep]"), r"s\.toml:7: unknown table \[swep\]"),
    ],
    ids=[
        "axis-name",
        "negative",
        "causal",
        "type",
        "key-name",
        "metric",
        "limit",
        "variant",
        "toml",
        "table",
    ],
)
def test_broken_suite_names_file_line_and_key(tmp_path, edit, message):
    path = write(tmp_path, GOOD.replace(*edit))
    with pytest.raises(UserError, match=message):
        load_suite(str(path)).cases()


def test_unknown_suite_lists_the_known_ones():
    with pytest.raises(UserError, match=r"no suite 'nope'; known suites: .*ci.*speed"):
        find_suite("nope")
    with pytest.raises(UserError, match="did you mean 'speed'"):
        find_suite("sped")


@pytest.mark.parametrize("path", sorted(SUITE_DIRS[1].glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_suites_load_and_expand(path):
    suite = load_suite(str(path))
    cases = suite.cases()
    assert cases and suite.description
    assert all(c.threads >= 1 for c in cases)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("timeout_s = 0", "[suite] timeout_s must be above 0, not 0"),
        ("timeout_s = -5", "[suite] timeout_s must be above 0, not -5"),
        ("timeout_s = nan", "[suite] timeout_s must be a finite number, not nan"),
        ("budget_s = -1", "[suite] budget_s must be above 0, not -1"),
        ("warmup = -1", "[suite] warmup must be at least 0, not -1"),
        ("min_samples = 0", "[suite] min_samples must be at least 1, not 0"),
        ("min_run_time_s = -0.5", "[suite] min_run_time_s must be at least 0, not -0.5"),
    ],
)
def test_suite_numbers_out_of_range_are_refused_when_parsed_naming_the_key(tmp_path, line, message):
    path = write(tmp_path, f'[suite]\n{line}\n[sweep]\nvariants = ["softmax.naive"]\n')
    with pytest.raises(UserError) as error:
        load_suite(str(path))
    assert str(error.value) == f"{path}:2: {message}"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            '[params."softmax.*"]\nposition = ["none", "<script>"]',
            "softmax.naive: position must be one of none, ",
        ),
        ('[params."linear.*"]\nchunk = [64, 0]', "linear.elu: chunk must be at least 1, not 0"),
        ('[params."linear.*"]\nrule = "deltaa"', "linear.elu: rule must be one of sum, delta, not 'deltaa'"),
        (
            '[params."linear.favor"]\nredraw = 1',
            'linear.favor: redraw must be false, true or "always", not 1',
        ),
        ('[params."linear.favor"]\nm = "64"', "linear.favor: m must be an integer, not '64'"),
        ('[params."sparse.local"]\nwindow = [0]', "sparse.local: window must be at least 1, not 0"),
    ],
    ids=["position", "chunk", "rule", "bool", "int", "window"],
)
def test_variant_parameter_values_are_checked_when_the_suite_is_parsed(tmp_path, params, message):
    path = write(
        tmp_path,
        '[sweep]\nvariants = ["softmax.naive", "linear.elu", "linear.favor", "sparse.local"]\n'
        f"seq_len = [64]\n\n{params}\n",
    )
    with pytest.raises(UserError) as error:
        load_suite(str(path))  # no case expanded, none run
    assert str(error.value).startswith(f"{path}:6: {message}")
