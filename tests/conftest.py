"""Shared fixtures. Tests run on CPU; calibration and the compile cache write into a
temporary directory, never the user's ~/.cache."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # Triton kernels run on CPU in its interpreter; it must be set before triton is imported
    os.environ.setdefault("TRITON_INTERPRET", "1")

PLUGIN_DIR = Path(__file__).parent / "plugins"
sys.path.insert(0, str(PLUGIN_DIR))
# subprocess workers and CLI runs started by tests import the test-only variants too
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(PLUGIN_DIR), os.environ.get("PYTHONPATH")) if p)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["ATTNBENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("attnbench-cache"))


@pytest.fixture(autouse=True)
def _dynamo_settings_of_its_own():
    """Every test starts from the harness's default torch.compile settings (a recompile limit
    sized for a sweep, and an error rather than a silent eager fall-back past it) and leaves
    them as it found them. A case run in this process (the inline executor, the CLI) sets its
    suite's limit for the whole process (`compile_guard.configure`): a limit of 8, left by a
    property test's drawn suite, failed 35 FlexAttention tests later in one CI run, and
    dynamo's own default would let them fall back to eager unseen."""
    import torch._dynamo  # here, not at the top: it imports triton, after TRITON_INTERPRET is set

    from attnbench.measure import compile_guard
    from attnbench.measure.settings import MeasureSettings

    with torch._dynamo.config.patch(**compile_guard.configured()):  # put back on exit
        compile_guard.configure(MeasureSettings().recompile_limit)
        yield


@pytest.fixture
def one_thread():
    """Train on one thread: the tiny models of the task tests gain nothing from two, and on
    shared cores two OpenMP threads wait on each other (seen: a 300-step retrieval run in
    1.5 s on one thread, 45 s on two, with other jobs on the machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def faulty_variants():
    """Register the test-only variants that misbehave (OOM, crash, hang); remove them after."""
    import attnbench_testing_variants as plugin

    from attnbench.registry import PLUGINS_ENV, REGISTRY

    REGISTRY.discover()
    plugin.register_all()
    old = os.environ.get(PLUGINS_ENV)
    os.environ[PLUGINS_ENV] = "attnbench_testing_variants"
    yield plugin
    for name in plugin.NAMES:
        REGISTRY.unregister(name)
    if old is None:
        os.environ.pop(PLUGINS_ENV, None)
    else:
        os.environ[PLUGINS_ENV] = old


@pytest.fixture
def drawn(monkeypatch):
    """What each figure drawn during the test holds, panel by panel: title, axis labels and
    scales, legend entries and line count (read when the figure is saved)."""
    from attnbench.report import figures

    captured: list[dict] = []
    real = figures.save

    def spy(fig, ax, path, **kw):
        out = real(fig, ax, path, **kw)
        panels = []
        for a in fig.axes:
            legend = a.get_legend()
            panels.append(
                {
                    "title": a.get_title(),
                    "xlabel": a.get_xlabel(),
                    "ylabel": a.get_ylabel(),
                    "xscale": a.get_xscale(),
                    "yscale": a.get_yscale(),
                    "legend": [t.get_text() for t in legend.get_texts()] if legend else [],
                    "lines": len(a.get_lines()),
                }
            )
        suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
        captured.append({"path": out, "panels": panels, "suptitle": suptitle})
        return out

    monkeypatch.setattr(figures, "save", spy)
    return captured


@pytest.fixture
def user_error(capsys):
    """`user_error(*args)` runs `attnbench ARGS…` in this process, checks that it ended as a
    user error (exit 2, exactly one line on stderr, no traceback) and returns that line."""
    from attnbench.cli import main

    def run(*args: str) -> str:
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's own errors (a bad flag) leave through SystemExit
            code = e.code
        err = capsys.readouterr().err
        assert code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        prefix = re.match(r"attnbench( \w+)?: error: ", lines[0])
        assert prefix, err
        return lines[0][prefix.end() :]

    return run


TINY_SUITE = """
[suite]
min_run_time_s = 0.01
calibrate = false
metrics = ["time"]
[sweep]
variants = ["softmax.naive"]
seq_len = [32, 48, 64, 80]
heads = [2]
d_head = [16]
threads = [1]
"""


@pytest.fixture
def tiny_suite(tmp_path: Path) -> Path:
    """A suite file of four cases that take milliseconds each (tiny.toml in tmp_path)."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SUITE)
    return path
