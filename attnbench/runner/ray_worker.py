"""The Ray executor's actor (`CaseWorker`): on its node, a subprocess executor that runs the
cases the driver sends it, reused across them, exactly as `--executor subprocess` would."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from attnbench.cases import Case
from attnbench.errors import UserError
from attnbench.measure.settings import MeasureSettings
from attnbench.runner.executors import SubprocessExecutor


class CaseWorker:
    """The Ray actor: a subprocess executor on one node, reused across cases."""

    def __init__(
        self,
        settings: dict[str, Any],
        timeout_s: float,
        mem_limit: int | None,
        log_path: str | None,
        environ: dict[str, str],
        device: str,
        niceness: int,
    ) -> None:
        os.environ.update(environ)  # the workers it starts inherit them
        self.nice = renice(niceness)
        self.device = device
        self.log_path = node_log_path(log_path)
        self.executor = SubprocessExecutor(
            MeasureSettings.from_dict(settings),
            timeout_s=timeout_s,
            mem_limit=mem_limit,
            log_path=self.log_path,
        )

    def where(self) -> dict[str, Any]:
        """Its node: what a case's `env` says of where it ran, had the worker no answer."""
        import ray

        from attnbench.env import device_name

        return {
            "hostname": socket.gethostname(),
            "device_name": device_name(self.device),
            "ray_node_id": ray.get_runtime_context().get_node_id(),
            "ray_node_ip": ray.util.get_node_ip_address(),
        }

    def run(self, case: dict[str, Any]) -> dict[str, Any]:
        """The outcome and how many workers this actor started so far; a UserError (a worker
        that cannot start) as its message, which the driver raises again."""
        try:
            with main_script_hidden():
                outcome = self.executor.run(Case.from_dict(case))
        except UserError as e:
            return {"user_error": str(e)}
        where = self.where()  # the worker's env already names the host and the device
        outcome.env.update({k: where[k] for k in ("ray_node_id", "ray_node_ip")}, nice=self.nice)
        return {"outcome": outcome.to_dict(), "starts": self.executor.starts}


@contextlib.contextmanager
def main_script_hidden() -> Iterator[None]:
    """While workers may start: multiprocessing's spawn runs the parent's main script again in
    the child, and an actor's main script is Ray's `default_worker.py`, which would import
    all of Ray into every case worker (a second of start-up, and memory the case never uses)."""
    main = sys.modules["__main__"]
    path = main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        if path is not None:
            main.__file__ = path


def renice(niceness: int) -> int:
    """Ray starts its workers at niceness 15 above its raylet (`worker_niceness`, so that its
    own daemons stay responsive), and a case worker inherits it: on a node where anything else
    runs, the case then gets the CPU last (seen here, load 7: 92 ms a call under the subprocess
    executor, 135 ms under Ray). The actor takes the niceness the sweep was started at instead
    (0 as usual; 19 under `nice -n 19`, which then holds on the nodes too) where allowed (root,
    or RLIMIT_NICE); the niceness the cases run at, either way, goes into each result's `env`."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
    return os.getpriority(os.PRIO_PROCESS, 0)


def node_log_path(log_path: str | None) -> str | None:
    """The worker log beside the results where that folder is on this node and writable,
    else in this node's temporary folder."""
    if not log_path:
        return None
    path = Path(log_path)
    if os.access(path.parent, os.W_OK):
        return str(path)
    return str(Path(tempfile.gettempdir()) / f"attnbench-{path.name}")
