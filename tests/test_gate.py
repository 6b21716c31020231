"""The speed gate on replicates, on synthetic results: identical distributions raise no alarm
across many cases, a 30 % slowdown with small spread is caught and named, a slowdown under the
minimum effect is not, improvements are listed, too few replicates say so, and single-run
inputs say time cannot be judged reliably and fall back to the fixed band; within one job the
latencies themselves can be judged, the reference's too."""

from __future__ import annotations

import json
import random

from attnbench.cases import Case
from attnbench.cli import main
from attnbench.outcome import Outcome
from attnbench.results.store import make_record

LENGTHS = [128, 256, 512, 1024]
VARIANTS = ["softmax.sdpa", "softmax.naive", "softmax.sdpa_math", "linear.elu", "linear.dpfp", "sparse.local"]


def case(variant: str, n: int, mode: str) -> Case:
    return Case(variant, (), 1, 4, n, 64, "float32", "cpu", True, mode, 2)


def results(
    path,
    *,
    seed: int,
    rounds: int = 8,
    spread: float = 0.05,
    plant: dict | None = None,
    drift: int | None = None,
    drift_sd: float = 0.2,
) -> str:
    """A results file of 6 variants × 4 lengths × 2 modes (40 cases tested against the
    reference), `rounds` replicates each, latencies log-normal around a fixed ratio to the
    reference, with a machine drift per round shared by every case; `plant` scales the
    latency of (variant, n, mode) cases. Files given the same `drift` seed share the machine's
    drift round by round (log-normal, `drift_sd`), as both sides of one same-job A/B do."""
    rng = random.Random(seed)
    machine = rng if drift is None else random.Random(f"drift-{drift}")
    plant = plant or {}
    lines = []
    for r in range(rounds):
        drift = machine.lognormvariate(0, drift_sd)  # the machine this round: up to ±40 %
        for i, v in enumerate(VARIANTS):
            for n in LENGTHS:
                for mode in ("fwd", "fwd+bwd"):
                    ms = (1 + i) * n / 128 * drift * rng.lognormvariate(0, spread)
                    ms *= plant.get((v, n, mode), 1.0)
                    metrics = {"latency_ms": ms, "latency_iqr_ms": 0.02 * ms}
                    outcome = Outcome("ok", None, metrics)
                    lines.append(json.dumps(make_record(case(v, n, mode), outcome, "ci", round_=r)))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def gate(tmp_path, capsys, *extra: str, base: dict | None = None, current: dict | None = None):
    b = results(tmp_path / "base.jsonl", **({"seed": 1} | (base or {})))
    c = results(tmp_path / "cur.jsonl", **({"seed": 2} | (current or {})))
    capsys.readouterr()
    code = main(["compare", b, c, "--metrics", "time", *extra])
    return code, capsys.readouterr().out


def test_identical_distributions_across_many_cases_raise_no_alarm(tmp_path, capsys):
    for seed in (2, 3, 4):
        code, out = gate(tmp_path, capsys, current={"seed": seed})
        assert code == 0 and "no regression" in out, out
        assert "40 cases judged on their replicates (≥ 8 a side)" in out


def test_a_30_percent_slowdown_with_small_spread_is_caught_and_named(tmp_path, capsys):
    plant = {("linear.elu", 512, "fwd"): 1.3}
    code, out = gate(tmp_path, capsys, current={"plant": plant, "spread": 0.02}, base={"spread": 0.02})
    assert code == 1, out
    rows = [line for line in out.splitlines() if "REGRESSION" in line]
    assert len(rows) == 1 and "linear.elu" in rows[0] and "N512" in rows[0] and "fwd " in rows[0]
    assert "+3" in rows[0]  # the change, about +30 %, with its interval and corrected p beside it


def test_a_slowdown_under_the_minimum_effect_is_no_regression(tmp_path, capsys):
    plant = {("linear.elu", 512, "fwd"): 1.3}
    current = {"plant": plant, "spread": 0.02}
    code, out = gate(tmp_path, capsys, "--min-effect", "0.5", current=current, base={"spread": 0.02})
    assert code == 0 and "no regression" in out


def test_an_improvement_is_listed_not_fatal(tmp_path, capsys):
    plant = {("sparse.local", 1024, "fwd+bwd"): 0.6}
    code, out = gate(tmp_path, capsys, current={"plant": plant, "spread": 0.02}, base={"spread": 0.02})
    assert code == 0 and "sparse.local" in out and "-4" in out and "REGRESSION" not in out


def test_holm_is_stricter_than_benjamini_hochberg_when_several_cases_slow_down(tmp_path, capsys):
    plant = {("linear.dpfp", n, mode): 1.12 for n in LENGTHS for mode in ("fwd", "fwd+bwd")}
    kw = {"current": {"plant": plant, "spread": 0.03, "rounds": 6}, "base": {"spread": 0.03, "rounds": 6}}
    _, bh = gate(tmp_path, capsys, "--correction", "bh", **kw)
    _, holm = gate(tmp_path, capsys, "--correction", "holm", **kw)
    assert bh.count("REGRESSION") >= holm.count("REGRESSION")
    assert bh.count("REGRESSION") >= 1


def test_too_few_replicates_say_so(tmp_path, capsys):
    code, out = gate(tmp_path, capsys, current={"rounds": 3}, base={"rounds": 3})
    assert code == 0
    assert "with 3 replicates a side the smallest p-value is 0.05" in out and "--repeat 6 or more" in out


def test_single_run_inputs_cannot_judge_time_and_fall_back_to_the_band(tmp_path, capsys):
    plant = {("linear.elu", 512, "fwd"): 1.6}
    code, out = gate(tmp_path, capsys, current={"plant": plant, "rounds": 1}, base={"rounds": 1})
    assert code == 1, out
    assert "cannot be judged reliably" in out and "fall back to the fixed band" in out
    assert "1 run" in out and "linear.elu" in out


def test_within_one_job_the_latencies_are_judged_and_the_reference_too(tmp_path, capsys):
    # a machine that bursts call by call more than it drifts from one round to the next
    same_job = {"drift": 7, "drift_sd": 0.01, "spread": 0.05}
    code, out = gate(tmp_path, capsys, "--speed-as", "latency", base=same_job, current=same_job | {"seed": 3})
    assert code == 0 and "no regression" in out, out
    assert "48 cases judged on their replicates (≥ 8 a side): one-sided Mann–Whitney U on the latency" in out
    plant = {("softmax.sdpa", 256, "fwd+bwd"): 1.3}  # the reference: no ratio to it can show this
    current = same_job | {"seed": 3, "plant": plant}
    code, out = gate(tmp_path, capsys, "--speed-as", "latency", base=same_job, current=current)
    assert code == 1, out
    rows = [line for line in out.splitlines() if "REGRESSION" in line]
    assert len(rows) == 1 and "softmax.sdpa" in rows[0] and "N256" in rows[0] and " ms" in rows[0]
    code, out = gate(tmp_path, capsys, base=same_job, current=current)
    assert code == 0, out  # judged as ratios, the reference's own slowdown is invisible


def test_paired_by_round_a_slowdown_hidden_by_drift_between_rounds_is_found(tmp_path, capsys):
    """Both sides of one job share a machine that drifts ±20 % from round to round, far more
    than a 10 % slowdown: the unpaired test on latencies misses it, the rounds paired find it."""
    same_job = {"drift": 11, "drift_sd": 0.2, "spread": 0.01, "rounds": 10}
    plant = {("linear.elu", 512, "fwd"): 1.10}
    current = same_job | {"seed": 3, "plant": plant}
    code, out = gate(tmp_path, capsys, "--speed-as", "latency", base=same_job, current=current)
    assert code == 0, out
    code, out = gate(tmp_path, capsys, "--speed-as", "paired", base=same_job, current=current)
    assert code == 1, out
    assert "Wilcoxon signed-rank on the latency paired by round" in out
    rows = [line for line in out.splitlines() if "REGRESSION" in line]
    assert len(rows) == 1 and "linear.elu" in rows[0] and "N512" in rows[0] and "+1" in rows[0]
    code, out = gate(tmp_path, capsys, "--speed-as", "paired", base=same_job, current=same_job | {"seed": 3})
    assert code == 0 and "no regression" in out, out


def test_paired_with_too_few_rounds_says_how_many_it_needs(tmp_path, capsys):
    same_job = {"drift": 5, "rounds": 4}
    code, out = gate(tmp_path, capsys, "--speed-as", "paired", base=same_job, current=same_job | {"seed": 3})
    assert code == 0
    assert "with 4 replicates a side the smallest p-value is 0.062" in out and "--repeat 10 or more" in out
