"""ddtool: dataset distillation from the command line and from Python.

Plugin authors: ``from ddtool import hookimpl, MatchingMethod, ...`` (or ``from ddtool.api import
...``); every name of :mod:`ddtool.api` is available here.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what __getattr__ provides, for type checkers
    from ddtool.api import *  # noqa: F403

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # the public API is loaded on first use, not on ``import ddtool``: importing a low layer
    # (``ddtool.store``) must not pull in the methods. ``from ddtool import <submodule>`` asks
    # here first too; those names are left to the import system.
    if not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is None:
        api = importlib.import_module(f"{__name__}.api")
        if name in getattr(api, "__all__", ()):  # not yet defined while ddtool.api itself imports
            return getattr(api, name)
    raise AttributeError(f"module '{__name__}' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *importlib.import_module(f"{__name__}.api").__all__])
