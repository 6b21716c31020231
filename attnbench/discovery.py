"""Finding what can be extended without editing a list: variants, tasks, commands, executors.

Each seam is a `Catalog`: a name -> object map filled by a decorator as modules are imported.
`discover` imports every module under the catalog's packages (so a new file is found where it
is dropped), the entry points of its group (installed packages), and the plugin modules named
in `ATTNBENCH_PLUGINS` (comma-separated module names or paths to .py files), which `--plugin`
sets so that subprocess workers import them too. One plugin module may add to several
catalogs: a variant and the task that trains it, say.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import pkgutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Generic, TypeVar

from attnbench.errors import UserError, did_you_mean

PLUGINS_ENV = "ATTNBENCH_PLUGINS"

T = TypeVar("T")


def import_package(package: str) -> None:
    """Import `package` and every module below it."""
    pkg = importlib.import_module(package)
    for info in pkgutil.walk_packages(pkg.__path__, prefix=package + "."):
        importlib.import_module(info.name)


def load_entry_points(group: str) -> None:
    for ep in importlib.metadata.entry_points(group=group):
        ep.load()


def env_plugins() -> list[str]:
    return [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]


def add_plugins(names: Iterable[str]) -> None:
    """Record plugins in the environment (so subprocess workers import them too) and import
    them here. A path to a .py file is made absolute first, so a worker in another folder finds it."""
    names = [str(Path(n).resolve()) if n.endswith(".py") else n for n in names]
    if names:
        current = env_plugins()
        os.environ[PLUGINS_ENV] = ",".join(dict.fromkeys(current + names))
    load_plugins(env_plugins())


_LOADED: set[str] = set()


def load_plugins(names: Iterable[str]) -> None:
    for name in names:
        if name not in _LOADED:
            import_plugin(name)
            _LOADED.add(name)


def import_plugin(name: str) -> None:
    """Import a plugin: a module name (`mypkg.attention`) or a path to a .py file."""
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise UserError(f"cannot import plugin {name!r}: no such file")
        module = path.stem
        spec = importlib.util.spec_from_file_location(module, path)
        if spec is None or spec.loader is None:
            raise UserError(f"cannot import plugin {name!r}: not a Python file")
        if module in sys.modules:
            return
        mod = importlib.util.module_from_spec(spec)
        sys.modules[module] = mod
        try:
            spec.loader.exec_module(mod)
        except Exception as e:
            del sys.modules[module]
            raise UserError(f"cannot import plugin {name!r}: {type(e).__name__}: {e}") from None
        return
    try:
        importlib.import_module(name)
    except ImportError as e:
        tip = ""
        if e.name == name.split(".")[0]:
            here = Path(name.replace(".", os.sep) + ".py")
            if here.is_file():
                tip = f" (it is a file here: --plugin {here})"
            else:
                tip = " (give a path to a .py file, or put its folder on PYTHONPATH)"
        raise UserError(f"cannot import plugin {name!r}: {e}{tip}") from None


class Catalog(Generic[T]):
    """Name -> object for one seam (`kind` names it in messages), filled by `add` from the
    decorators of the modules `discover` imports."""

    def __init__(self, kind: str, packages: tuple[str, ...], group: str) -> None:
        self.kind = kind
        self.packages = packages
        self.group = group
        self._items: dict[str, T] = {}
        self._discovered = False

    def add(self, name: str, item: T, *, same: Callable[[T, T], bool] | None = None) -> None:
        """Register `item` under `name`. Registering the same thing again (a module imported
        twice) is fine; two different things under one name is an error."""
        existing = self._items.get(name)
        if existing is not None and existing is not item and not (same and same(existing, item)):
            raise ValueError(f"{self.kind} {name!r} registered twice: {existing} and {item}")
        self._items[name] = item

    def remove(self, name: str) -> None:
        self._items.pop(name, None)

    def discover(self) -> None:
        """Import every module under the packages, the entry points, then plugins. Idempotent."""
        if not self._discovered:
            for package in self.packages:
                import_package(package)
            load_entry_points(self.group)
            self._discovered = True
        load_plugins(env_plugins())

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._items)

    def items(self) -> dict[str, T]:
        self.discover()
        return dict(self._items)

    def get(self, name: str) -> T:
        self.discover()
        if name not in self._items:
            known = sorted(self._items)
            raise UserError(
                f"unknown {self.kind} {name!r}{did_you_mean(name, known)}; known: {', '.join(known)}"
            )
        return self._items[name]

    def __contains__(self, name: str) -> bool:
        self.discover()
        return name in self._items
