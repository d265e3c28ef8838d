"""Heavy libraries imported on first use, so that `jetpack serve` starts without them.

An agent's client starts `jetpack serve` for every session and waits for it; numpy alone adds
~35 ms to that start and is needed only once memory holds vectors or the task graph is asked for.
Modules write ``from jetpack.lazy import np`` (a ``LazyModule("numpy")``, defined at the end of this
module; numpy itself to the type checker) and use ``np`` as usual: the first attribute looked up
imports the module (once, under a lock, so threads that get there together are safe).

:func:`skip_package_init` serves the same start: the MCP SDK's package ``__init__`` imports its client
side (``Client``, sessions, transports) along with re-exports, none of which a server uses.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any

__all__ = ["LazyModule", "np", "skip_package_init"]


class LazyModule:
    """Stands for the module ``name`` and imports it when one of its attributes is first used."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None
        self._lock = threading.Lock()

    def __getattr__(self, attribute: str) -> Any:
        module = self._module
        if module is None:
            with self._lock:
                if self._module is None:
                    self._module = importlib.import_module(self._name)
                module = self._module
        return getattr(module, attribute)

    def __repr__(self) -> str:
        state = "imported" if self._module is not None else "not imported yet"
        return f"<lazy module {self._name!r} ({state})>"


def skip_package_init(name: str) -> bool:
    """Register package ``name`` without running its ``__init__``: ``import name.sub`` then loads the
    submodules as usual, while the names the ``__init__`` would have re-exported are missing.

    For a process that imports only submodules (``jetpack serve`` imports ``mcp.server...``, never
    ``from mcp import ...``). Returns False, changing nothing, when the package is already imported
    or is not a package.
    """
    if name in sys.modules:
        return False
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        return False
    sys.modules[name] = importlib.util.module_from_spec(spec)
    return True


if TYPE_CHECKING:
    import numpy as np
else:
    np = LazyModule("numpy")  # `from jetpack.lazy import np`: numpy, imported on first use
