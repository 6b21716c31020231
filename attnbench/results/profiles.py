"""A case's profile: a folder of files beside the results, linked from the case's record (the
`profile` metric holds the folder's path), never a second measurement of the same thing.

    profiles/<label>-<shape>/
      profile.json         the case, its timed median and exact peak from the same run, the
                           trace's wall time and its check against the median, the memory peak
                           and what is live at it
      trace.json           Chrome trace of the traced calls (Perfetto, chrome://tracing)
      ops.csv, ops.json    operators (CPU) or kernels (CUDA) per call, by self time; a name
                           in parentheses is the call's time in none of them
      ops_by_shape.csv     the same per operator and input shapes (CPU)
      ops_top_level.csv    the operators the call runs itself, each with all under it
      memory.csv           every allocation and free of one call, in order
      memory.png           the memory timeline (drawn by the command that asked for the profile)
      memory_snapshot.pickle  CUDA only: the allocator's history, for pytorch.org/memory_viz

Written by `attnbench.runner.profile`, read by `attnbench profile`, `run --profile` and the
report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.cases import Case
from attnbench.errors import UserError

SUMMARY = "profile.json"
TRACE = "trace.json"
OPS_CSV, OPS_JSON = "ops.csv", "ops.json"
BREAKDOWNS = {"op": OPS_CSV, "shape": "ops_by_shape.csv", "top": "ops_top_level.csv"}  # the views, by name
MEMORY_CSV, MEMORY_PNG = "memory.csv", "memory.png"
SNAPSHOT = "memory_snapshot.pickle"


def folder_name(case: Case) -> str:
    """`<label>-<shape>`, e.g. `linear.dpfp_norm=sum,rule=delta-B1-H8-N8192-D64-float32-cpu-causal-fwd-t2`:
    the label's brackets become `_` (a shell reads `[…]` as a pattern)."""
    label = case.label.replace("[", "_").replace("]", "")
    mask = "causal" if case.causal else "full"
    return f"{label}-{case.shape}-{case.dtype}-{case.device}-{mask}-{case.mode}-t{case.threads}"


@dataclass(frozen=True)
class Profile:
    folder: Path
    summary: dict[str, Any]
    ops: pd.DataFrame
    memory: pd.DataFrame

    @property
    def label(self) -> str:
        return self.summary["label"]

    @property
    def case(self) -> Case:
        return Case.from_dict(self.summary["case"])

    def breakdown(self, by: str) -> pd.DataFrame:
        """One of the views of `BREAKDOWNS`: by operator, by operator and input shapes, or
        by the operators the call runs itself (read on demand)."""
        return pd.read_csv(self.folder / BREAKDOWNS[by], keep_default_na=False, na_values=[""])


def save_profile(
    folder: Path, summary: dict[str, Any], breakdowns: dict[str, pd.DataFrame], memory: pd.DataFrame
) -> Path:
    """Write the profile's tables and summary into `folder` (the trace is already there);
    `breakdowns` holds a table for each view of `BREAKDOWNS`."""
    folder.mkdir(parents=True, exist_ok=True)
    for view, name in BREAKDOWNS.items():
        breakdowns[view].to_csv(folder / name, index=False)
    breakdowns["op"].to_json(folder / OPS_JSON, orient="records", indent=1)
    memory.to_csv(folder / MEMORY_CSV, index=False)
    (folder / SUMMARY).write_text(json.dumps(summary, indent=1, default=str) + "\n")
    return folder


def load_profile(folder: str | Path) -> Profile:
    """The profile in `folder`; a UserError naming the folder when it is not one."""
    folder = Path(folder)
    try:
        summary = json.loads((folder / SUMMARY).read_text())
        ops = pd.read_csv(folder / OPS_CSV)
        memory = pd.read_csv(folder / MEMORY_CSV, keep_default_na=False, na_values=[""])
    except (OSError, ValueError) as e:
        raise UserError(f"{folder}: not a readable attnbench profile ({type(e).__name__}: {e})") from None
    for column in ("op", "site"):
        if column in memory:
            memory[column] = memory[column].fillna("")
    return Profile(folder, summary, ops, memory)
