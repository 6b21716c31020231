"""nox sessions. Each installs torch first from TORCH_SPEC (default: the CPU build pinned in
the README; set e.g. TORCH_SPEC="torch" on a GPU machine), then attnbench with its extras.

    nox -s tests      the default test run (CPU, under 10 minutes on 2 cores)
    nox -s slow       tests marked slow
    nox -s lint       ruff check and format check
    nox -s bench      benchmarks: pytest-benchmark over the registry (saved under .benchmarks, with
                      the 95 % interval of each median over its rounds and what disturbed it;
                      pass --benchmark-compare=NNNN --benchmark-compare-fail=median:20% to gate),
                      then timing agreement, isolation cost, linear vs softmax speed
    nox -s gate       the speed gate's error rates on this machine (hours; resumable):
                      benchmarks/gate_error_rates.py, arguments after --
    nox -s regress    run suites/ci.toml and compare it with results/baselines/ci-cpu.jsonl
    nox -s gpu        tests marked gpu (on a CUDA machine)
    nox -s ray        the Ray executor's tests, slow ones included (installs the `ray` extra)
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True
TORCH_SPEC = os.environ.get("TORCH_SPEC", "torch==2.13.0")


def install(session: nox.Session, extras: str = "dev") -> None:
    session.install(TORCH_SPEC)
    session.install("-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    install(session)
    session.run("pytest", *session.posargs)


@nox.session
def slow(session: nox.Session) -> None:
    install(session)
    session.run("pytest", "-m", "slow", *session.posargs)


@nox.session
def gpu(session: nox.Session) -> None:
    install(session, "dev,gpu")
    session.run("pytest", "-m", "gpu", *session.posargs)


@nox.session
def ray(session: nox.Session) -> None:
    """The Ray executor on a local Ray instance and a two-node test cluster."""
    install(session, "dev,ray")
    session.run("pytest", "-m", "ray", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def bench(session: nox.Session) -> None:
    install(session)
    session.run(
        "pytest",
        "benchmarks/test_registry_bench.py",
        "-p",
        "no:cacheprovider",
        "--benchmark-autosave",
        "--benchmark-columns=median,iqr,rounds",
        # the replicates: at least 10 rounds a variant after a warm-up, as `run --repeat` does
        "--benchmark-min-rounds=10",
        "--benchmark-warmup=on",
        "--benchmark-warmup-iterations=2",
        *session.posargs,
    )
    session.run("python", "benchmarks/timing_agreement.py", *session.posargs)
    session.run("python", "benchmarks/isolation_overhead.py")
    session.run("python", "benchmarks/linear_speed.py")


@nox.session
def gate(session: nox.Session) -> None:
    """False alarms of the speed gate on A/A jobs and its power against planted slowdowns,
    appended to benchmarks/results/gate_error_rates.jsonl job by job (run again to continue)."""
    install(session)
    session.run("python", "benchmarks/gate_error_rates.py", *session.posargs)


@nox.session
def regress(session: nox.Session) -> None:
    """The regression gate on this machine: the CI suite against the committed baseline
    (speed as ratios to softmax.sdpa, exact CPU memory, statuses)."""
    install(session)
    out = f"{session.create_tmp()}/ci-current.jsonl"
    session.run("attnbench", "run", "--suite", "ci", "--all", "-o", out)  # the baseline's cases
    session.run("attnbench", "compare", "results/baselines/ci-cpu.jsonl", out, *session.posargs)
