"""Trained models cached by what trained them, so evaluating again does not retrain.

The key is a hash of everything that shapes the trained weights (variant, its parameters,
dtype, device, the task's training parameters, the corpus hash), not of how the model is
evaluated: a case that only adds evaluation lengths finds the checkpoint of its twin.
Files live under `$ATTNBENCH_CACHE_DIR/checkpoints/` (default ~/.cache/attnbench).

Several workers may want the same model at once (the Ray executor runs cases in parallel;
every arm of the convert task starts from the same softmax LM): the first trains it under a
lock (`env.cache_lock`) while the others wait and then load it. On a folder every node
sees (`--cache-dir`, or ATTNBENCH_CACHE_DIR on shared storage) that makes one training per
cluster; on a node's own disk, one per node.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnbench.env import cache_dir, cache_lock


def checkpoint_key(what: dict[str, Any]) -> str:
    blob = json.dumps(what, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def checkpoint_path(key: str) -> Path:
    return cache_dir() / "checkpoints" / f"{key}.pt"


def load_checkpoint(key: str, model: nn.Module) -> dict[str, Any] | None:
    """Load the cached weights into `model` and return what was saved with them, or None
    when there is no usable checkpoint (absent, unreadable, or of another architecture)."""
    path = checkpoint_path(key)
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["state"])
    except (OSError, RuntimeError, KeyError, EOFError, ValueError):
        return None
    return json.loads(saved["info"])


def save_checkpoint(key: str, model: nn.Module, info: dict[str, Any]) -> Path:
    """Write atomically (a temporary file renamed), so an interrupted run leaves no torn file."""
    path = checkpoint_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"state": state, "info": json.dumps(info, default=str)}, tmp)
    tmp.replace(path)
    return path


def load_or_train(key: str, model: nn.Module, train: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The checkpoint of `key` loaded into `model`, or `train()` run (under the key's lock,
    so a concurrent worker waits and loads instead of training too) and saved; what was
    saved with the weights, with `checkpoint`: trained | cached."""
    info = load_checkpoint(key, model)
    if info is None:
        with cache_lock(f"checkpoint-{key}"):
            info = load_checkpoint(key, model)  # trained by whoever held the lock before us
            if info is None:
                info = train()
                save_checkpoint(key, model, info)
                return {**info, "checkpoint": "trained"}
    return {**info, "checkpoint": "cached"}
