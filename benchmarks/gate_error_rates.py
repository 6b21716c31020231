"""How often does the speed gate cry wolf, and how often does it catch a real slowdown?

Runs whole same-job A/B jobs (`attnbench compare --base HEAD~1 --suite gate`) on scratch
copies of this checkout, on this machine, and records each job's verdict:

- **A/A**: the head commit changes a comment only (the same code on both sides): any speed
  regression the gate reports is a false alarm;
- **planted slowdowns**: the head commit makes `softmax.naive` spin, after each forward call,
  for a share (10 %, 25 %, …) of that call's own measured time — the variant really is that
  much slower, however fast the machine is at that moment. The backward pass is left alone, so
  its fwd+bwd cases slow down by the share times its forward's part of the case; a job
  *catches* the slowdown when it reports a regression of any of the variant's cases.

Jobs run interleaved (A/A, then each slowdown, then A/A again, …), so a slow hour of the
machine lands on every kind alike. Each finished job appends one line to the JSONL (`--out`):
its kind, wall time, how busy the machine was before it, the verdict of every rule
configuration below, and every case's per-round latencies on both sides (enough to judge the
job again with another rule, offline). Stopping the script loses at most the job in flight;
run the same command again to continue. `--summary` prints (and writes beside the JSONL, as
.json) the false-alarm rate and the power of each configuration without running anything.

    python benchmarks/gate_error_rates.py [--jobs 20] [--slowdowns 0.10,0.25]
        [--suite gate] [--repeat R] [--variant softmax.naive]
        [--out benchmarks/results/gate_error_rates.jsonl] [--summary]

One job of the gate suite (6 cases, 8 rounds, both sides) took 22 s on the quiet 2-core VM
(20 jobs of each kind, A/A, 10 %, 25 %: 23 minutes) and about a minute while other agents' jobs
kept it loaded (load average 13-17). `--keep DIR` keeps each job's base/head results;
`--keep DIR --rejudge` judges them again with the rules of CONFIGS (added ones too). Needs git.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from attnbench.cases import describe  # noqa: E402
from attnbench.measure.noise import others_busy  # noqa: E402
from attnbench.report.compare import Rules, compare  # noqa: E402
from attnbench.results import load_results  # noqa: E402

# the rules judged on every job: the interactive default, what .ci/speed-gate uses, and the
# rules around them it was chosen from
CONFIGS = {
    "interactive": Rules(metrics=("time",)),
    # what .ci/speed-gate uses, chosen from these campaigns (docs/timing.md): the latencies
    # paired round by round, Holm, α 0.05, 5 % minimum effect
    "ci": Rules(alpha=0.05, min_effect=0.05, correction="holm", speed="paired", metrics=("time",)),
    "holm-a0.01-e10": Rules(alpha=0.01, min_effect=0.10, correction="holm", metrics=("time",)),
    "bh-a0.01-e10": Rules(alpha=0.01, min_effect=0.10, correction="bh", metrics=("time",)),
    "bh-a0.05-e10": Rules(alpha=0.05, min_effect=0.10, correction="bh", metrics=("time",)),
    "holm-a0.05-e5": Rules(alpha=0.05, min_effect=0.05, correction="holm", metrics=("time",)),
    "holm-a0.01-e5": Rules(alpha=0.01, min_effect=0.05, correction="holm", metrics=("time",)),
    "holm-a0.001-e10": Rules(alpha=0.001, min_effect=0.10, correction="holm", metrics=("time",)),
    # the replicates' latencies instead of their ratios to softmax.sdpa (same-job A/B only)
    "latency-bh-a0.05-e5": Rules(speed="latency", metrics=("time",)),
    "latency-holm-a0.05-e5": Rules(alpha=0.05, correction="holm", speed="latency", metrics=("time",)),
    "latency-holm-a0.05-e10": Rules(
        alpha=0.05, min_effect=0.10, correction="holm", speed="latency", metrics=("time",)
    ),
    "latency-holm-a0.01-e5": Rules(alpha=0.01, correction="holm", speed="latency", metrics=("time",)),
    "latency-holm-a0.01-e10": Rules(
        alpha=0.01, min_effect=0.10, correction="holm", speed="latency", metrics=("time",)
    ),
    # the latencies paired round by round (Wilcoxon signed-rank; same-job A/B only)
    "paired-bh-a0.05-e5": Rules(alpha=0.05, correction="bh", speed="paired", metrics=("time",)),
    "paired-holm-a0.05-e3": Rules(
        alpha=0.05, min_effect=0.03, correction="holm", speed="paired", metrics=("time",)
    ),
    "paired-holm-a0.01-e5": Rules(alpha=0.01, correction="holm", speed="paired", metrics=("time",)),
}
COMMENT = "# a comment, nothing else (A/A: the same code on both sides)\n"
PLANT = """

# planted by benchmarks/gate_error_rates.py: each forward spins for {share} of its own time
def _planted(attend):
    import time

    def slower(self, *args, **kwargs):
        start = time.perf_counter()
        out = attend(self, *args, **kwargs)
        end = start + (1 + {share}) * (time.perf_counter() - start)
        while time.perf_counter() < end:
            pass
        return out

    return slower


{cls}.attend = _planted({cls}.attend)
"""
VARIANT_FILES = {"softmax.naive": ("attnbench/variants/softmax/naive.py", "NaiveSoftmax")}


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "gate", "GIT_AUTHOR_EMAIL": "gate@attnbench",
           "GIT_COMMITTER_NAME": "gate", "GIT_COMMITTER_EMAIL": "gate@attnbench"}  # fmt: skip
    done = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def scratch_repo(dest: Path, kind: str, share: float, variant: str) -> Path:
    """A copy of this checkout (tracked and untracked files git does not ignore) as a fresh
    repository of two commits: the checkout, then the change of `kind` on top."""
    files = git(ROOT, "ls-files", "-co", "--exclude-standard").splitlines()
    for name in files:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "base")
    path, cls = VARIANT_FILES[variant]
    target = dest / path
    change = COMMENT if kind == "aa" else PLANT.format(share=share, cls=cls)
    target.write_text(target.read_text() + change)
    git(dest, "commit", "-qam", kind)
    return dest


def kinds(slowdowns: list[float]) -> dict[str, float]:
    """Job kinds and their planted share: `aa` (none) and `slow10`, `slow25`, …"""
    return {"aa": 0.0, **{f"slow{round(100 * s)}": s for s in slowdowns}}


def run_job(repo: Path, suite: str, repeat: int | None, out: Path) -> tuple[int, float, str]:
    """One A/B job in `repo` (HEAD~1 against HEAD): exit code, wall seconds, output tail."""
    command = [sys.executable, "-m", "attnbench", "compare", "--base", "HEAD~1", "--suite", suite,
               "-o", str(out), "--metrics", "time,status"]  # fmt: skip
    if repeat:
        command += ["--repeat", str(repeat)]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
    return proc.returncode, time.perf_counter() - start, (proc.stdout + proc.stderr)[-2000:]


def judge(out: Path, variant: str) -> dict[str, Any]:
    """Every configuration's verdict on one job's results, and the raw per-round latencies."""
    base, head = load_results(out / "base.jsonl"), load_results(out / "head.jsonl")
    verdicts = {}
    for name, rules in CONFIGS.items():
        changes = compare(base, head, rules).changes
        flagged = sorted(c.case for c in changes if c.regression and c.kind == "speed")
        verdicts[name] = {
            "regressions": flagged,
            "planted_caught": any(case.split(" ", 1)[0] == variant for case in flagged),
            "others_flagged": [case for case in flagged if case.split(" ", 1)[0] != variant],
        }
    latencies: dict[str, dict[str, Any]] = {}
    for side, df in (("base", base), ("head", head)):
        for _, row in df[df["status"] == "ok"].iterrows():
            rounds, medians = row.get("replicate_rounds"), row.get("latency_replicates_ms")
            entry = latencies.setdefault(row["case_id"], {"case": describe(row)})
            entry[side] = dict(zip(rounds, medians, strict=True)) if isinstance(rounds, list) else {}
    flags = head["flags"].fillna("").str.split(",")
    disturbed = float(flags.map(lambda f: "contended" in f or "page_faults" in f).mean())
    return {"verdicts": verdicts, "latencies": latencies, "disturbed_share": round(disturbed, 3)}


def rejudge(path: Path, keep: Path, variant: str) -> int:
    """Judge every job of the JSONL whose results `--keep` kept again, with today's CONFIGS
    (rules added after the campaign); returns how many jobs were judged again."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    again = 0
    for row in rows:
        out = keep / f"{row['kind']}-{row['job']}"
        if (out / "base.jsonl").exists() and (out / "head.jsonl").exists():
            row["verdicts"] = judge(out, variant)["verdicts"]
            again += 1
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return again


def done_jobs(path: Path) -> set[tuple[str, int]]:
    if not path.exists():
        return set()
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["kind"], r["job"]) for r in rows}


def summary(path: Path, variant: str) -> dict[str, Any]:
    """False alarms on A/A jobs and catches of each planted slowdown, per configuration."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out: dict[str, Any] = {"jobs": len(rows), "variant": variant, "configs": {}}
    walls = sorted(r["wall_s"] for r in rows)
    out["job_wall_s"] = {"median": walls[len(walls) // 2], "max": walls[-1]} if walls else {}
    for name in CONFIGS:
        per_kind: dict[str, Any] = {}
        for kind in sorted({r["kind"] for r in rows}):
            mine = [r for r in rows if r["kind"] == kind and name in r["verdicts"]]
            if kind == "aa":
                alarms = sum(bool(r["verdicts"][name]["regressions"]) for r in mine)
                per_kind[kind] = {"jobs": len(mine), "false_alarm_jobs": alarms}
            else:
                caught = sum(r["verdicts"][name]["planted_caught"] for r in mine)
                stray = sum(bool(r["verdicts"][name]["others_flagged"]) for r in mine)
                per_kind[kind] = {"jobs": len(mine), "caught": caught, "jobs_flagging_other_cases": stray}
        out["configs"][name] = {"rules": vars(CONFIGS[name]) | {"metrics": "time"}, "by_kind": per_kind}
    return out


def print_summary(result: dict[str, Any]) -> None:
    print(f"{result['jobs']} jobs; job wall time {result.get('job_wall_s')}")
    for name, conf in result["configs"].items():
        cells = []
        for kind, v in conf["by_kind"].items():
            if kind == "aa":
                cells.append(f"A/A false alarms {v['false_alarm_jobs']}/{v['jobs']} jobs")
            else:
                cells.append(f"{kind} caught {v['caught']}/{v['jobs']}")
        print(f"{name}: " + ", ".join(cells))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20, help="jobs of each kind (default 20)")
    parser.add_argument("--slowdowns", default="0.10,0.25", help="planted shares, comma-separated")
    parser.add_argument("--suite", default="gate")
    parser.add_argument("--repeat", type=int, help="rounds per job (default: the suite's repeat)")
    parser.add_argument("--variant", default="softmax.naive", choices=sorted(VARIANT_FILES))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/gate_error_rates.jsonl")
    parser.add_argument("--keep", type=Path, help="keep each job's base/head results under this folder")
    parser.add_argument("--summary", action="store_true", help="only summarise the JSONL so far")
    parser.add_argument("--rejudge", action="store_true", help="judge the kept jobs again with every rule")
    args = parser.parse_args()
    if shutil.which("git") is None:
        print("needs git", file=sys.stderr)
        return 2
    if args.rejudge:
        if args.keep is None:
            print("--rejudge needs --keep DIR, the folder the campaign kept its jobs in", file=sys.stderr)
            return 2
        print(f"{rejudge(args.out, args.keep, args.variant)} jobs judged again")
    elif not args.summary:
        slowdowns = [float(s) for s in args.slowdowns.split(",") if s.strip()]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        done = done_jobs(args.out)
        revision = git(ROOT, "rev-parse", "HEAD")
        with tempfile.TemporaryDirectory(prefix="attnbench-gate-") as tmp:
            repos = {
                kind: scratch_repo(Path(tmp) / kind, kind, share, args.variant)
                for kind, share in kinds(slowdowns).items()
            }
            for job in range(args.jobs):
                for kind, share in kinds(slowdowns).items():
                    if (kind, job) in done:
                        continue
                    out = (args.keep or Path(tmp) / "runs") / f"{kind}-{job}"
                    shutil.rmtree(out, ignore_errors=True)
                    busy = others_busy()
                    code, wall, tail = run_job(repos[kind], args.suite, args.repeat, out)
                    if code not in (0, 1):
                        print(f"{kind} job {job}: attnbench exited {code}:\n{tail}", file=sys.stderr)
                        return 1
                    row = {"kind": kind, "share": share, "job": job, "suite": args.suite,
                           "repeat": args.repeat, "revision": revision, "wall_s": round(wall, 1),
                           "others_busy_before": busy, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                           **judge(out, args.variant)}  # fmt: skip
                    with args.out.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    verdict = {n: len(v["regressions"]) for n, v in row["verdicts"].items()}
                    print(
                        f"{kind} job {job}: {wall:.0f} s, regressions per configuration {verdict}", flush=True
                    )
    result = summary(args.out, args.variant)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print_summary(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
