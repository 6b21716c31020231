"""The task seam: a task defined in a plugin file (the example of docs/adding-a-task.md) joins `run`, `show`
and the report with no other edit, and every task says which of its parameters are seeded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from attnbench.tasks import all_tasks

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "copy_task.py"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "attnbench", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_the_docs_show_the_example_task_as_it_is():
    page = (REPO / "docs" / "adding-a-task.md").read_text()
    assert EXAMPLE.read_text().strip() in page


def test_a_plugin_task_runs_shows_and_reports_with_no_other_edit(tmp_path):
    suite = tmp_path / "copy.toml"
    suite.write_text(
        '[task]\nname = "copy"\nmax_steps = 20\neval_every = 10\n'
        '[sweep]\nvariants = ["softmax.sdpa", "linear.elu"]\nthreads = [1]\n'
    )
    out = tmp_path / "copy.jsonl"
    # a subprocess worker imports the plugin too: the path travels in ATTNBENCH_PLUGINS
    run = cli("run", "--plugin", str(EXAMPLE), "--suite", str(suite), "-o", str(out), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "copy accuracy after training" in run.stdout
    assert "softmax.sdpa" in run.stdout and "linear.elu" in run.stdout and "2 ok" in run.stdout

    show = cli("show", str(out), "--plugin", str(EXAMPLE), "--format", "csv", cwd=tmp_path)
    assert show.returncode == 0, show.stderr
    header, *rows = show.stdout.strip().splitlines()
    assert header.split(",")[:2] == ["label", "status"] and "accuracy" in header and "best_loss" in header
    assert sorted(r.split(",")[0] for r in rows) == ["linear.elu", "softmax.sdpa"]

    report = cli("report", str(out), "--plugin", str(EXAMPLE), "-o", str(tmp_path / "r.html"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    html = (tmp_path / "r.html").read_text()
    assert "Task: copy" in html and "copy accuracy after training" in html


def test_results_of_a_task_not_loaded_here_still_show_with_the_generic_table(tmp_path):
    suite = tmp_path / "copy.toml"
    suite.write_text(
        '[task]\nname = "copy"\nmax_steps = 10\neval_every = 10\n[sweep]\nvariants = ["softmax.sdpa"]\n'
    )
    out = tmp_path / "copy.jsonl"
    assert cli("run", "--plugin", str(EXAMPLE), "--suite", str(suite), "-o", str(out), "--executor", "inline",
               cwd=tmp_path).returncode == 0  # fmt: skip
    show = cli("show", str(out), cwd=tmp_path)
    assert show.returncode == 0, show.stderr
    assert "softmax.sdpa" in show.stdout and "accuracy" in show.stdout


@pytest.mark.parametrize("task", all_tasks(), ids=lambda t: t.name)
def test_every_task_declares_its_unseeded_parameters_among_its_own(task):
    assert set(task.unseeded) <= set(task.params), set(task.unseeded) - set(task.params)
    assert task.title, f"task {task.name} has no table title"


def test_a_stopping_parameter_does_not_change_the_seed_but_a_trained_one_does():
    from attnbench.cases import Case
    from attnbench.tasks import get_task

    retrieval = get_task("retrieval")
    case = Case("linear.elu")
    p = retrieval.resolve_params({})
    assert retrieval.run_seed(case, p) == retrieval.run_seed(case, {**p, "max_steps": 7, "patience": 1})
    assert retrieval.run_seed(case, p) != retrieval.run_seed(case, {**p, "lr": 0.5})
    assert retrieval.run_seed(case, p) != retrieval.run_seed(case, {**p, "seed": 1})
