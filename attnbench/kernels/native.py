"""Build and load the C kernels in `kernels/cpu/` for this machine, once, on first use.

The source is compiled with the system's C compiler (`$CC`, else `cc`) for this CPU
(-march=native) and linked against the BLAS inside torch's own libtorch_cpu, so nothing is
installed and no torch headers are needed (one `cc` call, under a second). The library is kept
under the cache folder, keyed by everything that changes it: the source, the flags, the compiler,
torch and the CPU. Before a new build is used, a fresh Python process loads it and checks one
small float64 case against torch: a library that crashes or disagrees (an ABI mismatch, another
BLAS) is recorded as unavailable, with the reason, and never loaded here.

Where no kernel can be had (no compiler, not Linux, `ATTNBENCH_CPU_KERNELS=0`), callers fall
back to their PyTorch form; `state()` says which, and every result's environment records it.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from attnbench.env import SOURCE_DIR, cache_dir, cache_lock, cpu_model, cpuinfo

SOURCE = Path(__file__).with_name("cpu")
SWITCH_ENV = "ATTNBENCH_CPU_KERNELS"
_state = "not loaded"


class Unavailable(Exception):
    """No kernel library on this machine; the message says why, in one line."""


def flags() -> list[str]:
    extra = ["-mprefer-vector-width=512"] if platform.machine() in ("x86_64", "AMD64") else []
    return [
        "-O3",
        "-march=native",
        "-fno-math-errno",
        "-fno-trapping-math",
        "-fopenmp-simd",
        "-fPIC",
        "-shared",
        *extra,
    ]


def compiler() -> str:
    cc = os.environ.get("CC") or "cc"
    path = shutil.which(cc)
    if path is None:
        raise Unavailable(f"no C compiler ({cc!r} not found; set CC)")
    return path


def torch_lib() -> Path:
    return Path(torch.__file__).parent / "lib"


def build_key(cc: str) -> str:
    """A digest of everything the built library depends on."""
    h = hashlib.sha256()
    for path in sorted(SOURCE.iterdir()):
        h.update(path.name.encode() + path.read_bytes())
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False).stdout
    for part in (
        flags(),
        version,
        torch.__version__,
        str(torch_lib()),
        platform.machine(),
        cpuinfo("flags", "Features") or cpu_model(),
    ):
        h.update(repr(part).encode())
    return h.hexdigest()[:16]


def build(cc: str, target: Path) -> None:
    """Compile the kernels into `target`, atomically (a concurrent reader sees all or nothing)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        lib = torch_lib()
        cmd = [cc, *flags(), str(SOURCE / "linear_chunk.c"), "-o", str(out)]
        cmd += [f"-L{lib}", "-ltorch_cpu", f"-Wl,-rpath,{lib}", "-lm"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise Unavailable(f"the C kernels did not compile: {first}")
        os.replace(out, target)


def self_check(target: Path) -> None:
    """Load `target` in a fresh process and compare one float64 case with torch."""
    code = f"from attnbench.kernels import cpu_linear; cpu_linear.self_check({str(target)!r})"
    path = os.pathsep.join(p for p in (str(SOURCE_DIR), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}  # this attnbench, installed or not
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise Unavailable(f"the C kernels failed their self-check: {last}")


def library() -> ctypes.CDLL:
    """The kernel library, built and checked if this machine has none yet; raises Unavailable
    (once per process: the answer is kept)."""
    lib = _load()
    if isinstance(lib, Unavailable):
        raise Unavailable(str(lib))  # a new one: raising the kept one would grow its traceback
    return lib


@functools.cache
def _load() -> ctypes.CDLL | Unavailable:
    global _state
    try:
        if os.environ.get(SWITCH_ENV, "1").lower() in ("0", "off", "false", "no"):
            raise Unavailable(f"turned off by {SWITCH_ENV}")
        if sys.platform != "linux":
            raise Unavailable(f"built on Linux only, not {sys.platform}")
        cc = compiler()
        folder = cache_dir() / "kernels" / f"cpu-{build_key(cc)}"
        target, failed = folder / "linear_chunk.so", folder / "failed.txt"
        with cache_lock(f"kernels-{folder.name}"):
            if failed.exists():
                raise Unavailable(failed.read_text().strip())
            if not target.exists():
                build(cc, target)  # a compile error is not kept: the next process tries again
                try:
                    self_check(target)
                except Unavailable as e:  # kept: a library that crashes is not loaded again
                    failed.write_text(f"{e} (delete {failed} to try again)\n")
                    target.unlink()
                    raise
        lib = ctypes.CDLL(str(target))
    except Unavailable as e:
        _state = f"unavailable: {e}"
        return e
    _state = f"loaded {target}"
    return lib


def state() -> str:
    """'loaded PATH', 'unavailable: WHY', or 'not loaded' (nothing here has asked for them)."""
    return _state
