"""ddtool: dataset distillation from the command line and from Python.

Plugin authors: ``from ddtool import hookimpl, MatchingMethod, ...`` (or ``from ddtool.api import
...``); every name of :mod:`ddtool.api` is available here.

Notebooks and scripts: ``ddtool.pretrain``, ``ddtool.distill``, ``ddtool.evaluate``,
``ddtool.report``, ``ddtool.load`` and ``ddtool.Store`` work on the CLI's recipes and store
(:mod:`ddtool.runtime.python_api`)::

    import ddtool
    from torch.utils.data import DataLoader

    made = ddtool.distill("recipes/quickstart.toml", store=".ddtool-demo")
    rows = ddtool.report([made.artifact.ref], store=".ddtool-demo", epochs=300)
    loader = DataLoader(ddtool.load(made.artifact.ref, store=".ddtool-demo").dataset(), batch_size=10, shuffle=True)
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from ddtool.version import __version__

if TYPE_CHECKING:  # what __getattr__ provides, for type checkers
    from ddtool.api import *  # noqa: F403
    from ddtool.runtime.python_api import LoadedSet, distill, evaluate, load, pretrain, report
    from ddtool.store import Store


# the Python API of the verbs (and the store), loaded on first use like the plugin API below
_LAZY = {**{n: "ddtool.runtime.python_api" for n in ("pretrain", "distill", "evaluate", "report", "load",
                                                    "LoadedSet")},
         "Store": "ddtool.store"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    # the public API is loaded on first use, not on ``import ddtool``: importing a low layer
    # (``ddtool.store``) must not pull in the methods. ``from ddtool import <submodule>`` asks
    # here first too; those names are left to the import system.
    if not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is None:
        api = importlib.import_module(f"{__name__}.api")
        if name in getattr(api, "__all__", ()):  # not yet defined while ddtool.api itself imports
            return getattr(api, name)
    raise AttributeError(f"module '{__name__}' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY, *importlib.import_module(f"{__name__}.api").__all__])
