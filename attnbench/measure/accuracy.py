"""The correctness gate: a timed case whose error against its oracle is above the tolerance of
its dtype and mode is `inaccurate`, not `ok`, so a variant that computes something else (a
softmax with a temperature checked against plain softmax: relative error 0.3) cannot pass as
a fast result.

Tolerances are relative errors, ‖out − ref‖ / ‖ref‖ on the sampled rows (forward) and the
largest of dq, dk, dv (gradients), times the variant's `error_scale`. They sit one to two
orders of magnitude above the largest error the registry's exact variants show at the
lengths suites sweep (`python benchmarks/error_tolerances.py`, results in
`benchmarks/results/error_tolerances-cpu.json`), and two to three below the error of a
variant computing different maths, so neither rounding nor the length can trip them and no
wrong formula slips under them.

A variant that declares `approximates` (low-rank, say) is never judged: its error is its
approximation error, recorded and labelled as such.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# dtype -> (forward, gradient) relative-error tolerance
TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-8, 1e-7),
    "float32": (1e-3, 1e-2),
    "float16": (3e-2, 1e-1),
    "bfloat16": (1e-1, 3e-1),
}


def tolerances(dtype: str, mode: str, scale: float = 1.0) -> dict[str, float]:
    """The tolerance of each error metric a case of `dtype` and `mode` records."""
    fwd, grad = TOLERANCES.get(dtype, TOLERANCES["float16"])
    out = {"rel_err": fwd * scale}
    if mode == "fwd+bwd":
        out["grad_rel_err"] = grad * scale
    return out


def verdict(metrics: Mapping[str, Any]) -> str | None:
    """Why a measured case is inaccurate (one line), or None. Reads what the record holds:
    the errors, their tolerances (`err_tolerance`) and the oracle they were taken against
    (`err_vs`); a case with no tolerance recorded (an approximation) is not judged."""
    limits = metrics.get("err_tolerance") or {}
    worst = []
    for key, limit in limits.items():
        value = metrics.get(key)
        what = "gradient" if key.startswith("grad") else "output"
        if value is None and key in metrics:  # recorded as null: it was NaN or inf
            worst.append(f"{what} error is not finite (NaN or inf)")
        elif value is not None and not value <= limit:  # NaN and inf are above any tolerance
            worst.append(f"{what} error {value:.2g} > {limit:.0e}")
    if not worst:
        return None
    return f"{'; '.join(worst)} against the {metrics.get('err_vs', 'reference')} oracle"


def finite_errors(metrics: dict[str, Any]) -> None:
    """Errors that are NaN or inf become null (a results record holds finite numbers only);
    `verdict` reads a null error as not finite."""
    for key in ("rel_err", "grad_rel_err", "max_abs_err"):
        value = metrics.get(key)
        if isinstance(value, float) and not math.isfinite(value):
            metrics[key] = None
