"""attnbench: benchmark and profile attention variants.

    import attnbench
    df = attnbench.sweep(["softmax.sdpa", "linear.elu"], seq_len=[1024, 4096])
    df = attnbench.bench(my_attention, "softmax.sdpa", seq_len=1024, reference="softmax")
    attnbench.plot(df, "latency_ms", "latency.png"); attnbench.report(df, "report.html")
    df = attnbench.load_results("results/speed-20261124-120000.jsonl")

See `attnbench --help` for the command line and `attnbench.registry` for adding a variant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["REGISTRY", "Variant", "bench", "load_results", "plot", "register", "report", "sweep"]
API = ("bench", "plot", "sweep")  # and `report`: the attnbench.report package is callable

if TYPE_CHECKING:
    from attnbench.api import bench, plot, report, sweep
    from attnbench.registry import REGISTRY, Variant, register
    from attnbench.results.frame import load_results


def __getattr__(name: str) -> Any:
    # lazy: `import attnbench` stays cheap, and torch loads only when something needs it
    if name in ("REGISTRY", "Variant", "register"):
        from attnbench import registry

        return getattr(registry, name)
    if name == "report":
        import attnbench.report

        return attnbench.report
    if name in API:
        from attnbench import api

        return getattr(api, name)
    if name == "load_results":
        from attnbench.results.frame import load_results

        return load_results
    raise AttributeError(f"module 'attnbench' has no attribute {name!r}")
