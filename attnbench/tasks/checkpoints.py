"""Trained models cached by what trained them, so evaluating again does not retrain.

The key is a hash of everything that shapes the trained weights (variant, its parameters,
dtype, device, the task's training parameters, the corpus hash), not of how the model is
evaluated: a case that only adds evaluation lengths finds the checkpoint of its twin.
Files live under `$ATTNBENCH_CACHE_DIR/checkpoints/` (default ~/.cache/attnbench).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnbench.env import cache_dir


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
