"""The worker process of the subprocess executor: receives cases over a pipe, runs each with
`execute`, sends the outcome back. It is reused across cases; the parent replaces it only
when it dies (crash, OOM kill) or hangs past the case's timeout."""

from __future__ import annotations

import logging
import os
import resource
import warnings
from multiprocessing.connection import Connection
from typing import Any

NO_LIMIT = 1 << 62  # bytes; a cap this large (`--mem-limit 1e30`) is no cap, and setrlimit refuses it


def limit_memory(max_bytes: int | None) -> None:
    """Cap the process's data segment (heap and anonymous mappings), so an allocation beyond
    it fails with torch's "can't allocate memory" and is recorded `oom`, instead of the
    kernel's OOM killer taking the machine's other processes with it. CPU only: CUDA
    reserves vast address ranges."""
    if max_bytes and max_bytes < NO_LIMIT:
        resource.setrlimit(resource.RLIMIT_DATA, (max_bytes, max_bytes))


def redirect_output(log_path: str | None) -> None:
    """Worker chatter (compiler warnings, library prints) goes to a log, not over the
    progress bar."""
    if log_path:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)


def worker_main(
    conn: Connection, settings: dict[str, Any], mem_limit: int | None, log_path: str | None
) -> None:
    redirect_output(log_path)
    limit_memory(mem_limit)
    logging.getLogger("torch._dynamo").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="torch._dynamo")

    from attnbench.cases import Case
    from attnbench.measure.allocator import release_free_memory, steady_cpu_allocator
    from attnbench.measure.settings import MeasureSettings
    from attnbench.registry import REGISTRY
    from attnbench.runner.execute import execute

    steady_cpu_allocator()
    REGISTRY.discover()
    measure = MeasureSettings.from_dict(settings)
    conn.send({"ready": os.getpid()})
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        outcome = execute(Case.from_dict(message), measure)
        release_free_memory()  # before answering: the parent sees the worker as the next case will
        conn.send(outcome.to_dict())


def worker_from(source: str | None, lifeline: tuple[int, bool], *args: Any) -> None:
    """Start `worker_main`, tied to its parent (`lifeline`: the parent's pid and whether it
    started us from its main thread; see `attnbench.runner.lifeline`), from this checkout or
    from another (`source`, a directory holding its `attnbench` package), for same-job A/B
    runs: this process's attnbench modules are dropped and that checkout's are imported in
    their place, nothing installed."""
    import signal
    import sys

    from attnbench.runner.lifeline import die_with_parent

    parent_pid, parent_main_thread = lifeline
    die_with_parent(parent_pid, parent_main_thread=parent_main_thread)
    # Ctrl-C reaches the whole process group: the parent handles it (and stops this worker)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if source:
        sys.path.insert(0, source)
        for name in [m for m in sys.modules if m == "attnbench" or m.startswith("attnbench.")]:
            del sys.modules[name]
    from attnbench.runner.worker import worker_main as main

    main(*args)
