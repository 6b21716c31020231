"""The environment every result carries: versions, device, CPU, threads, git revision."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import platform
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock, the work may be done twice
    fcntl = None  # type: ignore[assignment]

SOURCE_DIR = Path(__file__).resolve().parent.parent
CACHE_ENV = "ATTNBENCH_CACHE_DIR"


def cache_dir() -> Path:
    """Where attnbench keeps what it can recompute: calibrations, trained checkpoints."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "attnbench")


@contextlib.contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """Held while the cached `name` is computed (a model trained, a machine calibrated), so
    that another worker wanting it at once (the Ray executor runs cases in parallel, and nodes
    may share the cache folder) waits and then reads it rather than computing it again. A
    file system without locks (some network mounts) runs unguarded: the work may be done twice."""
    path = cache_dir() / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # and with it the lock


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpuinfo(*fields: str) -> str | None:
    """The value of the first /proc/cpuinfo line that starts with one of `fields` (None: none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(fields):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


@functools.cache
def cpu_model() -> str:
    return cpuinfo("model name") or platform.processor() or platform.machine()


@functools.cache
def device_name(device: str) -> str:
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return cpu_model()


@functools.cache
def git_revision() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the attnbench source tree, or (None, None) outside a checkout."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(SOURCE_DIR), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(SOURCE_DIR), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return rev, bool(dirty)
    except (OSError, subprocess.SubprocessError):
        return None, None


@functools.cache
def machine_env() -> dict[str, Any]:
    """What is the same for every case of a run on this machine."""
    rev, dirty = git_revision()
    return {
        "attnbench": _version("attnbench"),
        "torch": torch.__version__,
        "triton": _version("triton"),
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "git_revision": rev,
        "git_dirty": dirty,
    }


def case_env(device: str) -> dict[str, Any]:
    """The machine's environment plus what one case ran on: the device and the threads in use."""
    from attnbench.kernels import native
    from attnbench.measure.allocator import steady_cpu_allocator
    from attnbench.measure.noise import machine_noise_env

    return {
        **machine_env(),
        **machine_noise_env(),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "cpu_allocator": steady_cpu_allocator(),
        "cpu_kernels": native.state(),
    }
