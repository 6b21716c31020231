"""Tables, figures, the HTML report and the regression gate, from results.

This package is also `attnbench.report(df, path)`, the Python API's report (`attnbench.api.report`):
a package and a function cannot share the name `attnbench.report` (importing the package rebinds
it), so the package itself is callable.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


class _CallableModule(types.ModuleType):
    def __call__(self, df: pd.DataFrame, path: str | Path, *, title: str | None = None) -> Path:
        """The self-contained HTML report of the rows in `df`, written to `path`."""
        from attnbench.api import report

        return report(df, path, title=title)


sys.modules[__name__].__class__ = _CallableModule
