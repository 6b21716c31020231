"""The results file of a run: refused up front when it cannot be written, held against a
second run, never resumed across suites; a write that fails mid-run is one line."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from attnbench.cli import main
from attnbench.runner import sweep


def run_args(suite: Path, out: Path | str, *extra: str) -> list[str]:
    return ["run", "--suite", str(suite), "-o", str(out), "--executor", "inline", *extra]


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("/dev/full", "the results file /dev/full is not a regular file"),
        (
            "{tmp}/afile/x.jsonl",
            "cannot write the results file {tmp}/afile/x.jsonl: {tmp}/afile is a file, not a folder",
        ),
        ("{tmp}", "cannot write the results file {tmp}: Is a directory"),
        ("/proc/attnbench/x.jsonl", "cannot create the folder of the results file /proc/attnbench/x.jsonl"),
    ],
    ids=["device", "under-a-file", "a-folder", "read-only-fs"],
)
def test_unwritable_output_is_one_line_and_exit_2_before_any_case(
    tmp_path, tiny_suite, user_error, out, message
):
    (tmp_path / "afile").write_text("")
    out = out.format(tmp=tmp_path)
    assert user_error(*run_args(tiny_suite, out)).startswith(message.format(tmp=tmp_path))
    assert not (tmp_path / "tiny.log").exists() and not Path(out).with_suffix(".log").is_file()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_in_a_read_only_folder_is_refused_before_any_case(tmp_path, tiny_suite, user_error):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    line = user_error(*run_args(tiny_suite, folder / "r.jsonl"))
    assert line == f"cannot write the results file {folder}/r.jsonl: Permission denied"


def test_worker_log_that_cannot_be_written_is_refused_before_any_case(tmp_path, tiny_suite, user_error):
    out = tmp_path / "r.jsonl"
    (tmp_path / "r.log").mkdir()  # where the workers' log would go
    assert (
        user_error(*run_args(tiny_suite, out))
        == f"cannot write the worker log {tmp_path}/r.log: Is a directory"
    )
    assert not out.exists()  # refused before any case: no empty results file is left behind


def test_a_write_that_fails_mid_run_is_one_line_and_keeps_what_was_written(
    tmp_path, tiny_suite, capsys, monkeypatch
):
    from attnbench.results import store

    writes = []

    def fsync(fd: int) -> None:
        writes.append(fd)
        if len(writes) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "fsync", fsync)
    out = tmp_path / "r.jsonl"
    assert main(run_args(tiny_suite, out)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (
        err.strip().splitlines()[-1]
        == f"attnbench: error: cannot write results to {out}: No space left on device"
    )
    assert len(lines(out)) >= 1  # the first record stays (the second may be on disk unsynced)


def test_a_second_run_on_a_held_results_file_is_refused_naming_the_holder(tmp_path, tiny_suite, user_error):
    out = tmp_path / "r.jsonl"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(out)!r}, os.O_WRONLY | os.O_CREAT | os.O_APPEND)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        line = user_error(*run_args(tiny_suite, out, "--resume"))
    finally:
        holder.kill()
        holder.wait()
    assert line.startswith(f"{out} is being written by ")
    if Path("/proc/locks").exists():
        assert f"process {holder.pid} (" in line
    assert line.endswith(": wait for it, or -o another file")
    assert out.read_text() == ""  # nothing ran, nothing written
    # the kernel dropped the lock with its holder: the run goes ahead, every case once
    assert main(run_args(tiny_suite, out, "--resume")) == 0
    ids = [r["case_id"] for r in lines(out)]
    assert len(ids) == 4 == len(set(ids))


def test_resume_into_another_suites_file_is_refused_naming_both(tmp_path, tiny_suite, user_error):
    out = tmp_path / "r.jsonl"
    assert main(run_args(tiny_suite, out)) == 0
    other = tmp_path / "other.toml"
    other.write_text(tiny_suite.read_text())
    before = out.read_text()
    line = user_error(*run_args(other, out, "--resume"))
    assert line == (
        f"--resume: {out} holds results of suite 'tiny', not 'other': "
        "resume it with --suite tiny, or -o a new file"
    )
    assert out.read_text() == before


def test_resumed_run_says_how_many_cases_were_already_done(tmp_path, tiny_suite, capsys):
    out = tmp_path / "r.jsonl"
    assert main(run_args(tiny_suite, out, "--only", "softmax.naive", "--shard", "0/2")) == 0
    capsys.readouterr()
    assert main(run_args(tiny_suite, out, "--resume")) == 0
    assert f"tiny: 4 cases (2 already done, 2 to run) → {out}" in capsys.readouterr().err


def test_resume_without_a_path_continues_this_suites_newest_file_only(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "RESULTS_DIR", tmp_path)
    mine, theirs = tmp_path / "speed-20260101-120000.jsonl", tmp_path / "speed-gpu-20260102-120000.jsonl"
    for path in (mine, theirs):
        path.write_text("")
    os.utime(mine, (1, 1))  # older than the other suite's file
    assert sweep.default_results_path("speed", resume=True) == mine


def test_shards_started_together_get_their_own_default_results_files(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "RESULTS_DIR", tmp_path)
    paths = [sweep.default_results_path("speed", resume=False, shard=f"{i}/3") for i in range(3)]
    assert [p.name[-16:] for p in paths] == ["-shard0of3.jsonl", "-shard1of3.jsonl", "-shard2of3.jsonl"]
    done = sweep.default_results_path("speed", resume=False, shard="1/3")
    done.write_text("")
    assert sweep.default_results_path("speed", resume=True, shard="1/3") == done


def test_a_results_line_from_a_corrupt_resume_is_a_one_line_warning_not_a_python_warning(
    tmp_path, tiny_suite, capsys
):
    out = tmp_path / "r.jsonl"
    assert main(run_args(tiny_suite, out, "--shard", "0/2")) == 0
    with open(out, "a") as f:
        f.write("{cut short\n")
    capsys.readouterr()
    assert main(run_args(tiny_suite, out, "--resume")) == 0
    err = capsys.readouterr().err
    assert f"warning: {out}:3: skipped a line that is not JSON" in err
    assert "UserWarning" not in err and "warnings.warn" not in err
