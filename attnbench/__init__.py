"""attnbench: benchmark and profile attention variants.

    import attnbench
    df = attnbench.load_results("results/speed-20261124-120000.jsonl")

See `attnbench --help` for the command line and `attnbench.registry` for adding a variant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["REGISTRY", "Variant", "load_results", "register"]

if TYPE_CHECKING:
    from attnbench.registry import REGISTRY, Variant, register
    from attnbench.results.frame import load_results


def __getattr__(name: str) -> Any:
    # lazy: `import attnbench` stays cheap, and torch loads only when something needs it
    if name in ("REGISTRY", "Variant", "register"):
        from attnbench import registry

        return getattr(registry, name)
    if name == "load_results":
        from attnbench.results.frame import load_results

        return load_results
    raise AttributeError(f"module 'attnbench' has no attribute {name!r}")
