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
