"""Reaching Ray for the ray executor: the optional import, joining a cluster or starting a
local instance, and the one-line errors when neither works."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from typing import Any

from attnbench.errors import UserError

INSTALL = "pip install 'attnbench[ray]'"
OBJECT_STORE_BYTES = 128 << 20  # a local instance's; only outcomes (small dicts) go through it
CONNECT_S = 10.0  # how long a cluster's address may take to accept a connection


def require_ray():
    """The `ray` module, or a UserError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError(f"--executor ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def connect(ray: Any, address: str | None) -> bool:
    """Join the cluster at `address` (or `RAY_ADDRESS`), or start a local instance; True when
    this call connected (so `close` disconnects). Already connected (a test, a notebook):
    that connection is used as it is. Ray's own default would join a cluster that `ray start`
    made on this machine; without an address we start our own, as `--help` says (`auto` joins
    that one)."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    check_reachable(address)
    local = {} if address else {"include_dashboard": False, "object_store_memory": OBJECT_STORE_BYTES}
    address = address or "local"
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGTERM) if main else None
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, **local)
    except (ConnectionError, ValueError, RuntimeError) as e:
        where = "a local Ray instance" if address == "local" else f"the Ray cluster at {address}"
        raise UserError(f"cannot reach {where}: {first_line(e)}{auth_hint(address)}") from None
    finally:
        if main:  # ray.init sets its own SIGTERM handler; ours says how to resume
            signal.signal(signal.SIGTERM, handler)
    return True


def auth_hint(address: str) -> str:
    """Ray (2.5x on) starts clusters with token authentication; a driver joining one by its
    address is refused (seen here: `InvalidAuthToken`, then only `Failed to connect`) unless
    it holds the token and says so."""
    if address in ("local", "auto") or os.environ.get("RAY_AUTH_MODE"):
        return ""
    return " (a cluster with token authentication also needs RAY_AUTH_MODE=token and its token here)"


def check_reachable(address: str | None) -> None:
    """A UserError when nothing listens at a cluster's `HOST:PORT` (or `ray://HOST:PORT`):
    `ray.init` would retry such an address for ever, printing a warning every few seconds.
    `auto` and no address are Ray's to resolve (it fails at once when there is nothing)."""
    if not address or address in ("auto", "local"):
        return
    host, sep, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    if not sep or not port.isdigit():
        return  # another of Ray's forms: its own error
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_S).close()
    except OSError as e:
        raise UserError(
            f"cannot reach the Ray cluster at {address}: {e.strerror or e} "
            f"(start it there with `ray start --head --port {port}`)"
        ) from None


def first_line(e: BaseException) -> str:
    """The first line of an error's message, at most 300 characters (Ray's run to pages)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0][:300] if lines else type(e).__name__
